//! The HTTP door: an axum router over the same operations as the CLI.
//!
//! [`run`] takes its listener and shutdown signal, so tests bind port 0 and
//! every way of running the service shares one router. [`serve`] drives
//! hyper's HTTP/1.1 connections itself, with the timeouts and caps of
//! [`limits`].

mod auth;
pub mod error;
pub mod functions;
pub mod limits;
mod loads;
pub mod openapi;
mod routes;

use crate::ops::jobs::JobSettings;
use crate::storage::Storage;
use crate::store::Store;
use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::sync::Arc;
use tower::ServiceExt;

pub use auth::Keys;
pub use limits::{LimitSettings, Limits};

/// Largest request body accepted (a full batch of long rows fits easily).
pub const MAX_BODY_BYTES: usize = 8 << 20;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The database.
    pub store: Arc<Store>,
    /// The storage root (loads read `landing/` below it).
    pub storage: Storage,
    /// API and admin keys.
    pub keys: Arc<Keys>,
    /// The load jobs' heartbeat.
    pub jobs: JobSettings,
    /// Who runs the load jobs the API records.
    pub runner: Runner,
    /// Timeouts, the concurrency cap and the rate limit, shared by every
    /// router built from this state.
    pub limits: Arc<Limits>,
}

/// Who runs a load job once the API has recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runner {
    /// This process, on a task of its own (the standalone server).
    InProcess,
    /// A queue-triggered invocation of the Functions host: the response
    /// carries the job to put on the queue ([`QueuedJob`]).
    Queue,
}

/// A response extension: the id of a job the Functions host should put on
/// the load queue (see [`functions`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedJob(pub String);

impl AppState {
    /// The state of a standalone server: jobs run in this process, with the
    /// default heartbeat.
    pub fn new(store: Arc<Store>, storage: Storage, keys: Arc<Keys>) -> AppState {
        AppState {
            store,
            storage,
            keys,
            jobs: JobSettings::default(),
            runner: Runner::InProcess,
            limits: Arc::new(Limits::default()),
        }
    }
}

/// The full router: every route under `/api`.
///
/// Layers, outermost first: body size and body timeout, tracing, the API
/// key, then (for every route but `/api/health`) the rate limit and the
/// concurrency cap. Both come after the key check, so a request with a wrong
/// key costs neither a permit nor a bucket.
pub fn router(state: AppState) -> Router {
    let limits = state.limits.clone();
    // `Router::layer` wraps each route on its own: the global limit shares
    // one semaphore among them (a plain `ConcurrencyLimitLayer` would give
    // every route a cap of its own).
    let cap = tower::ServiceBuilder::new()
        .layer(axum::error_handling::HandleErrorLayer::new(
            limits::overloaded,
        ))
        .load_shed()
        .layer(tower::limit::GlobalConcurrencyLimitLayer::with_semaphore(
            limits.permits.clone(),
        ));
    routes::router(state.clone())
        .layer(cap)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            limits::rate_limit,
        ))
        .merge(routes::health_router(state.clone()))
        .layer(axum::middleware::from_fn_with_state(
            state,
            auth::require_key,
        ))
        .layer(axum::middleware::from_fn(trace_request))
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            limits.settings.body_timeout,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
}

/// The router of a custom handler under the Azure Functions host: the API
/// plus the host's own routes ([`functions`]).
pub fn functions_router(state: AppState) -> Router {
    functions::router(state.clone()).merge(router(state))
}

/// Serves `router(state)` on `listener` until `shutdown` completes; requests
/// in flight finish, new connections are refused.
pub async fn run(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let settings = state.limits.settings;
    serve(listener, router(state), settings, shutdown).await
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
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
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

/// One span per request: method, route, status, latency (never bodies or keys).
async fn trace_request(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| req.uri().path().to_owned());
    let span = tracing::info_span!(
        "request",
        %method,
        route,
        status = tracing::field::Empty,
        millis = tracing::field::Empty
    );
    let started = std::time::Instant::now();
    let response = tracing::Instrument::instrument(next.run(req), span.clone()).await;
    // Hundredths of a millisecond: a number a person or a query can read.
    let millis = (started.elapsed().as_secs_f64() * 100_000.0).round() / 100.0;
    span.record("status", response.status().as_u16());
    span.record("millis", millis);
    span.in_scope(|| tracing::info!(target: "hrmig::http", "request done"));
    response
}
