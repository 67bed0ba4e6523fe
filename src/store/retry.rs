//! Running a transaction again after a transient failure.

use super::StoreError;
use std::time::Duration;

/// Tries of a transaction that keeps failing for a transient reason; the
/// waits between them double from 50 ms (about 6 s in all).
const MAX_ATTEMPTS: u32 = 8;

impl StoreError {
    /// Whether the operation may succeed if run again: the database was
    /// unreachable or lost a race, not refused the data.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Postgres(e) => super::postgres::transient(e),
            StoreError::Mssql(e) => super::mssql::transient(e),
            StoreError::Unavailable(_) => true,
            _ => false,
        }
    }

    /// Whether the database refuses writes for now: its disk is full or
    /// failing, or it is read-only (a standby, a database set read-only, a
    /// size quota reached). Not worth another try within the operation, but
    /// a client may succeed later: the API answers 503, not 500.
    pub fn cannot_write(&self) -> bool {
        match self {
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(f, _)) => matches!(
                f.code,
                rusqlite::ErrorCode::DiskFull
                    | rusqlite::ErrorCode::ReadOnly
                    | rusqlite::ErrorCode::SystemIoFailure
            ),
            StoreError::ReadOnly(_) => true,
            StoreError::Postgres(e) => super::postgres::cannot_write(e),
            StoreError::Mssql(e) => super::mssql::cannot_write(e),
            _ => false,
        }
    }
}

/// Exponential backoff between tries of a transaction.
pub(super) struct Backoff {
    attempt: u32,
    delay: Duration,
}

impl Backoff {
    pub(super) fn new() -> Backoff {
        Backoff {
            attempt: 1,
            delay: Duration::from_millis(50),
        }
    }

    /// After a failed try: waits and returns true when another try is due.
    pub(super) async fn again(&mut self, e: &StoreError) -> bool {
        if !e.is_transient() || self.attempt >= MAX_ATTEMPTS {
            return false;
        }
        tracing::warn!(error = %e, attempt = self.attempt, "transient database error; trying again");
        tokio::time::sleep(self.delay).await;
        self.attempt += 1;
        self.delay *= 2;
        true
    }

    /// The error to report once the tries are spent: a transient one means
    /// the database is unavailable.
    pub(super) fn give_up(e: StoreError) -> StoreError {
        if e.is_transient() && !matches!(e, StoreError::Unavailable(_)) {
            StoreError::Unavailable(e.to_string())
        } else {
            e
        }
    }
}

/// Runs `$attempt`, an expression that makes a new future of
/// `Result<_, StoreError>` each time it is evaluated, until it succeeds or
/// fails for good; a transient error that outlasts the tries is reported as
/// [`StoreError::Unavailable`].
macro_rules! retrying {
    ($attempt:expr) => {{
        let mut backoff = $crate::store::retry::Backoff::new();
        loop {
            match $attempt.await {
                Err(e) if backoff.again(&e).await => continue,
                other => break other.map_err($crate::store::retry::Backoff::give_up),
            }
        }
    }};
}
pub(super) use retrying;
