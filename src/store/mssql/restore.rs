//! SQL Server's side of a restore (see [`crate::store::restore`]), with
//! every foreign key left on. A table nothing references is emptied and
//! filled again. A table that others reference is filled into [`STAGE`]
//! first; the children are checked against it by a query that names the
//! offending rows, and only then is the table made equal to it
//! ([`apply_stage_sql`]).

use super::super::StoreError;
use super::super::admission::IdBitmap;
use super::super::restore::{RestoreTarget, repeated_id};
use super::super::sql::{SqlRow, Statement};
use super::super::tx::{ReadRow, Statements};
use super::Conn;
use super::load::{insert_rows, read_ids};
use super::statements::{STAGE, apply_stage_sql, q, stage_sql};
use super::types::rows_of;
use crate::dictionary::{Row, Table};

/// A restore on a connection whose transaction [`super::in_transaction`]
/// opened; it commits when [`RestoreTarget::commit`] returns.
pub(super) struct MssqlRestore<'c> {
    conn: &'c mut Conn,
    table: Table,
    /// Where the rows go: the table, or [`STAGE`].
    target: String,
}

impl<'c> MssqlRestore<'c> {
    pub(super) fn new(conn: &'c mut Conn, table: Table) -> MssqlRestore<'c> {
        MssqlRestore {
            conn,
            table,
            target: q(table.name()),
        }
    }

    async fn run(&mut self, sql: String) -> Result<(), StoreError> {
        self.conn.simple_query(sql).await?.into_results().await?;
        Ok(())
    }

    fn staged(&self) -> bool {
        self.target == STAGE
    }
}

impl Statements for MssqlRestore<'_> {
    async fn execute(&mut self, st: &Statement) -> Result<u64, StoreError> {
        super::types::execute(self.conn, st).await
    }

    async fn query<T>(&mut self, st: &Statement, read: ReadRow<T>) -> Result<Vec<T>, StoreError> {
        super::load::query_on(self.conn, st, read).await
    }
}

impl RestoreTarget for MssqlRestore<'_> {
    type Ids = IdBitmap;

    async fn lock(&mut self) -> Result<(), StoreError> {
        let sql = format!(
            "SELECT TOP 0 [id] FROM {} WITH (TABLOCKX, HOLDLOCK)",
            q(self.table.name())
        );
        self.run(sql).await
    }

    async fn parent_ids(&mut self, parent: Table) -> Result<Option<IdBitmap>, StoreError> {
        Ok(Some(read_ids(self.conn, parent).await?))
    }

    async fn empty(&mut self) -> Result<(), StoreError> {
        if self.table.children().next().is_none() {
            return self
                .run(format!("DELETE FROM {}", q(self.table.name())))
                .await;
        }
        self.target = STAGE.to_owned();
        self.run(stage_sql(self.table)).await
    }

    async fn write(&mut self, rows: Vec<Row>) -> Result<(), StoreError> {
        let refs: Vec<&Row> = rows.iter().collect();
        match insert_rows(self.conn, &self.target, self.table, &refs).await {
            Err(StoreError::Mssql {
                error: tiberius::error::Error::Server(e),
                ..
            }) if e.code() == 2627 || e.code() == 2601 => Err(repeated_id()),
            other => other,
        }
    }

    async fn end_writes(&mut self) -> Result<(), StoreError> {
        Ok(())
    }

    fn written_into(&self) -> String {
        self.target.clone()
    }

    async fn two_ints(&mut self, sql: &str) -> Result<Option<(i64, Option<i64>)>, StoreError> {
        let rows = rows_of(self.conn, sql, &[]).await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let second = match row.get_column_data(1)? {
            tiberius::ColumnData::I32(None) | tiberius::ColumnData::I64(None) => None,
            _ => Some(row.int(1)?),
        };
        Ok(Some((row.int(0)?, second)))
    }

    async fn commit(self) -> Result<(), StoreError> {
        if !self.staged() {
            return Ok(());
        }
        let table = self.table;
        for sql in apply_stage_sql(table) {
            let applied = async { self.conn.simple_query(sql).await?.into_results().await };
            applied.await.map_err(|e| match e {
                // A child row written after the check by a session that had
                // read the parent before this one locked it.
                tiberius::error::Error::Server(t) if t.code() == 547 => {
                    let children: Vec<&str> = table.children().map(|c| c.name()).collect();
                    StoreError::Refused(format!(
                        "rows of {} that reference {table} were written during the restore; \
                         nothing was changed, run it again",
                        children.join(", ")
                    ))
                }
                other => StoreError::from(other),
            })?;
        }
        self.conn
            .simple_query(format!("DROP TABLE {STAGE}"))
            .await?
            .into_results()
            .await?;
        Ok(())
    }
}
