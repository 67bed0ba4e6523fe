//! `/api/metrics`: the server's metrics, for Prometheus. Behind the API key
//! like every read, but outside the concurrency cap and the rate limit (as
//! `/api/health` is): a scrape must get through when the server is busy,
//! which is when it matters, and it costs no database round trip.

use crate::http::error::documented::Unauthorized;
use crate::http::state::AppState;
use crate::metrics::CONTENT_TYPE;
use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

pub(in crate::http) fn router() -> Router<AppState> {
    Router::new().route("/api/metrics", get(metrics))
}

/// The server's metrics in the OpenMetrics text format Prometheus scrapes:
/// rows and rejections per table and code, requests by route, method and
/// status with their latency, loads and backups with their durations, the
/// database pool, and the build.
#[utoipa::path(get, path = "/api/metrics", tag = "service",
    responses(
        (status = 200, description = "The exposition text", content_type = "application/openmetrics-text", body = String),
        Unauthorized
    )
)]
pub(in crate::http) async fn metrics(State(state): State<AppState>) -> Response {
    let text = state.metrics.render(state.store.pool());
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response()
}
