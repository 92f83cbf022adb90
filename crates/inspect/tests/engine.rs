//! The data path's view: a `Scanner` built from `[anti_virus]` settings, for each
//! engine, and many large bodies spooled and scanned at once within a bounded memory.

mod support;

use std::time::Duration;

use bytes::Bytes;
use sluice_inspect::{AvVerdict, BlockCause, ScanOutcome, Scanner, SpooledBody, Spooler};
use sluice_policy::{AntiVirusSettings, AvEngine, OnOversize, OnScanError};
use support::{eicar, CIcap, Clamd, EICAR_THREAT};

fn settings(engine: AvEngine, on_error: OnScanError) -> AntiVirusSettings {
    AntiVirusSettings {
        engine,
        max_scan_size: 32 << 20,
        on_oversize: OnOversize::Allow,
        on_error,
        scan_uploads: true,
        timeout: Duration::from_secs(30),
        max_spool_total: 1 << 30,
    }
}

fn parts() -> (http::request::Parts, http::response::Parts) {
    let request = http::Request::get("https://www.example.com/download.bin")
        .body(())
        .unwrap()
        .into_parts()
        .0;
    let response = http::Response::builder()
        .status(200)
        .header("content-type", "application/octet-stream")
        .body(())
        .unwrap()
        .into_parts()
        .0;
    (request, response)
}

/// Through either engine, EICAR is blocked as a virus with its name, downloads and
/// uploads alike, and a clean body passes; the engines answer `check`.
#[tokio::test]
async fn each_engine_blocks_eicar_and_passes_clean_bodies() {
    let clamd = Clamd::start();
    let icap = CIcap::start(&clamd);
    let (request, response) = parts();
    for engine in [
        AvEngine::Icap(icap.service()),
        AvEngine::Clamd(clamd.tcp_address()),
        AvEngine::Clamd(clamd.unix_address()),
    ] {
        let settings = settings(engine.clone(), OnScanError::Block);
        let scanner = Scanner::new(&settings);
        assert!(scanner.is_enabled());
        scanner.check().await.unwrap();
        let virus = SpooledBody::from_bytes(eicar().into());
        for outcome in [
            scanner.scan_response(&request, &response, &virus).await,
            scanner.scan_request(&request, &virus).await,
        ] {
            match AvVerdict::decide(outcome, &settings) {
                AvVerdict::Block(BlockCause::Virus { threat }) => assert_eq!(threat, EICAR_THREAT),
                other => panic!("{engine:?}: {other:?}"),
            }
        }
        let clean = SpooledBody::from_bytes(Bytes::from_static(b"<html>fine</html>"));
        let outcome = scanner.scan_response(&request, &response, &clean).await;
        assert!(
            matches!(outcome, ScanOutcome::Clean),
            "{engine:?}: {outcome:?}"
        );
    }
    let none = Scanner::new(&settings(AvEngine::None, OnScanError::Block));
    assert!(!none.is_enabled());
    none.check().await.unwrap();
}

/// With the engines stopped, `on_error` decides: block (503, scan_failed) or pass
/// unscanned with the engine's failure for the log.
#[tokio::test]
async fn a_stopped_engine_follows_on_error() {
    let mut clamd = Clamd::start();
    let mut icap = CIcap::start(&clamd);
    let engines = [
        AvEngine::Icap(icap.service()),
        AvEngine::Clamd(clamd.tcp_address()),
    ];
    icap.stop();
    clamd.stop();
    let (request, response) = parts();
    let body = SpooledBody::from_bytes(eicar().into());
    for engine in engines {
        let strict = settings(engine.clone(), OnScanError::Block);
        let outcome = Scanner::new(&strict)
            .scan_response(&request, &response, &body)
            .await;
        match AvVerdict::decide(outcome, &strict) {
            AvVerdict::Block(cause @ BlockCause::ScanFailed(_)) => {
                assert_eq!(cause.status().as_u16(), 503);
            }
            other => panic!("{engine:?}: {other:?}"),
        }
        let lenient = settings(engine.clone(), OnScanError::Allow);
        let outcome = Scanner::new(&lenient)
            .scan_response(&request, &response, &body)
            .await;
        match AvVerdict::decide(outcome, &lenient) {
            AvVerdict::Pass {
                unscanned: true,
                error: Some(error),
            } => assert_eq!(error.kind(), "connect"),
            other => panic!("{engine:?}: {other:?}"),
        }
        assert!(Scanner::new(&lenient).check().await.is_err());
    }
}

/// Sixteen 4 MiB bodies spooled and scanned at once through c-icap keep within the
/// spooler's memory budget (2 MiB): the rest goes to disk, every body is scanned whole
/// and reads back intact, and all memory is returned afterwards.
#[tokio::test]
async fn many_large_bodies_at_once_stay_within_the_memory_budget() {
    let clamd = Clamd::start();
    let icap = CIcap::start(&clamd);
    let budget = 2 << 20;
    let spooler = Spooler::new(32 << 20).with_memory(512 << 10, budget);
    let scanner = Scanner::new(&settings(
        AvEngine::Icap(icap.service()),
        OnScanError::Block,
    ));
    let tasks: Vec<_> = (0..16u8)
        .map(|i| {
            let spooler = spooler.clone();
            let scanner = scanner.clone();
            tokio::spawn(async move {
                let mut writer = spooler.writer();
                for _ in 0..64 {
                    writer.push(Bytes::from(vec![i; 64 << 10])).await.unwrap();
                    assert!(spooler.memory_available() <= budget);
                }
                let body = writer.finish().await.unwrap();
                assert!(body.is_on_disk());
                let (request, response) = parts();
                let outcome = scanner.scan_response(&request, &response, &body).await;
                assert!(matches!(outcome, ScanOutcome::Clean), "{i}: {outcome:?}");
                let mut reader = body.reader();
                let mut total = 0;
                while let Some(chunk) = reader.next_chunk().await.unwrap() {
                    assert!(chunk.iter().all(|&b| b == i));
                    total += chunk.len();
                }
                assert_eq!(total, 4 << 20);
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(spooler.memory_available(), budget);
}
