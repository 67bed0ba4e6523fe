//! Which operation wrote which rows, in every dialect.
//!
//! Every operation that writes rows (a load, one table of an API batch, a
//! retry, a fix, a restore) has a history entry, whose id is the
//! operation's. The rows it wrote are kept as runs in the lineage table:
//! a run is a stretch of rows whose ids and positions (line of the file,
//! index in the batch, id of the rejection) both go up by one, so a
//! generated file or a batch of consecutive ids costs one row of lineage
//! however long it is. A row's origin is the latest operation, not undone,
//! with a run over its id.

use super::sql::{self, SqlRow, Statement};
use super::{Dialect, LoadRecord, OperationKind, StoreError, ddl};
use crate::dictionary::Table;

/// Rows an operation wrote, with consecutive ids and positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Run {
    pub(super) first_id: i32,
    pub(super) last_id: i32,
    /// The position of the first (the others follow it); none for a
    /// restore, whose rows come in id order from a backup.
    pub(super) first_position: Option<i64>,
}

/// The columns a lineage row is written with.
const LINEAGE_COLUMNS: [&str; 5] = [
    "operation",
    "table_name",
    "first_id",
    "last_id",
    "first_position",
];

/// Runs written out by one statement, at most: three parameters each,
/// under SQL Server's 2 100 (and its 1 000 rows of `VALUES`).
const RUNS_PER_STATEMENT: usize = 500;

/// Runs a long operation holds before it writes them (16 bytes each): a
/// file of scattered ids, a run per row, writes its lineage every 16 384
/// rows, which on PostgreSQL means ending its `COPY` and starting another.
const RUNS_HELD: usize = 16_384;

/// The runs of an operation as its rows are written, in order.
#[derive(Debug, Default)]
pub(super) struct Runs {
    done: Vec<Run>,
    open: Option<Run>,
}

impl Runs {
    /// A row written: `id` at `position`.
    pub(super) fn push(&mut self, id: i32, position: i64) {
        if let Some(run) = &mut self.open {
            let length = i64::from(run.last_id) - i64::from(run.first_id) + 1;
            let next = run.first_position.map(|p| p + length);
            if run.last_id.checked_add(1) == Some(id) && next == Some(position) {
                run.last_id = id;
                return;
            }
            self.done.push(*run);
        }
        self.open = Some(Run {
            first_id: id,
            last_id: id,
            first_position: Some(position),
        });
    }

    /// The runs that can no longer grow, once [`RUNS_HELD`] of them wait:
    /// a long load writes its lineage as it goes, in bounded memory.
    pub(super) fn full(&mut self) -> Option<Vec<Run>> {
        (self.done.len() >= RUNS_HELD).then(|| std::mem::take(&mut self.done))
    }

    /// Every run not taken yet, the last one too.
    pub(super) fn finish(mut self) -> Vec<Run> {
        self.done.extend(self.open.take());
        self.done
    }
}

/// The position a row of a batch is kept at: its index, or, for rows of
/// the rejection log checked again, the id of the rejection it came from
/// (`rejections` holds them by index).
pub(super) fn position(
    index: u64,
    rejections: Option<&[(i64, Vec<crate::dictionary::FieldError>)]>,
) -> i64 {
    match rejections.and_then(|r| r.get(index as usize)) {
        Some((id, _)) => *id,
        None => index as i64,
    }
}

/// Writes the runs of operation `operation` on `table`.
pub(super) fn insert(d: Dialect, operation: i64, table: Table, runs: &[Run]) -> Vec<Statement> {
    if d == Dialect::Postgres {
        return (!runs.is_empty())
            .then(|| insert_arrays(operation, table, runs))
            .into_iter()
            .collect();
    }
    runs.chunks(RUNS_PER_STATEMENT)
        .map(|group| {
            let mut st = Statement::new(d);
            let (op, t) = (st.int(operation), st.text(table.name()));
            let values: Vec<String> = (group.iter())
                .map(|run| {
                    let position = match run.first_position {
                        Some(p) => st.int(p),
                        None => "NULL".to_owned(),
                    };
                    format!(
                        "({op}, {t}, {}, {}, {position})",
                        st.int(run.first_id.into()),
                        st.int(run.last_id.into())
                    )
                })
                .collect();
            let sql = format!(
                "INSERT INTO {} ({}) VALUES {}",
                d.quote(ddl::LINEAGE),
                d.columns(&LINEAGE_COLUMNS),
                values.join(", ")
            );
            st.sql(sql)
        })
        .collect()
}

/// On PostgreSQL every run in one statement of one shape, each column an
/// array literal that the server reads: five parameters whatever the
/// number of runs (a batch prepares it once per connection), where 500
/// runs of `VALUES` (1 500 parameters) took as long to parse as to run.
fn insert_arrays(operation: i64, table: Table, runs: &[Run]) -> Statement {
    let mut st = Statement::new(Dialect::Postgres);
    let array = |value: &dyn Fn(&Run) -> String| {
        let values: Vec<String> = runs.iter().map(value).collect();
        format!("{{{}}}", values.join(","))
    };
    let (op, t) = (st.int(operation), st.text(table.name()));
    let firsts = st.text(&array(&|r| r.first_id.to_string()));
    let lasts = st.text(&array(&|r| r.last_id.to_string()));
    let positions = st.text(&array(&|r| {
        (r.first_position).map_or_else(|| "NULL".to_owned(), |p| p.to_string())
    }));
    st.sql(format!(
        "INSERT INTO {} ({}) SELECT {op}, {t}, f, l, p
         FROM unnest({firsts}::text::int8[], {lasts}::text::int8[], {positions}::text::int8[])
              AS u(f, l, p)",
        Dialect::Postgres.quote(ddl::LINEAGE),
        Dialect::Postgres.columns(&LINEAGE_COLUMNS),
    ))
}

/// Which operation last wrote a row, and where the row was in its input.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Origin {
    /// The operation: its history entry's id (`GET /api/loads`), which
    /// `POST /api/loads/{id}/undo` takes.
    pub operation: i64,
    /// What kind of operation it was.
    pub kind: OperationKind,
    /// Where its rows came from (`file:…`, `api:<batch id>`, `backup:…`,
    /// `retry:…`, `fix:…`).
    pub source: String,
    /// When it finished (UTC).
    pub at: String,
    /// The row's line in the file (from 1), for a load.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<i64>,
    /// The row's index in the batch (from 0), for an API batch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<i64>,
    /// The rejection whose row this is, for a retry or a fix.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejection: Option<i64>,
}

/// The latest run over `id` of `table` whose operation was not undone
/// (within one operation, the later position: a file that names an id
/// twice, updating, wrote it last at the second line), with its entry.
pub(super) fn origin(d: Dialect, table: Table, id: i32) -> Statement {
    let mut st = Statement::new(d);
    let (t, id) = (st.text(table.name()), st.int(id.into()));
    let q = |c: &str| d.quote(c);
    let position = format!("l.{}", q("first_position"));
    let sql = d.select_limited(
        &format!(
            "h.{id_col}, h.{kind}, h.{source}, h.{finished}, \
             COALESCE({position} + ({id} - l.{first}), -1)",
            id_col = q("id"),
            kind = q("kind"),
            source = q("source"),
            finished = q("finished_at"),
            first = q("first_id"),
        ),
        &format!(
            "FROM {l} l JOIN {h} h ON h.{id_col} = l.{op} \
             WHERE l.{table_col} = {t} AND l.{first} <= {id} AND l.{last} >= {id} \
             AND h.{undone} IS NULL ORDER BY l.{op} DESC, {position} DESC",
            l = q(ddl::LINEAGE),
            h = q(ddl::LOADS),
            id_col = q("id"),
            op = q("operation"),
            table_col = q("table_name"),
            first = q("first_id"),
            last = q("last_id"),
            undone = q("undone_by"),
        ),
        "1",
    );
    st.sql(sql)
}

/// Reads a row of [`origin`].
pub(super) fn origin_row(r: &dyn SqlRow) -> Result<Origin, StoreError> {
    let kind = sql::stored(ddl::LOADS, "kind", r.text(1)?, OperationKind::parse)?;
    let position = Some(r.int(4)?).filter(|&p| p >= 0);
    let (mut line, mut index, mut rejection) = (None, None, None);
    match kind {
        OperationKind::Load => line = position,
        OperationKind::Batch => index = position,
        OperationKind::Retry | OperationKind::Fix => rejection = position,
        OperationKind::Restore | OperationKind::Undo => {}
    }
    Ok(Origin {
        operation: r.int(0)?,
        kind,
        source: r.text(2)?,
        at: r.time(3)?,
        line,
        index,
        rejection,
    })
}

/// The statements of an undo, for an entry of the history.
pub(super) struct Undo<'a> {
    d: Dialect,
    entry: &'a LoadRecord,
    table: Table,
}

impl<'a> Undo<'a> {
    pub(super) fn new(d: Dialect, entry: &'a LoadRecord, table: Table) -> Undo<'a> {
        Undo { d, entry, table }
    }

    fn q(&self, c: &str) -> String {
        self.d.quote(c)
    }

    /// Marks the entry as being undone, unless it is already: the one
    /// undo that changes it goes on (0 until the undo's own entry exists).
    pub(super) fn claim(&self) -> Statement {
        let mut st = Statement::new(self.d);
        let id = st.int(self.entry.id);
        let sql = format!(
            "UPDATE {} SET {undone} = 0 WHERE {} = {id} AND {undone} IS NULL",
            self.q(ddl::LOADS),
            self.q("id"),
            undone = self.q("undone_by"),
        );
        st.sql(sql)
    }

    /// Keeps other writers out of the table until the commit (SQLite has
    /// one writer: nothing to lock). PostgreSQL then refreshes the
    /// statistics of the lineage (a sample, bounded whatever its size):
    /// just written, it has none, and the planner takes an operation's
    /// runs for a few.
    pub(super) fn lock(&self) -> Vec<Statement> {
        let t = self.q(self.table.name());
        let sql = match self.d {
            Dialect::Sqlite => return Vec::new(),
            Dialect::Postgres => vec![
                format!("LOCK TABLE {t} IN SHARE ROW EXCLUSIVE MODE"),
                format!("ANALYZE {}", self.q(ddl::LINEAGE)),
            ],
            Dialect::Mssql => vec![format!(
                "SELECT TOP 0 [id] FROM {t} WITH (TABLOCKX, HOLDLOCK)"
            )],
        };
        sql.into_iter()
            .map(|sql| Statement::new(self.d).sql(sql))
            .collect()
    }

    /// How many writes later operations (not undone) made to rows of this
    /// one (a run of each that overlaps a run of this counts its overlap),
    /// and the first such operation. (PostgreSQL sums BIGINTs as NUMERIC:
    /// cast back.)
    ///
    /// Driven by the later runs (`CROSS JOIN` keeps that order in SQLite):
    /// the undo of the latest operation reads none. For each later run, the
    /// runs of this operation it overlaps are found by an index range that
    /// starts at the run holding its first id (this operation's runs are
    /// disjoint: it updated nothing).
    pub(super) fn written_since(&self) -> Statement {
        let mut st = Statement::new(self.d);
        let op = st.int(self.entry.id);
        let t = st.text(self.table.name());
        let q = |c: &str| self.q(c);
        let (first, last) = (q("first_id"), q("last_id"));
        let (lower, upper) = match self.d {
            Dialect::Sqlite => (
                format!("MAX(a.{first}, b.{first})"),
                format!("MIN(a.{last}, b.{last})"),
            ),
            Dialect::Postgres => (
                format!("GREATEST(a.{first}, b.{first})"),
                format!("LEAST(a.{last}, b.{last})"),
            ),
            Dialect::Mssql => (
                format!("IIF(a.{first} > b.{first}, a.{first}, b.{first})"),
                format!("IIF(a.{last} < b.{last}, a.{last}, b.{last})"),
            ),
        };
        let sql = format!(
            "SELECT CAST(COALESCE(SUM({upper} - {lower} + 1), 0) AS BIGINT), \
             COALESCE(MIN(b.{op_col}), 0) \
             FROM {l} b CROSS JOIN {l} a JOIN {h} h ON h.{id} = b.{op_col} \
             WHERE b.{op_col} > {op} AND b.{table_col} = {t} AND h.{undone} IS NULL \
             AND a.{op_col} = {op} AND a.{first} <= b.{last} AND a.{last} >= b.{first} \
             AND a.{first} >= COALESCE((SELECT MAX(s.{first}) FROM {l} s \
             WHERE s.{op_col} = {op} AND s.{first} <= b.{first}), b.{first})",
            l = q(ddl::LINEAGE),
            h = q(ddl::LOADS),
            id = q("id"),
            op_col = q("operation"),
            table_col = q("table_name"),
            undone = q("undone_by"),
        );
        st.sql(sql)
    }

    /// How many rows of `child` name, in `column`, a row this operation
    /// wrote, and the smallest such id of a child: for each child row, the
    /// run that would hold its parent is found by one index seek.
    pub(super) fn referenced(&self, child: Table, column: &str) -> Statement {
        let mut st = Statement::new(self.d);
        let op = st.int(self.entry.id);
        let q = |c: &str| self.q(c);
        let col = format!("c.{}", q(column));
        let last = self.d.select_limited(
            &format!("a.{}", q("last_id")),
            &format!(
                "FROM {l} a WHERE a.{op_col} = {op} AND a.{first} <= {col} ORDER BY a.{first} DESC",
                l = q(ddl::LINEAGE),
                op_col = q("operation"),
                first = q("first_id"),
            ),
            "1",
        );
        let count = match self.d {
            Dialect::Mssql => "COUNT_BIG(*)",
            Dialect::Sqlite | Dialect::Postgres => "COUNT(*)",
        };
        let sql = format!(
            "SELECT {count}, COALESCE(MIN(c.{id}), 0) FROM {c} c WHERE {col} <= ({last})",
            c = q(child.name()),
            id = q("id"),
        );
        st.sql(sql)
    }

    /// The operation's runs after first id `after`, in id order, a page
    /// of [`RUNS_PER_STATEMENT`]: `(first_id, last_id)`.
    pub(super) fn runs(&self, after: i64) -> Statement {
        let mut st = Statement::new(self.d);
        let (op, after) = (st.int(self.entry.id), st.int(after));
        let q = |c: &str| self.q(c);
        let sql = self.d.select_limited(
            &format!("{}, {}", q("first_id"), q("last_id")),
            &format!(
                "FROM {} WHERE {op_col} = {op} AND {first} > {after} ORDER BY {first}",
                q(ddl::LINEAGE),
                op_col = q("operation"),
                first = q("first_id"),
            ),
            &RUNS_PER_STATEMENT.to_string(),
        );
        st.sql(sql)
    }

    /// Deletes the rows of a run, a range of the primary key.
    pub(super) fn delete_range(&self, first: i64, last: i64) -> Statement {
        let mut st = Statement::new(self.d);
        let (first, last) = (st.int(first), st.int(last));
        let sql = format!(
            "DELETE FROM {} WHERE {} BETWEEN {first} AND {last}",
            self.q(self.table.name()),
            self.q("id"),
        );
        st.sql(sql)
    }

    /// Deletes the rows of these ids (of short runs), bound as one list:
    /// every database looks each one up by the key, where a list of ranges
    /// joined by `OR` (or a join of the runs to the table) is planned as a
    /// scan of the table per range.
    pub(super) fn delete_ids(&self, ids: &[i64]) -> Statement {
        let mut st = Statement::new(self.d);
        let listed: Vec<String> = ids.iter().map(i64::to_string).collect();
        let id = self.q("id");
        let condition = match self.d {
            Dialect::Sqlite => {
                let json = st.text(&format!("[{}]", listed.join(",")));
                format!("{id} IN (SELECT value FROM json_each({json}))")
            }
            Dialect::Postgres => {
                let array = st.text(&format!("{{{}}}", listed.join(",")));
                // A join to the list, not `= ANY`: the cast array is no
                // constant, and `ANY` would compare every row to each id.
                format!("{id} IN (SELECT unnest(CAST({array} AS INTEGER[])))")
            }
            Dialect::Mssql => {
                let json = st.text(&format!("[{}]", listed.join(",")));
                format!("{id} IN (SELECT CAST([value] AS INT) FROM OPENJSON({json}))")
            }
        };
        let sql = format!(
            "DELETE FROM {} WHERE {condition}",
            self.q(self.table.name())
        );
        st.sql(sql)
    }

    /// Names the undo's own entry as the one that undid this operation.
    pub(super) fn undone_by(&self, undo: i64) -> Statement {
        let mut st = Statement::new(self.d);
        let (undo, id) = (st.int(undo), st.int(self.entry.id));
        let sql = format!(
            "UPDATE {} SET {} = {undo} WHERE {} = {id}",
            self.q(ddl::LOADS),
            self.q("undone_by"),
            self.q("id"),
        );
        st.sql(sql)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_ids_at_consecutive_positions_are_one_run() {
        let mut runs = Runs::default();
        for (id, position) in [(1, 1), (2, 2), (3, 3), (7, 4), (8, 5), (9, 7), (10, 8)] {
            runs.push(id, position);
        }
        runs.push(i32::MAX, 9);
        runs.push(i32::MIN, 10);
        let run = |a, b, p| Run {
            first_id: a,
            last_id: b,
            first_position: Some(p),
        };
        assert_eq!(
            runs.finish(),
            [
                run(1, 3, 1),
                run(7, 8, 4),
                run(9, 10, 7),
                run(i32::MAX, i32::MAX, 9),
                run(i32::MIN, i32::MIN, 10),
            ]
        );
    }

    #[test]
    fn a_long_operation_hands_its_runs_over_as_it_goes() {
        let mut runs = Runs::default();
        let mut taken = 0;
        for i in 0..40_000 {
            // Every other id: each row a run of its own.
            runs.push(i * 2, i64::from(i));
            if let Some(full) = runs.full() {
                assert_eq!(full.len(), RUNS_HELD);
                taken += full.len();
            }
        }
        assert_eq!(taken, 2 * RUNS_HELD);
        taken += runs.finish().len();
        assert_eq!(taken, 40_000);
    }

    #[test]
    fn lineage_statements_stay_under_the_parameter_limit() {
        let runs: Vec<Run> = (0..1_200)
            .map(|i| Run {
                first_id: i,
                last_id: i,
                first_position: (i % 2 == 0).then_some(i64::from(i)),
            })
            .collect();
        let sts = insert(Dialect::Mssql, 7, Table::Jobs, &runs);
        assert_eq!(sts.len(), 3);
        for st in &sts {
            assert!(
                st.params.len() <= 2 + 3 * RUNS_PER_STATEMENT,
                "{}",
                st.params.len()
            );
            assert!(st.sql.contains("NULL)"), "{}", &st.sql[..200]);
        }
    }
}
