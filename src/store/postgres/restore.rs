//! PostgreSQL's side of a restore (see [`crate::store::restore`]): rows
//! stream in by binary `COPY`.

use super::super::admission::IdBitmap;
use super::super::reports::Tally;
use super::super::restore::{RestoreTarget, repeated_id};
use super::super::sql::{SqlRow, Statement};
use super::super::tx::{ReadRow, Statements};
use super::super::{Dialect, StoreError};
use super::PooledTx;
use super::load::{CopyIn, add_tally, copy_row, open_copy, read_ids};
use crate::dictionary::{Row, Table};
use tokio_postgres::error::SqlState;

/// A restore's transaction (see [`crate::store::restore`]). Foreign keys
/// are declared `DEFERRABLE`: they are deferred here so that a parent table
/// can be emptied and filled again, and checked by queries that name the
/// offending rows before the commit checks them once more.
pub(super) struct PgRestore<'a> {
    pub(super) tx: PooledTx<'a>,
    pub(super) table: Table,
    pub(super) copy: Option<CopyIn>,
    /// The hires copied, which hrmig counts (see `store::reports`).
    pub(super) tally: Tally,
}

/// After [`RestoreTarget::end_writes`]: the `COPY` is over.
impl Statements for PgRestore<'_> {
    async fn execute(&mut self, st: &Statement) -> Result<u64, StoreError> {
        super::load::execute_in(&self.tx, st).await
    }

    async fn query<T>(&mut self, st: &Statement, read: ReadRow<T>) -> Result<Vec<T>, StoreError> {
        super::load::query_in(&self.tx, st, read).await
    }
}

impl RestoreTarget for PgRestore<'_> {
    type Ids = IdBitmap;

    async fn lock(&mut self) -> Result<(), StoreError> {
        self.tx
            .batch_execute(&format!(
                "SET CONSTRAINTS ALL DEFERRED; LOCK TABLE \"{}\" IN ACCESS EXCLUSIVE MODE",
                self.table.name()
            ))
            .await?;
        Ok(())
    }

    async fn parent_ids(&mut self, parent: Table) -> Result<Option<IdBitmap>, StoreError> {
        Ok(Some(read_ids(&self.tx, parent).await?))
    }

    async fn empty(&mut self) -> Result<(), StoreError> {
        let name = self.table.name();
        let sql = if self.table.children().next().is_some() {
            format!("DELETE FROM \"{name}\"")
        } else {
            // No foreign key points here: TRUNCATE empties the table
            // without writing a dead row per old row.
            format!("TRUNCATE \"{name}\"")
        };
        self.tx.batch_execute(&sql).await?;
        self.copy = Some(open_copy(&self.tx, self.table).await?);
        Ok(())
    }

    async fn write(&mut self, rows: Vec<Row>) -> Result<(), StoreError> {
        let Some(copy) = self.copy.as_mut() else {
            return Err(StoreError::Task("the restore's COPY is not open".into()));
        };
        for row in &rows {
            copy_row(copy, row).await?;
        }
        if self.table == Table::HiredEmployees {
            for row in &rows {
                self.tally.add_row(row, 1);
            }
        }
        Ok(())
    }

    async fn end_writes(&mut self) -> Result<(), StoreError> {
        let Some(mut copy) = self.copy.take() else {
            return Ok(());
        };
        match copy.as_mut().finish().await {
            Ok(_) => add_tally(&self.tx, None, &mut self.tally).await,
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => Err(repeated_id()),
            Err(e) => Err(e.into()),
        }
    }

    fn written_into(&self) -> String {
        Dialect::Postgres.quote(self.table.name())
    }

    async fn two_ints(&mut self, sql: &str) -> Result<Option<(i64, Option<i64>)>, StoreError> {
        let Some(row) = self.tx.query_opt(sql, &[]).await? else {
            return Ok(None);
        };
        Ok(Some((row.int(0)?, opt_int(&row, 1)?)))
    }

    async fn commit(self) -> Result<(), StoreError> {
        Ok(self.tx.commit().await?)
    }
}

/// An integer column that may be NULL.
fn opt_int(row: &tokio_postgres::Row, i: usize) -> Result<Option<i64>, StoreError> {
    let value: Option<i64> = match *row.columns()[i].type_() {
        tokio_postgres::types::Type::INT4 => row.try_get::<_, Option<i32>>(i)?.map(i64::from),
        _ => row.try_get(i)?,
    };
    Ok(value)
}
