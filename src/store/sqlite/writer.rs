//! SQLite's writes of rows: file loads and API batches, row by row with
//! prepared statements, on the writer thread.
//!
//! Parents are checked from id sets cached between transactions
//! ([`ParentCache`]), so SQLite's own per-row foreign-key check is turned
//! off for them ([`enforce_foreign_keys`]): it would repeat the check with
//! a lookup.

use super::super::admission::{self, Admitted, Known, LoggedRejection};
use super::super::lineage::{self, Runs};
use super::super::reports::Tally;
use super::super::sql::{self, HistoryEntry};
use super::super::{
    BatchRest, Chunk, Dialect, DryRun, Feed, FileFeed, FileLoad, Idempotency, IngestOutcome,
    InputRow, LoadOutcome, Render, Requeue, StoreError, TableBatch, TableOutcome, WouldReject, ddl,
    queue,
};
use super::{counts, execute_on, query_on};
use crate::dictionary::{CodeTally, FieldError, Row, Table, Value, datetime};
use rusqlite::{CachedStatement, Connection, Transaction, TransactionBehavior, params};
use std::sync::mpsc::TrySendError;

/// Runs `f` with SQLite's per-row foreign-key check off (see the module
/// docs); the cached parent ids are dropped after a write to a parent.
pub(super) fn without_fk_checks<T>(
    conn: &mut Connection,
    parents_written: bool,
    f: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    enforce_foreign_keys(conn, false)?;
    let result = f(conn);
    if parents_written {
        // Rolled back or committed, the cache may not match.
        forget_parents();
    }
    result
}

/// Turns SQLite's own foreign-key enforcement on the writer connection on
/// or off, outside a transaction (it cannot change inside one).
///
/// Writes of rows check parents themselves and run with it off; any other
/// write runs with it on. It is left as the last write set it, and changed
/// only when the next one needs the other setting: a change expires every
/// prepared statement, and an API batch that prepared its statements again
/// each time (the setting turned back on after every batch) was 9 to 20 %
/// slower.
pub(super) fn enforce_foreign_keys(conn: &Connection, on: bool) -> Result<(), StoreError> {
    use rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_FKEY;
    if conn.db_config(SQLITE_DBCONFIG_ENABLE_FKEY)? != on {
        conn.set_db_config(SQLITE_DBCONFIG_ENABLE_FKEY, on)?;
    }
    Ok(())
}

/// A file load in one transaction.
pub(super) fn load_file(
    conn: &mut Connection,
    load: &FileLoad,
    feed: FileFeed,
) -> Result<LoadOutcome, StoreError> {
    // The writer thread is what a load waits for: the chunks written are
    // counted (their hires inserted, see `counts`) and freed on a thread of
    // the load's own (freeing was 8% of the writer's time, counting 15 %),
    // a few at most waiting for it.
    std::thread::scope(|scope| {
        let (spent, freed) = std::sync::mpsc::sync_channel::<Spent>(4);
        let counter = std::thread::Builder::new().name("hrmig-sqlite-counter".into());
        let counting = counter.spawn_scoped(scope, move || {
            let mut tally = Tally::default();
            for spent in freed {
                match spent {
                    Spent::Chunk(chunk, inserted) => {
                        counts::count_inserted(&mut tally, &chunk, &inserted);
                    }
                    Spent::Counted(reply) => {
                        let _ = reply.send(std::mem::take(&mut tally));
                    }
                }
            }
        });
        counting
            .map_err(|e| StoreError::Task(format!("cannot start a load's counting thread: {e}")))?;
        load_file_on(conn, load, feed, &spent)
    })
}

/// What a load's writer hands to the thread that frees its chunks.
enum Spent {
    /// A chunk written, and the indices of its hires inserted.
    Chunk(Chunk, Vec<u32>),
    /// Asks for the tally of the chunks so far.
    Counted(std::sync::mpsc::Sender<Tally>),
}

/// The tally of the chunks handed to the freeing thread, added to the
/// transaction's before its commit.
fn collect_counts(spent: &std::sync::mpsc::SyncSender<Spent>) -> Result<(), StoreError> {
    let (reply, counted) = std::sync::mpsc::channel();
    let gone = || StoreError::Task("the thread that counts a load's rows is gone".into());
    spent.send(Spent::Counted(reply)).map_err(|_| gone())?;
    counts::add(counted.recv().map_err(|_| gone())?);
    Ok(())
}

fn load_file_on(
    conn: &mut Connection,
    load: &FileLoad,
    mut feed: FileFeed,
    spent: &std::sync::mpsc::SyncSender<Spent>,
) -> Result<LoadOutcome, StoreError> {
    let d = Dialect::Sqlite;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // The entry is made first, so that the lineage is written as the rows
    // are (see `store::load`).
    let load_id = match load.dry_run {
        Some(_) => 0,
        None => first_int(&tx, &sql::record(d, &super::super::load::opened(load)))?,
    };
    let mut writer = RowWriter::new(&tx, load.table, &load.source)?;
    writer.update = load.on_duplicate.updates();
    if let Some(dry) = &load.dry_run {
        writer.pretend(dry);
    }
    loop {
        match feed.blocking_recv() {
            Some(Feed::Rows(chunk)) => {
                writer.write_chunk(&chunk)?;
                let inserted = std::mem::take(&mut writer.inserted_at);
                // Or counted and dropped here, when four wait already.
                if let Err(TrySendError::Full(Spent::Chunk(chunk, inserted))) =
                    spent.try_send(Spent::Chunk(chunk, inserted))
                {
                    counts::count_here(&chunk, &inserted);
                }
                if load.max_rejects.is_some_and(|max| writer.rejected > max) {
                    return Ok(LoadOutcome::Aborted {
                        rejected: writer.rejected,
                    });
                }
                if let Some(runs) = writer.runs.full().filter(|_| load.dry_run.is_none()) {
                    for st in lineage::insert(d, load_id, load.table, &runs) {
                        execute_on(&tx, &st)?;
                    }
                }
            }
            Some(Feed::End(summary)) => {
                let (inserted, updated, rejected, codes) = (
                    writer.inserted,
                    writer.updated,
                    writer.rejected,
                    writer.codes,
                );
                let ids = std::mem::take(&mut writer.would_insert);
                let rejections = std::mem::take(&mut writer.samples);
                let runs = std::mem::take(&mut writer.runs);
                drop(writer);
                // Checked again here, where no other load can interleave:
                // two loads of the same content racing each other commit once.
                let seen = sql::history_has(Dialect::Sqlite, load.table, &summary.sha256);
                if !load.force && !query_on(&tx, &seen, |_| Ok(()))?.is_empty() {
                    return Ok(LoadOutcome::AlreadyLoaded);
                }
                if load.dry_run.is_some() {
                    // Rolled back when `tx` is dropped.
                    return Ok(LoadOutcome::WouldLoad {
                        inserted,
                        updated,
                        rejected,
                        codes,
                        ids,
                        rejections,
                    });
                }
                for st in lineage::insert(d, load_id, load.table, &runs.finish()) {
                    execute_on(&tx, &st)?;
                }
                let mut entry = HistoryEntry::loaded(load, &summary, inserted, rejected);
                entry.updated = updated;
                execute_on(&tx, &sql::finish_history(d, load_id, &entry))?;
                collect_counts(spent)?;
                counts::commit(tx)?;
                return Ok(LoadOutcome::Loaded {
                    load_id,
                    inserted,
                    updated,
                    rejected,
                    codes,
                });
            }
            None => return Err(StoreError::FeedInterrupted),
        }
    }
}

/// How a batch is applied besides its rows: a dry run writes nothing, a
/// requeue writes no new rejections but resolves or updates the ones its
/// rows came from.
pub(super) struct Apply<'a> {
    pub(super) dry_run: bool,
    /// A valid row whose id is taken replaces the stored one.
    pub(super) update: bool,
    pub(super) requeue: Option<&'a Requeue>,
}

/// The outcome of a batch inside its transaction: rendered when a key must
/// store the response, else returned for the caller to render.
pub(super) fn ingest(
    conn: &mut Connection,
    source: &str,
    tables: &mut [TableBatch],
    mut rest: Option<BatchRest>,
    idempotency: Option<&Idempotency>,
    render: Option<Render>,
    apply: Apply<'_>,
) -> Result<Result<IngestOutcome, Vec<TableOutcome>>, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    if let Some(idem) = idempotency {
        let st = sql::idempotency_seen(Dialect::Sqlite, &idem.key);
        let seen = query_on(&tx, &st, |r| Ok((r.text(0)?, r.text(1)?)))?;
        if let Some((fingerprint, response)) = seen.into_iter().next() {
            return Ok(Ok(if fingerprint == idem.fingerprint {
                IngestOutcome::Replayed(response)
            } else {
                IngestOutcome::KeyReused
            }));
        }
    }
    let mut outcomes = Vec::with_capacity(tables.len());
    let last = tables.len().saturating_sub(1);
    for (i, batch) in tables.iter_mut().enumerate() {
        let mut writer = RowWriter::new(&tx, batch.table, source)?;
        let requeued = apply
            .requeue
            .map(|r| (r.kind, r.rows.get(i).map_or(&[][..], Vec::as_slice)));
        writer.unlogged = requeued.is_some();
        writer.rejections = requeued.map(|(_, rows)| rows.iter().map(|(id, _)| *id).collect());
        writer.update = apply.update;
        let mut rejected = writer.write_chunk(&batch.chunk)?;
        counts::count_here(&batch.chunk, &std::mem::take(&mut writer.inserted_at));
        if let Some(rest) = rest.as_mut().filter(|_| i == last) {
            loop {
                match rest.blocking_recv() {
                    Some(Feed::Rows(chunk)) => {
                        rejected.extend(writer.write_chunk(&chunk)?);
                        counts::count_here(&chunk, &std::mem::take(&mut writer.inserted_at));
                        batch.chunk.append(chunk);
                    }
                    Some(Feed::End(())) => break,
                    // The request failed while it was parsed: roll back.
                    None => return Err(StoreError::FeedInterrupted),
                }
            }
        }
        let mut outcome = TableOutcome {
            table: batch.table,
            received: batch.chunk.rows.len() as u64,
            inserted: writer.inserted,
            updated: writer.updated,
            rejected,
            load_id: None,
        };
        let runs = std::mem::take(&mut writer.runs).finish();
        drop(writer);
        let d = Dialect::Sqlite;
        let table = batch.table;
        match requeued {
            _ if apply.dry_run => {}
            None => {
                let entry = sql::record_batch(d, source, &outcome);
                outcome.load_id = Some(first_int(&tx, &entry)?);
            }
            Some((kind, _)) if outcome.inserted > 0 => {
                // A retry's rounds share one entry, opened by the first.
                execute_on(&tx, &sql::open_operation(d, kind, table, source))?;
                outcome.load_id = Some(first_int(&tx, &sql::operation_id(d, table, source))?);
            }
            Some(_) => {}
        }
        if let Some(load_id) = outcome.load_id {
            for st in lineage::insert(d, load_id, table, &runs) {
                execute_on(&tx, &st)?;
            }
        }
        if let Some((kind, rows)) = requeued {
            for st in queue::requeued(d, source, kind, rows, &outcome) {
                execute_on(&tx, &st)?;
            }
        }
        outcomes.push(outcome);
    }
    let result = match (idempotency, render) {
        (Some(idem), Some(render)) => {
            let response = render(&outcomes, tables);
            let st =
                sql::idempotency_insert(Dialect::Sqlite, &idem.key, &idem.fingerprint, &response);
            execute_on(&tx, &st)?;
            Ok(IngestOutcome::Applied(response))
        }
        _ => Err(outcomes),
    };
    // A dry run is rolled back when `tx` is dropped.
    if !apply.dry_run {
        counts::commit(tx)?;
    }
    Ok(result)
}

/// The first integer a statement returns (an id it inserted).
fn first_int(tx: &Transaction<'_>, st: &sql::Statement) -> Result<i64, StoreError> {
    let first = query_on(tx, st, |r| r.int(0))?.into_iter().next();
    first.ok_or_else(|| StoreError::Task(format!("no row from {}", st.sql)))
}

/// Largest parent table whose ids are held in memory (4 MB each); bigger
/// ones are looked up per row.
pub(super) const MAX_PARENT_IDS: i64 = 1_000_000;

/// How a foreign key is checked.
enum Parent<'t> {
    /// A lookup per row (parents too big to hold in memory).
    Lookup(CachedStatement<'t>),
    /// Every id of the parent, from the writer's cache.
    Ids(std::rc::Rc<IdSet>),
}

/// Parent id sets, cached on the writer thread between transactions.
///
/// Valid while nothing changed the parents: writes by this process all run
/// on this thread and clear the cache when they touch a parent table
/// ([`forget_parents`]); commits by other connections change SQLite's
/// `data_version`, which is compared on every use.
#[derive(Default)]
struct ParentCache {
    data_version: i64,
    sets: std::collections::HashMap<Table, std::rc::Rc<IdSet>>,
}

/// A set of ids, hashed with one multiplication: every row of a batch is
/// looked up in it, and ids are not chosen to collide with each other
/// (a hostile client can only slow its own parents' lookups).
pub(super) type IdSet = std::collections::HashSet<i32, std::hash::BuildHasherDefault<IdHasher>>;

/// Fibonacci hashing of a 32-bit id, high bits folded into the low ones.
#[derive(Default)]
pub(super) struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 32)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_i32(&mut self, id: i32) {
        self.0 = u64::from(id as u32).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

thread_local! {
    static PARENTS: std::cell::RefCell<ParentCache> = Default::default();
}

/// The ids of `parent`, or `None` when the table is too big to hold.
pub(super) fn parent_ids(
    tx: &Transaction<'_>,
    parent: Table,
) -> Result<Option<std::rc::Rc<IdSet>>, rusqlite::Error> {
    let version: i64 = tx
        .prepare_cached("PRAGMA data_version")?
        .query_row([], |r| r.get(0))?;
    let cached = PARENTS.with(|c| {
        let mut c = c.borrow_mut();
        if c.data_version != version {
            c.sets.clear();
            c.data_version = version;
        }
        c.sets.get(&parent).cloned()
    });
    if cached.is_some() {
        return Ok(cached);
    }
    let n: i64 = tx.query_row(
        &format!("SELECT COUNT(*) FROM \"{}\"", parent.name()),
        [],
        |r| r.get(0),
    )?;
    if n > MAX_PARENT_IDS {
        return Ok(None);
    }
    let mut stmt = tx.prepare_cached(&format!("SELECT \"id\" FROM \"{}\"", parent.name()))?;
    let ids: IdSet = stmt
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let ids = std::rc::Rc::new(ids);
    PARENTS.with(|c| c.borrow_mut().sets.insert(parent, ids.clone()));
    Ok(Some(ids))
}

/// Drops the cached parent ids (a parent table is being written).
pub(super) fn forget_parents() {
    PARENTS.with(|c| c.borrow_mut().sets.clear());
}

impl Parent<'_> {
    fn has(&mut self, id: i32) -> Result<bool, rusqlite::Error> {
        match self {
            Parent::Lookup(stmt) => stmt.exists([id]),
            Parent::Ids(ids) => Ok(ids.contains(&id)),
        }
    }
}

/// Fresh rows (ids above the table's) inserted by one statement: a
/// statement per row spent about an eighth of the writer's time starting
/// and ending statements.
const FRESH_ROWS: usize = 64;

/// `(?1, …, ?n), (?n+1, …)`: the parameters of `rows` rows of `n` values.
fn value_marks(n: usize, rows: usize) -> String {
    let row = |r: usize| {
        let marks: Vec<String> = (1..=n).map(|i| format!("?{}", r * n + i)).collect();
        format!("({})", marks.join(", "))
    };
    (0..rows).map(row).collect::<Vec<_>>().join(", ")
}

/// Binds a row's values to an `INSERT` of all the table's columns.
pub(super) fn bind_row(stmt: &mut CachedStatement<'_>, row: &Row) -> Result<(), rusqlite::Error> {
    bind_row_at(stmt, 0, row)
}

/// Binds a row's values from parameter `offset + 1` on.
pub(super) fn bind_row_at(
    stmt: &mut CachedStatement<'_>,
    offset: usize,
    row: &Row,
) -> Result<(), rusqlite::Error> {
    let mut buf = [0u8; 24];
    for (i, v) in row.0.iter().enumerate() {
        let i = offset + i;
        match v {
            Value::Int(n) => stmt.raw_bind_parameter(i + 1, n)?,
            Value::Text(s) => stmt.raw_bind_parameter(i + 1, s.as_str())?,
            Value::DateTime(ms) => stmt.raw_bind_parameter(
                i + 1,
                rusqlite::types::ToSqlOutput::Borrowed(rusqlite::types::ValueRef::Text(
                    datetime::format_ascii(*ms, &mut buf),
                )),
            )?,
        }
    }
    Ok(())
}

/// Inserts checked rows and logs rejected ones, within one transaction:
/// the [`Known`] of the admission rules, answered by prepared statements
/// (the insert itself finds a taken id).
struct RowWriter<'t> {
    table: Table,
    source: &'t str,
    rejected_at: String,
    insert: CachedStatement<'t>,
    /// Inserts [`FRESH_ROWS`] rows at once.
    insert_many: CachedStatement<'t>,
    /// The largest id in the table or admitted so far: a row above it is
    /// fresh, and waits in `fresh` to be inserted with others.
    high_water: i64,
    /// Fresh rows of the chunk being written, by index, not inserted yet.
    fresh: Vec<usize>,
    /// The index in its chunk of the row being admitted.
    current: usize,
    /// Hires of the chunk being written that were inserted, by index: the
    /// caller counts them (see `counts::uncounted`); updates are counted by
    /// the hook.
    inserted_at: Vec<u32>,
    /// Replaces a stored row (an upsert's second step).
    replace: CachedStatement<'t>,
    exists: CachedStatement<'t>,
    parents: Vec<(Table, Parent<'t>)>,
    reject: CachedStatement<'t>,
    inserted: u64,
    updated: u64,
    rejected: u64,
    /// The rejected rows per code.
    codes: CodeTally,
    /// A valid row whose id is taken replaces the stored one.
    update: bool,
    /// A dry run's parents that earlier files would have inserted.
    pretended: Vec<(Table, IdSet)>,
    /// In a dry run of a parent table, the ids it would insert.
    would_insert: Vec<i32>,
    keep_ids: bool,
    /// In a dry run, the first rows it would reject.
    samples: Vec<WouldReject>,
    dry_run: bool,
    /// Rejected rows are not logged (they come from the log: a requeue).
    unlogged: bool,
    /// The lineage of the rows written.
    runs: Runs,
    /// For rows of the log, the rejection each came from, by position: the
    /// position their lineage keeps.
    rejections: Option<Vec<i64>>,
}

impl<'t> RowWriter<'t> {
    fn new(tx: &'t Transaction<'_>, table: Table, source: &'t str) -> Result<Self, StoreError> {
        let d = Dialect::Sqlite;
        let insert = |rows: usize, conflict: &str| {
            tx.prepare_cached(&format!(
                "INSERT INTO {} ({}) VALUES {}{conflict}",
                d.quote(table.name()),
                d.table_columns(table),
                value_marks(table.columns().len(), rows)
            ))
        };
        let insert_many = insert(FRESH_ROWS, "")?;
        let insert = insert(1, " ON CONFLICT (\"id\") DO NOTHING")?;
        let high_water: Option<i64> = tx
            .prepare_cached(&format!(
                "SELECT MAX(\"id\") FROM {}",
                d.quote(table.name())
            ))?
            .query_row([], |r| r.get(0))?;
        let sets: Vec<String> = (table.columns().iter().enumerate())
            .filter(|(i, _)| *i != Table::PRIMARY_KEY)
            .map(|(i, c)| format!("{} = ?{}", d.quote(c.name), i + 1))
            .collect();
        let replace = tx.prepare_cached(&format!(
            "UPDATE {} SET {} WHERE \"id\" = ?1",
            d.quote(table.name()),
            sets.join(", ")
        ))?;
        if table.children().next().is_some() {
            forget_parents();
        }
        let exists = tx.prepare_cached(&format!(
            "SELECT 1 FROM {} WHERE \"id\" = ?1",
            d.quote(table.name())
        ))?;
        let mut parents = Vec::new();
        for (_, _, parent) in table.foreign_keys() {
            let check = match parent_ids(tx, parent)? {
                Some(ids) => Parent::Ids(ids),
                None => Parent::Lookup(tx.prepare_cached(&format!(
                    "SELECT 1 FROM {} WHERE \"id\" = ?1",
                    d.quote(parent.name())
                ))?),
            };
            parents.push((parent, check));
        }
        let reject = tx.prepare_cached(&format!(
            "INSERT INTO {} (table_name, source, position, raw, errors, rejected_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            ddl::REJECTIONS
        ))?;
        Ok(RowWriter {
            table,
            source,
            rejected_at: datetime::now_text(),
            insert,
            insert_many,
            high_water: high_water.unwrap_or(i64::MIN),
            fresh: Vec::new(),
            current: 0,
            inserted_at: Vec::new(),
            replace,
            exists,
            parents,
            reject,
            inserted: 0,
            updated: 0,
            rejected: 0,
            codes: CodeTally::default(),
            update: false,
            pretended: Vec::new(),
            would_insert: Vec::new(),
            keep_ids: false,
            samples: Vec::new(),
            dry_run: false,
            unlogged: false,
            runs: Runs::default(),
            rejections: None,
        })
    }

    /// Checks as a dry run does: parents that earlier files of the run would
    /// have inserted count as there, and a parent table's admitted ids are
    /// kept for the files after it.
    fn pretend(&mut self, dry: &DryRun) {
        for (_, _, parent) in self.table.foreign_keys() {
            self.pretended
                .push((parent, dry.ids(parent).iter().copied().collect()));
        }
        self.keep_ids = self.table.children().next().is_some();
        self.dry_run = true;
    }

    /// Writes every input row; returns the rejected ones (position, errors).
    fn write_chunk(&mut self, chunk: &Chunk) -> Result<Vec<(u64, Vec<FieldError>)>, StoreError> {
        let mut rejected = Vec::new();
        for (i, row) in chunk.rows.iter().enumerate() {
            // Any other row may look up or write an id that a waiting
            // fresh row holds.
            if !self.is_fresh(row) {
                self.insert_fresh(chunk)?;
            }
            self.current = i;
            if let Some(errors) = self.write(row, &chunk.raw)? {
                rejected.push((row.position, errors));
            }
        }
        self.insert_fresh(chunk)?;
        Ok(rejected)
    }

    /// A valid row above every id so far: [`Known::admit`] keeps it to be
    /// inserted with the next ones.
    fn is_fresh(&self, row: &InputRow) -> bool {
        matches!(&row.check, Ok(r) if self.above_high_water(r.id()))
    }

    fn above_high_water(&self, id: i32) -> bool {
        i64::from(id) > self.high_water
    }

    /// Inserts the fresh rows waiting, [`FRESH_ROWS`] at a time.
    fn insert_fresh(&mut self, chunk: &Chunk) -> Result<(), StoreError> {
        let valid = |i: usize| match &chunk.rows[i].check {
            Ok(row) => Ok(row),
            Err(_) => Err(StoreError::Task("a fresh row that is not valid".into())),
        };
        let n = self.table.columns().len();
        let mut groups = self.fresh.chunks_exact(FRESH_ROWS);
        for group in &mut groups {
            for (k, &i) in group.iter().enumerate() {
                bind_row_at(&mut self.insert_many, k * n, valid(i)?)?;
            }
            counts::uncounted(self.table, || self.insert_many.raw_execute())?;
        }
        for &i in groups.remainder() {
            bind_row(&mut self.insert, valid(i)?)?;
            // Admitted as inserted already: an id taken after all would
            // otherwise be lost without a word.
            if counts::uncounted(self.table, || self.insert.raw_execute())? != 1 {
                return Err(StoreError::Task(format!(
                    "fresh id {} was taken",
                    valid(i)?.id()
                )));
            }
        }
        self.fresh.clear();
        Ok(())
    }

    /// Inserts one input row or logs it; returns its errors when rejected.
    fn write(&mut self, c: &InputRow, raw: &[u8]) -> Result<Option<Vec<FieldError>>, StoreError> {
        let errors = match admission::admit(self.table, c, self, self.update)? {
            Ok((row, how)) => {
                match how {
                    Admitted::Inserted => {
                        self.inserted += 1;
                        if self.table == Table::HiredEmployees {
                            self.inserted_at.push(self.current as u32);
                        }
                    }
                    Admitted::Updated => self.updated += 1,
                }
                let rejection = (self.rejections.as_ref())
                    .and_then(|ids| ids.get(c.position as usize).copied());
                self.runs
                    .push(row.id(), rejection.unwrap_or(c.position as i64));
                return Ok(None);
            }
            Err(errors) => errors,
        };
        self.codes.add(&errors);
        if self.dry_run {
            // Not logged, not even in the service's log: the row is kept
            // for the dry run's report.
            admission::keep_sample(&mut self.samples, self.source, raw, c, &errors);
            self.rejected += 1;
            return Ok(Some(errors));
        }
        if self.unlogged {
            self.rejected += 1;
            return Ok(Some(errors));
        }
        let LoggedRejection {
            position,
            raw,
            errors: json,
        } = admission::rejection_record(Dialect::Sqlite, self.table, self.source, raw, c, &errors);
        self.reject.execute(params![
            self.table.name(),
            self.source,
            position,
            raw,
            json,
            self.rejected_at
        ])?;
        self.rejected += 1;
        Ok(Some(errors))
    }
}

impl Known for RowWriter<'_> {
    fn taken(&mut self, id: i32) -> Result<bool, StoreError> {
        Ok(self.exists.exists([id])?)
    }

    fn admit(&mut self, row: &Row, update: bool) -> Result<Option<Admitted>, StoreError> {
        // Above every id there is: inserted with the next fresh rows.
        if self.above_high_water(row.id()) {
            self.high_water = i64::from(row.id());
            self.fresh.push(self.current);
            if self.keep_ids {
                self.would_insert.push(row.id());
            }
            return Ok(Some(Admitted::Inserted));
        }
        bind_row(&mut self.insert, row)?;
        // Parents were checked first: only the id can conflict.
        if counts::uncounted(self.table, || self.insert.raw_execute())? == 1 {
            if self.keep_ids {
                self.would_insert.push(row.id());
            }
            return Ok(Some(Admitted::Inserted));
        }
        if !update {
            return Ok(None);
        }
        // Rows are written in input order: a later occurrence replaces an
        // earlier one.
        bind_row(&mut self.replace, row)?;
        self.replace.raw_execute()?;
        Ok(Some(Admitted::Updated))
    }

    fn has_parent(&mut self, parent: Table, id: i32) -> Result<bool, StoreError> {
        // A dry run's earlier files count as there.
        if self.dry_run && (self.pretended.iter()).any(|(p, ids)| *p == parent && ids.contains(&id))
        {
            return Ok(true);
        }
        match self.parents.iter_mut().find(|(p, _)| *p == parent) {
            Some((_, check)) => Ok(check.has(id)?),
            None => Ok(false),
        }
    }
}
