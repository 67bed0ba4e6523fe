//! The rejection log: every row refused, with its reasons, oldest first;
//! counted by table, code and status; and worked as a queue: retried,
//! fixed with a corrected row, or dismissed.

use crate::dictionary::{ErrorCode, FieldError, Table};
use crate::http::error::documented::{DatabaseUnavailable, Forbidden, Malformed, Unauthorized};
use crate::http::error::{ApiError, ErrorBody, ErrorDetail};
use crate::http::extract::{OptionalJson, QueryOf, id_in_path, page_limit, query_table};
use crate::http::state::{AppState, Runner};
use crate::ops::rejections::{self, Dismissal, FixReport, QueueError, RetryReport, RetryRequest};
use crate::store::{Rejection, RejectionCount, RejectionFilter, RejectionStatus};
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

pub(in crate::http) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/rejections", get(list))
        .route("/api/rejections/summary", get(summary))
        .route("/api/rejections/retry", post(retry))
        .route("/api/rejections/{id}/fix", post(fix))
        .route("/api/rejections/{id}/dismiss", post(dismiss))
}

impl From<QueueError> for ApiError {
    fn from(e: QueueError) -> Self {
        match e {
            QueueError::NotFound(_) => ApiError::NotFound(e.to_string()),
            QueueError::NotOpen { .. } => ApiError::Conflict(e.to_string()),
            QueueError::Bad(_) => ApiError::BadRequest(e.to_string()),
            QueueError::Store(s) => s.into(),
        }
    }
}

/// Which rejections a read names: the query of `GET /api/rejections` and
/// of its summary.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct LogQuery {
    /// Only this table.
    #[param(value_type = Option<Table>)]
    table: Option<String>,
    /// Only this source (`file:…` or `api:<batch id>`).
    source: Option<String>,
    /// Only this status.
    #[param(value_type = Option<RejectionStatus>)]
    status: Option<String>,
    /// Only rejections with an error of this code. Under the Functions
    /// host `?code=` is the caller's function key (the host forwards it),
    /// so there only `error_code` filters.
    #[param(value_type = Option<ErrorCode>)]
    code: Option<String>,
    /// The same filter as `code`, under a name no host takes.
    #[param(value_type = Option<ErrorCode>)]
    error_code: Option<String>,
}

/// A page of the log.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct PageQuery {
    /// 1 to 1000, default 100.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// Only log ids above this.
    after: Option<i64>,
}

impl LogQuery {
    /// The filter it asks for, every name checked (an unknown one is 400);
    /// `hosted` under the Functions host, whose `?code=` is not ours.
    fn filter(self, page: PageQuery, hosted: bool) -> Result<RejectionFilter, ApiError> {
        let code = self.error_code.or(self.code.filter(|_| !hosted));
        let status = (self.status.as_deref())
            .map(|s| {
                RejectionStatus::parse(s).ok_or_else(|| {
                    ApiError::BadRequest(format!(
                        "unknown status {s:?}: open, resolved or dismissed"
                    ))
                })
            })
            .transpose()?;
        Ok(RejectionFilter {
            table: self.table.as_deref().map(query_table).transpose()?,
            source: self.source,
            status,
            code: code.as_deref().map(error_code).transpose()?,
            after: page.after,
            limit: page_limit(page.limit, 100)?,
        })
    }
}

/// Whether the Functions host serves this router (its jobs go on the queue).
fn hosted(state: &AppState) -> bool {
    state.runner == Runner::Queue
}

fn error_code(s: &str) -> Result<ErrorCode, ApiError> {
    ErrorCode::parse(s).map_err(ApiError::BadRequest)
}

/// The rejection log, oldest first.
#[utoipa::path(get, path = "/api/rejections", tag = "rejections",
    params(LogQuery, PageQuery),
    responses(
        (status = 200, description = "Rejections", body = Vec<Rejection>),
        Malformed, Unauthorized, DatabaseUnavailable
    )
)]
async fn list(
    State(state): State<AppState>,
    QueryOf(q): QueryOf<LogQuery>,
    QueryOf(page): QueryOf<PageQuery>,
) -> Result<Json<Vec<Rejection>>, ApiError> {
    let filter = q.filter(page, hosted(&state))?;
    Ok(Json(state.store.rejections(filter).await?))
}

/// The rejection log counted by table, code and status (a rejection with
/// errors of two codes counts under each).
#[utoipa::path(get, path = "/api/rejections/summary", tag = "rejections",
    params(LogQuery),
    responses(
        (status = 200, description = "Counts, by table, code and status", body = Vec<RejectionCount>),
        Malformed, Unauthorized, DatabaseUnavailable
    )
)]
async fn summary(
    State(state): State<AppState>,
    QueryOf(q): QueryOf<LogQuery>,
) -> Result<Json<Vec<RejectionCount>>, ApiError> {
    let all = PageQuery {
        limit: None,
        after: None,
    };
    let filter = q.filter(all, hosted(&state))?;
    Ok(Json(state.store.rejection_summary(filter).await?))
}

/// Body of `POST /api/rejections/retry`: which open rejections.
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryBody {
    /// Only this table's (default: every table, parents first).
    #[schema(value_type = Option<Table>)]
    table: Option<String>,
    /// Only those with an error of this code (also spelt `error_code`, as
    /// in the query of `GET /api/rejections`).
    #[schema(value_type = Option<ErrorCode>)]
    #[serde(alias = "error_code")]
    code: Option<String>,
    /// Only this source's.
    source: Option<String>,
}

/// Check the open rejections again, as received (admin): rows that pass
/// now are inserted and their rejections resolved; the rest stay open with
/// the errors they have now.
#[utoipa::path(post, path = "/api/rejections/retry", tag = "rejections",
    request_body(content = RetryBody, description = "Optional, as are all its fields"),
    responses(
        (status = 200, description = "What the retry did (zero when nothing was open)", body = RetryReport),
        Malformed, Unauthorized, Forbidden, DatabaseUnavailable
    )
)]
async fn retry(
    State(state): State<AppState>,
    OptionalJson(body): OptionalJson<RetryBody>,
) -> Result<Json<RetryReport>, ApiError> {
    let req = RetryRequest {
        table: body.table.as_deref().map(query_table).transpose()?,
        code: body.code.as_deref().map(error_code).transpose()?,
        source: body.source,
    };
    Ok(Json(rejections::retry(&state.store, &req).await?))
}

/// A rejection id in a path: a number, or the rejection is not there.
fn rejection_id(id: Result<Path<String>, PathRejection>) -> Result<i64, ApiError> {
    id_in_path(id, "rejection")
}

/// A corrected row that was refused: the rejection stays open as it was.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct RowRefused {
    /// `row_rejected`, and what happened.
    error: ErrorDetail,
    /// Every rule the corrected row breaks.
    errors: Vec<FieldError>,
}

/// Insert a corrected row for an open rejection: checked like an API row
/// of the rejection's table; the rejection is resolved by the fix.
#[utoipa::path(post, path = "/api/rejections/{id}/fix", tag = "rejections",
    params(("id" = i64, Path, description = "Rejection id")),
    responses(
        (status = 200, description = "Inserted; the rejection is resolved", body = FixReport),
        (status = 404, description = "No such rejection", body = ErrorBody),
        (status = 409, description = "The rejection is not open", body = ErrorBody),
        (status = 422, description = "The corrected row breaks a rule; nothing changed", body = RowRefused),
        Malformed, Unauthorized, DatabaseUnavailable
    )
)]
async fn fix(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let id = rejection_id(id)?;
    let report = rejections::fix(&state.store, id, &body?).await?;
    if report.errors.is_empty() {
        return Ok(Json(report).into_response());
    }
    let refused = RowRefused {
        error: ErrorDetail {
            code: "row_rejected",
            message: format!(
                "the corrected row breaks {} rule(s); rejection {id} stays open",
                report.errors.len()
            ),
        },
        errors: report.errors,
    };
    Ok((StatusCode::UNPROCESSABLE_ENTITY, Json(refused)).into_response())
}

/// Set an open rejection aside: it is no longer retried (a resolved one
/// stays resolved). Dismissing it again changes nothing.
#[utoipa::path(post, path = "/api/rejections/{id}/dismiss", tag = "rejections",
    params(("id" = i64, Path, description = "Rejection id")),
    responses(
        (status = 200, description = "Its status now, and whether this request changed it", body = Dismissal),
        (status = 404, description = "No such rejection", body = ErrorBody),
        Unauthorized, DatabaseUnavailable
    )
)]
async fn dismiss(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Dismissal>, ApiError> {
    let id = rejection_id(id)?;
    let mut done = rejections::dismiss(&state.store, &[id]).await?;
    done.pop()
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("no rejection with id {id}")))
}
