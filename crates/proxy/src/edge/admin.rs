//! The admin endpoint (SPEC §8), on its own listener (`admin.listen`, loopback by
//! default): the CA for clients to install, health, the explanation of a decision, and
//! the learned-bypass table. Plain HTTP/1.1; admin connections do not count against
//! `max_connections`. Every request must name the endpoint in its `Host` and carry no
//! foreign `Origin` (against DNS rebinding and cross-site requests from a browser), and
//! with `admin.token_file` most routes need the bearer token: see
//! [`sluice_policy::admin_access`]. The endpoint keeps answering while the proxy drains,
//! with `/readyz` saying 503.

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::json;
use sluice_policy::{
    admin_access, AdminAccess, AdminRequest, ConnectStep, Explanation, SslDecision, SslFacts,
    PAC_CONTENT_TYPE,
};
use tokio::net::TcpListener;

use crate::auth::Authenticator;
use crate::body::{full, ProxyBody};
use crate::bypass::{rfc3339, BypassTable};
use crate::cluster::{Cluster, Event};
use crate::context::{Proxy, Shared};
use crate::edge::server::{accept, CurrentProxy};

/// Time an admin client has to send a request head.
const ADMIN_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

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
    /// Whether the proxy is draining, for `/readyz`.
    pub shared: Arc<Shared>,
}

/// Serve admin requests until `shutdown` completes (after the proxy's drain, so that
/// `/readyz` and `/metrics` answer during it).
pub async fn serve_admin(
    admin: Arc<Admin>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) {
    let accept = async {
        loop {
            let (stream, peer) = accept(&listener, "admin").await;
            // The address the client reached: for a wildcard listener, the concrete one
            // its `Host` must name.
            let Ok(local) = stream.local_addr() else {
                continue;
            };
            let admin = admin.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request| {
                    let admin = admin.clone();
                    async move { Ok::<_, Infallible>(route(&admin, peer, local, request).await) }
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

async fn route(
    admin: &Admin,
    peer: SocketAddr,
    local: SocketAddr,
    request: Request<Incoming>,
) -> Response<ProxyBody> {
    let path = request.uri().path();
    let proxy = admin.current.load_full();
    let access = check_access(&proxy, local, &request);
    if access != AdminAccess::Allowed {
        tracing::warn!(%peer, path, reason = access.reason(), "admin request refused");
        return refusal(access);
    }
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
        (&Method::GET, "/readyz") => readiness(&admin.shared),
        (&Method::GET, "/metrics") => metrics(&proxy).await,
        (&Method::GET, "/explain") => explain(&proxy, request.uri().query().unwrap_or("")).await,
        (&Method::GET, "/bypass") => list_bypass(&proxy.bypass),
        (&Method::DELETE, p) if p.starts_with("/bypass/") => {
            delete_bypass(&proxy.bypass, &proxy.cluster, &p["/bypass/".len()..])
        }
        (&Method::POST, "/reload") => reload(admin).await,
        (&Method::GET | &Method::HEAD, p) if sluice_policy::is_pac_path(p) => {
            pac(proxy.config.settings.pac.as_deref())
        }
        (
            _,
            "/ca.pem" | "/ca.der" | "/healthz" | "/readyz" | "/metrics" | "/explain" | "/bypass"
            | "/reload" | "/proxy.pac" | "/wpad.dat",
        ) => body(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "method not allowed\n",
        ),
        _ => body(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
    }
}

/// The facts of [`admin_access`] from the request: its `Host` headers, an absolute-form
/// target's authority, `Origin` and `Authorization`.
fn check_access(proxy: &Proxy, local: SocketAddr, request: &Request<Incoming>) -> AdminAccess {
    let headers = request.headers();
    let hosts: Vec<&[u8]> = headers
        .get_all(header::HOST)
        .iter()
        .map(|v| v.as_bytes())
        .collect();
    let facts = AdminRequest {
        path: request.uri().path(),
        hosts: &hosts,
        target_authority: request.uri().authority().map(|a| a.as_str().as_bytes()),
        origin: headers.get(header::ORIGIN).map(|v| v.as_bytes()),
        authorization: headers.get(header::AUTHORIZATION).map(|v| v.as_bytes()),
        local,
    };
    admin_access(&facts, proxy.config.settings.admin_token.as_ref())
}

/// 403 or 401 (with its `WWW-Authenticate` challenge).
fn refusal(access: AdminAccess) -> Response<ProxyBody> {
    let status = StatusCode::from_u16(access.status()).unwrap_or(StatusCode::FORBIDDEN);
    let mut response = body(status, "text/plain", format!("{}\n", access.reason()));
    if access == AdminAccess::TokenRequired {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer realm=\"sluice admin\""),
        );
    }
    response
}

/// `GET /readyz`: 200 while accepting, 503 from the moment a drain starts (a load
/// balancer then stops sending new connections).
fn readiness(shared: &Shared) -> Response<ProxyBody> {
    if shared.is_draining() {
        body(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "draining\n")
    } else {
        body(StatusCode::OK, "text/plain", "ready\n")
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

/// `GET /proxy.pac`, `GET /wpad.dat`: the `[pac]` script, or 404 without one.
fn pac(script: Option<&str>) -> Response<ProxyBody> {
    match script {
        Some(script) => body(StatusCode::OK, PAC_CONTENT_TYPE, script.to_owned()),
        None => body(StatusCode::NOT_FOUND, "text/plain", "no [pac] configured\n"),
    }
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
/// What `/explain` was asked: the query's parameters, checked.
struct ExplainQuery {
    /// Without IPv6 brackets.
    host: String,
    client: IpAddr,
    port: u16,
    user: Option<String>,
    sni: Option<String>,
}

impl ExplainQuery {
    /// The parameters of `query`, or the error to answer with (400).
    fn parse(query: &str) -> Result<Self, &'static str> {
        let param = |name: &str| {
            form_urlencoded::parse(query.as_bytes())
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.into_owned())
        };
        let host = param("host").ok_or("the host parameter is required")?;
        let client = match param("client").map(|c| c.parse::<IpAddr>()) {
            None => IpAddr::from([127, 0, 0, 1]),
            Some(Ok(ip)) => ip,
            Some(Err(_)) => return Err("client is not an IP address"),
        };
        let port = match param("port").map(|p| p.parse::<u16>()) {
            None => 443,
            Some(Ok(port)) => port,
            Some(Err(_)) => return Err("port is not a port number"),
        };
        Ok(ExplainQuery {
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            client,
            port,
            user: param("user").filter(|u| !u.is_empty()),
            sni: param("sni"),
        })
    }
}

/// The user's groups as the directory gives them (SPEC §10), and the error of a lookup
/// that failed (the rules are then explained without groups).
async fn groups_of(
    auth: Option<&Authenticator>,
    user: Option<&str>,
) -> (Vec<String>, Option<String>) {
    match (user, auth) {
        (Some(user), Some(auth)) => match auth.groups_of(user).await {
            Ok(groups) => (groups, None),
            Err(e) => (Vec::new(), Some(e)),
        },
        _ => (Vec::new(), None),
    }
}

async fn explain(proxy: &Proxy, query: &str) -> Response<ProxyBody> {
    let query = match ExplainQuery::parse(query) {
        Ok(query) => query,
        Err(error) => return json_body(StatusCode::BAD_REQUEST, &json!({ "error": error })),
    };
    let (host, sni) = (&query.host, query.sni.as_deref());
    let dest_ip: Option<IpAddr> = host.parse().ok();
    let user = query.user.as_deref();
    let (groups, groups_error) = groups_of(proxy.auth.as_ref(), user).await;
    let facts = SslFacts {
        client: query.client,
        user,
        groups: &groups,
        user_agent: None,
        dest_name: dest_ip.is_none().then_some(host.as_str()),
        dest_ip,
        port: query.port,
    };
    let learned = sni
        .or(facts.dest_name)
        .and_then(sluice_policy::normalize_domain)
        .is_some_and(|name| proxy.bypass.is_bypassed(&name));
    let explanation = proxy.config.policy.explain_learned(&facts, sni, learned);
    let mut body = explanation_json(&explanation, host, sni);
    body["user"] = json!(user);
    body["groups"] = json!(groups);
    if let Some(error) = groups_error {
        body["groups_error"] = json!(error);
    }
    json_body(StatusCode::OK, &body)
}

fn explanation_json(explanation: &Explanation, host: &str, sni: Option<&str>) -> serde_json::Value {
    // Stage `client_hello` decides last when it decides at all: its rule and mechanism
    // are the explanation's.
    let client_hello = |d: &SslDecision| {
        json!({
            "action": d.action.as_str(),
            "rule": explanation.rule(),
            "by": explanation.client_hello_by.map(|by| by.as_str()),
        })
    };
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
        "client_hello": explanation.client_hello.as_ref().map(client_hello),
        "sni_mismatch": explanation.sni_mismatch.map(|m| m.as_str()),
        "stage": decided.map(|(stage, _)| stage.as_str()),
        "action": decided.map(|(_, d)| d.action.as_str()),
        "rule": explanation.rule(),
        "by": explanation.decided_by().map(|by| by.as_str()),
        "text": explanation.to_string(),
    })
}

/// `GET /bypass`: the learned bypasses in force.
fn list_bypass(bypass: &BypassTable) -> Response<ProxyBody> {
    let entries: Vec<serde_json::Value> = bypass
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
fn delete_bypass(bypass: &BypassTable, cluster: &Cluster, sni: &str) -> Response<ProxyBody> {
    let sni = percent_encoding::percent_decode_str(sni)
        .decode_utf8_lossy()
        .into_owned();
    let name = sluice_policy::normalize_domain(&sni).unwrap_or(sni);
    if bypass.remove(&name) {
        cluster.tell(Event::Deleted(name));
        body(StatusCode::NO_CONTENT, "text/plain", Bytes::new())
    } else {
        body(
            StatusCode::NOT_FOUND,
            "text/plain",
            "no learned bypass for that name\n",
        )
    }
}
