//! The rejection log: every row refused, with its reasons, oldest first.

use crate::dictionary::Table;
use crate::http::error::ApiError;
use crate::http::error::documented::{DatabaseUnavailable, Malformed, Unauthorized};
use crate::http::extract::{page_limit, query_table};
use crate::http::state::AppState;
use crate::store::{Rejection, RejectionFilter};
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

pub(in crate::http) fn router() -> Router<AppState> {
    Router::new().route("/api/rejections", get(rejections))
}

#[derive(Deserialize)]
struct RejectionQuery {
    table: Option<String>,
    source: Option<String>,
    limit: Option<u32>,
    after: Option<i64>,
}

/// The rejection log, oldest first.
#[utoipa::path(get, path = "/api/rejections", tag = "read",
    params(
        ("table" = Option<Table>, Query, description = "Only this table"),
        ("source" = Option<String>, Query, description = "Only this source (file:… or api:<batch id>)"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "1 to 1000, default 100"),
        ("after" = Option<i64>, Query, description = "Only log ids above this")
    ),
    responses(
        (status = 200, description = "Rejections", body = Vec<Rejection>),
        Malformed, Unauthorized, DatabaseUnavailable
    )
)]
async fn rejections(
    State(state): State<AppState>,
    q: Result<Query<RejectionQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q?;
    let table = q.table.as_deref().map(query_table).transpose()?;
    let rows = state
        .store
        .rejections(RejectionFilter {
            table,
            source: q.source,
            after: q.after,
            limit: page_limit(q.limit, 100)?,
        })
        .await?;
    Ok(axum::Json(rows).into_response())
}
