//! SQL Server's writes of rows: API batches with multi-row inserts that
//! settle races under a range lock, and file loads by bulk copy under a
//! table lock, every check in memory.

use super::super::admission::{
    BatchKnown, IdBitmap, LoadKnown, LoggedRejection, Sorted, admit, ints, outcome,
    rejection_record,
};
use super::super::sql::{self, HistoryEntry};
use super::super::{
    Candidate, Dialect, Feed, FileFeed, FileLoad, FileLoadOutcome, HistoryStatus, Idempotency,
    IngestOutcome, Render, StoreError, TableBatch, TableOutcome,
};
use super::statements::{
    conflict_insert_sql, existing_sql, insert_sql, q, rejection_insert_sql, rows_per_statement,
};
use super::types::{DateTime2, datetime2, int_at, param, rows_of, sql_params, text_at};
use super::{Conn, Done, TRANSIENT};
use crate::dictionary::{FieldError, Row, Table, Value};
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

/// Rejections waiting to be written.
#[derive(Default)]
struct RejectionLog {
    rows: Vec<LoggedRejection>,
}

impl RejectionLog {
    fn add(&mut self, table: Table, source: &str, raw: &[u8], c: &Candidate, errs: &[FieldError]) {
        self.rows.push(rejection_record(
            Dialect::Mssql,
            table,
            source,
            raw,
            c,
            errs,
        ));
    }

    /// Writes what is waiting, in order, in statements under the
    /// parameter limit.
    async fn flush(
        &mut self,
        conn: &mut Conn,
        table: Table,
        source: &str,
    ) -> Result<(), StoreError> {
        let now = chrono::Utc::now().timestamp_millis();
        for group in self.rows.chunks(rows_per_statement(6)) {
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
        self.rows.clear();
        Ok(())
    }
}

pub(super) async fn ingest_tx(
    conn: &mut Conn,
    source: &str,
    tables: &[TableBatch],
    idempotency: Option<&Idempotency>,
    render: &Render,
) -> Result<Done<IngestOutcome>, StoreError> {
    if let Some(idem) = idempotency {
        let claim = sql::idempotency_claim(Dialect::Mssql, &idem.key, &idem.fingerprint);
        if conn
            .execute(claim.sql.as_str(), &sql_params(&claim))
            .await?
            .total()
            == 0
        {
            let seen = sql::idempotency_seen(Dialect::Mssql, &idem.key);
            let rows = conn
                .query(seen.sql.as_str(), &sql_params(&seen))
                .await?
                .into_first_result()
                .await?;
            let row = rows
                .first()
                .ok_or_else(|| StoreError::Task("an idempotency key vanished".into()))?;
            return Ok(Done::Rollback(if text_at(row, 0)? == idem.fingerprint {
                IngestOutcome::Replayed(text_at(row, 1)?)
            } else {
                IngestOutcome::KeyReused
            }));
        }
    }
    let mut outcomes = Vec::with_capacity(tables.len());
    for batch in tables {
        outcomes.push(ingest_table(conn, source, batch).await?);
    }
    let response = render(&outcomes, tables);
    if let Some(idem) = idempotency {
        let respond = sql::idempotency_respond(Dialect::Mssql, &idem.key, &response);
        conn.execute(respond.sql.as_str(), &sql_params(&respond))
            .await?;
    }
    Ok(Done::Commit(IngestOutcome::Applied(response)))
}

async fn ingest_table(
    conn: &mut Conn,
    source: &str,
    batch: &TableBatch,
) -> Result<TableOutcome, StoreError> {
    let table = batch.table;
    let chunk = &batch.chunk;
    let mut known = BatchKnown {
        taken: existing(conn, table, &ints(chunk, Table::PRIMARY_KEY)).await?,
        parents: HashMap::new(),
    };
    for (i, _, parent) in table.foreign_keys() {
        let found = existing(conn, parent, &ints(chunk, i)).await?;
        known.parents.entry(parent).or_default().extend(found);
    }
    let sorted = Sorted::new(table, chunk, known)?;
    let mut inserted_ids = HashSet::new();
    for group in sorted
        .chosen
        .chunks(rows_per_statement(table.columns().len()))
    {
        let params: Vec<Box<dyn ToSql + '_>> = group
            .iter()
            .flat_map(|(_, row)| row.0.iter().map(param))
            .collect();
        for r in rows_of(conn, &conflict_insert_sql(table, group.len()), &params).await? {
            inserted_ids.insert(int_at::<i32>(&r, 0)?);
        }
    }
    let (inserted, rejected) = sorted.settle(&inserted_ids);
    let mut log = RejectionLog::default();
    for (c, errors) in &rejected {
        log.add(table, source, &chunk.raw, c, errors);
    }
    log.flush(conn, table, source).await?;
    Ok(outcome(table, chunk, inserted, rejected))
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

/// A file load in one transaction: the table is locked exclusively for the
/// transaction, its ids and its parents' are read once, every check is made
/// in memory, and rows go in by bulk copy (or, with `bulk=false` in the
/// URL, multi-row `INSERT`s).
pub(super) async fn load_file_tx(
    conn: &mut Conn,
    bulk: bool,
    load: &FileLoad,
    feed: &mut FileFeed,
) -> Result<Done<FileLoadOutcome>, StoreError> {
    let table = load.table;
    conn.simple_query(format!(
        "SELECT TOP 0 [id] FROM {} WITH (TABLOCKX, HOLDLOCK)",
        q(table.name())
    ))
    .await?
    .into_results()
    .await?;
    let mut known = LoadKnown {
        taken: read_ids(conn, table).await?,
        parents: HashMap::new(),
    };
    for (_, _, parent) in table.foreign_keys() {
        if let std::collections::hash_map::Entry::Vacant(slot) = known.parents.entry(parent) {
            slot.insert(read_ids(conn, parent).await?);
        }
    }
    let (mut inserted, mut rejected_total) = (0u64, 0u64);
    let mut log = RejectionLog::default();
    loop {
        match feed.recv().await {
            Some(Feed::Rows(chunk)) => {
                let mut valid: Vec<&Row> = Vec::with_capacity(chunk.rows.len());
                for c in &chunk.rows {
                    match admit(table, c, &mut known)? {
                        Ok(row) => valid.push(row),
                        Err(errors) => {
                            rejected_total += 1;
                            log.add(table, &load.source, &chunk.raw, c, &errors);
                        }
                    }
                }
                if load.max_rejects.is_some_and(|max| rejected_total > max) {
                    return Ok(Done::Rollback(FileLoadOutcome::Aborted {
                        rejected: rejected_total,
                    }));
                }
                if bulk {
                    bulk_rows(conn, table, &valid).await?;
                } else {
                    insert_rows(conn, &q(table.name()), table, &valid).await?;
                }
                inserted += valid.len() as u64;
                log.flush(conn, table, &load.source).await?;
            }
            Some(Feed::End(summary)) => {
                let seen = sql::history_has(Dialect::Mssql, table, &summary.sha256);
                let found = conn
                    .query(seen.sql.as_str(), &sql_params(&seen))
                    .await?
                    .into_first_result()
                    .await?;
                if !load.force && !found.is_empty() {
                    return Ok(Done::Rollback(FileLoadOutcome::AlreadyLoaded));
                }
                let entry = HistoryEntry {
                    load,
                    summary: &summary,
                    status: HistoryStatus::Loaded,
                    inserted,
                    rejected: rejected_total,
                    message: None,
                };
                let history = sql::insert_history(Dialect::Mssql, &entry);
                conn.execute(history.sql.as_str(), &sql_params(&history))
                    .await?;
                return Ok(Done::Commit(FileLoadOutcome::Loaded {
                    inserted,
                    rejected: rejected_total,
                }));
            }
            None => return Err(StoreError::FeedInterrupted),
        }
    }
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
