//! Starting and stopping the server: its state from the environment, the
//! listener, the router of its mode (standalone or under the Functions
//! host), and hyper's connections until the shutdown signal.

use super::app;
use super::auth::Keys;
use super::functions;
use super::limits::{LimitSettings, Limits};
use super::state::{AppState, Runner};
use crate::ops::jobs::JobSettings;
use crate::storage::Storage;
use crate::store::Store;
use anyhow::Context;
use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::future::Future;
use std::sync::Arc;
use tower::ServiceExt;

/// What `hrmig serve` is given on its command line.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The database URL.
    pub database: String,
    /// The storage root.
    pub storage: String,
    /// The address of a standalone server; under the Functions host its
    /// port decides.
    pub listen: String,
}

/// Runs the server of `config` until `shutdown` completes, then closes the
/// database. Keys, limits and the jobs' heartbeat come from the environment;
/// errors when one of them, the database, the storage or the address cannot
/// be used.
pub async fn start(
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // Under the Functions host: its port, loopback only, and the host's own
    // routes.
    let host_port = functions::host_port();
    let addr = match &host_port {
        Some(port) => format!("127.0.0.1:{port}"),
        None => config.listen.clone(),
    };
    // Checked before the database is opened: a bad limit fails fast.
    let limits = LimitSettings::from_env()?;
    let store = Store::open(&config.database).await.with_context(|| {
        format!(
            "cannot open database {}",
            crate::store::redact(&config.database)
        )
    })?;
    let store = Arc::new(store);
    let mut state = AppState::new(
        store.clone(),
        Storage::open(&config.storage)?,
        Arc::new(Keys::from_env()),
    );
    state.jobs = JobSettings::from_env().map_err(anyhow::Error::msg)?;
    state.limits = Arc::new(Limits::new(limits));
    let app = match host_port {
        Some(_) => {
            // Under the Functions host a load job runs in a queue-triggered
            // invocation, which the host keeps alive.
            state.runner = Runner::Queue;
            functions_router(state)
        }
        None => app::standalone_router(state),
    };
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    tracing::info!(address = %listener.local_addr()?, "listening");
    serve(listener, app, limits, shutdown).await?;
    store.close().await?;
    Ok(())
}

/// The router of a custom handler under the Azure Functions host: the API
/// plus the host's own routes ([`functions`]).
pub fn functions_router(state: AppState) -> Router {
    functions::router(state.clone()).merge(app::router(state))
}

/// Serves `router(state)` on `listener` until `shutdown` completes; requests
/// in flight finish, new connections are refused.
pub async fn run(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let settings = state.limits.settings;
    serve(listener, app::standalone_router(state), settings, shutdown).await
}

/// Serves `app` over HTTP/1.1 on `listener` until `shutdown` completes, then
/// lets the requests in flight finish (idle connections close at once).
///
/// Not `axum::serve`: it does not expose hyper's header-read timeout, which
/// is what cuts a client that sends its head slowly or keeps an idle
/// connection open. Each request carries its client's address
/// (`ConnectInfo<SocketAddr>`) for the rate limit.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    settings: LimitSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(settings.header_timeout)
        .keep_alive(true);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of
                    // spinning, as axum::serve does.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let app = app
            .clone()
            .map_request(move |mut req: axum::extract::Request<_>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                req
            });
        let service = hyper_util::service::TowerToHyperService::new(app);
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            // A client that went away or was cut by a timeout: not ours to report.
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Completes on SIGTERM or SIGINT (orchestrators send SIGTERM, a terminal SIGINT).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down: finishing requests in flight");
}
