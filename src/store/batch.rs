//! An API batch on a server database, written once for PostgreSQL and
//! SQL Server: the idempotency key claimed first, then for each table the
//! ids it names looked up in one query per column, every row admitted in
//! memory, the admitted ones inserted in one go, and the rest logged.
//!
//! The insert settles races with other writers: a row whose id another
//! writer took since the lookup is not inserted, and becomes a duplicate
//! rejection. A backend supplies a [`BatchTarget`], the statements of one
//! transaction.

use super::admission::{BatchKnown, LoggedRejection, Sorted, ints, outcome, rejection_record};
use super::lineage::{self, Runs};
use super::sql;
use super::tx::Statements;
use super::{BatchRequest, Dialect, IngestOutcome, StoreError, TableOutcome, queue};
use crate::dictionary::{Row, Table};
use std::collections::{HashMap, HashSet};

/// Rejected rows of one table, as the log keeps them.
pub(super) struct Logged<'a> {
    /// The table they were meant for.
    pub(super) table: Table,
    /// `api:<batch id>` or `file:<location>`.
    pub(super) source: &'a str,
    /// The rejections, in input order.
    pub(super) rows: Vec<LoggedRejection>,
}

/// How a transaction's work ended: keep its writes or not.
pub(super) enum Done<T> {
    /// Commit, and return this.
    Commit(T),
    /// Roll back, and return this.
    Rollback(T),
}

/// One id lookup of a batch: which of `ids` (sorted, distinct) `table`
/// holds.
pub(super) struct Lookup<'a> {
    pub(super) table: Table,
    pub(super) ids: &'a [i32],
    /// The table is a parent of the batch's: the rows found are the ones
    /// its rows are admitted against.
    pub(super) parent: bool,
}

/// The statements of one batch's transaction.
pub(super) trait BatchTarget: Statements {
    /// The ids each lookup finds, in order. A backend may lock a parent's
    /// rows found against deletion until the commit (the lock a
    /// foreign-key check takes), so that no row admitted against a parent
    /// loses it before the commit.
    async fn existing(&mut self, lookups: &[Lookup<'_>]) -> Result<Vec<HashSet<i32>>, StoreError>;

    /// Inserts rows unless their id is taken; the ids it inserted.
    async fn insert(&mut self, table: Table, rows: &[&Row]) -> Result<HashSet<i32>, StoreError>;

    /// Inserts rows (ids distinct), or replaces the stored row of an id
    /// that is taken; of each id, whether it was inserted (`true`).
    async fn upsert(
        &mut self,
        table: Table,
        rows: &[&Row],
    ) -> Result<HashMap<i32, bool>, StoreError>;

    /// Writes rejections to the log, in order.
    async fn log(&mut self, rejected: Logged<'_>) -> Result<(), StoreError>;
}

/// Applies a batch through `target`; the outcome, and whether to commit.
pub(super) async fn apply(
    target: &mut impl BatchTarget,
    d: Dialect,
    batch: &BatchRequest,
) -> Result<Done<IngestOutcome>, StoreError> {
    let (source, tables) = (batch.source.as_str(), batch.tables.as_slice());
    if let Some(idem) = &batch.idempotency {
        // The key is claimed first: a second request with the same key
        // waits here until the first commits, then replays its response.
        let claim = sql::idempotency_claim(d, &idem.key, &idem.fingerprint);
        if target.execute(&claim).await? == 0 {
            let seen = sql::idempotency_seen(d, &idem.key);
            let (fingerprint, response) = (target.query(&seen, |r| Ok((r.text(0)?, r.text(1)?))))
                .await?
                .into_iter()
                .next()
                .ok_or_else(|| StoreError::Task("an idempotency key vanished".into()))?;
            return Ok(Done::Rollback(if fingerprint == idem.fingerprint {
                IngestOutcome::Replayed(response)
            } else {
                IngestOutcome::KeyReused
            }));
        }
    }
    let mut outcomes = Vec::with_capacity(tables.len());
    for one in tables {
        let (table, chunk) = (one.table, &one.chunk);
        let keys = ints(chunk, Table::PRIMARY_KEY);
        let references: Vec<(Table, Vec<i32>)> = (table.foreign_keys())
            .map(|(i, _, parent)| (parent, ints(chunk, i)))
            .collect();
        let mut lookups = vec![Lookup {
            table,
            ids: &keys,
            parent: false,
        }];
        lookups.extend(references.iter().map(|(parent, ids)| Lookup {
            table: *parent,
            ids,
            parent: true,
        }));
        let mut found = target.existing(&lookups).await?.into_iter();
        let mut known = BatchKnown {
            taken: found.next().unwrap_or_default(),
            parents: HashMap::new(),
        };
        for ((parent, _), ids) in references.iter().zip(found) {
            known.parents.entry(*parent).or_default().extend(ids);
        }
        let update = batch.on_duplicate.updates();
        let sorted = Sorted::new(table, chunk, known, update)?;
        let rows: Vec<&Row> = sorted.rows(update);
        let settled = match (rows.is_empty(), update) {
            (true, _) => sorted.settle(&HashSet::new()),
            (false, false) => sorted.settle(&target.insert(table, &rows).await?),
            (false, true) => sorted.settle_upserted(&target.upsert(table, &rows).await?),
        };
        let requeued = batch.requeue.as_ref().map(|requeue| {
            let rows = requeue.rows.get(outcomes.len());
            (requeue.kind, rows.map_or(&[][..], Vec::as_slice))
        });
        let mut runs = Runs::default();
        for &(id, index) in &settled.written {
            runs.push(id, lineage::position(index, requeued.map(|(_, rows)| rows)));
        }
        let Some((kind, rows)) = requeued else {
            let logged = (settled.rejected.iter())
                .map(|(c, errors)| rejection_record(d, table, source, &chunk.raw, c, errors))
                .collect();
            target
                .log(Logged {
                    table,
                    source,
                    rows: logged,
                })
                .await?;
            let mut done = outcome(table, chunk, settled);
            if !batch.dry_run {
                done.load_id = Some(record_batch(target, d, source, &done, runs).await?);
            }
            outcomes.push(done);
            continue;
        };
        let mut done = outcome(table, chunk, settled);
        if done.inserted > 0 {
            // A retry's rounds share one entry, opened by the first.
            target
                .execute(&sql::open_operation(d, kind, table, source))
                .await?;
            let id = target.int(&sql::operation_id(d, table, source)).await?;
            for st in lineage::insert(d, id, table, &runs.finish()) {
                target.execute(&st).await?;
            }
            done.load_id = Some(id);
        }
        for st in queue::requeued(d, source, kind, rows, &done) {
            target.execute(&st).await?;
        }
        outcomes.push(done);
    }
    let response = (batch.render)(&outcomes, tables);
    if batch.dry_run {
        return Ok(Done::Rollback(IngestOutcome::Applied(response)));
    }
    if let Some(idem) = &batch.idempotency {
        target
            .execute(&sql::idempotency_respond(d, &idem.key, &response))
            .await?;
    }
    Ok(Done::Commit(IngestOutcome::Applied(response)))
}

/// Records one table of a batch in the history, and the lineage of the
/// rows it wrote; the entry's id.
async fn record_batch(
    target: &mut impl Statements,
    d: Dialect,
    source: &str,
    done: &TableOutcome,
    runs: Runs,
) -> Result<i64, StoreError> {
    let id = target.int(&sql::record_batch(d, source, done)).await?;
    for st in lineage::insert(d, id, done.table, &runs.finish()) {
        target.execute(&st).await?;
    }
    Ok(id)
}
