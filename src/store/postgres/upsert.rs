//! Rows that replace stored ones (`on_duplicate` update) on PostgreSQL: an
//! API batch's upsert in one statement, and a load's updates staged in a
//! temporary table and applied once, after the last row.
//!
//! A load's updates are not applied chunk by chunk: a big load sets the
//! table's indexes aside (see `load.rs`), and each `UPDATE … FROM` would
//! then join with the whole table. Staged, they cost one join in all.

use super::StoreError;
use super::load::{column_arrays, unnest};
use crate::dictionary::{Row, Table};
use std::collections::HashMap;
use tokio_postgres::Transaction;
use tokio_postgres::types::ToSql;

/// The staging table of a load's updates, dropped at the commit.
const STAGE: &str = "hrmig_updates";

/// `"col" = source."col"` for every column but the id.
fn assignments(table: Table, source: &str) -> String {
    let sets: Vec<String> = (table.columns().iter().enumerate())
        .filter(|(i, _)| *i != Table::PRIMARY_KEY)
        .map(|(_, c)| format!("\"{n}\" = {source}.\"{n}\"", n = c.name))
        .collect();
    sets.join(", ")
}

/// Inserts `rows` (distinct ids) or replaces the stored row of a taken id,
/// in one statement: of each id, whether it was inserted. `xmax` is 0 on
/// a row version that no transaction has replaced yet: the one an insert
/// made.
pub(super) async fn upsert(
    tx: &Transaction<'_>,
    table: Table,
    rows: &[&Row],
) -> Result<HashMap<i32, bool>, StoreError> {
    let arrays = column_arrays(table, rows);
    let params: Vec<&(dyn ToSql + Sync)> =
        arrays.iter().map(|a| &**a as &(dyn ToSql + Sync)).collect();
    let sql = format!(
        "INSERT INTO \"{t}\" ({cols}) SELECT * FROM {from}
         ON CONFLICT (\"id\") DO UPDATE SET {sets}
         RETURNING \"id\", (xmax = 0)",
        t = table.name(),
        cols = super::super::Dialect::Postgres.table_columns(table),
        from = unnest(table, &[]),
        sets = assignments(table, "EXCLUDED"),
    );
    let mut written = HashMap::with_capacity(rows.len());
    for r in tx.query(&sql, &params).await? {
        written.insert(r.try_get::<_, i32>(0)?, r.try_get::<_, bool>(1)?);
    }
    Ok(written)
}

/// A load's updates on their way to the staging table, in file order.
#[derive(Default)]
pub(super) struct UpdateStage {
    pending: Vec<Row>,
    /// Rows staged so far: the order of the next one.
    staged: i64,
}

impl UpdateStage {
    /// Updates kept before they are staged: each flush ends a `COPY`.
    const BATCH: usize = 4096;

    /// Keeps `rows`; true when enough are kept to stage them.
    pub(super) fn add(&mut self, rows: &[&Row]) -> bool {
        self.pending.extend(rows.iter().map(|r| (*r).clone()));
        self.pending.len() >= Self::BATCH
    }

    /// Writes the kept updates to the staging table (made at the first).
    pub(super) async fn flush(
        &mut self,
        tx: &Transaction<'_>,
        table: Table,
    ) -> Result<(), StoreError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        if self.staged == 0 {
            tx.batch_execute(&format!(
                "CREATE TEMP TABLE \"{STAGE}\" ON COMMIT DROP AS
                 SELECT *, 0::int8 AS \"hrmig_order\" FROM \"{}\" WITH NO DATA",
                table.name()
            ))
            .await?;
        }
        {
            let rows: Vec<&Row> = self.pending.iter().collect();
            let mut arrays = column_arrays(table, &rows);
            let order: Vec<i64> = (self.staged..).take(rows.len()).collect();
            arrays.push(Box::new(order));
            let params: Vec<&(dyn ToSql + Sync)> =
                arrays.iter().map(|a| &**a as &(dyn ToSql + Sync)).collect();
            let sql = format!(
                "INSERT INTO \"{STAGE}\" SELECT * FROM {}",
                unnest(table, &["int8[]"])
            );
            tx.execute(&sql, &params).await?;
        }
        self.staged += self.pending.len() as i64;
        self.pending.clear();
        Ok(())
    }

    /// After the last row: stages what is kept, then replaces each staged
    /// id's stored row with its last staged values.
    pub(super) async fn apply(
        &mut self,
        tx: &Transaction<'_>,
        table: Table,
    ) -> Result<(), StoreError> {
        self.flush(tx, table).await?;
        if self.staged == 0 {
            return Ok(());
        }
        let sql = format!(
            "UPDATE \"{t}\" AS t SET {sets}
             FROM (SELECT DISTINCT ON (\"id\") * FROM \"{STAGE}\"
                   ORDER BY \"id\", \"hrmig_order\" DESC) AS s
             WHERE t.\"id\" = s.\"id\"",
            t = table.name(),
            sets = assignments(table, "s"),
        );
        tx.batch_execute(&sql).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_column_but_the_id_is_replaced() {
        assert_eq!(
            assignments(Table::HiredEmployees, "s"),
            "\"name\" = s.\"name\", \"datetime\" = s.\"datetime\", \
             \"department_id\" = s.\"department_id\", \"job_id\" = s.\"job_id\""
        );
        assert_eq!(
            unnest(Table::Jobs, &["int8[]"]),
            "unnest($1::int4[], $2::text[], $3::int8[])"
        );
    }
}
