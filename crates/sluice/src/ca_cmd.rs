//! `sluice ca init` and `sluice ca export`.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use sluice_tls::ca::{CertificateAuthority, KeyKind};

use crate::cli::CaKey;
use crate::config_file;

pub fn init(dir: &Path, name: &str, key: CaKey) -> anyhow::Result<ExitCode> {
    let kind = match key {
        CaKey::EcdsaP256 => KeyKind::EcdsaP256,
        CaKey::Rsa2048 => KeyKind::Rsa2048,
    };
    let ca = CertificateAuthority::generate(name, kind)?;
    let cert = dir.join("ca.pem");
    let key = dir.join("ca-key.pem");
    ca.write_new(&cert, &key)?;
    eprintln!(
        "sluice: wrote {} and {} (mode 0600)",
        cert.display(),
        key.display()
    );
    eprintln!("sluice: CA SHA-256 fingerprint {}", ca.fingerprint_sha256());
    Ok(ExitCode::SUCCESS)
}

pub fn export(config: Option<&Path>, der: bool) -> anyhow::Result<ExitCode> {
    let config = match config_file::load(config) {
        Ok(config) => config,
        Err(code) => return Ok(code),
    };
    let path = &config.settings.tls.ca_cert;
    let cert = CertificateDer::from_pem_file(path)
        .with_context(|| format!("reading the CA certificate {}", path.display()))?;
    let mut out = std::io::stdout().lock();
    if der {
        out.write_all(cert.as_ref())?;
    } else {
        let pem =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        out.write_all(pem.as_bytes())?;
    }
    Ok(ExitCode::SUCCESS)
}
