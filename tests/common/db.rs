//! Which backend this run of the conformance suite is against, and a fresh
//! database on it for each test.
//!
//! The conformance suite (tests/api.rs, load.rs, backup.rs, jobs.rs) runs
//! against SQLite, and against PostgreSQL when
//! `HRMIG_TEST_DATABASE=postgres` (`scripts/test` runs it both ways): each
//! test then gets a schema of its own in the server at
//! `HRMIG_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`).
//! With `HRMIG_TEST_DATABASE=mssql` each test creates a database of its own
//! on the SQL Server at `HRMIG_TEST_MSSQL_URL`
//! (`mssql://USER:PASSWORD@HOST[:PORT]/master[?trust_server_certificate=true]`).

use super::servers::{fresh_postgres_schema, mssql_client};

/// Whether this run of the suite is against PostgreSQL.
pub fn postgres() -> bool {
    std::env::var("HRMIG_TEST_DATABASE").is_ok_and(|v| v == "postgres")
}

/// Whether this run of the suite is against SQL Server.
pub fn mssql() -> bool {
    std::env::var("HRMIG_TEST_DATABASE").is_ok_and(|v| v == "mssql")
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
