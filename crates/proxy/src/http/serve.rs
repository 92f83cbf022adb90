//! hyper's server side of a client connection, with the `[limits]` that apply to it.

use hyper_util::rt::{TokioExecutor, TokioTimer};
use sluice_policy::Limits;

/// The HTTP/1.1 server side of a client connection, with the `[limits]` that apply to
/// it: `idle_timeout` between requests and `max_header_bytes` (hyper's floor is 8 KiB).
pub fn client_http1(limits: &Limits) -> hyper::server::conn::http1::Builder {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.idle_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192));
    builder
}

/// Streams one client may open at once on an HTTP/2 connection.
const MAX_CONCURRENT_STREAMS: u32 = 250;

/// The HTTP/2 server side of a bumped client connection: bounded concurrent streams and
/// header lists, and a cap on streams reset before they were served (rapid-reset floods).
pub fn client_http2(limits: &Limits) -> hyper::server::conn::http2::Builder<TokioExecutor> {
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .max_pending_accept_reset_streams(50)
        .max_local_error_reset_streams(1024);
    builder
}
