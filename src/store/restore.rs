//! Replacing a table's rows with a backup's, written once for every
//! backend: the checks, their order and their messages are here; a
//! backend supplies a [`RestoreTarget`], the writes of one transaction.
//!
//! The order: lock the table, read the parents' ids, empty the table (or a
//! staging copy), write the rows as they arrive, each one's foreign keys
//! checked in memory; then check the count announced, the parents too big
//! to hold in memory, and the children that would lose their parent. Only
//! then commit. Any failure drops the target, which rolls back: the table
//! keeps its contents.

use super::admission::IdBitmap;
use super::lineage::{self, Run};
use super::sql::{self, Operation};
use super::tx::Statements;
use super::{Dialect, Feed, OperationKind, RestoreFeed, StoreError};
use crate::dictionary::{Row, Table, Value};

/// Every id of a parent table, for the check of each row.
pub(super) trait Ids {
    /// Whether `id` is one of them.
    fn has(&self, id: i32) -> bool;
}

impl Ids for IdBitmap {
    fn has(&self, id: i32) -> bool {
        self.contains(id)
    }
}

/// The writes of one restore, in one transaction (rolled back when the
/// target is dropped without [`RestoreTarget::commit`]).
pub(super) trait RestoreTarget: Statements {
    /// A parent's ids as this backend holds them.
    type Ids: Ids;

    /// Keeps other writers out of the table until the end.
    async fn lock(&mut self) -> Result<(), StoreError>;

    /// Every id of `parent`, or `None` when there are too many to hold:
    /// then its rows are checked by a query ([`first_orphan_sql`]).
    async fn parent_ids(&mut self, parent: Table) -> Result<Option<Self::Ids>, StoreError>;

    /// Empties the table (or makes the copy the rows are staged in).
    async fn empty(&mut self) -> Result<(), StoreError>;

    /// Writes rows, in order; an id written twice is
    /// [`StoreError::Refused`] (here or by [`RestoreTarget::end_writes`]).
    async fn write(&mut self, rows: Vec<Row>) -> Result<(), StoreError>;

    /// After the last row.
    async fn end_writes(&mut self) -> Result<(), StoreError>;

    /// The table the rows were written into, quoted: the table itself, or
    /// the copy they are staged in.
    fn written_into(&self) -> String;

    /// The first row of a query of two integer columns, the second one
    /// possibly NULL.
    async fn two_ints(&mut self, sql: &str) -> Result<Option<(i64, Option<i64>)>, StoreError>;

    /// Makes the rows written the table's, for good.
    async fn commit(self) -> Result<(), StoreError>;
}

/// Replaces the rows of `table` with those of `rows` (from `source`,
/// `backup:<name>`) through `target`; returns the rows written and the
/// restore's history entry, whose lineage is one run over every id: each
/// row of the table is now the restore's.
pub(super) async fn run<T: RestoreTarget>(
    mut target: T,
    d: Dialect,
    table: Table,
    source: &str,
    mut rows: RestoreFeed,
) -> Result<(u64, i64), StoreError> {
    target.lock().await?;
    let mut in_memory = Vec::new();
    let mut by_query = Vec::new();
    for (i, column, parent) in table.foreign_keys() {
        match target.parent_ids(parent).await? {
            Some(ids) => in_memory.push((i, column.name, parent, ids)),
            None => by_query.push((column.name, parent)),
        }
    }
    target.empty().await?;
    let mut written = 0u64;
    let mut ids: Option<(i32, i32)> = None;
    loop {
        match rows.recv().await {
            Some(Feed::Rows(batch)) => {
                for row in &batch {
                    let id = row.id();
                    ids = Some(ids.map_or((id, id), |(lo, hi)| (lo.min(id), hi.max(id))));
                    for (i, column, parent, ids) in &in_memory {
                        if let Some(v) = row.0.get(*i).and_then(Value::as_int)
                            && !ids.has(v)
                        {
                            return Err(missing_parent(row.id().into(), column, v.into(), *parent));
                        }
                    }
                }
                written += batch.len() as u64;
                target.write(batch).await?;
            }
            Some(Feed::End(sent)) if sent == written => break,
            Some(Feed::End(sent)) => {
                return Err(StoreError::Refused(format!(
                    "{sent} rows were sent but {written} written"
                )));
            }
            None => return Err(StoreError::FeedInterrupted),
        }
    }
    target.end_writes().await?;
    for (column, parent) in by_query {
        let orphan = first_orphan_sql(d, table, column, parent);
        if let Some((id, Some(value))) = target.two_ints(&orphan).await? {
            return Err(missing_parent(id, column, value, parent));
        }
    }
    for child in table.children() {
        for (_, column, _) in child.foreign_keys().filter(|(_, _, p)| *p == table) {
            let orphans = orphans_sql(d, child, column.name, &target.written_into());
            let (count, example) = target.two_ints(&orphans).await?.unwrap_or((0, None));
            if count > 0 {
                return Err(StoreError::Refused(format!(
                    "{count} rows of {child} would lose their {table} (e.g. {} = {}): \
                     restore {table} from a backup that has them, or restore {child} first",
                    column.name,
                    example.unwrap_or_default()
                )));
            }
        }
    }
    let mut op = Operation::new(OperationKind::Restore, table, source);
    op.counts = [written, written, 0, 0];
    let load_id = target.int(&sql::record(d, &op)).await?;
    if let Some((first_id, last_id)) = ids {
        let run = Run {
            first_id,
            last_id,
            first_position: None,
        };
        for st in lineage::insert(d, load_id, table, &[run]) {
            target.execute(&st).await?;
        }
    }
    target.commit().await?;
    Ok((written, load_id))
}

fn missing_parent(id: i64, column: &str, value: i64, parent: Table) -> StoreError {
    StoreError::Refused(format!(
        "row id {id} has {column} {value}, which is not an id of {parent}"
    ))
}

/// The refusal of a backup in which an id appears more than once.
pub(super) fn repeated_id() -> StoreError {
    StoreError::Refused("an id appears more than once in the backup".into())
}

/// Rows of `child` whose `column` names no row of `parent` (a quoted table
/// name, or a staging table's): how many, and the smallest such value.
fn orphans_sql(d: Dialect, child: Table, column: &str, parent: &str) -> String {
    let count = match d {
        Dialect::Mssql => "COUNT_BIG(*)",
        Dialect::Sqlite | Dialect::Postgres => "COUNT(*)",
    };
    format!(
        "SELECT {count}, MIN(c.{col}) FROM {child} c WHERE NOT EXISTS \
         (SELECT 1 FROM {parent} p WHERE p.{id} = c.{col})",
        col = d.quote(column),
        child = d.quote(child.name()),
        id = d.quote("id"),
    )
}

/// A row of `table` whose `column` names no row of `parent`: its id and
/// that value.
fn first_orphan_sql(d: Dialect, table: Table, column: &str, parent: Table) -> String {
    let (id, col) = (d.quote("id"), d.quote(column));
    d.select_limited(
        &format!("t.{id}, t.{col}"),
        &format!(
            "FROM {t} t WHERE NOT EXISTS (SELECT 1 FROM {p} p WHERE p.{id} = t.{col})",
            t = d.quote(table.name()),
            p = d.quote(parent.name()),
        ),
        "1",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orphan_queries_name_the_rows_in_each_dialect() {
        assert_eq!(
            orphans_sql(
                Dialect::Mssql,
                Table::HiredEmployees,
                "department_id",
                "#hrmig_restore"
            ),
            "SELECT COUNT_BIG(*), MIN(c.[department_id]) FROM [hired_employees] c WHERE NOT EXISTS \
             (SELECT 1 FROM #hrmig_restore p WHERE p.[id] = c.[department_id])"
        );
        let sql = first_orphan_sql(
            Dialect::Sqlite,
            Table::HiredEmployees,
            "job_id",
            Table::Jobs,
        );
        assert_eq!(
            sql,
            "SELECT t.\"id\", t.\"job_id\" FROM \"hired_employees\" t WHERE NOT EXISTS \
             (SELECT 1 FROM \"jobs\" p WHERE p.\"id\" = t.\"job_id\") LIMIT 1"
        );
        assert!(
            first_orphan_sql(Dialect::Mssql, Table::HiredEmployees, "job_id", Table::Jobs)
                .starts_with("SELECT TOP (1) t.[id]")
        );
    }
}
