//! Why a whole request was refused, and the limit that refuses the
//! largest ones.

use crate::store::StoreError;

/// Most rows one request may carry (all tables together).
pub const MAX_BATCH_ROWS: usize = 1000;

/// Why a whole request was refused. Nothing was inserted or logged.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// No rows.
    #[error("the batch is empty: send 1 to {MAX_BATCH_ROWS} rows")]
    Empty,
    /// Over the limit.
    #[error("{0} rows: a batch holds at most {MAX_BATCH_ROWS}")]
    TooMany(usize),
    /// Not the JSON expected.
    #[error("invalid JSON body: {0}")]
    Json(String),
    /// A CSV body that cannot be read.
    #[error("invalid CSV body: {0}")]
    Csv(String),
    /// The idempotency key was used before with another body.
    #[error("the Idempotency-Key was already used with a different request body")]
    KeyReused,
    /// The database failed; the transaction was rolled back.
    #[error(transparent)]
    Store(#[from] StoreError),
}
