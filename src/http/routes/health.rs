//! `/api/health`: liveness, and whether the database answers and takes
//! writes. It stays outside the API key, the concurrency cap and the rate
//! limit, so an orchestrator can tell a busy server from a dead one.

use crate::http::state::AppState;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

pub(in crate::http) fn router() -> Router<AppState> {
    Router::new().route("/api/health", get(health))
}

/// Health of the service.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok` or `unavailable`.
    #[schema(value_type = String)]
    status: ServiceHealth,
    /// `ok`, `cannot_write` (read-only, disk full or failing) or
    /// `unavailable` (not reachable).
    #[schema(value_type = String)]
    database: DatabaseHealth,
}

/// Whether the service can serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceHealth {
    /// It can.
    Ok,
    /// Its database cannot be used.
    Unavailable,
}

/// What the database answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DatabaseHealth {
    /// It answers and takes writes.
    Ok,
    /// It answers but takes no writes: read-only, disk full or failing.
    CannotWrite,
    /// It does not answer.
    Unavailable,
}

/// Liveness, and whether the database answers and takes writes (no key
/// needed): a database that is read-only or out of disk is as unusable to
/// an ingest client as one that is down.
#[utoipa::path(get, path = "/api/health", tag = "service",
    responses(
        (status = 200, description = "Up; the database answers and takes writes", body = Health),
        (status = 503, description = "The database is unavailable or takes no writes", body = Health)
    )
)]
async fn health(State(state): State<AppState>) -> Response {
    let database = match state.store.ping().await {
        Ok(()) => match state.store.check_writes().await {
            Ok(()) => DatabaseHealth::Ok,
            Err(e) if e.cannot_write() => {
                tracing::warn!(error = %e, "health check: the database takes no writes");
                DatabaseHealth::CannotWrite
            }
            Err(e) => {
                tracing::warn!(error = %e, "health check: database unavailable");
                DatabaseHealth::Unavailable
            }
        },
        Err(e) => {
            tracing::warn!(error = %e, "health check: database unavailable");
            DatabaseHealth::Unavailable
        }
    };
    match database {
        DatabaseHealth::Ok => axum::Json(Health {
            status: ServiceHealth::Ok,
            database,
        })
        .into_response(),
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "5")],
            axum::Json(Health {
                status: ServiceHealth::Unavailable,
                database,
            }),
        )
            .into_response(),
    }
}
