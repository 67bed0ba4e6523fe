//! The gold-zone reports, as JSON or, for a client that accepts it, CSV.

use crate::http::error::ApiError;
use crate::http::error::documented::{DatabaseUnavailable, Malformed, Unauthorized};
use crate::http::state::AppState;
use crate::store::{DepartmentHires, QuarterRow};
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

pub(in crate::http) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/reports/hires-by-quarter", get(hires_by_quarter))
        .route(
            "/api/reports/departments-above-mean",
            get(departments_above_mean),
        )
}

#[derive(Deserialize)]
struct YearQuery {
    year: Option<i32>,
}

/// The year a report covers: 1 to 9999, 2021 when absent.
fn year_of(q: Result<Query<YearQuery>, QueryRejection>) -> Result<i32, ApiError> {
    let Query(q) = q?;
    match q.year.unwrap_or(2021) {
        y @ 1..=9999 => Ok(y),
        y => Err(ApiError::BadRequest(format!("year {y} is outside 1..9999"))),
    }
}

/// A report as JSON, or as CSV when the client accepts `text/csv`.
fn report_response<T: serde::Serialize>(
    headers: &HeaderMap,
    rows: Vec<T>,
) -> Result<Response, ApiError> {
    let wants_csv = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/csv"));
    if !wants_csv {
        return Ok(axum::Json(rows).into_response());
    }
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in &rows {
        w.serialize(r)
            .map_err(|e| ApiError::Internal(e.to_string()))?;
    }
    let body = w
        .into_inner()
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], body).into_response())
}

/// Hires per department and job by quarter (JSON, or CSV with `Accept: text/csv`).
#[utoipa::path(get, path = "/api/reports/hires-by-quarter", tag = "reports",
    params(("year" = Option<i32>, Query, minimum = 1, maximum = 9999, description = "1 to 9999, default 2021")),
    responses(
        (status = 200, description = "Ordered by department, then job (code-point order)",
         content((Vec<QuarterRow> = "application/json"), (String = "text/csv"))),
        Malformed, Unauthorized, DatabaseUnavailable
    )
)]
async fn hires_by_quarter(
    State(state): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<YearQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    report_response(&headers, state.store.hires_by_quarter(year_of(q)?).await?)
}

/// Departments hiring more than the mean of all departments (JSON or CSV).
#[utoipa::path(get, path = "/api/reports/departments-above-mean", tag = "reports",
    params(("year" = Option<i32>, Query, minimum = 1, maximum = 9999, description = "1 to 9999, default 2021")),
    responses(
        (status = 200, description = "Most hires first",
         content((Vec<DepartmentHires> = "application/json"), (String = "text/csv"))),
        Malformed, Unauthorized, DatabaseUnavailable
    )
)]
async fn departments_above_mean(
    State(state): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<YearQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    report_response(
        &headers,
        state.store.departments_above_mean(year_of(q)?).await?,
    )
}
