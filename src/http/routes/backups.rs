//! Backups and restores: Avro backups of tables in the storage, the list of
//! complete ones, a backup's verification and a table's restore from one.

use crate::dictionary::Table;
use crate::http::error::ApiError;
use crate::http::error::documented::{
    BackupDamaged, BadBackupName, DatabaseUnavailable, Forbidden, Malformed, NoSuchBackup,
    Unauthorized, WouldOrphanRows,
};
use crate::http::extract::{
    JsonObject, OptionalJson, QueryOf, TableList, TablePath, optional_whole_number, query_table,
    whole_number,
};
use crate::http::state::AppState;
use crate::ops::Quiet;
use crate::ops::backup::{self, Codec, Manifest, Pruned, Restored, Retention, Verification};
use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::post;
use serde::Deserialize;
use std::sync::Arc;

pub(in crate::http) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/backups", post(post_backups).get(get_backups))
        .route("/api/backups/prune", post(prune))
        .route("/api/tables/{table}/restore", post(restore))
        .route("/api/tables/{table}/verify", post(verify))
}

/// Body of `POST /api/backups`.
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupBody {
    /// Tables to back up (default, or an empty list: all).
    #[serde(default)]
    tables: TableList,
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
    OptionalJson(req): OptionalJson<BackupBody>,
) -> Result<Json<Vec<Manifest>>, ApiError> {
    let tables = req.tables.or_all()?;
    let codec = req.codec.unwrap_or(Codec::DEFAULT);
    let mut out = Vec::with_capacity(tables.len());
    for table in tables {
        out.push(state.backup(table, codec).await?);
    }
    Ok(Json(out))
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
    QueryOf(q): QueryOf<BackupQuery>,
) -> Result<Json<Vec<Manifest>>, ApiError> {
    let tables = match q.table {
        Some(t) => vec![query_table(&t)?],
        None => Table::ALL.to_vec(),
    };
    let mut out = Vec::new();
    for table in tables {
        out.extend(backup::list(&state.storage, table).await?);
    }
    Ok(Json(out))
}

/// Replace a table's rows with a backup's, after verifying it (admin).
#[utoipa::path(post, path = "/api/tables/{table}/restore", tag = "backups",
    params(("table" = Table, Path, description = "departments, jobs or hired_employees")),
    request_body(content = BackupChoice, description = "Optional; the newest backup by default"),
    responses(
        (status = 200, description = "Restored", body = Restored),
        BadBackupName, Unauthorized, Forbidden, NoSuchBackup, WouldOrphanRows, BackupDamaged,
        DatabaseUnavailable
    )
)]
async fn restore(
    State(state): State<AppState>,
    TablePath(table): TablePath,
    OptionalJson(choice): OptionalJson<BackupChoice>,
) -> Result<Json<Restored>, ApiError> {
    let backup = choice.backup.as_deref();
    let quiet = Arc::new(Quiet);
    Ok(Json(
        backup::restore(&state.store, &state.storage, table, backup, quiet).await?,
    ))
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
    OptionalJson(choice): OptionalJson<BackupChoice>,
) -> Result<Json<Verification>, ApiError> {
    let backup = choice.backup.as_deref();
    Ok(Json(
        backup::verify(&state.storage, table, backup, Arc::new(Quiet)).await?,
    ))
}

/// Body of `POST /api/backups/prune`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PruneBody {
    /// Tables whose backups to prune (default, or an empty list: all).
    #[serde(default)]
    tables: TableList,
    /// How many of the newest complete backups of each table to keep: 1 to
    /// 1000000 (the newest is never removed).
    #[schema(minimum = 1, maximum = 1000000)]
    #[serde(deserialize_with = "whole_number")]
    keep: u64,
    /// Only remove backups taken more than this many days ago (0 to 36500).
    #[schema(value_type = Option<u32>, minimum = 0, maximum = 36500)]
    #[serde(default, deserialize_with = "optional_whole_number")]
    older_than_days: Option<u64>,
}

/// Remove older complete backups of each table, manifest first (admin).
#[utoipa::path(post, path = "/api/backups/prune", tag = "backups",
    request_body(content = PruneBody, description = "A JSON object; `keep` is required"),
    responses(
        (status = 200, description = "Per table: the backups removed and how many are kept", body = Vec<Pruned>),
        Malformed, Unauthorized, Forbidden
    )
)]
async fn prune(
    State(state): State<AppState>,
    JsonObject(req): JsonObject<PruneBody>,
) -> Result<Json<Vec<Pruned>>, ApiError> {
    let retention = Retention::new(req.keep, req.older_than_days)?;
    let tables = req.tables.or_all()?;
    let mut out = Vec::with_capacity(tables.len());
    for table in tables {
        out.push(backup::prune(&state.storage, table, retention).await?);
    }
    Ok(Json(out))
}
