//! The store's error, and what each failure means for the caller.
//!
//! Whether a driver's error is worth another try, or means that the
//! database takes no writes for now, is decided once, where the driver's
//! error becomes a [`StoreError`] (each backend's `From` impl); the retry
//! loop and the HTTP layer only read the [`Fault`].

use super::mssql::entra;
use super::postgres::tls as pg_tls;
use crate::dictionary::Table;

/// What a failure of the database means for what to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Running the transaction again may succeed: the connection was lost
    /// or refused, the server is starting or stopping, the transaction lost
    /// a deadlock or a serialisation conflict.
    Transient,
    /// The database cannot be used for now (a file that cannot be opened,
    /// a database locked by another process); trying again within the
    /// operation would not help, but a client may succeed later.
    Unavailable,
    /// The database answers but takes no writes: its disk is full or
    /// failing, or it is read-only (a standby, a database set read-only, a
    /// size quota reached).
    CannotWrite,
    /// The database refused the operation, and would refuse it again.
    Refused,
}

impl Fault {
    /// The fault of a server's error, from what its backend knows of it.
    pub(super) fn of(transient: bool, cannot_write: bool) -> Fault {
        match (transient, cannot_write) {
            (true, _) => Fault::Transient,
            (false, true) => Fault::CannotWrite,
            (false, false) => Fault::Refused,
        }
    }
}

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database URL is not one hrmig understands.
    #[error(
        "unsupported database URL {0:?}: use sqlite://PATH, postgres://… or mssql://… \
         (or an ADO.NET connection string)"
    )]
    BadUrl(String),
    /// SQLite failed.
    // The driver errors are not `#[source]`s: their causes are in the
    // message already (see `causes`), and a chain printer would repeat them.
    #[error("SQLite: {}", causes(.error))]
    Sqlite {
        /// The driver's error.
        error: rusqlite::Error,
        /// What it means (see [`Fault`]).
        fault: Fault,
    },
    /// PostgreSQL failed.
    #[error("PostgreSQL: {}", pg_causes(.error))]
    Postgres {
        /// The driver's error.
        error: tokio_postgres::Error,
        /// What it means (see [`Fault`]).
        fault: Fault,
    },
    /// The PostgreSQL TLS settings cannot be used, or the server's
    /// certificate did not verify; not transient: trying again meets the
    /// same settings and the same certificate.
    #[error("PostgreSQL: {0}")]
    Tls(pg_tls::TlsError),
    /// SQL Server / Azure SQL failed.
    #[error("SQL Server: {}", causes(.error))]
    Mssql {
        /// The driver's error.
        error: tiberius::error::Error,
        /// What it means (see [`Fault`]).
        fault: Fault,
    },
    /// SQL Server's bulk-copy protocol failed during a file load (a TDS
    /// server that implements it differently); the load was rolled back and
    /// the store loads with plain `INSERT`s from then on.
    #[error("SQL Server bulk copy failed: {0}")]
    BulkCopyFailed(tiberius::error::Error),
    /// No Microsoft Entra ID token for an Azure SQL login: the credential
    /// is not set up, refused, or did not answer. Nothing was written.
    #[error("Microsoft Entra ID: {0}")]
    Entra(entra::EntraError),
    /// The database could not be reached, or kept failing for a transient
    /// reason after every retry; nothing was written.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// The database answers but is read-only (a standby, a database set
    /// read-only).
    #[error("the database is read-only: {0}")]
    ReadOnly(String),
    /// The thread that serialises SQLite writes is gone.
    #[error("the database writer stopped")]
    WriterGone,
    /// The producer of a stream of rows (a file, a batch read in pieces, a
    /// backup) stopped before its end; the transaction was rolled back.
    #[error("the file load was interrupted before the end of the file")]
    FeedInterrupted,
    /// A blocking task failed.
    #[error("database task failed: {0}")]
    Task(String),
    /// The consumer of a scan stopped.
    #[error("{0}")]
    Sink(String),
    /// A table's contents cannot be replaced as asked (a foreign key would
    /// break, an id repeats, the rows are not the ones announced); nothing
    /// was changed.
    #[error("{0}")]
    Refused(String),
    /// A stored time is outside the years the dictionary accepts (a server
    /// column may hold `infinity`); [`StoreError::BadStoredValue`] once the
    /// row is known.
    #[error(
        "a stored time is outside years {}..{}",
        crate::dictionary::datetime::MIN_YEAR,
        crate::dictionary::datetime::MAX_YEAR
    )]
    TimeOutOfRange,
    /// A stored value does not read back as its column's type.
    #[error("{table} row id {id}: {message}")]
    BadStoredValue {
        /// The table.
        table: Table,
        /// The row's id.
        id: i64,
        /// What is wrong.
        message: String,
    },
}

impl StoreError {
    /// What this failure means (see [`Fault`]).
    pub fn fault(&self) -> Fault {
        match self {
            StoreError::Sqlite { fault, .. }
            | StoreError::Postgres { fault, .. }
            | StoreError::Mssql { fault, .. } => *fault,
            StoreError::Unavailable(_) => Fault::Transient,
            StoreError::WriterGone | StoreError::Entra(_) => Fault::Unavailable,
            StoreError::ReadOnly(_) => Fault::CannotWrite,
            _ => Fault::Refused,
        }
    }

    /// A stored time of `table`'s row `id` that the dictionary does not
    /// accept (see [`StoreError::TimeOutOfRange`]).
    pub(super) fn time_out_of_range(table: Table, id: i64, column: &str) -> StoreError {
        StoreError::BadStoredValue {
            table,
            id,
            message: format!(
                "{column} is outside years {}..{}",
                crate::dictionary::datetime::MIN_YEAR,
                crate::dictionary::datetime::MAX_YEAR
            ),
        }
    }

    /// Whether the operation may succeed if run again: the database was
    /// unreachable or lost a race, not refused the data.
    pub fn is_transient(&self) -> bool {
        self.fault() == Fault::Transient
    }

    /// Whether the database refuses writes for now (see
    /// [`Fault::CannotWrite`]). Not worth another try within the
    /// operation, but a client may succeed later.
    pub fn cannot_write(&self) -> bool {
        self.fault() == Fault::CannotWrite
    }
}

impl From<pg_tls::TlsError> for StoreError {
    fn from(e: pg_tls::TlsError) -> StoreError {
        StoreError::Tls(e)
    }
}

impl From<entra::EntraError> for StoreError {
    fn from(e: entra::EntraError) -> StoreError {
        StoreError::Entra(e)
    }
}

/// An error and its causes on one line, each said once: drivers wrap a
/// cause and repeat its words ("directory … does not exist: directory …
/// does not exist").
pub(crate) fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(e);
    while let Some(err) = next {
        let text = err.to_string();
        // A cause that restates a layer above, with more ("Error code 13:
        // database or disk is full" under "database or disk is full"),
        // takes that layer's place; one that says less is dropped.
        if let Some(part) = parts.iter_mut().find(|p| text.contains(p.as_str())) {
            *part = text;
        } else if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = err.source();
    }
    parts.join(": ")
}

/// A PostgreSQL error with the server's SQLSTATE and message when the
/// server sent one ("FATAL 3D000: database \"x\" does not exist"), else
/// the client's causes ("error connecting to server: Connection refused").
fn pg_causes(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut text = format!("{} {}: {}", db.severity(), db.code().code(), db.message());
            if let Some(detail) = db.detail() {
                text.push_str(" (");
                text.push_str(detail);
                text.push(')');
            }
            text
        }
        None => causes(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_failing_and_read_only_databases_take_no_writes() {
        let sqlite = |code| {
            StoreError::from(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(code),
                None,
            ))
        };
        for code in [
            rusqlite::ffi::SQLITE_FULL,
            rusqlite::ffi::SQLITE_READONLY,
            rusqlite::ffi::SQLITE_IOERR_WRITE,
        ] {
            assert!(sqlite(code).cannot_write(), "{code}");
        }
        assert!(!sqlite(rusqlite::ffi::SQLITE_CONSTRAINT).cannot_write());
        assert_eq!(
            sqlite(rusqlite::ffi::SQLITE_BUSY).fault(),
            Fault::Unavailable
        );
        assert!(StoreError::ReadOnly("standby".into()).cannot_write());
        assert!(!StoreError::Refused("a foreign key".into()).cannot_write());
        assert!(StoreError::Unavailable("gone".into()).is_transient());
    }

    #[test]
    fn driver_errors_say_each_cause_once() {
        let full = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
            Some("database or disk is full".into()),
        );
        let text = StoreError::from(full).to_string();
        assert_eq!(
            text.matches("database or disk is full").count(),
            1,
            "{text}"
        );
        assert!(text.contains("13"), "{text}");
        let missing = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
            Some("directory /x does not exist".into()),
        );
        let text = StoreError::from(missing).to_string();
        assert_eq!(text.matches("does not exist").count(), 1, "{text}");
        assert!(text.contains("/x"), "{text}");
    }
}
