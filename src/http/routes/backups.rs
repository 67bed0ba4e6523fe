//! Backups and restores: Avro backups of tables in the storage, the list of
//! complete ones, a backup's verification and a table's restore from one.

use crate::dictionary::Table;
use crate::http::error::documented::{
    BadBackupName, DatabaseUnavailable, Forbidden, Malformed, NoSuchBackup, Unauthorized,
};
use crate::http::error::{ApiError, ErrorBody};
use crate::http::extract::{TablePath, optional_body, query_table, tables_in_body};
use crate::http::state::AppState;
use crate::ops::Quiet;
use crate::ops::backup::{self, Codec, Manifest, Restored, Verification};
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;
use std::sync::Arc;

pub(in crate::http) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/backups", post(post_backups).get(get_backups))
        .route("/api/tables/{table}/restore", post(restore))
        .route("/api/tables/{table}/verify", post(verify))
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

/// Back up tables to Avro files in the storage (admin).
#[utoipa::path(post, path = "/api/backups", tag = "backups",
    request_body(content = BackupBody, description = "Optional, as are all its fields"),
    responses(
        (status = 200, description = "One manifest per table backed up", body = Vec<Manifest>),
        Malformed, Unauthorized, Forbidden, DatabaseUnavailable
    )
)]
async fn post_backups(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: BackupBody = optional_body(&body?)?;
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
        Malformed, Unauthorized
    )
)]
async fn get_backups(
    State(state): State<AppState>,
    q: Result<Query<BackupQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q?;
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
        (status = 409, description = "Would break a foreign key; table unchanged", body = ErrorBody),
        (status = 422, description = "The backup is damaged; table unchanged", body = ErrorBody),
        BadBackupName, Unauthorized, Forbidden, NoSuchBackup, DatabaseUnavailable
    )
)]
async fn restore(
    State(state): State<AppState>,
    TablePath(table): TablePath,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: BackupChoice = optional_body(&body?)?;
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
        BadBackupName, Unauthorized, NoSuchBackup
    )
)]
async fn verify(
    State(state): State<AppState>,
    TablePath(table): TablePath,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: BackupChoice = optional_body(&body?)?;
    let v = backup::verify(
        &state.storage,
        table,
        req.backup.as_deref(),
        Arc::new(Quiet),
    )
    .await?;
    Ok(axum::Json(v).into_response())
}
