//! The API's router: every resource's routes and the OpenAPI document,
//! under the layers every request passes.

use super::state::AppState;
use super::{auth, limits, openapi, routes, trace};
use axum::Router;

/// Largest request body accepted (a full batch of long rows fits easily).
pub const MAX_BODY_BYTES: usize = 8 << 20;

/// The full router: every route under `/api`.
///
/// Layers, outermost first: body size and body timeout, tracing, the API
/// key, then (for every route but `/api/health`, `/api/metrics` and the
/// console) the rate limit and the
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
    let rate = (state.keys.clone(), limits.clone());
    let keys = state.keys.clone();
    let metrics = state.metrics.clone();
    routes::router()
        .merge(openapi::router())
        .fallback(routes::no_such_route)
        .with_state(state.clone())
        .layer(cap)
        .layer(axum::middleware::from_fn_with_state(
            rate,
            limits::rate_limit,
        ))
        .merge(routes::metrics::router().with_state(state.clone()))
        .merge(routes::health::router().with_state(state))
        .merge(routes::console::router())
        .layer(axum::middleware::from_fn_with_state(
            keys,
            auth::require_key,
        ))
        .layer(axum::middleware::from_fn_with_state(
            metrics,
            trace::trace_request,
        ))
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            limits.settings.body_timeout,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
}

/// The router of a standalone server: the API, and its root leading to the
/// console.
pub fn standalone_router(state: AppState) -> Router {
    router(state).merge(routes::console::root())
}
