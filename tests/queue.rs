//! The rejection log as a work queue (part of the conformance suite: SQLite,
//! and PostgreSQL or SQL Server as `common::db` says): statuses and filters,
//! retries of open rejections, fixes with a corrected row, dismissals, the
//! counts by code; through the operations and over HTTP; and the migration
//! of a database made before the queue existed.

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
use hrmig::ops::rejections::{self, QueueError, RetryRequest};
use hrmig::store::{OperationKind, Rejection, RejectionFilter, RejectionStatus};
use reqwest::StatusCode;
use serde_json::{Value, json};

const DEPARTMENTS: &str = "1,Sales\n2,Engineering\n";
const JOBS: &str = "1,Engineer\n2,Analyst\n";

/// Employees loaded before their parents: every row but the last two would
/// pass once the parents are there; line 4 names a department that never
/// comes, line 5 has no name.
const EMPLOYEES: &str = "\
1,Ann Lee,2021-01-05T10:00:00Z,1,1
2,Bo Chen,2021-04-05T10:00:00Z,2,2
3,Cy Diaz,2021-07-05T10:00:00Z,1,2
4,Di Eng,2021-10-05T10:00:00Z,9,1
5,,2021-10-06T10:00:00Z,1,1
";

impl TestEnv {
    fn write(&self, table: Table, content: &[u8]) {
        let dir = self.landing_dir();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{}.csv", table.name())), content).unwrap();
    }

    /// The employees, then their parents: five rejections, then two tables.
    async fn children_first() -> TestEnv {
        let env = TestEnv::new().await;
        let report = env
            .load_one(Table::HiredEmployees, EMPLOYEES.as_bytes())
            .await;
        assert_eq!((report.inserted, report.rejected), (0, 5), "{report:?}");
        env.load_parents().await;
        env
    }

    /// Writes `content` as `table`'s file and loads it.
    async fn load_one(&self, table: Table, content: &[u8]) -> hrmig::ops::load::LoadReport {
        self.write(table, content);
        self.load(&[table]).await.remove(0)
    }

    async fn load_parents(&self) {
        self.write(Table::Departments, DEPARTMENTS.as_bytes());
        self.write(Table::Jobs, JOBS.as_bytes());
        self.load(&[Table::Departments, Table::Jobs]).await;
    }

    async fn log(&self, filter: RejectionFilter) -> Vec<Rejection> {
        let filter = RejectionFilter {
            limit: 1000,
            ..filter
        };
        self.store.rejections(filter).await.unwrap()
    }

    async fn all(&self) -> Vec<Rejection> {
        self.log(RejectionFilter::default()).await
    }

    async fn employees(&self) -> u64 {
        self.store.count(Table::HiredEmployees).await.unwrap()
    }
}

fn codes(r: &Rejection) -> Vec<ErrorCode> {
    r.errors.iter().map(|e| e.code).collect()
}

fn open() -> RejectionFilter {
    RejectionFilter {
        status: Some(RejectionStatus::Open),
        limit: 1000,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_inserts_rows_whose_parents_arrived_and_resolves_their_rejections() {
    let env = TestEnv::children_first().await;
    assert!(
        env.all()
            .await
            .iter()
            .all(|r| r.status == RejectionStatus::Open)
    );
    let report = rejections::retry(&env.store, &RetryRequest::default())
        .await
        .unwrap();
    assert_eq!(
        (report.checked, report.resolved, report.still_open),
        (5, 3, 2)
    );
    assert_eq!(report.checked, report.resolved + report.still_open);
    assert_eq!(report.operations.len(), 1, "{report:?}");
    assert_eq!(env.employees().await, 3);

    // The operation is in the history, with its kind and counts.
    let op = report.operations[0];
    let history = env.store.loads(None, 100).await.unwrap();
    let entry = history.iter().find(|l| l.id == op).unwrap();
    assert_eq!(entry.kind, OperationKind::Retry);
    assert_eq!((entry.rows_read, entry.inserted, entry.rejected), (5, 3, 2));
    assert!(entry.source.starts_with("retry:"), "{}", entry.source);

    // Resolved by that operation, raw text and errors kept as they were.
    let log = env.all().await;
    assert_eq!(log.len(), 5, "a rejection is never deleted");
    let sql = "SELECT COUNT(*) FROM hrmig_rejections WHERE status = 'resolved'";
    assert_eq!(query_i64(&env.url, sql).await, 3);
    for r in &log[..3] {
        assert_eq!(r.status, RejectionStatus::Resolved, "{r:?}");
        assert_eq!(r.resolved_by, Some(op));
        assert_eq!(codes(r), [ErrorCode::ForeignKey, ErrorCode::ForeignKey]);
    }
    assert_eq!(log[0].raw, "1,Ann Lee,2021-01-05T10:00:00Z,1,1");
    // Still open, with the errors they have now: the department that
    // never came; a name still missing (its parents' errors gone).
    assert_eq!(
        (log[3].status, codes(&log[3])),
        (RejectionStatus::Open, vec![ErrorCode::ForeignKey])
    );
    assert!(log[3].errors[0].message.contains("no id 9"));
    assert_eq!(codes(&log[4]), [ErrorCode::Missing]);
    assert_eq!(log[4].resolved_by, None);

    // Again: nothing more passes, nothing changes, no operation recorded.
    let again = rejections::retry(&env.store, &RetryRequest::default())
        .await
        .unwrap();
    assert_eq!((again.checked, again.resolved, again.still_open), (2, 0, 2));
    assert!(again.operations.is_empty());
    assert_eq!(
        env.store.loads(None, 100).await.unwrap().len(),
        history.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_with_nothing_open_is_zero() {
    let env = TestEnv::new().await;
    let report = rejections::retry(&env.store, &RetryRequest::default())
        .await
        .unwrap();
    assert_eq!(report, Default::default());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_takes_parents_first_and_only_what_its_filters_name() {
    let env = TestEnv::new().await;
    // The employees before any department: every row fails a foreign key.
    env.load_one(Table::HiredEmployees, EMPLOYEES.as_bytes())
        .await;
    env.load_one(Table::Jobs, JOBS.as_bytes()).await;

    // Only foreign-key rejections of another source: none.
    let elsewhere = RetryRequest {
        source: Some("file:elsewhere.csv".into()),
        ..Default::default()
    };
    let none = rejections::retry(&env.store, &elsewhere).await.unwrap();
    assert_eq!(none.checked, 0);
    // Only the rows with a missing value: checked, still open.
    let missing = RetryRequest {
        code: Some(ErrorCode::Missing),
        ..Default::default()
    };
    let report = rejections::retry(&env.store, &missing).await.unwrap();
    assert_eq!((report.checked, report.resolved), (1, 0));
    // Departments still missing: every foreign-key rejection stays open.
    let report = rejections::retry(&env.store, &RetryRequest::default())
        .await
        .unwrap();
    assert_eq!((report.checked, report.resolved), (5, 0));
    assert_eq!(env.log(open()).await.len(), 5);
    // Now with departments: one call, parents before children.
    env.load_one(Table::Departments, DEPARTMENTS.as_bytes())
        .await;
    let report = rejections::retry(
        &env.store,
        &RetryRequest {
            table: Some(Table::HiredEmployees),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!((report.checked, report.resolved), (5, 3));
    assert_eq!(report.tables.len(), 1);
    assert_eq!(report.tables[0].table, "hired_employees");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_that_still_fails_gets_the_errors_it_has_now() {
    let env = TestEnv::children_first().await;
    // Another row with id 2 arrives first: the retried row 2 is now a
    // duplicate, not a missing parent.
    env.load_one(
        Table::HiredEmployees,
        b"2,Someone Else,2022-01-01T00:00:00Z,1,1\n",
    )
    .await;
    rejections::retry(&env.store, &RetryRequest::default())
        .await
        .unwrap();
    let row2 = env
        .all()
        .await
        .into_iter()
        .find(|r| r.position == 2)
        .unwrap();
    assert_eq!(row2.status, RejectionStatus::Open);
    assert_eq!(codes(&row2), [ErrorCode::Duplicate]);
    let stored = env.store.rows(Table::HiredEmployees, 1, 1).await.unwrap();
    assert_eq!(
        stored[0]["name"], "Someone Else",
        "the stored row is not replaced"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_whose_raw_text_is_kept_altered_are_never_retried() {
    let env = TestEnv::new().await;
    // Invalid UTF-8 in the name (kept as U+FFFD) and a parent not there
    // yet: read again, the altered text would pass.
    let mut file = b"1,Caf\xe9 Ol\xe9,2021-01-05T10:00:00Z,1,1\n".to_vec();
    file.extend_from_slice(b"2,Bo Chen,2021-04-05T10:00:00Z,1,1\n");
    env.load_one(Table::HiredEmployees, &file).await;
    env.load_parents().await;
    let report = rejections::retry(&env.store, &RetryRequest::default())
        .await
        .unwrap();
    assert_eq!((report.checked, report.resolved, report.skipped), (2, 1, 1));
    assert_eq!(env.employees().await, 1);
    let altered = &env.all().await[0];
    assert_eq!(altered.status, RejectionStatus::Open);
    assert!(codes(altered).contains(&ErrorCode::Encoding));
    assert!(!rejections::as_received(altered));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_is_filtered_by_status_and_code_and_counted() {
    let env = TestEnv::children_first().await;
    rejections::retry(&env.store, &RetryRequest::default())
        .await
        .unwrap();
    let by = |status, code| RejectionFilter {
        status,
        code,
        ..Default::default()
    };
    let resolved = env.log(by(Some(RejectionStatus::Resolved), None)).await;
    assert_eq!(resolved.len(), 3);
    let fk_open = env
        .log(by(Some(RejectionStatus::Open), Some(ErrorCode::ForeignKey)))
        .await;
    assert_eq!(fk_open.iter().map(|r| r.position).collect::<Vec<_>>(), [4]);
    assert!(env.log(by(None, Some(ErrorCode::TooLong))).await.is_empty());
    let missing = env.log(by(None, Some(ErrorCode::Missing))).await;
    assert_eq!(missing.len(), 1);

    let summary = env
        .store
        .rejection_summary(RejectionFilter::default())
        .await
        .unwrap();
    let counted: Vec<(&str, &str, RejectionStatus, i64)> = summary
        .iter()
        .map(|c| (c.table.as_str(), c.code.as_str(), c.status, c.count))
        .collect();
    assert_eq!(
        counted,
        [
            ("hired_employees", "foreign_key", RejectionStatus::Open, 1),
            (
                "hired_employees",
                "foreign_key",
                RejectionStatus::Resolved,
                3
            ),
            ("hired_employees", "missing", RejectionStatus::Open, 1),
        ]
    );
    let only_open = env.store.rejection_summary(open()).await.unwrap();
    assert_eq!(only_open.iter().map(|c| c.count).sum::<i64>(), 2);
}

fn corrected(id: i64, department: i64) -> Vec<u8> {
    json!({"id": id, "name": "Di Eng", "datetime": "2021-10-05T10:00:00Z", "department_id": department, "job_id": 1})
        .to_string()
        .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fix_inserts_a_corrected_row_or_changes_nothing() {
    let env = TestEnv::children_first().await;
    let log = env.all().await;
    let wrong_department = log.iter().find(|r| r.position == 4).unwrap();
    let id = wrong_department.id;

    // Still wrong: refused with the corrected row's errors, nothing changed.
    let refused = rejections::fix(&env.store, id, &corrected(4, 7))
        .await
        .unwrap();
    assert_eq!(refused.status, RejectionStatus::Open);
    assert_eq!(refused.errors[0].code, ErrorCode::ForeignKey);
    // Another table's shape: refused.
    let shape = rejections::fix(&env.store, id, br#"{"id": 4, "job": "Analyst"}"#)
        .await
        .unwrap();
    assert!(
        shape.errors.iter().any(|e| e.code == ErrorCode::Columns),
        "{shape:?}"
    );
    assert_eq!(env.all().await, log, "a refused fix changes nothing");
    assert_eq!(env.employees().await, 0);

    let fixed = rejections::fix(&env.store, id, &corrected(4, 2))
        .await
        .unwrap();
    assert_eq!(fixed.status, RejectionStatus::Resolved);
    let op = fixed.resolved_by.unwrap();
    let entry = env.store.loads(None, 100).await.unwrap();
    let entry = entry.iter().find(|l| l.id == op).unwrap();
    assert_eq!((entry.kind, entry.inserted), (OperationKind::Fix, 1));
    assert_eq!(env.employees().await, 1);
    let after = env.store.rejections_by_id(&[id]).await.unwrap().remove(0);
    assert_eq!(after.raw, wrong_department.raw, "the raw text stays");

    // Not open any more; not there; not an object.
    assert!(matches!(
        rejections::fix(&env.store, id, &corrected(4, 2)).await,
        Err(QueueError::NotOpen {
            status: RejectionStatus::Resolved,
            ..
        })
    ));
    assert!(matches!(
        rejections::fix(&env.store, 999_999, &corrected(4, 2)).await,
        Err(QueueError::NotFound(_))
    ));
    let other = log.iter().find(|r| r.position == 5).unwrap().id;
    for body in [&b"[1]"[..], b"not json", b""] {
        assert!(matches!(
            rejections::fix(&env.store, other, body).await,
            Err(QueueError::Bad(_))
        ));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dismissed_rejections_are_not_retried_and_a_second_dismissal_changes_nothing() {
    let env = TestEnv::children_first().await;
    let ids: Vec<i64> = env.all().await.iter().map(|r| r.id).collect();
    let done = rejections::dismiss(&env.store, &ids[..2]).await.unwrap();
    assert!(
        done.iter()
            .all(|d| d.changed && d.status == RejectionStatus::Dismissed)
    );
    let again = rejections::dismiss(&env.store, &ids[..1]).await.unwrap();
    assert!(!again[0].changed);
    assert_eq!(again[0].status, RejectionStatus::Dismissed);

    let report = rejections::retry(&env.store, &RetryRequest::default())
        .await
        .unwrap();
    assert_eq!((report.checked, report.resolved), (3, 1));
    // A resolved rejection is not dismissed.
    let resolved = env
        .log(RejectionFilter {
            status: Some(RejectionStatus::Resolved),
            ..Default::default()
        })
        .await;
    let kept = rejections::dismiss(&env.store, &[resolved[0].id])
        .await
        .unwrap();
    assert_eq!(
        (kept[0].changed, kept[0].status),
        (false, RejectionStatus::Resolved)
    );
    // An unknown id among known ones: nothing changes.
    let before = env.all().await;
    assert!(matches!(
        rejections::dismiss(&env.store, &[ids[4], 999_999]).await,
        Err(QueueError::NotFound(missing)) if missing == [999_999]
    ));
    assert!(matches!(
        rejections::dismiss(&env.store, &[]).await,
        Err(QueueError::Bad(_))
    ));
    let too_many: Vec<i64> = (1..=501).collect();
    assert!(matches!(
        rejections::dismiss(&env.store, &too_many).await,
        Err(QueueError::Bad(_))
    ));
    assert_eq!(env.all().await, before);
}

/// The API over a fresh database, with both keys.
struct Api {
    app: TestApp,
    _dir: tempfile::TempDir,
}

const USER: &str = "user-key";
const ADMIN: &str = "admin-key";

impl Api {
    async fn spawn() -> Api {
        let dir = tempfile::tempdir().unwrap();
        let url = common::db::database_url(dir.path()).await;
        let keys = Keys::new(Some(USER), Some(ADMIN));
        let app = TestApp::spawn(&url, &dir.path().join("storage"), keys).await;
        Api { app, _dir: dir }
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        key: &str,
        body: Option<&str>,
    ) -> (StatusCode, Value) {
        let url = format!("{}{path}", self.app.base);
        let req = match method {
            "GET" => self.app.client.get(url),
            _ => self.app.client.post(url),
        };
        let req = req
            .header("x-api-key", key)
            .header("content-type", "application/json");
        let req = match body {
            Some(b) => req.body(b.to_owned()),
            None => req,
        };
        let r = req.send().await.unwrap();
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call("POST", path, USER, Some(&body.to_string())).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_over_http() {
    let api = Api::spawn().await;
    // Employees sent before their department: rejected, logged as JSON.
    let (s, answer) = api
        .post(
            "/api/tables/hired_employees/rows",
            json!([
                {"id": 1, "name": "Ann Lee", "datetime": "2021-01-05T10:00:00Z", "department_id": 1, "job_id": 1},
                {"id": 2, "name": "Bo Chen", "datetime": "2021-01-05T10:00:00Z", "department_id": 5, "job_id": 1}
            ]),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(answer["rejected"].as_array().map(Vec::len), Some(2));
    let unkeyed = api
        .app
        .post_json(
            "/api/tables/departments/rows",
            &json!([{"id": 1, "department": "Sales"}]),
        )
        .await;
    assert_eq!(unkeyed.status(), StatusCode::UNAUTHORIZED, "no key");
    let (s, _) = api
        .post(
            "/api/tables/departments/rows",
            json!([{"id": 1, "department": "Sales"}]),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    api.post(
        "/api/tables/jobs/rows",
        json!([{"id": 1, "job": "Engineer"}]),
    )
    .await;

    let r = api.app.get("/api/rejections/summary?status=open").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "reads need a key too");
    let (s, summary) = api
        .call("GET", "/api/rejections/summary?status=open", USER, None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(summary[0]["code"], "foreign_key");
    // `code` filters, and `error_code` too (under the Functions host
    // `?code=` is the function key: see tests/azure/handler.rs).
    let (s, fk) = api
        .call(
            "GET",
            "/api/rejections?error_code=foreign_key&code=a-function-key",
            USER,
            None,
        )
        .await;
    assert_eq!((s, fk.as_array().map(Vec::len)), (StatusCode::OK, Some(2)));
    let (_, none) = api
        .call("GET", "/api/rejections?code=too_long", USER, None)
        .await;
    assert_eq!(none, json!([]));
    assert_eq!(summary[0]["count"], 2);

    // A retry needs the admin key.
    let (s, _) = api.call("POST", "/api/rejections/retry", USER, None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, report) = api.call("POST", "/api/rejections/retry", ADMIN, None).await;
    assert_eq!(s, StatusCode::OK, "{report}");
    assert_eq!(
        (report["checked"].as_u64(), report["resolved"].as_u64()),
        (Some(2), Some(1))
    );
    let (s, report) = api
        .call(
            "POST",
            "/api/rejections/retry",
            ADMIN,
            Some(r#"{"table": "jobs"}"#),
        )
        .await;
    assert_eq!((s, report["checked"].as_u64()), (StatusCode::OK, Some(0)));

    let (_, open) = api
        .call("GET", "/api/rejections?status=open", USER, None)
        .await;
    let id = open[0]["id"].as_i64().unwrap();
    assert_eq!(open[0]["status"], "open");
    let fix = format!("/api/rejections/{id}/fix");
    // Refused: 422 with the row's errors; a body that is not an object: 400.
    let (s, refused) = api
        .post(&fix, json!({"id": 2, "name": "Bo Chen", "datetime": "2021-01-05T10:00:00Z", "department_id": 6, "job_id": 1}))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(refused["error"]["code"], "row_rejected");
    assert_eq!(refused["errors"][0]["code"], "foreign_key");
    let (s, _) = api.post(&fix, json!([1, 2])).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, fixed) = api
        .post(&fix, json!({"id": 2, "name": "Bo Chen", "datetime": "2021-01-05T10:00:00Z", "department_id": 1, "job_id": 1}))
        .await;
    assert_eq!(s, StatusCode::OK, "{fixed}");
    assert_eq!(fixed["status"], "resolved");
    assert!(fixed["resolved_by"].as_i64().is_some());
    let (s, _) = api.post(&fix, json!({})).await;
    assert_eq!(s, StatusCode::CONFLICT);

    // Dismissals, and ids that are not there.
    let (s, d) = api
        .call("POST", &format!("/api/rejections/{id}/dismiss"), USER, None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        (d["status"].as_str(), d["changed"].as_bool()),
        (Some("resolved"), Some(false))
    );
    for path in [
        "/api/rejections/999999/dismiss",
        "/api/rejections/abc/dismiss",
        "/api/rejections/0/fix",
    ] {
        let (s, body) = api.call("POST", path, USER, Some("{}")).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}: {body}");
    }
    for query in [
        "status=closed",
        "error_code=nope",
        "code=nope",
        "table=people",
        "limit=0",
    ] {
        let (s, body) = api
            .call("GET", &format!("/api/rejections?{query}"), USER, None)
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{query}: {body}");
    }
    let (s, _) = api
        .call(
            "POST",
            "/api/rejections/retry",
            ADMIN,
            Some(r#"{"code": "nope"}"#),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = api
        .call(
            "POST",
            "/api/rejections/retry",
            ADMIN,
            Some(r#"{"tables": ["jobs"]}"#),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "unknown fields are refused");
    let (_, history) = api.call("GET", "/api/loads", USER, None).await;
    let kinds: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["kind"].as_str().unwrap())
        .filter(|kind| *kind != "batch")
        .collect();
    assert_eq!(kinds, ["fix", "retry"]);
}

/// A SQLite database made by an hrmig without the queue (migrations 0001
/// and 0002, `user_version` 0), with a rejection and a load in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_made_before_the_queue_is_brought_up_to_date() {
    if common::db::postgres() || common::db::mssql() {
        // The server dialects add each column only when it is missing,
        // which every fresh schema of this suite runs through twice below.
        let dir = tempfile::tempdir().unwrap();
        let url = common::db::database_url(dir.path()).await;
        drop(hrmig::store::Store::open(&url).await.unwrap());
        let store = hrmig::store::Store::open(&url).await.unwrap();
        assert!(store.rejections(open()).await.unwrap().is_empty());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(&hrmig::store::ddl::init(hrmig::store::Dialect::Sqlite))
            .unwrap();
        conn.execute_batch(&hrmig::store::ddl::reports(hrmig::store::Dialect::Sqlite))
            .unwrap();
        conn.execute_batch(
            r#"INSERT INTO hrmig_rejections (table_name, source, position, raw, errors, rejected_at)
               VALUES ('jobs', 'file:jobs.csv', 1, '1,', '[{"column":"job","code":"missing","message":"empty"}]', '2024-01-01T00:00:00.000Z');
               INSERT INTO hrmig_loads (table_name, source, sha256, status, rows_read, inserted, rejected, blank, started_at, finished_at)
               VALUES ('jobs', 'file:jobs.csv', 'ab', 'loaded', 1, 0, 1, 0, '2024-01-01T00:00:00.000Z', '2024-01-01T00:00:00.000Z');"#,
        )
        .unwrap();
    }
    let url = format!("sqlite://{}", path.display());
    for _ in 0..2 {
        let store = hrmig::store::Store::open(&url).await.unwrap();
        let log = store.rejections(open()).await.unwrap();
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].resolved_by, None);
        let loads = store.loads(None, 10).await.unwrap();
        assert_eq!(loads[0].kind, OperationKind::Load);
        store.close().await.unwrap();
    }
    let migrations = hrmig::store::ddl::migrations(hrmig::store::Dialect::Sqlite).len();
    assert_eq!(
        query_i64(&url, "PRAGMA user_version").await,
        migrations as i64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_with_an_open_quote_does_not_take_in_the_next_ones_on_a_retry() {
    let env = TestEnv::new().await;
    // The first file ends in a record whose quote never closes: its raw
    // text, read before the next file's records, would take them in.
    env.load_one(
        Table::HiredEmployees,
        b"1,Ann Lee,2021-01-05T10:00:00Z,1,1\n2,\"Bo Chen,2021-01-05T10:00:00Z,1,1\n",
    )
    .await;
    env.load_one(
        Table::HiredEmployees,
        b"3,Cy Diaz,2021-01-05T10:00:00Z,1,1\n4,Di Eng,2021-01-05T10:00:00Z,2,2\n",
    )
    .await;
    assert_eq!(env.all().await.len(), 4);
    env.load_parents().await;
    let report = rejections::retry(&env.store, &RetryRequest::default())
        .await
        .unwrap();
    assert_eq!(
        (report.checked, report.resolved, report.still_open),
        (4, 3, 1)
    );
    let stored = env.store.rows(Table::HiredEmployees, 0, 10).await.unwrap();
    let ids: Vec<i64> = stored.iter().map(|r| r["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, [1, 3, 4]);
    let open = env.log(open()).await;
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].raw, "2,\"Bo Chen,2021-01-05T10:00:00Z,1,1");
    assert_eq!(codes(&open[0]), [ErrorCode::Format]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_in_several_rounds_is_one_operation() {
    let env = TestEnv::new().await;
    let n = 2 * rejections::RETRY_ROUND as i64 + 500;
    let mut file = String::new();
    for id in 1..=n {
        file += &format!("{id},Person {id},2021-01-05T10:00:00Z,{},1\n", 1 + id % 2);
    }
    env.load_one(Table::HiredEmployees, file.as_bytes()).await;
    env.load_parents().await;
    let report = rejections::retry(&env.store, &RetryRequest::default())
        .await
        .unwrap();
    assert_eq!((report.checked, report.resolved), (n as u64, n as u64));
    assert_eq!(report.operations.len(), 1, "{report:?}");
    let op = report.operations[0];
    let history = env.store.loads(None, 100).await.unwrap();
    let retries: Vec<_> = history
        .iter()
        .filter(|l| l.kind == OperationKind::Retry)
        .collect();
    assert_eq!(retries.len(), 1);
    assert_eq!(
        (
            retries[0].id,
            retries[0].rows_read,
            retries[0].inserted,
            retries[0].rejected
        ),
        (op, n, n, 0)
    );
    let sql = format!("SELECT COUNT(*) FROM hrmig_rejections WHERE resolved_by = {op}");
    assert_eq!(query_i64(&env.url, &sql).await, n);
}
