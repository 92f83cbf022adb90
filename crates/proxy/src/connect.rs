//! The life of a CONNECT (SPEC §1): port check, dial, the `connect`-stage decision,
//! `200`, the ClientHello, the SNI check, the `client_hello`-stage decision, and then
//! tunnel, bump or terminate. Writes exactly one connect record.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use sluice_policy::{
    normalize_domain, same_domain, ConnectStep, NonTls, SniMismatch, SslAction, SslDecision,
    SslFacts, Stage,
};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::access_log::Record;
use crate::auth::Verdict;
use crate::bump::{self, BumpTarget, Route};
use crate::client_hello_reader::{read_client_hello, HelloRead};
use crate::context::Proxy;
use crate::head::{parse_authority, RequestHead};
use crate::metrics::Phase;
use crate::relay::relay;
use crate::replies::{error_response_with, send_bytes, send_error, CONNECTION_ESTABLISHED};

/// Handle a CONNECT whose head has been read; `early` are bytes the client sent after
/// the head without waiting for our `200`.
pub async fn handle_connect(
    proxy: Arc<Proxy>,
    client: TcpStream,
    peer: SocketAddr,
    head: RequestHead,
    early: Vec<u8>,
) {
    let started = Instant::now();
    let mut record = Record::new("connect");
    record.client = Some(peer.ip());
    record.client_port = Some(peer.port());
    run(&proxy, &mut record, client, peer, &head, early).await;
    record.duration_ms = Some(started.elapsed().as_millis() as u64);
    proxy.log.write(&record);
}

/// Refuse the CONNECT with an error status; the record says `action = "refused"`.
async fn refuse(record: &mut Record, client: &mut TcpStream, status: u16, why: &str, kind: &str) {
    record.action = Some("refused");
    record.status = Some(status);
    record.error = Some(kind.to_string());
    send_error(client, status, why).await;
}

async fn run(
    proxy: &Arc<Proxy>,
    record: &mut Record,
    mut client: TcpStream,
    peer: SocketAddr,
    head: &RequestHead,
    early: Vec<u8>,
) {
    let settings = &proxy.config.settings;
    // Parsed before authentication so that a 407 is logged with its host and port too.
    let authority = parse_authority(&head.target);
    if let Ok((host, port)) = &authority {
        record.host = Some(host.clone());
        record.port = Some(*port);
    }
    if let Some(auth) = &proxy.auth {
        match auth
            .check(head.header("proxy-authorization"), peer.ip())
            .await
        {
            Verdict::User(user, groups) => {
                record.user = Some(user);
                record.groups = groups;
            }
            Verdict::Refused => {
                record.action = Some("refused");
                record.status = Some(407);
                record.error = Some("auth_required".into());
                let challenge = auth.challenge();
                let why = "proxy authentication required";
                let response = error_response_with(407, why, &[("Proxy-Authenticate", &challenge)]);
                return send_bytes(&mut client, &response).await;
            }
            Verdict::Unavailable => {
                let why = "the directory that checks proxy credentials cannot be reached";
                return refuse(record, &mut client, 503, why, "auth_unavailable").await;
            }
        }
    }
    let (host, port) = match authority {
        Ok(authority) => authority,
        Err(reason) => {
            let why = format!("bad CONNECT target {:?}: {reason}", head.target);
            return refuse(record, &mut client, 400, &why, reason).await;
        }
    };
    if !settings.connect_ports.contains(&port) {
        let why = format!("CONNECT to port {port} is not allowed");
        return refuse(record, &mut client, 403, &why, "port_not_allowed").await;
    }
    let target = Target {
        host: &host,
        port,
        user_agent: head.header_str("user-agent"),
        explicit: true,
    };
    open(proxy, record, client, peer, &target, early).await
}

/// Where a connection is for: a CONNECT's target, or a transparent connection's
/// original destination (its IP standing for the host).
pub(crate) struct Target<'a> {
    pub host: &'a str,
    pub port: u16,
    pub user_agent: Option<&'a str>,
    /// A CONNECT, answered with `200` once dialled; a transparent connection gets none.
    pub explicit: bool,
}

/// Handle a transparently intercepted connection that did not start as HTTP (SPEC
/// §11): the CONNECT flow without a CONNECT, for the original destination `dest`.
/// `early` are the bytes read to tell what it speaks.
pub async fn handle_transparent_tls(
    proxy: Arc<Proxy>,
    client: TcpStream,
    peer: SocketAddr,
    dest: SocketAddr,
    early: Vec<u8>,
) {
    let started = Instant::now();
    let mut record = transparent_record(peer, dest);
    let host = dest.ip().to_string();
    let target = Target {
        host: &host,
        port: dest.port(),
        user_agent: None,
        explicit: false,
    };
    open(&proxy, &mut record, client, peer, &target, early).await;
    record.duration_ms = Some(started.elapsed().as_millis() as u64);
    proxy.log.write(&record);
}

/// The connect record of a transparent connection to `dest`.
pub(crate) fn transparent_record(peer: SocketAddr, dest: SocketAddr) -> Record {
    let mut record = Record::new("connect");
    record.mode = "transparent";
    record.client = Some(peer.ip());
    record.client_port = Some(peer.port());
    record.host = Some(dest.ip().to_string());
    record.port = Some(dest.port());
    record
}

/// Dial the target, decide at stage `connect`, then read the ClientHello and decide
/// at stage `client_hello`.
async fn open(
    proxy: &Arc<Proxy>,
    record: &mut Record,
    mut client: TcpStream,
    peer: SocketAddr,
    target: &Target<'_>,
    early: Vec<u8>,
) {
    let settings = &proxy.config.settings;
    let (host, port, user_agent) = (target.host, target.port, target.user_agent);
    let connect_ip: Option<IpAddr> = host.parse().ok();
    let connect_name = connect_ip.is_none().then_some(host);
    // Where to dial is decided before dialling, on what the CONNECT says (SPEC §11).
    let mut connect_facts = SslFacts {
        client: peer.ip(),
        user: record.user.as_deref(),
        groups: &record.groups,
        user_agent,
        dest_name: connect_name,
        dest_ip: connect_ip,
        port,
    };
    let via = proxy.config.policy.via_connect(&connect_facts);
    record.via = Some(via.as_str().to_string());
    let parent = settings.parent(&via);
    let dialing = Instant::now();
    let dialed = match parent {
        None => proxy.dialer.dial(host, port).await.map(|(stream, ip)| {
            let route = Route::Direct(SocketAddr::new(ip, port));
            (stream, Some(ip), route)
        }),
        // The parent resolves the name: only a literal is a destination IP here.
        Some(parent) => {
            let route = Route::Parent {
                parent: Arc::new(parent.clone()),
                host: Arc::from(host),
                port,
            };
            let tunneled = proxy.dialer.tunnel_via(parent, host, port).await;
            tunneled.map(|stream| (stream, connect_ip, route))
        }
    };
    proxy.metrics.phase(Phase::Connect, dialing.elapsed());
    let (upstream, dest_ip, route) = match dialed {
        Ok(connected) => connected,
        Err(e) => {
            record.parent_status = e.parent_status();
            return refuse(record, &mut client, e.status(), &e.to_string(), e.kind()).await;
        }
    };
    record.dest_ip = dest_ip;
    connect_facts.dest_ip = dest_ip;
    let step = proxy.config.policy.decide_connect(&connect_facts);
    if target.explicit {
        if client.write_all(CONNECTION_ESTABLISHED).await.is_err() {
            record.error = Some("client_closed".into());
            return;
        }
        record.status = Some(200);
    }

    if let ConnectStep::Tunnel(decision) = step {
        set_decision(record, Stage::Connect, &decision);
        return tunnel(proxy, record, client, upstream, early).await;
    }

    record.stage = Some(Stage::ClientHello.as_str());
    let timeout = settings.limits.client_hello_timeout;
    let reading = Instant::now();
    let read = read_client_hello(&mut client, early, timeout).await;
    proxy.metrics.phase(Phase::ClientHello, reading.elapsed());
    let (hello, held) = match read {
        HelloRead::Hello { hello, held } => (hello, held),
        HelloRead::NotTls { held } => {
            record.error = Some("not_tls".into());
            return match settings.tls.on_non_tls {
                NonTls::Tunnel => match proxy.config.policy.decide_non_tls_tunnel(&connect_facts) {
                    Some(terminated) => set_decision(record, Stage::ClientHello, &terminated),
                    None => {
                        record.action = Some(SslAction::Tunnel.as_str());
                        tunnel(proxy, record, client, upstream, held).await
                    }
                },
                NonTls::Terminate => record.action = Some(SslAction::Terminate.as_str()),
            };
        }
        HelloRead::Failed(reason) => {
            record.action = Some(SslAction::Terminate.as_str());
            record.error = Some(reason.into());
            return;
        }
    };
    record.sni = hello.sni.clone();
    record.ech = Some(hello.ech);

    let sni_differs = matches!(
        (hello.sni.as_deref(), connect_name),
        (Some(sni), Some(name)) if !same_domain(sni, name)
    );
    // Real ECH: the outer SNI is the provider's public name, not a bypass (SPEC §1.3).
    let real_ech = sni_differs && hello.ech;
    if sni_differs && !real_ech && settings.tls.on_sni_mismatch == SniMismatch::Terminate {
        record.action = Some(SslAction::Terminate.as_str());
        record.error = Some("sni_mismatch".into());
        return;
    }

    let hello_facts = SslFacts {
        dest_name: hello.sni.as_deref().or(connect_name),
        ..connect_facts
    };
    // An SNI given for a CONNECT to an address is only believed if it resolves to it;
    // an unverified one never earns a tunnel, learned or by a rule on the name.
    let sni_verified = match (hello.sni.as_deref(), connect_ip) {
        (Some(sni), Some(ip)) => proxy.dialer.resolves_to(sni, ip).await,
        _ => true,
    };
    let policy = &proxy.config.policy;
    let decision = if real_ech {
        policy.decide_client_hello_ech(&hello_facts)
    } else if sni_verified {
        let learned = learned_bypass(proxy, hello_facts.dest_name);
        policy.decide_client_hello_learned(&hello_facts, learned)
    } else {
        policy.decide_client_hello_unverified(&hello_facts)
    };
    set_decision(record, Stage::ClientHello, &decision);
    match decision.action {
        SslAction::Tunnel | SslAction::TunnelSni => {
            tunnel(proxy, record, client, upstream, held).await
        }
        // Closing is the whole answer: no block page, nothing sent upstream.
        SslAction::Terminate => {}
        SslAction::Bump => {
            let target = BumpTarget {
                host,
                connect_ip,
                port,
                dest_ip,
                route,
                sni: hello.sni.as_deref(),
                sni_unverified: !sni_verified,
                client_alpn: &hello.alpn,
                cert_errors: decision.cert_errors,
            };
            Box::pin(bump::bump(proxy, record, client, held, upstream, &target)).await
        }
    }
    if !sni_verified {
        // The record says why no name rule could apply (SPEC §1.3), whatever came after;
        // a certificate error stays visible in `upstream_cert`.
        record.error = Some("sni_unverified".into());
    }
}

/// Whether the table holds the name of stage `client_hello` now (a fact of its
/// decision).
fn learned_bypass(proxy: &Proxy, name: Option<&str>) -> bool {
    name.and_then(normalize_domain)
        .is_some_and(|name| proxy.bypass.is_bypassed(&name))
}

fn set_decision(record: &mut Record, stage: Stage, decision: &SslDecision) {
    record.stage = Some(stage.as_str());
    record.action = Some(decision.action.as_str());
    record.rule = Some(decision.rule.clone());
}

/// Send the held bytes on unchanged, then relay raw bytes both ways.
async fn tunnel(
    proxy: &Proxy,
    record: &mut Record,
    client: TcpStream,
    mut upstream: TcpStream,
    held: Vec<u8>,
) {
    if !held.is_empty() {
        if let Err(e) = upstream.write_all(&held).await {
            record.error = Some(format!("upstream write failed: {e}"));
            return;
        }
    }
    // The hello's buffer is not needed while the tunnel lasts.
    let held_len = held.len() as u64;
    drop(held);
    // Boxed, as bump is: the connection's future stays small whichever path it takes.
    let outcome = Box::pin(relay(
        client,
        upstream,
        proxy.config.settings.limits.idle_timeout,
    ))
    .await;
    record.bytes_up = Some(outcome.bytes_up + held_len);
    record.bytes_down = Some(outcome.bytes_down);
    if outcome.error.is_some() {
        record.error = outcome.error;
    }
}
