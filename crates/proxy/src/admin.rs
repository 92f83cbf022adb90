//! The admin endpoint (SPEC §8), on its own listener (`admin.listen`, loopback by
//! default): the CA for clients to install, health, the explanation of a decision, and
//! the learned-bypass table. Plain HTTP/1.1; admin connections do not count against
//! `max_connections`.

use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::json;
use sluice_policy::{ConnectStep, Explanation, SslDecision, SslFacts};
use tokio::net::TcpListener;

use crate::bypass::rfc3339;
use crate::context::Proxy;
use crate::forward::{full, ProxyBody};
use crate::server::CurrentProxy;

/// Time an admin client has to send a request head.
const ADMIN_HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Applies a new configuration (`POST /reload`, SIGHUP): the binary knows where it is.
pub trait Reload: Send + Sync {
    /// Load and swap in the configuration; on failure, every error (`FILE:LINE: msg`)
    /// and nothing changed.
    fn reload(&self) -> Result<(), Vec<String>>;
}

/// What the endpoint serves from.
pub struct Admin {
    pub current: CurrentProxy,
    pub reloader: Arc<dyn Reload>,
}

/// Serve admin requests until `shutdown` completes.
pub async fn serve_admin(
    admin: Arc<Admin>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) {
    let accept = async {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let admin = admin.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request| {
                    let admin = admin.clone();
                    async move { Ok::<_, Infallible>(route(&admin, request).await) }
                });
                // A silent or slow admin client is dropped rather than held forever.
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(ADMIN_HEADER_TIMEOUT)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    };
    tokio::select! {
        () = accept => {}
        () = shutdown => {}
    }
}

async fn route(admin: &Admin, request: Request<Incoming>) -> Response<ProxyBody> {
    let path = request.uri().path();
    let proxy = admin.current.load_full();
    match (request.method(), path) {
        (&Method::GET, "/ca.pem") => body(
            StatusCode::OK,
            "application/x-pem-file",
            proxy.ca_pem.clone(),
        ),
        (&Method::GET, "/ca.der") => body(
            StatusCode::OK,
            "application/pkix-cert",
            proxy.ca_der.clone(),
        ),
        (&Method::GET, "/healthz") => body(StatusCode::OK, "text/plain", "ok\n"),
        (&Method::GET, "/metrics") => metrics(&proxy).await,
        (&Method::GET, "/explain") => explain(&proxy, request.uri().query().unwrap_or("")),
        (&Method::GET, "/bypass") => list_bypass(&proxy),
        (&Method::DELETE, p) if p.starts_with("/bypass/") => {
            delete_bypass(&proxy, &p["/bypass/".len()..])
        }
        (&Method::POST, "/reload") => reload(admin).await,
        (
            _,
            "/ca.pem" | "/ca.der" | "/healthz" | "/metrics" | "/explain" | "/bypass" | "/reload",
        ) => body(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "method not allowed\n",
        ),
        _ => body(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
    }
}

fn body(
    status: StatusCode,
    content_type: &'static str,
    content: impl Into<Bytes>,
) -> Response<ProxyBody> {
    let mut response = Response::new(full(content));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    response
}

fn json_body(status: StatusCode, value: &serde_json::Value) -> Response<ProxyBody> {
    body(status, "application/json", format!("{value}\n"))
}

/// `GET /metrics`: the Prometheus text exposition.
async fn metrics(proxy: &Proxy) -> Response<ProxyBody> {
    let minters = [&proxy.minter, &proxy.untrusted_minter];
    let hits = minters.iter().map(|m| m.cache_hits()).sum();
    let misses = minters.iter().map(|m| m.cache_misses()).sum();
    let size = proxy.minter.cache_size().await + proxy.untrusted_minter.cache_size().await;
    let text = proxy.metrics.encode(hits, misses, size);
    body(
        StatusCode::OK,
        "text/plain; version=0.0.4; charset=utf-8",
        text,
    )
}

/// `POST /reload`: 200 `{"ok":true}`, or 422 with the errors and nothing changed.
async fn reload(admin: &Admin) -> Response<ProxyBody> {
    let reloader = admin.reloader.clone();
    // Loading lists and generating keys is blocking work.
    let reloaded = tokio::task::spawn_blocking(move || reloader.reload())
        .await
        .unwrap_or_else(|e| Err(vec![format!("the reload failed: {e}")]));
    match reloaded {
        Ok(()) => json_body(StatusCode::OK, &json!({"ok": true})),
        Err(errors) => json_body(
            StatusCode::UNPROCESSABLE_ENTITY,
            &json!({"ok": false, "errors": errors}),
        ),
    }
}

/// `GET /explain?host=H&sni=S&client=IP&port=N`: `sluice explain` as JSON.
fn explain(proxy: &Proxy, query: &str) -> Response<ProxyBody> {
    let param = |name: &str| {
        form_urlencoded_pairs(query)
            .find(|(key, _)| key == name)
            .map(|(_, value)| value)
    };
    let Some(host) = param("host") else {
        return json_body(
            StatusCode::BAD_REQUEST,
            &json!({"error": "the host parameter is required"}),
        );
    };
    let client = match param("client").map(|c| c.parse::<IpAddr>()) {
        None => IpAddr::from([127, 0, 0, 1]),
        Some(Ok(ip)) => ip,
        Some(Err(_)) => {
            return json_body(
                StatusCode::BAD_REQUEST,
                &json!({"error": "client is not an IP address"}),
            )
        }
    };
    let port = match param("port").map(|p| p.parse::<u16>()) {
        None => 443,
        Some(Ok(port)) => port,
        Some(Err(_)) => {
            return json_body(
                StatusCode::BAD_REQUEST,
                &json!({"error": "port is not a port number"}),
            )
        }
    };
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let dest_ip: Option<IpAddr> = host.parse().ok();
    let facts = SslFacts {
        client,
        user: None,
        user_agent: None,
        dest_name: dest_ip.is_none().then_some(host.as_str()),
        dest_ip,
        port,
    };
    let sni = param("sni");
    let name = sni.as_deref().or(facts.dest_name);
    let learned = name
        .and_then(sluice_policy::normalize_domain)
        .is_some_and(|name| proxy.bypass.is_bypassed(&name));
    let explanation = proxy
        .config
        .policy
        .explain_learned(&facts, sni.as_deref(), learned);
    json_body(
        StatusCode::OK,
        &explanation_json(&explanation, &host, sni.as_deref()),
    )
}

fn explanation_json(explanation: &Explanation, host: &str, sni: Option<&str>) -> serde_json::Value {
    let decision = |d: &SslDecision| json!({"action": d.action.as_str(), "rule": d.rule});
    let connect = match &explanation.connect {
        ConnectStep::Tunnel(d) => {
            json!({"decided": true, "action": d.action.as_str(), "rule": d.rule})
        }
        ConnectStep::PeekClientHello => json!({
            "decided": false,
            "matched_rule": explanation.connect_match.as_ref().map(|d| d.rule.clone()),
        }),
    };
    let decided = explanation.decided();
    json!({
        "host": host,
        "sni": sni,
        "decryption": explanation.decryption,
        "connect": connect,
        "client_hello": explanation.client_hello.as_ref().map(decision),
        "sni_mismatch": explanation.sni_mismatch.map(|m| m.as_str()),
        "stage": decided.map(|(stage, _)| stage.as_str()),
        "action": decided.map(|(_, d)| d.action.as_str()),
        "rule": decided.map(|(_, d)| d.rule.clone()),
        "text": explanation.to_string(),
    })
}

/// `GET /bypass`: the learned bypasses in force.
fn list_bypass(proxy: &Proxy) -> Response<ProxyBody> {
    let entries: Vec<serde_json::Value> = proxy
        .bypass
        .list()
        .into_iter()
        .map(|entry| {
            json!({
                "sni": entry.sni,
                "reason": entry.reason.as_str(),
                "count": entry.count,
                "expires": rfc3339(entry.expires),
            })
        })
        .collect();
    json_body(StatusCode::OK, &serde_json::Value::Array(entries))
}

/// `DELETE /bypass/<sni>`: 204, or 404 when the name is not bypassed.
fn delete_bypass(proxy: &Proxy, sni: &str) -> Response<ProxyBody> {
    let sni = percent_decode(sni);
    let name = sluice_policy::normalize_domain(&sni).unwrap_or(sni);
    if proxy.bypass.remove(&name) {
        body(StatusCode::NO_CONTENT, "text/plain", Bytes::new())
    } else {
        body(
            StatusCode::NOT_FOUND,
            "text/plain",
            "no learned bypass for that name\n",
        )
    }
}

/// `key=value` pairs of a query string, percent-decoded (`+` is a space).
fn form_urlencoded_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (
                percent_decode(&key.replace('+', " ")),
                percent_decode(&value.replace('+', " ")),
            )
        })
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_pairs_are_percent_decoded() {
        let pairs: Vec<_> =
            form_urlencoded_pairs("host=www.bank.example&sni=b%C3%BCcher.example&x=a+b&bad=%zz")
                .collect();
        assert_eq!(pairs[0], ("host".into(), "www.bank.example".into()));
        assert_eq!(pairs[1], ("sni".into(), "bücher.example".into()));
        assert_eq!(pairs[2], ("x".into(), "a b".into()));
        assert_eq!(pairs[3], ("bad".into(), "%zz".into()));
    }
}
