//! Feeds arbitrary request authorities, `Host` headers and TLS names to
//! `sluice_policy::decide_host`: it never panics, the authority it settles on is stable
//! (written out and decided again it is the same), a Host it accepted beside a target
//! names that target, and a 421 comes only inside a bump set to block.
//!
//! Input: one flag byte, then `target\nhost\nhost\ntls_name` (fields may be missing).
//! Flags: bit 0 a target is present, bits 1–2 the number of Host headers (0–2), bit 3
//! default port 443 (else 80), bit 4 a TLS name is present, bit 5 `on_mismatch = ignore`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_policy::{decide_host, HostDecision, HostFacts, HostMismatch};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let mut fields = rest.split(|&b| b == b'\n');
    let target = fields.next().and_then(|t| std::str::from_utf8(t).ok());
    let target = if flags & 1 != 0 { target } else { None };
    let host_count = usize::from((flags >> 1) & 3).min(2);
    let hosts: Vec<&[u8]> = fields.by_ref().take(host_count).collect();
    let tls_name = fields.next().and_then(|t| std::str::from_utf8(t).ok());
    let tls_name = if flags & 16 != 0 { tls_name } else { None };
    let default_port = if flags & 8 != 0 { 443 } else { 80 };
    let on_mismatch = if flags & 32 != 0 {
        HostMismatch::Ignore
    } else {
        HostMismatch::Block
    };
    let facts = HostFacts {
        target,
        host_headers: &hosts,
        default_port,
        tls_name,
        on_mismatch,
        // Inside a bump a request naming no host is for the connection's.
        implied: tls_name,
    };
    let decision = decide_host(&facts);
    let authority = match &decision {
        HostDecision::Forward(a) => a,
        HostDecision::Misdirected(a) => {
            assert!(tls_name.is_some() && on_mismatch == HostMismatch::Block);
            a
        }
        HostDecision::BadRequest(_) => return,
    };
    assert!(!authority.host.is_empty());
    assert_ne!(authority.port, 0);
    assert!(!authority.host.bytes().any(|b| b.is_ascii_uppercase()));
    // What goes upstream decides the same way again.
    let written = authority.to_string();
    let again = decide_host(&HostFacts {
        target: Some(&written),
        host_headers: &[],
        default_port,
        tls_name: None,
        on_mismatch,
        implied: None,
    });
    assert_eq!(again, HostDecision::Forward(authority.clone()), "{written}");
    // An accepted Host beside a target names the same authority.
    if let (Some(_), [host]) = (target, hosts.as_slice()) {
        let alone = decide_host(&HostFacts {
            target: None,
            host_headers: &[host],
            default_port,
            tls_name: None,
            on_mismatch,
            implied: None,
        });
        assert_eq!(alone, HostDecision::Forward(authority.clone()));
    }
});
