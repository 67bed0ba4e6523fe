//! Why a backup operation failed.

use crate::dictionary::Table;
use crate::storage::StorageError;
use crate::store::StoreError;

/// Why a backup operation failed. Nothing was changed in the database.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// A backup name that is not one this tool writes for that table.
    #[error(
        "invalid backup name {0:?}: expected <table>-<yyyymmddTHHMMSSmmmZ> (e.g. jobs-20240101T000000000Z)"
    )]
    BadName(String),
    /// No such backup, or no backup of the table.
    #[error("{0}")]
    NotFound(String),
    /// The backup failed verification; the problems say why.
    #[error("backup {backup} is damaged: {}", problems.join("; "))]
    Damaged {
        /// The backup.
        backup: String,
        /// What is wrong.
        problems: Vec<String>,
    },
    /// The restore would break the database's rules (a foreign key).
    #[error("restore of {table} refused, table unchanged: {reason}")]
    Refused {
        /// The table.
        table: Table,
        /// Why.
        reason: String,
    },
    /// A retention that would remove every backup of a table.
    #[error("{0}")]
    BadRetention(String),
    /// Writing the Avro file failed.
    #[error("writing the backup failed: {0}")]
    Write(String),
    /// The storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}
