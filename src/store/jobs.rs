//! Load jobs as the database keeps them: one row per job, written by the
//! instance that runs it and read by every instance, so that a job started
//! through one instance can be watched through another.
//!
//! The statements are written once and rendered for a dialect (its
//! placeholders and quoting); a backend only runs them, through
//! `execute` and `query`, where it keeps the jobs. Times are UTC milliseconds and every
//! parameter is text or a number, never a NULL (see `super::sql`).

use super::sql::{Param, SqlRow, Statement};
use super::{Dialect, StoreError, ddl};

/// A job's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRecord {
    /// The job's id.
    pub id: String,
    /// `queued`, `running`, `done` or `failed` (a `running` job whose
    /// heartbeat stopped is reported `interrupted` by the operations).
    pub status: String,
    /// What to load (JSON, written by the operations).
    pub request: String,
    /// The reports of the files loaded so far (a JSON array).
    pub tables: String,
    /// The file being read and how far (JSON, or `null`).
    pub progress: String,
    /// Why the job failed.
    pub error: Option<String>,
    /// When it was created.
    pub created_ms: i64,
    /// When its runner last said it was alive.
    pub heartbeat_ms: i64,
}

/// Reads a row of [`select`].
pub fn record(r: &dyn SqlRow) -> Result<JobRecord, StoreError> {
    Ok(JobRecord {
        id: r.text(0)?,
        status: r.text(1)?,
        request: r.text(2)?,
        tables: r.text(3)?,
        progress: r.text(4)?,
        error: r.opt_text(5)?,
        created_ms: r.int(6)?,
        heartbeat_ms: r.int(7)?,
    })
}

fn statement(d: Dialect, sql: String, params: Vec<Param>) -> Statement {
    let mut st = Statement::new(d);
    st.params = params;
    st.of_jobs = true;
    st.sql(sql)
}

fn text(s: &str) -> Param {
    Param::Text(s.to_owned())
}

/// Records a new job, `queued`.
pub fn insert(d: Dialect, id: &str, request: &str, now_ms: i64) -> Statement {
    let sql = format!(
        "INSERT INTO {} (id, status, request, tables, progress, error, created_ms, heartbeat_ms) \
         VALUES ({}, 'queued', {}, '[]', 'null', NULL, {}, {})",
        d.quote(ddl::JOBS),
        d.placeholder(1),
        d.placeholder(2),
        d.placeholder(3),
        d.placeholder(3),
    );
    statement(d, sql, vec![text(id), text(request), Param::Int(now_ms)])
}

/// Takes a job to run: one that is queued, or whose runner's heartbeat is
/// older than `stale_before_ms` (its process died), or, when `failed_too`,
/// one that failed. One statement, so two instances never both take it:
/// the one whose update changed the row runs the job.
pub fn claim(
    d: Dialect,
    id: &str,
    now_ms: i64,
    stale_before_ms: i64,
    failed_too: bool,
) -> Statement {
    let failed = if failed_too {
        " OR status = 'failed'"
    } else {
        ""
    };
    let sql = format!(
        "UPDATE {} SET status = 'running', heartbeat_ms = {now}, error = NULL \
         WHERE id = {id} AND (status = 'queued' OR (status = 'running' AND heartbeat_ms < {stale}){failed})",
        d.quote(ddl::JOBS),
        id = d.placeholder(1),
        now = d.placeholder(2),
        stale = d.placeholder(3),
    );
    statement(
        d,
        sql,
        vec![text(id), Param::Int(now_ms), Param::Int(stale_before_ms)],
    )
}

/// The runner's heartbeat, with the job's reports and progress so far.
/// Changes nothing once the job has ended.
pub fn beat(d: Dialect, id: &str, tables: &str, progress: &str, now_ms: i64) -> Statement {
    let sql = format!(
        "UPDATE {} SET tables = {}, progress = {}, heartbeat_ms = {} \
         WHERE id = {} AND status = 'running'",
        d.quote(ddl::JOBS),
        d.placeholder(2),
        d.placeholder(3),
        d.placeholder(4),
        d.placeholder(1),
    );
    statement(
        d,
        sql,
        vec![text(id), text(tables), text(progress), Param::Int(now_ms)],
    )
}

/// Ends a job: `done`, or `failed` with a message (an empty message is
/// none).
pub fn finish(
    d: Dialect,
    id: &str,
    status: &str,
    tables: &str,
    error: &str,
    now_ms: i64,
) -> Statement {
    let sql = format!(
        "UPDATE {} SET status = {}, tables = {}, progress = 'null', error = NULLIF({}, ''), \
         heartbeat_ms = {} WHERE id = {}",
        d.quote(ddl::JOBS),
        d.placeholder(2),
        d.placeholder(3),
        d.placeholder(4),
        d.placeholder(5),
        d.placeholder(1),
    );
    statement(
        d,
        sql,
        vec![
            text(id),
            text(status),
            text(tables),
            text(error),
            Param::Int(now_ms),
        ],
    )
}

/// The columns of [`JobRecord`], in its field order.
const COLUMNS: &str = "id, status, request, tables, progress, error, created_ms, heartbeat_ms";

/// One job's row.
pub fn select(d: Dialect, id: &str) -> Statement {
    let sql = format!(
        "SELECT {COLUMNS} FROM {} WHERE id = {}",
        d.quote(ddl::JOBS),
        d.placeholder(1),
    );
    statement(d, sql, vec![text(id)])
}

/// The newest `limit` jobs, newest first (by the index on `created_ms`).
pub fn recent(d: Dialect, limit: u32) -> Statement {
    let rest = format!("FROM {} ORDER BY created_ms DESC, id", d.quote(ddl::JOBS));
    let sql = d.select_limited(COLUMNS, &rest, &d.placeholder(1));
    statement(d, sql, vec![Param::Int(i64::from(limit))])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_dialect_numbers_its_parameters_in_order() {
        for d in Dialect::ALL {
            for st in [
                insert(d, "j", "{}", 1),
                claim(d, "j", 2, 1, true),
                beat(d, "j", "[]", "null", 3),
                finish(d, "j", "done", "[]", "", 4),
                select(d, "j"),
                recent(d, 5),
            ] {
                let (sql, params) = (&st.sql, &st.params);
                for n in 1..=params.len() {
                    assert!(
                        sql.contains(&d.placeholder(n)),
                        "{} lacks {n}: {sql}",
                        d.name()
                    );
                }
                assert!(!sql.contains(&d.placeholder(params.len() + 1)), "{sql}");
            }
        }
        assert!(
            claim(Dialect::Postgres, "j", 2, 1, false)
                .sql
                .contains("$3")
        );
        assert!(
            !claim(Dialect::Mssql, "j", 2, 1, false)
                .sql
                .contains("'failed'")
        );
        assert!(
            claim(Dialect::Mssql, "j", 2, 1, true)
                .sql
                .contains("'failed'")
        );
    }
}
