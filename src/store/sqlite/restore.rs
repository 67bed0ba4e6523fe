//! SQLite's side of a restore (see [`crate::store::restore`]): rows go
//! in 64 to a prepared `INSERT`, on the writer thread.

use super::super::restore::{Ids, RestoreTarget, repeated_id};
use super::super::sql::Statement;
use super::super::tx::{ReadRow, Statements};
use super::super::{Dialect, StoreError};
use super::writer::{IdSet, bind_row, bind_row_at, parent_ids};
use crate::dictionary::{Row, Table};
use rusqlite::{CachedStatement, OptionalExtension, Transaction};
use std::rc::Rc;

/// Rows per multi-row `INSERT` of a restore: SQLite then keeps its cursor
/// at the end of the table between rows instead of seeking it again for
/// each.
const ROWS_PER_INSERT: usize = 64;

impl Ids for Rc<IdSet> {
    fn has(&self, id: i32) -> bool {
        self.contains(&id)
    }
}

/// A restore's transaction on the writer connection. The caller turns
/// SQLite's per-row foreign-key check off around it: per deleted row,
/// SQLite would scan the children, which have no index on their
/// foreign-key columns.
pub(super) struct SqliteRestore<'t> {
    tx: Transaction<'t>,
    table: Table,
    /// Written rows are freed on a thread of their own: the writer is the
    /// restore's bottleneck, and millions of strings take a while to free.
    spent: std::sync::mpsc::Sender<Vec<Row>>,
}

impl<'t> SqliteRestore<'t> {
    pub(super) fn new(tx: Transaction<'t>, table: Table) -> Result<Self, StoreError> {
        let (spent, to_free) = std::sync::mpsc::channel::<Vec<Row>>();
        std::thread::Builder::new()
            .name("hrmig-restore-free".into())
            .spawn(move || to_free.into_iter().for_each(drop))
            .map_err(|e| StoreError::Task(e.to_string()))?;
        Ok(SqliteRestore { tx, table, spent })
    }

    /// `INSERT` of `rows` rows of every column.
    fn insert(&self, rows: usize) -> Result<CachedStatement<'_>, StoreError> {
        let d = Dialect::Sqlite;
        let width = self.table.columns().len();
        let tuples: Vec<String> = (0..rows)
            .map(|r| {
                let marks: Vec<String> =
                    (1..=width).map(|c| d.placeholder(r * width + c)).collect();
                format!("({})", marks.join(", "))
            })
            .collect();
        Ok(self.tx.prepare_cached(&format!(
            "INSERT INTO {} ({}) VALUES {}",
            d.quote(self.table.name()),
            d.table_columns(self.table),
            tuples.join(", ")
        ))?)
    }
}

/// Runs a restore's `INSERT`; a repeated id refuses the restore.
fn execute(stmt: &mut CachedStatement<'_>) -> Result<(), StoreError> {
    match stmt.raw_execute() {
        Ok(_) => Ok(()),
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            Err(repeated_id())
        }
        Err(e) => Err(e.into()),
    }
}

impl Statements for SqliteRestore<'_> {
    async fn execute(&mut self, st: &Statement) -> Result<u64, StoreError> {
        super::execute_on(&self.tx, st)
    }

    async fn query<T>(&mut self, st: &Statement, read: ReadRow<T>) -> Result<Vec<T>, StoreError> {
        super::query_on(&self.tx, st, read)
    }
}

impl RestoreTarget for SqliteRestore<'_> {
    type Ids = Rc<IdSet>;

    async fn lock(&mut self) -> Result<(), StoreError> {
        // The transaction is `IMMEDIATE`: it holds the write lock already.
        Ok(())
    }

    async fn parent_ids(&mut self, parent: Table) -> Result<Option<Rc<IdSet>>, StoreError> {
        Ok(parent_ids(&self.tx, parent)?)
    }

    async fn empty(&mut self) -> Result<(), StoreError> {
        let d = Dialect::Sqlite;
        self.tx
            .execute(&format!("DELETE FROM {}", d.quote(self.table.name())), [])?;
        Ok(())
    }

    async fn write(&mut self, rows: Vec<Row>) -> Result<(), StoreError> {
        let width = self.table.columns().len();
        let mut many = self.insert(ROWS_PER_INSERT)?;
        let mut one = self.insert(1)?;
        for group in rows.chunks(ROWS_PER_INSERT) {
            if group.len() == ROWS_PER_INSERT {
                for (r, row) in group.iter().enumerate() {
                    bind_row_at(&mut many, r * width, row)?;
                }
                execute(&mut many)?;
            } else {
                for row in group {
                    bind_row(&mut one, row)?;
                    execute(&mut one)?;
                }
            }
        }
        drop((many, one));
        let _ = self.spent.send(rows);
        Ok(())
    }

    async fn end_writes(&mut self) -> Result<(), StoreError> {
        Ok(())
    }

    fn written_into(&self) -> String {
        Dialect::Sqlite.quote(self.table.name())
    }

    async fn two_ints(&mut self, sql: &str) -> Result<Option<(i64, Option<i64>)>, StoreError> {
        let row = self.tx.query_row(sql, [], |r| Ok((r.get(0)?, r.get(1)?)));
        Ok(row.optional()?)
    }

    async fn commit(self) -> Result<(), StoreError> {
        super::counts::commit(self.tx)
    }
}
