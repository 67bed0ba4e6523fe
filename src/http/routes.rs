//! Handlers: parse the request, call an operation, shape the response.

use super::AppState;
use super::error::ApiError;
use super::error::ErrorBody;
use crate::dictionary::Table;
use crate::ops::Quiet;
use crate::ops::backup::{self, Codec, Manifest, Restored, Verification};
use crate::ops::ingest::{self, Shape};
use crate::ops::ingest::{BatchesResult, TableResult};
use crate::store::{DepartmentHires, Idempotency, QuarterRow, Rejection, RejectionFilter};
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use std::sync::Arc;

/// `/api/health` alone: it stays outside the concurrency cap and the rate
/// limit, so an orchestrator can tell a busy server from a dead one.
pub fn health_router(state: AppState) -> Router {
    Router::new()
        .route("/api/health", get(health))
        .with_state(state)
}

/// Every other route.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(super::loads::router())
        .route("/api/tables", get(tables))
        .route("/api/tables/{table}/rows", post(post_rows).get(get_rows))
        .route("/api/batches", post(post_batches))
        .route("/api/rejections", get(rejections))
        .route("/api/backups", post(post_backups).get(get_backups))
        .route("/api/tables/{table}/restore", post(restore))
        .route("/api/tables/{table}/verify", post(verify))
        .route("/api/reports/hires-by-quarter", get(hires_by_quarter))
        .route(
            "/api/reports/departments-above-mean",
            get(departments_above_mean),
        )
        .route("/api/openapi.json", get(openapi_json))
        .merge(
            utoipa_swagger_ui::SwaggerUi::new("/api/docs").config(
                utoipa_swagger_ui::Config::from("/api/openapi.json").try_it_out_enabled(true),
            ),
        )
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .with_state(state)
}

async fn openapi_json() -> Response {
    axum::Json(super::openapi::document()).into_response()
}

/// The table a path names: an unknown one is a resource that is not there.
fn table_of(name: &str) -> Result<Table, ApiError> {
    Table::parse(name).map_err(|e| ApiError::NotFound(e.to_string()))
}

/// The table a query parameter or body names: an unknown one is a
/// malformed request.
pub(super) fn query_table(name: &str) -> Result<Table, ApiError> {
    Table::parse(name).map_err(|e| ApiError::BadRequest(e.to_string()))
}

fn json_response(answer: ingest::Answer) -> Response {
    let (body, replayed) = match answer {
        ingest::Answer::Applied(body) => (body, false),
        ingest::Answer::Replayed(body) => (body, true),
    };
    let mut r = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response();
    if replayed {
        r.headers_mut()
            .insert("idempotency-replayed", HeaderValue::from_static("true"));
    }
    r
}

/// The request body, or why it could not be read: too large (413), stalled
/// past the body timeout (408), or cut off by the client (400).
pub(super) fn body_of(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::TooLarge(format!("request body over {} bytes", super::MAX_BODY_BYTES))
        }
        _ if super::limits::is_body_timeout(&e) => ApiError::RequestTimeout,
        _ => ApiError::BadRequest(e.body_text()),
    })
}

fn idempotency(
    headers: &HeaderMap,
    route: &str,
    body: &[u8],
) -> Result<Option<Idempotency>, ApiError> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = v
        .to_str()
        .ok()
        .filter(|k| (1..=255).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| {
            ApiError::BadRequest("Idempotency-Key must be 1 to 255 visible ASCII characters".into())
        })?;
    Ok(Some(Idempotency {
        key: key.to_owned(),
        fingerprint: ingest::fingerprint(route, body),
    }))
}

enum BodyKind {
    Json,
    Csv,
}

fn body_kind(headers: &HeaderMap) -> Result<BodyKind, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let mime = ct.split(';').next().unwrap_or("").trim();
    if mime == "application/json" || mime.ends_with("+json") {
        Ok(BodyKind::Json)
    } else if mime == "text/csv" {
        Ok(BodyKind::Csv)
    } else {
        Err(ApiError::UnsupportedMediaType(format!(
            "content type {mime:?}: send application/json (an array of row objects) or text/csv"
        )))
    }
}

/// Insert a batch of 1 to 1000 rows into one table.
///
/// Valid rows are inserted in one transaction; invalid ones are written to
/// the rejection log in that same transaction and listed in the response.
#[utoipa::path(post, path = "/api/tables/{table}/rows", tag = "ingest",
    params(
        ("table" = Table, Path, description = "departments, jobs or hired_employees"),
        ("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,255}$", description = "1 to 255 visible ASCII characters. Replays the first response for the same key and body; 422 for another body")
    ),
    responses(
        (status = 200, description = "Applied (or replayed): per-row outcome", body = TableResult),
        (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
        (status = 404, description = "Unknown table", body = ErrorBody),
        (status = 413, description = "More than 1000 rows or body too large", body = ErrorBody),
        (status = 415, description = "Not application/json or text/csv", body = ErrorBody),
        (status = 422, description = "Idempotency-Key reused with another body", body = ErrorBody)
    )
)]
async fn post_rows(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let table = table_of(&name)?;
    let kind = body_kind(&headers)?;
    let body = body_of(body)?;
    let idem = idempotency(&headers, &format!("rows:{table}"), &body)?;
    let batch_id = uuid::Uuid::new_v4().to_string();
    let answer = match kind {
        BodyKind::Json => ingest::ingest_json(&state.store, &batch_id, table, &body, idem).await?,
        BodyKind::Csv => {
            let parsed = ingest::parse_csv(table, &body)?;
            ingest::ingest(
                &state.store,
                &batch_id,
                vec![parsed],
                None,
                idem,
                Shape::Table,
            )
            .await?
        }
    };
    Ok(json_response(answer))
}

/// Insert rows of several tables in one transaction, parents first (1 to 1000 rows in all).
#[utoipa::path(post, path = "/api/batches", tag = "ingest",
    params(("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,255}$", description = "As for table batches")),
    responses(
        (status = 200, description = "Applied (or replayed)", body = BatchesResult),
        (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
        (status = 413, description = "More than 1000 rows", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
        (status = 422, description = "Idempotency-Key reused with another body", body = ErrorBody)
    )
)]
async fn post_batches(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    if !matches!(body_kind(&headers)?, BodyKind::Json) {
        return Err(ApiError::UnsupportedMediaType(
            "send application/json".into(),
        ));
    }
    let body = body_of(body)?;
    let idem = idempotency(&headers, "batches", &body)?;
    let parsed = ingest::parse_json_tables(&body)?;
    let batch_id = uuid::Uuid::new_v4().to_string();
    let answer = ingest::ingest(&state.store, &batch_id, parsed, None, idem, Shape::Tables).await?;
    Ok(json_response(answer))
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
            Ok(()) => "ok",
            Err(e) if e.cannot_write() => {
                tracing::warn!(error = %e, "health check: the database takes no writes");
                "cannot_write"
            }
            Err(e) => {
                tracing::warn!(error = %e, "health check: database unavailable");
                "unavailable"
            }
        },
        Err(e) => {
            tracing::warn!(error = %e, "health check: database unavailable");
            "unavailable"
        }
    };
    match database {
        "ok" => axum::Json(Health {
            status: "ok",
            database,
        })
        .into_response(),
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "5")],
            axum::Json(Health {
                status: "unavailable",
                database,
            }),
        )
            .into_response(),
    }
}

/// The data dictionary with row counts.
#[utoipa::path(get, path = "/api/tables", tag = "read",
    responses((status = 200, description = "Tables", body = Vec<TableInfo>), (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody))
)]
async fn tables(State(state): State<AppState>) -> Result<Response, ApiError> {
    let mut out = Vec::new();
    for table in Table::ALL {
        let rows = state.store.count(table).await?;
        out.push(TableInfo {
            name: table,
            columns: table.columns(),
            rows,
        });
    }
    Ok(axum::Json(out).into_response())
}

#[derive(Deserialize)]
struct Page {
    after_id: Option<i64>,
    limit: Option<u32>,
}

fn limit_of(limit: Option<u32>, default: u32) -> Result<u32, ApiError> {
    match limit.unwrap_or(default) {
        0 => Err(ApiError::BadRequest("limit must be 1 to 1000".into())),
        n if n > 1000 => Err(ApiError::BadRequest("limit must be 1 to 1000".into())),
        n => Ok(n),
    }
}

/// Rows of a table ordered by id, a page at a time.
#[utoipa::path(get, path = "/api/tables/{table}/rows", tag = "read",
    params(
        ("table" = Table, Path, description = "Table name"),
        ("after_id" = Option<i64>, Query, description = "Only ids above this"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "1 to 1000, default 100")
    ),
    responses((status = 200, description = "Rows", body = Vec<Object>), (status = 404, description = "Unknown table", body = ErrorBody), (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody))
)]
async fn get_rows(
    State(state): State<AppState>,
    Path(name): Path<String>,
    page: Result<Query<Page>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let table = table_of(&name)?;
    let Query(page) = page.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let rows = state
        .store
        .rows(
            table,
            page.after_id.unwrap_or(i64::MIN),
            limit_of(page.limit, 100)?,
        )
        .await?;
    Ok(axum::Json(rows).into_response())
}

/// Health of the service.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok` or `unavailable`.
    status: &'static str,
    /// `ok`, `cannot_write` (read-only, disk full or failing) or
    /// `unavailable` (not reachable).
    database: &'static str,
}

/// A table of the dictionary with its row count.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct TableInfo {
    /// Table name.
    name: Table,
    /// Columns in CSV order.
    columns: &'static [crate::dictionary::Column],
    /// Rows now in the table.
    rows: u64,
}

/// A folder under the storage root: relative, no `..`, no URL.
pub(super) fn folder_under_root(from: &str) -> Result<&str, ApiError> {
    // Segments that are neither empty nor start with a dot (so no `.`,
    // `..` or hidden folders), without `\\`, `:` (schemes, drives), `%`
    // (encodings) or NUL: the pattern the OpenAPI document gives.
    let segment =
        |p: &str| !p.is_empty() && !p.starts_with('.') && !p.contains(['\\', ':', '%', '\0']);
    if from.split('/').all(segment) {
        Ok(from)
    } else {
        Err(ApiError::BadRequest(format!(
            "\"from\" must be a folder under the storage root, such as \"landing\"; got {:?}",
            from.chars().take(100).collect::<String>()
        )))
    }
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
    responses((status = 200, description = "Rejections", body = Vec<Rejection>), (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody))
)]
async fn rejections(
    State(state): State<AppState>,
    q: Result<Query<RejectionQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let table = q.table.as_deref().map(query_table).transpose()?;
    let rows = state
        .store
        .rejections(RejectionFilter {
            table,
            source: q.source,
            after: q.after,
            limit: limit_of(q.limit, 100)?,
        })
        .await?;
    Ok(axum::Json(rows).into_response())
}

#[derive(Deserialize)]
struct YearQuery {
    year: Option<i32>,
}

fn year_of(
    q: Result<Query<YearQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<i32, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    match q.year.unwrap_or(2021) {
        y @ 1..=9999 => Ok(y),
        y => Err(ApiError::BadRequest(format!("year {y} is outside 1..9999"))),
    }
}

/// A report as JSON, or as CSV when the client accepts `text/csv`.
fn report<T: serde::Serialize>(headers: &HeaderMap, rows: Vec<T>) -> Result<Response, ApiError> {
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
        (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody)
    )
)]
async fn hires_by_quarter(
    State(state): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<YearQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    report(&headers, state.store.hires_by_quarter(year_of(q)?).await?)
}

/// Departments hiring more than the mean of all departments (JSON or CSV).
#[utoipa::path(get, path = "/api/reports/departments-above-mean", tag = "reports",
    params(("year" = Option<i32>, Query, minimum = 1, maximum = 9999, description = "1 to 9999, default 2021")),
    responses(
        (status = 200, description = "Most hires first",
         content((Vec<DepartmentHires> = "application/json"), (String = "text/csv"))),
        (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody)
    )
)]
async fn departments_above_mean(
    State(state): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<YearQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    report(
        &headers,
        state.store.departments_above_mean(year_of(q)?).await?,
    )
}

/// Body of `POST /api/backups`.
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupBody {
    /// Tables to back up (default, or an empty list: all).
    #[schema(value_type = Option<Vec<Table>>)]
    tables: Option<Vec<String>>,
    /// Block compression (default: snappy).
    codec: Option<Codec>,
}

/// Body of restore and verify: which backup (default: the newest).
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupChoice {
    /// Backup name, `<table>-<yyyymmddTHHMMSSmmmZ>`, optionally with
    /// `.avro`; a well-formed name of another table's backup is 404.
    #[schema(pattern = r"^(departments|jobs|hired_employees)-[0-9]{8}T[0-9]{9}Z(\.avro)?$")]
    backup: Option<String>,
}

/// The tables a request body names (none: an empty list); an unknown name
/// is the client's error (400), not a missing route.
pub(super) fn tables_in_body(names: Option<&[String]>) -> Result<Vec<Table>, ApiError> {
    names
        .unwrap_or_default()
        .iter()
        .map(|t| query_table(t))
        .collect()
}

/// An optional JSON body: empty means the defaults; otherwise a JSON
/// object (serde would also take a struct as an array of its fields).
pub(super) fn optional_body<T: Default + serde::de::DeserializeOwned>(
    body: &[u8],
) -> Result<T, ApiError> {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        None => Ok(T::default()),
        Some(b'{') => serde_json::from_slice(body)
            .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}"))),
        Some(_) => Err(ApiError::BadRequest(
            "the body must be a JSON object (or empty, for the defaults)".into(),
        )),
    }
}

/// Back up tables to Avro files in the storage (admin).
#[utoipa::path(post, path = "/api/backups", tag = "backups",
    request_body(content = BackupBody, description = "Optional, as are all its fields"),
    responses(
        (status = 200, description = "One manifest per table backed up", body = Vec<Manifest>),
        (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
        (status = 403, description = "Needs the admin key", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody)
    )
)]
async fn post_backups(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: BackupBody = optional_body(&body_of(body)?)?;
    let tables = match tables_in_body(req.tables.as_deref())? {
        t if t.is_empty() => Table::ALL.to_vec(),
        t => t,
    };
    let codec = req.codec.unwrap_or(Codec::DEFAULT);
    let mut out = Vec::with_capacity(tables.len());
    for table in tables {
        out.push(
            backup::backup(&state.store, &state.storage, table, codec, Arc::new(Quiet)).await?,
        );
    }
    Ok(axum::Json(out).into_response())
}

#[derive(Deserialize)]
struct BackupQuery {
    table: Option<String>,
}

/// Complete backups, oldest first.
#[utoipa::path(get, path = "/api/backups", tag = "backups",
    params(("table" = Option<Table>, Query, description = "Only this table")),
    responses(
        (status = 200, description = "Manifests", body = Vec<Manifest>),
        (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody)
    )
)]
async fn get_backups(
    State(state): State<AppState>,
    q: Result<Query<BackupQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let tables = match q.table {
        Some(t) => vec![query_table(&t)?],
        None => Table::ALL.to_vec(),
    };
    let mut out = Vec::new();
    for table in tables {
        out.extend(backup::list(&state.storage, table).await?);
    }
    Ok(axum::Json(out).into_response())
}

/// Replace a table's rows with a backup's, after verifying it (admin).
#[utoipa::path(post, path = "/api/tables/{table}/restore", tag = "backups",
    params(("table" = Table, Path, description = "departments, jobs or hired_employees")),
    request_body(content = BackupChoice, description = "Optional; the newest backup by default"),
    responses(
        (status = 200, description = "Restored", body = Restored),
        (status = 400, description = "Malformed request or backup name", body = ErrorBody),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
        (status = 403, description = "Needs the admin key", body = ErrorBody),
        (status = 404, description = "Unknown table or backup", body = ErrorBody),
        (status = 409, description = "Would break a foreign key; table unchanged", body = ErrorBody),
        (status = 422, description = "The backup is damaged; table unchanged", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody)
    )
)]
async fn restore(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let table = table_of(&name)?;
    let req: BackupChoice = optional_body(&body_of(body)?)?;
    let restored = backup::restore(
        &state.store,
        &state.storage,
        table,
        req.backup.as_deref(),
        Arc::new(Quiet),
    )
    .await?;
    Ok(axum::Json(restored).into_response())
}

/// Check a backup without touching the database.
#[utoipa::path(post, path = "/api/tables/{table}/verify", tag = "backups",
    params(("table" = Table, Path, description = "departments, jobs or hired_employees")),
    request_body(content = BackupChoice, description = "Optional; the newest backup by default"),
    responses(
        (status = 200, description = "The verdict (`ok` false with the problems when damaged)", body = Verification),
        (status = 400, description = "Malformed request or backup name", body = ErrorBody),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
        (status = 404, description = "Unknown table or backup", body = ErrorBody)
    )
)]
async fn verify(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let table = table_of(&name)?;
    let req: BackupChoice = optional_body(&body_of(body)?)?;
    let v = backup::verify(
        &state.storage,
        table,
        req.backup.as_deref(),
        Arc::new(Quiet),
    )
    .await?;
    Ok(axum::Json(v).into_response())
}
