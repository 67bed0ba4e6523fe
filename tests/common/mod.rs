//! Shared helpers: a fresh database and storage folder per test.
//!
//! The conformance suite (tests/api.rs, tests/load.rs, tests/backup.rs)
//! runs against SQLite, and against PostgreSQL when
//! `HRMIG_TEST_DATABASE=postgres` (`scripts/test` runs it both ways): each
//! test then gets a schema of its own in the server at
//! `HRMIG_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`).
//! With `HRMIG_TEST_DATABASE=mssql` each test creates a database of its own
//! on the SQL Server at `HRMIG_TEST_MSSQL_URL`
//! (`mssql://USER:PASSWORD@HOST[:PORT]/master[?trust_server_certificate=true]`).
#![allow(dead_code)]

pub mod azurite;
pub mod fake;
pub mod pg_server;
pub mod serve;

use hrmig::dictionary::{ErrorCode, Table};
use hrmig::ops::load::{self, LoadReport, LoadRequest};
use hrmig::storage::Storage;
use hrmig::store::{Rejection, RejectionFilter, Store};
use std::path::PathBuf;

pub const DEPARTMENTS: &str = "1,Sales\n2,Engineering\n3,Legal\n";
pub const JOBS: &str = "1,Engineer\n2,Analyst\n";

pub struct TestEnv {
    pub dir: tempfile::TempDir,
    /// The database's URL.
    pub url: String,
    pub store: Store,
    pub landing: Storage,
}

impl TestEnv {
    pub async fn new() -> TestEnv {
        let dir = tempfile::tempdir().unwrap();
        let url = database_url(dir.path()).await;
        let store = Store::open(&url).await.unwrap();
        let landing = Storage::open(dir.path().join("storage").to_str().unwrap())
            .unwrap()
            .child("landing")
            .unwrap();
        TestEnv {
            dir,
            url,
            store,
            landing,
        }
    }

    /// A database with the two parent tables loaded.
    pub async fn with_parents() -> TestEnv {
        let env = TestEnv::new().await;
        env.write(Table::Departments, DEPARTMENTS.as_bytes());
        env.write(Table::Jobs, JOBS.as_bytes());
        env.load(&[Table::Departments, Table::Jobs]).await;
        env
    }

    pub fn landing_dir(&self) -> PathBuf {
        self.landing.local_dir().unwrap().to_owned()
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("hrmig.db")
    }

    pub fn write(&self, table: Table, content: &[u8]) {
        let dir = self.landing_dir();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{}.csv", table.name())), content).unwrap();
    }

    pub fn request(&self, tables: &[Table]) -> LoadRequest {
        LoadRequest::new(self.landing.clone(), tables.to_vec())
    }

    pub async fn load(&self, tables: &[Table]) -> Vec<LoadReport> {
        load::load(&self.store, &self.request(tables))
            .await
            .unwrap()
    }

    /// Loads one employees file and checks the conservation rule.
    pub async fn load_employees(&self, content: &[u8]) -> LoadReport {
        self.write(Table::HiredEmployees, content);
        let report = self.load(&[Table::HiredEmployees]).await.remove(0);
        assert_eq!(
            report.rows_read,
            report.inserted + report.rejected,
            "{report:?}"
        );
        report
    }

    pub async fn rejections(&self) -> Vec<Rejection> {
        self.store
            .rejections(RejectionFilter {
                limit: 10_000,
                ..Default::default()
            })
            .await
            .unwrap()
    }

    /// `(position, [(column, code)])` of every rejection, in log order.
    pub async fn rejected(&self) -> Vec<(i64, Vec<(Option<String>, ErrorCode)>)> {
        self.rejections()
            .await
            .into_iter()
            .map(|r| {
                (
                    r.position,
                    r.errors.into_iter().map(|e| (e.column, e.code)).collect(),
                )
            })
            .collect()
    }

    /// Rows of a table as text (`1,Sales`), ordered by id.
    pub async fn rows(&self, table: Table) -> Vec<String> {
        table_rows(&self.store, table).await
    }

    pub async fn ids(&self, table: Table) -> Vec<i64> {
        self.store
            .rows(table, i64::MIN, u32::MAX)
            .await
            .unwrap()
            .iter()
            .map(|r| r["id"].as_i64().unwrap())
            .collect()
    }
}

/// Rows of a table as text (`1,Sales`), ordered by id.
pub async fn table_rows(store: &Store, table: Table) -> Vec<String> {
    store
        .rows(table, i64::MIN, u32::MAX)
        .await
        .unwrap()
        .iter()
        .map(|r| {
            let fields: Vec<String> = table
                .columns()
                .iter()
                .map(|c| match &r[c.name] {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect();
            fields.join(",")
        })
        .collect()
}

/// Whether this run of the suite is against PostgreSQL.
pub fn postgres() -> bool {
    std::env::var("HRMIG_TEST_DATABASE").is_ok_and(|v| v == "postgres")
}

/// Whether this run of the suite is against SQL Server.
pub fn mssql() -> bool {
    std::env::var("HRMIG_TEST_DATABASE").is_ok_and(|v| v == "mssql")
}

/// Whether this run is against SQLite, the only backend whose files a test
/// can reach into.
pub fn sqlite() -> bool {
    !postgres() && !mssql()
}

/// The PostgreSQL server tests use.
pub fn postgres_base_url() -> String {
    std::env::var("HRMIG_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A fresh database for one test: a SQLite file in `dir`, or a new
/// PostgreSQL schema.
pub async fn database_url(dir: &std::path::Path) -> String {
    if postgres() {
        fresh_postgres_schema().await
    } else if mssql() {
        fresh_mssql_database().await
    } else {
        format!("sqlite://{}", dir.join("hrmig.db").display())
    }
}

/// Creates an empty schema and returns a URL whose connections use it.
pub async fn fresh_postgres_schema() -> String {
    let base = postgres_base_url();
    let (client, conn) = tokio_postgres::connect(&base, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {base} is not reachable: {e}"));
    tokio::spawn(conn);
    let schema = format!("hrmig_test_{}", uuid::Uuid::new_v4().simple());
    client
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .await
        .unwrap();
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}options=-c%20search_path%3D{schema}")
}

/// A connection to the SQL Server of `url` (`mssql://…`).
pub async fn mssql_client(
    url: &str,
) -> tiberius::Client<tokio_util::compat::Compat<tokio::net::TcpStream>> {
    use tokio_util::compat::TokioAsyncWriteCompatExt;
    let u = url::Url::parse(url)
        .expect("HRMIG_TEST_MSSQL_URL must be mssql://USER:PASSWORD@HOST[:PORT]/DB");
    let mut config = tiberius::Config::new();
    config.host(u.host_str().unwrap());
    config.port(u.port().unwrap_or(1433));
    config.database(u.path().trim_start_matches('/'));
    config.authentication(tiberius::AuthMethod::sql_server(
        u.username(),
        u.password().unwrap_or(""),
    ));
    if u.query_pairs()
        .any(|(k, v)| k == "trust_server_certificate" && v == "true")
    {
        config.trust_cert();
    }
    let tcp = tokio::net::TcpStream::connect(config.get_addr())
        .await
        .unwrap();
    tiberius::Client::connect(config, tcp.compat_write())
        .await
        .unwrap()
}

/// Creates an empty database and returns its URL.
pub async fn fresh_mssql_database() -> String {
    let base = std::env::var("HRMIG_TEST_MSSQL_URL")
        .expect("HRMIG_TEST_DATABASE=mssql needs HRMIG_TEST_MSSQL_URL");
    // One CREATE DATABASE at a time: concurrent ones fail on some TDS
    // servers (Babelfish: "tuple concurrently updated"). The test binaries
    // of one run go one after another, so a lock per process is enough.
    static CREATING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _one_at_a_time = CREATING.lock().await;
    let mut client = mssql_client(&base).await;
    let name = format!("hrmig_test_{}", uuid::Uuid::new_v4().simple());
    client
        .simple_query(format!("CREATE DATABASE [{name}]"))
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
    let mut u = url::Url::parse(&base).unwrap();
    u.set_path(&name);
    u.to_string()
}

/// Runs statements against the test's database directly, as another
/// program would.
pub async fn execute(url: &str, sql: &str) {
    if let Some(path) = url.strip_prefix("sqlite://") {
        let conn = rusqlite::Connection::open(path).unwrap();
        conn.execute_batch(sql).unwrap();
    } else if url.starts_with("mssql://") {
        let mut client = mssql_client(url).await;
        client
            .simple_query(sql)
            .await
            .unwrap()
            .into_results()
            .await
            .unwrap();
    } else {
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        client.batch_execute(sql).await.unwrap();
    }
}

/// On PostgreSQL, asserts that `hired_employees` has its two foreign keys
/// and three indexes (a bulk load sets them aside until its commit).
pub async fn assert_foreign_keys_declared(url: &str) {
    if postgres() {
        let n = query_i64(
            url,
            "SELECT COUNT(*) FROM pg_constraint
             WHERE conrelid = 'hired_employees'::regclass AND contype = 'f'",
        )
        .await;
        assert_eq!(n, 2, "hired_employees lost a foreign key");
        let n = query_i64(
            url,
            "SELECT COUNT(*) FROM pg_index WHERE indrelid = 'hired_employees'::regclass",
        )
        .await;
        assert_eq!(n, 3, "hired_employees lost an index");
    }
}

/// One number from a query, run against the test's database directly.
pub async fn query_i64(url: &str, sql: &str) -> i64 {
    if let Some(path) = url.strip_prefix("sqlite://") {
        let conn = rusqlite::Connection::open(path).unwrap();
        conn.query_row(sql, [], |r| r.get(0)).unwrap()
    } else if url.starts_with("mssql://") {
        let mut client = mssql_client(url).await;
        let row = client
            .simple_query(sql)
            .await
            .unwrap()
            .into_row()
            .await
            .unwrap()
            .unwrap();
        // COUNT(*) is an INT on SQL Server; `get` of the wrong type panics,
        // `try_get` says so.
        match row.try_get::<i64, _>(0) {
            Ok(Some(n)) => n,
            _ => i64::from(row.try_get::<i32, _>(0).unwrap().unwrap()),
        }
    } else {
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        client.query_one(sql, &[]).await.unwrap().get(0)
    }
}

/// The row count of `table` in a `GET /api/tables` answer.
pub fn rows_in(tables: &serde_json::Value, table: &str) -> u64 {
    let entry = tables
        .as_array()
        .and_then(|all| all.iter().find(|t| t["name"] == table));
    entry
        .and_then(|t| t["rows"].as_u64())
        .unwrap_or_else(|| panic!("no row count of {table} in {tables}"))
}

pub fn col(name: &str) -> Option<String> {
    Some(name.to_owned())
}

/// Every file below `dir`, relative to it, sorted (folders walked).
pub fn files_under(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}
