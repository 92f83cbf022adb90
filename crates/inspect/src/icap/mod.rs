//! An ICAP client (RFC 3507) for anti-virus services: c-icap with its virus_scan
//! service and ClamAV, or any ICAP anti-virus server.
//!
//! - **OPTIONS** first, and again once `Options-TTL` has passed: `Methods`, `Preview`,
//!   `Allow: 204`, the `Transfer-*` lists, `ISTag`, `Max-Connections` ([`IcapOptions`]).
//! - **RESPMOD** for responses and **REQMOD** for uploads, with the encapsulated HTTP
//!   heads, the body chunked, a preview of the announced size (`0; ieof` when the whole
//!   body fits in it), `100 Continue`, and `Allow: 204`; see `exchange.rs` for how the
//!   final response is read as a verdict.
//! - **Persistent connections**, pooled, at most `Max-Connections` at once; a
//!   transaction that fails on a pooled connection the server closed while idle is tried
//!   once more on a new one.
//! - **One deadline** per scan (`anti_virus.timeout`), covering waiting for a
//!   connection, OPTIONS when due, sending the body and reading the verdict.
//!
//! [`parse`] is the pure response parser (fuzzed); the rest does the I/O.

mod exchange;
mod options;
pub mod parse;
mod pool;
mod request;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::{request as http_request, response as http_response};
use sluice_policy::IcapService;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::scan::{within_timeout, ScanError, ScanOutcome};
use crate::spool::SpooledBody;
use exchange::{Done, Failure, Job};
use pool::{Lease, Pool};
use request::{Method, Target};

pub use options::{IcapOptions, OptionsError, Transfer};
pub use pool::DEFAULT_MAX_CONNECTIONS;

/// A client of one ICAP service. Cheap to clone: clones share the connections and the
/// cached options.
#[derive(Clone, Debug)]
pub struct IcapClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    target: Target,
    timeout: Duration,
    pool: Pool,
    /// The last OPTIONS; a scan that finds them missing or expired fetches them while
    /// holding the lock, so concurrent scans wait for one fetch.
    options: Mutex<Option<Cached>>,
    /// OPTIONS requests answered so far.
    fetches: AtomicU64,
}

#[derive(Debug)]
struct Cached {
    options: Arc<IcapOptions>,
    /// When `Options-TTL` runs out; `None`: never.
    expires: Option<Instant>,
}

impl IcapClient {
    /// A client of `service`; every scan finishes within `timeout`. Nothing is sent
    /// until the first scan or [`IcapClient::refresh_options`].
    pub fn new(service: &IcapService, timeout: Duration) -> Self {
        IcapClient {
            inner: Arc::new(Inner {
                target: Target {
                    uri: service.uri(),
                    host: service.authority(),
                },
                timeout,
                pool: Pool::new(service.host.clone(), service.port),
                options: Mutex::new(None),
                fetches: AtomicU64::new(0),
            }),
        }
    }

    /// The service's options, fetched now (within the timeout) whatever the cache holds.
    pub async fn refresh_options(&self) -> Result<Arc<IcapOptions>, ScanError> {
        within_timeout(self.inner.timeout, async {
            let mut cached = self.inner.options.lock().await;
            self.fetch_into(&mut cached).await
        })
        .await
    }

    /// The service's options: the cached ones, or fetched when missing or past their
    /// `Options-TTL`.
    pub async fn options(&self) -> Result<Arc<IcapOptions>, ScanError> {
        within_timeout(self.inner.timeout, self.current_options()).await
    }

    /// How many OPTIONS requests were answered (for tests and metrics).
    pub fn options_fetches(&self) -> u64 {
        self.inner.fetches.load(Ordering::Relaxed)
    }

    /// The connection limit in force (`Max-Connections`, or
    /// [`DEFAULT_MAX_CONNECTIONS`]).
    pub fn max_connections(&self) -> usize {
        self.inner.pool.max()
    }

    /// RESPMOD: scan a response body.
    pub async fn scan_response(
        &self,
        request: &http_request::Parts,
        response: &http_response::Parts,
        body: &SpooledBody,
    ) -> ScanOutcome {
        let job = Job {
            method: Method::Respmod,
            request,
            response: Some(response),
            body,
        };
        self.scan(&job).await
    }

    /// REQMOD: scan a request body (an upload).
    pub async fn scan_request(
        &self,
        request: &http_request::Parts,
        body: &SpooledBody,
    ) -> ScanOutcome {
        let job = Job {
            method: Method::Reqmod,
            request,
            response: None,
            body,
        };
        self.scan(&job).await
    }

    async fn scan(&self, job: &Job<'_>) -> ScanOutcome {
        match within_timeout(self.inner.timeout, self.scan_now(job)).await {
            Ok(outcome) => outcome,
            Err(error) => ScanOutcome::Failed(error),
        }
    }

    async fn scan_now(&self, job: &Job<'_>) -> Result<ScanOutcome, ScanError> {
        let options = self.current_options().await?;
        let method = job.method.as_str();
        if !options.supports(method) {
            return Err(ScanError::Refused(format!(
                "the ICAP service does not offer {method}"
            )));
        }
        if job.body.is_empty() {
            return Ok(ScanOutcome::Clean);
        }
        let preview = match options.transfer(options::extension(&job.request.uri).as_deref()) {
            Transfer::Ignore => return Ok(ScanOutcome::Clean),
            Transfer::Complete => None,
            Transfer::Preview(n) => Some(n),
        };
        let pool = &self.inner.pool;
        let target = &self.inner.target;
        let mut lease = pool.lease().await?;
        let mut result = exchange::modify(&mut lease.conn, target, job, preview).await;
        if stale(&lease, &result) {
            lease = self.replace(lease).await?;
            result = exchange::modify(&mut lease.conn, target, job, preview).await;
        }
        self.settle(lease, result)
    }

    async fn current_options(&self) -> Result<Arc<IcapOptions>, ScanError> {
        let mut cached = self.inner.options.lock().await;
        match &*cached {
            Some(c) if c.expires.is_none_or(|at| Instant::now() < at) => Ok(Arc::clone(&c.options)),
            _ => self.fetch_into(&mut cached).await,
        }
    }

    /// OPTIONS, stored in `cached`, and the pool resized to `Max-Connections`.
    async fn fetch_into(&self, cached: &mut Option<Cached>) -> Result<Arc<IcapOptions>, ScanError> {
        let pool = &self.inner.pool;
        let target = &self.inner.target;
        let mut lease = pool.lease().await?;
        let mut result = exchange::options(&mut lease.conn, target).await;
        if stale(&lease, &result) {
            lease = self.replace(lease).await?;
            result = exchange::options(&mut lease.conn, target).await;
        }
        let head = self.settle(lease, result)?;
        self.inner.fetches.fetch_add(1, Ordering::Relaxed);
        let options = Arc::new(
            IcapOptions::from_response(&head).map_err(|e| ScanError::Refused(e.to_string()))?,
        );
        self.inner.pool.set_max(options.max_connections);
        *cached = Some(Cached {
            options: Arc::clone(&options),
            expires: options.ttl.map(|ttl| Instant::now() + ttl),
        });
        Ok(options)
    }

    /// A new connection in place of a pooled one the server had closed.
    async fn replace(&self, stale: Lease) -> Result<Lease, ScanError> {
        drop(stale);
        self.inner.pool.lease_fresh().await
    }

    /// The transaction's value; its connection kept if it can serve again.
    fn settle<T>(&self, lease: Lease, result: Result<Done<T>, Failure>) -> Result<T, ScanError> {
        match result {
            Ok(done) => {
                if done.reusable {
                    self.inner.pool.release(lease);
                }
                Ok(done.value)
            }
            Err(failure) => Err(failure.error),
        }
    }
}

/// Whether a transaction failed because its pooled connection had been closed by the
/// server while idle: then it is tried once more on a new connection.
fn stale<T>(lease: &Lease, result: &Result<Done<T>, Failure>) -> bool {
    lease.reused && result.as_ref().err().is_some_and(Failure::stale)
}
