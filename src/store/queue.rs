//! The rejection log as a work queue, in every dialect: reading it by
//! status and code, counting it, setting rejections aside, and the
//! bookkeeping of a batch that checks rejected rows again ([`Requeue`]):
//! the rows that pass are resolved by the operation that inserted them,
//! the others keep their place with the errors they have now.
//!
//! Nothing here deletes a rejection or changes its raw text.

use super::sql::{self, Param, SqlRow, Statement};
use super::{
    Dialect, OperationKind, Rejection, RejectionCount, RejectionFilter, RejectionStatus,
    StoreError, TableOutcome, ddl,
};
use crate::dictionary::{ErrorCode, FieldError};

/// Ids bound per statement that names rejections by id: under SQL
/// Server's 2 100 parameters with room to spare.
const IDS_PER_STATEMENT: usize = 500;

/// Most rejections named at once (read or dismissed by id): one statement.
pub const MAX_IDS: usize = IDS_PER_STATEMENT;

/// A batch of rows from the rejection log, checked again as they were
/// received: what the store writes instead of new rejections.
#[derive(Debug, Clone)]
pub struct Requeue {
    /// The operation: a retry or a fix.
    pub kind: OperationKind,
    /// For each table of the batch, in order, the rejection each input row
    /// came from (by position): its id and the errors it holds now.
    pub rows: Vec<Vec<(i64, Vec<FieldError>)>>,
}

/// The conditions of `filter` other than paging, as ` AND …` clauses;
/// `code` only when `with_code` (the summary groups by code instead).
fn conditions(st: &mut Statement, d: Dialect, filter: &RejectionFilter, with_code: bool) -> String {
    let mut out = String::new();
    if let Some(table) = filter.table {
        let t = st.text(table.name());
        out += &format!(" AND r.{} = {t}", d.quote("table_name"));
    }
    if let Some(source) = &filter.source {
        let s = st.text(source);
        out += &format!(" AND r.{} = {s}", d.quote("source"));
    }
    if let Some(status) = filter.status {
        let s = st.text(status.as_str());
        out += &format!(" AND r.{} = {s}", d.quote("status"));
    }
    if let Some(code) = filter.code.filter(|_| with_code) {
        out += &format!(" AND {}", has_code(st, d, code));
    }
    out
}

/// Whether rejection `r` has an error of `code`. The errors are compact
/// JSON written by hrmig, so `"code":"<code>"` appears in the text exactly
/// when an error has that code (a quote inside a message is escaped).
fn has_code(st: &mut Statement, d: Dialect, code: ErrorCode) -> String {
    match d {
        Dialect::Postgres => {
            let c = st.text(code.as_str());
            format!("r.\"errors\" @> jsonb_build_array(jsonb_build_object('code', {c}))")
        }
        Dialect::Sqlite => {
            let needle = st.text(&format!("\"code\":\"{}\"", code.as_str()));
            format!("instr(r.\"errors\", {needle}) > 0")
        }
        Dialect::Mssql => {
            let needle = st.text(&format!("\"code\":\"{}\"", code.as_str()));
            format!("CHARINDEX({needle}, r.[errors]) > 0")
        }
    }
}

/// The rejection log as `filter` asks, oldest first.
pub(super) fn rejections(d: Dialect, filter: &RejectionFilter) -> Statement {
    let mut st = Statement::new(d);
    let after = st.int(filter.after.unwrap_or(0));
    let limit = st.int(i64::from(filter.limit));
    let id = d.quote("id");
    let rest = format!(
        "FROM {} r WHERE r.{id} > {after}{} ORDER BY r.{id}",
        d.quote(ddl::REJECTIONS),
        conditions(&mut st, d, filter, true),
    );
    let sql = d.select_limited(&prefixed(d), &rest, &limit);
    st.sql(sql)
}

/// The columns [`rejection`] reads, of the alias `r`.
fn prefixed(d: Dialect) -> String {
    let names = ["id", "table_name", "source", "position", "raw"];
    let quoted: Vec<String> = names.iter().map(|n| format!("r.{}", d.quote(n))).collect();
    let errors = match d {
        Dialect::Postgres => "r.\"errors\"::text".to_owned(),
        Dialect::Sqlite | Dialect::Mssql => format!("r.{}", d.quote("errors")),
    };
    let [at, status, by] = ["rejected_at", "status", "resolved_by"].map(|n| d.quote(n));
    // No NULL reaches a reader: history ids start at 1.
    format!(
        "{}, {errors}, r.{at}, r.{status}, COALESCE(r.{by}, 0)",
        quoted.join(", ")
    )
}

/// The rejections with these ids (at most [`MAX_IDS`]), by id.
pub(super) fn by_ids(d: Dialect, ids: &[i64]) -> Statement {
    let mut st = Statement::new(d);
    let list = id_list(&mut st, ids);
    let sql = format!(
        "SELECT {} FROM {} r WHERE r.{} IN ({list}) ORDER BY r.{}",
        prefixed(d),
        d.quote(ddl::REJECTIONS),
        d.quote("id"),
        d.quote("id")
    );
    st.sql(sql)
}

fn id_list(st: &mut Statement, ids: &[i64]) -> String {
    let marks: Vec<String> = ids.iter().map(|&id| st.int(id)).collect();
    marks.join(", ")
}

/// Reads a row of [`rejections`] or [`by_ids`].
pub(super) fn rejection(r: &dyn SqlRow) -> Result<Rejection, StoreError> {
    Ok(Rejection {
        id: r.int(0)?,
        table: r.text(1)?,
        source: r.text(2)?,
        position: r.int(3)?,
        raw: r.text(4)?,
        errors: serde_json::from_str(&r.text(5)?).unwrap_or_default(),
        rejected_at: r.time(6)?,
        status: sql::stored(
            ddl::REJECTIONS,
            "status",
            r.text(7)?,
            RejectionStatus::parse,
        )?,
        resolved_by: Some(r.int(8)?).filter(|&id| id > 0),
    })
}

/// Rejections counted by table, code and status, as `filter` narrows them.
pub(super) fn summary(d: Dialect, filter: &RejectionFilter) -> Statement {
    let mut st = Statement::new(d);
    let mut cond = conditions(&mut st, d, filter, false);
    let (from, code, count, group) = match d {
        Dialect::Sqlite => (
            "\"hrmig_rejections\" r, json_each(r.\"errors\") e",
            "json_extract(e.value, '$.code')",
            "COUNT(DISTINCT r.\"id\")",
            "1, 2, 3",
        ),
        Dialect::Postgres => (
            "\"hrmig_rejections\" r CROSS JOIN LATERAL jsonb_array_elements(r.\"errors\") e",
            "e->>'code'",
            "COUNT(DISTINCT r.\"id\")",
            "1, 2, 3",
        ),
        Dialect::Mssql => (
            "[hrmig_rejections] r CROSS APPLY OPENJSON(r.[errors]) \
             WITH ([code] NVARCHAR(64) '$.code') e",
            "e.[code]",
            "COUNT_BIG(DISTINCT r.[id])",
            "r.[table_name], e.[code], r.[status]",
        ),
    };
    if let Some(c) = filter.code {
        let c = st.text(c.as_str());
        cond += &format!(" AND {code} = {c}");
    }
    let [t, s] = ["table_name", "status"].map(|c| format!("r.{}", d.quote(c)));
    let sql = format!(
        "SELECT {t}, {code}, {s}, {count} FROM {from} WHERE 1 = 1{cond} \
         GROUP BY {group} ORDER BY {t}, {code}, {s}"
    );
    st.sql(sql)
}

/// Reads a row of [`summary`].
pub(super) fn count(r: &dyn SqlRow) -> Result<RejectionCount, StoreError> {
    Ok(RejectionCount {
        table: r.text(0)?,
        code: r.text(1)?,
        status: sql::stored(
            ddl::REJECTIONS,
            "status",
            r.text(2)?,
            RejectionStatus::parse,
        )?,
        count: r.int(3)?,
    })
}

/// Sets open rejections aside (at most [`MAX_IDS`] of them); the ones
/// that are not open are left as they are.
pub(super) fn dismiss(d: Dialect, ids: &[i64]) -> Statement {
    let mut st = Statement::new(d);
    let list = id_list(&mut st, ids);
    let sql = format!(
        "UPDATE {} SET {status} = 'dismissed' WHERE {status} = 'open' AND {} IN ({list})",
        d.quote(ddl::REJECTIONS),
        d.quote("id"),
        status = d.quote("status"),
    );
    st.sql(sql)
}

/// What a requeued table of a batch writes instead of new rejections: the
/// counts of its history entry (the operation that inserted its rows,
/// `outcome.load_id`), their rejections resolved by that entry, and the errors of the rows that
/// still fail where they changed. Only open rejections are touched, so
/// two retries at once resolve a rejection once.
pub(super) fn requeued(
    d: Dialect,
    source: &str,
    kind: OperationKind,
    rows: &[(i64, Vec<FieldError>)],
    outcome: &TableOutcome,
) -> Vec<Statement> {
    let mut out = Vec::new();
    let failed: std::collections::HashMap<u64, &Vec<FieldError>> =
        outcome.rejected.iter().map(|(p, e)| (*p, e)).collect();
    let resolved: Vec<i64> = (rows.iter().enumerate())
        .filter(|(p, _)| !failed.contains_key(&(*p as u64)))
        .map(|(_, (id, _))| *id)
        .collect();
    if let Some(operation) = outcome.load_id.filter(|_| !resolved.is_empty()) {
        let table = outcome.table;
        let counts = [
            outcome.received,
            outcome.inserted,
            outcome.rejected.len() as u64,
        ];
        out.push(sql::count_operation(d, table, source, counts, false));
        for ids in resolved.chunks(IDS_PER_STATEMENT) {
            let mut st = Statement::new(d);
            let operation = st.int(operation);
            let list = id_list(&mut st, ids);
            let sql = format!(
                "UPDATE {r} SET {status} = 'resolved', {by} = {operation} \
                 WHERE {status} = 'open' AND {id} IN ({list})",
                r = d.quote(ddl::REJECTIONS),
                status = d.quote("status"),
                by = d.quote("resolved_by"),
                id = d.quote("id"),
            );
            out.push(st.sql(sql));
        }
    }
    // A fix that fails changes nothing: its errors are the corrected
    // row's, not the received one's.
    if kind == OperationKind::Fix {
        return out;
    }
    for (position, errors) in &outcome.rejected {
        let Some((id, before)) = rows.get(*position as usize) else {
            continue;
        };
        // The same rules broken: the errors as logged stay (their messages
        // name the line of the file, which a row read again has not).
        if rules(before) != rules(errors) {
            out.push(set_errors(d, *id, errors));
        }
    }
    out
}

/// The rules a row breaks: (column, code) pairs.
fn rules(errors: &[FieldError]) -> Vec<(Option<&str>, ErrorCode)> {
    errors
        .iter()
        .map(|e| (e.column.as_deref(), e.code))
        .collect()
}

/// Replaces the errors of an open rejection.
fn set_errors(d: Dialect, id: i64, errors: &[FieldError]) -> Statement {
    let mut st = Statement::new(d);
    let mut json = serde_json::to_string(errors).unwrap_or_else(|_| "[]".into());
    if d == Dialect::Postgres {
        // JSONB refuses the escape `\u0000`, as the log's writer knows.
        json = json.replace("\\u0000", "\\ufffd");
    }
    let value = match d {
        Dialect::Postgres => format!("CAST({} AS JSONB)", st.text(&json)),
        Dialect::Sqlite | Dialect::Mssql => st.text(&json),
    };
    let id = st.bind(Param::Int(id));
    let sql = format!(
        "UPDATE {} SET {} = {value} WHERE {} = {id} AND {} = 'open'",
        d.quote(ddl::REJECTIONS),
        d.quote("errors"),
        d.quote("id"),
        d.quote("status"),
    );
    st.sql(sql)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dictionary::{ErrorCode, Table};

    fn outcome(rejected: Vec<(u64, Vec<FieldError>)>) -> TableOutcome {
        TableOutcome {
            table: Table::HiredEmployees,
            received: 3,
            inserted: 3 - rejected.len() as u64,
            updated: 0,
            rejected,
            load_id: Some(5),
        }
    }

    fn fk() -> Vec<FieldError> {
        vec![FieldError::column(
            "department_id",
            ErrorCode::ForeignKey,
            "departments has no id 9",
        )]
    }

    #[test]
    fn a_requeue_resolves_the_rows_that_passed_and_rewrites_only_changed_errors() {
        let rows = vec![(11, fk()), (12, fk()), (13, fk())];
        let changed = vec![FieldError::column("id", ErrorCode::Duplicate, "taken")];
        let o = outcome(vec![(1, fk()), (2, changed)]);
        for d in Dialect::ALL {
            let sts = requeued(d, "retry:x", OperationKind::Retry, &rows, &o);
            assert_eq!(sts.len(), 3, "the counts, resolve, one changed row");
            assert!(sts[0].sql.contains("+"), "{}", sts[0].sql);
            assert_eq!(sts[1].params[0], Param::Int(5), "the operation");
            assert!(sts[1].params.contains(&Param::Int(11)));
            assert!(!sts[1].params.contains(&Param::Int(12)));
            assert!(sts[2].params.contains(&Param::Int(13)));
            assert!(sts[2].sql.contains("'open'"));
        }
    }

    #[test]
    fn a_requeue_that_inserts_nothing_records_no_operation() {
        let rows = vec![(11, fk())];
        let o = TableOutcome {
            table: Table::HiredEmployees,
            received: 1,
            inserted: 0,
            updated: 0,
            rejected: vec![(0, fk())],
            load_id: None,
        };
        assert!(requeued(Dialect::Sqlite, "fix:x", OperationKind::Fix, &rows, &o).is_empty());
    }

    #[test]
    fn codes_are_found_exactly_in_every_dialect() {
        let filter = RejectionFilter {
            code: Some(ErrorCode::TooLong),
            status: Some(RejectionStatus::Open),
            ..Default::default()
        };
        let st = rejections(Dialect::Sqlite, &filter);
        assert!(
            st.params
                .contains(&Param::Text("\"code\":\"too_long\"".into()))
        );
        let st = rejections(Dialect::Postgres, &filter);
        assert!(st.sql.contains("@> jsonb_build_array"), "{}", st.sql);
        let st = summary(Dialect::Mssql, &filter);
        assert!(st.sql.contains("OPENJSON"), "{}", st.sql);
        assert!(
            st.sql
                .contains("GROUP BY r.[table_name], e.[code], r.[status]")
        );
    }
}
