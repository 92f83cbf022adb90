//! The life of a CONNECT (SPEC §1): port check, dial, the `connect`-stage decision,
//! `200`, the ClientHello, the SNI check, the `client_hello`-stage decision, and then
//! tunnel, bump or terminate. Writes exactly one connect record.

pub(crate) mod client_hello_reader;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use sluice_policy::{
    normalize_domain, ConnectStep, HelloDecision, HelloError, HelloFacts, NonTlsStep, SslAction,
    SslDecision, SslFacts, Stage, UpstreamProxy,
};
use sluice_tls::client_hello::ClientHello;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::auth::{Authenticator, Verdict};
use crate::bump::{self, BumpTarget, Route};
use crate::bypass::BypassTable;
use crate::connect::client_hello_reader::{read_client_hello, HelloRead};
use crate::context::Proxy;
use crate::dial::{DialError, Dialer};
use crate::http::head::{parse_authority, RequestHead};
use crate::http::replies::{error_response_with, send_bytes, send_error, CONNECTION_ESTABLISHED};
use crate::outcome::{Failure, Kind, Phase};
use crate::telemetry::access_log::Record;
use crate::telemetry::metrics::timed;
use crate::telemetry::recorder::Recorder;
use crate::tunnel::relay::relay;

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
    closed(&proxy.log, record, started);
}

/// Write the connection's one connect record, with how long it lasted.
fn closed(log: &Recorder, mut record: Record, started: Instant) {
    record.duration_ms = Some(started.elapsed().as_millis() as u64);
    log.write(&record);
}

/// Refuse the CONNECT with an error status; the record says `action = "refused"`.
async fn refuse(
    record: &mut Record,
    client: &mut TcpStream,
    status: u16,
    why: &str,
    failure: &Failure,
) {
    record.action = Some("refused");
    record.status = Some(status);
    record.fail(failure);
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
        // Boxed: a directory's connect is 5 KiB of future, which every tunnel would
        // otherwise carry for its whole life (a task is as large as its largest state).
        if !Box::pin(authenticate(auth, record, &mut client, head, peer)).await {
            return;
        }
    }
    let (host, port) = match authority {
        Ok(authority) => authority,
        Err(reason) => {
            let why = format!("bad CONNECT target {:?}: {reason}", head.target);
            let failure = Kind::BadRequest(reason).at(Phase::Request);
            return refuse(record, &mut client, 400, &why, &failure).await;
        }
    };
    if !settings.connect_ports.contains(&port) {
        let why = format!("CONNECT to port {port} is not allowed");
        let failure = Kind::PortNotAllowed.at(Phase::Request);
        return refuse(record, &mut client, 403, &why, &failure).await;
    }
    let target = Target {
        host: &host,
        port,
        user_agent: head.header_str("user-agent"),
        explicit: true,
    };
    open(proxy, record, client, peer, &target, early).await
}

/// Proxy authentication of a CONNECT: the user and groups go in the record, or the
/// client is answered (407, or 503 when the directory cannot be reached) and `false`
/// says so.
async fn authenticate(
    auth: &Authenticator,
    record: &mut Record,
    client: &mut TcpStream,
    head: &RequestHead,
    peer: SocketAddr,
) -> bool {
    match auth
        .check(head.header("proxy-authorization"), peer.ip())
        .await
    {
        Verdict::User(user, groups) => {
            record.user = Some(user);
            record.groups = groups;
            true
        }
        Verdict::Refused => {
            record.action = Some("refused");
            record.status = Some(407);
            record.fail(&Kind::AuthRequired.at(Phase::Request));
            let challenges = auth.challenges();
            let headers: Vec<(&str, &str)> = challenges
                .iter()
                .map(|c| ("Proxy-Authenticate", c.as_str()))
                .collect();
            let why = "proxy authentication required";
            let response = error_response_with(407, why, &headers);
            send_bytes(client, &response).await;
            false
        }
        Verdict::Unavailable => {
            let why = "the directory that checks proxy credentials cannot be reached";
            let failure = Kind::AuthUnavailable.at(Phase::Request);
            refuse(record, client, 503, why, &failure).await;
            false
        }
    }
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
    closed(&proxy.log, record, started);
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

/// The CONNECT flow from its dial, in SPEC order: dial, the `connect`-stage decision,
/// `200`, the ClientHello, the `client_hello`-stage decision, then what it says.
async fn open(
    proxy: &Arc<Proxy>,
    record: &mut Record,
    mut client: TcpStream,
    peer: SocketAddr,
    target: &Target<'_>,
    early: Vec<u8>,
) {
    // The decisions read who the client is while the record is written along the way.
    let (user, groups) = (record.user.clone(), record.groups.clone());
    let mut facts = target.facts(peer, user.as_deref(), &groups);
    let (upstream, route) = match dial(proxy, record, &facts, target).await {
        Ok(dialed) => dialed,
        Err(e) => {
            return refuse(
                record,
                &mut client,
                e.status(),
                &e.to_string(),
                &e.failure(),
            )
            .await
        }
    };
    facts.dest_ip = record.dest_ip;
    let step = proxy.config.policy.decide_connect(&facts);
    if target.explicit {
        if client.write_all(CONNECTION_ESTABLISHED).await.is_err() {
            return record.fail(&Kind::ClientClosed.at(Phase::Request));
        }
        record.status = Some(200);
    }
    if let ConnectStep::Tunnel(decision) = step {
        set_decision(record, Stage::Connect, &decision);
        return tunnel(
            proxy.config.settings.limits.idle_timeout,
            record,
            client,
            upstream,
            early,
        )
        .await;
    }
    let dest_ip = record.dest_ip;
    let connect = Connected {
        target,
        facts,
        dest_ip,
        route,
    };
    hello_stage(proxy, record, client, upstream, early, &connect).await
}

/// Stage `client_hello`: read the ClientHello, then what it and the rules say.
async fn hello_stage(
    proxy: &Arc<Proxy>,
    record: &mut Record,
    mut client: TcpStream,
    upstream: TcpStream,
    early: Vec<u8>,
    connect: &Connected<'_>,
) {
    record.stage = Some(Stage::ClientHello.as_str());
    let timeout = proxy.config.settings.limits.client_hello_timeout;
    let reading = read_client_hello(&mut client, early, timeout);
    let (hello, held) = match timed(&proxy.metrics, Phase::ClientHello, reading).await {
        HelloRead::Hello { hello, held } => (hello, held),
        HelloRead::NotTls { held } => {
            return not_tls(proxy, record, &connect.facts, client, upstream, held).await
        }
        HelloRead::Failed(kind) => return terminate(record, &kind.at(Phase::ClientHello)),
    };
    let legs = Legs {
        client,
        upstream,
        held,
    };
    after_hello(proxy, record, legs, connect, &hello).await
}

/// The client's and the server's connections, and the bytes held from the client.
struct Legs {
    client: TcpStream,
    upstream: TcpStream,
    held: Vec<u8>,
}

/// What the CONNECT flow knows once the server is reached.
struct Connected<'a> {
    target: &'a Target<'a>,
    facts: SslFacts<'a>,
    dest_ip: Option<IpAddr>,
    route: Route,
}

impl Target<'_> {
    /// The CONNECT host as an address, when it is one.
    fn ip(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }

    /// The CONNECT host when it is a name.
    fn name(&self) -> Option<&str> {
        self.ip().is_none().then_some(self.host)
    }

    /// The facts of the `connect` stage: what the CONNECT says (SPEC §11: where to dial
    /// is decided on them, before dialling).
    fn facts<'a>(
        &'a self,
        peer: SocketAddr,
        user: Option<&'a str>,
        groups: &'a [String],
    ) -> SslFacts<'a> {
        SslFacts {
            client: peer.ip(),
            user,
            groups,
            user_agent: self.user_agent,
            dest_name: self.name(),
            dest_ip: self.ip(),
            port: self.port,
        }
    }
}

/// The dial phase: `via_connect`, then the server directly or through the parent.
/// The record gets `via`, `dest_ip` and a parent's refusing status.
async fn dial(
    proxy: &Proxy,
    record: &mut Record,
    facts: &SslFacts<'_>,
    target: &Target<'_>,
) -> Result<(TcpStream, Route), DialError> {
    let via = proxy.config.policy.via_connect(facts);
    record.via = Some(via.as_str().to_string());
    let parent = proxy.config.settings.parent(&via);
    let dialing = dial_route(&proxy.dialer, parent, target);
    match timed(&proxy.metrics, Phase::Dial, dialing).await {
        Ok((stream, dest_ip, route)) => {
            record.dest_ip = dest_ip;
            Ok((stream, route))
        }
        Err(e) => {
            record.parent_status = e.parent_status();
            Err(e)
        }
    }
}

/// A TCP connection to the target, directly or through `parent`, with the address
/// reached (through a parent only the CONNECT's own literal: the parent resolves).
async fn dial_route(
    dialer: &Dialer,
    parent: Option<&UpstreamProxy>,
    target: &Target<'_>,
) -> Result<(TcpStream, Option<IpAddr>, Route), DialError> {
    let (host, port) = (target.host, target.port);
    match parent {
        None => {
            let (stream, ip) = dialer.dial(host, port).await?;
            Ok((stream, Some(ip), Route::Direct(SocketAddr::new(ip, port))))
        }
        Some(parent) => {
            let stream = dialer.tunnel_via(parent, host, port).await?;
            let route = Route::Parent {
                parent: Arc::new(parent.clone()),
                host: Arc::from(host),
                port,
            };
            Ok((stream, target.ip(), route))
        }
    }
}

/// The connection ends here: `terminate`, and why.
fn terminate(record: &mut Record, failure: &Failure) {
    record.action = Some(SslAction::Terminate.as_str());
    record.fail(failure);
}

/// A client that does not speak TLS (SPEC §1.3): as the policy decides (`tls.on_non_tls`,
/// and under `tunnel` a rule on what is known may still terminate it).
async fn not_tls(
    proxy: &Proxy,
    record: &mut Record,
    facts: &SslFacts<'_>,
    client: TcpStream,
    upstream: TcpStream,
    held: Vec<u8>,
) {
    let not_tls = Kind::NotTls.at(Phase::ClientHello);
    match proxy.config.policy.decide_non_tls(facts) {
        NonTlsStep::Terminate(None) => terminate(record, &not_tls),
        NonTlsStep::Terminate(Some(rule)) => {
            record.fail(&not_tls);
            set_decision(record, Stage::ClientHello, &rule)
        }
        NonTlsStep::Tunnel => {
            record.fail(&not_tls);
            record.action = Some(SslAction::Tunnel.as_str());
            tunnel(
                proxy.config.settings.limits.idle_timeout,
                record,
                client,
                upstream,
                held,
            )
            .await
        }
    }
}

/// From a ClientHello on: the facts it gives, the `client_hello`-stage decision, and
/// what it says.
async fn after_hello(
    proxy: &Arc<Proxy>,
    record: &mut Record,
    legs: Legs,
    connect: &Connected<'_>,
    hello: &ClientHello,
) {
    record.sni = hello.sni.clone();
    record.ech = Some(hello.ech);
    let sni_verified = sni_verified(&proxy.dialer, connect.target, hello).await;
    let mut facts = HelloFacts {
        connect: connect.facts,
        sni: hello.sni.as_deref(),
        ech: hello.ech,
        sni_verified,
        learned_bypass: false,
    };
    facts.learned_bypass = learned_bypass(&proxy.bypass, facts.name());
    let decided = proxy.config.policy.decide_hello(&facts);
    record.stage = Some(Stage::ClientHello.as_str());
    record.action = Some(decided.decision.action.as_str());
    record.rule = decided.rule().map(str::to_owned);
    carry_out(proxy, record, legs, connect, hello, &decided, sni_verified).await;
    if let Some(error) = decided.error {
        // The record says why no name rule could apply (SPEC §1.3), whatever came after;
        // a certificate error stays visible in `upstream_cert`.
        let kind = match error {
            HelloError::SniMismatch => Kind::SniMismatch,
            HelloError::SniUnverified => Kind::SniUnverified,
        };
        record.fail(&kind.at(Phase::ClientHello));
    }
}

/// For a CONNECT to an address, whether the SNI resolves to it (an SNI is only believed
/// then, SPEC §1.3); without an SNI or for a CONNECT to a name there is nothing to doubt.
async fn sni_verified(dialer: &Dialer, target: &Target<'_>, hello: &ClientHello) -> bool {
    match (hello.sni.as_deref(), target.ip()) {
        (Some(sni), Some(ip)) => dialer.resolves_to(sni, ip).await,
        _ => true,
    }
}

/// Tunnel, terminate or bump, as decided.
async fn carry_out(
    proxy: &Arc<Proxy>,
    record: &mut Record,
    legs: Legs,
    connect: &Connected<'_>,
    hello: &ClientHello,
    decided: &HelloDecision,
    sni_verified: bool,
) {
    let decision = &decided.decision;
    let Legs {
        client,
        upstream,
        held,
    } = legs;
    match decision.action {
        SslAction::Tunnel | SslAction::TunnelSni => {
            tunnel(
                proxy.config.settings.limits.idle_timeout,
                record,
                client,
                upstream,
                held,
            )
            .await
        }
        // Closing is the whole answer: no block page, nothing sent upstream.
        SslAction::Terminate => {}
        SslAction::Bump => {
            let target = BumpTarget {
                host: connect.target.host,
                connect_ip: connect.target.ip(),
                port: connect.target.port,
                dest_ip: connect.dest_ip,
                route: connect.route.clone(),
                sni: hello.sni.as_deref(),
                sni_unverified: !sni_verified,
                client_alpn: &hello.alpn,
                cert_errors: decision.cert_errors,
            };
            Box::pin(bump::bump(proxy, record, client, held, upstream, &target)).await
        }
    }
}

/// Whether the table holds the name of stage `client_hello` now (a fact of its
/// decision).
fn learned_bypass(bypass: &BypassTable, name: Option<&str>) -> bool {
    name.and_then(normalize_domain)
        .is_some_and(|name| bypass.is_bypassed(&name))
}

fn set_decision(record: &mut Record, stage: Stage, decision: &SslDecision) {
    record.stage = Some(stage.as_str());
    record.action = Some(decision.action.as_str());
    record.rule = Some(decision.rule.clone());
}

/// Send the held bytes on unchanged, then relay raw bytes both ways until the
/// connection ends or is idle for `idle_timeout`.
async fn tunnel(
    idle_timeout: Duration,
    record: &mut Record,
    client: TcpStream,
    mut upstream: TcpStream,
    held: Vec<u8>,
) {
    if !held.is_empty() {
        if let Err(e) = upstream.write_all(&held).await {
            record.fail(
                &Kind::UpstreamWriteFailed
                    .at(Phase::Relay)
                    .with_detail(e.to_string()),
            );
            return;
        }
    }
    // The hello's buffer is not needed while the tunnel lasts.
    let held_len = held.len() as u64;
    drop(held);
    // Boxed, as bump is: the connection's future stays small whichever path it takes.
    let outcome = Box::pin(relay(client, upstream, idle_timeout)).await;
    record.bytes_up = Some(outcome.bytes_up + held_len);
    record.bytes_down = Some(outcome.bytes_down);
    if let Some(failure) = outcome.failure {
        record.fail(&failure);
    }
}

#[cfg(test)]
mod tests {
    //! The dial phase, built from a dialer alone (no configuration generation).

    use std::time::Duration;

    use sluice_policy::IpSet;

    use super::*;
    use crate::dial::local_addrs::LocalAddrs;
    use crate::dial::resolve::Resolver;

    fn dialer(local: LocalAddrs) -> Dialer {
        Dialer::new(
            Resolver::new(std::path::Path::new("/etc/hosts")),
            local,
            IpSet::default(),
            Duration::from_secs(5),
        )
    }

    fn target(host: &str, port: u16) -> Target<'_> {
        Target {
            host,
            port,
            user_agent: None,
            explicit: true,
        }
    }

    // A reachable server: the connection, the address reached, and the direct route
    // a bump re-dials.
    #[tokio::test]
    async fn the_dial_phase_reaches_the_server_directly() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let target = target("127.0.0.1", addr.port());
        let dialer = dialer(LocalAddrs::default());
        let (_stream, ip, route) = dial_route(&dialer, None, &target).await.unwrap();
        assert_eq!(ip, Some(addr.ip()));
        assert!(matches!(route, Route::Direct(reached) if reached == addr));
        assert_eq!(target.ip(), Some(addr.ip()));
        assert_eq!(target.name(), None);
    }

    // A closed port and a loop back into the proxy are failures of the dial phase, each
    // with its code and status.
    #[tokio::test]
    async fn refused_and_looping_dials_are_failures_of_the_dial_phase() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let closed = target("127.0.0.1", addr.port());
        let error = dial_route(&dialer(LocalAddrs::default()), None, &closed)
            .await
            .err()
            .expect("nothing listens");
        assert_eq!(error.failure(), Kind::ConnectFailed.at(Phase::Dial));
        assert_eq!(error.status(), 502);
        let own = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let own_addr = own.local_addr().unwrap();
        let looping = target("127.0.0.1", own_addr.port());
        let error = dial_route(&dialer(LocalAddrs::new(vec![own_addr])), None, &looping)
            .await
            .err()
            .expect("a loop is refused");
        assert_eq!(error.failure().log_text(), "loop_detected");
        assert_eq!(error.status(), 508);
    }

    fn hello(sni: Option<&str>, ech: bool) -> ClientHello {
        ClientHello {
            sni: sni.map(str::to_string),
            alpn: Vec::new(),
            versions: vec![0x0304],
            ech,
        }
    }

    /// A dialer whose hosts file says `good.test` is 127.0.0.1 and `other.test` another
    /// address (answered from the file: no DNS is asked).
    fn dialer_with_hosts(dir: &tempfile::TempDir) -> Dialer {
        let hosts = dir.path().join("hosts");
        std::fs::write(&hosts, "127.0.0.1 good.test\n127.0.0.2 other.test\n").unwrap();
        Dialer::new(
            Resolver::new(&hosts),
            LocalAddrs::default(),
            IpSet::default(),
            Duration::from_secs(5),
        )
    }

    // SPEC §1.3: for a CONNECT to an address, an SNI is believed only if it resolves to
    // that address; without an SNI, or for a CONNECT to a name, there is nothing to doubt.
    #[tokio::test]
    async fn an_sni_for_an_address_is_verified_by_resolving_it() {
        let dir = tempfile::tempdir().unwrap();
        let dialer = dialer_with_hosts(&dir);
        let by_address = target("127.0.0.1", 443);
        for (sni, verified) in [
            (Some("good.test"), true),
            (Some("GOOD.test."), true),
            (Some("other.test"), false),
            (Some("unknown.test"), false),
            (None, true),
        ] {
            let hello = hello(sni, false);
            assert_eq!(
                sni_verified(&dialer, &by_address, &hello).await,
                verified,
                "{sni:?}"
            );
        }
        let by_name = target("good.test", 443);
        let lying = hello(Some("other.test"), false);
        assert!(sni_verified(&dialer, &by_name, &lying).await);
    }

    #[test]
    fn a_connect_name_is_a_fact_and_an_address_is_another() {
        let named = target("Example.TEST", 443);
        let groups = Vec::new();
        let peer: SocketAddr = "192.0.2.7:5000".parse().unwrap();
        let facts = named.facts(peer, Some("alice"), &groups);
        assert_eq!(facts.dest_name, Some("Example.TEST"));
        assert_eq!(facts.dest_ip, None);
        assert_eq!(facts.user, Some("alice"));
        let v6 = target("2001:db8::1", 443);
        assert_eq!(v6.facts(peer, None, &groups).dest_name, None);
        assert!(v6.ip().is_some());
    }
}
