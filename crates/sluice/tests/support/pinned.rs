//! The client of the learned-bypass tests: curl from a chosen client address, trusting
//! only a given root, so a client that pins the origin's own root rejects sluice's
//! replacement certificate.

use std::path::Path;

use super::certs::TestPki;
use super::sluice::Sluice;
use super::{curl, CurlOutput};

/// curl through sluice to `https://localhost:PORT/hello` from the client address
/// `source`, trusting only `cacert`. The CONNECT names `localhost`, which the proxy
/// resolves to 127.0.0.1, the origin's address: the SNI is verified.
pub fn via_localhost(sluice: &Sluice, port: u16, cacert: &Path, source: &str) -> CurlOutput {
    curl(&[
        "-x",
        &sluice.proxy_url(),
        "--interface",
        source,
        "--cacert",
        cacert.to_str().unwrap(),
        &format!("https://localhost:{port}/hello"),
    ])
}

/// A file holding the origin's own root: a client trusting only it pins the origin.
pub fn pinning_root(pki: &TestPki) -> tempfile::NamedTempFile {
    let root = tempfile::NamedTempFile::new().unwrap();
    pki.write_root(root.path());
    root
}
