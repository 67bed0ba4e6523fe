//! Load jobs: a historic load that outlives the request that asked for it.
//!
//! A job is recorded in the database (`queued`), then taken by one runner
//! ([`run`]): the standalone server runs it on a task of its own, the
//! Azure Functions host in a queue-triggered invocation. While it runs, the
//! runner writes a heartbeat with the reports of the files done and the
//! progress of the file being read, so every instance can answer for it.
//! A runner whose process died stops beating: its job reads `interrupted`
//! after three missed heartbeats, and running it again finishes it (each
//! file is one transaction, so the file in progress left nothing, and the
//! files already loaded are skipped by their content hash).

use super::load::{self, LoadError, LoadReport, LoadRequest, LoadStatus, LoadWatch};
use crate::dictionary::{Table, datetime};
use crate::storage::Storage;
use crate::store::{OnDuplicate, Store, StoreError, jobs::JobRecord};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often a runner says it is alive. Three missed heartbeats make a
/// running job `interrupted`.
#[derive(Debug, Clone, Copy)]
pub struct JobSettings {
    /// The time between two heartbeats.
    pub heartbeat: Duration,
}

impl Default for JobSettings {
    fn default() -> Self {
        JobSettings {
            heartbeat: Duration::from_secs(5),
        }
    }
}

impl JobSettings {
    /// The settings from `HRMIG_JOB_HEARTBEAT_MS` (default 5000).
    pub fn from_env() -> Result<JobSettings, String> {
        match std::env::var("HRMIG_JOB_HEARTBEAT_MS") {
            Err(_) => Ok(JobSettings::default()),
            Ok(v) => match v.trim().parse::<u64>() {
                Ok(ms) if (100..=600_000).contains(&ms) => Ok(JobSettings {
                    heartbeat: Duration::from_millis(ms),
                }),
                _ => Err(format!(
                    "HRMIG_JOB_HEARTBEAT_MS must be a number of milliseconds from 100 to 600000, not {v:?}"
                )),
            },
        }
    }

    /// A heartbeat older than this means the runner is gone.
    fn stale_after(self) -> i64 {
        3 * self.heartbeat.as_millis() as i64
    }
}

/// What a job loads.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobRequest {
    /// A folder under the storage root.
    pub from: String,
    /// The tables, loaded parents first (all when empty).
    pub tables: Vec<Table>,
    /// Load content already loaded.
    #[serde(default)]
    pub force: bool,
    /// Abort a file once more rows than this are rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rejects: Option<u64>,
    /// What a valid row whose id is taken does (default `reject`).
    #[serde(default, skip_serializing_if = "is_reject")]
    pub on_duplicate: OnDuplicate,
    /// File names other than `<table>.csv` in `from`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<Table, String>,
}

fn is_reject(o: &OnDuplicate) -> bool {
    *o == OnDuplicate::Reject
}

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Recorded, not started.
    Queued,
    /// A runner is loading its files.
    Running,
    /// Every file was loaded or skipped (see each report).
    Done,
    /// The load stopped on an error, or a file was aborted (refused as not a
    /// CSV of its table, or over `max_rejects`); see `error` and each report.
    Failed,
    /// Its runner stopped beating (the process died); run it again.
    Interrupted,
}

impl JobStatus {
    /// The status as the job table spells it. An interrupted job is stored
    /// as `running`: that it stopped is decided when it is read, from its
    /// heartbeat.
    fn stored(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running | JobStatus::Interrupted => "running",
            JobStatus::Done => "done",
            JobStatus::Failed => "failed",
        }
    }

    /// The status the job table's text stands for, if any.
    fn from_stored(text: &str) -> Option<JobStatus> {
        [
            JobStatus::Queued,
            JobStatus::Running,
            JobStatus::Done,
            JobStatus::Failed,
        ]
        .into_iter()
        .find(|status| status.stored() == text)
    }
}

/// The file being read and how far.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobProgress {
    /// The table whose file is being read.
    pub table: Table,
    /// Records read so far.
    pub rows_read: u64,
}

/// A load job, as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Job {
    /// The job's id (its URL is `/api/loads/{id}`).
    pub id: String,
    /// Where it stands.
    pub status: JobStatus,
    /// What it loads.
    pub request: JobRequest,
    /// One report per file done, in load order.
    pub tables: Vec<LoadReport>,
    /// The file being read, while one is.
    pub progress: Option<JobProgress>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When it was created (UTC).
    pub created_at: String,
    /// When its runner last wrote to it (UTC).
    pub updated_at: String,
}

/// Why a job could not be run.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// No job has this id.
    #[error("no load job {0}")]
    NotFound(String),
    /// The job's row cannot be read back (written by another version).
    #[error("load job {id} cannot be read: {why}")]
    Unreadable {
        /// The job.
        id: String,
        /// What is wrong.
        why: String,
    },
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How a call to [`run`] ended.
#[derive(Debug)]
pub enum Ran {
    /// This call ran the job; it is `done` or `failed` now.
    Finished {
        /// The job as it ended.
        job: Job,
        /// It failed for a reason that may pass (the database was
        /// unavailable): running it again later may finish it.
        transient: bool,
    },
    /// The job was not this call's to run: it is done, or running
    /// elsewhere (its heartbeat is fresh), or failed and `failed_too` was
    /// not given.
    NotTaken(Job),
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl JobRequest {
    /// The load it asks for, from `storage`'s root.
    pub fn load_request(&self, storage: &Storage) -> Result<LoadRequest, LoadError> {
        let from = storage.child(&self.from)?;
        Ok(LoadRequest {
            force: self.force,
            max_rejects: self.max_rejects,
            on_duplicate: self.on_duplicate,
            names: self.files.clone(),
            ..LoadRequest::new(from, self.tables.clone())
        })
    }
}

/// The job that loads a file landed in the storage, from its path below
/// the storage root: `landing/<table>.csv`, `landing/<table>-<anything>.csv`
/// or `landing/<table>/<anything>.csv`. `None` for any other path.
pub fn landed(path: &str) -> Option<JobRequest> {
    let rest = path.strip_prefix("landing/")?;
    let csv = |name: &str| {
        let cut = name.len().checked_sub(4)?;
        (name.is_char_boundary(cut) && name[cut..].eq_ignore_ascii_case(".csv"))
            .then(|| name[..cut].to_owned())
    };
    let (folder, table, name) = match rest.split_once('/') {
        None => {
            let stem = csv(rest)?;
            let table = match Table::parse(&stem) {
                Ok(t) => t,
                Err(_) => Table::parse(stem.split_once('-')?.0).ok()?,
            };
            ("landing".to_owned(), table, rest)
        }
        Some((dir, name)) => {
            csv(name).filter(|stem| !stem.is_empty() && !name.contains('/'))?;
            (format!("landing/{dir}"), Table::parse(dir).ok()?, name)
        }
    };
    Some(JobRequest {
        from: folder,
        tables: vec![table],
        files: BTreeMap::from([(table, name.to_owned())]),
        ..JobRequest::default()
    })
}

/// Checks that every file of `request` exists, then records the job,
/// `queued`: a missing file is an error now, not a failed job later.
pub async fn submit_checked(
    store: &Store,
    storage: &Storage,
    request: JobRequest,
) -> Result<Job, LoadError> {
    load::check_files(&request.load_request(storage)?).await?;
    submit(store, request)
        .await
        .map_err(|source| LoadError::Store {
            location: "the load job table".into(),
            source,
        })
}

/// Records a job, `queued`, and returns it.
pub async fn submit(store: &Store, request: JobRequest) -> Result<Job, StoreError> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let text = serde_json::to_string(&request).map_err(|e| StoreError::Task(e.to_string()))?;
    let now = now_ms();
    store.create_job(&id, &text, now).await?;
    Ok(Job {
        id,
        status: JobStatus::Queued,
        request,
        tables: Vec::new(),
        progress: None,
        error: None,
        created_at: datetime::format(now),
        updated_at: datetime::format(now),
    })
}

/// The job with this id, if there is one.
pub async fn get(store: &Store, id: &str, settings: JobSettings) -> Result<Job, JobError> {
    // Ids are made here (32 hex digits): anything else names no job.
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(JobError::NotFound(id.chars().take(64).collect()));
    }
    let record = store
        .job(id)
        .await?
        .ok_or_else(|| JobError::NotFound(id.to_owned()))?;
    job_of(record, settings, now_ms())
}

/// The newest `limit` jobs, newest first: a job in progress shows its
/// progress, a stale one is `interrupted`.
pub async fn recent(
    store: &Store,
    limit: u32,
    settings: JobSettings,
) -> Result<Vec<Job>, JobError> {
    let now = now_ms();
    (store.recent_jobs(limit).await?.into_iter())
        .map(|r| job_of(r, settings, now))
        .collect()
}

fn job_of(r: JobRecord, settings: JobSettings, now: i64) -> Result<Job, JobError> {
    let unreadable = |why: String| JobError::Unreadable {
        id: r.id.clone(),
        why,
    };
    let status = match JobStatus::from_stored(&r.status) {
        Some(JobStatus::Running) if r.heartbeat_ms < now - settings.stale_after() => {
            JobStatus::Interrupted
        }
        Some(status) => status,
        None => return Err(unreadable(format!("status {:?}", r.status))),
    };
    Ok(Job {
        id: r.id.clone(),
        status,
        request: serde_json::from_str(&r.request).map_err(|e| unreadable(e.to_string()))?,
        tables: serde_json::from_str(&r.tables).map_err(|e| unreadable(e.to_string()))?,
        progress: serde_json::from_str(&r.progress).map_err(|e| unreadable(e.to_string()))?,
        error: r.error,
        created_at: datetime::format(r.created_ms),
        updated_at: datetime::format(r.heartbeat_ms),
    })
}

/// Takes the job and runs it to its end, unless it is not this caller's to
/// run (see [`Ran::NotTaken`]). `failed_too` lets a failed job run again.
#[tracing::instrument(skip_all, fields(job = id))]
pub async fn run(
    store: &Store,
    storage: &Storage,
    id: &str,
    settings: JobSettings,
    failed_too: bool,
) -> Result<Ran, JobError> {
    let now = now_ms();
    if !store
        .claim_job(id, now, now - settings.stale_after(), failed_too)
        .await?
    {
        return Ok(Ran::NotTaken(get(store, id, settings).await?));
    }
    let job = get(store, id, settings).await?;
    tracing::info!(tables = ?job.request.tables, from = job.request.from, "load job started");
    let reports = Arc::new(Mutex::new(Vec::<LoadReport>::new()));
    let outcome = match job.request.load_request(storage) {
        Err(e) => Err(e),
        Ok(req) => {
            let watch = Arc::new(LoadWatch::default());
            let req = LoadRequest {
                watch: Some(watch.clone()),
                ..req
            };
            let done = reports.clone();
            let work = load::load_reporting(store, &req, move |r| {
                done.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(r.clone());
            });
            beating(store, id, settings, &reports, &watch, work).await
        }
    };
    let tables = reports_json(&reports);
    // An aborted file (refused, or over --max-rejects) fails the job, as it
    // fails the CLI's command; the other files' reports stand.
    let aborted: Vec<String> = match &outcome {
        Ok(reports) => reports
            .iter()
            .filter(|r| r.status == LoadStatus::Aborted)
            .map(|r| {
                format!(
                    "{}: {}",
                    r.source,
                    r.message.as_deref().unwrap_or("aborted")
                )
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    let (status, error) = match &outcome {
        Ok(_) if aborted.is_empty() => (JobStatus::Done, String::new()),
        Ok(_) => (JobStatus::Failed, aborted.join("; ")),
        Err(e) => (JobStatus::Failed, e.to_string()),
    };
    if let Err(e) = &outcome {
        tracing::warn!(error = %e, "load job failed");
    }
    store
        .finish_job(id, status.stored(), &tables, &error, now_ms())
        .await?;
    let transient =
        matches!(&outcome, Err(LoadError::Store { source, .. }) if source.is_transient());
    Ok(Ran::Finished {
        job: get(store, id, settings).await?,
        transient,
    })
}

/// Drives `work` to its end, writing the job's heartbeat meanwhile. A
/// heartbeat that cannot be written is logged, not fatal: the load goes on,
/// and the job may read `interrupted` until the next one gets through.
async fn beating<T>(
    store: &Store,
    id: &str,
    settings: JobSettings,
    reports: &Mutex<Vec<LoadReport>>,
    watch: &LoadWatch,
    work: impl Future<Output = T>,
) -> T {
    let mut work = std::pin::pin!(work);
    let mut ticks = tokio::time::interval(settings.heartbeat);
    ticks.tick().await;
    loop {
        tokio::select! {
            out = &mut work => return out,
            _ = ticks.tick() => {
                let progress = watch
                    .get()
                    .map(|(table, rows_read)| JobProgress { table, rows_read });
                let progress = serde_json::to_string(&progress).unwrap_or_else(|_| "null".into());
                if let Err(e) = store
                    .beat_job(id, &reports_json(reports), &progress, now_ms())
                    .await
                {
                    tracing::warn!(error = %e, "load job heartbeat failed");
                }
            }
        }
    }
}

fn reports_json(reports: &Mutex<Vec<LoadReport>>) -> String {
    let reports = reports.lock().unwrap_or_else(|e| e.into_inner());
    serde_json::to_string(&*reports).unwrap_or_else(|_| "[]".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(status: &str, heartbeat_ms: i64) -> JobRecord {
        JobRecord {
            id: "j".into(),
            status: status.into(),
            request: r#"{"from":"landing","tables":["jobs"]}"#.into(),
            tables: "[]".into(),
            progress: r#"{"table":"jobs","rows_read":7}"#.into(),
            error: None,
            created_ms: 0,
            heartbeat_ms,
        }
    }

    #[test]
    fn a_running_job_whose_heartbeat_stopped_is_interrupted() {
        let settings = JobSettings {
            heartbeat: Duration::from_millis(1000),
        };
        let at = |status, beat, now| job_of(record(status, beat), settings, now).unwrap().status;
        assert_eq!(at("running", 10_000, 12_000), JobStatus::Running);
        assert_eq!(at("running", 10_000, 13_000), JobStatus::Running);
        assert_eq!(at("running", 10_000, 13_001), JobStatus::Interrupted);
        // Only a running job: a finished one keeps its status for ever.
        assert_eq!(at("done", 0, 1_000_000), JobStatus::Done);
        assert_eq!(at("queued", 0, 1_000_000), JobStatus::Queued);
        let job = job_of(record("running", 10_000), settings, 10_000).unwrap();
        assert_eq!(
            job.progress,
            Some(JobProgress {
                table: Table::Jobs,
                rows_read: 7
            })
        );
        assert_eq!(job.request.tables, [Table::Jobs]);
        assert!(matches!(
            job_of(record("exploded", 0), settings, 0),
            Err(JobError::Unreadable { .. })
        ));
    }

    #[test]
    fn a_landed_file_names_its_table_or_is_not_loaded() {
        let job = |path: &str| landed(path).map(|r| (r.from, r.tables, r.files));
        let one = |from: &str, t: Table, name: &str| {
            Some((
                from.to_owned(),
                vec![t],
                BTreeMap::from([(t, name.to_owned())]),
            ))
        };
        assert_eq!(
            job("landing/jobs.csv"),
            one("landing", Table::Jobs, "jobs.csv")
        );
        assert_eq!(
            job("landing/hired_employees-2021-q3.CSV"),
            one(
                "landing",
                Table::HiredEmployees,
                "hired_employees-2021-q3.CSV"
            )
        );
        assert_eq!(
            job("landing/departments/part 1.csv"),
            one("landing/departments", Table::Departments, "part 1.csv")
        );
        for other in [
            "landing/readme.txt",
            "landing/employees.csv",
            "landing/jobs.csv.gz",
            "landing/jobs/",
            "landing/jobs/.csv",
            "landing/jobs/a/b.csv",
            "landing/unknown/x.csv",
            "backups/jobs/jobs-1.avro",
            "jobs.csv",
            "landing/é.csv",
            "landing/x",
        ] {
            assert_eq!(job(other), None, "{other}");
        }
    }

    #[test]
    fn the_default_heartbeat_is_five_seconds_and_three_missed_make_a_job_stale() {
        assert_eq!(JobSettings::default().heartbeat, Duration::from_secs(5));
        assert_eq!(JobSettings::default().stale_after(), 15_000);
    }
}
