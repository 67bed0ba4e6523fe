//! The statements of one transaction, as the shared code runs them: a
//! backend's connection inside a transaction it opened and will end.

use super::StoreError;
use super::sql::{SqlRow, Statement};

/// Reads one result row.
pub(super) type ReadRow<T> = fn(&dyn SqlRow) -> Result<T, StoreError>;

/// Runs statements in a transaction.
pub(super) trait Statements {
    /// Runs a statement; the rows it changed.
    async fn execute(&mut self, st: &Statement) -> Result<u64, StoreError>;

    /// Runs a query; each row read by `read`.
    async fn query<T>(&mut self, st: &Statement, read: ReadRow<T>) -> Result<Vec<T>, StoreError>;

    /// The first column of the first row, an integer: an id a statement
    /// returns, a count.
    async fn int(&mut self, st: &Statement) -> Result<i64, StoreError> {
        let first = self.query(st, |r| r.int(0)).await?.into_iter().next();
        first.ok_or_else(|| StoreError::Task(format!("no row from {}", st.sql)))
    }

    /// The first two columns of the first row, integers.
    async fn int_pair(&mut self, st: &Statement) -> Result<(i64, i64), StoreError> {
        let first = (self.query(st, |r| Ok((r.int(0)?, r.int(1)?))).await?)
            .into_iter()
            .next();
        first.ok_or_else(|| StoreError::Task(format!("no row from {}", st.sql)))
    }
}
