//! Transparent interception (SPEC §11), end to end in network namespaces the test
//! creates and removes: a client namespace whose traffic to ports 80 and 443 of an
//! origin namespace is sent (nftables `REDIRECT`, or `TPROXY`, in the router namespace
//! between the two, where sluice runs) to sluice's `proxy.transparent_listen` sockets.
//! curl runs in the client namespace with no proxy settings. Nothing is changed in the
//! host's own namespace. Needs root (skipped with a reason without).

mod support;

use std::fs::File;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU8, Ordering};

use serde_json::Value;
use support::certs::TestPki;
use support::origin::HELLO;
use support::sluice::SluiceConfig;
use support::{Origin, OriginOptions, Sluice};

/// Names the extra `hosts` lines resolve to the origin namespace's address.
const TUNNEL: &str = "tunnel.tp.test";
const BUMP: &str = "bump.tp.test";
const TERMINATE: &str = "terminate.tp.test";
const PLAIN: &str = "plain.tp.test";

static NEXT: AtomicU8 = AtomicU8::new(0);

/// Why the test cannot run here, if it cannot.
fn cannot_run() -> Option<&'static str> {
    if !nix::unistd::geteuid().is_root() {
        return Some("needs root (network namespaces and nftables)");
    }
    let found = |tool: &str| Command::new(tool).arg("-V").output().is_ok();
    if !found("ip") || !found("nft") {
        return Some("needs iproute2 and nftables (scripts/test installs them)");
    }
    None
}

fn run(args: &[&str]) -> Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn must(args: &[&str]) {
    let out = run(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// How the kernel hands connections to sluice.
#[derive(Clone, Copy, PartialEq)]
enum Mechanism {
    Redirect,
    Tproxy,
}

/// Three namespaces: a client and an origin, each joined by a veth pair to a router,
/// where sluice runs and the nftables rules live; all removed on drop.
struct Net {
    client_ns: String,
    origin_ns: String,
    router_ns: String,
    table: String,
    /// The host end of the client's link: where `REDIRECT` delivers.
    gateway: Ipv4Addr,
    /// The origin namespace's address.
    origin: Ipv4Addr,
    /// The same two on IPv6.
    gateway6: Ipv6Addr,
    origin6: Ipv6Addr,
}

impl Net {
    fn new() -> Net {
        let k = NEXT.fetch_add(1, Ordering::SeqCst);
        let tag = format!("{}{k}", std::process::id() % 10_000);
        // Subnets apart per process and per test; on links of their own, never routed
        // off the machine.
        let third = (std::process::id() % 60) as u8 * 4 + k;
        let net = Net {
            client_ns: format!("sluice-tc{tag}"),
            origin_ns: format!("sluice-to{tag}"),
            router_ns: format!("sluice-tr{tag}"),
            table: format!("sluice_t{tag}"),
            gateway: Ipv4Addr::new(10, 231, third, 1),
            origin: Ipv4Addr::new(10, 232, third, 2),
            gateway6: Ipv6Addr::new(0xfd53, 231, third.into(), 0, 0, 0, 0, 1),
            origin6: Ipv6Addr::new(0xfd53, 232, third.into(), 0, 0, 0, 0, 2),
        };
        must(&["ip", "netns", "add", &net.router_ns]);
        net.in_router(&["ip", "link", "set", "lo", "up"]);
        net.link(&net.client_ns, &format!("stc{tag}"), 231, third);
        net.link(&net.origin_ns, &format!("sto{tag}"), 232, third);
        net
    }

    /// Run `args` in the router namespace.
    fn in_router(&self, args: &[&str]) {
        let mut all = vec!["ip", "netns", "exec", &self.router_ns];
        all.extend_from_slice(args);
        must(&all);
    }

    /// Make `ns` with a veth pair to the router: 10.SECOND.THIRD.1 and
    /// fd53:SECOND:THIRD::1 on the router end, .2 and ::2 inside, the router as the
    /// default route.
    fn link(&self, ns: &str, host_end: &str, second: u8, third: u8) {
        let inner = format!("{host_end}i");
        must(&["ip", "netns", "add", ns]);
        must(&[
            "ip", "link", "add", host_end, "type", "veth", "peer", "name", &inner,
        ]);
        must(&["ip", "link", "set", &inner, "netns", ns]);
        must(&["ip", "link", "set", host_end, "netns", &self.router_ns]);
        let host4 = format!("10.{second}.{third}.1/24");
        self.in_router(&["ip", "addr", "add", &host4, "dev", host_end]);
        let host6 = format!("fd53:{second:x}:{third:x}::1/64");
        self.in_router(&["ip", "-6", "addr", "add", &host6, "dev", host_end, "nodad"]);
        self.in_router(&["ip", "link", "set", host_end, "up"]);
        let inside = |args: &[&str]| {
            let mut all = vec!["ip", "netns", "exec", ns];
            all.extend_from_slice(args);
            must(&all);
        };
        inside(&[
            "ip",
            "addr",
            "add",
            &format!("10.{second}.{third}.2/24"),
            "dev",
            &inner,
        ]);
        let inner6 = format!("fd53:{second:x}:{third:x}::2/64");
        inside(&["ip", "-6", "addr", "add", &inner6, "dev", &inner, "nodad"]);
        inside(&["ip", "link", "set", &inner, "up"]);
        inside(&["ip", "link", "set", "lo", "up"]);
        let gateway = format!("10.{second}.{third}.1");
        inside(&["ip", "route", "add", "default", "via", &gateway]);
        let gateway6 = format!("fd53:{second:x}:{third:x}::1");
        inside(&["ip", "-6", "route", "add", "default", "via", &gateway6]);
    }

    /// Send the client's TCP to ports 80 and 443 to `port4` (IPv4) and `port6` (IPv6)
    /// on the router, by `mechanism`.
    fn intercept(&self, mechanism: Mechanism, port4: u16, port6: u16) {
        let client_end = self.client_ns.replace("sluice-tc", "stc");
        let matching = format!("iifname \"{client_end}\" tcp dport {{ 80, 443 }}");
        let rules = match mechanism {
            Mechanism::Redirect => format!(
                "table inet {t} {{\n chain pre {{\n  type nat hook prerouting priority dstnat; policy accept;\n  \
                 meta nfproto ipv4 {matching} redirect to :{port4}\n  \
                 meta nfproto ipv6 {matching} redirect to :{port6}\n }}\n}}\n",
                t = self.table
            ),
            // Marked packets are routed to the host itself, where the TPROXY socket
            // lookup finds sluice's IP_TRANSPARENT listener.
            Mechanism::Tproxy => {
                for family in ["-4", "-6"] {
                    self.in_router(&["ip", family, "rule", "add", "fwmark", "1", "lookup", "100"]);
                    let all = if family == "-4" { "0.0.0.0/0" } else { "::/0" };
                    self.in_router(&["ip", family, "route", "add", "local", all, "dev", "lo", "table", "100"]);
                }
                format!(
                    "table inet {t} {{\n chain pre {{\n  type filter hook prerouting priority mangle; policy accept;\n  \
                     meta nfproto ipv4 {matching} tproxy ip to {g4}:{port4} meta mark set 1 accept\n  \
                     meta nfproto ipv6 {matching} tproxy ip6 to [{g6}]:{port6} meta mark set 1 accept\n }}\n}}\n",
                    t = self.table,
                    g4 = self.gateway,
                    g6 = self.gateway6,
                )
            }
        };
        let mut nft = Command::new("ip")
            .args(["netns", "exec", &self.router_ns, "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        nft.stdin
            .take()
            .unwrap()
            .write_all(rules.as_bytes())
            .unwrap();
        let out = nft.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "nft: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Run `make` on a thread inside namespace `ns`: sockets it opens and processes it
    /// starts live there.
    fn within<T: Send + 'static>(ns: &str, make: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/var/run/netns/{ns}");
        std::thread::spawn(move || {
            let file = File::open(path).unwrap();
            nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            make()
        })
        .join()
        .unwrap()
    }

    /// Start an origin listening on `ip`:`port` in the origin namespace.
    fn origin(&self, ip: IpAddr, port: u16, options: OriginOptions) -> Origin {
        let addr = SocketAddr::new(ip, port).to_string();
        Self::within(&self.origin_ns, move || Origin::start_on(&addr, options))
    }

    /// The `hosts` lines naming the origin namespace's address.
    fn hosts(&self) -> String {
        [TUNNEL, BUMP, TERMINATE, PLAIN]
            .iter()
            .map(|name| format!("{} {name}\n{} {name}\n", self.origin, self.origin6))
            .collect()
    }

    /// curl in the client namespace, with no proxy settings, for `url`; a name in it
    /// resolves to the origin namespace's IPv4 address.
    fn curl(&self, ca: &str, url: &str, extra: &[&str]) -> Output {
        self.curl_to(IpAddr::V4(self.origin), ca, url, extra)
    }

    /// [`curl`](Self::curl) with the name resolving to `ip`.
    fn curl_to(&self, ip: IpAddr, ca: &str, url: &str, extra: &[&str]) -> Output {
        let name = url.split('/').nth(2).unwrap();
        let port = if url.starts_with("https:") { 443 } else { 80 };
        let resolve = match ip {
            IpAddr::V4(v4) => format!("{name}:{port}:{v4}"),
            IpAddr::V6(v6) => format!("{name}:{port}:[{v6}]"),
        };
        let mut args = vec![
            "ip",
            "netns",
            "exec",
            &self.client_ns,
            "curl",
            "-sS",
            "--noproxy",
            "*",
            "--max-time",
            "20",
            "--cacert",
            ca,
        ];
        if !name.contains(':') {
            args.extend(["--resolve", &resolve]);
        }
        args.extend_from_slice(extra);
        args.push(url);
        let mut command = Command::new(args[0]);
        command.args(&args[1..]);
        for var in [
            "http_proxy",
            "https_proxy",
            "HTTPS_PROXY",
            "all_proxy",
            "ALL_PROXY",
        ] {
            command.env_remove(var);
        }
        command.output().unwrap()
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // Deleting a namespace deletes its veth ends, and with them their peers; the
        // router's rules and routes go with the router.
        let _ = run(&["ip", "netns", "delete", &self.client_ns]);
        let _ = run(&["ip", "netns", "delete", &self.origin_ns]);
        let _ = run(&["ip", "netns", "delete", &self.router_ns]);
    }
}

/// The network, origins on 443 (TLS) and 80 (plain) of both addresses, and sluice
/// intercepting the client's traffic to them.
struct Setup {
    net: Net,
    tls_origin: Origin,
    plain_origin: Origin,
    tls_origin6: Origin,
    plain_origin6: Origin,
    sluice: Sluice,
}

fn setup(rules: &str) -> Option<Setup> {
    setup_with(rules, Mechanism::Redirect)
}

fn setup_with(rules: &str, mechanism: Mechanism) -> Option<Setup> {
    if let Some(why) = cannot_run() {
        eprintln!("skipped: {why}");
        return None;
    }
    let net = Net::new();
    let pki = TestPki::new();
    let names = [TUNNEL, BUMP, TERMINATE, PLAIN, "tunnel.test", "bump.test"];
    let tls = || OriginOptions {
        tls: Some(pki.with_names(&names)),
        ..Default::default()
    };
    let (v4, v6) = (IpAddr::V4(net.origin), IpAddr::V6(net.origin6));
    let tls_origin = net.origin(v4, 443, tls());
    let plain_origin = net.origin(v4, 80, OriginOptions::default());
    let tls_origin6 = net.origin(v6, 443, tls());
    let plain_origin6 = net.origin(v6, 80, OriginOptions::default());
    let proxy = format!(
        "transparent_listen = [\"{}:0\", \"[{}]:0\"]\n",
        net.gateway, net.gateway6
    );
    let hosts = net.hosts();
    let rest = rules.to_string();
    let sluice = Net::within(&net.router_ns, move || {
        let config = SluiceConfig {
            connect_ports: &[443],
            proxy: &proxy,
            hosts: &hosts,
            rest: &rest,
            ..Default::default()
        };
        Sluice::start(&pki, config)
    });
    let ports = transparent_ports(&sluice);
    net.intercept(mechanism, ports[0], ports[1]);
    Some(Setup {
        net,
        tls_origin,
        plain_origin,
        tls_origin6,
        plain_origin6,
        sluice,
    })
}

/// The ports sluice's transparent listeners got (asked for port 0), in configured order.
fn transparent_ports(sluice: &Sluice) -> Vec<u16> {
    let stderr = sluice.stderr();
    let ports: Vec<u16> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("sluice: transparent interception on "))
        .map(|addr| addr.trim().parse::<SocketAddr>().unwrap().port())
        .collect();
    assert_eq!(ports.len(), 2, "transparent listeners announced:\n{stderr}");
    ports
}

impl Setup {
    fn root_ca(&self) -> String {
        let path = self.sluice.dir.path().join("upstream-root.pem");
        path.to_str().unwrap().to_string()
    }

    fn sluice_ca(&self) -> String {
        self.sluice.ca_path().to_str().unwrap().to_string()
    }

    fn connect_record(&self, sni: &str) -> Value {
        self.sluice.wait_record(&format!("connect for {sni}"), |r| {
            r["kind"] == "connect" && r["sni"] == sni
        })
    }
}

fn body(out: &Output) -> String {
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const RULES: &str = "[[ssl_rules]]\nname = \"tunnel\"\ndomains = [\"tunnel.tp.test\", \"tunnel.test\"]\naction = \"tunnel\"\n\n\
                     [[ssl_rules]]\nname = \"terminate\"\ndomains = [\"terminate.tp.test\"]\naction = \"terminate\"\n\n\
                     [[ssl_rules]]\nname = \"bump the rest\"\naction = \"bump\"\n";

#[test]
fn redirected_tls_is_tunnelled_by_a_name_that_resolves_to_the_original_address() {
    let Some(s) = setup(RULES) else { return };
    // Tunnelled: the client sees the origin's own certificate (the test root's).
    let out = s
        .net
        .curl(&s.root_ca(), &format!("https://{TUNNEL}/hello"), &[]);
    assert_eq!(body(&out), HELLO);
    let record = s.connect_record(TUNNEL);
    assert_eq!(record["mode"], "transparent");
    assert_eq!(record["action"], "tunnel");
    assert_eq!(record["stage"], "client_hello");
    assert_eq!(record["rule"], "tunnel");
    assert_eq!(record["host"], s.net.origin.to_string());
    assert_eq!(record["port"], 443);
    assert_eq!(record["dest_ip"], s.net.origin.to_string());
    assert!(
        record.get("status").is_none(),
        "no CONNECT, no 200: {record}"
    );
    assert_eq!(s.tls_origin.seen.handshakes.load(Ordering::SeqCst), 1);
}

#[test]
fn a_lying_sni_earns_no_tunnel_and_the_original_address_is_still_dialled() {
    let Some(s) = setup(RULES) else { return };
    // tunnel.test resolves to loopback, not to where the packets went: the tunnel rule
    // on the name cannot apply, so the connection is bumped (by the catch-all rule),
    // and sluice dials the original destination, not 127.0.0.1.
    let out = s.net.curl(&s.sluice_ca(), "https://tunnel.test/hello", &[]);
    assert_eq!(body(&out), HELLO);
    let record = s.connect_record("tunnel.test");
    assert_eq!(record["mode"], "transparent");
    assert_eq!(record["action"], "bump");
    assert_eq!(record["error"], "sni_unverified");
    assert_eq!(record["dest_ip"], s.net.origin.to_string());
    assert_eq!(s.tls_origin.requests().len(), 1);
}

#[test]
fn redirected_tls_is_bumped_and_its_requests_are_logged_as_transparent() {
    let Some(s) = setup(RULES) else { return };
    let out = s
        .net
        .curl(&s.sluice_ca(), &format!("https://{BUMP}/hello"), &[]);
    assert_eq!(body(&out), HELLO);
    let record = s.connect_record(BUMP);
    assert_eq!(record["mode"], "transparent");
    assert_eq!(record["action"], "bump");
    assert_eq!(record["rule"], "bump the rest");
    let http = s
        .sluice
        .wait_record("bumped request", |r| r["kind"] == "http");
    assert_eq!(http["mode"], "transparent");
    assert_eq!(http["url"], format!("https://{BUMP}/hello"));
    assert_eq!(http["status"], 200);
    // The client trusted only sluice's CA: it was sluice's certificate it accepted.
    let refused = s
        .net
        .curl(&s.root_ca(), &format!("https://{BUMP}/hello"), &[]);
    assert!(!refused.status.success());
}

#[test]
fn redirected_tls_is_terminated_by_a_terminate_rule() {
    let Some(s) = setup(RULES) else { return };
    let out = s
        .net
        .curl(&s.sluice_ca(), &format!("https://{TERMINATE}/hello"), &[]);
    assert!(!out.status.success());
    let record = s.connect_record(TERMINATE);
    assert_eq!(record["mode"], "transparent");
    assert_eq!(record["action"], "terminate");
    assert_eq!(s.tls_origin.seen.handshakes.load(Ordering::SeqCst), 0);
}

#[test]
fn redirected_plain_http_is_inspected_and_sent_to_the_original_destination() {
    let rules =
        "[[http_rules]]\nname = \"no secrets\"\nurl_regex = [\"/secret\"]\naction = \"block\"\n";
    let Some(s) = setup(rules) else { return };
    let out = s
        .net
        .curl(&s.sluice_ca(), &format!("http://{PLAIN}/hello"), &[]);
    assert_eq!(body(&out), HELLO);
    let record = s
        .sluice
        .wait_record("plain request", |r| r["kind"] == "http");
    assert_eq!(record["mode"], "transparent");
    assert_eq!(record["url"], format!("http://{PLAIN}/hello"));
    assert_eq!(record["host"], PLAIN);
    assert_eq!(record["dest_ip"], s.net.origin.to_string());
    // Inspected: an HTTP rule blocks by URL.
    let blocked = s.net.curl(
        &s.sluice_ca(),
        &format!("http://{PLAIN}/secret"),
        &["-o", "/dev/null", "-w", "%{http_code}"],
    );
    assert_eq!(body(&blocked), "403");
    assert_eq!(s.plain_origin.requests().len(), 1);
}

#[test]
fn a_lying_host_header_does_not_move_the_request() {
    let Some(s) = setup("") else { return };
    // bump.test resolves to loopback; the packets went to the origin namespace, and
    // that is where the request goes.
    let out = s.net.curl(
        &s.sluice_ca(),
        &format!("http://{PLAIN}/hello"),
        &["-H", "Host: bump.test"],
    );
    assert_eq!(body(&out), HELLO);
    let record = s
        .sluice
        .wait_record("plain request", |r| r["kind"] == "http");
    assert_eq!(record["host"], "bump.test");
    assert_eq!(record["dest_ip"], s.net.origin.to_string());
    assert_eq!(s.plain_origin.requests().len(), 1);
}

#[test]
fn a_connection_to_the_transparent_listener_itself_is_closed_as_a_loop() {
    let Some(s) = setup("") else { return };
    let port = transparent_ports(&s.sluice)[0];
    let url = format!("http://{}:{port}/hello", s.net.gateway);
    let out = s.net.curl(&s.sluice_ca(), &url, &[]);
    let answer = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "a loop must not be served: {answer}");
    let record = s
        .sluice
        .wait_record("loop", |r| r["error"] == "loop_detected");
    assert_eq!(record["mode"], "transparent");
    assert_eq!(record["port"], port);
}

#[test]
fn explicit_connections_are_logged_as_explicit() {
    let Some(s) = setup(RULES) else { return };
    // From the router namespace, through the explicit listener, to the same origin.
    let url = format!("https://{BUMP}/hello");
    let out = Command::new("ip")
        .args(["netns", "exec", &s.net.router_ns, "curl"])
        .args(["-sS", "--max-time", "20", "--cacert", &s.sluice_ca()])
        .args(["-x", &s.sluice.proxy_url(), &url])
        .output()
        .unwrap();
    assert_eq!(body(&out), HELLO);
    let record = s.connect_record(BUMP);
    assert_eq!(record["mode"], "explicit");
    assert_eq!(record["status"], 200);
    let http = s
        .sluice
        .wait_record("bumped request", |r| r["kind"] == "http");
    assert_eq!(http["mode"], "explicit");
}

#[test]
fn redirected_bytes_that_are_neither_tls_nor_http_meet_on_non_tls() {
    let Some(s) = setup(RULES) else { return };
    // An SSH greeting to port 443: not a ClientHello, not a request line.
    let script = format!(
        "exec 3<>/dev/tcp/{}/443; printf 'SSH-2.0-OpenSSH_9.2\\r\\n' >&3; timeout 10 cat <&3",
        s.net.origin
    );
    let out = run(&[
        "ip",
        "netns",
        "exec",
        &s.net.client_ns,
        "bash",
        "-c",
        &script,
    ]);
    assert!(out.stdout.is_empty(), "closed without an answer");
    let record = s.sluice.wait_record("non-TLS", |r| r["error"] == "not_tls");
    assert_eq!(record["mode"], "transparent");
    assert_eq!(record["action"], "terminate");
    assert_eq!(record["host"], s.net.origin.to_string());
    // Nothing reached the origin beyond the TCP connect (dialled before the first
    // decision, as for a CONNECT): no TLS handshake.
    assert_eq!(s.tls_origin.seen.handshakes.load(Ordering::SeqCst), 0);
}

#[test]
fn redirected_ipv6_is_tunnelled_and_plain_http_inspected_via_ip6t_so_original_dst() {
    let Some(s) = setup(RULES) else { return };
    let v6 = IpAddr::V6(s.net.origin6);
    let url = format!("https://{TUNNEL}/hello");
    let out = s.net.curl_to(v6, &s.root_ca(), &url, &["-6"]);
    assert_eq!(body(&out), HELLO);
    let record = s.connect_record(TUNNEL);
    assert_eq!(record["mode"], "transparent");
    assert_eq!(record["action"], "tunnel");
    assert_eq!(record["host"], s.net.origin6.to_string());
    assert_eq!(record["dest_ip"], s.net.origin6.to_string());
    assert_eq!(s.tls_origin6.seen.handshakes.load(Ordering::SeqCst), 1);
    assert_eq!(s.tls_origin.seen.handshakes.load(Ordering::SeqCst), 0);

    let url = format!("http://{PLAIN}/hello");
    let out = s.net.curl_to(v6, &s.sluice_ca(), &url, &["-6"]);
    assert_eq!(body(&out), HELLO);
    let record = s
        .sluice
        .wait_record("plain request", |r| r["kind"] == "http");
    assert_eq!(record["mode"], "transparent");
    assert_eq!(record["dest_ip"], s.net.origin6.to_string());
    assert_eq!(s.plain_origin6.requests().len(), 1);
    assert_eq!(s.plain_origin.requests().len(), 0);
}

#[test]
fn tproxy_connections_keep_their_destination_for_tls_and_plain_http_on_both_families() {
    let Some(s) = setup_with(RULES, Mechanism::Tproxy) else {
        return;
    };
    for (ip, origin) in [
        (IpAddr::V4(s.net.origin), &s.tls_origin),
        (IpAddr::V6(s.net.origin6), &s.tls_origin6),
    ] {
        let url = format!("https://{TUNNEL}/hello");
        let out = s.net.curl_to(ip, &s.root_ca(), &url, &[]);
        assert_eq!(body(&out), HELLO);
        let record = s.sluice.wait_record("tunnel", |r| {
            r["kind"] == "connect" && r["host"] == ip.to_string()
        });
        assert_eq!(record["mode"], "transparent");
        assert_eq!(record["action"], "tunnel");
        assert_eq!(record["dest_ip"], ip.to_string());
        assert_eq!(origin.seen.handshakes.load(Ordering::SeqCst), 1);
    }
    let out = s
        .net
        .curl(&s.sluice_ca(), &format!("https://{BUMP}/hello"), &[]);
    assert_eq!(body(&out), HELLO);
    assert_eq!(s.connect_record(BUMP)["action"], "bump");
    let out = s
        .net
        .curl(&s.sluice_ca(), &format!("http://{PLAIN}/hello"), &[]);
    assert_eq!(body(&out), HELLO);
    let record = s.sluice.wait_record("plain request", |r| {
        r["kind"] == "http" && r["host"] == PLAIN
    });
    assert_eq!(record["mode"], "transparent");
    assert_eq!(record["dest_ip"], s.net.origin.to_string());
    assert_eq!(s.plain_origin.requests().len(), 1);
}
