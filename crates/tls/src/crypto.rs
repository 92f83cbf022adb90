//! The rustls `CryptoProvider` both legs of a bumped connection use.
//!
//! Two well-kept implementations, each where it is the faster one on current x86-64
//! servers (measured alone on the benchmark machine, an AMD EPYC with VAES):
//!
//! - *ring* for the record layer (AES-GCM, ChaCha20-Poly1305) and the hashes and HMACs of
//!   the key schedule: its AES-GCM uses VAES and VPCLMULQDQ over 256-bit registers where
//!   the CPU has them, and seals a 16 KiB record in about half the time aws-lc-rs takes
//!   (0.13 against 0.24 s/GB); the records are the largest single item of a bumped
//!   download's CPU (`bench/run.sh --profile`);
//! - *aws-lc-rs* for everything else: key exchange (its X25519 is faster, and it alone
//!   has the post-quantum X25519MLKEM768), signatures and their verification, random
//!   numbers and key loading.
//!
//! Both are providers the rustls project maintains; the split is only of which one does
//! which job, so every suite and group aws-lc-rs alone would offer is still offered.

use rustls::crypto::CryptoProvider;

/// aws-lc-rs with ring's cipher suites: see the module comment.
pub fn provider() -> CryptoProvider {
    CryptoProvider {
        cipher_suites: rustls::crypto::ring::default_provider().cipher_suites,
        ..rustls::crypto::aws_lc_rs::default_provider()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::CipherSuite;

    fn suites(provider: &CryptoProvider) -> Vec<CipherSuite> {
        provider.cipher_suites.iter().map(|s| s.suite()).collect()
    }

    #[test]
    fn offers_the_same_suites_and_groups_as_aws_lc_rs_alone() {
        let aws = rustls::crypto::aws_lc_rs::default_provider();
        let mixed = provider();
        let mut want = suites(&aws);
        let mut got = suites(&mixed);
        want.sort_by_key(|s| u16::from(*s));
        got.sort_by_key(|s| u16::from(*s));
        assert_eq!(got, want);
        let groups = |p: &CryptoProvider| p.kx_groups.iter().map(|g| g.name()).collect::<Vec<_>>();
        assert_eq!(groups(&mixed), groups(&aws));
    }

    #[test]
    fn the_record_layer_is_rings() {
        let ring = rustls::crypto::ring::default_provider();
        for (mixed, ring) in provider().cipher_suites.iter().zip(&ring.cipher_suites) {
            assert_eq!(mixed.suite(), ring.suite());
            // The same static suite object: ring's code seals and opens the records.
            let same = match (mixed, ring) {
                (
                    rustls::SupportedCipherSuite::Tls13(a),
                    rustls::SupportedCipherSuite::Tls13(b),
                ) => std::ptr::eq(*a, *b),
                (
                    rustls::SupportedCipherSuite::Tls12(a),
                    rustls::SupportedCipherSuite::Tls12(b),
                ) => std::ptr::eq(*a, *b),
                _ => false,
            };
            assert!(same, "{:?} is not ring's", mixed.suite());
        }
    }
}
