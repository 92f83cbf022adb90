//! The clamd client against a real clamd (see `support`): EICAR over TCP and over the
//! Unix socket, clean bodies small and large, `StreamMaxLength` as oversize, and a
//! stopped daemon as a failure.

mod support;

use std::time::Duration;

use bytes::Bytes;
use sluice_inspect::clamd::ClamdClient;
use sluice_inspect::{ScanOutcome, SpooledBody, Spooler};
use support::{eicar, Clamd, ClamdConfig, EICAR_THREAT};

const TIMEOUT: Duration = Duration::from_secs(30);

async fn spooled(chunks: impl IntoIterator<Item = Vec<u8>>) -> SpooledBody {
    let spooler = Spooler::new(1 << 30).with_memory(1 << 20, 4 << 20);
    let mut writer = spooler.writer();
    for chunk in chunks {
        writer.push(Bytes::from(chunk)).await.unwrap();
    }
    writer.finish().await.unwrap()
}

fn assert_infected(outcome: ScanOutcome) {
    match outcome {
        ScanOutcome::Infected { threat } => assert_eq!(threat, EICAR_THREAT),
        other => panic!("expected EICAR, got {other:?}"),
    }
}

/// EICAR is found over TCP and over the Unix socket, alone and inside a larger body
/// split across chunks; a clean body is clean; PING answers.
#[tokio::test]
async fn eicar_is_found_over_tcp_and_unix_socket() {
    let clamd = Clamd::start();
    for address in [clamd.tcp_address(), clamd.unix_address()] {
        let client = ClamdClient::new(address.clone(), TIMEOUT);
        client.ping().await.unwrap();
        assert_infected(client.scan(&SpooledBody::from_bytes(eicar().into())).await);
        let virus = eicar();
        let (head, tail) = virus.split_at(30);
        let body = spooled([
            vec![b'a'; 100_000],
            head.to_vec(),
            tail.to_vec(),
            vec![b'z'; 10],
        ])
        .await;
        assert_infected(client.scan(&body).await);
        let clean = SpooledBody::from_bytes(Bytes::from_static(b"hello, world\n"));
        assert!(
            matches!(client.scan(&clean).await, ScanOutcome::Clean),
            "{address:?}"
        );
    }
}

/// A clean 20 MiB body, spilled to disk by the spool, is scanned whole and is still
/// byte-identical when read again afterwards.
#[tokio::test]
async fn a_large_clean_body_is_scanned_from_the_spool() {
    let clamd = Clamd::start();
    let client = ClamdClient::new(clamd.tcp_address(), TIMEOUT);
    let block: Vec<u8> = (0..=255u8).cycle().take(1 << 20).collect();
    let body = spooled((0..20).map(|_| block.clone())).await;
    assert!(body.is_on_disk());
    assert!(matches!(client.scan(&body).await, ScanOutcome::Clean));
    let mut reader = body.reader();
    let mut total = 0usize;
    while let Some(chunk) = reader.next_chunk().await.unwrap() {
        assert!(chunk
            .iter()
            .enumerate()
            .all(|(i, &b)| b == ((total + i) % 256) as u8));
        total += chunk.len();
    }
    assert_eq!(total, 20 << 20);
}

/// A body over clamd's StreamMaxLength is oversize, not a failure.
#[tokio::test]
async fn stream_max_length_is_oversize() {
    let clamd = Clamd::start_with(&ClamdConfig {
        stream_max_length: "1M".into(),
    });
    for address in [clamd.tcp_address(), clamd.unix_address()] {
        let client = ClamdClient::new(address, TIMEOUT);
        let body = spooled((0..8).map(|_| vec![b'x'; 1 << 20])).await;
        let outcome = client.scan(&body).await;
        assert!(matches!(outcome, ScanOutcome::Oversize), "{outcome:?}");
    }
}

/// A stopped clamd is a failure to connect, over either socket.
#[tokio::test]
async fn a_stopped_clamd_is_a_failure() {
    let mut clamd = Clamd::start();
    let addresses = [clamd.tcp_address(), clamd.unix_address()];
    clamd.stop();
    for address in addresses {
        let client = ClamdClient::new(address, TIMEOUT);
        match client.scan(&SpooledBody::from_bytes(eicar().into())).await {
            ScanOutcome::Failed(error) => assert_eq!(error.kind(), "connect", "{error}"),
            other => panic!("expected a failure, got {other:?}"),
        }
        assert_eq!(client.ping().await.unwrap_err().kind(), "connect");
    }
}
