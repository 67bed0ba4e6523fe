//! The API's resources, a module and a router each: handlers parse the
//! request, call an operation and shape the response.
//!
//! [`health`], [`metrics`] and [`console`] are apart: they are mounted
//! outside the limits (and the console outside the key check).

pub(super) mod backups;
pub(super) mod console;
pub(super) mod health;
pub(super) mod loads;
pub(super) mod metrics;
pub(super) mod rejections;
pub(super) mod reports;
pub(super) mod tables;

use super::error::ApiError;
use super::state::AppState;
use axum::Router;

/// Every resource but health.
pub(super) fn router() -> Router<AppState> {
    Router::new()
        .merge(tables::router())
        .merge(loads::router())
        .merge(rejections::router())
        .merge(backups::router())
        .merge(reports::router())
}

/// The answer to a path no route has.
pub(super) async fn no_such_route() -> ApiError {
    ApiError::NotFound("no such route".into())
}
