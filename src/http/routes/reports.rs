//! The gold-zone reports, as JSON or, for a client that accepts it, CSV.

use crate::http::error::ApiError;
use crate::http::error::documented::{DatabaseUnavailable, Malformed, Unauthorized};
use crate::http::state::AppState;
use crate::store::{DepartmentHires, QuarterRow};
use axum::Router;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::header;
use axum::http::request::Parts;
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

/// What a report request asks: the year (1 to 9999, 2021 when absent) and
/// whether the client accepts CSV (`Accept: text/csv`) rather than JSON.
struct ReportRequest {
    year: i32,
    csv: bool,
}

impl<S: Send + Sync> FromRequestParts<S> for ReportRequest {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Query(q) = Query::<YearQuery>::from_request_parts(parts, state).await?;
        let year = match q.year.unwrap_or(2021) {
            y @ 1..=9999 => y,
            y => return Err(ApiError::BadRequest(format!("year {y} is outside 1..9999"))),
        };
        let csv = parts
            .headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("text/csv"));
        Ok(ReportRequest { year, csv })
    }
}

impl ReportRequest {
    /// The report's rows in the format asked for.
    fn answer<T: serde::Serialize>(&self, rows: Vec<T>) -> Result<Response, ApiError> {
        if !self.csv {
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
}

/// Declares a report's route once: its handler, named as the store's
/// method it answers with, and its OpenAPI entry.
macro_rules! report_route {
    ($(#[doc = $doc:tt])* $name:ident, $path:tt, $order:tt, $row:ty) => {
        $(#[doc = $doc])*
        #[utoipa::path(get, path = $path, tag = "reports",
            params(("year" = Option<i32>, Query, minimum = 1, maximum = 9999, description = "1 to 9999, default 2021")),
            responses(
                (status = 200, description = $order,
                 content((Vec<$row> = "application/json"), (String = "text/csv"))),
                Malformed, Unauthorized, DatabaseUnavailable
            )
        )]
        async fn $name(State(state): State<AppState>, report: ReportRequest) -> Result<Response, ApiError> {
            report.answer(state.store.$name(report.year).await?)
        }
    };
}

report_route!(
    /// Hires per department and job by quarter (JSON, or CSV with `Accept: text/csv`).
    hires_by_quarter,
    "/api/reports/hires-by-quarter",
    "Ordered by department, then job (code-point order)",
    QuarterRow
);

report_route!(
    /// Departments hiring more than the mean of all departments (JSON or CSV).
    departments_above_mean,
    "/api/reports/departments-above-mean",
    "Most hires first",
    DepartmentHires
);
