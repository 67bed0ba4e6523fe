//! Running a transaction again after a transient failure (whether a
//! failure is transient was decided when it became a [`StoreError`]).

use super::StoreError;
use std::time::Duration;

/// Tries of a transaction that keeps failing for a transient reason; the
/// waits between them double from 50 ms (about 6 s in all).
const MAX_ATTEMPTS: u32 = 8;

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
