//! Lineage and undo (part of the conformance suite: SQLite, and PostgreSQL
//! or SQL Server as `common::db` says): every load, batch, restore, retry
//! and fix is an operation with an id; a row names the operation that last
//! wrote it; an undo removes exactly the rows an operation inserted, in
//! one transaction, or is refused with the counts that say why.

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
use hrmig::dictionary::Table;
use hrmig::http::Keys;
use hrmig::ops::backup::{self, Codec};
use hrmig::ops::lineage::{self, LineageError, UndoReport};
use hrmig::ops::load::{self, LoadReport};
use hrmig::ops::rejections::{self, RetryRequest};
use hrmig::ops::{Progress, Quiet};
use hrmig::store::{OnDuplicate, OperationKind, Origin, RejectionFilter, RejectionStatus};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::sync::Arc;

const DEPARTMENTS: &str = "1,Sales\n2,Engineering\n";
const JOBS: &str = "1,Engineer\n2,Analyst\n";
/// Three valid rows (lines 1, 2, 4) and one without a name (line 3).
const EMPLOYEES: &str = "\
1,Ann Lee,2021-01-05T10:00:00Z,1,1
2,Bo Chen,2021-04-05T10:00:00Z,2,2
7,,2021-07-05T10:00:00Z,1,2
3,Cy Diaz,2021-10-05T10:00:00Z,1,1
";

impl TestEnv {
    /// Writes `content` as `table`'s file and loads it.
    async fn load_text(
        &self,
        table: Table,
        content: &str,
        on_duplicate: OnDuplicate,
    ) -> LoadReport {
        let dir = self.landing_dir();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{}.csv", table.name())), content).unwrap();
        let mut req = self.request(&[table]);
        req.on_duplicate = on_duplicate;
        req.force = true;
        load::load(&self.store, &req).await.unwrap().remove(0)
    }

    async fn parents(&self) -> (i64, i64) {
        let dir = self.landing_dir();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("departments.csv"), DEPARTMENTS).unwrap();
        std::fs::write(dir.join("jobs.csv"), JOBS).unwrap();
        let reports = self.load(&[Table::Departments, Table::Jobs]).await;
        (reports[0].load_id.unwrap(), reports[1].load_id.unwrap())
    }

    async fn origin(&self, table: Table, id: i64) -> Option<Origin> {
        lineage::row(&self.store, table, id).await.unwrap().origin
    }

    async fn undo(&self, id: i64) -> Result<UndoReport, LineageError> {
        lineage::undo(&self.store, id).await
    }

    async fn ids(&self, table: Table) -> Vec<i64> {
        let rows = self.store.rows(table, i64::MIN, 1000).await.unwrap();
        rows.iter().map(|r| r["id"].as_i64().unwrap()).collect()
    }
}

fn refusal(result: Result<UndoReport, LineageError>) -> hrmig::store::UndoRefusal {
    match result {
        Err(LineageError::Refused { refusal, .. }) => refusal,
        other => panic!("not refused: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_knows_its_rows_and_an_undo_removes_exactly_them() {
    let env = TestEnv::new().await;
    env.parents().await;
    let first = env
        .load_text(Table::HiredEmployees, EMPLOYEES, OnDuplicate::Reject)
        .await;
    assert_eq!((first.inserted, first.rejected), (3, 1));
    let load_id = first.load_id.expect("a committed load has an id");
    for (id, line) in [(1, 1), (2, 2), (3, 4)] {
        let origin = env.origin(Table::HiredEmployees, id).await.unwrap();
        assert_eq!(
            (origin.operation, origin.kind, origin.line, origin.index),
            (load_id, OperationKind::Load, Some(line), None),
            "id {id}"
        );
        assert!(origin.source.ends_with("hired_employees.csv"), "{origin:?}");
    }
    let second = "10,Di Eng,2021-11-05T10:00:00Z,2,1\n11,Ed Fu,2021-12-05T10:00:00Z,2,2\n";
    let second = env
        .load_text(Table::HiredEmployees, second, OnDuplicate::Reject)
        .await;
    assert!(second.load_id > first.load_id);

    let undone = env.undo(load_id).await.unwrap();
    assert!(undone.changed);
    assert_eq!((undone.removed, undone.kind), (3, OperationKind::Load));
    assert_eq!(env.ids(Table::HiredEmployees).await, [10, 11]);
    assert!(matches!(
        lineage::row(&env.store, Table::HiredEmployees, 1).await,
        Err(LineageError::NoRow { id: 1, .. })
    ));
    // The rejection it logged stays in the log.
    let all = RejectionFilter {
        limit: 100,
        ..Default::default()
    };
    assert_eq!(env.store.rejections(all).await.unwrap().len(), 1);
    // The history says what happened, both ways.
    let entry = env.store.load(load_id).await.unwrap().unwrap();
    assert_eq!(entry.undone_by, Some(undone.undo_id));
    let undo = env.store.load(undone.undo_id).await.unwrap().unwrap();
    assert_eq!(
        (undo.kind, undo.removed, undo.source.as_str()),
        (OperationKind::Undo, 3, format!("undo:{load_id}").as_str())
    );

    // Twice: nothing changes, and the answer says so.
    let again = env.undo(load_id).await.unwrap();
    assert_eq!((again.changed, again.removed), (false, 0));
    assert_eq!(again.undo_id, undone.undo_id);
    assert_eq!(env.ids(Table::HiredEmployees).await, [10, 11]);
    // An undo is not undone; an unknown id is not found.
    assert!(
        refusal(env.undo(undone.undo_id).await)
            .reason
            .contains("undo")
    );
    assert!(matches!(
        env.undo(987_654).await,
        Err(LineageError::NoOperation(987_654))
    ));

    // The rows can be loaded again; they are the new load's.
    let again = env
        .load_text(Table::HiredEmployees, EMPLOYEES, OnDuplicate::Reject)
        .await;
    assert_eq!(again.inserted, 3);
    let origin = env.origin(Table::HiredEmployees, 3).await.unwrap();
    assert_eq!(origin.operation, again.load_id.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undo_is_refused_while_other_rows_reference_the_rows() {
    let env = TestEnv::new().await;
    let (departments, _) = env.parents().await;
    let employees = env
        .load_text(Table::HiredEmployees, EMPLOYEES, OnDuplicate::Reject)
        .await;
    let refused = refusal(env.undo(departments).await);
    assert_eq!(
        (refused.referenced, refused.updated, refused.written_since),
        (3, 0, 0),
        "{refused:?}"
    );
    assert!(
        refused.reason.contains("hired_employees id 1"),
        "{}",
        refused.reason
    );
    assert_eq!(env.ids(Table::Departments).await, [1, 2], "nothing changed");
    assert_eq!(
        env.store
            .load(departments)
            .await
            .unwrap()
            .unwrap()
            .undone_by,
        None
    );
    // Children first, then the parents go.
    env.undo(employees.load_id.unwrap()).await.unwrap();
    let undone = env.undo(departments).await.unwrap();
    assert_eq!((undone.changed, undone.removed), (true, 2));
    assert!(env.ids(Table::Departments).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_an_upsert_wrote_are_its_own_and_neither_load_can_be_undone() {
    let env = TestEnv::new().await;
    let first = env.load_text(Table::Jobs, JOBS, OnDuplicate::Reject).await;
    let second = env
        .load_text(Table::Jobs, "3,Designer\n2,Manager\n", OnDuplicate::Update)
        .await;
    assert_eq!((second.inserted, second.updated), (1, 1));
    let (first, second) = (first.load_id.unwrap(), second.load_id.unwrap());
    let job2 = env.origin(Table::Jobs, 2).await.unwrap();
    assert_eq!((job2.operation, job2.line), (second, Some(2)));
    let job1 = env.origin(Table::Jobs, 1).await.unwrap();
    assert_eq!((job1.operation, job1.line), (first, Some(1)));

    let refused = refusal(env.undo(second).await);
    assert_eq!(refused.updated, 1, "{refused:?}");
    let refused = refusal(env.undo(first).await);
    assert_eq!(refused.written_since, 1, "{refused:?}");
    assert!(
        refused.reason.contains(&second.to_string()),
        "{}",
        refused.reason
    );
    assert_eq!(env.ids(Table::Jobs).await, [1, 2, 3], "nothing changed");

    // A row another program wrote has no origin.
    let insert = match env.url.starts_with("mssql://") {
        true => {
            "INSERT INTO jobs (id, job) OUTPUT CAST(inserted.id AS BIGINT) VALUES (50, 'Other')"
        }
        false => "INSERT INTO jobs (id, job) VALUES (50, 'Other') RETURNING CAST(id AS BIGINT)",
    };
    assert_eq!(query_i64(&env.url, insert).await, 50);
    assert_eq!(env.origin(Table::Jobs, 50).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_of_scattered_ids_keeps_every_row_its_line() {
    let env = TestEnv::new().await;
    // Descending ids: each row a run of its own, more runs than a load
    // holds before it writes them.
    let rows = 40_000;
    let file: String = (0..rows)
        .map(|i| format!("{},Department {i}\n", rows - i))
        .collect();
    let report = env
        .load_text(Table::Departments, &file, OnDuplicate::Reject)
        .await;
    assert_eq!(report.inserted, rows as u64);
    let load_id = report.load_id.unwrap();
    for (id, line) in [(rows, 1), (1, rows), (12_345, rows - 12_345 + 1)] {
        let origin = env.origin(Table::Departments, id).await.unwrap();
        assert_eq!(
            (origin.operation, origin.line),
            (load_id, Some(line)),
            "id {id}"
        );
    }
    let undone = env.undo(load_id).await.unwrap();
    assert_eq!(undone.removed, rows as u64);
    assert_eq!(env.store.count(Table::Departments).await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_is_an_operation_and_its_undo_opens_the_rejections_again() {
    let env = TestEnv::new().await;
    let early = env
        .load_text(Table::HiredEmployees, EMPLOYEES, OnDuplicate::Reject)
        .await;
    assert_eq!(early.inserted, 0);
    env.parents().await;
    let report = rejections::retry(&env.store, &RetryRequest::default())
        .await
        .unwrap();
    assert_eq!(report.resolved, 3);
    let retry = report.operations[0];
    let resolved = RejectionFilter {
        status: Some(RejectionStatus::Resolved),
        limit: 100,
        ..Default::default()
    };
    let log = env.store.rejections(resolved.clone()).await.unwrap();
    let origin = env.origin(Table::HiredEmployees, 2).await.unwrap();
    assert_eq!(
        (origin.operation, origin.kind),
        (retry, OperationKind::Retry)
    );
    let from = log.iter().find(|r| r.raw.starts_with("2,")).unwrap();
    assert_eq!(origin.rejection, Some(from.id));

    let undone = env.undo(retry).await.unwrap();
    assert_eq!(undone.removed, 3);
    assert!(env.store.rejections(resolved).await.unwrap().is_empty());
    let open = RejectionFilter {
        status: Some(RejectionStatus::Open),
        limit: 100,
        ..Default::default()
    };
    let open = env.store.rejections(open).await.unwrap();
    assert_eq!(open.len(), 4, "the rows are back in the queue");
    assert!(open.iter().all(|r| r.resolved_by.is_none()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_is_the_origin_of_every_row_and_is_not_undone() {
    let env = TestEnv::new().await;
    let (departments, _) = env.parents().await;
    let storage = hrmig::storage::Storage::open(env.storage_dir().to_str().unwrap()).unwrap();
    let quiet = || -> Arc<dyn Progress> { Arc::new(Quiet) };
    let m = backup::backup(
        &env.store,
        &storage,
        Table::Departments,
        Codec::DEFAULT,
        quiet(),
    )
    .await
    .unwrap();
    let restored = backup::restore(&env.store, &storage, Table::Departments, None, quiet())
        .await
        .unwrap();
    let origin = env.origin(Table::Departments, 2).await.unwrap();
    assert_eq!(
        (origin.operation, origin.kind, origin.line),
        (restored.load_id, OperationKind::Restore, None)
    );
    assert_eq!(origin.source, format!("backup:{}", m.backup));
    assert!(
        refusal(env.undo(restored.load_id).await)
            .reason
            .contains("restore")
    );
    // The load before it: its rows were written again since.
    let refused = refusal(env.undo(departments).await);
    assert_eq!(refused.written_since, 2, "{refused:?}");
    assert_eq!(env.ids(Table::Departments).await, [1, 2]);
}

const USER: &str = "user-key";
const ADMIN: &str = "admin-key";

async fn call(
    app: &TestApp,
    method: &str,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let url = format!("{}{path}", app.base);
    let req = match method {
        "GET" => app.client.get(url),
        _ => app.client.post(url),
    };
    let req = req.header("x-api-key", key);
    let req = match body {
        Some(b) => req.json(&b),
        None => req,
    };
    let r = req.send().await.unwrap();
    (r.status(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_are_operations_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let url = common::db::database_url(dir.path()).await;
    let keys = Keys::new(Some(USER), Some(ADMIN));
    let app = TestApp::spawn(&url, &dir.path().join("storage"), keys).await;
    let rows = json!([{"id": 5, "department": "Sales"}, {"id": 6, "department": ""}, {"id": 7, "department": "Legal"}]);
    let (s, batch) = call(
        &app,
        "POST",
        "/api/tables/departments/rows",
        USER,
        Some(rows),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{batch}");
    let load_id = batch["load_id"]
        .as_i64()
        .expect("a batch has an operation id");
    let r = app.get("/api/tables/departments/rows/7").await;
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "a row is read with a key"
    );
    let undo = format!("/api/loads/{load_id}/undo");
    let r = app.post_json(&undo, &json!({})).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let (s, row) = call(&app, "GET", "/api/tables/departments/rows/7", USER, None).await;
    assert_eq!(s, StatusCode::OK, "{row}");
    assert_eq!(row["row"], json!({"id": 7, "department": "Legal"}));
    let origin = &row["origin"];
    assert_eq!(
        (
            origin["operation"].as_i64(),
            origin["kind"].as_str(),
            origin["index"].as_i64()
        ),
        (Some(load_id), Some("batch"), Some(2))
    );
    assert_eq!(
        origin["source"],
        format!("api:{}", batch["batch_id"].as_str().unwrap())
    );
    assert!(origin.get("line").is_none(), "{origin}");

    // Several tables: one operation each.
    let body = json!({"jobs": [{"id": 1, "job": "Engineer"}], "hired_employees": [{"id": 1, "name": "Ann", "datetime": "2021-01-05T10:00:00Z", "department_id": 5, "job_id": 1}]});
    let (s, many) = call(&app, "POST", "/api/batches", USER, Some(body)).await;
    assert_eq!(s, StatusCode::OK, "{many}");
    let jobs = many["tables"]["jobs"]["load_id"].as_i64().unwrap();
    let employees = many["tables"]["hired_employees"]["load_id"]
        .as_i64()
        .unwrap();
    assert_ne!(jobs, employees);
    // A dry run is no operation.
    let dry = json!([{"id": 9, "department": "Dry"}]);
    let (_, dry) = call(
        &app,
        "POST",
        "/api/tables/departments/rows?dry_run=true",
        USER,
        Some(dry),
    )
    .await;
    assert!(dry.get("load_id").is_none(), "{dry}");

    // Undo: the admin key; refused while employees reference department 5.
    let undo = format!("/api/loads/{load_id}/undo");
    let (s, _) = call(&app, "POST", &undo, USER, None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, refused) = call(&app, "POST", &undo, ADMIN, None).await;
    assert_eq!(s, StatusCode::CONFLICT, "{refused}");
    assert_eq!(refused["error"]["code"], "undo_refused");
    assert_eq!(
        (refused["referenced"].as_u64(), refused["updated"].as_u64()),
        (Some(1), Some(0))
    );
    let (s, done) = call(
        &app,
        "POST",
        &format!("/api/loads/{employees}/undo"),
        ADMIN,
        None,
    )
    .await;
    assert_eq!(
        (s, done["removed"].as_u64()),
        (StatusCode::OK, Some(1)),
        "{done}"
    );
    let (s, done) = call(&app, "POST", &undo, ADMIN, None).await;
    assert_eq!(s, StatusCode::OK, "{done}");
    assert_eq!(
        (done["changed"].as_bool(), done["removed"].as_u64()),
        (Some(true), Some(2))
    );
    let (s, again) = call(&app, "POST", &undo, ADMIN, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        (again["changed"].as_bool(), again["undo_id"].clone()),
        (Some(false), done["undo_id"].clone())
    );
    let (_, history) = call(&app, "GET", "/api/loads?table=departments", USER, None).await;
    let undone = history
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == load_id)
        .unwrap();
    assert_eq!(undone["undone_by"], done["undo_id"]);

    for path in [
        "/api/loads/999999/undo",
        "/api/loads/abc/undo",
        "/api/loads/0/undo",
    ] {
        let (s, body) = call(&app, "POST", path, ADMIN, None).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}: {body}");
    }
    for path in [
        "/api/tables/departments/rows/5",
        "/api/tables/departments/rows/abc",
        "/api/tables/departments/rows/99999999999",
        "/api/tables/people/rows/1",
    ] {
        let (s, body) = call(&app, "GET", path, USER, None).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}: {body}");
    }
    let (s, job) = call(&app, "GET", "/api/tables/jobs/rows/1", USER, None).await;
    assert_eq!(
        (s, job["origin"]["operation"].as_i64()),
        (StatusCode::OK, Some(jobs))
    );
}
