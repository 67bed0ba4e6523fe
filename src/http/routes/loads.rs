//! The loads resource: load jobs (`POST /api/loads`, `GET /api/loads/{id}`,
//! `POST /api/loads/{id}/run`), the history of operations (`GET
//! /api/loads`: loads, batches, restores, retries, fixes, undos) and the
//! undo of one of them (`POST /api/loads/{id}/undo`, by history id).
//!
//! A load over HTTP is a job: the request is checked (folder, tables, every
//! file present), recorded, and answered `202 Accepted` at once with the job
//! and its `Location`; the load runs after the response, so a load longer
//! than a front end's request timeout (Azure's 230 s) is not lost to its
//! caller. Who runs it is [`Runner`]'s choice.

use crate::dictionary::Table;
use crate::http::error::documented::{
    DatabaseUnavailable, Forbidden, Malformed, NoSuchJob, Unauthorized,
};
use crate::http::error::{ApiError, ErrorBody, ErrorDetail};
use crate::http::extract::{
    JobPath, OptionalJson, QueryOf, TableList, folder_under_root, id_in_path,
    optional_whole_number, page_limit, query_table,
};
use crate::http::state::{AppState, QueuedJob, Runner};
use crate::ops::jobs::{self, Job, JobError, JobRequest, JobStatus, Ran};
use crate::ops::lineage::{self, LineageError, UndoReport};
use crate::store::{LoadRecord, OnDuplicate, UndoRefusal};
use axum::Json;
use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use std::collections::BTreeMap;

pub(in crate::http) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/loads", post(post_loads).get(get_loads))
        .route("/api/loads/jobs", get(list_jobs))
        .route("/api/loads/{id}", get(get_load))
        .route("/api/loads/{id}/run", post(run_load))
        .route("/api/loads/{id}/undo", post(undo_load))
}

impl From<LineageError> for ApiError {
    fn from(e: LineageError) -> Self {
        match e {
            LineageError::NoRow { .. } | LineageError::NoOperation(_) => {
                ApiError::NotFound(e.to_string())
            }
            LineageError::Refused { .. } => ApiError::Conflict(e.to_string()),
            LineageError::Store(s) => s.into(),
        }
    }
}

/// An undo that was refused: nothing changed.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct UndoRefused {
    /// `undo_refused`, and why.
    error: ErrorDetail,
    /// The counts that say why.
    #[serde(flatten)]
    counts: UndoRefusal,
}

/// Undo an operation of the history (a load, one table of an API batch, a
/// retry, a fix): the rows it inserted are removed in one transaction, and
/// the undo recorded (admin). Undoing it again changes nothing.
// The document's `{load_id}` is the history's id of an operation, not a
// load job's `{id}`; the router names both `{id}`, one segment for both.
#[utoipa::path(post, path = "/api/loads/{load_id}/undo", tag = "loads",
    params(("load_id" = i64, Path, description = "The operation's history id (`GET /api/loads`, `load_id`)")),
    responses(
        (status = 200, description = "Undone, now or before (`changed` says which)", body = UndoReport),
        (status = 404, description = "No such operation", body = ErrorBody),
        (status = 409, description = "Refused, nothing changed: it updated rows, other rows reference its rows, later operations wrote them, or it is a restore or an undo", body = UndoRefused),
        Unauthorized, Forbidden, DatabaseUnavailable
    )
)]
async fn undo_load(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = id_in_path(id, "operation")?;
    match lineage::undo(&state.store, id).await {
        Ok(report) => Ok(Json(report).into_response()),
        Err(LineageError::Refused { refusal, .. }) => {
            let body = UndoRefused {
                error: ErrorDetail {
                    code: "undo_refused",
                    message: format!("operation {id} cannot be undone: {}", refusal.reason),
                },
                counts: refusal,
            };
            Ok((StatusCode::CONFLICT, Json(body)).into_response())
        }
        Err(e) => Err(e.into()),
    }
}

/// Body of `POST /api/loads`.
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoadBody {
    /// Folder under the storage root holding `<table>.csv` (default
    /// `landing`): `/`-separated names, none empty or starting with a dot,
    /// without `\\`, `:`, `%` or NUL.
    #[schema(pattern = r"^[^/\\:%\x00.][^/\\:%\x00]*(/[^/\\:%\x00.][^/\\:%\x00]*)*$")]
    from: Option<String>,
    /// Tables to load (default all, parents first).
    #[serde(default)]
    tables: TableList,
    /// Load again content already loaded.
    force: Option<bool>,
    /// Abort a file once more rows than this are rejected.
    #[serde(default, deserialize_with = "optional_whole_number")]
    max_rejects: Option<u64>,
    /// `reject` (default) or `update`, as `?on_duplicate=` of the ingest routes.
    on_duplicate: Option<OnDuplicate>,
}

impl From<JobError> for ApiError {
    fn from(e: JobError) -> Self {
        match e {
            JobError::NotFound(_) => ApiError::NotFound(e.to_string()),
            JobError::Unreadable { .. } => ApiError::Internal(e.to_string()),
            JobError::Store(s) => s.into(),
        }
    }
}

/// Start a load job: historic CSV files from a folder under the storage root (admin).
#[utoipa::path(post, path = "/api/loads", tag = "loads",
    request_body(content = LoadBody, description = "Optional, as are all its fields; `from` defaults to `landing`"),
    responses(
        (status = 202, description = "The job, recorded; `Location` is its URL", body = Job),
        (status = 404, description = "A file is missing (no job was recorded)", body = ErrorBody),
        (status = 503, description = "Database or storage unavailable", body = ErrorBody),
        Malformed, Unauthorized, Forbidden
    )
)]
async fn post_loads(
    State(state): State<AppState>,
    OptionalJson(req): OptionalJson<LoadBody>,
) -> Result<Response, ApiError> {
    let from = folder_under_root(req.from.as_deref().unwrap_or("landing"))?.to_owned();
    // The document's integers are 64-bit signed, as every JSON reader of
    // the job's request has them.
    if req.max_rejects.is_some_and(|n| n > i64::MAX as u64) {
        return Err(ApiError::BadRequest(format!(
            "max_rejects must be 0 to {}",
            i64::MAX
        )));
    }
    let request = JobRequest {
        from,
        tables: req.tables.tables()?,
        force: req.force.unwrap_or(false),
        max_rejects: req.max_rejects,
        on_duplicate: req.on_duplicate.unwrap_or_default(),
        files: BTreeMap::new(),
    };
    let job = jobs::submit_checked(&state.store, &state.storage, request).await?;
    Ok(accepted(&state, job))
}

/// Run a load job again: one that was interrupted or failed (admin).
#[utoipa::path(post, path = "/api/loads/{id}/run", tag = "loads",
    params(("id" = String, Path, description = "The job's id")),
    responses(
        (status = 202, description = "The job, to run again", body = Job),
        (status = 409, description = "The job is done, or running", body = ErrorBody),
        Unauthorized, Forbidden, NoSuchJob, DatabaseUnavailable
    )
)]
async fn run_load(
    State(state): State<AppState>,
    JobPath(id): JobPath,
) -> Result<Response, ApiError> {
    let job = jobs::get(&state.store, &id, state.jobs).await?;
    match job.status {
        JobStatus::Done => Err(ApiError::Conflict(format!(
            "load job {id} is done; POST /api/loads starts a new one"
        ))),
        JobStatus::Running => Err(ApiError::Conflict(format!("load job {id} is running"))),
        JobStatus::Queued | JobStatus::Failed | JobStatus::Interrupted => Ok(accepted(&state, job)),
    }
}

/// `202 Accepted` with the job, after handing it to its runner.
fn accepted(state: &AppState, job: Job) -> Response {
    let location = format!("/api/loads/{}", job.id);
    let mut response = (
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(&job),
    )
        .into_response();
    match state.runner {
        Runner::InProcess => {
            let state = state.clone();
            tokio::spawn(async move {
                match jobs::run(&state.store, &state.storage, &job.id, state.jobs, true).await {
                    Ok(Ran::Finished { job, .. }) => state.count_job(&job),
                    Ok(Ran::NotTaken(_)) => {}
                    Err(e) => tracing::error!(job = job.id, error = %e, "load job could not run"),
                }
            });
        }
        Runner::Queue => {
            response.extensions_mut().insert(QueuedJob(job.id));
        }
    }
    response
}

#[derive(Deserialize)]
struct JobsQuery {
    limit: Option<u32>,
}

/// The newest load jobs, newest first: each with its status, the reports
/// of the files done and, while it runs, the file being read and how far.
#[utoipa::path(get, path = "/api/loads/jobs", tag = "loads",
    params(
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "1 to 1000, default 20")
    ),
    responses(
        (status = 200, description = "Jobs, newest first", body = Vec<Job>),
        Malformed, Unauthorized, DatabaseUnavailable
    )
)]
async fn list_jobs(
    State(state): State<AppState>,
    QueryOf(q): QueryOf<JobsQuery>,
) -> Result<Json<Vec<Job>>, ApiError> {
    let limit = page_limit(q.limit, 20)?;
    Ok(Json(jobs::recent(&state.store, limit, state.jobs).await?))
}

/// A load job: its status, the reports of the files done, the file being read.
#[utoipa::path(get, path = "/api/loads/{id}", tag = "loads",
    params(("id" = String, Path, description = "The job's id")),
    responses(
        (status = 200, description = "The job", body = Job),
        Unauthorized, NoSuchJob, DatabaseUnavailable
    )
)]
async fn get_load(
    State(state): State<AppState>,
    JobPath(id): JobPath,
) -> Result<Json<Job>, ApiError> {
    Ok(Json(jobs::get(&state.store, &id, state.jobs).await?))
}

#[derive(Deserialize)]
struct HistoryQuery {
    table: Option<String>,
    limit: Option<u32>,
}

/// The history of operations, newest first, each with its id: file
/// loads, API batches (one entry per table), restores, retries, fixes and
/// undos.
#[utoipa::path(get, path = "/api/loads", tag = "loads",
    params(
        ("table" = Option<Table>, Query, description = "Only this table's loads"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "1 to 1000, default 1000")
    ),
    responses(
        (status = 200, description = "History", body = Vec<LoadRecord>),
        Malformed, Unauthorized, DatabaseUnavailable
    )
)]
async fn get_loads(
    State(state): State<AppState>,
    QueryOf(q): QueryOf<HistoryQuery>,
) -> Result<Json<Vec<LoadRecord>>, ApiError> {
    let table = q.table.as_deref().map(query_table).transpose()?;
    let limit = page_limit(q.limit, 1000)?;
    Ok(Json(state.store.loads(table, limit).await?))
}
