//! What every handler shares, and who runs the load jobs the API records.

use super::auth::Keys;
use super::limits::Limits;
use crate::ops::jobs::JobSettings;
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
        AppState {
            store,
            storage,
            keys,
            jobs: JobSettings::default(),
            runner: Runner::InProcess,
            limits: Arc::new(Limits::default()),
        }
    }
}
