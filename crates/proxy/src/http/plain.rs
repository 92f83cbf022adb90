//! Plain HTTP proxy requests in absolute form (`GET http://host/path`), served with
//! keep-alive on the client side and forwarded over pooled upstream connections.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use http::header::{HeaderValue, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use sluice_policy::{decide_host, Authority, HostDecision, HostFacts, HostMismatch, UpstreamProxy};
use tokio::net::TcpStream;

use crate::auth::{is_negotiate, Authenticator, Verdict};
use crate::body::ProxyBody;
use crate::context::Proxy;
use crate::http::exchange::exchange;
use crate::http::graceful::until_drained;
use crate::http::inspection::RequestInfo;
use crate::http::read_ahead::ReadAhead;
use crate::http::send::PlainUpstream;
use crate::http::{message, respond, serve};
use crate::outcome::{Failure, Kind, Phase};
use crate::telemetry::access_log::Record;
use crate::telemetry::recorder::Recorder;

/// Serve a client connection whose first request head (in `buffered`, with any bytes
/// after it) is a plain HTTP proxy request; or, with the original destination `dest`,
/// a transparently intercepted one, whose requests go there (SPEC §11).
pub async fn serve_plain(
    proxy: Arc<Proxy>,
    client: TcpStream,
    peer: SocketAddr,
    buffered: Vec<u8>,
    dest: Option<SocketAddr>,
) {
    let mut template = Record::new("http");
    if dest.is_some() {
        template.mode = "transparent";
    }
    template.client = Some(peer.ip());
    template.client_port = Some(peer.port());
    let limits = &proxy.config.settings.limits;
    let session = Session::default();
    let connection = serve::client_http1(limits)
        .serve_connection(
            TokioIo::new(ReadAhead::with_prefix(buffered, client)),
            service_fn(|request| {
                let proxy = proxy.clone();
                let template = template.clone();
                let session = session.clone();
                async move {
                    let response = forward_plain(&proxy, &template, &session, request, dest).await;
                    Ok::<_, Infallible>(response)
                }
            }),
        )
        .with_upgrades();
    let served = until_drained(connection, proxy.draining.clone()).await;
    if let Err(e) = served {
        tracing::debug!(error = %e, %peer, "plain HTTP connection ended with an error");
    }
}

/// The identity a client connection proved with a Negotiate token (SPEC §10: its later
/// requests need no new token): the user and its groups.
#[derive(Clone, Default)]
struct Session(Arc<Mutex<Option<Identity>>>);

/// A user and the DNs of its groups.
type Identity = (String, Vec<String>);

impl Session {
    fn get(&self) -> Option<Identity> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set(&self, user: &str, groups: &[String]) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((user.to_string(), groups.to_vec()));
    }
}

/// A request's credentials checked, or (without any) the connection's Negotiate identity.
async fn check_credentials(
    auth: &Authenticator,
    session: &Session,
    credentials: Option<&[u8]>,
    client: IpAddr,
) -> Verdict {
    if credentials.is_none() {
        if let Some((user, groups)) = session.get() {
            return Verdict::User(user, groups);
        }
    }
    let verdict = auth.check(credentials, client).await;
    if let (Verdict::User(user, groups), Some(header)) = (&verdict, credentials) {
        if is_negotiate(header) {
            session.set(user, groups);
        }
    }
    verdict
}

async fn forward_plain(
    proxy: &Proxy,
    template: &Record,
    session: &Session,
    request: Request<Incoming>,
    dest: Option<SocketAddr>,
) -> Response<ProxyBody> {
    let uri = request.uri();
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let url = match uri.authority() {
        Some(authority) => {
            message::absolute_url(uri.scheme_str().unwrap_or("http"), authority.as_str(), path)
        }
        None => uri.to_string(),
    };
    let record = respond::http_record(template, &request, url.clone());
    let log = &proxy.log;
    if let Some(dest) = dest {
        return Box::pin(forward_transparent(proxy, record, request, dest)).await;
    }
    // Before authentication: a browser fetches its PAC script without proxy credentials.
    if let Some(script) = pac_script(proxy, &request) {
        return serve_pac(log, record, &request, script);
    }
    let record =
        match authenticate(proxy.auth.as_ref(), &proxy.log, session, record, &request).await {
            Ok(record) => record,
            Err(refused) => return refused,
        };
    let authority = match proxy_target(proxy, &request) {
        Ok(authority) => authority,
        Err((failure, why)) => {
            return respond::refuse(log, record, StatusCode::BAD_REQUEST, &failure, &why)
        }
    };
    let path = path.to_string();
    forward_explicit(proxy, record, request, authority, &path).await
}

/// Proxy authentication (`auth`): the record learns the user, or the request is
/// answered 407 or 503.
async fn authenticate(
    auth: Option<&Authenticator>,
    log: &Recorder,
    session: &Session,
    mut record: Record,
    request: &Request<Incoming>,
) -> Result<Record, Response<ProxyBody>> {
    let Some(auth) = auth else {
        return Ok(record);
    };
    let client = record.client.unwrap_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED));
    let credentials = request
        .headers()
        .get(PROXY_AUTHORIZATION)
        .map(|v| v.as_bytes());
    match check_credentials(auth, session, credentials, client).await {
        Verdict::User(user, groups) => {
            record.user = Some(user);
            record.groups = groups;
            Ok(record)
        }
        Verdict::Refused => {
            let status = StatusCode::PROXY_AUTHENTICATION_REQUIRED;
            let failure = Kind::ProxyAuthRequired.at(Phase::Request);
            let mut response = respond::refuse_plainly(log, record, status, &failure);
            for challenge in auth.challenges() {
                if let Ok(challenge) = HeaderValue::from_str(&challenge) {
                    response.headers_mut().append(PROXY_AUTHENTICATE, challenge);
                }
            }
            Err(response)
        }
        Verdict::Unavailable => {
            let why = "the directory that checks proxy credentials cannot be reached";
            let status = StatusCode::SERVICE_UNAVAILABLE;
            let failure = Kind::AuthUnavailable.at(Phase::Request);
            Err(respond::refuse(log, record, status, &failure, why))
        }
    }
}

/// The target of a proxy request: an absolute `http://` URL whose authority the host
/// check accepts. `Err`: the failure and the one-line answer (400).
fn proxy_target(
    proxy: &Proxy,
    request: &Request<Incoming>,
) -> Result<Authority, (Failure, String)> {
    let refused = |kind: Kind| {
        let failure = kind.at(Phase::Request);
        let why = failure.log_text().into_owned();
        (failure, why)
    };
    if request.method() == Method::CONNECT {
        return Err(refused(Kind::ConnectNotFirst));
    }
    if request.uri().scheme_str() != Some("http") || request.uri().authority().is_none() {
        return Err(refused(Kind::NotProxyRequest));
    }
    plain_authority(proxy.config.settings.tls.on_host_mismatch, request, 80).map_err(|reason| {
        let failure = Kind::BadRequest(reason).at(Phase::Request);
        (failure, format!("bad request: {reason}"))
    })
}

/// Forward an explicit proxy request: `via_http` decides where it leaves; directly, the
/// name is resolved here so that the deny list and the `ips` rules judge the address
/// that will be dialled (SPEC §3 Destinations).
async fn forward_explicit(
    proxy: &Proxy,
    mut record: Record,
    request: Request<Incoming>,
    authority: Authority,
    path: &str,
) -> Response<ProxyBody> {
    let log = &proxy.log;
    let client = record.client.unwrap_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED));
    record.url = Some(message::absolute_url("http", &authority.to_string(), path));
    record.host = Some(authority.host.clone());
    record.port = Some(authority.port);
    let user = record.user.clone();
    let url = record.url.clone().unwrap_or_default();
    // Where the request leaves is decided on what it says (SPEC §11); through a parent,
    // sluice resolves nothing, so only a literal is a destination IP.
    let literal = crate::dial::uri_host(request.uri()).parse::<IpAddr>().ok();
    let info = RequestInfo::new(
        &request,
        client,
        user.clone(),
        Some(authority.host.clone()),
        literal,
        authority.port,
        url.clone(),
    )
    .with_groups(record.groups.clone());
    let via = proxy.config.policy.via_http(&info.facts(None));
    record.via = Some(via.as_str().to_string());
    if let Some(parent) = proxy.config.settings.parent(&via) {
        return Box::pin(via_parent(proxy, record, info, request, parent, &authority)).await;
    }
    let addr = match proxy.dialer.resolve(&authority.host, authority.port).await {
        Ok(addrs) => addrs[0],
        Err(e) => return respond::refuse_dial(log, record, &e),
    };
    record.dest_ip = Some(addr.ip());
    let info = RequestInfo::new(
        &request,
        client,
        user,
        Some(authority.host.clone()),
        Some(addr.ip()),
        authority.port,
        url,
    )
    .with_groups(record.groups.clone());
    let upstream = PlainUpstream::Server {
        client: &proxy.plain,
        addr,
        authority: &authority.to_string(),
    };
    // Boxed: the exchange's state is large, and HTTP/1.1 connections keep room for this
    // future while they wait for the next request.
    Box::pin(exchange(proxy, record, info, request, upstream)).await
}

/// Forward a request of a transparently intercepted connection to its original
/// destination `dest`: its `Host` names the target for rules and logs, but only `dest`
/// is dialled, never what that name resolves to (SPEC §11). Neither proxy credentials
/// nor a parent proxy apply: the client does not know it is proxied.
async fn forward_transparent(
    proxy: &Proxy,
    mut record: Record,
    request: Request<Incoming>,
    dest: SocketAddr,
) -> Response<ProxyBody> {
    let log = &proxy.log;
    if request.method() == Method::CONNECT {
        let failure = Kind::ConnectOnTransparent.at(Phase::Request);
        return respond::refuse_plainly(log, record, StatusCode::BAD_REQUEST, &failure);
    }
    let authority = match plain_authority(
        proxy.config.settings.tls.on_host_mismatch,
        &request,
        dest.port(),
    ) {
        Ok(authority) => authority,
        Err(kind) => return respond::bad_request(log, record, kind),
    };
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
    let url = message::absolute_url("http", &authority.to_string(), path);
    record.url = Some(url.clone());
    record.host = Some(authority.host.clone());
    record.port = Some(authority.port);
    if let Err(e) = proxy
        .dialer
        .check_literal(&dest.ip().to_string(), dest.port())
    {
        return respond::refuse_dial(log, record, &e);
    }
    record.dest_ip = Some(dest.ip());
    record.via = Some(sluice_policy::DIRECT.to_string());
    let client = record.client.unwrap_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED));
    let info = RequestInfo::new(
        &request,
        client,
        None,
        Some(authority.host.clone()),
        Some(dest.ip()),
        authority.port,
        url,
    );
    let upstream = PlainUpstream::Server {
        client: &proxy.plain,
        addr: dest,
        authority: &authority.to_string(),
    };
    exchange(proxy, record, info, request, upstream).await
}

/// Send a plain request through `parent` in absolute form. An IP literal still gets the
/// loop and destination checks; a name is the parent's to resolve.
async fn via_parent(
    proxy: &Proxy,
    mut record: Record,
    info: RequestInfo,
    request: Request<Incoming>,
    parent: &UpstreamProxy,
    authority: &Authority,
) -> Response<ProxyBody> {
    let log = &proxy.log;
    if let Err(e) = proxy.dialer.check_literal(&authority.host, authority.port) {
        return respond::refuse_dial(log, record, &e);
    }
    record.dest_ip = info.dest_ip;
    let Some((_, client)) = proxy
        .parent_plain
        .iter()
        .find(|(name, _)| *name == parent.name)
    else {
        let why = format!("no connection pool for the parent proxy {}", parent.name);
        let failure = Kind::NoParentPool.at(Phase::Dial).with_detail(why);
        return respond::refuse_plainly(log, record, StatusCode::BAD_GATEWAY, &failure);
    };
    let authority = authority.to_string();
    let upstream = PlainUpstream::Parent {
        client,
        credentials: parent.credentials.as_ref(),
        authority: &authority,
    };
    exchange(proxy, record, info, request, upstream).await
}

/// The `[pac]` script when `request` asks the proxy itself for it (SPEC §11): an
/// origin-form `GET` (or `HEAD`) of `/proxy.pac` or `/wpad.dat`. On the proxy listener
/// an origin-form target can only be meant for sluice; an absolute-form one is a request
/// to forward, whatever its path.
fn pac_script<'a>(proxy: &'a Proxy, request: &Request<Incoming>) -> Option<&'a str> {
    let uri = request.uri();
    let origin_form = uri.scheme().is_none() && uri.authority().is_none();
    let get = matches!(*request.method(), Method::GET | Method::HEAD);
    let wanted = origin_form && get && sluice_policy::is_pac_path(uri.path());
    wanted
        .then_some(proxy.config.settings.pac.as_deref())
        .flatten()
}

/// Answer with the PAC script; the record's URL is the script's address as the client
/// named it (its `Host`).
fn serve_pac(
    log: &Recorder,
    mut record: Record,
    request: &Request<Incoming>,
    script: &str,
) -> Response<ProxyBody> {
    if let Some(host) = request
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
    {
        record.url = Some(message::absolute_url("http", host, request.uri().path()));
    }
    record.verdict = Some("allowed");
    let mut response = Response::new(crate::body::full(script.to_owned()));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(sluice_policy::PAC_CONTENT_TYPE),
    );
    respond::answered(log, record, response)
}

/// The authority a plain request is for (SPEC §3 step 1), after the framing checks that
/// hold for every request (§9); the error is the log's reason for a 400.
fn plain_authority(
    on_mismatch: HostMismatch,
    request: &Request<Incoming>,
    default_port: u16,
) -> Result<Authority, &'static str> {
    message::check_framing(request)?;
    let hosts = message::host_headers(request);
    let facts = HostFacts {
        target: request.uri().authority().map(|a| a.as_str()),
        host_headers: &hosts,
        default_port,
        tls_name: None,
        on_mismatch,
        implied: None,
    };
    match decide_host(&facts) {
        // Without a TLS name nothing is misdirected.
        HostDecision::Forward(authority) | HostDecision::Misdirected(authority) => Ok(authority),
        HostDecision::BadRequest(error) => Err(error.as_str()),
    }
}
