//! Missing intermediates, completed as browsers do (SPEC §11): a chain that does not
//! verify for lack of an issuer is completed from the `caIssuers` URL of its leaf's
//! Authority Information Access (then of the certificate fetched: at most two steps),
//! over plain HTTP through the proxy's own resolver and `proxy.deny_destinations`, within
//! two seconds per fetch. Answers are cached by URL (bounded); concurrent connections
//! needing the same URL wait for one fetch, and a fetch runs in the task of the
//! connection that needs it, so it never holds up any other.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use sluice_tls::aia::{ca_issuers_urls, parse_issuers};
use sluice_tls::verify::{CertErrorKind, UpstreamVerifier};

use crate::dial::uri_host;
use crate::dial::Dialer;

/// How long one `caIssuers` fetch may take, connect included.
const FETCH_TIMEOUT: Duration = Duration::from_secs(2);
/// Fetches per chain: the leaf's issuer, then that issuer's.
const MAX_STEPS: usize = 2;
/// The largest answer read: an intermediate is about 1.5 KB, a PKCS#7 bundle a few.
const MAX_ANSWER: usize = 64 * 1024;
/// URLs whose answers are kept, and for how long.
const CACHED_URLS: u64 = 1_000;
const CACHE_TTL: Duration = Duration::from_secs(3_600);

type Issuers = Arc<Vec<CertificateDer<'static>>>;

/// Fetches and caches the certificates named by `caIssuers` URLs.
pub(crate) struct IssuerFetcher {
    dialer: Arc<Dialer>,
    /// Successful answers only: a failed fetch is tried again by the next connection.
    cache: moka::future::Cache<String, Issuers>,
}

impl IssuerFetcher {
    pub(crate) fn new(dialer: Arc<Dialer>) -> Self {
        IssuerFetcher {
            dialer,
            cache: moka::future::Cache::builder()
                .max_capacity(CACHED_URLS)
                .time_to_live(CACHE_TTL)
                .build(),
        }
    }

    /// The verdict on `certs` (leaf first) for `name`, after completing the chain from
    /// `caIssuers` URLs if it is `unknown_issuer` as presented. Other verdicts are final
    /// as they are.
    pub(crate) async fn classify(
        &self,
        verifier: &UpstreamVerifier,
        certs: &[CertificateDer<'static>],
        name: &ServerName<'_>,
    ) -> Result<(), CertErrorKind> {
        let outcome = verifier.classify(certs, name, UnixTime::now());
        if outcome != Err(CertErrorKind::UnknownIssuer) {
            return outcome;
        }
        let mut chain = certs.to_vec();
        let mut last = match certs.first() {
            Some(leaf) => leaf.clone(),
            None => return outcome,
        };
        for _ in 0..MAX_STEPS {
            let Some(url) = ca_issuers_urls(&last).into_iter().next() else {
                break;
            };
            let issuers = self.issuers(&url).await;
            let Some(first) = issuers.first() else {
                break;
            };
            last = first.clone();
            chain.extend(issuers.iter().cloned());
            let completed = verifier.classify(&chain, name, UnixTime::now());
            if completed != Err(CertErrorKind::UnknownIssuer) {
                return completed;
            }
        }
        outcome
    }

    /// The certificates at `url`, from the cache or fetched (once for all the
    /// connections asking at the same time); none when the fetch failed.
    async fn issuers(&self, url: &str) -> Issuers {
        let fetch = async {
            match tokio::time::timeout(FETCH_TIMEOUT, fetch(&self.dialer, url)).await {
                Ok(Ok(certs)) if !certs.is_empty() => Ok(Arc::new(certs)),
                Ok(Ok(_)) => Err("the answer holds no certificate (DER or PKCS#7)".to_string()),
                Ok(Err(why)) => Err(why),
                Err(_) => Err(format!("no answer within {} s", FETCH_TIMEOUT.as_secs())),
            }
        };
        match self.cache.try_get_with(url.to_string(), fetch).await {
            Ok(certs) => certs,
            Err(why) => {
                tracing::info!(url, %why, "cannot fetch a missing intermediate certificate");
                Arc::default()
            }
        }
    }
}

/// One `GET` of `url` over HTTP/1.1: the body of a `200`, parsed as certificates.
async fn fetch(dialer: &Dialer, url: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let uri: Uri = url.parse().map_err(|e| format!("bad URL: {e}"))?;
    let authority = uri.authority().ok_or("URL without a host")?.clone();
    let (tcp, _) = dialer
        .dial(&uri_host(&uri), uri.port_u16().unwrap_or(80))
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| e.to_string())?;
    let connection = AbortOnDrop(tokio::spawn(connection));
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let request = Request::get(path)
        .header(header::HOST, authority.as_str())
        .header(header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    if response.status() != StatusCode::OK {
        return Err(format!("status {}", response.status()));
    }
    let body = Limited::new(response.into_body(), MAX_ANSWER)
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    drop(connection);
    Ok(parse_issuers(&body))
}

/// Ends the spawned HTTP connection when the fetch is done or abandoned (timeout).
struct AbortOnDrop(tokio::task::JoinHandle<Result<(), hyper::Error>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
