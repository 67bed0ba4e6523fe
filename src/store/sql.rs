//! The SQL every backend shares, written once and rendered for a dialect.
//!
//! The bookkeeping (load history, rejection log, idempotency keys), the
//! reads of the API (rows, counts, reports) and the load jobs are the same
//! statements everywhere; what differs is a [`Dialect`] override:
//! placeholders (`?1` / `$1` / `@P1`), quoting, `LIMIT` or `TOP`, casts.
//! A backend only binds [`Param`]s and reads columns through [`SqlRow`].
//!
//! No parameter is ever NULL: an absent value is an empty string that the
//! statement turns into NULL or "any" itself, because some TDS servers
//! refuse an untyped NULL parameter.

use super::{
    Dialect, FeedSummary, FileLoad, HistoryStatus, LoadRecord, OperationKind, StoreError,
    TableOutcome, ddl,
};
use crate::dictionary::{ColumnType, Table, datetime};

/// A parameter of a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Param {
    /// Text.
    Text(String),
    /// A 64-bit integer.
    Int(i64),
    /// An instant, UTC milliseconds, bound as the dialect's timestamp type.
    Time(i64),
}

/// A statement and its parameters, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// The SQL text, in the dialect it was rendered for.
    pub sql: String,
    /// The values of its placeholders, the first one first.
    pub params: Vec<Param>,
    /// Whether it reads or writes the load jobs, which a backend may keep
    /// apart (SQLite does, in a database of their own).
    pub of_jobs: bool,
    dialect: Dialect,
}

impl Statement {
    /// An empty statement for `dialect`; [`Statement::bind`] adds
    /// parameters, then the SQL is set.
    pub fn new(dialect: Dialect) -> Statement {
        Statement {
            sql: String::new(),
            params: Vec::new(),
            of_jobs: false,
            dialect,
        }
    }

    /// Adds a parameter; returns its placeholder, with the cast
    /// PostgreSQL needs to infer its type where the column's type differs.
    pub fn bind(&mut self, p: Param) -> String {
        let kind = match p {
            Param::Text(_) => "text",
            Param::Int(_) => "int8",
            Param::Time(_) => "timestamptz",
        };
        self.params.push(p);
        let mark = self.dialect.placeholder(self.params.len());
        match self.dialect {
            Dialect::Postgres => format!("{mark}::{kind}"),
            Dialect::Sqlite | Dialect::Mssql => mark,
        }
    }

    /// [`Statement::bind`] of a text.
    pub fn text(&mut self, s: &str) -> String {
        self.bind(Param::Text(s.to_owned()))
    }

    /// [`Statement::bind`] of an integer.
    pub fn int(&mut self, n: i64) -> String {
        self.bind(Param::Int(n))
    }

    /// Sets the SQL text.
    pub fn sql(mut self, sql: String) -> Statement {
        self.sql = sql;
        self
    }
}

impl Dialect {
    /// The `n`th placeholder (from 1).
    pub fn placeholder(self, n: usize) -> String {
        match self {
            Dialect::Sqlite => format!("?{n}"),
            Dialect::Postgres => format!("${n}"),
            Dialect::Mssql => format!("@P{n}"),
        }
    }

    /// `SELECT {columns} {rest}` with at most `limit` rows: `TOP` in
    /// T-SQL, `LIMIT` elsewhere.
    pub fn select_limited(self, columns: &str, rest: &str, limit: &str) -> String {
        match self {
            Dialect::Mssql => format!("SELECT TOP ({limit}) {columns} {rest}"),
            Dialect::Sqlite | Dialect::Postgres => {
                format!("SELECT {columns} {rest} LIMIT {limit}")
            }
        }
    }

    /// A list of quoted column names.
    pub fn columns(self, names: &[&str]) -> String {
        let quoted: Vec<String> = names.iter().map(|n| self.quote(n)).collect();
        quoted.join(", ")
    }

    /// Every column of `table`, quoted, in dictionary order.
    pub fn table_columns(self, table: Table) -> String {
        let names: Vec<&str> = table.columns().iter().map(|c| c.name).collect();
        self.columns(&names)
    }
}

/// One row of a result, read by column index (from 0) whatever the driver.
pub trait SqlRow {
    /// An integer column of any width.
    fn int(&self, i: usize) -> Result<i64, StoreError>;
    /// A text column that is never NULL.
    fn text(&self, i: usize) -> Result<String, StoreError>;
    /// A text column that may be NULL.
    fn opt_text(&self, i: usize) -> Result<Option<String>, StoreError>;
    /// A timestamp column as canonical UTC text (`YYYY-MM-DDTHH:MM:SS.mmmZ`).
    fn time(&self, i: usize) -> Result<String, StoreError>;
    /// A dictionary column of type `ty`, as its JSON value.
    fn value(&self, i: usize, ty: ColumnType) -> Result<serde_json::Value, StoreError> {
        Ok(match ty {
            ColumnType::Integer => self.int(i)?.into(),
            ColumnType::String => self.text(i)?.into(),
            ColumnType::DateTime => self.time(i)?.into(),
        })
    }
}

/// Reads one result row into a value (a function, or a closure that knows
/// more than the row, such as the table it is from).
pub trait Read<T>: Fn(&dyn SqlRow) -> Result<T, StoreError> + Send + Sync + 'static {}

impl<T, F: Fn(&dyn SqlRow) -> Result<T, StoreError> + Send + Sync + 'static> Read<T> for F {}

/// Whether `table` has a load of this content that committed.
pub fn history_has(d: Dialect, table: Table, sha256: &str) -> Statement {
    let mut st = Statement::new(d);
    let (t, sha) = (st.text(table.name()), st.text(sha256));
    let sql = d.select_limited(
        "1",
        &format!(
            "FROM {} WHERE {} = {t} AND {} = {sha} AND {} = 'loaded'",
            d.quote(ddl::LOADS),
            d.quote("table_name"),
            d.quote("sha256"),
            d.quote("status"),
        ),
        "1",
    );
    st.sql(sql)
}

/// One entry of the load history.
pub struct HistoryEntry<'a> {
    /// The load.
    pub load: &'a FileLoad,
    /// What its producer read.
    pub summary: &'a FeedSummary,
    /// How it ended.
    pub status: HistoryStatus,
    /// Rows inserted.
    pub inserted: u64,
    /// Rows that replaced stored ones.
    pub updated: u64,
    /// Rows rejected.
    pub rejected: u64,
    /// Why it was aborted.
    pub message: Option<&'a str>,
}

impl<'a> HistoryEntry<'a> {
    /// A load that committed.
    pub fn loaded(
        load: &'a FileLoad,
        summary: &'a FeedSummary,
        inserted: u64,
        rejected: u64,
    ) -> HistoryEntry<'a> {
        HistoryEntry {
            load,
            summary,
            status: HistoryStatus::Loaded,
            inserted,
            updated: 0,
            rejected,
            message: None,
        }
    }
}

impl HistoryEntry<'_> {
    /// The entry as its columns hold it.
    fn operation(&self) -> Operation<'_> {
        Operation {
            kind: OperationKind::Load,
            table: self.load.table,
            source: &self.load.source,
            sha256: &self.summary.sha256,
            status: self.status,
            counts: [
                self.summary.rows_read,
                self.inserted,
                self.rejected,
                self.summary.blank,
            ],
            updated: self.updated,
            removed: 0,
            message: self.message,
            started_ms: datetime::parse(&self.load.started_at).unwrap_or_else(|_| now_ms()),
        }
    }
}

/// Adds an entry to the load history, finished now.
pub fn insert_history(d: Dialect, e: &HistoryEntry<'_>) -> Statement {
    let mut st = Statement::new(d);
    let values = history_values(&mut st, &e.operation());
    let sql = format!("{} VALUES ({values})", into_history(d));
    st.sql(sql)
}

/// Adds an operation to the history; the statement returns the entry's
/// id (the operation's), for the lineage of the rows it writes.
pub fn record(d: Dialect, op: &Operation<'_>) -> Statement {
    let mut st = Statement::new(d);
    let values = history_values(&mut st, op);
    let sql = match d {
        Dialect::Mssql => format!("{} OUTPUT inserted.[id] VALUES ({values})", into_history(d)),
        Dialect::Sqlite | Dialect::Postgres => {
            format!(
                "{} VALUES ({values}) RETURNING {}",
                into_history(d),
                d.quote("id")
            )
        }
    };
    st.sql(sql)
}

/// Records one table of an API batch, as it came to (see [`record`]).
pub fn record_batch(d: Dialect, source: &str, done: &TableOutcome) -> Statement {
    let mut op = Operation::new(OperationKind::Batch, done.table, source);
    op.counts = [done.received, done.inserted, done.rejected.len() as u64, 0];
    op.updated = done.updated;
    record(d, &op)
}

/// Sets what a load came to on the entry [`record`]ed at its start (with
/// nothing counted): the entry commits with the rows, or neither does.
pub fn finish_history(d: Dialect, id: i64, e: &HistoryEntry<'_>) -> Statement {
    let mut st = Statement::new(d);
    let op = e.operation();
    let mut sets = vec![
        format!("{} = {}", d.quote("sha256"), st.text(op.sha256)),
        format!("{} = {}", d.quote("status"), st.text(op.status.as_str())),
    ];
    for (column, n) in ["rows_read", "inserted", "rejected", "blank"]
        .into_iter()
        .zip(op.counts)
        .chain([("updated", op.updated)])
    {
        sets.push(format!("{} = {}", d.quote(column), st.int(n as i64)));
    }
    sets.push(format!(
        "{} = {}",
        d.quote("finished_at"),
        st.bind(Param::Time(now_ms()))
    ));
    let id = st.int(id);
    let sql = format!(
        "UPDATE {} SET {} WHERE {} = {id}",
        d.quote(ddl::LOADS),
        sets.join(", "),
        d.quote("id")
    );
    st.sql(sql)
}

/// Opens the history entry of an operation on rows of the rejection log (a
/// retry or a fix) with nothing counted yet, unless `table` has an entry
/// of `source` already: a retry runs in rounds, one transaction each, and
/// is one operation. No file, so no digest.
pub fn open_operation(d: Dialect, kind: OperationKind, table: Table, source: &str) -> Statement {
    let mut st = Statement::new(d);
    let values = history_values(&mut st, &Operation::new(kind, table, source));
    let (s, t) = (st.text(source), st.text(table.name()));
    let sql = format!(
        "{} SELECT {values} WHERE NOT EXISTS (SELECT 1 FROM {} WHERE {} = {s} AND {} = {t})",
        into_history(d),
        d.quote(ddl::LOADS),
        d.quote("source"),
        d.quote("table_name"),
    );
    st.sql(sql)
}

/// The id of the entry of `source` for `table` (see [`open_operation`]).
pub fn operation_id(d: Dialect, table: Table, source: &str) -> Statement {
    let mut st = Statement::new(d);
    let (s, t) = (st.text(source), st.text(table.name()));
    let sql = format!(
        "SELECT MAX({}) FROM {} WHERE {} = {s} AND {} = {t}",
        d.quote("id"),
        d.quote(ddl::LOADS),
        d.quote("source"),
        d.quote("table_name"),
    );
    st.sql(sql)
}

/// Counts into the entry of `source` what one round of it did (`set`:
/// the totals instead, once every round has run).
pub fn count_operation(
    d: Dialect,
    table: Table,
    source: &str,
    [checked, inserted, still_rejected]: [u64; 3],
    set: bool,
) -> Statement {
    let mut st = Statement::new(d);
    let counted = |st: &mut Statement, column: &str, n: u64| {
        let n = st.int(n as i64);
        let c = d.quote(column);
        match set {
            true => format!("{c} = {n}"),
            false => format!("{c} = {c} + {n}"),
        }
    };
    let mut sets = vec![
        counted(&mut st, "rows_read", checked),
        counted(&mut st, "rejected", still_rejected),
    ];
    if !set {
        sets.push(counted(&mut st, "inserted", inserted));
    }
    let finished = st.bind(Param::Time(now_ms()));
    sets.push(format!("{} = {finished}", d.quote("finished_at")));
    let (s, t) = (st.text(source), st.text(table.name()));
    let sql = format!(
        "UPDATE {} SET {} WHERE {} = {s} AND {} = {t}",
        d.quote(ddl::LOADS),
        sets.join(", "),
        d.quote("source"),
        d.quote("table_name"),
    );
    st.sql(sql)
}

/// A history entry as its columns hold it: an operation.
pub struct Operation<'a> {
    /// What kind of operation.
    pub kind: OperationKind,
    /// The table it wrote.
    pub table: Table,
    /// Where its rows came from (see [`LoadRecord::source`]).
    pub source: &'a str,
    /// A file's digest; empty for other kinds.
    pub sha256: &'a str,
    /// How it ended.
    pub status: HistoryStatus,
    /// Rows read, inserted, rejected, blank.
    pub counts: [u64; 4],
    /// Rows that replaced stored ones.
    pub updated: u64,
    /// Rows an undo removed.
    pub removed: u64,
    /// Why it was aborted.
    pub message: Option<&'a str>,
    /// When it started, UTC milliseconds.
    pub started_ms: i64,
}

impl<'a> Operation<'a> {
    /// An operation starting now, with nothing counted yet.
    pub fn new(kind: OperationKind, table: Table, source: &'a str) -> Operation<'a> {
        Operation {
            kind,
            table,
            source,
            sha256: "",
            status: HistoryStatus::Loaded,
            counts: [0; 4],
            updated: 0,
            removed: 0,
            message: None,
            started_ms: now_ms(),
        }
    }
}

/// The values of a history entry bound to `st`, in the order of
/// [`LOAD_COLUMNS`] after the id.
fn history_values(st: &mut Statement, e: &Operation<'_>) -> String {
    let mut values = vec![
        st.text(e.table.name()),
        st.text(e.source),
        st.text(e.sha256),
        st.text(e.status.as_str()),
    ];
    values.extend(e.counts.map(|n| st.int(n as i64)));
    values.extend([
        format!("NULLIF({}, '')", st.text(e.message.unwrap_or(""))),
        st.bind(Param::Time(e.started_ms)),
        st.bind(Param::Time(now_ms())),
        st.text(e.kind.as_str()),
        st.int(e.updated as i64),
        st.int(e.removed as i64),
    ]);
    values.join(", ")
}

/// `INSERT INTO` the history's columns after the id.
fn into_history(d: Dialect) -> String {
    format!(
        "INSERT INTO {} ({})",
        d.quote(ddl::LOADS),
        d.columns(&LOAD_COLUMNS[1..])
    )
}

/// The columns of the load history, in [`LoadRecord`]'s order (read with
/// `undone_by` after them).
const LOAD_COLUMNS: [&str; 15] = [
    "id",
    "table_name",
    "source",
    "sha256",
    "status",
    "rows_read",
    "inserted",
    "rejected",
    "blank",
    "message",
    "started_at",
    "finished_at",
    "kind",
    "updated",
    "removed",
];

/// The columns [`load_record`] reads: every one of [`LOAD_COLUMNS`], then
/// `undone_by` with 0 for none (no parameter or column is ever NULL).
pub(super) fn load_columns(d: Dialect, alias: &str) -> String {
    let mut out: Vec<String> = (LOAD_COLUMNS.iter())
        .map(|c| format!("{alias}{}", d.quote(c)))
        .collect();
    out.push(format!("COALESCE({alias}{}, 0)", d.quote("undone_by")));
    out.join(", ")
}

/// The newest `limit` entries of the load history (of one table, of one
/// source: empty for any), newest first.
pub fn loads(d: Dialect, table: Option<Table>, source: &str, limit: u32) -> Statement {
    let mut st = Statement::new(d);
    let limit = st.int(i64::from(limit));
    let table = st.text(table.map(Table::name).unwrap_or(""));
    let source = st.text(source);
    let rest = format!(
        "FROM {} WHERE ({table} = '' OR {} = {table}) AND ({source} = '' OR {} = {source}) \
         ORDER BY {} DESC",
        d.quote(ddl::LOADS),
        d.quote("table_name"),
        d.quote("source"),
        d.quote("id")
    );
    let sql = d.select_limited(&load_columns(d, ""), &rest, &limit);
    st.sql(sql)
}

/// The history entry with this id.
pub fn load_by_id(d: Dialect, id: i64) -> Statement {
    let mut st = Statement::new(d);
    let id = st.int(id);
    let sql = format!(
        "SELECT {} FROM {} WHERE {} = {id}",
        load_columns(d, ""),
        d.quote(ddl::LOADS),
        d.quote("id")
    );
    st.sql(sql)
}

/// A name the database keeps (a status, a kind), read back; one this build
/// does not know is the database's fault, named with its table and column.
pub(super) fn stored<T>(
    table: &str,
    column: &str,
    text: String,
    parse: fn(&str) -> Option<T>,
) -> Result<T, StoreError> {
    parse(&text).ok_or_else(|| StoreError::Task(format!("{table} holds a {column} {text:?}")))
}

/// Reads a row of [`loads`].
pub fn load_record(r: &dyn SqlRow) -> Result<LoadRecord, StoreError> {
    Ok(LoadRecord {
        id: r.int(0)?,
        table: r.text(1)?,
        source: r.text(2)?,
        sha256: r.text(3)?,
        status: stored(ddl::LOADS, "status", r.text(4)?, HistoryStatus::parse)?,
        rows_read: r.int(5)?,
        inserted: r.int(6)?,
        rejected: r.int(7)?,
        blank: r.int(8)?,
        message: r.opt_text(9)?,
        started_at: r.time(10)?,
        finished_at: r.time(11)?,
        kind: stored(ddl::LOADS, "kind", r.text(12)?, OperationKind::parse)?,
        updated: r.int(13)?,
        removed: r.int(14)?,
        undone_by: Some(r.int(15)?).filter(|&id| id != 0),
    })
}

/// Rows of `table` with ids above `after_id`, in id order.
pub fn rows(d: Dialect, table: Table, after_id: i64, limit: u32) -> Statement {
    let mut st = Statement::new(d);
    let after = st.int(after_id);
    let limit = st.int(i64::from(limit));
    let id = d.quote("id");
    let rest = format!(
        "FROM {} WHERE {id} > {after} ORDER BY {id}",
        d.quote(table.name())
    );
    let sql = d.select_limited(&d.table_columns(table), &rest, &limit);
    st.sql(sql)
}

/// The number of rows of `table`.
pub fn count(d: Dialect, table: Table) -> Statement {
    let count = match d {
        Dialect::Mssql => "COUNT_BIG(*)",
        Dialect::Sqlite | Dialect::Postgres => "COUNT(*)",
    };
    Statement::new(d).sql(format!("SELECT {count} FROM {}", d.quote(table.name())))
}

/// The fingerprint and response stored under an idempotency key.
pub fn idempotency_seen(d: Dialect, key: &str) -> Statement {
    let mut st = Statement::new(d);
    let key = st.text(key);
    let sql = format!(
        "SELECT {} FROM {} WHERE {} = {key}",
        d.columns(&["fingerprint", "response"]),
        d.quote(ddl::IDEMPOTENCY),
        d.quote("key"),
    );
    st.sql(sql)
}

/// Stores a key with its fingerprint and response.
pub fn idempotency_insert(d: Dialect, key: &str, fingerprint: &str, response: &str) -> Statement {
    let mut st = Statement::new(d);
    let values = [
        st.text(key),
        st.text(fingerprint),
        st.text(response),
        st.bind(Param::Time(now_ms())),
    ];
    let sql = format!(
        "INSERT INTO {} ({}) VALUES ({})",
        d.quote(ddl::IDEMPOTENCY),
        d.columns(&["key", "fingerprint", "response", "created_at"]),
        values.join(", ")
    );
    st.sql(sql)
}

/// Claims a key for a batch about to run, with an empty response: one row
/// changed when it was free. A second request with the same key waits on
/// the claim until the first commits (a server database's row lock).
pub fn idempotency_claim(d: Dialect, key: &str, fingerprint: &str) -> Statement {
    let mut st = Statement::new(d);
    let (k, f, now) = (
        st.text(key),
        st.text(fingerprint),
        st.bind(Param::Time(now_ms())),
    );
    let t = d.quote(ddl::IDEMPOTENCY);
    let columns = d.columns(&["key", "fingerprint", "response", "created_at"]);
    let sql = match d {
        Dialect::Mssql => format!(
            "INSERT INTO {t} ({columns}) SELECT {k}, {f}, N'', {now} WHERE NOT EXISTS \
             (SELECT 1 FROM {t} WITH (UPDLOCK, HOLDLOCK) WHERE [key] = {k})"
        ),
        Dialect::Sqlite | Dialect::Postgres => format!(
            "INSERT INTO {t} ({columns}) VALUES ({k}, {f}, '', {now}) \
             ON CONFLICT ({}) DO NOTHING",
            d.quote("key")
        ),
    };
    st.sql(sql)
}

/// Stores the response of a batch under its claimed key.
pub fn idempotency_respond(d: Dialect, key: &str, response: &str) -> Statement {
    let mut st = Statement::new(d);
    let (key, response) = (st.text(key), st.text(response));
    let sql = format!(
        "UPDATE {} SET {} = {response} WHERE {} = {key}",
        d.quote(ddl::IDEMPOTENCY),
        d.quote("response"),
        d.quote("key"),
    );
    st.sql(sql)
}

/// Now, in UTC milliseconds.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::super::reports;
    use super::*;

    /// Every placeholder of a statement is there once per parameter, in
    /// the dialect's form, and none beyond.
    fn numbered(st: &Statement) {
        let d = st.dialect;
        for n in 1..=st.params.len() {
            assert!(st.sql.contains(&d.placeholder(n)), "{n}: {}", st.sql);
        }
        assert!(
            !st.sql.contains(&d.placeholder(st.params.len() + 1)),
            "{}",
            st.sql
        );
    }

    #[test]
    fn every_statement_numbers_its_parameters_in_every_dialect() {
        let load = FileLoad {
            table: Table::Jobs,
            source: "file:jobs.csv".into(),
            force: false,
            max_rejects: None,
            started_at: "2024-01-01T00:00:00Z".into(),
            bytes: None,
            dry_run: None,
            on_duplicate: super::super::OnDuplicate::Reject,
        };
        let summary = FeedSummary {
            rows_read: 3,
            blank: 0,
            sha256: "ab".into(),
        };
        let entry = HistoryEntry {
            load: &load,
            summary: &summary,
            status: HistoryStatus::Loaded,
            inserted: 3,
            updated: 0,
            rejected: 0,
            message: None,
        };
        for d in Dialect::ALL {
            for st in [
                history_has(d, Table::Jobs, "ab"),
                insert_history(d, &entry),
                loads(d, Some(Table::Jobs), "", 5),
                open_operation(d, OperationKind::Retry, Table::Jobs, "retry:x"),
                count_operation(d, Table::Jobs, "retry:x", [3, 2, 1], false),
                count_operation(d, Table::Jobs, "retry:x", [3, 2, 1], true),
                rows(d, Table::HiredEmployees, 7, 10),
                count(d, Table::Jobs),
                reports::hires_by_quarter(d, 2021),
                reports::departments_above_mean(d, 2021),
                idempotency_seen(d, "k"),
                idempotency_insert(d, "k", "f", "{}"),
                idempotency_claim(d, "k", "f"),
                idempotency_respond(d, "k", "{}"),
            ] {
                numbered(&st);
            }
        }
    }

    #[test]
    fn limits_are_top_in_t_sql_and_limit_elsewhere() {
        let sql = loads(Dialect::Mssql, None, "", 5).sql;
        assert!(sql.starts_with("SELECT TOP (@P1) [id]"), "{sql}");
        let sql = loads(Dialect::Sqlite, None, "", 5).sql;
        assert!(sql.ends_with("LIMIT ?1"), "{sql}");
        let sql = rows(Dialect::Postgres, Table::Jobs, 0, 5).sql;
        assert!(sql.contains("\"id\" > $1::int8"), "{sql}");
        assert!(sql.ends_with("LIMIT $2::int8"), "{sql}");
    }

    #[test]
    fn an_absent_filter_or_message_is_an_empty_text_not_a_null() {
        let st = loads(Dialect::Mssql, None, "", 5);
        assert_eq!(st.params[1], Param::Text(String::new()));
        assert!(
            st.sql.contains("(@P2 = '' OR [table_name] = @P2)"),
            "{}",
            st.sql
        );
    }
}
