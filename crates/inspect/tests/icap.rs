//! The ICAP client against a real c-icap with its virus_scan service scanning through
//! a real clamd (see `support`): OPTIONS, RESPMOD with and without a preview, REQMOD,
//! large bodies, `Transfer-*` lists, concurrency within `Max-Connections`, and a stopped
//! server.

mod support;

use std::time::Duration;

use bytes::Bytes;
use http::{request, response};
use sluice_inspect::icap::IcapClient;
use sluice_inspect::{ScanOutcome, SpooledBody, Spooler};
use support::{eicar, CIcap, CIcapConfig, Clamd, EICAR_THREAT};

const TIMEOUT: Duration = Duration::from_secs(30);

fn get(url: &str) -> request::Parts {
    http::Request::get(url)
        .header("user-agent", "sluice-test")
        .body(())
        .unwrap()
        .into_parts()
        .0
}

fn post(url: &str) -> request::Parts {
    http::Request::post(url)
        .header("content-type", "application/octet-stream")
        .body(())
        .unwrap()
        .into_parts()
        .0
}

fn ok(content_type: &str) -> response::Parts {
    http::Response::builder()
        .status(200)
        .header("content-type", content_type)
        .body(())
        .unwrap()
        .into_parts()
        .0
}

async fn spooled(chunks: impl IntoIterator<Item = Vec<u8>>) -> SpooledBody {
    let spooler = Spooler::new(1 << 30).with_memory(1 << 20, 4 << 20);
    let mut writer = spooler.writer();
    for chunk in chunks {
        writer.push(Bytes::from(chunk)).await.unwrap();
    }
    writer.finish().await.unwrap()
}

fn infected(outcome: &ScanOutcome) -> bool {
    matches!(outcome, ScanOutcome::Infected { threat } if threat == EICAR_THREAT)
}

/// OPTIONS are read (ISTag, Preview, Max-Connections, methods), cached, and fetched
/// again once their Options-TTL has passed.
#[tokio::test]
async fn options_are_read_cached_and_refetched_after_their_ttl() {
    let clamd = Clamd::start();
    let icap = CIcap::start_with(
        &clamd,
        &CIcapConfig {
            options_ttl: 2,
            max_connections: 4,
            ..CIcapConfig::default()
        },
    );
    let client = IcapClient::new(&icap.service(), TIMEOUT);
    let options = client.refresh_options().await.unwrap();
    assert!(
        options
            .istag
            .as_deref()
            .is_some_and(|t| t.starts_with("\"CI0001-")),
        "{options:?}"
    );
    assert_eq!(options.preview, Some(1024));
    assert_eq!(options.max_connections, Some(4));
    assert_eq!(options.ttl, Some(Duration::from_secs(2)));
    assert!(options.supports("RESPMOD") && options.supports("REQMOD"));
    assert!(options.allow_204);
    assert_eq!(client.max_connections(), 4);
    assert_eq!(client.options_fetches(), 1);

    let body = SpooledBody::from_bytes(Bytes::from_static(b"clean text\n"));
    let (request, response) = (get("http://o.example/a.txt"), ok("text/plain"));
    let scan = || client.scan_response(&request, &response, &body);
    assert!(matches!(scan().await, ScanOutcome::Clean));
    assert_eq!(client.options_fetches(), 1, "the cached options were used");
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert!(matches!(scan().await, ScanOutcome::Clean));
    assert_eq!(
        client.options_fetches(),
        2,
        "fetched again after Options-TTL"
    );
}

/// EICAR in a response is found with its name: inside a preview that holds the whole
/// body (`0; ieof`), after a preview (`100 Continue`), and without a preview
/// (`Transfer-Complete`); clean bodies are clean in each case (a 204, or c-icap's
/// unchanged copy without a preview).
#[tokio::test]
async fn eicar_in_a_response_is_found_with_and_without_a_preview() {
    let clamd = Clamd::start();
    let icap = CIcap::start_with(
        &clamd,
        &CIcapConfig {
            extra: "virus_scan.TransferComplete exe".into(),
            ..CIcapConfig::default()
        },
    );
    let client = IcapClient::new(&icap.service(), TIMEOUT);
    let response = ok("application/octet-stream");
    for url in ["http://o.example/file.bin", "http://o.example/setup.exe"] {
        let request = get(url);
        let fits = SpooledBody::from_bytes(eicar().into());
        let outcome = client.scan_response(&request, &response, &fits).await;
        assert!(infected(&outcome), "{url}, EICAR alone: {outcome:?}");
        let after_preview = spooled([vec![b'a'; 5000], eicar(), vec![b'b'; 5000]]).await;
        let outcome = client
            .scan_response(&request, &response, &after_preview)
            .await;
        assert!(
            infected(&outcome),
            "{url}, EICAR after 5000 bytes: {outcome:?}"
        );
        for clean in [vec![b'c'; 100], vec![b'd'; 70_000]] {
            let body = spooled([clean]).await;
            let outcome = client.scan_response(&request, &response, &body).await;
            assert!(matches!(outcome, ScanOutcome::Clean), "{url}: {outcome:?}");
        }
    }
}

/// A file type the server lists in Transfer-Ignore is not sent at all.
#[tokio::test]
async fn transfer_ignore_is_honoured() {
    let clamd = Clamd::start();
    let icap = CIcap::start_with(
        &clamd,
        &CIcapConfig {
            extra: "virus_scan.TransferIgnore jpg".into(),
            ..CIcapConfig::default()
        },
    );
    let client = IcapClient::new(&icap.service(), TIMEOUT);
    let body = SpooledBody::from_bytes(eicar().into());
    let outcome = client
        .scan_response(&get("http://o.example/photo.JPG"), &ok("image/jpeg"), &body)
        .await;
    assert!(matches!(outcome, ScanOutcome::Clean), "{outcome:?}");
    let outcome = client
        .scan_response(&get("http://o.example/photo.png"), &ok("image/png"), &body)
        .await;
    assert!(infected(&outcome), "{outcome:?}");
}

/// A clean 20 MiB response, spilled to disk, goes through preview and 100 Continue and
/// is still intact afterwards; EICAR at its very end is found.
#[tokio::test]
async fn a_large_body_is_scanned_whole() {
    let clamd = Clamd::start();
    let icap = CIcap::start(&clamd);
    let client = IcapClient::new(&icap.service(), TIMEOUT);
    let request = get("http://o.example/big.iso");
    let response = ok("application/octet-stream");
    let block: Vec<u8> = (0..=255u8).cycle().take(1 << 20).collect();
    let body = spooled((0..20).map(|_| block.clone())).await;
    assert!(body.is_on_disk());
    let outcome = client.scan_response(&request, &response, &body).await;
    assert!(matches!(outcome, ScanOutcome::Clean), "{outcome:?}");
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
    let tail_virus = spooled((0..20).map(|_| block.clone()).chain([eicar()])).await;
    let outcome = client.scan_response(&request, &response, &tail_virus).await;
    assert!(infected(&outcome), "{outcome:?}");
}

/// An upload carrying EICAR is found with REQMOD; a clean one passes.
#[tokio::test]
async fn an_eicar_upload_is_found_with_reqmod() {
    let clamd = Clamd::start();
    let icap = CIcap::start(&clamd);
    let client = IcapClient::new(&icap.service(), TIMEOUT);
    let request = post("http://o.example/upload");
    let small = SpooledBody::from_bytes(eicar().into());
    assert!(infected(&client.scan_request(&request, &small).await));
    let large = spooled([vec![b'u'; 3000], eicar()]).await;
    assert!(infected(&client.scan_request(&request, &large).await));
    let clean = spooled([vec![b'u'; 3000]]).await;
    let outcome = client.scan_request(&request, &clean).await;
    assert!(matches!(outcome, ScanOutcome::Clean), "{outcome:?}");
}

/// Many concurrent scans share at most Max-Connections connections and all finish.
#[tokio::test]
async fn concurrent_scans_share_the_connections() {
    let clamd = Clamd::start();
    let icap = CIcap::start_with(
        &clamd,
        &CIcapConfig {
            max_connections: 2,
            ..CIcapConfig::default()
        },
    );
    let client = IcapClient::new(&icap.service(), TIMEOUT);
    client.refresh_options().await.unwrap();
    assert_eq!(client.max_connections(), 2);
    let scans = (0..24).map(|i| {
        let client = client.clone();
        tokio::spawn(async move {
            let body = if i % 3 == 0 {
                SpooledBody::from_bytes(eicar().into())
            } else {
                SpooledBody::from_bytes(Bytes::from(vec![b'k'; 4000 + i]))
            };
            let outcome = client
                .scan_response(&get("http://o.example/x"), &ok("text/plain"), &body)
                .await;
            (i, outcome)
        })
    });
    for scan in scans {
        let (i, outcome) = scan.await.unwrap();
        if i % 3 == 0 {
            assert!(infected(&outcome), "{i}: {outcome:?}");
        } else {
            assert!(matches!(outcome, ScanOutcome::Clean), "{i}: {outcome:?}");
        }
    }
}

/// A stopped server is a failure (its pooled connection is found closed, and a new one
/// is refused), never a clean verdict.
#[tokio::test]
async fn a_stopped_server_is_a_failure() {
    let clamd = Clamd::start();
    let mut icap = CIcap::start(&clamd);
    let client = IcapClient::new(&icap.service(), TIMEOUT);
    let body = SpooledBody::from_bytes(Bytes::from_static(b"text"));
    let (request, response) = (get("http://o.example/"), ok("text/plain"));
    let scan = || client.scan_response(&request, &response, &body);
    assert!(matches!(scan().await, ScanOutcome::Clean));
    icap.stop();
    match scan().await {
        ScanOutcome::Failed(error) => assert_eq!(error.kind(), "connect", "{error}"),
        other => panic!("expected a failure, got {other:?}"),
    }
}

/// A c-icap whose clamd is down answers with an error status: a failure too.
#[tokio::test]
async fn a_server_whose_engine_is_down_is_a_failure() {
    let mut clamd = Clamd::start();
    let icap = CIcap::start(&clamd);
    let client = IcapClient::new(&icap.service(), TIMEOUT);
    client.refresh_options().await.unwrap();
    clamd.stop();
    let body = SpooledBody::from_bytes(eicar().into());
    match client
        .scan_response(&get("http://o.example/"), &ok("text/plain"), &body)
        .await
    {
        ScanOutcome::Failed(error) => assert_eq!(error.kind(), "refused", "{error}"),
        other => panic!("expected a failure, got {other:?}\n{}", icap.log()),
    }
}
