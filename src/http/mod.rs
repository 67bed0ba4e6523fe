//! The HTTP door: an axum router over the same operations as the CLI.
//!
//! [`run`] takes its listener and shutdown signal, so tests bind port 0 and
//! every way of running the service shares one router.

mod auth;
pub mod error;
pub mod functions;
mod loads;
pub mod openapi;
mod routes;

use crate::ops::jobs::JobSettings;
use crate::storage::Storage;
use crate::store::Store;
use axum::Router;
use std::sync::Arc;

pub use auth::Keys;

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
        }
    }
}

/// The full router: every route under `/api`.
pub fn router(state: AppState) -> Router {
    routes::router(state.clone())
        .layer(axum::middleware::from_fn_with_state(
            state,
            auth::require_key,
        ))
        .layer(axum::middleware::from_fn(trace_request))
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
    serve(listener, router(state), shutdown).await
}

/// Serves `app` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
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
