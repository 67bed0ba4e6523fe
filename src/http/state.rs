//! What every handler shares, and who runs the load jobs the API records.

use super::auth::Keys;
use super::limits::Limits;
use crate::dictionary::Table;
use crate::metrics::{Metrics, RowCounts};
use crate::ops::Quiet;
use crate::ops::backup::{self, BackupError, Codec, Manifest};
use crate::ops::jobs::{Job, JobSettings};
use crate::ops::load::LoadStatus;
use crate::storage::Storage;
use crate::store::Store;
use std::sync::Arc;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The database.
    pub store: Arc<Store>,
    /// The storage root (loads read `landing/` below it).
    pub storage: Storage,
    /// API and admin keys.
    pub keys: Arc<Keys>,
    /// The load jobs' heartbeat.
    pub jobs: JobSettings,
    /// Who runs the load jobs the API records.
    pub runner: Runner,
    /// Timeouts, the concurrency cap and the rate limit, shared by every
    /// router built from this state.
    pub limits: Arc<Limits>,
    /// What this server counts (`GET /api/metrics`).
    pub metrics: Arc<Metrics>,
}

/// Who runs a load job once the API has recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runner {
    /// This process, on a task of its own (the standalone server).
    InProcess,
    /// A queue-triggered invocation of the Functions host: the response
    /// carries the job to put on the queue ([`QueuedJob`]).
    Queue,
}

/// A response extension: the id of a job the Functions host should put on
/// the load queue (see [`super::functions`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedJob(pub String);

impl AppState {
    /// The state of a standalone server: jobs run in this process, with the
    /// default heartbeat.
    pub fn new(store: Arc<Store>, storage: Storage, keys: Arc<Keys>) -> AppState {
        let metrics = Arc::new(Metrics::new(store.dialect().name()));
        AppState {
            metrics,
            store,
            storage,
            keys,
            jobs: JobSettings::default(),
            runner: Runner::InProcess,
            limits: Arc::new(Limits::default()),
        }
    }
}

impl AppState {
    /// Backs up `table`, counted in the metrics with its time and outcome.
    pub async fn backup(&self, table: Table, codec: Codec) -> Result<Manifest, BackupError> {
        let started = std::time::Instant::now();
        let made = backup::backup(&self.store, &self.storage, table, codec, Arc::new(Quiet)).await;
        let outcome = if made.is_ok() { "ok" } else { "failed" };
        (self.metrics).backup(table, outcome, started.elapsed().as_secs_f64());
        made
    }

    /// Counts the files of a load job this server ran to its end: each
    /// file's time by how it ended, and the rows of those that committed
    /// (an aborted file, rolled back, and one loaded before wrote none).
    pub fn count_job(&self, job: &Job) {
        for report in job.tables.iter().filter(|r| !r.dry_run) {
            let status = report.status.as_str();
            self.metrics.load(report.table, status, report.seconds);
            if report.status != LoadStatus::Loaded {
                continue;
            }
            let counts = RowCounts {
                received: report.rows_read,
                inserted: report.inserted,
                updated: report.updated,
                rejected: report.rejected,
                codes: report.rejected_by_code,
            };
            self.metrics.rows(report.table, &counts);
        }
    }
}
