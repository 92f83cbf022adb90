//! Transparent interception (SPEC §11), end to end in network namespaces the test
//! creates and removes: a client namespace whose traffic to ports 80 and 443 of an
//! origin namespace is redirected (nftables `REDIRECT`, in the host namespace the two
//! are routed through) to sluice's `proxy.transparent_listen` socket. curl runs in the
//! client namespace with no proxy settings. Needs root (skipped with a reason without).

mod support;

use std::fs::File;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
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

/// Two namespaces, each joined to the host namespace by a veth pair, and an nftables
/// table of the test's own in the host namespace; all removed on drop.
struct Net {
    client_ns: String,
    origin_ns: String,
    table: String,
    /// The host end of the client's link: where `REDIRECT` delivers.
    gateway: Ipv4Addr,
    /// The origin namespace's address.
    origin: Ipv4Addr,
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
            table: format!("sluice_t{tag}"),
            gateway: Ipv4Addr::new(10, 231, third, 1),
            origin: Ipv4Addr::new(10, 232, third, 2),
        };
        net.link(&net.client_ns, &format!("stc{tag}"), 231, third);
        net.link(&net.origin_ns, &format!("sto{tag}"), 232, third);
        net
    }

    /// Make `ns` with a veth pair to the host: 10.SECOND.THIRD.1 on the host end,
    /// .2 inside, the host as the default route.
    fn link(&self, ns: &str, host_end: &str, second: u8, third: u8) {
        let inner = format!("{host_end}i");
        must(&["ip", "netns", "add", ns]);
        must(&[
            "ip", "link", "add", host_end, "type", "veth", "peer", "name", &inner,
        ]);
        must(&["ip", "link", "set", &inner, "netns", ns]);
        must(&[
            "ip",
            "addr",
            "add",
            &format!("10.{second}.{third}.1/24"),
            "dev",
            host_end,
        ]);
        must(&["ip", "link", "set", host_end, "up"]);
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
        inside(&["ip", "link", "set", &inner, "up"]);
        inside(&["ip", "link", "set", "lo", "up"]);
        let gateway = format!("10.{second}.{third}.1");
        inside(&["ip", "route", "add", "default", "via", &gateway]);
    }

    /// Redirect the client's TCP to ports 80 and 443 to `port` on the host.
    fn redirect_to(&self, port: u16) {
        let host_end = self.client_ns.replace("sluice-tc", "stc");
        let rules = format!(
            "table ip {t} {{\n chain pre {{\n  type nat hook prerouting priority dstnat; policy accept;\n  \
             iifname \"{host_end}\" tcp dport {{ 80, 443 }} redirect to :{port}\n }}\n}}\n",
            t = self.table
        );
        let mut nft = Command::new("nft")
            .args(["-f", "-"])
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

    /// Start an origin listening on `port` of the origin namespace.
    fn origin(&self, port: u16, options: OriginOptions) -> Origin {
        let ns = format!("/var/run/netns/{}", self.origin_ns);
        let addr = SocketAddr::from((self.origin, port)).to_string();
        // The listening socket belongs to the namespace of the thread that makes it.
        std::thread::spawn(move || {
            let file = File::open(ns).unwrap();
            nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            Origin::start_on(&addr, options)
        })
        .join()
        .unwrap()
    }

    /// The `hosts` lines naming the origin namespace's address.
    fn hosts(&self) -> String {
        [TUNNEL, BUMP, TERMINATE, PLAIN]
            .iter()
            .map(|name| format!("{} {name}\n", self.origin))
            .collect()
    }

    /// curl in the client namespace, with no proxy settings, for `url`; a name in it
    /// resolves to the origin namespace's address.
    fn curl(&self, ca: &str, url: &str, extra: &[&str]) -> Output {
        let name = url.split('/').nth(2).unwrap();
        let port = if url.starts_with("https:") { 443 } else { 80 };
        let resolve = format!("{name}:{port}:{}", self.origin);
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
        // Deleting a namespace deletes its veth ends, and with them their peers.
        let _ = run(&["nft", "delete", "table", "ip", &self.table]);
        let _ = run(&["ip", "netns", "delete", &self.client_ns]);
        let _ = run(&["ip", "netns", "delete", &self.origin_ns]);
    }
}

/// The network, origins on 443 (TLS) and 80 (plain), and sluice intercepting the
/// client's traffic to them.
struct Setup {
    net: Net,
    tls_origin: Origin,
    plain_origin: Origin,
    sluice: Sluice,
}

fn setup(rules: &str) -> Option<Setup> {
    if let Some(why) = cannot_run() {
        eprintln!("skipped: {why}");
        return None;
    }
    let net = Net::new();
    let pki = TestPki::new();
    let leaf = pki.with_names(&[TUNNEL, BUMP, TERMINATE, PLAIN, "tunnel.test", "bump.test"]);
    let tls_origin = net.origin(
        443,
        OriginOptions {
            tls: Some(leaf),
            ..Default::default()
        },
    );
    let plain_origin = net.origin(80, OriginOptions::default());
    let proxy = format!("transparent_listen = [\"{}:0\"]\n", net.gateway);
    let hosts = net.hosts();
    let sluice = Sluice::start(
        &pki,
        SluiceConfig {
            connect_ports: &[443],
            proxy: &proxy,
            hosts: &hosts,
            rest: rules,
            ..Default::default()
        },
    );
    let port = transparent_port(&sluice);
    net.redirect_to(port);
    Some(Setup {
        net,
        tls_origin,
        plain_origin,
        sluice,
    })
}

/// The port sluice's transparent listener got (it was asked for port 0).
fn transparent_port(sluice: &Sluice) -> u16 {
    let stderr = sluice.stderr();
    let line = stderr
        .lines()
        .find_map(|l| l.strip_prefix("sluice: transparent interception on "))
        .unwrap_or_else(|| panic!("no transparent listener announced:\n{stderr}"));
    line.trim().parse::<SocketAddr>().unwrap().port()
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
    let port = transparent_port(&s.sluice);
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
    // From the host namespace, through the explicit listener, to the same origin.
    let url = format!("https://{BUMP}/hello");
    let out = Command::new("curl")
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
