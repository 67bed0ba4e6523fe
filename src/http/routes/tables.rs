//! The tables resource: the dictionary with row counts, a table's rows a
//! page at a time, and batches of rows in (one table, or several in one
//! transaction).

use crate::dictionary::Table;
use crate::http::error::documented::{
    DatabaseUnavailable, KeyReused, Malformed, TooManyRows, Unauthorized, UnknownTable,
};
use crate::http::error::{ApiError, ErrorBody};
use crate::http::extract::{QueryOf, TablePath, WriteFlags, Writing, page_limit};
use crate::http::state::AppState;
use crate::ops::ingest::{self, BatchesResult, Shape, TableResult};
use crate::ops::lineage::{self, RowReport};
use crate::store::Idempotency;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

pub(in crate::http) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/tables", get(tables))
        .route("/api/tables/{table}/rows", post(post_rows).get(get_rows))
        .route("/api/tables/{table}/rows/{id}", get(get_row))
        .route("/api/batches", post(post_batches))
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

/// The data dictionary with row counts.
#[utoipa::path(get, path = "/api/tables", tag = "read",
    responses(
        (status = 200, description = "Tables", body = Vec<TableInfo>),
        Malformed, Unauthorized, DatabaseUnavailable
    )
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

/// One row of a table, and the operation that last wrote it: its id,
/// kind and source, and the row's line in the file, index in the batch, or
/// rejection.
// `{row_id}` in the document: the `id` a load job's answer holds is not one.
#[utoipa::path(get, path = "/api/tables/{table}/rows/{row_id}", tag = "read",
    params(
        ("table" = Table, Path, description = "Table name"),
        ("row_id" = i64, Path, description = "The row's id")
    ),
    responses(
        (status = 200, description = "The row and its origin", body = RowReport),
        (status = 404, description = "No such table, or no row with this id", body = ErrorBody),
        Unauthorized, DatabaseUnavailable
    )
)]
async fn get_row(
    State(state): State<AppState>,
    Path((table, id)): Path<(String, String)>,
) -> Result<axum::Json<RowReport>, ApiError> {
    let table = Table::parse(&table).map_err(|e| ApiError::NotFound(e.to_string()))?;
    let Ok(id) = id.parse::<i64>() else {
        return Err(ApiError::NotFound(format!(
            "{table} has no row with id {id:?}"
        )));
    };
    Ok(axum::Json(lineage::row(&state.store, table, id).await?))
}

#[derive(Deserialize)]
struct Page {
    after_id: Option<i64>,
    limit: Option<u32>,
}

/// Rows of a table ordered by id, a page at a time.
#[utoipa::path(get, path = "/api/tables/{table}/rows", tag = "read",
    params(
        ("table" = Table, Path, description = "Table name"),
        ("after_id" = Option<i64>, Query, description = "Only ids above this"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "1 to 1000, default 100")
    ),
    responses(
        (status = 200, description = "Rows", body = Vec<Object>),
        UnknownTable, Malformed, Unauthorized, DatabaseUnavailable
    )
)]
async fn get_rows(
    State(state): State<AppState>,
    TablePath(table): TablePath,
    QueryOf(page): QueryOf<Page>,
) -> Result<Response, ApiError> {
    let rows = state
        .store
        .rows(
            table,
            page.after_id.unwrap_or(i64::MIN),
            page_limit(page.limit, 100)?,
        )
        .await?;
    Ok(axum::Json(rows).into_response())
}

/// The answer of an ingest: its JSON, marked when it replays the first
/// answer to the same `Idempotency-Key`; what it applied is counted.
fn ingest_response(state: &AppState, answer: ingest::Answer) -> Response {
    let (body, replayed) = match answer {
        ingest::Answer::Applied(body, counts) => {
            for (table, counts) in &counts {
                state.metrics.rows(*table, counts);
            }
            (body, false)
        }
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

/// The request's idempotency key, fingerprinted with its route and body.
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

/// The media type of a batch.
enum BatchFormat {
    Json,
    Csv,
}

fn batch_format(headers: &HeaderMap) -> Result<BatchFormat, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let mime = ct.split(';').next().unwrap_or("").trim();
    if mime == "application/json" || mime.ends_with("+json") {
        Ok(BatchFormat::Json)
    } else if mime == "text/csv" {
        Ok(BatchFormat::Csv)
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
        ("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,255}$", description = "1 to 255 visible ASCII characters. Replays the first response for the same key and body; 422 for another body. A dry run neither reads nor stores it"),
        WriteFlags
    ),
    responses(
        (status = 200, description = "Applied (or replayed): per-row outcome", body = TableResult),
        (status = 415, description = "Not application/json or text/csv", body = ErrorBody),
        Malformed, Unauthorized, UnknownTable, TooManyRows, KeyReused, DatabaseUnavailable
    )
)]
async fn post_rows(
    State(state): State<AppState>,
    TablePath(table): TablePath,
    writing: Writing,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let format = batch_format(&headers)?;
    let body = body?;
    let idem = idempotency(&headers, &writing.route(&format!("rows:{table}")), &body)?;
    let how = writing.how(Shape::Table);
    let batch_id = uuid::Uuid::new_v4().to_string();
    let store = &state.store;
    let answer = match format {
        BatchFormat::Json => ingest::ingest_json(store, &batch_id, table, &body, idem, how).await?,
        BatchFormat::Csv => {
            let parsed = vec![ingest::parse_csv(table, &body)?];
            ingest::ingest(store, &batch_id, parsed, None, idem, how).await?
        }
    };
    Ok(ingest_response(&state, answer))
}

/// Insert rows of several tables in one transaction, parents first (1 to 1000 rows in all).
#[utoipa::path(post, path = "/api/batches", tag = "ingest",
    params(
        ("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,255}$", description = "As for table batches"),
        WriteFlags
    ),
    responses(
        (status = 200, description = "Applied (or replayed)", body = BatchesResult),
        (status = 415, description = "Not application/json", body = ErrorBody),
        Malformed, Unauthorized, TooManyRows, KeyReused, DatabaseUnavailable
    )
)]
async fn post_batches(
    State(state): State<AppState>,
    writing: Writing,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    if !matches!(batch_format(&headers)?, BatchFormat::Json) {
        return Err(ApiError::UnsupportedMediaType(
            "send application/json".into(),
        ));
    }
    let body = body?;
    let idem = idempotency(&headers, &writing.route("batches"), &body)?;
    let parsed = ingest::parse_json_tables(&body)?;
    let batch_id = uuid::Uuid::new_v4().to_string();
    let how = writing.how(Shape::Tables);
    let answer = ingest::ingest(&state.store, &batch_id, parsed, None, idem, how).await?;
    Ok(ingest_response(&state, answer))
}
