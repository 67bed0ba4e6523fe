//! Upserts on request (part of the conformance suite: SQLite, and
//! PostgreSQL or SQL Server as `common::db` says): `on_duplicate = update`
//! on loads (small files, and a file big enough for the server bulk path)
//! and on API batches; the later of two rows with one id wins, an update
//! that would break a foreign key is a rejection, and the counts keep
//! `received = inserted + updated + rejected`.

mod common {
    pub mod app;
    pub mod db;
    pub mod env;
    pub mod query;
    pub mod servers;
}

use common::app::TestApp;
use common::env::TestEnv;
use common::query::query_i64;
use hrmig::dictionary::{ErrorCode, Table};
use hrmig::http::Keys;
use hrmig::ops::load::{self, LoadReport};
use hrmig::store::{OnDuplicate, RejectionFilter};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::fmt::Write;

impl TestEnv {
    fn write(&self, table: Table, content: &[u8]) {
        let dir = self.landing_dir();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{}.csv", table.name())), content).unwrap();
    }

    async fn with_parents() -> TestEnv {
        let env = TestEnv::new().await;
        env.write(Table::Departments, b"1,Sales\n2,Legal\n");
        env.write(Table::Jobs, b"1,Engineer\n2,Analyst\n");
        env.load(&[Table::Departments, Table::Jobs]).await;
        env
    }

    /// Loads the employees file with `on_duplicate`; checks the counts.
    async fn employees(
        &self,
        content: &str,
        on_duplicate: OnDuplicate,
        dry_run: bool,
    ) -> LoadReport {
        self.write(Table::HiredEmployees, content.as_bytes());
        let req = load::LoadRequest {
            on_duplicate,
            dry_run,
            ..self.request(&[Table::HiredEmployees])
        };
        let report = load::load(&self.store, &req).await.unwrap().remove(0);
        assert_eq!(
            report.rows_read,
            report.inserted + report.updated + report.rejected,
            "{report:?}"
        );
        report
    }

    /// `id,name,department_id` of every employee, by id.
    async fn stored(&self) -> Vec<(i64, String, i64)> {
        let rows = self
            .store
            .rows(Table::HiredEmployees, 0, 1000)
            .await
            .unwrap();
        rows.iter()
            .map(|r| {
                (
                    r["id"].as_i64().unwrap(),
                    r["name"].as_str().unwrap().to_owned(),
                    r["department_id"].as_i64().unwrap(),
                )
            })
            .collect()
    }
}

fn line(id: i64, name: &str, department: i64) -> String {
    format!("{id},{name},2021-03-04T05:06:07Z,{department},1\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_that_updates_replaces_rows_and_the_later_row_wins() {
    let env = TestEnv::with_parents().await;
    let first = line(1, "Ann", 1) + &line(2, "Bo", 1);
    let r = env.employees(&first, OnDuplicate::Reject, false).await;
    assert_eq!((r.inserted, r.updated), (2, 0));

    // Without the option the data rules stand: a taken id is a duplicate.
    let again = line(2, "Bo Two", 2);
    let r = env.employees(&again, OnDuplicate::Reject, false).await;
    assert_eq!((r.inserted, r.updated, r.rejected), (0, 0, 1));

    let second = line(2, "Bo Two", 2)
        + &line(3, "Cy", 1)
        + &line(3, "Cy Later", 2)
        + &line(1, "Ann Moved", 9)
        + &line(4, "", 1);
    // A dry run says what it would do and does nothing.
    let dry = env.employees(&second, OnDuplicate::Update, true).await;
    assert_eq!((dry.inserted, dry.updated, dry.rejected), (1, 2, 2));
    assert_eq!(env.stored().await.len(), 2);

    let r = env.employees(&second, OnDuplicate::Update, false).await;
    assert_eq!((r.inserted, r.updated, r.rejected), (1, 2, 2), "{r:?}");
    assert_eq!(
        env.stored().await,
        [
            (1, "Ann".to_owned(), 1),
            (2, "Bo Two".to_owned(), 2),
            (3, "Cy Later".to_owned(), 2),
        ]
    );
    // The update to a department that is not there is a rejection, the
    // stored row unchanged.
    let log = env
        .store
        .rejections(RejectionFilter {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    let moved = log.iter().find(|r| r.raw.contains("Ann Moved")).unwrap();
    assert_eq!(moved.errors[0].code, ErrorCode::ForeignKey);
    let history = env
        .store
        .loads(Some(Table::HiredEmployees), 1)
        .await
        .unwrap();
    assert_eq!((history[0].inserted, history[0].updated), (1, 2));
    let sql = "SELECT COUNT(*) FROM hrmig_loads WHERE updated = 2";
    assert_eq!(query_i64(&env.url, sql).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_big_file_that_updates_goes_the_bulk_way_and_the_later_row_wins() {
    // Over the size from which a server database loads in bulk (2 MiB).
    let env = TestEnv::with_parents().await;
    let n = 40_000;
    let mut first = String::new();
    for id in 1..=n {
        first += &line(id, "Original Name Of Some Length", 1);
    }
    let r = env.employees(&first, OnDuplicate::Reject, false).await;
    assert_eq!(r.inserted, n as u64);
    // Every row again with new values; the even ids twice, the second
    // time to department 2; new ids after them.
    let mut second = String::new();
    for id in 1..=n {
        second += &line(id, "Updated Name Of Some Length", 1);
    }
    for id in (2..=n).step_by(2) {
        let _ = write!(second, "{}", line(id, "Updated Again", 2));
    }
    for id in n + 1..=n + 100 {
        second += &line(id, "New", 2);
    }
    assert!(second.len() > 2 << 20);
    let r = env.employees(&second, OnDuplicate::Update, false).await;
    assert_eq!(
        (r.inserted, r.updated, r.rejected),
        (100, n as u64 + n as u64 / 2, 0)
    );
    let count = |sql: &'static str| query_i64(&env.url, sql);
    assert_eq!(count("SELECT COUNT(*) FROM hired_employees").await, n + 100);
    assert_eq!(
        count("SELECT COUNT(*) FROM hired_employees WHERE name = 'Updated Again' AND department_id = 2").await,
        n / 2
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM hired_employees WHERE name = 'Updated Name Of Some Length'")
            .await,
        n / 2
    );
}

/// The API over a fresh database.
async fn api() -> (TestApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = common::db::database_url(dir.path()).await;
    let app = TestApp::spawn(&url, &dir.path().join("storage"), Keys::default()).await;
    let r = app
        .post_json(
            "/api/batches",
            &json!({"departments": [{"id": 1, "department": "Sales"}, {"id": 2, "department": "Legal"}],
                    "jobs": [{"id": 1, "job": "Engineer"}]}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    (app, dir)
}

/// The answer to a POST, as JSON, whatever its status.
async fn posted(app: &TestApp, path: &str, body: &Value) -> Value {
    app.post_json(path, body).await.json().await.unwrap()
}

/// The answer to a GET, as JSON.
async fn got(app: &TestApp, path: &str) -> Value {
    app.get(path).await.json().await.unwrap()
}

fn employee(id: i64, name: &str, department: i64) -> Value {
    json!({"id": id, "name": name, "datetime": "2021-03-04T05:06:07Z", "department_id": department, "job_id": 1})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_batches_update_on_request() {
    let (app, _dir) = api().await;
    let rows = "/api/tables/hired_employees/rows";
    let r = posted(
        &app,
        rows,
        &json!([employee(1, "Ann", 1), employee(2, "Bo", 1)]),
    )
    .await;
    assert_eq!(
        (r["inserted"].as_u64(), r["updated"].as_u64()),
        (Some(2), Some(0))
    );

    let body = json!([
        employee(2, "Bo Two", 2),
        employee(3, "Cy", 1),
        employee(3, "Cy Later", 2),
        employee(1, "Ann Moved", 9)
    ]);
    // Without the option: duplicates, as always.
    let r = posted(&app, rows, &body).await;
    assert_eq!(r["inserted"], 1);
    assert_eq!(r["rejected"].as_array().unwrap().len(), 3);
    let r = posted(&app, &format!("{rows}?on_duplicate=update"), &body).await;
    // Id 3 came in the reject run already: both its rows now update it.
    assert_eq!(
        (r["inserted"].as_u64(), r["updated"].as_u64()),
        (Some(0), Some(3)),
        "{r}"
    );
    assert_eq!(r["rejected"][0]["index"], 3);
    assert_eq!(r["rejected"][0]["errors"][0]["code"], "foreign_key");
    let stored = got(&app, "/api/tables/hired_employees/rows").await;
    let names: Vec<&str> = stored
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Ann", "Bo Two", "Cy Later"]);

    // Several tables: parents updated too, counted per table and in all.
    let r = posted(&app, "/api/batches?on_duplicate=update",
            &json!({"departments": [{"id": 1, "department": "Sales EMEA"}, {"id": 3, "department": "Ops"}],
                    "hired_employees": [employee(4, "Di", 3), employee(4, "Di Later", 3)]})).await;
    assert_eq!(
        (r["inserted"].as_u64(), r["updated"].as_u64()),
        (Some(2), Some(2)),
        "{r}"
    );
    assert_eq!(r["tables"]["departments"]["updated"], 1);
    assert_eq!(r["tables"]["hired_employees"]["updated"], 1);

    // A dry run that updates writes nothing.
    let r = posted(
        &app,
        &format!("{rows}?on_duplicate=update&dry_run=true"),
        &json!([employee(1, "Nobody", 1)]),
    )
    .await;
    assert_eq!(
        (r["updated"].as_u64(), r["dry_run"].as_bool()),
        (Some(1), Some(true))
    );
    let one = got(&app, "/api/tables/hired_employees/rows?limit=1").await;
    assert_eq!(one[0]["name"], "Ann");

    // The mode is part of what an idempotency key stands for.
    let keyed = |path: String| {
        app.client
            .post(format!("{}{path}", app.base))
            .header("idempotency-key", "upsert-key-1")
            .json(&json!([employee(5, "Ed", 1)]))
            .send()
    };
    assert_eq!(
        keyed(rows.to_owned()).await.unwrap().status(),
        StatusCode::OK
    );
    let other = keyed(format!("{rows}?on_duplicate=update")).await.unwrap();
    assert_eq!(other.status(), StatusCode::UNPROCESSABLE_ENTITY);

    for bad in [
        "?on_duplicate=replace",
        "?on_duplicate=",
        "?on_duplicate=UPDATE",
    ] {
        let r = app
            .post_json(&format!("{rows}{bad}"), &json!([employee(6, "Fay", 1)]))
            .await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
    let ids = got(&app, "/api/tables/hired_employees/rows").await;
    assert_eq!(
        ids.as_array().unwrap().len(),
        5,
        "refused requests change nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_job_updates_on_request() {
    let (app, dir) = api().await;
    let landing = dir.path().join("storage/landing");
    std::fs::create_dir_all(&landing).unwrap();
    std::fs::write(landing.join("jobs.csv"), "1,Staff Engineer\n2,Analyst\n").unwrap();
    let body = json!({"tables": ["jobs"], "on_duplicate": "update"});
    let r = app.post_json("/api/loads", &body).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let job: Value = r.json().await.unwrap();
    assert_eq!(job["request"]["on_duplicate"], "update");
    let path = format!("/api/loads/{}", job["id"].as_str().unwrap());
    let mut done = Value::Null;
    for _ in 0..200 {
        done = app.get(&path).await.json().await.unwrap();
        if done["status"] != "queued" && done["status"] != "running" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(done["status"], "done", "{done}");
    let report = &done["tables"][0];
    assert_eq!(
        (report["inserted"].as_u64(), report["updated"].as_u64()),
        (Some(1), Some(1))
    );
    let jobs = got(&app, "/api/tables/jobs/rows").await;
    assert_eq!(jobs[0]["job"], "Staff Engineer");
}
