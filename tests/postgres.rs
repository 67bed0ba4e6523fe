//! What only a server database has: several service processes on one
//! database, a server that restarts or stops under load, and collations.
//!
//! These tests need PostgreSQL (`HRMIG_TEST_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`). Without one they say so
//! and pass, except under `CI=true`, where a missing server fails them. The
//! restart tests run a private server of their own (initdb + pg_ctl, as the
//! `postgres` user when run as root), so the shared one is never disturbed.

mod common {
    pub mod app;
    pub mod pg_server;
    pub mod port;
    pub mod query;
    pub mod serve;
    pub mod servers;
}

use common::app::TestApp;
use common::pg_server::private_server;
use common::serve::Serve;
use hrmig::http::Keys;

use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Whether the shared server answers; panics under CI when it does not.
async fn server_available() -> bool {
    let url = common::servers::postgres_base_url();
    match tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
        Ok(_) => true,
        Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("CI=true and PostgreSQL at {url} is not reachable: {e}")
        }
        Err(e) => {
            eprintln!(
                "\n*** SKIPPED: PostgreSQL at {url} is not reachable ({e}).\n\
                 *** Start a server or set HRMIG_TEST_POSTGRES_URL to run this test.\n"
            );
            false
        }
    }
}

/// Sums of a batch response's counts: (received, inserted, rejected).
fn counts(body: &Value) -> (u64, u64, u64) {
    let n = |k: &str| body[k].as_u64().unwrap_or_else(|| panic!("{k} in {body}"));
    let rejected = body["rejected"].as_array().map(Vec::len);
    let rejected = rejected.unwrap_or_else(|| panic!("rejected in {body}")) as u64;
    (n("received"), n("inserted"), rejected)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_insert_each_id_once() {
    if !server_available().await {
        return;
    }
    let url = common::servers::fresh_postgres_schema().await;
    let dir = tempfile::tempdir().unwrap();
    let a = Serve::start(&url, dir.path(), &[]).await;
    let b = Serve::start(&url, dir.path(), &[]).await;
    // 8 clients, 4 per instance, 12 batches each of 200 jobs; client c's
    // batch k covers ids from (c + k) * 100: every id is sent by several
    // clients, through both instances, at the same time.
    let mut tasks = Vec::new();
    for c in 0..8u64 {
        let base = if c % 2 == 0 { &a.base } else { &b.base }.clone();
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut sums = (0, 0, 0);
            for k in 0..12u64 {
                let start = (c + k) * 100;
                let rows: Vec<Value> = (start..start + 200)
                    .map(|id| json!({"id": id + 1, "job": format!("J{id}")}))
                    .collect();
                let r = client
                    .post(format!("{base}/api/tables/jobs/rows"))
                    .json(&rows)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                let (rec, ins, rej) = counts(&r.json::<Value>().await.unwrap());
                assert_eq!(rec, ins + rej);
                sums = (sums.0 + rec, sums.1 + ins, sums.2 + rej);
            }
            sums
        }));
    }
    let (mut received, mut inserted, mut rejected) = (0, 0, 0);
    for t in tasks {
        let (r, i, j) = t.await.unwrap();
        (received, inserted, rejected) = (received + r, inserted + i, rejected + j);
    }
    assert_eq!(received, 8 * 12 * 200);
    assert_eq!(received, inserted + rejected);
    // Ids 1..=2000 were sent (the highest batch starts at (7 + 11) * 100).
    let rows = common::query::query_i64(&url, "SELECT COUNT(*) FROM jobs").await;
    let distinct = common::query::query_i64(&url, "SELECT COUNT(DISTINCT id) FROM jobs").await;
    assert_eq!((rows, distinct), (2000, 2000));
    assert_eq!(inserted, 2000);
    let logged = common::query::query_i64(&url, "SELECT COUNT(*) FROM hrmig_rejections").await;
    assert_eq!(logged as u64, rejected);
    let not_duplicates = common::query::query_i64(
        &url,
        "SELECT COUNT(*) FROM hrmig_rejections WHERE errors::text NOT LIKE '%\"duplicate\"%'",
    )
    .await;
    assert_eq!(not_duplicates, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_order_names_by_code_point_whatever_the_collation() {
    if !server_available().await {
        return;
    }
    // A database whose default collation is a language's (ICU English):
    // there "apple" sorts before "Banana"; by code point it sorts after.
    let base = common::servers::postgres_base_url();
    let (admin, conn) = tokio_postgres::connect(&base, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let db = format!("hrmig_icu_{}", uuid::Uuid::new_v4().simple());
    admin
        .batch_execute(&format!(
            "CREATE DATABASE {db} TEMPLATE template0 ENCODING 'UTF8' \
             LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'"
        ))
        .await
        .unwrap();
    let url = {
        let mut u = url::Url::parse(&base).unwrap();
        u.set_path(&db);
        u.to_string()
    };
    let storage_dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(&url, storage_dir.path(), Keys::default()).await;
    let r = app.post_json(
        "/api/tables/departments/rows",
        &json!([{"id":1,"department":"apple"},{"id":2,"department":"Banana"},{"id":3,"department":"Élan"}]),
    )
    .await;
    assert_eq!(r.status(), 200);
    app.post_json("/api/tables/jobs/rows", &json!([{"id":1,"job":"x"}]))
        .await;
    let hires: Vec<Value> = (1..=3)
        .map(|d| json!({"id": d, "name": "N", "datetime": "2021-02-01T00:00:00Z", "department_id": d, "job_id": 1}))
        .collect();
    app.post_json("/api/tables/hired_employees/rows", &Value::Array(hires))
        .await;
    let report: Value = app
        .get("/api/reports/hires-by-quarter?year=2021")
        .await
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = report
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["department"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Banana", "apple", "Élan"]);
    // The database itself orders them otherwise: the test can tell.
    let (c, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let native: Vec<String> = c
        .query(
            "SELECT department FROM departments ORDER BY department",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(native, ["apple", "Banana", "Élan"]);
    drop(c);
    drop(app);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _ = admin
        .batch_execute(&format!("DROP DATABASE {db} WITH (FORCE)"))
        .await;
}

/// Jobs `start+1 ..= start+n`.
fn jobs(start: u64, n: u64) -> Value {
    Value::Array(
        (start..start + n)
            .map(|id| json!({"id": id + 1, "job": format!("J{id}")}))
            .collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restart_mid_stream_loses_nothing_and_needs_no_service_restart() {
    let Some(server) = private_server() else {
        return;
    };
    let url = server.url();
    let dir = tempfile::tempdir().unwrap();
    let app = Arc::new(TestApp::spawn(&url, dir.path(), Keys::default()).await);
    // A stream of 60 batches of 100 new jobs from one client; the server
    // restarts (fast shutdown: open transactions are cut) while it runs.
    let stream = {
        let app = app.clone();
        tokio::spawn(async move {
            let mut results = Vec::new();
            for b in 0..60u64 {
                let r = app
                    .post_json("/api/tables/jobs/rows", &jobs(b * 100, 100))
                    .await;
                let status = r.status().as_u16();
                let retry_after = r.headers().contains_key("retry-after");
                let body: Value = r.json().await.unwrap();
                results.push((status, retry_after, body));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            results
        })
    };
    tokio::time::sleep(Duration::from_millis(400)).await;
    server.pg_ctl("restart").unwrap();
    assert!(
        !stream.is_finished(),
        "the stream ended before the restart did: make it longer"
    );
    let results = stream.await.unwrap();

    let (mut received, mut inserted, mut rejected) = (0, 0, 0);
    for (b, (status, retry_after, body)) in results.iter().enumerate() {
        let present = common::query::query_i64(
            &url,
            &format!(
                "SELECT COUNT(*) FROM jobs WHERE id BETWEEN {} AND {}",
                b * 100 + 1,
                b * 100 + 100
            ),
        )
        .await;
        assert!(present == 0 || present == 100, "batch {b} is half there");
        match status {
            200 => {
                let (rec, ins, rej) = counts(body);
                assert_eq!(rec, ins + rej, "batch {b}");
                assert_eq!(present, 100, "batch {b} answered 200");
                (received, inserted, rejected) = (received + rec, inserted + ins, rejected + rej);
            }
            503 => {
                assert!(retry_after, "503 without Retry-After");
                assert_eq!(body["error"]["code"], "database_unavailable");
            }
            other => panic!("batch {b}: status {other}: {body}"),
        }
    }
    // The retries outlast a restart: every batch got through.
    assert_eq!(results.iter().filter(|r| r.0 == 200).count(), 60);
    assert_eq!(received, 6000);
    assert_eq!(received, inserted + rejected);
    let rows = common::query::query_i64(&url, "SELECT COUNT(*) FROM jobs").await;
    let logged = common::query::query_i64(&url, "SELECT COUNT(*) FROM hrmig_rejections").await;
    assert_eq!(rows as u64 + logged as u64, received);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_stays_down_is_a_503_and_the_service_recovers_by_itself() {
    let Some(server) = private_server() else {
        return;
    };
    let url = server.url();
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(&url, dir.path(), Keys::default()).await;
    let post = |body: Value| {
        let app = &app;
        async move { app.post_json("/api/tables/jobs/rows", &body).await }
    };
    assert_eq!(post(jobs(0, 10)).await.status(), 200);

    server.pg_ctl("stop").unwrap();
    let started = Instant::now();
    let r = post(jobs(10, 10)).await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "5");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "database_unavailable");
    // Opaque: no driver message or address reaches the client.
    assert!(!body.to_string().contains("5432") && !body.to_string().contains("refused"));
    assert!(started.elapsed() < Duration::from_secs(30));
    let health = app.get("/api/health").await;
    assert_eq!(health.status(), 503);

    server.pg_ctl("start").unwrap();
    let r = post(jobs(10, 10)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(counts(&r.json().await.unwrap()), (10, 10, 0));
    let health = app.get("/api/health").await;
    assert_eq!(health.status(), 200);
    // The batch refused while the server was down left nothing behind.
    assert_eq!(
        common::query::query_i64(&url, "SELECT COUNT(*) FROM jobs").await,
        20
    );
    assert_eq!(
        common::query::query_i64(&url, "SELECT COUNT(*) FROM hrmig_rejections").await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_error_names_its_sqlstate_once() {
    if !server_available().await {
        return;
    }
    let base = common::servers::postgres_base_url();
    let (prefix, _) = base.rsplit_once('/').unwrap();
    let url = format!("{prefix}/hrmig_no_such_database");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hrmig"))
        .args(["--database", &url, "--log", "error", "rejections"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("FATAL 3D000"), "{err}");
    assert_eq!(err.matches("does not exist").count(), 1, "{err}");
    assert!(!err.contains("db error"), "{err}");
}

/// `hrmig demo` prints each table's row count after its load: the counts
/// are read before the database is closed, and they are the database's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_loads_the_sample_and_counts_its_rows() {
    if !server_available().await {
        return;
    }
    let url = common::servers::fresh_postgres_schema().await;
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hrmig"))
        .current_dir(dir.path())
        .env_remove("HRMIG_STORAGE_URL")
        .env_remove("HRMIG_LOG_FORMAT")
        .args(["--database", &url, "--log", "warn"])
        .args(["demo", "--employees", "500"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for table in ["departments", "jobs", "hired_employees"] {
        let rows = common::query::query_i64(&url, &format!("SELECT COUNT(*) FROM {table}")).await;
        assert!(rows > 0, "{table} is empty");
        let line = stdout
            .lines()
            .find(|l| l.starts_with(table) && l.ends_with(" rows"))
            .unwrap_or_else(|| panic!("no count of {table} in {stdout}"));
        assert_eq!(
            line.split_whitespace().nth(1),
            Some(rows.to_string().as_str()),
            "{line}"
        );
    }
}

/// A client of the shared server on the schema of `url` (its
/// `search_path` option), for the test's own sessions.
async fn session(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
}

/// The schema a URL of [`common::servers::fresh_postgres_schema`] names.
fn schema_of(url: &str) -> &str {
    url.rsplit("search_path%3D").next().unwrap()
}

/// A fresh schema served by hrmig with `fk_triggers=choice`, holding
/// `departments` and job 1: the schema's URL (for the test's own
/// sessions), the app, and its folder.
async fn app_with_parents(
    choice: &str,
    departments: Value,
) -> (String, TestApp, tempfile::TempDir) {
    let url = common::servers::fresh_postgres_schema().await;
    let hrmig_url = format!("{url}&fk_triggers={choice}");
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(&hrmig_url, dir.path(), Keys::new(None, None)).await;
    let r = app
        .post_json("/api/tables/departments/rows", &departments)
        .await;
    assert_eq!(r.status(), 200);
    let r = app.post_json("/api/tables/jobs/rows", &jobs(0, 1)).await;
    assert_eq!(r.status(), 200);
    (url, app, dir)
}

/// Sends `rows` to `table` in a task of its own: the status and body.
fn send_batch(app: &TestApp, table: &str, rows: Value) -> tokio::task::JoinHandle<(u16, Value)> {
    let url = format!("{}/api/tables/{table}/rows", app.base);
    tokio::spawn(async move {
        let r = reqwest::Client::new()
            .post(url)
            .json(&rows)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    })
}

/// Whether an hrmig session of the database waits for a lock, within
/// five seconds.
async fn hrmig_waits_for_a_lock(watcher: &tokio_postgres::Client) -> bool {
    for _ in 0..200 {
        let row = watcher
            .query_one(
                "SELECT COUNT(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND wait_event_type = 'Lock'
                   AND application_name = 'hrmig'",
                &[],
            )
            .await
            .unwrap();
        if row.get::<_, i64>(0) > 0 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    false
}

/// Employees whose department is not in the table.
async fn orphans(client: &tokio_postgres::Client) -> i64 {
    let sql = "SELECT COUNT(*) FROM hired_employees h
               WHERE NOT EXISTS (SELECT 1 FROM departments d WHERE d.id = h.department_id)";
    client.query_one(sql, &[]).await.unwrap().get(0)
}

/// An employee of department `department` and job 1.
fn employee(id: u64, department: u64) -> Value {
    json!({"id": id, "name": "Ada", "datetime": "2021-01-01T00:00:00Z",
           "department_id": department, "job_id": 1})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_foreign_key_triggers_are_skipped_only_when_the_role_may_and_the_url_lets_it() {
    if !server_available().await {
        return;
    }
    let url = common::servers::fresh_postgres_schema().await;
    let store = hrmig::store::Store::open(&url).await.unwrap();
    // The shared server's user is a superuser.
    assert!(store.skips_key_triggers());
    let kept = hrmig::store::Store::open(&format!("{url}&fk_triggers=keep"))
        .await
        .unwrap();
    assert!(!kept.skips_key_triggers());
    // A role of its own, owning a schema of its own, without the
    // privilege, then granted it.
    let admin = session(&url).await;
    let role = format!("hrmig_plain_{}", uuid::Uuid::new_v4().simple());
    let schema = format!("{role}_schema");
    admin
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN; CREATE SCHEMA {schema} AUTHORIZATION {role}"
        ))
        .await
        .unwrap();
    let plain =
        (url.replacen("postgres@", &format!("{role}@"), 1)).replacen(schema_of(&url), &schema, 1);
    assert!(
        plain.contains(&role),
        "the shared server's URL names the user postgres"
    );
    let store = hrmig::store::Store::open(&plain).await.unwrap();
    assert!(!store.skips_key_triggers());
    admin
        .batch_execute(&format!(
            "GRANT SET ON PARAMETER session_replication_role TO {role}"
        ))
        .await
        .unwrap();
    let store = hrmig::store::Store::open(&plain).await.unwrap();
    assert!(store.skips_key_triggers());
    drop(store);
    admin
        .batch_execute(&format!(
            "REVOKE SET ON PARAMETER session_replication_role FROM {role};
             DROP SCHEMA {schema} CASCADE; DROP OWNED BY {role}; DROP ROLE {role}"
        ))
        .await
        .unwrap();
}

/// A parent deleted by another session while a batch is checked against
/// it: the batch's lookup waits for the delete, then rejects the row as
/// `foreign_key` (no orphan, no failed request), whether PostgreSQL's
/// triggers check the rows again or not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parent_deleted_during_a_batch_is_a_foreign_key_rejection_never_an_orphan() {
    if !server_available().await {
        return;
    }
    for choice in ["auto", "keep"] {
        let departments =
            json!([{"id": 1, "department": "Sales"}, {"id": 3, "department": "Legal"}]);
        let (url, app, _dir) = app_with_parents(choice, departments).await;
        // Another session deletes department 3 and has not committed.
        let deleter = session(&url).await;
        deleter.batch_execute("BEGIN").await.unwrap();
        let deleted = deleter
            .execute("DELETE FROM departments WHERE id = 3", &[])
            .await
            .unwrap();
        assert_eq!(deleted, 1);
        let batch = send_batch(
            &app,
            "hired_employees",
            json!([employee(1, 1), employee(2, 3)]),
        );
        // The batch waits for the deleter's row lock.
        let watcher = session(&url).await;
        let waited = hrmig_waits_for_a_lock(&watcher).await;
        assert!(
            waited,
            "{choice}: the batch did not wait for the parent's lock"
        );
        deleter.batch_execute("COMMIT").await.unwrap();
        let (status, body) = batch.await.unwrap();
        assert_eq!(status, 200, "{choice}: {body}");
        assert_eq!(counts(&body), (2, 1, 1), "{choice}: {body}");
        let errors = &body["rejected"][0]["errors"];
        assert_eq!(errors[0]["code"], "foreign_key", "{choice}: {body}");
        assert_eq!(errors[0]["column"], "department_id", "{choice}: {body}");
        assert_eq!(orphans(&watcher).await, 0, "{choice}");
    }
}

/// A full batch reaches the table whole, each row as sent, whether
/// PostgreSQL checks its keys again or not; its rejections stay out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_batch_is_written_whole_whether_its_keys_are_checked_again_or_not() {
    if !server_available().await {
        return;
    }
    for choice in ["auto", "keep"] {
        let (url, app, _dir) =
            app_with_parents(choice, json!([{"id": 1, "department": "Sales"}])).await;
        // Every 97th row names a department that does not exist.
        let rows: Vec<Value> = (1..=1000u64)
            .map(|id| employee(id, if id % 97 == 0 { 2 } else { 1 }))
            .collect();
        let (status, body) = send_batch(&app, "hired_employees", json!(rows))
            .await
            .unwrap();
        assert_eq!(status, 200, "{choice}: {body}");
        assert_eq!(counts(&body), (1000, 990, 10), "{choice}: {body}");
        let client = session(&url).await;
        let stored: Vec<i32> = (client
            .query("SELECT id FROM hired_employees ORDER BY id", &[])
            .await)
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let sent: Vec<i32> = (1..=1000).filter(|id| id % 97 != 0).collect();
        assert_eq!(stored, sent, "{choice}");
        let names: i64 = (client.query_one(
            "SELECT COUNT(*) FROM hired_employees WHERE name = 'Ada' AND department_id = 1
               AND job_id = 1 AND datetime = '2021-01-01T00:00:00Z'",
            &[],
        ))
        .await
        .unwrap()
        .get(0);
        assert_eq!(names, 990, "{choice}");
    }
}

/// The other order: a batch's parents are locked until its commit, so a
/// session deleting one waits, then fails on the rows that now reference
/// it, triggers skipped or not. Many batches, one deleter, bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parents_deleted_beside_a_stream_of_batches_leave_no_orphan() {
    if !server_available().await {
        return;
    }
    for choice in ["auto", "keep"] {
        let departments: Vec<Value> = (1..=60)
            .map(|id| json!({"id": id, "department": format!("D{id}")}))
            .collect();
        let (url, app, _dir) = app_with_parents(choice, json!(departments)).await;
        // Batch k references departments k + 1 ..= k + 10; the deleter
        // tries each department in turn meanwhile.
        let deleter_url = url.clone();
        let deleter = tokio::spawn(async move {
            let client = session(&deleter_url).await;
            let mut deleted = 0;
            for id in 1..=60i32 {
                let r = client
                    .execute("DELETE FROM departments WHERE id = $1", &[&id])
                    .await;
                deleted += r.unwrap_or(0);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            deleted
        });
        let mut sums = (0, 0, 0);
        for k in 0..50u64 {
            let rows: Vec<Value> = (0..20u64)
                .map(|i| {
                    json!({"id": k * 20 + i + 1, "name": "E", "datetime": "2021-05-01T00:00:00Z",
                           "department_id": k + 1 + i % 10, "job_id": 1})
                })
                .collect();
            let r = app
                .post_json("/api/tables/hired_employees/rows", &json!(rows))
                .await;
            assert_eq!(r.status(), 200, "{choice}");
            let c = counts(&r.json().await.unwrap());
            sums = (sums.0 + c.0, sums.1 + c.1, sums.2 + c.2);
        }
        let deleted = deleter.await.unwrap();
        assert_eq!(sums.0, 1000);
        assert_eq!(sums.0, sums.1 + sums.2, "{choice}");
        let check = session(&url).await;
        assert_eq!(orphans(&check).await, 0, "{choice}");
        let stored = check.query_one("SELECT COUNT(*) FROM hired_employees", &[]);
        assert_eq!(stored.await.unwrap().get::<_, i64>(0) as u64, sums.1);
        // Department 60 is never referenced: at least that delete succeeds.
        assert!(deleted > 0, "{choice}");
    }
}

/// An id that another session inserts between a batch's lookup and its
/// insert: the batch's `COPY` meets it (after waiting for that session's
/// commit), falls back to `INSERT … ON CONFLICT`, and logs that row as a
/// `duplicate`; the others go in, the rows before it included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_taken_between_the_lookup_and_the_insert_is_a_duplicate() {
    if !server_available().await {
        return;
    }
    for choice in ["auto", "keep"] {
        let departments = json!([{"id": 1, "department": "Sales"}]);
        let (url, app, _dir) = app_with_parents(choice, departments).await;
        // Another session has inserted employee 2 and not committed: the
        // batch's lookup does not see it, its insert waits for it.
        let other = session(&url).await;
        other.batch_execute("BEGIN").await.unwrap();
        other
            .execute(
                "INSERT INTO hired_employees VALUES (600, 'Other', '2021-01-01T00:00:00Z', 1, 1)",
                &[],
            )
            .await
            .unwrap();
        let rows: Vec<Value> = (1..=700).map(|id| employee(id, 1)).collect();
        let batch = send_batch(&app, "hired_employees", json!(rows));
        let watcher = session(&url).await;
        let waited = hrmig_waits_for_a_lock(&watcher).await;
        assert!(
            waited,
            "{choice}: the batch did not wait for the other insert"
        );
        other.batch_execute("COMMIT").await.unwrap();
        let (status, body) = batch.await.unwrap();
        assert_eq!(status, 200, "{choice}: {body}");
        assert_eq!(counts(&body), (700, 699, 1), "{choice}: {body}");
        assert_eq!(body["rejected"][0]["index"], 599, "{choice}: {body}");
        assert_eq!(
            body["rejected"][0]["errors"][0]["code"], "duplicate",
            "{choice}: {body}"
        );
        let names: Vec<(i32, String)> = (watcher
            .query("SELECT id, name FROM hired_employees ORDER BY id", &[])
            .await
            .unwrap())
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
        let expected: Vec<(i32, String)> = (1..=700)
            .map(|id| (id, if id == 600 { "Other" } else { "Ada" }.to_owned()))
            .collect();
        assert_eq!(names, expected, "{choice}");
    }
}

/// A store of `url` with `fk_triggers=choice`, and a landing folder in
/// `dir` for its loads.
async fn store_and_landing(
    url: &str,
    choice: &str,
    dir: &std::path::Path,
) -> (hrmig::store::Store, hrmig::storage::Storage) {
    let store = hrmig::store::Store::open(&format!("{url}&fk_triggers={choice}"))
        .await
        .unwrap();
    let storage = hrmig::storage::Storage::open(dir.join("storage").to_str().unwrap()).unwrap();
    (store, storage.child("landing").unwrap())
}

/// Loads `csv` as the hired_employees file from `landing`.
async fn load_employees(
    store: &hrmig::store::Store,
    landing: &hrmig::storage::Storage,
    dir: &std::path::Path,
    csv: &str,
) -> Result<hrmig::ops::load::LoadReport, hrmig::ops::load::LoadError> {
    let folder = dir.join("storage").join("landing");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("hired_employees.csv"), csv).unwrap();
    let mut request = hrmig::ops::load::LoadRequest::new(
        landing.clone(),
        vec![hrmig::dictionary::Table::HiredEmployees],
    );
    request.force = true;
    let mut reports = hrmig::ops::load::load(store, &request).await?;
    Ok(reports.remove(0))
}

/// `hired_employees`' foreign keys: (oid, validated), by name.
async fn foreign_keys(client: &tokio_postgres::Client) -> Vec<(u32, bool)> {
    let rows = client
        .query(
            "SELECT oid, convalidated FROM pg_constraint
             WHERE conrelid = 'hired_employees'::regclass AND contype = 'f' ORDER BY conname",
            &[],
        )
        .await
        .unwrap();
    rows.iter().map(|r| (r.get(0), r.get(1))).collect()
}

/// A file of `rows` employees, every 50th of the missing department 9.
fn employees_csv(rows: u32) -> (String, u64) {
    let mut csv = String::new();
    let mut bad = 0;
    for id in 1..=rows {
        let department = if id % 50 == 7 { 9 } else { 1 };
        bad += u64::from(department == 9);
        csv += &format!("{id},Ann Lee,2021-07-27T16:02:08Z,{department},1\n");
    }
    (csv, bad)
}

/// Small files and big ones (the bulk path, from 2 MiB), with the
/// foreign-key triggers or with the parents locked: the same rows
/// rejected, no orphan, and the keys declared and valid after the commit.
/// With the parents locked the keys are never set aside (the same
/// constraints before and after); with the triggers a big file sets them
/// aside and adds them again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loads_check_parents_by_triggers_or_by_locks_and_keep_the_keys_declared() {
    if !server_available().await {
        return;
    }
    for choice in ["auto", "keep"] {
        for rows in [200, 60_000] {
            let departments = json!([{"id": 1, "department": "Sales"}]);
            let (url, _app, dir) = app_with_parents(choice, departments).await;
            let (store, landing) = store_and_landing(&url, choice, dir.path()).await;
            let client = session(&url).await;
            let before = foreign_keys(&client).await;
            let (csv, bad) = employees_csv(rows);
            let report = load_employees(&store, &landing, dir.path(), &csv)
                .await
                .unwrap();
            let case = format!("{choice}, {rows} rows");
            assert_eq!(
                (report.inserted, report.rejected),
                (u64::from(rows) - bad, bad),
                "{case}"
            );
            assert_eq!(
                report
                    .rejected_by_code
                    .get(hrmig::dictionary::ErrorCode::ForeignKey),
                bad
            );
            assert_eq!(orphans(&client).await, 0, "{case}");
            let after = foreign_keys(&client).await;
            assert_eq!(after.len(), 2, "{case}");
            assert!(after.iter().all(|(_, valid)| *valid), "{case}: {after:?}");
            let indexes = client.query_one(
                "SELECT COUNT(*) FROM pg_index WHERE indrelid = 'hired_employees'::regclass",
                &[],
            );
            assert_eq!(indexes.await.unwrap().get::<_, i64>(0), 3, "{case}");
            // The primary key is back, and enforced.
            let pk = client.query_one(
                "SELECT COUNT(*) FROM pg_constraint
                 WHERE conrelid = 'hired_employees'::regclass AND contype = 'p'",
                &[],
            );
            assert_eq!(pk.await.unwrap().get::<_, i64>(0), 1, "{case}");
            let taken = "INSERT INTO hired_employees VALUES (1, 'X', '2021-01-01T00:00:00Z', 1, 1)";
            let e = client.execute(taken, &[]).await.unwrap_err();
            let unique = tokio_postgres::error::SqlState::UNIQUE_VIOLATION;
            assert_eq!(e.code(), Some(&unique), "{case}: {e}");
            let set_aside = choice == "keep" && rows > 200;
            assert_eq!(before != after, set_aside, "{case}: {before:?} {after:?}");
        }
    }
}

/// A parent deleted by another session, not yet committed, as a load
/// starts: with the parents locked, the load waits for the delete, then
/// rejects its rows as `foreign_key`. With the triggers a big file does
/// the same (setting its keys aside waits for the delete), and a small
/// one's rows are checked by PostgreSQL, which waits and fails the load.
/// No orphan either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parent_deleted_as_a_load_starts_is_never_an_orphan() {
    if !server_available().await {
        return;
    }
    for choice in ["auto", "keep"] {
        for rows in [200, 60_000] {
            let departments =
                json!([{"id": 1, "department": "Sales"}, {"id": 9, "department": "Legal"}]);
            let (url, _app, dir) = app_with_parents(choice, departments).await;
            let (store, landing) = store_and_landing(&url, choice, dir.path()).await;
            let deleter = session(&url).await;
            deleter.batch_execute("BEGIN").await.unwrap();
            let deleted = deleter.execute("DELETE FROM departments WHERE id = 9", &[]);
            assert_eq!(deleted.await.unwrap(), 1);
            let (csv, bad) = employees_csv(rows);
            let load = tokio::spawn(async move {
                let r = load_employees(&store, &landing, dir.path(), &csv).await;
                (r, dir)
            });
            let watcher = session(&url).await;
            let case = format!("{choice}, {rows} rows");
            assert!(hrmig_waits_for_a_lock(&watcher).await, "{case}: no wait");
            deleter.batch_execute("COMMIT").await.unwrap();
            let (report, _dir) = load.await.unwrap();
            match report {
                Ok(r) => {
                    assert_eq!(
                        (r.inserted, r.rejected),
                        (u64::from(rows) - bad, bad),
                        "{case}"
                    );
                    let code = hrmig::dictionary::ErrorCode::ForeignKey;
                    assert_eq!(r.rejected_by_code.get(code), bad, "{case}");
                }
                // The triggers' check of a row waited for the delete.
                Err(e) => assert!(
                    choice == "keep" && e.to_string().contains("foreign key"),
                    "{case}: {e}"
                ),
            }
            assert_eq!(orphans(&watcher).await, 0, "{case}");
        }
    }
}

/// Deleting department 1 fails with `code`.
async fn delete_fails(client: &tokio_postgres::Client, code: tokio_postgres::error::SqlState) {
    let e = client
        .execute("DELETE FROM departments WHERE id = 1", &[])
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(&code), "{e}");
}

/// The producer's end of a [`hrmig::store::FileFeed`].
type FileFeedSender =
    tokio::sync::mpsc::Sender<hrmig::store::Feed<hrmig::store::Chunk, hrmig::store::FeedSummary>>;

/// A load of one employee (department 1, job 1) whose feed has sent its
/// rows and not its end yet: the feed's sender, its receiver and the load.
async fn held_load(
    bytes: Option<u64>,
    dry_run: Option<hrmig::store::DryRun>,
) -> (
    FileFeedSender,
    hrmig::store::FileFeed,
    hrmig::store::FileLoad,
) {
    use hrmig::store::{Chunk, Feed, FileLoad, InputRow};
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let raw = b"1,Ann Lee,2021-07-27T16:02:08Z,1,1".to_vec();
    let fields = raw.split(|&b| b == b',').collect::<Vec<_>>();
    let check = hrmig::dictionary::check::check_csv(
        hrmig::dictionary::Table::HiredEmployees,
        fields.into_iter(),
    )
    .into_row();
    let chunk = Chunk {
        rows: vec![InputRow {
            position: 1,
            raw: 0..raw.len(),
            check,
        }],
        raw: raw.clone(),
    };
    tx.send(Feed::Rows(chunk)).await.unwrap();
    let load = FileLoad {
        table: hrmig::dictionary::Table::HiredEmployees,
        source: "file:test".into(),
        force: false,
        max_rejects: None,
        started_at: "2021-01-01T00:00:00Z".into(),
        bytes,
        dry_run,
        on_duplicate: hrmig::store::OnDuplicate::Reject,
    };
    (tx, rx, load)
}

/// Sends the end of a [`held_load`]'s feed.
async fn end_held_load(tx: &FileFeedSender) {
    let summary = hrmig::store::FeedSummary {
        rows_read: 1,
        blank: 0,
        sha256: "0".repeat(64),
    };
    tx.send(hrmig::store::Feed::End(summary)).await.unwrap();
}

/// The other order, with the parents locked: a session deleting a parent
/// while a load holds it (small file or bulk) waits for the load, then
/// fails on the rows it committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parent_delete_waits_for_the_load_that_locked_it_then_fails() {
    use tokio_postgres::error::SqlState;
    if !server_available().await {
        return;
    }
    for bytes in [Some(100), Some(u64::MAX)] {
        let departments = json!([{"id": 1, "department": "Sales"}]);
        let (url, _app, _dir) = app_with_parents("auto", departments).await;
        let store = hrmig::store::Store::open(&url).await.unwrap();
        assert!(store.skips_key_triggers());
        let (tx, rx, load) = held_load(bytes, None).await;
        let loading = tokio::spawn(async move { store.load_file(load, rx).await });
        let deleter = session(&url).await;
        // Until the load has the parent locked, a lock on it is granted at
        // once (and let go).
        let mut locked = false;
        for _ in 0..200 {
            deleter.batch_execute("BEGIN").await.unwrap();
            let probe = "SELECT id FROM departments WHERE id = 1 FOR UPDATE NOWAIT";
            let tried = deleter.execute(probe, &[]).await;
            deleter.batch_execute("ROLLBACK").await.unwrap();
            match tried {
                Err(e) if e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) => {
                    locked = true;
                    break;
                }
                Err(e) => panic!("{bytes:?}: {e}"),
                Ok(_) => tokio::time::sleep(Duration::from_millis(25)).await,
            }
        }
        assert!(locked, "{bytes:?}: the load never locked the parent");
        // Until its commit: a delete waits, and times out.
        deleter
            .batch_execute("SET lock_timeout = '300ms'")
            .await
            .unwrap();
        delete_fails(&deleter, SqlState::LOCK_NOT_AVAILABLE).await;
        end_held_load(&tx).await;
        let outcome = loading.await.unwrap().unwrap();
        assert!(
            matches!(
                outcome,
                hrmig::store::LoadOutcome::Loaded {
                    inserted: 1,
                    rejected: 0,
                    ..
                }
            ),
            "{outcome:?}"
        );
        delete_fails(&deleter, SqlState::FOREIGN_KEY_VIOLATION).await;
        assert_eq!(orphans(&deleter).await, 0);
    }
}

/// `hired_employees`' indexes (the primary key's too), by name.
async fn indexes(client: &tokio_postgres::Client) -> Vec<u32> {
    let rows = client
        .query(
            "SELECT i.indexrelid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
             WHERE i.indrelid = 'hired_employees'::regclass ORDER BY c.relname",
            &[],
        )
        .await
        .unwrap();
    rows.iter().map(|r| r.get(0)).collect()
}

/// A big file into a table already more than twice its size: building the
/// indexes again over the whole table would cost more than inserting the
/// file's rows into them, so they stay (the same indexes after the load),
/// and the file's rows are checked all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_big_file_into_a_much_bigger_table_keeps_its_indexes() {
    if !server_available().await {
        return;
    }
    for choice in ["auto", "keep"] {
        let departments = json!([{"id": 1, "department": "Sales"}]);
        let (url, _app, dir) = app_with_parents(choice, departments).await;
        let (store, landing) = store_and_landing(&url, choice, dir.path()).await;
        let client = session(&url).await;
        let (csv, _) = employees_csv(150_000);
        load_employees(&store, &landing, dir.path(), &csv)
            .await
            .unwrap();
        let before = indexes(&client).await;
        // 2.5 MB of new ids, one taken id, one missing department.
        let mut csv = String::new();
        for id in 200_001..=260_000u32 {
            csv += &format!("{id},Ann Lee,2021-07-27T16:02:08Z,1,1\n");
        }
        csv += "150000,Taken,2021-07-27T16:02:08Z,1,1\n260001,Orphan,2021-07-27T16:02:08Z,9,1\n";
        assert!(csv.len() > 2 << 20);
        let r = load_employees(&store, &landing, dir.path(), &csv)
            .await
            .unwrap();
        assert_eq!((r.inserted, r.rejected), (60_000, 2), "{choice}");
        assert_eq!(indexes(&client).await, before, "{choice}");
        assert_eq!(orphans(&client).await, 0, "{choice}");
        assert_eq!(foreign_keys(&client).await.len(), 2, "{choice}");
    }
}

/// A dry run writes nothing and holds no parent: while one waits for the
/// rest of its file, another session may lock department 1 at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_holds_no_parent() {
    use hrmig::store::{DryRun, LoadOutcome};
    if !server_available().await {
        return;
    }
    let departments = json!([{"id": 1, "department": "Sales"}]);
    let (url, _app, _dir) = app_with_parents("auto", departments).await;
    let store = hrmig::store::Store::open(&url).await.unwrap();
    assert!(store.skips_key_triggers());
    let (tx, rx, load) = held_load(Some(100), Some(DryRun::default())).await;
    let checking = tokio::spawn(async move { store.load_file(load, rx).await });
    // The dry run has read the parents and waits for its feed.
    let watcher = session(&url).await;
    let mut waiting = false;
    for _ in 0..200 {
        let idle = watcher.query_one(
            "SELECT COUNT(*) FROM pg_stat_activity
             WHERE datname = current_database() AND application_name = 'hrmig'
               AND state = 'idle in transaction'",
            &[],
        );
        if idle.await.unwrap().get::<_, i64>(0) > 0 {
            waiting = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(waiting, "the dry run never waited for its feed");
    watcher.batch_execute("BEGIN").await.unwrap();
    let probe = "SELECT id FROM departments WHERE id = 1 FOR UPDATE NOWAIT";
    let locked = watcher.query(probe, &[]).await.unwrap();
    assert_eq!(locked.len(), 1);
    watcher.batch_execute("ROLLBACK").await.unwrap();
    end_held_load(&tx).await;
    let outcome = checking.await.unwrap().unwrap();
    assert!(
        matches!(outcome, LoadOutcome::WouldLoad { inserted: 1, .. }),
        "{outcome:?}"
    );
}

/// The store's hires by quarter of 2021 against the view's, read by the
/// test's own session.
async fn reports_agree(store: &hrmig::store::Store, client: &tokio_postgres::Client, step: &str) {
    let rows = client
        .query(
            "SELECT department::text, job::text, q1, q2, q3, q4 FROM gold_hires_by_quarter
             WHERE year = 2021",
            &[],
        )
        .await
        .unwrap();
    let mut expected: Vec<(String, String, [i64; 4])> = (rows.iter())
        .map(|r| (r.get(0), r.get(1), [r.get(2), r.get(3), r.get(4), r.get(5)]))
        .collect();
    expected.sort();
    let mut got: Vec<(String, String, [i64; 4])> = (store.hires_by_quarter(2021).await.unwrap())
        .into_iter()
        .map(|r| (r.department, r.job, [r.q1, r.q2, r.q3, r.q4]))
        .collect();
    got.sort();
    assert_eq!(got, expected, "after {step}");
}

/// The counts the reports read follow every writer: hrmig with the
/// foreign-key triggers kept (the counting triggers count its rows) or
/// skipped (hrmig counts them itself), and another program's inserts,
/// updates, deletes and `TRUNCATE`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_count_what_every_writer_writes() {
    if !server_available().await {
        return;
    }
    let url = common::servers::fresh_postgres_schema().await;
    let dir = tempfile::tempdir().unwrap();
    let (kept, landing) = store_and_landing(&url, "keep", dir.path()).await;
    assert!(!kept.skips_key_triggers());
    let client = session(&url).await;
    client
        .batch_execute(
            "INSERT INTO departments VALUES (1, 'Sales'), (2, 'Legal');
             INSERT INTO jobs VALUES (1, 'Engineer'), (2, 'Analyst')",
        )
        .await
        .unwrap();
    let (csv, bad) = employees_csv(3000);
    let report = load_employees(&kept, &landing, dir.path(), &csv)
        .await
        .unwrap();
    assert_eq!(report.rejected, bad);
    reports_agree(&kept, &client, "a load with the triggers kept").await;

    client
        .batch_execute(
            "INSERT INTO hired_employees
                 SELECT id, 'Bo', TIMESTAMPTZ '2021-02-03 04:05:06+00' + id * INTERVAL '1 hour', 2, 2
                 FROM generate_series(5001, 5500) AS id;
             UPDATE hired_employees SET datetime = TIMESTAMPTZ '2021-11-30 23:00:00+00', job_id = 2
                 WHERE id BETWEEN 100 AND 400;
             UPDATE hired_employees SET name = 'Cy' WHERE id BETWEEN 401 AND 500;
             DELETE FROM hired_employees WHERE id % 7 = 0",
        )
        .await
        .unwrap();
    reports_agree(&kept, &client, "another program's writes").await;

    client
        .batch_execute("TRUNCATE hired_employees")
        .await
        .unwrap();
    assert!(kept.hires_by_quarter(2021).await.unwrap().is_empty());
    let (skipping, _) = store_and_landing(&url, "auto", dir.path()).await;
    assert!(skipping.skips_key_triggers());
    load_employees(&skipping, &landing, dir.path(), &csv)
        .await
        .unwrap();
    reports_agree(&skipping, &client, "a load with the triggers skipped").await;
    let folded: i64 = (client.query_one("SELECT count(*) FROM hrmig_hire_count_changes", &[]))
        .await
        .unwrap()
        .get(0);
    assert_eq!(folded, 0, "a report folds the changes first");
}

/// A database whose hire-count changes were kept a row per group (made
/// before migration 0006): opened by this hrmig, they are packed into one
/// row of arrays, the reports count them, and the counting triggers write
/// arrays from then on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn count_changes_kept_a_row_per_group_are_packed_when_the_database_opens() {
    if !server_available().await {
        return;
    }
    let url = common::servers::fresh_postgres_schema().await;
    let client = session(&url).await;
    for (name, sql) in hrmig::store::ddl::migrations(hrmig::store::Dialect::Postgres) {
        if name < "0006" {
            client.batch_execute(&sql).await.unwrap();
        }
    }
    // Hires counted by their writer (as hrmig did), their changes a row per
    // group; then an update, which the triggers of 0005 count as rows.
    client
        .batch_execute(
            "INSERT INTO departments VALUES (1, 'Sales'), (2, 'Legal');
             INSERT INTO jobs VALUES (1, 'Engineer');
             SET hrmig.counted = on;
             INSERT INTO hired_employees VALUES
                 (1, 'Ada', '2021-02-01T00:00:00Z', 1, 1),
                 (2, 'Bo', '2021-05-01T00:00:00Z', 2, 1),
                 (3, 'Cy', '2021-08-01T00:00:00Z', 2, 1);
             INSERT INTO hrmig_hire_count_changes VALUES
                 (2021, 1, 1, 1, 0, 0, 0), (2021, 2, 1, 0, 1, 1, 0);
             UPDATE hired_employees SET datetime = '2021-11-01T00:00:00Z' WHERE id = 3",
        )
        .await
        .unwrap();
    let shape = "SELECT count(*), min(pg_typeof(year)::text) FROM hrmig_hire_count_changes";
    let before = client.query_one(shape, &[]).await.unwrap();
    assert_eq!(
        (before.get::<_, i64>(0), before.get::<_, String>(1)),
        (4, "integer".to_owned())
    );

    let store = hrmig::store::Store::open(&url).await.unwrap();
    let after = client.query_one(shape, &[]).await.unwrap();
    assert_eq!(
        (after.get::<_, i64>(0), after.get::<_, String>(1)),
        (1, "integer[]".to_owned()),
        "the four rows packed into one"
    );
    client
        .batch_execute("UPDATE hired_employees SET department_id = 1 WHERE id = 2")
        .await
        .unwrap();
    let packed = client.query_one(shape, &[]).await.unwrap();
    assert_eq!(
        packed.get::<_, i64>(0),
        3,
        "the update's changes as two rows, the old values' and the new"
    );
    reports_agree(&store, &client, "the changes were packed").await;
    let q4: i64 = (client.query_one(
        "SELECT q4 FROM hrmig_hire_counts WHERE (year, department_id, job_id) = (2021, 2, 1)",
        &[],
    ))
    .await
    .unwrap()
    .get(0);
    assert_eq!(q4, 1, "the update of 0005's triggers folded");
}
