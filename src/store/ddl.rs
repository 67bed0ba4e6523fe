//! DDL for every dialect, rendered from the data dictionary plus the two
//! bookkeeping tables (rejections and load history).
//!
//! `migrations/<dialect>/0001_init.sql` holds exactly this text (a test keeps
//! them equal); the store runs it at start-up. Every statement is idempotent,
//! so running it against an existing database changes nothing.

use super::Dialect;
use crate::dictionary::{ColumnType, Table};
use std::fmt::Write;

/// Name of the rejection log table.
pub const REJECTIONS: &str = "hrmig_rejections";
/// Name of the load history table.
pub const LOADS: &str = "hrmig_loads";
/// Name of the table of idempotency keys and their stored responses.
pub const IDEMPOTENCY: &str = "hrmig_idempotency";
/// Name of the table of load jobs (loads that outlive their request).
pub const JOBS: &str = "hrmig_jobs";

/// Column types of the bookkeeping tables, which are not part of the HR
/// data dictionary.
#[derive(Clone, Copy)]
enum Sys {
    /// Generated 64-bit key.
    Serial,
    /// A key chosen by hrmig: short text.
    Key,
    Text,
    /// Short text (a name, a code, a digest): indexable everywhere.
    Name,
    BigInt,
    Json,
    Timestamp,
}

const REJECTION_COLUMNS: &[(&str, Sys, bool)] = &[
    ("id", Sys::Serial, true),
    ("table_name", Sys::Name, true),
    ("source", Sys::Text, true),
    ("position", Sys::BigInt, true),
    ("raw", Sys::Text, true),
    ("errors", Sys::Json, true),
    ("rejected_at", Sys::Timestamp, true),
];

const LOAD_COLUMNS: &[(&str, Sys, bool)] = &[
    ("id", Sys::Serial, true),
    ("table_name", Sys::Name, true),
    ("source", Sys::Text, true),
    ("sha256", Sys::Name, true),
    ("status", Sys::Name, true),
    ("rows_read", Sys::BigInt, true),
    ("inserted", Sys::BigInt, true),
    ("rejected", Sys::BigInt, true),
    ("blank", Sys::BigInt, true),
    ("message", Sys::Text, false),
    ("started_at", Sys::Timestamp, true),
    ("finished_at", Sys::Timestamp, true),
];

/// Times are UTC milliseconds: compared with a parameter in the one SQL
/// text every dialect shares.
const JOB_COLUMNS: &[(&str, Sys, bool)] = &[
    ("id", Sys::Key, true),
    ("status", Sys::Name, true),
    ("request", Sys::Text, true),
    ("tables", Sys::Text, true),
    ("progress", Sys::Text, true),
    ("error", Sys::Text, false),
    ("created_ms", Sys::BigInt, true),
    ("heartbeat_ms", Sys::BigInt, true),
];

const IDEMPOTENCY_COLUMNS: &[(&str, Sys, bool)] = &[
    ("id", Sys::Serial, true),
    ("key", Sys::Name, true),
    ("fingerprint", Sys::Name, true),
    ("response", Sys::Text, true),
    ("created_at", Sys::Timestamp, true),
];

/// The column type of a dictionary type in one dialect.
pub(super) fn column_type(d: Dialect, ty: ColumnType) -> &'static str {
    match (d, ty) {
        (Dialect::Sqlite, ColumnType::Integer) => "INTEGER",
        (Dialect::Sqlite, ColumnType::String | ColumnType::DateTime) => "TEXT",
        (Dialect::Postgres, ColumnType::Integer) => "INTEGER",
        (Dialect::Postgres, ColumnType::String) => "VARCHAR(255)",
        (Dialect::Postgres, ColumnType::DateTime) => "TIMESTAMP(3) WITH TIME ZONE",
        (Dialect::Mssql, ColumnType::Integer) => "INT",
        (Dialect::Mssql, ColumnType::String) => "NVARCHAR(255)",
        (Dialect::Mssql, ColumnType::DateTime) => "DATETIME2(3)",
    }
}

fn sys_type(d: Dialect, ty: Sys) -> &'static str {
    match (d, ty) {
        (Dialect::Sqlite, Sys::Serial) => "INTEGER PRIMARY KEY AUTOINCREMENT",
        (Dialect::Sqlite, Sys::Key) => "TEXT NOT NULL PRIMARY KEY",
        (Dialect::Sqlite, Sys::Text | Sys::Name | Sys::Json | Sys::Timestamp) => "TEXT",
        (Dialect::Sqlite, Sys::BigInt) => "INTEGER",
        (Dialect::Postgres, Sys::Serial) => "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
        (Dialect::Postgres, Sys::Key) => "VARCHAR(64) NOT NULL PRIMARY KEY",
        (Dialect::Postgres, Sys::Text) => "TEXT",
        (Dialect::Postgres, Sys::Name) => "VARCHAR(255)",
        (Dialect::Postgres, Sys::BigInt) => "BIGINT",
        (Dialect::Postgres, Sys::Json) => "JSONB",
        (Dialect::Postgres, Sys::Timestamp) => "TIMESTAMP(3) WITH TIME ZONE",
        (Dialect::Mssql, Sys::Serial) => "BIGINT IDENTITY(1,1) PRIMARY KEY",
        (Dialect::Mssql, Sys::Key) => "NVARCHAR(64) NOT NULL PRIMARY KEY",
        (Dialect::Mssql, Sys::Text | Sys::Json) => "NVARCHAR(MAX)",
        (Dialect::Mssql, Sys::Name) => "NVARCHAR(255)",
        (Dialect::Mssql, Sys::BigInt) => "BIGINT",
        (Dialect::Mssql, Sys::Timestamp) => "DATETIME2(3)",
    }
}

/// An index of a table, created with it.
struct Index {
    name: String,
    unique: bool,
    /// ` ON [table] ([column], …)`
    on: String,
}

impl Index {
    fn new(d: Dialect, table: &str, columns: &[&str], unique: bool) -> Index {
        let cols: Vec<String> = columns.iter().map(|c| d.quote(c)).collect();
        Index {
            name: format!("{table}_{}", columns.join("_")),
            unique,
            on: format!(" ON {} ({})", d.quote(table), cols.join(", ")),
        }
    }

    fn kind(&self) -> &'static str {
        if self.unique { "UNIQUE INDEX" } else { "INDEX" }
    }
}

/// Creates `table` and its indexes, each only when it does not exist yet.
///
/// On SQL Server the indexes are created in the same block as their table,
/// under the one `OBJECT_ID` check: index names are not a portable test of
/// existence there (Babelfish, for one, stores them under other names in
/// `sys.indexes`, so a name check fails every start after the first).
fn create_table(d: Dialect, out: &mut String, table: &str, body: &str, indexes: &[Index]) {
    let q = d.quote(table);
    match d {
        Dialect::Sqlite | Dialect::Postgres => {
            let _ = writeln!(out, "CREATE TABLE IF NOT EXISTS {q}{body};\n");
            for i in indexes {
                let _ = writeln!(
                    out,
                    "CREATE {} IF NOT EXISTS {}{};\n",
                    i.kind(),
                    d.quote(&i.name),
                    i.on
                );
            }
        }
        Dialect::Mssql => {
            let _ = writeln!(out, "IF OBJECT_ID(N'dbo.{table}', N'U') IS NULL\nBEGIN");
            let _ = writeln!(out, "    CREATE TABLE {q}{body};");
            for i in indexes {
                let _ = writeln!(out, "    CREATE {} {}{};", i.kind(), d.quote(&i.name), i.on);
            }
            let _ = writeln!(out, "END;\n");
        }
    }
}

/// The complete initial schema of `dialect`.
pub fn init(d: Dialect) -> String {
    let mut out = format!(
        "-- hrmig schema, {} dialect: generated from the data dictionary\n\
         -- (`hrmig schema --dialect {}`); every statement is idempotent.\n\n",
        d.name(),
        d.name()
    );
    for table in Table::ALL {
        let mut body = String::from(" (\n");
        let cols = table.columns();
        for (i, col) in cols.iter().enumerate() {
            let _ = write!(
                body,
                "    {} {} NOT NULL",
                d.quote(col.name),
                column_type(d, col.ty)
            );
            if i == Table::PRIMARY_KEY {
                body.push_str(" PRIMARY KEY");
            }
            if let Some(parent) = col.references {
                let _ = write!(
                    body,
                    " REFERENCES {} ({})",
                    d.quote(parent.name()),
                    d.quote("id")
                );
                // A restore empties a parent table and fills it again in
                // one transaction: its children are checked at the commit.
                if d == Dialect::Postgres {
                    body.push_str(" DEFERRABLE");
                }
            }
            body.push_str(if i + 1 < cols.len() { ",\n" } else { "\n)" });
        }
        // Foreign-key columns are indexed on server databases, where parent
        // deletes and restores check them. Not on SQLite: there every write
        // to a child goes through hrmig, which checks parents itself, and
        // each index costs a scattered page write per row (measured: API
        // batches 3x slower, historic loads 2x); the reports scan the table
        // whatever the indexes.
        let indexes: Vec<Index> = if d == Dialect::Sqlite {
            Vec::new()
        } else {
            table
                .foreign_keys()
                .map(|(_, col, _)| Index::new(d, table.name(), &[col.name], false))
                .collect()
        };
        create_table(d, &mut out, table.name(), &body, &indexes);
    }
    for (name, columns, idx, unique) in [
        (
            REJECTIONS,
            REJECTION_COLUMNS,
            &["table_name", "id"][..],
            false,
        ),
        (LOADS, LOAD_COLUMNS, &["table_name", "sha256"][..], false),
        (IDEMPOTENCY, IDEMPOTENCY_COLUMNS, &["key"][..], true),
        (JOBS, JOB_COLUMNS, &["created_ms"][..], false),
    ] {
        // SQLite keeps its jobs in a database file of their own (see
        // `jobs_sqlite`).
        if name != JOBS || d != Dialect::Sqlite {
            bookkeeping_table(d, &mut out, name, columns, &[(idx, unique)]);
        }
    }
    out
}

/// The jobs table of SQLite, which lives in a file beside the database:
/// a job's heartbeat must not wait behind the load it reports on, and
/// SQLite has one writer per file.
pub fn jobs_sqlite() -> String {
    let mut out = String::new();
    bookkeeping_table(
        Dialect::Sqlite,
        &mut out,
        JOBS,
        JOB_COLUMNS,
        &[(&["created_ms"], false)],
    );
    out
}

fn bookkeeping_table(
    d: Dialect,
    out: &mut String,
    name: &str,
    columns: &[(&str, Sys, bool)],
    indexes: &[(&[&str], bool)],
) {
    let mut body = String::from(" (\n");
    for (i, (col, ty, required)) in columns.iter().enumerate() {
        let _ = write!(body, "    {} {}", d.quote(col), sys_type(d, *ty));
        if !matches!(ty, Sys::Serial | Sys::Key) {
            body.push_str(if *required { " NOT NULL" } else { " NULL" });
        }
        body.push_str(if i + 1 < columns.len() { ",\n" } else { "\n)" });
    }
    let indexes: Vec<Index> = (indexes.iter())
        .map(|(columns, unique)| Index::new(d, name, columns, *unique))
        .collect();
    create_table(d, out, name, &body, &indexes);
}

/// Migration 0002: the gold-zone report views, for BI tools (Power BI
/// reads views). `year` is the UTC year of the hire.
pub fn reports(d: Dialect) -> String {
    let head = format!(
        "-- hrmig report views, {} dialect (`hrmig schema --dialect {} --reports`).\n\n",
        d.name(),
        d.name()
    );
    let body = match d {
        Dialect::Sqlite => SQLITE_VIEWS,
        Dialect::Postgres => POSTGRES_VIEWS,
        Dialect::Mssql => MSSQL_VIEWS,
    };
    head + body
}

const SQLITE_VIEWS: &str = r#"CREATE VIEW IF NOT EXISTS "gold_hires_by_quarter" AS
SELECT CAST(substr(h."datetime", 1, 4) AS INTEGER) AS "year",
       d."id" AS "department_id", d."department", j."id" AS "job_id", j."job",
       SUM(CASE WHEN substr(h."datetime", 6, 2) BETWEEN '01' AND '03' THEN 1 ELSE 0 END) AS "q1",
       SUM(CASE WHEN substr(h."datetime", 6, 2) BETWEEN '04' AND '06' THEN 1 ELSE 0 END) AS "q2",
       SUM(CASE WHEN substr(h."datetime", 6, 2) BETWEEN '07' AND '09' THEN 1 ELSE 0 END) AS "q3",
       SUM(CASE WHEN substr(h."datetime", 6, 2) BETWEEN '10' AND '12' THEN 1 ELSE 0 END) AS "q4"
FROM "hired_employees" h
JOIN "departments" d ON d."id" = h."department_id"
JOIN "jobs" j ON j."id" = h."job_id"
GROUP BY 1, d."id", j."id";

CREATE VIEW IF NOT EXISTS "gold_department_hires" AS
SELECT CAST(substr(h."datetime", 1, 4) AS INTEGER) AS "year",
       d."id", d."department", COUNT(*) AS "hired"
FROM "hired_employees" h
JOIN "departments" d ON d."id" = h."department_id"
GROUP BY 1, d."id";
"#;

const POSTGRES_VIEWS: &str = r#"CREATE OR REPLACE VIEW "gold_hires_by_quarter" AS
SELECT CAST(EXTRACT(YEAR FROM h."datetime" AT TIME ZONE 'UTC') AS INTEGER) AS "year",
       d."id" AS "department_id", d."department", j."id" AS "job_id", j."job",
       COUNT(*) FILTER (WHERE EXTRACT(QUARTER FROM h."datetime" AT TIME ZONE 'UTC') = 1) AS "q1",
       COUNT(*) FILTER (WHERE EXTRACT(QUARTER FROM h."datetime" AT TIME ZONE 'UTC') = 2) AS "q2",
       COUNT(*) FILTER (WHERE EXTRACT(QUARTER FROM h."datetime" AT TIME ZONE 'UTC') = 3) AS "q3",
       COUNT(*) FILTER (WHERE EXTRACT(QUARTER FROM h."datetime" AT TIME ZONE 'UTC') = 4) AS "q4"
FROM "hired_employees" h
JOIN "departments" d ON d."id" = h."department_id"
JOIN "jobs" j ON j."id" = h."job_id"
GROUP BY 1, d."id", d."department", j."id", j."job";

CREATE OR REPLACE VIEW "gold_department_hires" AS
SELECT CAST(EXTRACT(YEAR FROM h."datetime" AT TIME ZONE 'UTC') AS INTEGER) AS "year",
       d."id", d."department", COUNT(*) AS "hired"
FROM "hired_employees" h
JOIN "departments" d ON d."id" = h."department_id"
GROUP BY 1, d."id", d."department";
"#;

const MSSQL_VIEWS: &str = r#"IF OBJECT_ID(N'dbo.gold_hires_by_quarter', N'V') IS NULL
    EXEC(N'CREATE VIEW [gold_hires_by_quarter] AS
SELECT YEAR(h.[datetime]) AS [year],
       d.[id] AS [department_id], d.[department], j.[id] AS [job_id], j.[job],
       SUM(CASE WHEN DATEPART(quarter, h.[datetime]) = 1 THEN 1 ELSE 0 END) AS [q1],
       SUM(CASE WHEN DATEPART(quarter, h.[datetime]) = 2 THEN 1 ELSE 0 END) AS [q2],
       SUM(CASE WHEN DATEPART(quarter, h.[datetime]) = 3 THEN 1 ELSE 0 END) AS [q3],
       SUM(CASE WHEN DATEPART(quarter, h.[datetime]) = 4 THEN 1 ELSE 0 END) AS [q4]
FROM [hired_employees] h
JOIN [departments] d ON d.[id] = h.[department_id]
JOIN [jobs] j ON j.[id] = h.[job_id]
GROUP BY YEAR(h.[datetime]), d.[id], d.[department], j.[id], j.[job]');

IF OBJECT_ID(N'dbo.gold_department_hires', N'V') IS NULL
    EXEC(N'CREATE VIEW [gold_department_hires] AS
SELECT YEAR(h.[datetime]) AS [year], d.[id], d.[department], COUNT(*) AS [hired]
FROM [hired_employees] h
JOIN [departments] d ON d.[id] = h.[department_id]
GROUP BY YEAR(h.[datetime]), d.[id], d.[department]');
"#;

/// Migration 0003: the rejection log becomes a work queue (a status, and
/// the operation that resolved a rejection) and the history records what
/// kind of operation each entry is and the rows it updated. Columns added to tables that may hold
/// rows already, with defaults that describe those rows.
///
/// PostgreSQL and SQL Server check for each column; SQLite has no `ADD
/// COLUMN IF NOT EXISTS`, and runs this once, by its `user_version` (see
/// [`sqlite_runs`]).
pub fn work_queue(d: Dialect) -> String {
    let head = format!(
        "-- hrmig work queue, {} dialect: rejection statuses, operation kinds, updated rows.\n\n",
        d.name()
    );
    let added = [
        (REJECTIONS, "status", Sys::Name, "'open'"),
        (REJECTIONS, "resolved_by", Sys::BigInt, ""),
        (LOADS, "kind", Sys::Name, "'load'"),
        (LOADS, "updated", Sys::BigInt, "0"),
    ];
    let mut out = head;
    add_columns(d, &mut out, &added);
    // The queue is read by status, oldest first. On SQL Server the index is
    // created with its column (index names are not a portable existence
    // test there, see `create_table`).
    let index = Index::new(d, REJECTIONS, &["status", "id"], false);
    let _ = match d {
        Dialect::Sqlite | Dialect::Postgres => writeln!(
            out,
            "CREATE INDEX IF NOT EXISTS {}{};",
            d.quote(&index.name),
            index.on
        ),
        // Through EXEC: the batch is compiled before its first ALTER runs,
        // when the column is not there yet.
        Dialect::Mssql => writeln!(
            out,
            "IF NOT EXISTS (SELECT 1 FROM sys.columns c JOIN sys.index_columns ic\n    \
             ON ic.object_id = c.object_id AND ic.column_id = c.column_id\n    \
             WHERE c.object_id = OBJECT_ID(N'dbo.{REJECTIONS}') AND c.name = N'status')\n    \
             EXEC(N'CREATE INDEX {}{}');",
            d.quote(&index.name),
            index.on
        ),
    };
    out
}

/// Adds columns to bookkeeping tables that may hold rows already, with the
/// defaults that describe those rows (`""`: NULL): only where a column is
/// missing on PostgreSQL and SQL Server; SQLite has no `ADD COLUMN IF NOT
/// EXISTS` and runs its migrations once each, by `user_version`.
fn add_columns(d: Dialect, out: &mut String, added: &[(&str, &str, Sys, &str)]) {
    for &(table, column, ty, default) in added {
        let ty = sys_type(d, ty);
        let tail = match default {
            "" => " NULL".to_owned(),
            _ if d == Dialect::Mssql && default.starts_with('\'') => format!(
                " NOT NULL CONSTRAINT {} DEFAULT N{default}",
                d.quote(&format!("{table}_{column}_default"))
            ),
            _ if d == Dialect::Mssql => format!(
                " NOT NULL CONSTRAINT {} DEFAULT {default}",
                d.quote(&format!("{table}_{column}_default"))
            ),
            _ => format!(" NOT NULL DEFAULT {default}"),
        };
        let (t, c) = (d.quote(table), d.quote(column));
        let _ = match d {
            Dialect::Sqlite => writeln!(out, "ALTER TABLE {t} ADD COLUMN {c} {ty}{tail};\n"),
            Dialect::Postgres => writeln!(
                out,
                "ALTER TABLE {t} ADD COLUMN IF NOT EXISTS {c} {ty}{tail};\n"
            ),
            Dialect::Mssql => writeln!(
                out,
                "IF COL_LENGTH(N'dbo.{table}', N'{column}') IS NULL\n    \
                 ALTER TABLE {t} ADD {c} {ty}{tail};\n"
            ),
        };
    }
}

/// Name of the lineage table: which operation wrote which rows.
pub const LINEAGE: &str = "hrmig_lineage";

/// The lineage: one row per run of rows an operation wrote whose ids and
/// positions (line, index, rejection id) both go up by one, so that a
/// generated file or a batch of consecutive ids costs one row. A restore
/// has one run over its ids, and no position.
const LINEAGE_COLUMNS: &[(&str, Sys, bool)] = &[
    ("operation", Sys::BigInt, true),
    ("table_name", Sys::Name, true),
    ("first_id", Sys::BigInt, true),
    ("last_id", Sys::BigInt, true),
    ("first_position", Sys::BigInt, false),
];

/// Migration 0004: lineage and undo. The history records an undo (the
/// entry that undid an operation, and the rows an undo removed), and the
/// lineage table the runs of rows each operation wrote: read by id (whose
/// row is this) and by operation (what did it write).
pub fn lineage(d: Dialect) -> String {
    let mut out = format!(
        "-- hrmig lineage, {} dialect: the rows each operation wrote, and undo.\n\n",
        d.name()
    );
    let added = [
        (LOADS, "undone_by", Sys::BigInt, ""),
        (LOADS, "removed", Sys::BigInt, "0"),
    ];
    add_columns(d, &mut out, &added);
    let indexes: [(&[&str], bool); 2] = [
        (&["table_name", "first_id"], false),
        (&["operation", "first_id"], false),
    ];
    bookkeeping_table(d, &mut out, LINEAGE, LINEAGE_COLUMNS, &indexes);
    let end = out.trim_end().len();
    out.truncate(end);
    out.push('\n');
    out
}

/// Every migration of a dialect, in order: `(file name, SQL)`.
pub fn migrations(d: Dialect) -> Vec<(&'static str, String)> {
    let mut all = vec![
        ("0001_init.sql", init(d)),
        ("0002_reports.sql", reports(d)),
        ("0003_work_queue.sql", work_queue(d)),
        ("0004_lineage.sql", lineage(d)),
    ];
    if let Some(counts) = super::reports::migration(d) {
        all.push(("0005_hire_counts.sql", counts));
    }
    if let Some(packed) = super::reports::packed_changes(d) {
        all.push(("0006_hire_count_changes.sql", packed));
    }
    all
}

/// Whether SQLite runs migration `number` (from 1) on a database whose
/// `user_version` is `version`. SQLite records there the last migration
/// it ran: 0001 and 0002 are idempotent and predate the record (a
/// database made by an earlier hrmig says 0), 0003 is not idempotent
/// and runs once.
pub fn sqlite_runs(number: usize, version: i64) -> bool {
    number as i64 > version
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_match_the_dictionary() {
        for d in Dialect::ALL {
            let path = format!(
                "{}/migrations/{}/0001_init.sql",
                env!("CARGO_MANIFEST_DIR"),
                d.name()
            );
            let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                on_disk == init(d),
                "{path} differs from the dictionary; regenerate it with \
                 `cargo run -- schema --dialect {} > {path}`",
                d.name()
            );
        }
    }

    #[test]
    fn every_migration_file_holds_its_text() {
        for d in Dialect::ALL {
            for (name, sql) in migrations(d) {
                let path = format!(
                    "{}/migrations/{}/{name}",
                    env!("CARGO_MANIFEST_DIR"),
                    d.name()
                );
                let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
                assert!(on_disk == sql, "{path} differs from the text hrmig runs");
            }
        }
    }

    #[test]
    fn the_work_queue_adds_columns_only_where_they_are_missing() {
        let pg = work_queue(Dialect::Postgres);
        assert_eq!(pg.matches("ADD COLUMN IF NOT EXISTS").count(), 4, "{pg}");
        assert!(
            pg.contains("\"status\" VARCHAR(255) NOT NULL DEFAULT 'open'"),
            "{pg}"
        );
        let ms = work_queue(Dialect::Mssql);
        assert_eq!(ms.matches("IF COL_LENGTH(").count(), 4, "{ms}");
        assert!(
            ms.contains(
                "[updated] BIGINT NOT NULL CONSTRAINT [hrmig_loads_updated_default] DEFAULT 0"
            ),
            "{ms}"
        );
        assert!(ms.contains("DEFAULT N'load'"), "{ms}");
        assert!(work_queue(Dialect::Sqlite).contains("ADD COLUMN \"resolved_by\" INTEGER NULL"));
        assert!(sqlite_runs(3, 0) && sqlite_runs(3, 2) && !sqlite_runs(3, 3));
    }

    #[test]
    fn every_dialect_declares_keys_and_not_null() {
        for d in Dialect::ALL {
            let ddl = init(d);
            for table in Table::ALL {
                assert!(ddl.contains(&d.quote(table.name())), "{}", d.name());
            }
            assert_eq!(ddl.matches("REFERENCES").count(), 2);
            // The three tables of the dictionary, and the jobs' (SQLite
            // keeps those in a file of their own).
            let keys = if d == Dialect::Sqlite { 3 } else { 4 };
            assert_eq!(
                ddl.matches(" NOT NULL PRIMARY KEY").count(),
                keys,
                "{}",
                d.name()
            );
        }
        assert!(init(Dialect::Mssql).contains("[hired_employees]"));
        assert!(
            init(Dialect::Postgres).contains("\"datetime\" TIMESTAMP(3) WITH TIME ZONE NOT NULL")
        );
    }

    #[test]
    fn sqlite_keeps_its_jobs_in_a_file_of_their_own() {
        assert!(!init(Dialect::Sqlite).contains(JOBS));
        assert!(jobs_sqlite().contains("CREATE TABLE IF NOT EXISTS \"hrmig_jobs\""));
        for d in [Dialect::Postgres, Dialect::Mssql] {
            assert!(init(d).contains(&d.quote(JOBS)), "{}", d.name());
        }
    }

    #[test]
    fn sql_server_creates_indexes_with_their_table_not_by_name() {
        let ddl = init(Dialect::Mssql);
        assert!(!ddl.contains("sys.indexes"));
        // Each block: its table's existence check, the table, its indexes.
        let blocks: Vec<&str> = ddl.split("IF OBJECT_ID(").skip(1).collect();
        assert_eq!(blocks.len(), 7);
        let mut indexes = 0;
        for block in blocks {
            let table = block.split('\'').nth(1).unwrap().trim_start_matches("dbo.");
            let body = block.split("END;").next().unwrap();
            for line in body.lines().filter(|l| l.contains("INDEX")) {
                assert!(line.contains(&format!("ON [{table}]")), "{line}");
                indexes += 1;
            }
        }
        assert_eq!(indexes, 6);
    }
}
