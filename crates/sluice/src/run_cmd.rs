//! `sluice run`: load the configuration and the CA, bind the listeners, serve until
//! SIGTERM or Ctrl-C.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use arc_swap::ArcSwap;
use sd_notify::NotifyState;
use sluice_policy::{ClusterSettings, Config, LogTarget};
use sluice_proxy::{
    bind_transparent, serve_admin, AccessLog, Admin, Cluster, CurrentProxy, Listener, Proxy,
    Reload, Shared,
};
use sluice_tls::ca::CertificateAuthority;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, Signal, SignalKind};

use crate::config_file;

pub fn run(config_path: Option<&Path>) -> anyhow::Result<ExitCode> {
    let config = match config_file::load(config_path) {
        Ok(config) => config,
        Err(code) => return Ok(code),
    };
    init_diagnostics(&config.settings.log.level);
    raise_fd_limit(config.settings.limits.max_connections);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?
        .block_on(serve(Arc::new(config), config_path.map(Path::to_path_buf)))?;
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

async fn serve(config: Arc<Config>, config_path: Option<PathBuf>) -> anyhow::Result<()> {
    let tls = &config.settings.tls;
    let (ca, created) = CertificateAuthority::load_or_create(&tls.ca_cert, &tls.ca_key)?;
    let log = open_log(&config.settings.log.access)?;
    let mut listeners = Vec::new();
    for addr in &config.settings.listen {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        listeners.push(Listener::Explicit(listener));
    }
    for addr in &config.settings.transparent_listen {
        let listener = bind_transparent(*addr)
            .await
            .with_context(|| format!("cannot listen on {addr} (proxy.transparent_listen)"))?;
        listeners.push(Listener::Transparent(listener));
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
        .filter_map(|l| match l {
            Listener::Explicit(l) => l.local_addr().ok(),
            Listener::Transparent(_) => None,
        })
        .collect();
    let transparent_bound: Vec<_> = listeners
        .iter()
        .filter_map(|l| match l {
            Listener::Transparent(l) => l.local_addr().ok(),
            Listener::Explicit(_) => None,
        })
        .collect();
    let admin_bound = admin_listener.as_ref().and_then(|l| l.local_addr().ok());
    // A request to any of our own sockets, the admin one included, is a loop.
    let own: Vec<_> = bound
        .iter()
        .chain(&transparent_bound)
        .copied()
        .chain(admin_bound)
        .collect();
    let cluster = match &config.settings.cluster.redis {
        Some(redis) => Cluster::new(redis, &ca.derive_secret(b"fleet session-ticket key wrap"))
            .context("making the session-ticket keys")?,
        None => Cluster::alone(),
    };
    let shared = Shared::new(config.settings.limits.max_connections, cluster);
    load_learned_bypasses(&shared, &config);
    let fingerprint = ca.fingerprint_sha256();
    let proxy = Proxy::new(
        config.clone(),
        Arc::new(ca),
        log.clone(),
        own.clone(),
        &shared,
    )?;
    let current: CurrentProxy = Arc::new(ArcSwap::new(proxy));
    shared.start_cluster(current.clone());
    let reloader = Arc::new(Reloader {
        path: config_path,
        current: current.clone(),
        shared: shared.clone(),
        own,
        log: Mutex::new((config.settings.log.access.clone(), log.clone())),
        cluster: config.settings.cluster.clone(),
    });

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let stopping = move || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        }
    };
    // The admin endpoint outlives the drain (`/readyz` says 503 during it).
    let (drained, admin_stop) = tokio::sync::oneshot::channel::<()>();
    if let (Some(listener), Some(addr)) = (admin_listener, admin_bound) {
        eprintln!(
            "sluice: admin endpoint on http://{addr}/ (ca.pem, ca.der, healthz, readyz, metrics, reload, explain, bypass)"
        );
        let admin = Arc::new(Admin {
            current: current.clone(),
            reloader: reloader.clone(),
            shared: shared.clone(),
        });
        let stop = async {
            let _ = admin_stop.await;
        };
        tokio::spawn(serve_admin(admin, listener, stop));
    }
    // Signal handlers are in place before sluice says it listens: a signal sent
    // right after must not meet the default action (which ends the process).
    let hangups = signal(SignalKind::hangup()).context("watching SIGHUP")?;
    let terms = signal(SignalKind::terminate()).context("watching SIGTERM")?;
    announce(&config, &fingerprint, created, &bound, &transparent_bound);
    notify_service_manager(&[NotifyState::Ready]);
    tokio::spawn(reload_on_sighup(reloader, hangups));
    let in_force = current.clone();
    let saving = tokio::spawn(
        shared
            .bypass
            .clone()
            .keep_saved(move || in_force.load().learn_state().to_path_buf()),
    );
    tokio::spawn(async move {
        shutdown_signal(terms).await;
        notify_service_manager(&[NotifyState::Stopping]);
        let _ = stop.send(true);
    });
    sluice_proxy::serve(current.clone(), shared.clone(), listeners, stopping()).await;
    let _ = drained.send(());
    saving.abort();
    save_learned_bypasses(&shared, current.load().learn_state());
    log.flush(std::time::Duration::from_secs(5));
    eprintln!("sluice: stopped");
    Ok(())
}

/// Raise the soft limit on open files to the hard limit: each connection needs at least
/// two descriptors (client and server), and the usual soft limit of 1024 is far below
/// the default `max_connections`. Warn when the limit stays below `max_connections`.
fn raise_fd_limit(max_connections: usize) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    let limit = if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        hard
    } else {
        soft
    };
    if usize::try_from(limit).is_ok_and(|limit| limit < max_connections) {
        eprintln!(
            "sluice: warning: the open-file limit is {limit} (hard limit {hard}), below limits.max_connections = {max_connections}; connections will fail with EMFILE before the limit is reached (raise it with ulimit -n or LimitNOFILE=)"
        );
    }
}

/// The learned bypasses kept from the last run (`tls.learn_state`), expired ones left
/// out. A file that cannot be read is reported and the table starts empty.
fn load_learned_bypasses(shared: &Shared, config: &Config) {
    let tls = &config.settings.tls;
    match shared.bypass.load(&tls.learn_state, tls.learn_max_names) {
        Ok(0) => {}
        Ok(n) => tracing::info!(count = n, "learned bypasses loaded"),
        Err(error) => tracing::warn!(
            %error,
            path = %tls.learn_state.display(),
            "cannot read the learned bypasses (tls.learn_state); starting without"
        ),
    }
}

/// At exit: the learned bypasses as they are now, if they changed since the last write.
fn save_learned_bypasses(shared: &Shared, path: &Path) {
    if let Err(error) = shared.bypass.save_if_changed(path) {
        tracing::warn!(%error, path = %path.display(), "cannot write the learned bypasses");
    }
}

fn open_log(target: &LogTarget) -> anyhow::Result<AccessLog> {
    Ok(match target {
        LogTarget::Stdout => AccessLog::stdout(),
        LogTarget::File(path) => AccessLog::file(path)
            .with_context(|| format!("opening the access log {}", path.display()))?,
    })
}

/// Builds a new configuration generation from the file (SPEC §6 reload): a valid one
/// takes effect for new connections, running ones keep theirs; an invalid one changes
/// nothing. Listening sockets and `limits.max_connections` stay as started.
struct Reloader {
    /// The configuration file; `None` for the embedded default.
    path: Option<PathBuf>,
    current: CurrentProxy,
    shared: Arc<Shared>,
    /// Our own sockets, for loop detection.
    own: Vec<SocketAddr>,
    /// The access log in use and where it writes; reopened only when that changes.
    log: Mutex<(LogTarget, AccessLog)>,
    /// `[cluster]` as started (a reload does not change it).
    cluster: ClusterSettings,
}

impl Reload for Reloader {
    fn reload(&self) -> Result<(), Vec<String>> {
        let result = self.build();
        match &result {
            Ok(()) => tracing::info!("configuration reloaded; new connections use it"),
            Err(errors) => {
                tracing::warn!(errors = ?errors, "reload refused; the running configuration stays")
            }
        }
        result
    }
}

impl Reloader {
    fn build(&self) -> Result<(), Vec<String>> {
        let config = match &self.path {
            Some(path) => Config::load(path)
                .map_err(|errors| errors.iter().map(ToString::to_string).collect::<Vec<_>>())?,
            None => Config::embedded_default(),
        };
        let tls = &config.settings.tls;
        let ca = CertificateAuthority::load(&tls.ca_cert, &tls.ca_key)
            .map_err(|e| vec![e.to_string()])?;
        let mut log = self
            .log
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if log.0 != config.settings.log.access {
            let reopened =
                open_log(&config.settings.log.access).map_err(|e| vec![format!("{e:#}")])?;
            *log = (config.settings.log.access.clone(), reopened);
        }
        if config.settings.cluster != self.cluster {
            tracing::warn!("[cluster] changed: it takes effect at the next restart");
        }
        let proxy = Proxy::new(
            Arc::new(config),
            Arc::new(ca),
            log.1.clone(),
            self.own.clone(),
            &self.shared,
        )
        .map_err(|e| vec![e.to_string()])?;
        self.current.store(proxy);
        Ok(())
    }
}

/// SIGHUP reloads the configuration, as `POST /reload` does.
async fn reload_on_sighup(reloader: Arc<Reloader>, mut hangups: Signal) {
    while hangups.recv().await.is_some() {
        // systemd (Type=notify) wants the reload's start stamped with CLOCK_MONOTONIC.
        match NotifyState::monotonic_usec_now() {
            Ok(now) => notify_service_manager(&[NotifyState::Reloading, now]),
            Err(_) => notify_service_manager(&[NotifyState::Reloading]),
        }
        let reloader = reloader.clone();
        // Loading lists and generating keys is blocking work.
        let _ = tokio::task::spawn_blocking(move || reloader.reload()).await;
        // Ready again whether the new configuration took effect or the old one stays.
        notify_service_manager(&[NotifyState::Ready]);
    }
}

/// Tell the service manager (systemd `Type=notify`, through `$NOTIFY_SOCKET`) about a
/// change of state; nothing happens when sluice does not run under one.
fn notify_service_manager(states: &[NotifyState]) {
    if let Err(error) = sd_notify::notify(states) {
        tracing::warn!(%error, "cannot notify the service manager (NOTIFY_SOCKET)");
    }
}

/// Tell the operator where the CA is and how to try the proxy.
fn announce(
    config: &Config,
    fingerprint: &str,
    created: bool,
    bound: &[std::net::SocketAddr],
    transparent: &[std::net::SocketAddr],
) {
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
    for addr in transparent {
        eprintln!("sluice: transparent interception on {addr}");
    }
    // Last: tools (and the tests) wait for these lines to know the proxy is ready.
    for addr in bound {
        eprintln!("sluice: listening on {addr}");
    }
}

/// SIGTERM or Ctrl-C.
async fn shutdown_signal(mut terms: Signal) {
    tokio::select! {
        _ = terms.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
