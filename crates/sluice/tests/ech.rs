//! Encrypted ClientHello through sluice (SPEC §1.3): a real ECH ClientHello, whose
//! outer SNI is the provider's public name and differs from the CONNECT host, is bumped
//! for that outer name with no ECH keys and no retry configs, so the client's ECH is
//! rejected; the client's retry without ECH is then decided and bumped as usual.

mod support;

use std::sync::Arc;

use rustls::client::{EchConfig, EchMode};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, EchConfigListBytes, ServerName};
use rustls::{ClientConfig, PeerIncompatible, RootCertStore};
use support::origin::HELLO;
use support::sluice::SluiceConfig;
use support::{Origin, OriginOptions, Sluice, TestPki};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// The public (outer) name of the test ECH configuration: a name the origin's leaf
/// covers, as a provider's shared certificate covers its public name.
const PUBLIC_NAME: &str = "tunnel.test";
/// The name the client really wants (the CONNECT host and the inner SNI).
const INNER_NAME: &str = "bump.test";

/// An ECHConfigList (draft-ietf-tls-esni-18 §4) with one X25519 / HKDF-SHA256 /
/// AES-128-GCM configuration for `public_name`. The key is random: no one, sluice
/// included, can open the inner hello, as with a real provider's key.
fn ech_config_list(public_name: &str) -> Vec<u8> {
    let public_key: [u8; 32] = rand::random();
    let mut contents = vec![7]; // config_id
    contents.extend(0x0020_u16.to_be_bytes()); // DHKEM(X25519, HKDF-SHA256)
    contents.extend(32_u16.to_be_bytes());
    contents.extend(public_key);
    contents.extend(4_u16.to_be_bytes());
    contents.extend(0x0001_u16.to_be_bytes()); // HKDF-SHA256
    contents.extend(0x0001_u16.to_be_bytes()); // AES-128-GCM
    contents.push(0); // maximum_name_length
    contents.push(public_name.len() as u8);
    contents.extend(public_name.as_bytes());
    contents.extend(0_u16.to_be_bytes()); // no extensions
    let mut config = 0xfe0d_u16.to_be_bytes().to_vec();
    config.extend((contents.len() as u16).to_be_bytes());
    config.extend(contents);
    let mut list = (config.len() as u16).to_be_bytes().to_vec();
    list.extend(config);
    list
}

fn client_config(sluice: &Sluice, ech: bool) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(sluice.ca_path()).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ));
    let builder = if ech {
        let list = EchConfigListBytes::from(ech_config_list(PUBLIC_NAME));
        let config =
            EchConfig::new(list, rustls::crypto::aws_lc_rs::hpke::ALL_SUPPORTED_SUITES).unwrap();
        builder.with_ech(EchMode::from(config)).unwrap()
    } else {
        builder.with_safe_default_protocol_versions().unwrap()
    };
    let mut config = builder.with_root_certificates(roots).with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// CONNECT `INNER_NAME:port` through sluice, then TLS for `INNER_NAME` with `config`;
/// with a completed handshake, a GET whose whole answer is returned.
async fn try_get(
    sluice: &Sluice,
    port: u16,
    config: Arc<ClientConfig>,
) -> Result<String, std::io::Error> {
    let mut tcp = TcpStream::connect(sluice.addr).await?;
    let target = format!("{INNER_NAME}:{port}");
    tcp.write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
        .await?;
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") && head.len() < 4096 {
        head.push(tcp.read_u8().await?);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    let name = ServerName::try_from(INNER_NAME).unwrap();
    let mut tls = TlsConnector::from(config).connect(name, tcp).await?;
    let request =
        format!("GET /hello HTTP/1.1\r\nHost: {INNER_NAME}:{port}\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).await?;
    let mut answer = Vec::new();
    let _ = tls.read_to_end(&mut answer).await;
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

#[test]
fn real_ech_is_bumped_for_its_public_name_and_the_retry_without_ech_succeeds() {
    let pki = TestPki::new();
    let origin = Origin::start(OriginOptions {
        tls: Some(pki.valid()),
        ..Default::default()
    });
    let sluice = Sluice::start(
        &pki,
        SluiceConfig {
            connect_ports: &[origin.port()],
            ..Default::default()
        },
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        // With ECH: sluice answers for the public name, without retry configs.
        let error = try_get(&sluice, origin.port(), client_config(&sluice, true))
            .await
            .expect_err("sluice holds no ECH keys: ECH is rejected");
        let rustls_error = error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>());
        assert_eq!(
            rustls_error,
            Some(&rustls::Error::PeerIncompatible(
                PeerIncompatible::ServerRejectedEncryptedClientHello(None)
            )),
            "rejected, with no retry configs: {error}"
        );
        // The client falls back: a retry without ECH is bumped as usual.
        let answer = try_get(&sluice, origin.port(), client_config(&sluice, false))
            .await
            .unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with(HELLO), "{answer}");
    });
    let records = sluice.wait_records("two connect records", 2, |r| r["kind"] == "connect");
    let ech = records
        .iter()
        .find(|r| r["ech"] == true)
        .expect("an ech record");
    assert_eq!(ech["sni"], PUBLIC_NAME);
    assert_eq!(ech["host"], INNER_NAME);
    assert_eq!(ech["action"], "bump");
    assert_ne!(ech["error"], "sni_mismatch");
    let retry = records
        .iter()
        .find(|r| r["ech"] == false)
        .expect("the retry's record");
    assert_eq!(retry["sni"], INNER_NAME);
    assert_eq!(retry["action"], "bump");
}

// Without encrypted_client_hello, an SNI that differs from the CONNECT host is still the
// bypass attempt it was: terminated as sni_mismatch.
#[test]
fn a_differing_sni_without_ech_is_still_terminated() {
    let pki = TestPki::new();
    let origin = Origin::start(OriginOptions {
        tls: Some(pki.valid()),
        ..Default::default()
    });
    let sluice = Sluice::start(
        &pki,
        SluiceConfig {
            connect_ports: &[origin.port()],
            ..Default::default()
        },
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut tcp = TcpStream::connect(sluice.addr).await.unwrap();
        let target = format!("{INNER_NAME}:{}", origin.port());
        tcp.write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") && head.len() < 4096 {
            head.push(tcp.read_u8().await.unwrap());
        }
        let name = ServerName::try_from(PUBLIC_NAME).unwrap();
        let result = TlsConnector::from(client_config(&sluice, false))
            .connect(name, tcp)
            .await;
        assert!(result.is_err(), "terminated");
    });
    let record = sluice.wait_record("the connect record", |r| r["kind"] == "connect");
    assert_eq!(record["error"], "sni_mismatch");
    assert_eq!(record["ech"], false);
}
