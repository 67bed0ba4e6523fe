//! What the operations ask of the store, and what became of it.

use super::Chunk;
use crate::dictionary::{CodeTally, FieldError, Table};

/// A file load, as the store sees it.
#[derive(Debug, Clone)]
pub struct FileLoad {
    /// Target table.
    pub table: Table,
    /// `file:<location>`, recorded with every rejection and in the history.
    pub source: String,
    /// Load even when the same content was loaded before.
    pub force: bool,
    /// Abort once more rows than this are rejected.
    pub max_rejects: Option<u64>,
    /// When the load started (UTC text).
    pub started_at: String,
    /// Size of the file in bytes, when known: a server database loads a
    /// big file differently from a small one.
    pub bytes: Option<u64>,
    /// A dry run: every check made, nothing written (the transaction is
    /// rolled back), the outcome [`LoadOutcome::WouldLoad`].
    pub dry_run: Option<DryRun>,
    /// What a valid row whose id is taken does (see [`OnDuplicate`]).
    pub on_duplicate: OnDuplicate,
}

/// What a valid row does when its id is already in the table, or earlier
/// in the same file or batch.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum OnDuplicate {
    /// It is rejected as a `duplicate`: the data rules stand.
    #[default]
    Reject,
    /// It replaces the stored values (the later occurrence wins); an
    /// update that would break a foreign key is a rejection, as an insert is.
    Update,
}

impl OnDuplicate {
    /// Whether a taken id is an update.
    pub fn updates(self) -> bool {
        self == OnDuplicate::Update
    }
}

/// What a dry run of several files knows that the database does not: the
/// ids the earlier files of the run would have inserted, so that a child
/// file is checked against its parents as a real run would check it.
#[derive(Debug, Clone, Default)]
pub struct DryRun {
    /// Ids that earlier files would have inserted, by (parent) table.
    pub inserted: std::collections::HashMap<Table, std::sync::Arc<Vec<i32>>>,
}

impl DryRun {
    /// The ids earlier files would have inserted into `table`.
    pub(super) fn ids(&self, table: Table) -> &[i32] {
        self.inserted.get(&table).map_or(&[], |ids| ids.as_slice())
    }
}

/// How a file load ended in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadOutcome {
    /// Committed: rows, rejections and the history entry.
    Loaded {
        /// The history entry: the load's operation id.
        load_id: i64,
        /// Rows inserted.
        inserted: u64,
        /// Rows that replaced stored ones (`--on-duplicate update`).
        updated: u64,
        /// Rows written to the rejection log.
        rejected: u64,
        /// Those rows per code.
        codes: CodeTally,
    },
    /// The same content is already in the table's history; nothing changed.
    AlreadyLoaded,
    /// Too many rejections; rolled back.
    Aborted {
        /// Rejections counted when the load stopped.
        rejected: u64,
    },
    /// A dry run that a real run would have committed; nothing was written.
    WouldLoad {
        /// Rows that would have been inserted.
        inserted: u64,
        /// Rows that would have replaced stored ones.
        updated: u64,
        /// Rows that would have been rejected (and logged).
        rejected: u64,
        /// Those rows per code.
        codes: CodeTally,
        /// Their ids, when the table is a parent (a later file of the same
        /// dry run is checked against them); empty otherwise.
        ids: Vec<i32>,
        /// The first [`WouldReject::KEPT`] rows that would have been rejected.
        rejections: Vec<WouldReject>,
    },
}

/// A row a dry run would have rejected, with its reasons: what the log
/// would have kept.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct WouldReject {
    /// Its line in the file (from 1).
    pub line: u64,
    /// The record as read.
    pub raw: String,
    /// Every rule it breaks.
    pub errors: Vec<crate::dictionary::FieldError>,
}

impl WouldReject {
    /// How many a dry run keeps, in file order.
    pub const KEPT: usize = 100;
}

/// One API batch for one table, checked by the pure rules.
#[derive(Debug)]
pub struct TableBatch {
    /// Target table.
    pub table: Table,
    /// The rows, `position` being the index in the request.
    pub chunk: Chunk,
}

/// Idempotency of a request: the client's key and a fingerprint of its body.
#[derive(Debug, Clone)]
pub struct Idempotency {
    /// The `Idempotency-Key` header.
    pub key: String,
    /// SHA-256 of the request (route and body), hex.
    pub fingerprint: String,
}

/// What the store did with one table of a batch.
#[derive(Debug, Clone)]
pub struct TableOutcome {
    /// The table.
    pub table: Table,
    /// Rows received.
    pub received: u64,
    /// Rows inserted.
    pub inserted: u64,
    /// Rows that replaced a stored row of the same id (an upsert's).
    pub updated: u64,
    /// Rejected rows: position and errors (all of them logged).
    pub rejected: Vec<(u64, Vec<FieldError>)>,
    /// The history entry of what it wrote (its operation id); none in a
    /// dry run, or for rows of the rejection log that inserted nothing.
    pub load_id: Option<i64>,
}

impl TableOutcome {
    /// Nothing received.
    pub fn empty(table: Table) -> TableOutcome {
        TableOutcome {
            table,
            received: 0,
            inserted: 0,
            updated: 0,
            rejected: Vec::new(),
            load_id: None,
        }
    }
}

/// Renders the response of a batch from its outcomes and the batches as
/// received (for the raw text of rejected rows); a keyed batch is rendered
/// inside its transaction, so that the stored response is exactly the one sent.
/// A backend may call it more than once: a transaction that is run again
/// after a transient failure renders again.
pub type Render = Box<dyn Fn(&[TableOutcome], &[TableBatch]) -> String + Send + Sync>;

/// What became of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngestOutcome {
    /// Applied now; the rendered response.
    Applied(String),
    /// The key was seen before with the same body: the first response.
    Replayed(String),
    /// The key was seen before with another body: nothing done.
    KeyReused,
}

/// An API batch as the store applies it (see [`super::Store::ingest`]).
pub struct BatchRequest {
    /// `api:<batch id>`, recorded with every rejection.
    pub source: String,
    /// The tables of the batch, in the order they are applied.
    pub tables: Vec<TableBatch>,
    /// The rest of the last table, when it is still being parsed.
    pub rest: Option<super::BatchRest>,
    /// The client's idempotency key, if it sent one.
    pub idempotency: Option<Idempotency>,
    /// Renders the response (inside the transaction when it is keyed).
    pub render: Render,
    /// A dry run: every check made, nothing written (no rows, rejections
    /// or key: [`super::Store::ingest`] drops the key), the transaction
    /// rolled back.
    pub dry_run: bool,
    /// What a valid row whose id is taken does.
    pub on_duplicate: OnDuplicate,
    /// Rows of the rejection log checked again: their rejections are
    /// resolved or updated instead of new ones logged (see
    /// [`super::Store::requeue`]).
    pub requeue: Option<super::Requeue>,
}
