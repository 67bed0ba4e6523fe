//! Where a row came from, and undoing what an operation inserted: the
//! reports the CLI and the API show alike.

use crate::dictionary::Table;
use crate::store::{OperationKind, Origin, Store, StoreError, UndoOutcome, UndoRefusal};

/// A stored row and the operation that last wrote it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct RowReport {
    /// The table.
    pub table: Table,
    /// The row, by column name.
    #[schema(value_type = Object)]
    pub row: serde_json::Map<String, serde_json::Value>,
    /// The operation that last wrote it: `null` for a row written before
    /// hrmig kept lineage, or by another program.
    pub origin: Option<Origin>,
}

/// Why a row or an undo could not be had.
#[derive(Debug, thiserror::Error)]
pub enum LineageError {
    /// No row of the table has this id.
    #[error("{table} has no row with id {id}")]
    NoRow {
        /// The table.
        table: Table,
        /// The id asked for.
        id: i64,
    },
    /// The history has no entry with this id.
    #[error("no operation with id {0} in the history (see `hrmig loads`)")]
    NoOperation(i64),
    /// The undo was refused; nothing changed.
    #[error("operation {id} cannot be undone: {}", .refusal.reason)]
    Refused {
        /// The operation.
        id: i64,
        /// Why, with the counts.
        refusal: UndoRefusal,
    },
    /// The database failed; nothing changed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The row of `table` with this id, and its origin.
pub async fn row(store: &Store, table: Table, id: i64) -> Result<RowReport, LineageError> {
    let found = match i32::try_from(id) {
        Ok(id) => store.row(table, id).await?,
        Err(_) => None,
    };
    let (row, origin) = found.ok_or(LineageError::NoRow { table, id })?;
    Ok(RowReport { table, row, origin })
}

/// What an undo did.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct UndoReport {
    /// The operation undone (its history id).
    pub load_id: i64,
    /// Its table.
    pub table: String,
    /// What kind of operation it was.
    pub kind: OperationKind,
    /// Whether this request removed its rows: `false` when an earlier undo
    /// had (nothing changed now).
    pub changed: bool,
    /// The history entry of the undo that removed them.
    pub undo_id: i64,
    /// Rows this request removed.
    pub removed: u64,
}

/// Undoes operation `id`: the rows it inserted removed in one transaction
/// (see [`Store::undo`]).
pub async fn undo(store: &Store, id: i64) -> Result<UndoReport, LineageError> {
    let (entry, outcome) = store.undo(id).await?.ok_or(LineageError::NoOperation(id))?;
    let (changed, undo_id, removed) = match outcome {
        UndoOutcome::Undone { undo, removed } => (true, undo, removed),
        UndoOutcome::AlreadyUndone { undo } => (false, undo, 0),
        UndoOutcome::Refused(refusal) => return Err(LineageError::Refused { id, refusal }),
    };
    if changed {
        tracing::info!(operation = id, undo = undo_id, removed, "operation undone");
    }
    Ok(UndoReport {
        load_id: id,
        table: entry.table,
        kind: entry.kind,
        changed,
        undo_id,
        removed,
    })
}
