//! The request log: one span per request, and the cause of an error answer
//! logged in it (an [`ApiError`](super::error::ApiError) leaves its cause in
//! the response for this layer; the client sees an opaque body).

use super::error::ErrorCause;
use crate::metrics::Metrics;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use std::sync::Arc;

/// One span per request: method, route, status, latency (never bodies or
/// keys); counted in the metrics by route pattern.
pub(super) async fn trace_request(
    State(metrics): State<Arc<Metrics>>,
    req: Request,
    next: Next,
) -> Response {
    let method = req.method().clone();
    let matched = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let route = matched.as_deref().unwrap_or(req.uri().path()).to_owned();
    let span = tracing::info_span!(
        "request",
        %method,
        route,
        status = tracing::field::Empty,
        millis = tracing::field::Empty
    );
    let started = std::time::Instant::now();
    let mut response = tracing::Instrument::instrument(next.run(req), span.clone()).await;
    let seconds = started.elapsed().as_secs_f64();
    metrics.request(
        matched.as_deref(),
        method.as_str(),
        response.status().as_u16(),
        seconds,
    );
    // Hundredths of a millisecond: a number a person or a query can read.
    let millis = (seconds * 100_000.0).round() / 100.0;
    span.record("status", response.status().as_u16());
    span.record("millis", millis);
    span.in_scope(|| {
        if let Some(cause) = response.extensions_mut().remove::<ErrorCause>() {
            cause.log();
        }
        tracing::info!(target: "hrmig::http", "request done");
    });
    response
}
