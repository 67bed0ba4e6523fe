//! PostgreSQL's writes of rows (see [`crate::store::batch`] and
//! [`crate::store::load`]): a batch's rows with one `INSERT … SELECT FROM
//! unnest(…)` per table, a file's by binary `COPY` under a table lock.

use super::super::admission::{IdBitmap, LoggedRejection};
use super::super::batch::{BatchTarget, Logged, Lookup};
use super::super::load::LoadTarget;
use super::super::reports::{self, Tally};
use super::super::sql::{self, Statement};
use super::super::tx::{ReadRow, Statements};
use super::super::{Dialect, FileLoad, StoreError, ddl};
use super::{KeyChecks, Millis, PooledTx, params, pg_type};
use crate::dictionary::check::MAX_COLUMNS;
use crate::dictionary::{ColumnType, Row, Table, Value};
use futures::TryStreamExt;
use std::collections::{HashMap, HashSet};
use tokio_postgres::Transaction;
use tokio_postgres::binary_copy::{BinaryCopyInWriter, BinaryCopyOutStream};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};

/// Reads every id of `table` (binary COPY: millions take a second).
pub(super) async fn read_ids(tx: &Transaction<'_>, table: Table) -> Result<IdBitmap, StoreError> {
    copy_ids(tx, table, "").await
}

/// Reads every id of a parent, each row locked `FOR KEY SHARE` until the
/// commit, as PostgreSQL's own foreign-key check locks the one it finds:
/// no session deletes a parent (or changes its id) that the rows rely on.
async fn lock_parent_ids(tx: &Transaction<'_>, table: Table) -> Result<IdBitmap, StoreError> {
    copy_ids(tx, table, " FOR KEY SHARE").await
}

async fn copy_ids(tx: &Transaction<'_>, table: Table, lock: &str) -> Result<IdBitmap, StoreError> {
    let out = tx
        .copy_out(&format!(
            "COPY (SELECT \"id\" FROM \"{}\"{lock}) TO STDOUT (FORMAT binary)",
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

/// Column arrays of `rows`, for `INSERT … SELECT * FROM unnest(…)`.
pub(super) fn column_arrays<'a>(
    table: Table,
    rows: &[&'a Row],
) -> Vec<Box<dyn ToSql + Sync + Send + 'a>> {
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

/// The unnest of `table`'s column arrays, `$1…$n` cast to their types,
/// then of arrays of the `extra` types.
pub(super) fn unnest(table: Table, extra: &[&str]) -> String {
    let mut casts: Vec<String> = (table.columns().iter().enumerate())
        .map(|(i, c)| format!("${}::{}", i + 1, array_type(c.ty)))
        .collect();
    let n = casts.len();
    casts.extend((extra.iter().enumerate()).map(|(i, ty)| format!("${}::{ty}", n + i + 1)));
    format!("unnest({})", casts.join(", "))
}

fn array_type(ty: ColumnType) -> &'static str {
    match ty {
        ColumnType::Integer => "int4[]",
        ColumnType::String => "text[]",
        ColumnType::DateTime => "timestamptz[]",
    }
}

/// The statements of a batch's transaction.
pub(super) struct PgBatch<'a, 't> {
    tx: &'a PooledTx<'t>,
    keys: KeyChecks,
}

impl<'a, 't> PgBatch<'a, 't> {
    pub(super) fn new(tx: &'a PooledTx<'t>, keys: KeyChecks) -> Self {
        PgBatch { tx, keys }
    }

    /// `st`, prepared once per connection (see [`CACHED_PARAMS`]).
    async fn prepared(&self, st: &Statement) -> Result<tokio_postgres::Statement, StoreError> {
        Ok(self.tx.prepare_cached(&st.sql).await?)
    }

    /// Copies `rows` (ids distinct, none in the table at the lookup)
    /// straight into the table, inside a savepoint: a `COPY` writes a batch
    /// in about two thirds of the time of an `INSERT … ON CONFLICT`. An id that
    /// another session inserted since the lookup fails the `COPY` (a
    /// unique violation): the savepoint is rolled back and `None` says so,
    /// for the caller to insert with `ON CONFLICT`, which settles the race
    /// row by row.
    ///
    /// The savepoint and the start of the `COPY` (and, when `skip`, the
    /// statement that skips the foreign-key triggers, [`SKIP_TRIGGERS`])
    /// are sent together, in one round trip. The savepoint is left open
    /// once the rows are in: what follows commits with it, and a release
    /// would cost a round trip more.
    async fn copy_fresh(
        &self,
        table: Table,
        rows: &[&Row],
        skip: bool,
    ) -> Result<Option<HashSet<i32>>, StoreError> {
        let tx = self.tx;
        let copy = tx.prepare_cached(&copy_sql(table)).await?;
        // Prepared before the rest is sent, which goes in this order.
        let skipping = match skip {
            true => Some((
                tx.prepare_cached(SKIP_TRIGGERS).await?,
                format!("\"{}\"", table.name()),
            )),
            false => None,
        };
        let copied = async {
            let skipped = async {
                match &skipping {
                    Some((st, name)) => tx.query(st, &[name]).await.map(drop),
                    None => Ok(()),
                }
            };
            let (_, _, sink) = futures::try_join!(
                skipped,
                tx.batch_execute("SAVEPOINT hrmig_batch"),
                tx.copy_in(&copy)
            )?;
            let mut writer = copy_writer(sink, table);
            for row in rows {
                copy_row(&mut writer, row).await?;
            }
            writer.as_mut().finish().await?;
            Ok::<_, StoreError>(())
        };
        match copied.await {
            Ok(()) => Ok(Some(rows.iter().map(|r| r.id()).collect())),
            Err(StoreError::Postgres { error, .. })
                if error.code() == Some(&SqlState::UNIQUE_VIOLATION) =>
            {
                tx.batch_execute("ROLLBACK TO SAVEPOINT hrmig_batch")
                    .await?;
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Inserts `rows`, by `COPY` or, when an id was taken meanwhile, with
    /// `ON CONFLICT`: the ids inserted. With `skip`, without the
    /// foreign-key triggers (see [`KeyChecks::skip_triggers`]).
    async fn insert_rows(
        &self,
        table: Table,
        rows: &[&Row],
        skip: bool,
    ) -> Result<HashSet<i32>, StoreError> {
        if let Some(ids) = self.copy_fresh(table, rows, skip).await? {
            return Ok(ids);
        }
        let arrays = column_arrays(table, rows);
        let params: Vec<&(dyn ToSql + Sync)> =
            arrays.iter().map(|a| &**a as &(dyn ToSql + Sync)).collect();
        let insert = format!(
            "INSERT INTO \"{t}\" ({cols}) SELECT * FROM {from}
             ON CONFLICT (\"id\") DO NOTHING RETURNING \"id\"",
            t = table.name(),
            cols = Dialect::Postgres.table_columns(table),
            from = unnest(table, &[])
        );
        let inserted = self.tx.query(&insert, &params).await?;
        Ok((inserted.iter())
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()?)
    }
}

/// Whether the table (`$1`) has a trigger or a rule of its own, which
/// `session_replication_role = replica` would skip along with the
/// foreign-key triggers. hrmig's hire counting is not one: under `replica`
/// hrmig only inserts, and counts what it inserts ([`count_inserted`]).
macro_rules! own_triggers {
    () => {
        "EXISTS (SELECT 1 FROM pg_trigger
                 WHERE tgrelid = $1::text::regclass AND NOT tgisinternal
                   AND tgenabled IN ('O', 'R') AND tgname NOT LIKE 'hrmig\\_count\\_%')
         OR EXISTS (SELECT 1 FROM pg_rewrite
                    WHERE ev_class = $1::text::regclass AND rulename <> '_RETURN')"
    };
}

/// Sets `session_replication_role` to `replica` for the transaction, which
/// skips the table's foreign-key triggers, unless the table has a trigger
/// or a rule of its own.
const SKIP_TRIGGERS: &str = concat!(
    "SELECT set_config('session_replication_role', 'replica', true) WHERE NOT (",
    own_triggers!(),
    ")"
);

/// See [`own_triggers`].
const HAS_OWN_TRIGGERS: &str = concat!("SELECT ", own_triggers!());

/// Turns the foreign-key triggers off ([`KeyChecks::Locks`]) until
/// [`TRIGGERS_ON`] or the end of the transaction.
pub(super) const TRIGGERS_OFF: &str = "SET LOCAL session_replication_role = replica";
/// And on again.
const TRIGGERS_ON: &str = "SET LOCAL session_replication_role TO DEFAULT";

/// Appends to the hire-count changes the tally of the hires hrmig
/// inserted, which the triggers leave to it (see `store::reports`). A
/// batch's connection prepares the statement once (`cached`).
pub(super) async fn count_inserted<'r>(
    tx: &Transaction<'_>,
    cached: Option<&PooledTx<'_>>,
    table: Table,
    rows: impl IntoIterator<Item = &'r &'r Row>,
) -> Result<(), StoreError> {
    let mut tally = Tally::default();
    if table == Table::HiredEmployees {
        rows.into_iter().for_each(|row| tally.add_row(row, 1));
    }
    add_tally(tx, cached, &mut tally).await
}

/// Appends a tally to the hire-count changes.
pub(super) async fn add_tally(
    tx: &Transaction<'_>,
    cached: Option<&PooledTx<'_>>,
    tally: &mut Tally,
) -> Result<(), StoreError> {
    let changed = tally.take()?;
    if changed.is_empty() {
        return Ok(());
    }
    let ([years, departments, jobs], [q1, q2, q3, q4]) = reports::pg_columns(&changed);
    let add = match cached {
        Some(pooled) => pooled.prepare_cached(&reports::pg_add()).await?,
        None => tx.prepare(&reports::pg_add()).await?,
    };
    tx.execute(&add, &[&years, &departments, &jobs, &q1, &q2, &q3, &q4])
        .await?;
    Ok(())
}

/// Runs a statement in `tx`; the rows it changed.
pub(super) async fn execute_in(tx: &Transaction<'_>, st: &Statement) -> Result<u64, StoreError> {
    Ok(tx.execute(st.sql.as_str(), &params(st)).await?)
}

/// Runs a query in `tx`, each row read by `read`.
pub(super) async fn query_in<T>(
    tx: &Transaction<'_>,
    st: &Statement,
    read: ReadRow<T>,
) -> Result<Vec<T>, StoreError> {
    let rows = tx.query(st.sql.as_str(), &params(st)).await?;
    rows.iter().map(|r| read(r)).collect()
}

/// Statements of a batch with this many parameters or fewer are prepared
/// once per connection: the history entry, the lineage (its runs as
/// arrays), the idempotency key. Longer ones vary in shape with their
/// input, and each would stay prepared on the server.
const CACHED_PARAMS: usize = 16;

impl Statements for PgBatch<'_, '_> {
    async fn execute(&mut self, st: &Statement) -> Result<u64, StoreError> {
        if st.params.len() > CACHED_PARAMS {
            return execute_in(self.tx, st).await;
        }
        Ok(self
            .tx
            .execute(&self.prepared(st).await?, &params(st))
            .await?)
    }

    async fn query<T>(&mut self, st: &Statement, read: ReadRow<T>) -> Result<Vec<T>, StoreError> {
        if st.params.len() > CACHED_PARAMS {
            return query_in(self.tx, st, read).await;
        }
        let rows = self
            .tx
            .query(&self.prepared(st).await?, &params(st))
            .await?;
        rows.iter().map(|r| read(r)).collect()
    }
}

impl BatchTarget for PgBatch<'_, '_> {
    /// Every lookup in one round trip, each a statement prepared once per
    /// connection; a parent's rows found are locked `FOR KEY SHARE`.
    async fn existing(&mut self, lookups: &[Lookup<'_>]) -> Result<Vec<HashSet<i32>>, StoreError> {
        let tx = self.tx;
        let sql = |l: &Lookup<'_>| {
            let lock = if l.parent { " FOR KEY SHARE" } else { "" };
            format!(
                "SELECT \"id\" FROM \"{}\" WHERE \"id\" = ANY($1::int4[]){lock}",
                l.table.name()
            )
        };
        let statements = futures::future::try_join_all(
            (lookups.iter()).map(|l| async move { tx.prepare_cached(&sql(l)).await }),
        )
        .await?;
        let params: Vec<[&(dyn ToSql + Sync); 1]> = lookups.iter().map(|l| [&l.ids as _]).collect();
        let found = futures::future::try_join_all(
            (statements.iter().zip(&params)).map(|(st, p)| tx.query(st, p)),
        )
        .await?;
        let ids = |rows: &Vec<tokio_postgres::Row>| -> Result<HashSet<i32>, StoreError> {
            Ok(rows
                .iter()
                .map(|r| r.try_get(0))
                .collect::<Result<_, _>>()?)
        };
        found.iter().map(ids).collect()
    }

    /// The hires it inserted are counted (see `store::reports`); the
    /// foreign-key triggers, when they were skipped, are turned on again
    /// in the same round trip.
    async fn insert(&mut self, table: Table, rows: &[&Row]) -> Result<HashSet<i32>, StoreError> {
        let skipped = self.keys.skip_triggers(table);
        let inserted = self.insert_rows(table, rows, skipped).await?;
        let counted = rows.iter().filter(|r| inserted.contains(&r.id()));
        let count = count_inserted(self.tx, Some(self.tx), table, counted);
        if skipped {
            let on = async { Ok(self.tx.batch_execute(TRIGGERS_ON).await?) };
            futures::try_join!(on, count)?;
        } else {
            count.await?;
        }
        Ok(inserted)
    }

    async fn upsert(
        &mut self,
        table: Table,
        rows: &[&Row],
    ) -> Result<HashMap<i32, bool>, StoreError> {
        let written = super::upsert::upsert(self.tx, table, rows).await?;
        // The rows it inserted; those it updated the triggers count.
        let counted = rows.iter().filter(|r| written.get(&r.id()) == Some(&true));
        count_inserted(self.tx, Some(self.tx), table, counted).await?;
        Ok(written)
    }

    async fn log(&mut self, rejected: Logged<'_>) -> Result<(), StoreError> {
        let mut log = RejectionLog::default();
        log.add(rejected.rows);
        log.flush(self.tx, rejected.table, rejected.source).await
    }
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

    fn add(&mut self, rejected: Vec<LoggedRejection>) {
        for logged in rejected {
            self.positions.push(logged.position);
            self.raws.push(logged.raw);
            // JSONB refuses the escape `\u0000` as well.
            self.errors
                .push(logged.errors.replace("\\u0000", "\\ufffd"));
        }
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

/// The binary `COPY` of every column of `table`.
fn copy_sql(table: Table) -> String {
    format!(
        "COPY \"{}\" ({}) FROM STDIN (FORMAT binary)",
        table.name(),
        Dialect::Postgres.table_columns(table)
    )
}

/// The writer of `table`'s rows into a `COPY` the server has opened.
fn copy_writer(sink: tokio_postgres::CopyInSink<bytes::Bytes>, table: Table) -> CopyIn {
    let types: Vec<Type> = table.columns().iter().map(|c| pg_type(c.ty)).collect();
    Box::pin(BinaryCopyInWriter::new(sink, &types))
}

pub(super) async fn open_copy(tx: &Transaction<'_>, table: Table) -> Result<CopyIn, StoreError> {
    Ok(copy_writer(tx.copy_in(&copy_sql(table)).await?, table))
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

/// A file load's transaction. The table is locked against other writers
/// (readers go on), and a restore of a parent waits for it; rows stream
/// straight into the table by binary `COPY`, and rejections are written
/// 4096 at a time between two `COPY`s.
///
/// With [`KeyChecks::Locks`] the parents' rows are locked as their ids are
/// read, and the `COPY`s skip PostgreSQL's foreign-key triggers: the keys
/// stay declared, and a big file is not checked a second time by adding
/// them again.
pub(super) struct PgLoad<'a, 't> {
    tx: &'a Transaction<'t>,
    table: Table,
    source: String,
    keys: KeyChecks,
    /// The parents' rows are locked, the foreign-key triggers skipped.
    locked_parents: bool,
    /// The size of a big file (see [`BULK_BYTES`]), whose table's keys and
    /// indexes may be set aside, then added again before the commit.
    big: Option<u64>,
    constraints: Vec<(String, String)>,
    /// Taken ids are updates: their rows are found by the primary key,
    /// which stays.
    updates_rows: bool,
    indexes: Vec<String>,
    copy: Option<CopyIn>,
    log: RejectionLog,
    updates: super::upsert::UpdateStage,
    /// The hires copied, which hrmig counts (see `store::reports`).
    tally: Tally,
}

impl<'a, 't> PgLoad<'a, 't> {
    pub(super) fn new(tx: &'a Transaction<'t>, load: &FileLoad, keys: KeyChecks) -> PgLoad<'a, 't> {
        let table = load.table;
        PgLoad {
            tx,
            table,
            source: load.source.clone(),
            // A dry run writes nothing: no triggers to skip, and no parent
            // held off from a delete while it reads.
            keys: match load.dry_run {
                Some(_) => KeyChecks::Triggers,
                None => keys,
            },
            locked_parents: false,
            // A dry run writes nothing: no keys to set aside, and readers
            // are not kept out.
            big: (load.bytes)
                .filter(|&b| b >= BULK_BYTES)
                .filter(|_| table.foreign_keys().next().is_some() && load.dry_run.is_none()),
            constraints: Vec::new(),
            updates_rows: load.on_duplicate.updates(),
            indexes: Vec::new(),
            copy: None,
            log: RejectionLog::default(),
            updates: Default::default(),
            tally: Tally::default(),
        }
    }

    async fn end_copy(&mut self) -> Result<(), StoreError> {
        if let Some(mut open) = self.copy.take() {
            open.as_mut().finish().await?;
            if self.locked_parents {
                self.tx.batch_execute(TRIGGERS_ON).await?;
            }
        }
        Ok(())
    }

    /// Adds again what a bulk load set aside; before the commit.
    pub(super) async fn restore_keys(&mut self) -> Result<(), StoreError> {
        for create in &self.indexes {
            self.tx.batch_execute(create).await?;
        }
        for (name, definition) in &self.constraints {
            self.tx
                .batch_execute(&format!(
                    "ALTER TABLE \"{}\" ADD CONSTRAINT \"{name}\" {definition}",
                    self.table.name()
                ))
                .await?;
        }
        Ok(())
    }
}

impl LoadTarget for PgLoad<'_, '_> {
    async fn lock(&mut self) -> Result<(), StoreError> {
        let name = self.table.name();
        let quoted = format!("\"{name}\"");
        if self.keys.skip_triggers(self.table) {
            let own = self.tx.query_one(HAS_OWN_TRIGGERS, &[&quoted]).await?;
            self.locked_parents = !own.try_get::<_, bool>(0)?;
        }
        let (indexes, foreign_keys) = match self.big {
            Some(file) => {
                // Read before the lock: an estimate is enough.
                let size = "SELECT pg_relation_size(to_regclass($1))";
                let size = self.tx.query_one(size, &[&quoted]).await?;
                let size = u64::try_from(size.try_get::<_, i64>(0)?).unwrap_or(0);
                (
                    size <= REBUILD_RATIO.saturating_mul(file),
                    !self.locked_parents && size <= REVALIDATE_RATIO.saturating_mul(file),
                )
            }
            None => (false, false),
        };
        // Setting keys aside keeps readers out too (ALTER TABLE needs it),
        // taken at once rather than upgraded later, which could deadlock.
        let mode = match indexes || foreign_keys {
            true => "ACCESS EXCLUSIVE",
            false => "SHARE ROW EXCLUSIVE",
        };
        self.tx
            .batch_execute(&format!("LOCK TABLE {quoted} IN {mode} MODE"))
            .await?;
        let primary_key = indexes && !self.updates_rows;
        if foreign_keys || primary_key {
            self.constraints =
                set_aside_constraints(self.tx, self.table, foreign_keys, primary_key).await?;
        }
        if indexes {
            self.indexes = set_aside_indexes(self.tx, self.table).await?;
        }
        Ok(())
    }

    async fn ids(&mut self, table: Table) -> Result<IdBitmap, StoreError> {
        match self.locked_parents && table != self.table {
            true => lock_parent_ids(self.tx, table).await,
            false => read_ids(self.tx, table).await,
        }
    }

    async fn write(&mut self, rows: &[&Row]) -> Result<(), StoreError> {
        for row in rows {
            let open = match self.copy.as_mut() {
                Some(open) => open,
                None => {
                    if self.locked_parents {
                        self.tx.batch_execute(TRIGGERS_OFF).await?;
                    }
                    self.copy.insert(open_copy(self.tx, self.table).await?)
                }
            };
            copy_row(open, row).await?;
        }
        if self.table == Table::HiredEmployees {
            for row in rows {
                self.tally.add_row(row, 1);
            }
        }
        Ok(())
    }

    async fn log(&mut self, rejected: Vec<LoggedRejection>) -> Result<(), StoreError> {
        self.log.add(rejected);
        if self.log.len() >= RejectionLog::LOAD_BATCH {
            self.end_copy().await?;
            self.log.flush(self.tx, self.table, &self.source).await?;
        }
        Ok(())
    }

    async fn update(&mut self, rows: &[&Row]) -> Result<(), StoreError> {
        if self.updates.add(rows) {
            self.end_copy().await?;
            self.updates.flush(self.tx, self.table).await?;
        }
        Ok(())
    }

    async fn end_writes(&mut self) -> Result<(), StoreError> {
        self.end_copy().await?;
        add_tally(self.tx, None, &mut self.tally).await?;
        self.log.flush(self.tx, self.table, &self.source).await?;
        self.updates.apply(self.tx, self.table).await
    }
}

/// A statement ends the `COPY` in progress first: the connection runs
/// one thing at a time.
impl Statements for PgLoad<'_, '_> {
    async fn execute(&mut self, st: &Statement) -> Result<u64, StoreError> {
        self.end_copy().await?;
        execute_in(self.tx, st).await
    }

    async fn query<T>(&mut self, st: &Statement, read: ReadRow<T>) -> Result<Vec<T>, StoreError> {
        self.end_copy().await?;
        query_in(self.tx, st, read).await
    }
}

/// Files from this size on are loaded with the table's indexes and primary
/// key set aside, and its foreign keys too unless the parents are locked
/// ([`KeyChecks::Locks`]), while the table is small enough beside the file
/// ([`REBUILD_RATIO`], [`REVALIDATE_RATIO`]). Building an index once the
/// rows are in is one sort; inserting into it row by row cost more
/// (measured on a million rows: the primary key 1.2 s against 0.3 s, each
/// foreign-key column's index 2 s against 0.6 s). PostgreSQL checks a
/// foreign key with a query per inserted row (two of them cost 8 s per
/// million rows, more than the COPY), and validating it again at the end
/// is one join over the table (0.3 s per million rows).
const BULK_BYTES: u64 = 2 << 20;

/// The indexes are built again over the whole table, so only while the
/// table holds at most this many times the file's bytes (a row takes
/// about 1.4 times its CSV size in the table): beyond, inserting the
/// file's rows one by one costs less.
const REBUILD_RATIO: u64 = 2;

/// The same for validating the foreign keys again, by one join over the
/// table, against the triggers' query per row and key (about 13 times
/// the join's cost per row).
const REVALIDATE_RATIO: u64 = 16;

/// Drops the table's foreign keys (`foreign_keys`) and its primary key
/// (`primary_key`, unless another table's foreign key needs it) inside the
/// load's transaction, and returns them (name, definition) to be added
/// again before the commit, the primary key first; a rollback brings them
/// back by itself. The rows written meanwhile are checked against the
/// parents and for taken ids in memory, and adding the keys again checks
/// every row once more.
async fn set_aside_constraints(
    tx: &Transaction<'_>,
    table: Table,
    foreign_keys: bool,
    primary_key: bool,
) -> Result<Vec<(String, String)>, StoreError> {
    let keys: Vec<(String, String)> = tx
        .query(
            "SELECT conname::text, pg_get_constraintdef(oid) FROM pg_constraint
             WHERE conrelid = to_regclass($1)
               AND ((contype = 'f' AND $2)
                    OR (contype = 'p' AND $3 AND NOT EXISTS (
                          SELECT 1 FROM pg_constraint r
                          WHERE r.confrelid = to_regclass($1) AND r.contype = 'f')))
             ORDER BY contype = 'f', conname",
            &[
                &format!("\"{}\"", table.name()),
                &foreign_keys,
                &primary_key,
            ],
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
