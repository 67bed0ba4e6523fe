//! The contract every database backend fulfils.
//!
//! [`super::Store`] dispatches to one of these; what the backends share
//! (the statements, the admission rules, the restore) is not here but in
//! the modules beside this one, which call back into a backend only for
//! what differs.

use super::sql::{Read, Statement};
use super::{
    BatchRequest, FileFeed, FileLoad, IngestOutcome, LoadOutcome, LoadRecord, RestoreFeed, RowSink,
    StoreError, UndoOutcome,
};
use crate::dictionary::Table;
use crate::metrics::PoolStatus;

/// A database backend.
///
/// Every method is one operation with its own transaction (or none, for
/// reads), and leaves nothing half done: an `Err` means nothing was
/// written. Server backends retry a transaction that failed for a
/// transient reason ([`StoreError::is_transient`]) where the input can be
/// sent again (statements, batches); loads and restores consume their
/// input and are not retried.
pub(super) trait Backend {
    /// Runs one statement in a transaction of its own; the rows it changed.
    /// A statement of the load jobs ([`Statement::of_jobs`]) runs where the
    /// backend keeps them.
    async fn execute(&self, st: Statement) -> Result<u64, StoreError>;

    /// Runs one query from one snapshot; each row read by `read`.
    async fn query<T: Send + 'static>(
        &self,
        st: Statement,
        read: impl Read<T>,
    ) -> Result<Vec<T>, StoreError>;

    /// Loads one file in one transaction (see [`super::Store::load_file`]).
    async fn load_file(&self, load: FileLoad, feed: FileFeed) -> Result<LoadOutcome, StoreError>;

    /// Applies an API batch in one transaction (see [`super::Store::ingest`]).
    async fn ingest(&self, batch: BatchRequest) -> Result<IngestOutcome, StoreError>;

    /// Streams a table from one snapshot (see [`super::Store::scan`]).
    async fn scan<S: RowSink>(&self, table: Table, sink: S) -> Result<S, StoreError>;

    /// Replaces a table's rows (see [`super::Store::replace`]), through
    /// [`super::restore::run`].
    async fn replace(
        &self,
        table: Table,
        source: String,
        rows: RestoreFeed,
    ) -> Result<(u64, i64), StoreError>;

    /// Undoes an operation of `table` (see [`super::Store::undo`]), through
    /// [`super::undo::run`] in a transaction of its own.
    async fn undo(&self, entry: &LoadRecord, table: Table) -> Result<UndoOutcome, StoreError>;

    /// Whether no write is running or queued. A server backend says no:
    /// a batch is then parsed whole before it is sent, because a
    /// transaction held open while a request is read would hold a pooled
    /// connection.
    fn writer_idle(&self) -> bool {
        false
    }

    /// The connections as the pool counts them now (no round trip).
    fn pool(&self) -> PoolStatus;

    /// Whether the database answers.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Whether the database takes writes now (see
    /// [`super::Store::check_writes`]).
    async fn check_writes(&self) -> Result<(), StoreError>;

    /// Finishes pending work before the process exits.
    async fn close(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
