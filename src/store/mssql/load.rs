//! SQL Server's writes of rows (see [`crate::store::batch`] and
//! [`crate::store::load`]): a batch's rows with multi-row inserts that
//! settle races under a range lock, a file's by bulk copy under a table
//! lock.

use super::super::StoreError;
use super::super::admission::{IdBitmap, LoggedRejection};
use super::super::batch::{BatchTarget, Logged, Lookup};
use super::super::load::LoadTarget;
use super::super::sql::{SqlRow, Statement};
use super::super::tx::{ReadRow, Statements};
use super::statements::{
    conflict_insert_sql, existing_sql, insert_sql, q, rejection_insert_sql, rows_per_statement,
    update_sql,
};
use super::types::{DateTime2, datetime2, execute, int_at, param, query, rows_of};
use super::{Conn, TRANSIENT};
use crate::dictionary::{Row, Table, Value};
use futures::TryStreamExt;
use std::collections::{HashMap, HashSet};
use tiberius::{ColumnData, ToSql};

/// Ids of `table` among `ids`.
async fn existing(conn: &mut Conn, table: Table, ids: &[i32]) -> Result<HashSet<i32>, StoreError> {
    if ids.is_empty() {
        return Ok(HashSet::new());
    }
    let json = serde_json::to_string(ids).unwrap_or_else(|_| "[]".into());
    let params: Vec<Box<dyn ToSql>> = vec![Box::new(json)];
    rows_of(conn, &existing_sql(table), &params)
        .await?
        .iter()
        .map(|r| int_at(r, 0))
        .collect()
}

/// Every id of `table`.
pub(super) async fn read_ids(conn: &mut Conn, table: Table) -> Result<IdBitmap, StoreError> {
    let mut stream = conn
        .simple_query(format!("SELECT [id] FROM {}", q(table.name())))
        .await?
        .into_row_stream();
    let mut ids = IdBitmap::default();
    while let Some(row) = stream.try_next().await? {
        ids.insert(int_at(&row, 0)?);
    }
    Ok(ids)
}

/// Writes rejections to the log, in order, in statements under the
/// parameter limit.
async fn log_rejections(
    conn: &mut Conn,
    table: Table,
    source: &str,
    rejected: &[LoggedRejection],
) -> Result<(), StoreError> {
    let now = chrono::Utc::now().timestamp_millis();
    for group in rejected.chunks(rows_per_statement(6)) {
        let mut params: Vec<Box<dyn ToSql>> = Vec::with_capacity(group.len() * 6);
        for logged in group {
            params.push(Box::new(table.name()));
            params.push(Box::new(source));
            params.push(Box::new(logged.position));
            params.push(Box::new(logged.raw.as_str()));
            params.push(Box::new(logged.errors.as_str()));
            params.push(Box::new(DateTime2(now)));
        }
        rows_of(conn, &rejection_insert_sql(group.len()), &params).await?;
    }
    Ok(())
}

/// The statements of a batch's transaction.
pub(super) struct MssqlBatch<'c>(pub(super) &'c mut Conn);

/// Runs a query on `conn`, each row read by `read`.
pub(super) async fn query_on<T>(
    conn: &mut Conn,
    st: &Statement,
    read: ReadRow<T>,
) -> Result<Vec<T>, StoreError> {
    let rows = query(conn, st).await?;
    rows.iter().map(|r| read(r as &dyn SqlRow)).collect()
}

impl Statements for MssqlBatch<'_> {
    async fn execute(&mut self, st: &Statement) -> Result<u64, StoreError> {
        execute(self.0, st).await
    }

    async fn query<T>(&mut self, st: &Statement, read: ReadRow<T>) -> Result<Vec<T>, StoreError> {
        query_on(self.0, st, read).await
    }
}

impl BatchTarget for MssqlBatch<'_> {
    async fn existing(&mut self, lookups: &[Lookup<'_>]) -> Result<Vec<HashSet<i32>>, StoreError> {
        let mut found = Vec::with_capacity(lookups.len());
        for lookup in lookups {
            found.push(existing(self.0, lookup.table, lookup.ids).await?);
        }
        Ok(found)
    }

    async fn insert(&mut self, table: Table, rows: &[&Row]) -> Result<HashSet<i32>, StoreError> {
        let mut inserted_ids = HashSet::new();
        for group in rows.chunks(rows_per_statement(table.columns().len())) {
            let params: Vec<Box<dyn ToSql + '_>> = group
                .iter()
                .flat_map(|row| row.0.iter().map(param))
                .collect();
            for r in rows_of(self.0, &conflict_insert_sql(table, group.len()), &params).await? {
                inserted_ids.insert(int_at::<i32>(&r, 0)?);
            }
        }
        Ok(inserted_ids)
    }

    async fn upsert(
        &mut self,
        table: Table,
        rows: &[&Row],
    ) -> Result<HashMap<i32, bool>, StoreError> {
        // The stored rows of taken ids first, then the rest inserted; an id
        // another writer inserted in between is neither (a duplicate).
        let mut written = HashMap::with_capacity(rows.len());
        for id in update_rows(self.0, table, rows).await? {
            written.insert(id, false);
        }
        let fresh: Vec<&Row> = (rows.iter().copied())
            .filter(|r| !written.contains_key(&r.id()))
            .collect();
        for id in self.insert(table, &fresh).await? {
            written.insert(id, true);
        }
        Ok(written)
    }

    async fn log(&mut self, rejected: Logged<'_>) -> Result<(), StoreError> {
        log_rejections(self.0, rejected.table, rejected.source, &rejected.rows).await
    }
}

/// Replaces the stored rows of the ids among `rows`; the ids replaced.
async fn update_rows(conn: &mut Conn, table: Table, rows: &[&Row]) -> Result<Vec<i32>, StoreError> {
    let mut updated = Vec::new();
    for group in rows.chunks(rows_per_statement(table.columns().len())) {
        let params: Vec<Box<dyn ToSql + '_>> = group
            .iter()
            .flat_map(|row| row.0.iter().map(param))
            .collect();
        for r in rows_of(conn, &update_sql(table, group.len()), &params).await? {
            updated.push(int_at::<i32>(&r, 0)?);
        }
    }
    Ok(updated)
}

/// A file load's transaction: the table is locked exclusively, and rows go
/// in by bulk copy (or, with `bulk=false` in the URL, multi-row
/// `INSERT`s).
pub(super) struct MssqlLoad<'c> {
    pub(super) conn: &'c mut Conn,
    pub(super) table: Table,
    pub(super) source: String,
    pub(super) bulk: bool,
}

impl LoadTarget for MssqlLoad<'_> {
    async fn lock(&mut self) -> Result<(), StoreError> {
        let sql = format!(
            "SELECT TOP 0 [id] FROM {} WITH (TABLOCKX, HOLDLOCK)",
            q(self.table.name())
        );
        self.conn.simple_query(sql).await?.into_results().await?;
        Ok(())
    }

    async fn ids(&mut self, table: Table) -> Result<IdBitmap, StoreError> {
        read_ids(self.conn, table).await
    }

    async fn write(&mut self, rows: &[&Row]) -> Result<(), StoreError> {
        if self.bulk {
            bulk_rows(self.conn, self.table, rows).await
        } else {
            insert_rows(self.conn, &q(self.table.name()), self.table, rows).await
        }
    }

    async fn update(&mut self, rows: &[&Row]) -> Result<(), StoreError> {
        // The table is locked: every id is there, and the ids are distinct.
        update_rows(self.conn, self.table, rows).await.map(drop)
    }

    async fn log(&mut self, rejected: Vec<LoggedRejection>) -> Result<(), StoreError> {
        log_rejections(self.conn, self.table, &self.source, &rejected).await
    }

    async fn end_writes(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
}

impl Statements for MssqlLoad<'_> {
    async fn execute(&mut self, st: &Statement) -> Result<u64, StoreError> {
        execute(self.conn, st).await
    }

    async fn query<T>(&mut self, st: &Statement, read: ReadRow<T>) -> Result<Vec<T>, StoreError> {
        query_on(self.conn, st, read).await
    }
}

/// Inserts rows of `table` into `target` with plain multi-row statements
/// (the table is locked).
pub(super) async fn insert_rows(
    conn: &mut Conn,
    target: &str,
    table: Table,
    rows: &[&Row],
) -> Result<(), StoreError> {
    for group in rows.chunks(rows_per_statement(table.columns().len())) {
        let params: Vec<Box<dyn ToSql + '_>> = group
            .iter()
            .flat_map(|row| row.0.iter().map(param))
            .collect();
        rows_of(conn, &insert_sql(target, table, group.len()), &params).await?;
    }
    Ok(())
}

/// Sends rows with the bulk-copy protocol (`INSERT BULK`), the fastest way
/// in; `CHECK_CONSTRAINTS` keeps the foreign keys trusted (without it SQL
/// Server marks them unchecked after a bulk copy).
///
/// A failure of the protocol itself is [`StoreError::BulkCopyFailed`]:
/// some TDS servers break off a stream SQL Server takes (Babelfish 4.3 did
/// on a 200 000-row load that loads with `INSERT`s), and the load then runs
/// again without bulk copy. A constraint the server enforces, or a lost
/// connection, stays what it is.
async fn bulk_rows(conn: &mut Conn, table: Table, rows: &[&Row]) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    send_bulk(conn, table, rows).await.map_err(|e| {
        if bulk_protocol_failure(&e) {
            StoreError::BulkCopyFailed(e)
        } else {
            StoreError::from(e)
        }
    })
}

/// Whether a bulk copy failed in the protocol rather than on the data or
/// the connection: constraint violations (547, 2627, 2601), transient
/// errors and I/O are not protocol failures.
pub(super) fn bulk_protocol_failure(e: &tiberius::error::Error) -> bool {
    match e {
        tiberius::error::Error::Server(t) => protocol_error_code(t.code()),
        tiberius::error::Error::Protocol(_) | tiberius::error::Error::BulkInput(_) => true,
        _ => false,
    }
}

/// Whether a server error number is neither a constraint violation nor
/// transient.
fn protocol_error_code(code: u32) -> bool {
    ![547, 2627, 2601].contains(&code) && !TRANSIENT.contains(&code)
}

async fn send_bulk(conn: &mut Conn, table: Table, rows: &[&Row]) -> tiberius::Result<()> {
    let columns: Vec<&str> = table.columns().iter().map(|c| c.name).collect();
    let mut request = conn
        .bulk_insert_with_options(
            table.name(),
            &columns,
            tiberius::SqlBulkCopyOption::CheckConstraints | tiberius::SqlBulkCopyOption::TableLock,
            &[],
        )
        .await?;
    for row in rows {
        let mut token = tiberius::TokenRow::new();
        for v in &row.0 {
            token.push(match v {
                Value::Int(n) => ColumnData::I32(Some(*n)),
                Value::Text(s) => ColumnData::String(Some(s.as_str().into())),
                Value::DateTime(ms) => datetime2(*ms),
            });
        }
        request.send(token).await?;
    }
    request.finalize().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_protocol_failures_of_a_bulk_copy_switch_it_off() {
        use tiberius::error::Error;
        assert!(bulk_protocol_failure(&Error::Protocol(
            "unexpected token".into()
        )));
        assert!(bulk_protocol_failure(&Error::BulkInput("bad row".into())));
        assert!(!bulk_protocol_failure(&Error::Io {
            kind: std::io::ErrorKind::ConnectionReset,
            message: "reset".into()
        }));
        // 4002: the TDS stream is incorrect; 4804: premature end of message.
        assert!(protocol_error_code(4002) && protocol_error_code(4804));
        for code in [547, 2627, 2601, 1205, 40613] {
            assert!(!protocol_error_code(code), "{code}");
        }
    }
}
