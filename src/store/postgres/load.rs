//! PostgreSQL's writes of rows: API batches with one `INSERT … SELECT
//! FROM unnest(…)` per table, file loads by binary `COPY` under a table
//! lock, every check in memory.

use super::super::admission::{
    BatchKnown, IdBitmap, LoadKnown, Sorted, admit, ints, outcome, rejection_record,
};
use super::super::sql::{self, HistoryEntry};
use super::super::{
    Candidate, Dialect, Feed, FileFeed, FileLoad, FileLoadOutcome, HistoryStatus, StoreError,
    TableBatch, TableOutcome, ddl,
};
use super::{Millis, PooledTx, params, pg_type};
use crate::dictionary::check::MAX_COLUMNS;
use crate::dictionary::{ColumnType, FieldError, Row, Table, Value};
use futures::TryStreamExt;
use std::collections::{HashMap, HashSet};
use tokio_postgres::Transaction;
use tokio_postgres::binary_copy::{BinaryCopyInWriter, BinaryCopyOutStream};
use tokio_postgres::types::{ToSql, Type};

/// Reads every id of `table` (binary COPY: millions take a second).
pub(super) async fn read_ids(tx: &Transaction<'_>, table: Table) -> Result<IdBitmap, StoreError> {
    let out = tx
        .copy_out(&format!(
            "COPY (SELECT \"id\" FROM \"{}\") TO STDOUT (FORMAT binary)",
            table.name()
        ))
        .await?;
    let rows = BinaryCopyOutStream::new(out, &[Type::INT4]);
    futures::pin_mut!(rows);
    let mut ids = IdBitmap::default();
    while let Some(row) = rows.try_next().await? {
        ids.insert(row.try_get(0)?);
    }
    Ok(ids)
}

async fn existing(
    tx: &Transaction<'_>,
    table: Table,
    ids: &[i32],
) -> Result<HashSet<i32>, tokio_postgres::Error> {
    let rows = tx
        .query(
            &format!(
                "SELECT \"id\" FROM \"{}\" WHERE \"id\" = ANY($1::int4[])",
                table.name()
            ),
            &[&ids],
        )
        .await?;
    rows.iter().map(|r| r.try_get(0)).collect()
}

/// Column arrays of `rows`, for `INSERT … SELECT * FROM unnest(…)`.
fn column_arrays<'a>(table: Table, rows: &[&'a Row]) -> Vec<Box<dyn ToSql + Sync + Send + 'a>> {
    table
        .columns()
        .iter()
        .enumerate()
        .map(|(i, col)| -> Box<dyn ToSql + Sync + Send + 'a> {
            match col.ty {
                ColumnType::Integer => Box::new(
                    rows.iter()
                        .map(|r| r.0[i].as_int().unwrap_or_default())
                        .collect::<Vec<i32>>(),
                ),
                ColumnType::String => Box::new(
                    rows.iter()
                        .map(|r| match &r.0[i] {
                            Value::Text(s) => s.as_str(),
                            _ => "",
                        })
                        .collect::<Vec<&str>>(),
                ),
                ColumnType::DateTime => Box::new(
                    rows.iter()
                        .map(|r| match r.0[i] {
                            Value::DateTime(ms) => Millis(ms),
                            _ => Millis(0),
                        })
                        .collect::<Vec<Millis>>(),
                ),
            }
        })
        .collect()
}

fn array_type(ty: ColumnType) -> &'static str {
    match ty {
        ColumnType::Integer => "int4[]",
        ColumnType::String => "text[]",
        ColumnType::DateTime => "timestamptz[]",
    }
}

/// One table of an API batch: the ids it names are looked up in two
/// queries, the rows that pass go in with one `INSERT`, and the rest with
/// one insert into the rejection log.
pub(super) async fn ingest_table(
    tx: &Transaction<'_>,
    source: &str,
    batch: &TableBatch,
) -> Result<TableOutcome, StoreError> {
    let table = batch.table;
    let chunk = &batch.chunk;
    let mut known = BatchKnown {
        taken: existing(tx, table, &ints(chunk, Table::PRIMARY_KEY)).await?,
        parents: HashMap::new(),
    };
    for (i, _, parent) in table.foreign_keys() {
        let found = existing(tx, parent, &ints(chunk, i)).await?;
        known.parents.entry(parent).or_default().extend(found);
    }
    let sorted = Sorted::new(table, chunk, known)?;
    let mut inserted_ids = HashSet::new();
    if !sorted.chosen.is_empty() {
        let rows: Vec<&Row> = sorted.chosen.iter().map(|(_, row)| *row).collect();
        let arrays = column_arrays(table, &rows);
        let casts: Vec<String> = table
            .columns()
            .iter()
            .enumerate()
            .map(|(i, c)| format!("${}::{}", i + 1, array_type(c.ty)))
            .collect();
        let params: Vec<&(dyn ToSql + Sync)> =
            arrays.iter().map(|a| &**a as &(dyn ToSql + Sync)).collect();
        inserted_ids = tx
            .query(
                &format!(
                    "INSERT INTO \"{t}\" ({cols}) SELECT * FROM unnest({casts})
                     ON CONFLICT (\"id\") DO NOTHING RETURNING \"id\"",
                    t = table.name(),
                    cols = Dialect::Postgres.table_columns(table),
                    casts = casts.join(", ")
                ),
                &params,
            )
            .await?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()?;
    }
    let (inserted, rejected) = sorted.settle(&inserted_ids);
    log_rejections(tx, table, source, &chunk.raw, &rejected).await?;
    Ok(outcome(table, chunk, inserted, rejected))
}

/// Writes rejections to the log with one statement, in the given order.
async fn log_rejections(
    tx: &Transaction<'_>,
    table: Table,
    source: &str,
    raw: &[u8],
    rejected: &[(&Candidate, Vec<FieldError>)],
) -> Result<(), StoreError> {
    let mut log = RejectionLog::default();
    for (c, errors) in rejected {
        log.add(table, source, raw, c, errors);
    }
    log.flush(tx, table, source).await
}

/// Rejections waiting to be written, as the columns of one `INSERT`.
#[derive(Default)]
struct RejectionLog {
    positions: Vec<i64>,
    raws: Vec<String>,
    errors: Vec<String>,
}

impl RejectionLog {
    /// Rejections a load keeps before writing them: each write ends a
    /// `COPY`, and a new one costs a few milliseconds.
    const LOAD_BATCH: usize = 4096;

    fn len(&self) -> usize {
        self.positions.len()
    }

    fn add(&mut self, table: Table, source: &str, raw: &[u8], c: &Candidate, errs: &[FieldError]) {
        let logged = rejection_record(Dialect::Postgres, table, source, raw, c, errs);
        self.positions.push(logged.position);
        self.raws.push(logged.raw);
        // JSONB refuses the escape `\u0000` as well.
        self.errors
            .push(logged.errors.replace("\\u0000", "\\ufffd"));
    }

    /// Writes what is waiting, in order, with one statement.
    async fn flush(
        &mut self,
        tx: &Transaction<'_>,
        table: Table,
        source: &str,
    ) -> Result<(), StoreError> {
        if self.positions.is_empty() {
            return Ok(());
        }
        tx.execute(
            &format!(
                "INSERT INTO {} (table_name, source, position, raw, errors, rejected_at)
                 SELECT $1, $2, p, r, e::jsonb, $3
                 FROM unnest($4::int8[], $5::text[], $6::text[]) WITH ORDINALITY AS u(p, r, e, n)
                 ORDER BY n",
                ddl::REJECTIONS
            ),
            &[
                &table.name(),
                &source,
                &Millis(sql::now_ms()),
                &self.positions,
                &self.raws,
                &self.errors,
            ],
        )
        .await?;
        *self = RejectionLog::default();
        Ok(())
    }
}

/// Rows of a load on their way into the table by binary `COPY`.
pub(super) type CopyIn = std::pin::Pin<Box<BinaryCopyInWriter>>;

pub(super) async fn open_copy(tx: &Transaction<'_>, table: Table) -> Result<CopyIn, StoreError> {
    let sink = tx
        .copy_in(&format!(
            "COPY \"{}\" ({}) FROM STDIN (FORMAT binary)",
            table.name(),
            Dialect::Postgres.table_columns(table)
        ))
        .await?;
    let types: Vec<Type> = table.columns().iter().map(|c| pg_type(c.ty)).collect();
    Ok(Box::pin(BinaryCopyInWriter::new(sink, &types)))
}

pub(super) async fn copy_row(copy: &mut CopyIn, row: &Row) -> Result<(), StoreError> {
    let mut values: [&(dyn ToSql + Sync); MAX_COLUMNS] = [&0i32; MAX_COLUMNS];
    let mut stamps = [Millis(0); MAX_COLUMNS];
    for (i, v) in row.0.iter().enumerate() {
        if let Value::DateTime(ms) = v {
            stamps[i] = Millis(*ms);
        }
    }
    for (i, v) in row.0.iter().enumerate() {
        values[i] = match v {
            Value::Int(n) => n,
            Value::Text(s) => s,
            Value::DateTime(_) => &stamps[i],
        };
    }
    copy.as_mut().write(&values[..row.0.len()]).await?;
    Ok(())
}

/// A file load in one transaction. The target table is locked against
/// other writers (readers go on), and the parents are read once (a restore
/// of a parent waits for this transaction), so that the ids read at the
/// start stay true to the end and every check is made in memory; rows then
/// stream straight into the table by binary `COPY`, and rejections are
/// written 4096 at a time between two `COPY`s.
pub(super) async fn load_file_tx(
    tx: PooledTx<'_>,
    load: &FileLoad,
    feed: &mut FileFeed,
) -> Result<FileLoadOutcome, StoreError> {
    let table = load.table;
    let bulk = table.foreign_keys().next().is_some() && load.bytes.is_some_and(|b| b >= BULK_BYTES);
    // A bulk load keeps readers out too (ALTER TABLE needs it), taken at
    // once rather than upgraded later, which could deadlock.
    let mode = if bulk {
        "ACCESS EXCLUSIVE"
    } else {
        "SHARE ROW EXCLUSIVE"
    };
    tx.batch_execute(&format!("LOCK TABLE \"{}\" IN {mode} MODE", table.name()))
        .await?;
    let (set_aside, indexes) = if bulk {
        (
            set_aside_foreign_keys(&tx, table).await?,
            set_aside_indexes(&tx, table).await?,
        )
    } else {
        (Vec::new(), Vec::new())
    };
    let mut known = LoadKnown {
        taken: read_ids(&tx, table).await?,
        parents: HashMap::new(),
    };
    for (_, _, parent) in table.foreign_keys() {
        if let std::collections::hash_map::Entry::Vacant(slot) = known.parents.entry(parent) {
            slot.insert(read_ids(&tx, parent).await?);
        }
    }
    let (mut inserted, mut rejected_total) = (0u64, 0u64);
    let mut copy: Option<CopyIn> = None;
    let mut log = RejectionLog::default();
    loop {
        match feed.recv().await {
            Some(Feed::Rows(chunk)) => {
                let mut rejected = Vec::new();
                for c in &chunk.rows {
                    match admit(table, c, &mut known)? {
                        Ok(row) => {
                            let open = match copy.as_mut() {
                                Some(open) => open,
                                None => copy.insert(open_copy(&tx, table).await?),
                            };
                            copy_row(open, row).await?;
                            inserted += 1;
                        }
                        Err(errors) => rejected.push((c, errors)),
                    }
                }
                rejected_total += rejected.len() as u64;
                if load.max_rejects.is_some_and(|max| rejected_total > max) {
                    return Ok(FileLoadOutcome::Aborted {
                        rejected: rejected_total,
                    });
                }
                for (c, errors) in &rejected {
                    log.add(table, &load.source, &chunk.raw, c, errors);
                }
                if log.len() >= RejectionLog::LOAD_BATCH {
                    if let Some(mut open) = copy.take() {
                        open.as_mut().finish().await?;
                    }
                    log.flush(&tx, table, &load.source).await?;
                }
            }
            Some(Feed::End(summary)) => {
                if let Some(mut open) = copy.take() {
                    open.as_mut().finish().await?;
                }
                log.flush(&tx, table, &load.source).await?;
                // Checked again under the table lock: two loads of the same
                // content racing each other commit once.
                let seen = sql::history_has(Dialect::Postgres, table, &summary.sha256);
                if !load.force
                    && tx
                        .query_opt(seen.sql.as_str(), &params(&seen))
                        .await?
                        .is_some()
                {
                    return Ok(FileLoadOutcome::AlreadyLoaded);
                }
                for create in &indexes {
                    tx.batch_execute(create).await?;
                }
                for (name, definition) in &set_aside {
                    tx.batch_execute(&format!(
                        "ALTER TABLE \"{}\" ADD CONSTRAINT \"{name}\" {definition}",
                        table.name()
                    ))
                    .await?;
                }
                let entry = HistoryEntry {
                    load,
                    summary: &summary,
                    status: HistoryStatus::Loaded,
                    inserted,
                    rejected: rejected_total,
                    message: None,
                };
                let history = sql::insert_history(Dialect::Postgres, &entry);
                tx.execute(history.sql.as_str(), &params(&history)).await?;
                tx.commit().await?;
                return Ok(FileLoadOutcome::Loaded {
                    inserted,
                    rejected: rejected_total,
                });
            }
            None => return Err(StoreError::FeedInterrupted),
        }
    }
}

/// Files from this size on are loaded with the table's foreign keys set
/// aside: PostgreSQL checks a foreign key with a query per inserted row
/// (measured: two of them cost 8 s per million rows, more than the COPY),
/// and validating it again at the end is one join over the table.
const BULK_BYTES: u64 = 2 << 20;

/// Drops the table's foreign keys inside the load's transaction and
/// returns them (name, definition) to be added again before the commit;
/// a rollback brings them back by itself. The rows written meanwhile are
/// checked against the parents in memory, and adding the keys again
/// validates every row once more.
async fn set_aside_foreign_keys(
    tx: &Transaction<'_>,
    table: Table,
) -> Result<Vec<(String, String)>, StoreError> {
    let keys: Vec<(String, String)> = tx
        .query(
            "SELECT conname::text, pg_get_constraintdef(oid) FROM pg_constraint
             WHERE conrelid = to_regclass($1) AND contype = 'f' ORDER BY conname",
            &[&format!("\"{}\"", table.name())],
        )
        .await?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<Result<_, tokio_postgres::Error>>()?;
    for (name, _) in &keys {
        tx.batch_execute(&format!(
            "ALTER TABLE \"{}\" DROP CONSTRAINT \"{name}\"",
            table.name()
        ))
        .await?;
    }
    Ok(keys)
}

/// Drops the table's plain (not unique) indexes inside the load's
/// transaction and returns the statements that create them again: the
/// foreign-key columns hold few distinct values, and inserting a million
/// rows into such an index one by one took longer than the whole COPY
/// otherwise did; building it afterwards is one sort.
async fn set_aside_indexes(tx: &Transaction<'_>, table: Table) -> Result<Vec<String>, StoreError> {
    let indexes: Vec<(String, String)> = tx
        .query(
            "SELECT format('DROP INDEX %I.%I', n.nspname, c.relname), pg_get_indexdef(i.indexrelid)
             FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE i.indrelid = to_regclass($1) AND NOT i.indisunique AND NOT i.indisprimary
             ORDER BY c.relname",
            &[&format!("\"{}\"", table.name())],
        )
        .await?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<Result<_, tokio_postgres::Error>>()?;
    let mut create = Vec::with_capacity(indexes.len());
    for (drop, definition) in indexes {
        tx.batch_execute(&drop).await?;
        create.push(definition);
    }
    Ok(create)
}
