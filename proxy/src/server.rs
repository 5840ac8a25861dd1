//! The listener, the control loops and the process's graceful shutdown (mini-redis style: one
//! `watch` channel tells every connection to drain; the accept loop stops first; the process
//! waits, bounded, for connections to finish and then exits 0).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, Semaphore};

use crate::connection::handle_client;
use crate::ops::config::{Cluster, Config};
use crate::state::Shared;

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// Reloads the settings on every SIGHUP, for as long as the process runs; the outcome goes to
/// the log (a refused reload says why and keeps the running settings).
fn reload_on_sighup(shared: Arc<Shared>) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup())
        .map_err(|e| anyhow::anyhow!("cannot install the SIGHUP handler: {e}"))?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading settings");
            if let Err(e) = shared.reload().await {
                tracing::error!("SIGHUP: {e}");
            }
        }
    });
    Ok(())
}

/// Runs the proxy until a shutdown signal; returns when drained.
pub async fn run(shared: Arc<Shared>) -> anyhow::Result<()> {
    // First, so a SIGHUP during startup is a reload rather than the default (exit).
    reload_on_sighup(shared.clone())?;
    let http = listen_metrics(&shared.config).await?;
    warn_unverified_hostnames(&shared.config);
    tokio::spawn(crate::ops::http::serve_http(shared.clone(), http));
    tokio::spawn(crate::upstream::health::control_loop(
        shared.clone(),
        Cluster::Origin,
    ));
    tokio::spawn(crate::upstream::health::control_loop(
        shared.clone(),
        Cluster::Target,
    ));

    let signal = shutdown_signal();
    tokio::pin!(signal);
    if !wait_for_both_clusters(&shared, signal.as_mut()).await? {
        return Ok(());
    }
    let listener = listen_clients(&shared.config).await?;
    serve_clients(&shared, listener, signal).await;
    Ok(())
}

/// Binds the metrics port (health, metrics, reload); the process cannot run without it.
async fn listen_metrics(cfg: &Config) -> anyhow::Result<TcpListener> {
    TcpListener::bind((cfg.metrics_address.as_str(), cfg.metrics_port))
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot listen on metrics_address:metrics_port {}:{}: {e}",
                cfg.metrics_address,
                cfg.metrics_port
            )
        })
}

/// Warns, once at start, for each cluster whose certificate is not checked against its name.
fn warn_unverified_hostnames(cfg: &Config) {
    for c in [Cluster::Origin, Cluster::Target] {
        let tls = cfg.tls.cluster(c);
        if tls.is_some_and(|t| !t.verifies_hostname()) {
            tracing::warn!(
                cluster = c.name(),
                "{}_tls_verify_hostname is false: the cluster's certificate is checked against \
                 the CA but not against the contact point's name",
                c.name()
            );
        }
    }
}

/// Like the reference proxy, only take clients once both clusters answered once. `Ok(false)`
/// when the shutdown signal came first.
async fn wait_for_both_clusters(
    shared: &Shared,
    mut signal: Pin<&mut impl Future<Output = ()>>,
) -> anyhow::Result<bool> {
    loop {
        if shared.health.both_up() && shared.info.read().unwrap().is_some() {
            return Ok(true);
        }
        // A settings error (a local data center without nodes) will not go away by waiting.
        if let Some(e) = shared.health.settings_error() {
            anyhow::bail!("{e}");
        }
        tokio::select! {
            _ = &mut signal => return Ok(false),
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
}

/// Binds the CQL port clients connect to, and says so in the log.
async fn listen_clients(cfg: &Config) -> anyhow::Result<TcpListener> {
    let listener = TcpListener::bind((cfg.proxy_listen_address.as_str(), cfg.proxy_listen_port))
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot listen on proxy_listen_address:proxy_listen_port {}:{}: {e}",
                cfg.proxy_listen_address,
                cfg.proxy_listen_port
            )
        })?;
    tracing::info!(
        address = %listener.local_addr()?,
        tls = cfg.tls.acceptor().is_some(),
        client_certificates_required = cfg.tls.proxy.require_client_auth,
        "zdm-proxy listening"
    );
    Ok(listener)
}

/// Takes clients until the shutdown signal, then drains: the listener closes, every connection
/// is told to finish, and the process waits for them, bounded by the longest request timeout.
async fn serve_clients(
    shared: &Arc<Shared>,
    listener: TcpListener,
    signal: Pin<&mut impl Future<Output = ()>>,
) {
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
    accept_clients(shared, &listener, signal, &shutdown_rx, &done_tx).await;
    tracing::info!("shutdown requested: no new clients; draining open connections");
    drop(listener);
    let _ = shutdown_tx.send(true);
    drop(done_tx);
    let bound = shared.live().longest_request_timeout() + Duration::from_secs(5);
    if tokio::time::timeout(bound, done_rx.recv()).await.is_err() {
        tracing::warn!("drain did not finish within {bound:?}; exiting anyway");
    }
    tracing::info!("drained; exiting");
}

/// The accept loop: each client gets its own task, at most `proxy_max_client_connections` at
/// once, until the shutdown signal. Each task holds a clone of `done` until its client is
/// gone, so the drain knows when every one has finished.
async fn accept_clients(
    shared: &Arc<Shared>,
    listener: &TcpListener,
    mut signal: Pin<&mut impl Future<Output = ()>>,
    shutdown: &watch::Receiver<bool>,
    done: &mpsc::Sender<()>,
) {
    let limit = Arc::new(Semaphore::new(shared.config.proxy_max_client_connections));
    loop {
        tokio::select! {
            _ = &mut signal => break,
            accepted = listener.accept() => {
                let Ok((socket, peer)) = accepted else { continue };
                let Ok(permit) = limit.clone().try_acquire_owned() else {
                    tracing::warn!(%peer, "proxy_max_client_connections reached; refusing client");
                    drop(socket);
                    continue;
                };
                let (shared, rx, done) = (shared.clone(), shutdown.clone(), done.clone());
                tokio::spawn(async move {
                    shared.metrics.client_connections.add(1);
                    handle_client(socket, shared.clone(), rx).await;
                    shared.metrics.client_connections.add(-1);
                    drop(permit);
                    drop(done);
                });
            }
        }
    }
}
