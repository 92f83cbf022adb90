//! Feeding the learned bypass (SPEC §1) from a bump: gather the facts (client address,
//! chain verdict, whether the dialled address is the SNI's), let the policy say whether
//! they may teach, count in the table, and record each bypass learned.

use sluice_policy::{normalize_domain, same_domain, BypassEvidence};

use super::BumpTarget;
use crate::bypass::Learning;
use crate::cluster::Event;
use crate::context::Proxy;
use crate::telemetry::access_log::Record;

/// The client aborted the handshake against the replacement certificate: one more
/// client address for the SNI.
pub(super) fn client_rejected(proxy: &Proxy, record: &Record, target: &BumpTarget<'_>) {
    let (Some(sni), Some(client)) = (target.sni, record.client) else {
        return;
    };
    if target.sni_unverified {
        return;
    }
    let policy = &proxy.config.policy;
    if !policy.may_learn_bypass(sni, BypassEvidence::ClientRejected) {
        return;
    }
    let Some(name) = normalize_domain(sni) else {
        return;
    };
    let learning = Learning::from_settings(&proxy.config.settings.tls);
    // ::ffff:10.0.0.7 on a dual-stack listener is the same client as 10.0.0.7.
    let client = client.to_canonical();
    match proxy.bypass.record_rejection(&name, client, &learning) {
        Some(learned) => {
            proxy.log.write_learned(&learned);
            proxy.cluster.tell(Event::Learned(learned));
        }
        // Distinct clients are counted across the fleet too: enough of them over all
        // nodes teach (the node whose count completes it logs the bypass).
        None => proxy.cluster.tell(Event::Rejected {
            sni: name,
            client,
            learning,
        }),
    }
}

/// The server sent a CertificateRequest; `chain_ok`: its chain verified `ok` for the
/// SNI. Teaches at once only when the dialled address is one the SNI resolves to.
pub(super) async fn certificate_requested(proxy: &Proxy, target: &BumpTarget<'_>, chain_ok: bool) {
    let Some(name) = target.sni.and_then(normalize_domain) else {
        return;
    };
    let policy = &proxy.config.policy;
    let evidence = |dialled_resolves| BypassEvidence::CertificateRequested {
        chain_ok,
        dialled_resolves,
    };
    // Resolve only when the answer can matter.
    if !policy.may_learn_bypass(&name, evidence(true)) {
        return;
    }
    let dialled_resolves = match target.connect_ip {
        // The address dialled came from resolving the CONNECT name, which is the SNI.
        None if same_domain(&name, target.host) => true,
        _ => match target.dest_ip {
            Some(ip) => proxy.dialer.resolves_to(&name, ip).await,
            // Through a parent, sluice never learned the server's address.
            None => false,
        },
    };
    if !policy.may_learn_bypass(&name, evidence(dialled_resolves)) {
        tracing::info!(
            sni = name,
            dest_ip = ?target.dest_ip,
            "a server that is not the SNI's asked for a client certificate: nothing learned"
        );
        return;
    }
    let learning = Learning::from_settings(&proxy.config.settings.tls);
    if let Some(learned) = proxy.bypass.record_certificate_request(&name, &learning) {
        proxy.log.write_learned(&learned);
        proxy.cluster.tell(Event::Learned(learned));
    }
}
