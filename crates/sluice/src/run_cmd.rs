//! `sluice run`: load the configuration and the CA, bind the listeners, serve until
//! SIGTERM or Ctrl-C.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use sluice_policy::{Config, LogTarget};
use sluice_proxy::bypass::BypassTable;
use sluice_proxy::{serve_admin, AccessLog, Admin, Proxy};
use sluice_tls::ca::CertificateAuthority;
use tokio::net::TcpListener;

use crate::config_file;

pub fn run(config_path: Option<&Path>) -> anyhow::Result<ExitCode> {
    let config = match config_file::load(config_path) {
        Ok(config) => config,
        Err(code) => return Ok(code),
    };
    init_diagnostics(&config.settings.log.level);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?
        .block_on(serve(Arc::new(config)))?;
    Ok(ExitCode::SUCCESS)
}

/// Diagnostics go to stderr (the access log has stdout). `RUST_LOG` overrides the level.
fn init_diagnostics(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

async fn serve(config: Arc<Config>) -> anyhow::Result<()> {
    let tls = &config.settings.tls;
    let (ca, created) = CertificateAuthority::load_or_create(&tls.ca_cert, &tls.ca_key)?;
    let log = match &config.settings.log.access {
        LogTarget::Stdout => AccessLog::stdout(),
        LogTarget::File(path) => AccessLog::file(path)
            .with_context(|| format!("opening the access log {}", path.display()))?,
    };
    let mut listeners = Vec::new();
    for addr in &config.settings.listen {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        listeners.push(listener);
    }
    let admin_listener = match config.settings.admin_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} (admin.listen)"))?,
        ),
        None => None,
    };
    let bound: Vec<_> = listeners
        .iter()
        .filter_map(|l| l.local_addr().ok())
        .collect();
    let admin_bound = admin_listener.as_ref().and_then(|l| l.local_addr().ok());
    // A request to any of our own sockets, the admin one included, is a loop.
    let own: Vec<_> = bound.iter().copied().chain(admin_bound).collect();
    let bypass = Arc::new(BypassTable::default());
    let ca_pem = ca.cert_pem().to_string();
    let ca_der = ca.cert_der().to_vec();
    let fingerprint = ca.fingerprint_sha256();
    let proxy = Proxy::new(config.clone(), Arc::new(ca), log.clone(), own, bypass)?;

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let stopping = move || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        }
    };
    if let (Some(listener), Some(addr)) = (admin_listener, admin_bound) {
        eprintln!(
            "sluice: admin endpoint on http://{addr}/ (ca.pem, ca.der, healthz, explain, bypass)"
        );
        let admin = Arc::new(Admin {
            proxy: proxy.clone(),
            ca_pem,
            ca_der,
        });
        tokio::spawn(serve_admin(admin, listener, stopping()));
    }
    announce(&config, &fingerprint, created, &bound);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    });
    sluice_proxy::serve(proxy, listeners, stopping()).await;
    log.flush(std::time::Duration::from_secs(5));
    eprintln!("sluice: stopped");
    Ok(())
}

/// Tell the operator where the CA is and how to try the proxy.
fn announce(config: &Config, fingerprint: &str, created: bool, bound: &[std::net::SocketAddr]) {
    let cert = &config.settings.tls.ca_cert;
    let cert = std::fs::canonicalize(cert).unwrap_or_else(|_| cert.clone());
    let state = if created { "created" } else { "loaded" };
    eprintln!("sluice: CA certificate {state}: {}", cert.display());
    eprintln!("sluice: CA SHA-256 fingerprint {fingerprint}");
    if let Some(addr) = bound.first() {
        eprintln!(
            "sluice: trust the CA certificate on your clients, or try: curl --cacert {} -x http://{addr} https://example.com/",
            cert.display()
        );
    }
    // Last: tools (and the tests) wait for these lines to know the proxy is ready.
    for addr in bound {
        eprintln!("sluice: listening on {addr}");
    }
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(error) => {
            tracing::warn!(%error, "cannot watch SIGTERM; only Ctrl-C stops sluice");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
