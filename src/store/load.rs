//! A file load on a server database, written once for PostgreSQL and SQL
//! Server: the table is locked against other writers for the transaction
//! and its ids and its parents' are read once, so that they stay true to
//! the end and every check is made in memory; the admitted rows then go in
//! by the backend's bulk path, chunk by chunk, and the rejections to the
//! log. The history entry commits with them.
//!
//! A backend supplies a [`LoadTarget`], the writes of one transaction.

use super::admission::{
    Admitted, IdBitmap, LoadKnown, LoggedRejection, admit, keep_sample, rejection_record,
};
use super::batch::Done;
use super::lineage::{self, Runs};
use super::sql::{self, HistoryEntry, Operation};
use super::tx::Statements;
use super::{Dialect, Feed, FileFeed, FileLoad, LoadOutcome, OperationKind, StoreError};
use crate::dictionary::{CodeTally, Row, Table};
use std::collections::HashMap;

/// The writes of one load's transaction.
pub(super) trait LoadTarget: Statements {
    /// Keeps other writers out of the table until the end.
    async fn lock(&mut self) -> Result<(), StoreError>;

    /// Every id of `table`.
    async fn ids(&mut self, table: Table) -> Result<IdBitmap, StoreError>;

    /// Writes admitted rows, in order.
    async fn write(&mut self, rows: &[&Row]) -> Result<(), StoreError>;

    /// Replaces the stored rows of these ids (distinct, every one in the
    /// table or written before) with these values.
    async fn update(&mut self, rows: &[&Row]) -> Result<(), StoreError>;

    /// Logs rejections, in order (now, or with the next ones).
    async fn log(&mut self, rejected: Vec<LoggedRejection>) -> Result<(), StoreError>;

    /// After the last chunk: every row and rejection is written.
    async fn end_writes(&mut self) -> Result<(), StoreError>;
}

/// Loads `feed` into `load.table` through `target`; the outcome, and
/// whether to commit.
pub(super) async fn run(
    target: &mut impl LoadTarget,
    d: Dialect,
    load: &FileLoad,
    mut feed: FileFeed,
) -> Result<Done<LoadOutcome>, StoreError> {
    let table = load.table;
    target.lock().await?;
    let mut known = LoadKnown {
        taken: target.ids(table).await?,
        parents: HashMap::new(),
    };
    for (_, _, parent) in table.foreign_keys() {
        if let std::collections::hash_map::Entry::Vacant(slot) = known.parents.entry(parent) {
            let mut ids = target.ids(parent).await?;
            for &id in load.dry_run.iter().flat_map(|dry| dry.ids(parent)) {
                ids.insert(id);
            }
            slot.insert(ids);
        }
    }
    // A dry run of a parent table keeps the ids it would insert, for the
    // next files of the run.
    let (mut would_insert, mut samples) = (Vec::new(), Vec::new());
    let keep_ids = load.dry_run.is_some() && table.children().next().is_some();
    let update = load.on_duplicate.updates();
    let (mut inserted, mut updated, mut rejected) = (0u64, 0u64, 0u64);
    let mut codes = CodeTally::default();
    // The entry is made first, so that the lineage is written as the rows
    // are; it is counted at the end, and commits with them or not at all.
    let load_id = match load.dry_run {
        Some(_) => 0,
        None => target.int(&sql::record(d, &opened(load))).await?,
    };
    let mut runs = Runs::default();
    loop {
        match feed.recv().await {
            Some(Feed::Rows(chunk)) => {
                let mut writes = Writes::with_capacity(chunk.rows.len());
                let mut logged = Vec::new();
                for c in &chunk.rows {
                    match admit(table, c, &mut known, update)? {
                        Ok((row, how)) => {
                            runs.push(row.id(), c.position as i64);
                            writes.push(row, how);
                        }
                        // Every check is in memory: a dry run writes
                        // nothing, and logs no rejection (not even in the
                        // service's log).
                        Err(errors) if load.dry_run.is_some() => {
                            rejected += 1;
                            codes.add(&errors);
                            keep_sample(&mut samples, &load.source, &chunk.raw, c, &errors);
                        }
                        Err(errors) => {
                            codes.add(&errors);
                            let source = &load.source;
                            logged.push(rejection_record(d, table, source, &chunk.raw, c, &errors));
                        }
                    }
                }
                rejected += logged.len() as u64;
                if load.max_rejects.is_some_and(|max| rejected > max) {
                    return Ok(Done::Rollback(LoadOutcome::Aborted { rejected }));
                }
                inserted += writes.inserted;
                updated += writes.updated;
                if load.dry_run.is_some() {
                    if keep_ids {
                        would_insert.extend(writes.inserts.iter().map(|row| row.id()));
                    }
                    continue;
                }
                target.write(&writes.inserts).await?;
                if !writes.updates.is_empty() {
                    target.update(&writes.updates).await?;
                }
                target.log(logged).await?;
                for st in runs
                    .full()
                    .iter()
                    .flat_map(|r| lineage::insert(d, load_id, table, r))
                {
                    target.execute(&st).await?;
                }
            }
            Some(Feed::End(summary)) => {
                if load.dry_run.is_none() {
                    target.end_writes().await?;
                }
                // Checked again under the table lock: two loads of the same
                // content racing each other commit once.
                let seen = sql::history_has(d, table, &summary.sha256);
                if !load.force && !target.query(&seen, |_| Ok(())).await?.is_empty() {
                    return Ok(Done::Rollback(LoadOutcome::AlreadyLoaded));
                }
                if load.dry_run.is_some() {
                    return Ok(Done::Rollback(LoadOutcome::WouldLoad {
                        inserted,
                        updated,
                        rejected,
                        codes,
                        ids: would_insert,
                        rejections: samples,
                    }));
                }
                for st in lineage::insert(d, load_id, table, &runs.finish()) {
                    target.execute(&st).await?;
                }
                let mut entry = HistoryEntry::loaded(load, &summary, inserted, rejected);
                entry.updated = updated;
                target
                    .execute(&sql::finish_history(d, load_id, &entry))
                    .await?;
                return Ok(Done::Commit(LoadOutcome::Loaded {
                    load_id,
                    inserted,
                    updated,
                    rejected,
                    codes,
                }));
            }
            None => return Err(StoreError::FeedInterrupted),
        }
    }
}

/// The history entry of a load as it starts: nothing counted yet.
pub(super) fn opened(load: &FileLoad) -> Operation<'_> {
    let mut op = Operation::new(OperationKind::Load, load.table, &load.source);
    if let Ok(started) = crate::dictionary::datetime::parse(&load.started_at) {
        op.started_ms = started;
    }
    op
}

/// The writes of one chunk of a load: new rows in file order, then the
/// updates, one per id with its last values (the later occurrence wins). A
/// row inserted in the chunk and updated later in it is inserted with its
/// last values; an update of a row inserted by an earlier chunk runs after
/// that chunk's writes.
struct Writes<'r> {
    inserts: Vec<&'r Row>,
    updates: Vec<&'r Row>,
    /// Where each id of the chunk is: `(true, i)` in `inserts`, `(false, i)`
    /// in `updates`.
    at: HashMap<i32, (bool, usize)>,
    inserted: u64,
    updated: u64,
}

impl<'r> Writes<'r> {
    fn with_capacity(n: usize) -> Writes<'r> {
        Writes {
            inserts: Vec::with_capacity(n),
            updates: Vec::new(),
            at: HashMap::new(),
            inserted: 0,
            updated: 0,
        }
    }

    fn push(&mut self, row: &'r Row, how: Admitted) {
        if how == Admitted::Inserted {
            self.inserted += 1;
            // The map is made at the chunk's first update: a chunk without
            // one (every chunk of a plain load) needs none.
            if !self.at.is_empty() {
                self.at.insert(row.id(), (true, self.inserts.len()));
            }
            self.inserts.push(row);
            return;
        }
        self.updated += 1;
        if self.at.is_empty() {
            // The first update of the chunk: index the inserts before it.
            for (i, r) in self.inserts.iter().enumerate() {
                self.at.insert(r.id(), (true, i));
            }
        }
        match self.at.get(&row.id()) {
            Some(&(true, i)) => self.inserts[i] = row,
            Some(&(false, i)) => self.updates[i] = row,
            None => {
                self.at.insert(row.id(), (false, self.updates.len()));
                self.updates.push(row);
            }
        }
    }
}
