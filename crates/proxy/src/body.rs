//! The body type every layer hands hyper, whichever way it goes: straight from the
//! peer, from a scan spool, or made in memory.

use bytes::Bytes;
use http_body::Body;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};

/// Errors of the bodies sluice relays (hyper's, the spool file's).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Every body sluice relays, either way: straight from the peer, from a scan spool, or
/// made in memory.
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

/// Box any body as a [`ProxyBody`].
pub fn boxed<B>(body: B) -> ProxyBody
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

/// A body made in memory (block pages, errors).
pub fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    boxed(Full::new(bytes.into()))
}
