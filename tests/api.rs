//! The HTTP API, black-box: the real router on a loopback port, a fresh
//! database per test (SQLite, or PostgreSQL: see tests/common).

mod common {
    pub mod app;
    pub mod db;
    pub mod files;
    pub mod query;
    pub mod servers;
    pub mod tables;
}

use common::app::TestApp;
use hrmig::http::{AppState, Keys};
use hrmig::storage::Storage;
use hrmig::store::Store;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::sync::Arc;

/// The API over a fresh database of this run's backend (see `common::db`),
/// its storage in the same folder.
struct FreshApp {
    app: TestApp,
    /// The database's URL.
    url: String,
    dir: tempfile::TempDir,
}

impl std::ops::Deref for FreshApp {
    type Target = TestApp;

    fn deref(&self) -> &TestApp {
        &self.app
    }
}

impl FreshApp {
    async fn spawn() -> FreshApp {
        let app = FreshApp::with_keys(Keys::default()).await;
        app.seed_parents().await;
        app
    }

    async fn with_keys(keys: Keys) -> FreshApp {
        let dir = tempfile::tempdir().unwrap();
        let url = common::db::database_url(dir.path()).await;
        let app = TestApp::spawn(&url, &dir.path().join("storage"), keys).await;
        FreshApp { app, url, dir }
    }

    /// Parents used by most tests.
    async fn seed_parents(&self) {
        let app = self;
        let r = app.post_json("/api/tables/departments/rows", &json!([{"id":1,"department":"Sales"},{"id":2,"department":"Legal"},{"id":3,"department":"Engineering"}])).await;
        assert_eq!(r.status(), StatusCode::OK);
        let r = app
            .post_json(
                "/api/tables/jobs/rows",
                &json!([{"id":1,"job":"Engineer"},{"id":2,"job":"Analyst"}]),
            )
            .await;
        assert_eq!(r.status(), StatusCode::OK);
    }

    async fn post_raw(
        &self,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        self.client
            .post(format!("{}{path}", self.base))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// POSTs `body` and reads the answer as JSON, whatever its status.
    async fn post_for_json(&self, path: &str, body: &Value) -> Value {
        self.post_json(path, body).await.json().await.unwrap()
    }

    async fn get_json(&self, path: &str) -> Value {
        let r = self.get(path).await;
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        r.json().await.unwrap()
    }

    async fn count(&self, table: &str) -> u64 {
        let tables = self.get_json("/api/tables").await;
        common::tables::rows_in(&tables, table)
    }

    async fn rejection_count(&self) -> usize {
        self.get_json("/api/rejections?limit=1000")
            .await
            .as_array()
            .unwrap()
            .len()
    }
}

fn employee(id: i64) -> Value {
    json!({"id": id, "name": "Ann Lee", "datetime": "2021-07-27T16:02:08Z", "department_id": 1, "job_id": 2})
}

const EMP: &str = "/api/tables/hired_employees/rows";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_tables() {
    let app = FreshApp::spawn().await;
    assert_eq!(
        app.get_json("/api/health").await,
        json!({"status":"ok","database":"ok"})
    );
    let tables = app.get_json("/api/tables").await;
    assert_eq!(tables[2]["name"], "hired_employees");
    assert_eq!(tables[2]["columns"][2]["type"], "DATETIME");
    assert_eq!(tables[0]["rows"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_batch_inserts_the_valid_rows_and_logs_the_rest() {
    let app = FreshApp::spawn().await;
    let rows: Vec<Value> = (0..1000)
        .map(|i| {
            if i % 5 < 3 {
                employee(i + 1)
            } else {
                json!({"id": i + 1, "name": "", "datetime": "x", "department_id": 9, "job_id": 2})
            }
        })
        .collect();
    let r = app.post_json(EMP, &Value::Array(rows)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        (body["received"].as_u64(), body["inserted"].as_u64()),
        (Some(1000), Some(600))
    );
    let rejected = body["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), 400);
    assert_eq!(rejected[0]["index"], 3);
    assert_eq!(rejected[0]["row"]["id"], 4);
    let codes: Vec<&str> = rejected[0]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, vec!["missing", "format", "foreign_key"]);
    assert_eq!(app.count("hired_employees").await, 600);
    let log = app
        .get_json(&format!(
            "/api/rejections?source=api:{}&limit=1000",
            body["batch_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(log.as_array().unwrap().len(), 400);
    assert_eq!(log[0]["position"], 3);
    assert_eq!(log[0]["table"], "hired_employees");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_size_limits() {
    let app = FreshApp::spawn().await;
    let r = app.post_json(EMP, &json!([employee(1)])).await;
    assert_eq!(r.status(), StatusCode::OK);
    let thousand: Vec<Value> = (2..1002).map(employee).collect();
    assert_eq!(
        app.post_json(EMP, &Value::Array(thousand)).await.status(),
        StatusCode::OK
    );
    let too_many: Vec<Value> = (5000..6001).map(employee).collect();
    let r = app.post_json(EMP, &Value::Array(too_many)).await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let r = app.post_json(EMP, &json!([])).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(app.count("hired_employees").await, 1001);
    assert_eq!(app.rejection_count().await, 0);
}

/// Requests that are malformed: (path, content type, body, the status).
fn malformed_requests() -> Vec<(&'static str, &'static str, String, StatusCode)> {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    // Long bodies whose error comes after hundreds of valid rows (rows the
    // server may already be writing when it finds the error).
    let rows: Vec<String> = (1..=800).map(|i| employee(i).to_string()).collect();
    let valid_then_cut = format!("[{},{{\"id\": 9", rows.join(","));
    let valid_then_garbage = format!("[{}] x", rows.join(","));
    vec![
        (
            EMP,
            "application/json",
            "[{\"id\": 1, \"name\"".into(),
            StatusCode::BAD_REQUEST,
        ),
        (
            EMP,
            "application/json",
            valid_then_cut,
            StatusCode::BAD_REQUEST,
        ),
        (
            EMP,
            "application/json",
            valid_then_garbage,
            StatusCode::BAD_REQUEST,
        ),
        (EMP, "application/json", deep, StatusCode::BAD_REQUEST),
        (
            EMP,
            "application/json",
            "{\"id\": 1}".into(),
            StatusCode::BAD_REQUEST,
        ),
        (
            EMP,
            "text/plain",
            "1,a".into(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "/api/tables/nope/rows",
            "application/json",
            "[]".into(),
            StatusCode::NOT_FOUND,
        ),
        (
            "/api/tables/jobs;DROP TABLE jobs--/rows",
            "application/json",
            "[]".into(),
            StatusCode::NOT_FOUND,
        ),
        (
            "/api/batches",
            "application/json",
            "{\"nope\": []}".into(),
            StatusCode::BAD_REQUEST,
        ),
        (EMP, "text/csv", "\n\r\n".into(), StatusCode::BAD_REQUEST),
        // Optional bodies are objects: serde alone would read a struct
        // from an array of its fields, or `null` as nothing.
        (
            "/api/backups",
            "application/json",
            "[null, null]".into(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/loads",
            "application/json",
            "null".into(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/loads",
            "application/json",
            "{\"max_rejects\": 1.5}".into(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/loads",
            "application/json",
            "{\"max_rejects\": 9223372036854775808}".into(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/loads",
            "application/json",
            "{\"on_duplicate\": \"replace\"}".into(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/backups",
            "application/json",
            "{\"tables\": [\"\"]}".into(),
            StatusCode::BAD_REQUEST,
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_change_nothing() {
    let app = FreshApp::spawn().await;
    let cases = malformed_requests();
    for (path, ct, body, status) in cases {
        let r = app.post_raw(path, ct, body).await;
        assert_eq!(r.status(), status, "{path} {ct}");
        let err: Value = r.json().await.unwrap();
        assert!(
            err["error"]["code"].is_string() && err["error"]["message"].is_string(),
            "{err}"
        );
    }
    // A query parameter naming no table is malformed, on every route.
    for path in ["/api/rejections?table=nope", "/api/backups?table=nope"] {
        assert_eq!(
            app.get(path).await.status(),
            StatusCode::BAD_REQUEST,
            "{path}"
        );
    }
    assert_eq!(app.count("hired_employees").await, 0);
    assert_eq!(app.count("jobs").await, 2);
    assert_eq!(app.rejection_count().await, 0);
    assert_eq!(app.get("/api/health").await.status(), StatusCode::OK);
}

/// A large batch is written while it is still being read; a row found
/// late that needs the general reading (a nested value) must not make any
/// row count twice or go missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_irregular_late_in_the_body_is_applied_once() {
    let app = FreshApp::spawn().await;
    let mut rows: Vec<Value> = (1..=1000).map(employee).collect();
    rows[700]["name"] = json!(["Ann", "Lee"]);
    rows[900]["id"] = json!(50);
    let r = app.post_json(EMP, &Value::Array(rows)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["received"], 1000);
    assert_eq!(b["inserted"], 998);
    let rejected: Vec<(u64, &str, &str)> = b["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["index"].as_u64().unwrap(),
                r["errors"][0]["code"].as_str().unwrap(),
                r["errors"][0]["column"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rejected,
        vec![(700, "type", "name"), (900, "duplicate", "id")]
    );
    assert_eq!(app.count("hired_employees").await, 998);
    assert_eq!(app.rejection_count().await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_row_json_rules() {
    let app = FreshApp::spawn().await;
    let body = r#"[
        {"id": "12", "name": "A", "datetime": "2021-07-27T16:02:08Z", "department_id": 1, "job_id": 2},
        {"id": 13, "name": null, "datetime": "2021-07-27T16:02:08Z", "department_id": 1, "job_id": 2},
        {"id": 14, "id": 15, "name": "A", "datetime": "2021-07-27T16:02:08Z", "department_id": 1, "job_id": 2},
        {"id": 16, "name": "A", "datetime": "2021-07-27T16:02:08Z", "department_id": 1, "job_id": 2, "salary": 5},
        {"id": 17, "name": "\ud800", "datetime": "2021-07-27T16:02:08Z", "department_id": 1, "job_id": 2},
        {"id": 18, "name": "Robert'); DROP TABLE hired_employees;--", "datetime": "2021-07-27T16:02:08Z", "department_id": 1, "job_id": 2},
        42
    ]"#;
    let r = app.post_raw(EMP, "application/json", body).await;
    assert!(
        r.status() == StatusCode::OK || r.status() == StatusCode::BAD_REQUEST,
        "{}",
        r.status()
    );
    if r.status() == StatusCode::OK {
        let b: Value = r.json().await.unwrap();
        let code = |i: usize| {
            b["rejected"][i]["errors"][0]["code"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        assert_eq!(b["inserted"], 1);
        assert_eq!(code(0), "type");
        assert_eq!(code(1), "missing");
        assert_eq!(code(2), "columns");
        assert_eq!(code(3), "columns");
    }
    // Without the lone surrogate every case is a row decision.
    let body = body.replace(r#""\ud800""#, r#""ok""#);
    let app = FreshApp::spawn().await;
    let b: Value = app
        .post_raw(EMP, "application/json", body)
        .await
        .json()
        .await
        .unwrap();
    let rejected = b["rejected"].as_array().unwrap();
    let got: Vec<(u64, &str, Option<&str>)> = rejected
        .iter()
        .map(|r| {
            (
                r["index"].as_u64().unwrap(),
                r["errors"][0]["code"].as_str().unwrap(),
                r["errors"][0]["column"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (0, "type", Some("id")),
            (1, "missing", Some("name")),
            (2, "columns", Some("id")),
            (3, "columns", Some("salary")),
            (6, "columns", None)
        ]
    );
    assert_eq!(b["inserted"], 2);
    let rows = app
        .get_json("/api/tables/hired_employees/rows?limit=10")
        .await;
    assert_eq!(rows[1]["name"], "Robert'); DROP TABLE hired_employees;--");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_bodies_use_the_historic_format() {
    let app = FreshApp::spawn().await;
    let body = "1,Ann,2021-07-27T16:02:08Z,1,2\n2,Bob,not-a-date,1,2\n3,\"Lee, Cy\",2021-01-01T00:00:00Z,3,1\n";
    let r = app.post_raw(EMP, "text/csv", body).await;
    assert_eq!(r.status(), StatusCode::OK);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["inserted"], 2);
    assert_eq!(b["rejected"][0]["index"], 1);
    assert_eq!(b["rejected"][0]["row"], "2,Bob,not-a-date,1,2");
    assert_eq!(b["rejected"][0]["errors"][0]["code"], "format");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_row_is_echoed_as_sent_and_json_numbers_are_read_exactly() {
    let app = FreshApp::spawn().await;
    app.seed_parents().await;
    // Keys out of order, a number written with a fraction, odd spacing.
    let sent = r#"{"name": "Ann",  "job_id": 1.50, "id": 7, "department_id": 1, "datetime": "2021-01-01T00:00:00Z"}"#;
    let body = format!(
        r#"[{sent}, {{"id": -0, "name": "Zero", "datetime": "2021-01-01T00:00:00Z", "department_id": 1, "job_id": 1}},
           {{"id": 99999999999999999999, "name": "Big", "datetime": "2021-01-01T00:00:00Z", "department_id": 1, "job_id": 1}}]"#
    );
    let r = app.post_raw(EMP, "application/json", body).await;
    assert_eq!(r.status(), StatusCode::OK);
    let text = r.text().await.unwrap();
    // The response carries the row's own text, byte for byte.
    assert!(text.contains(&format!(r#""row":{sent}"#)), "{text}");
    let b: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(b["inserted"], 1, "{b}");
    let rejected = b["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), 2, "{b}");
    assert_eq!(rejected[0]["errors"][0]["column"], "job_id");
    assert_eq!(rejected[0]["errors"][0]["code"], "type");
    assert_eq!(rejected[1]["index"], 2);
    assert_eq!(rejected[1]["errors"][0]["code"], "range", "{b}");
    // -0 is the integer 0.
    let rows = app
        .get_json("/api/tables/hired_employees/rows?limit=10")
        .await;
    assert_eq!(rows[0]["id"], 0, "{rows}");
    assert_eq!(rows[0]["name"], "Zero");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_rejected_row_is_echoed_whole_and_logged_cut_to_4_kib() {
    let app = FreshApp::spawn().await;
    app.seed_parents().await;
    let name = "é".repeat(50_000);
    let mut row = employee(31);
    row["name"] = json!(name);
    let r = app.post_json(EMP, &json!([row])).await;
    assert_eq!(r.status(), StatusCode::OK);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["rejected"][0]["errors"][0]["code"], "too_long", "{b}");
    assert_eq!(b["rejected"][0]["row"]["name"].as_str().unwrap(), name);
    let logged = app
        .get_json("/api/rejections?table=hired_employees&limit=10")
        .await;
    let raw = logged[0]["raw"].as_str().unwrap();
    // 4 KiB of the row's bytes; a character cut in two reads as U+FFFD.
    assert!(raw.len() <= 4096 + 3, "{} bytes logged", raw.len());
    assert!(raw.len() > 4000, "{} bytes logged", raw.len());
    assert!(
        raw.starts_with(r#"{"datetime""#),
        "{}",
        raw.chars().take(40).collect::<String>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_bodies_with_stray_quotes_are_rejected_not_repaired() {
    let app = FreshApp::spawn().await;
    let body = concat!(
        "1,\"ok, quoted\",2021-07-27T16:02:08Z,1,2\n",
        "2,ab\"c,2021-07-27T16:02:08Z,1,2\n",
        "3,\"pedro\"holanda,2021-07-27T16:02:08Z,1,2\n",
        "4,\"say \"\"hi\"\"\",2021-07-27T16:02:08Z,1,2\n",
    );
    let r = app.post_raw(EMP, "text/csv", body).await;
    assert_eq!(r.status(), StatusCode::OK);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["inserted"], 2, "{b}");
    for (i, (index, raw)) in [
        (1, "2,ab\"c,2021-07-27T16:02:08Z,1,2"),
        (2, "3,\"pedro\"holanda,2021-07-27T16:02:08Z,1,2"),
    ]
    .into_iter()
    .enumerate()
    {
        let rejected = &b["rejected"][i];
        assert_eq!(rejected["index"], index, "{b}");
        assert_eq!(rejected["row"], raw, "{b}");
        assert_eq!(rejected["errors"][0]["column"], "name", "{b}");
        assert_eq!(rejected["errors"][0]["code"], "format", "{b}");
    }
    let rows = app
        .get_json("/api/tables/hired_employees/rows?limit=10")
        .await;
    assert_eq!(rows[0]["name"], "ok, quoted");
    assert_eq!(rows[1]["name"], "say \"hi\"");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_keys_replay_and_refuse() {
    let app = FreshApp::spawn().await;
    let send = |body: Value| {
        app.client
            .post(format!("{}{EMP}", app.base))
            .header("idempotency-key", "k-1")
            .json(&body)
            .send()
    };
    let first = send(json!([employee(1), employee(2)])).await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let first: Value = first.json().await.unwrap();
    let again = send(json!([employee(1), employee(2)])).await.unwrap();
    assert_eq!(again.headers().get("idempotency-replayed").unwrap(), "true");
    assert_eq!(again.json::<Value>().await.unwrap(), first);
    let changed = send(json!([employee(3)])).await.unwrap();
    assert_eq!(changed.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(app.count("hired_employees").await, 2);
    // Keys are 1 to 255 visible ASCII characters, as the document says.
    for key in ["a b", "\t", &"k".repeat(256)] {
        let r = app
            .client
            .post(format!("{}{EMP}", app.base))
            .header("idempotency-key", key)
            .json(&json!([employee(4)]))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{key:?}");
    }
    assert_eq!(app.count("hired_employees").await, 2);
    // Two requests with one key at the same time: one insert.
    let (a, b) = tokio::join!(
        app.client
            .post(format!("{}{EMP}", app.base))
            .header("idempotency-key", "k-2")
            .json(&json!([employee(10)]))
            .send(),
        app.client
            .post(format!("{}{EMP}", app.base))
            .header("idempotency-key", "k-2")
            .json(&json!([employee(10)]))
            .send(),
    );
    let (a, b): (Value, Value) = (
        a.unwrap().json().await.unwrap(),
        b.unwrap().json().await.unwrap(),
    );
    assert_eq!(a, b);
    assert_eq!(app.count("hired_employees").await, 3);
    assert_eq!(app.rejection_count().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_apply_parents_first_in_one_transaction() {
    let app = FreshApp::spawn().await;
    let body = json!({
        "hired_employees": [{"id": 1, "name": "A", "datetime": "2021-07-27T16:02:08Z", "department_id": 10, "job_id": 20}],
        "departments": [{"id": 10, "department": "Ops"}],
        "jobs": [{"id": 20, "job": "Operator"}, {"id": 20, "job": "Again"}]
    });
    let r = app.post_json("/api/batches", &body).await;
    assert_eq!(r.status(), StatusCode::OK);
    let b: Value = r.json().await.unwrap();
    assert_eq!(
        (b["received"].as_u64(), b["inserted"].as_u64()),
        (Some(4), Some(3))
    );
    assert_eq!(
        b["tables"]["jobs"]["rejected"][0]["errors"][0]["code"],
        "duplicate"
    );
    assert_eq!(b["tables"]["hired_employees"]["inserted"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_are_paged_by_id() {
    let app = FreshApp::spawn().await;
    let rows: Vec<Value> = (1..=25).map(employee).collect();
    app.post_json(EMP, &Value::Array(rows)).await;
    let page = app
        .get_json("/api/tables/hired_employees/rows?after_id=10&limit=5")
        .await;
    let ids: Vec<i64> = page
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![11, 12, 13, 14, 15]);
    assert_eq!(
        app.get("/api/tables/hired_employees/rows?limit=1001")
            .await
            .status(),
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loads_read_only_under_the_storage_root() {
    let app = FreshApp::spawn().await;
    let landing = app.dir.path().join("storage/landing");
    hrmig::ops::sample::generate(
        &landing,
        &hrmig::ops::sample::GenOptions {
            employees: 300,
            invalid_rate: 0.1,
            seed: 1,
        },
    )
    .unwrap();
    for from in [
        "../x",
        "/etc",
        "file:///etc",
        "landing/../..",
        "%2e%2e/x",
        "a\\b",
        "",
        "landing/",
        ".hidden",
        "a//b",
    ] {
        let r = app.post_json("/api/loads", &json!({"from": from})).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{from}");
    }
    let r = app.post_json("/api/loads", &json!({})).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let job = loop {
        let job = app.get_json(&location).await;
        if job["status"] == "done" {
            break job;
        }
        assert!(job["status"] != "failed", "{job}");
        assert!(std::time::Instant::now() < deadline, "{job}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(job["tables"][2]["rows_read"], 300);
    let history = app.get_json("/api/loads").await;
    let loads = history
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "load");
    assert_eq!(loads.count(), 3, "{history}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_job_with_a_file_that_is_not_its_tables_csv_fails() {
    let app = FreshApp::spawn().await;
    let landing = app.dir.path().join("storage/landing");
    std::fs::create_dir_all(&landing).unwrap();
    std::fs::write(landing.join("jobs.csv"), "id,title\n3,Chef\n").unwrap();
    let reason = "not a CSV of jobs: its header names id,title; expected id,job";
    // Refused again the second time: the content is not marked loaded.
    for run in 0..2 {
        let r = app
            .post_json("/api/loads", &json!({"tables": ["jobs"]}))
            .await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        let location = r.headers()["location"].to_str().unwrap().to_owned();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let job = loop {
            let job = app.get_json(&location).await;
            if job["status"] == "failed" {
                break job;
            }
            assert!(job["status"] != "done", "{job}");
            assert!(std::time::Instant::now() < deadline, "{job}");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        };
        let error = job["error"].as_str().unwrap();
        assert!(
            error.starts_with("file:") && error.ends_with(&format!("jobs.csv: {reason}")),
            "run {run}: {job}"
        );
        assert_eq!(job["tables"][0]["status"], "aborted", "{job}");
        assert_eq!(job["tables"][0]["message"], reason, "{job}");
    }
    assert_eq!(app.count("jobs").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys() {
    let app = FreshApp::with_keys(Keys::new(Some("user-key-123"), Some("admin-key-456"))).await;
    let get = |key: Option<&'static str>, header: &'static str| {
        let mut req = app.client.get(format!("{}/api/tables", app.base));
        if let Some(k) = key {
            req = req.header(
                header,
                if header == "authorization" {
                    format!("Bearer {k}")
                } else {
                    k.to_owned()
                },
            );
        }
        req.send()
    };
    let none = get(None, "x-api-key").await.unwrap();
    let wrong = get(Some("nope"), "x-api-key").await.unwrap();
    let last_byte = get(Some("user-key-124"), "authorization").await.unwrap();
    assert_eq!(none.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(last_byte.status(), StatusCode::UNAUTHORIZED);
    let bodies = [
        none.text().await.unwrap(),
        wrong.text().await.unwrap(),
        last_byte.text().await.unwrap(),
    ];
    assert!(bodies.iter().all(|b| b == &bodies[0]));
    assert_eq!(
        get(Some("user-key-123"), "x-api-key")
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        get(Some("user-key-123"), "authorization")
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(app.get("/api/health").await.status(), StatusCode::OK);
    let load = |key: &'static str| {
        app.client
            .post(format!("{}/api/loads", app.base))
            .header("x-api-key", key)
            .json(&json!({}))
            .send()
    };
    assert_eq!(
        load("user-key-123").await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    // The admin key passes the check (the files are absent: 404).
    assert_eq!(
        load("admin-key-456").await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    // Backups and restores are admin operations; verify and the list are not.
    let post = |path: &'static str, key: &'static str| {
        app.client
            .post(format!("{}{path}", app.base))
            .header("x-api-key", key)
            .json(&json!({}))
            .send()
    };
    for path in [
        "/api/backups",
        "/api/backups/prune",
        "/api/tables/jobs/restore",
    ] {
        assert_eq!(
            post(path, "user-key-123").await.unwrap().status(),
            StatusCode::FORBIDDEN,
            "{path}"
        );
    }
    assert_eq!(
        post("/api/backups", "admin-key-456")
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        post("/api/tables/jobs/verify", "user-key-123")
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        post("/api/tables/jobs/restore", "admin-key-456")
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
}

/// A restore and batches into the same table at the same time: they queue
/// on the one writer, so every batch is either wholly before the restore
/// (replaced with the backup's rows) or wholly after it (kept), and no
/// request fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_and_concurrent_batches_are_serialised() {
    let app = Arc::new(FreshApp::spawn().await);
    let first: Vec<Value> = (1..=100).map(employee).collect();
    app.post_json(EMP, &Value::Array(first)).await;
    let r = app
        .post_json("/api/backups", &json!({"tables": ["hired_employees"]}))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let mut tasks = Vec::new();
    for client in 0..4i64 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            for batch in 0..20i64 {
                let start = 1000 + (client * 20 + batch) * 50;
                let rows: Vec<Value> = (start..start + 50).map(employee).collect();
                let r = app.post_json(EMP, &Value::Array(rows)).await;
                assert_eq!(r.status(), StatusCode::OK);
                let b: Value = r.json().await.unwrap();
                assert_eq!(b["inserted"], 50, "{b}");
            }
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    let r = app
        .post_json("/api/tables/hired_employees/restore", &json!({}))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let restored: Value = r.json().await.unwrap();
    assert_eq!(restored["rows"], 100);
    for t in tasks {
        t.await.unwrap();
    }
    let count = |sql: String| {
        let url = app.url.clone();
        async move { common::query::query_i64(&url, &sql).await }
    };
    let backed_up = count("SELECT COUNT(*) FROM hired_employees WHERE id <= 100".into()).await;
    assert_eq!(backed_up, 100);
    let mut kept = 0;
    for b in 0..80i64 {
        let start = 1000 + b * 50;
        let n = count(format!(
            "SELECT COUNT(*) FROM hired_employees WHERE id BETWEEN {start} AND {}",
            start + 49
        ))
        .await;
        assert!(n == 0 || n == 50, "batch {b} is half there: {n} rows");
        kept += n;
    }
    let total = count("SELECT COUNT(*) FROM hired_employees".into()).await;
    assert_eq!(total, 100 + kept);
}

/// Twenty employees, then a zstandard backup of every table over HTTP;
/// what it answered for the employees.
async fn backed_up(app: &FreshApp) -> Value {
    let rows: Vec<Value> = (1..=20).map(employee).collect();
    app.post_json(EMP, &Value::Array(rows)).await;
    let r = app
        .post_json("/api/backups", &json!({"codec": "zstandard"}))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let made: Vec<Value> = r.json().await.unwrap();
    let names: Vec<&str> = made.iter().map(|m| m["table"].as_str().unwrap()).collect();
    assert_eq!(names, ["departments", "jobs", "hired_employees"]);
    assert_eq!(made[2]["rows"], 20);
    assert_eq!(made[2]["codec"], "zstandard");
    made[2].clone()
}

/// The name of a backup in an answer.
fn name(made: &Value) -> String {
    made["backup"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_are_listed_verified_and_restored_over_http() {
    let app = FreshApp::spawn().await;
    let made = backed_up(&app).await;
    let backup = name(&made);
    let listed = app.get_json("/api/backups?table=hired_employees").await;
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["sha256"], made["sha256"]);
    let v: Value = app
        .post_for_json(
            "/api/tables/hired_employees/verify",
            &json!({"backup": backup}),
        )
        .await;
    assert_eq!(
        (v["ok"].as_bool(), v["rows"].as_u64()),
        (Some(true), Some(20))
    );

    // Rows added after the backup go away with the restore.
    app.post_json(EMP, &json!([employee(21)])).await;
    assert_eq!(app.count("hired_employees").await, 21);
    let r = app
        .post_json("/api/tables/hired_employees/restore", &json!({}))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let b: Value = r.json().await.unwrap();
    assert_eq!(
        (b["backup"].as_str(), b["rows"].as_u64()),
        (Some(backup.as_str()), Some(20))
    );
    assert_eq!(app.count("hired_employees").await, 20);
}

/// The `table` of each object of an answer's array, in order.
fn tables_of(answer: &Value) -> Vec<&str> {
    let items = answer.as_array().unwrap().iter();
    items.map(|item| item["table"].as_str().unwrap()).collect()
}

/// The names of the complete backups of hired_employees, oldest first.
async fn listed(app: &FreshApp) -> Vec<String> {
    let all = app.get_json("/api/backups?table=hired_employees").await;
    all.as_array().unwrap().iter().map(name).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_are_pruned_over_http_and_bad_retentions_are_400() {
    let app = FreshApp::spawn().await;
    let mut made = Vec::new();
    for _ in 0..3 {
        made.push(name(&backed_up(&app).await));
    }
    assert_eq!(listed(&app).await, made);
    for (body, expect) in [
        (json!({}), "missing field `keep`"),
        (json!(null), "the body must be a JSON object"),
        (
            json!({"keep": 1, "older_than_days": 36501}),
            "0 to 36500 days",
        ),
        (json!({"keep": 0}), "keep must be 1 or more"),
        (json!({"keep": 1, "tables": ["nope"]}), "nope"),
        (
            json!({"keep": 1, "older_than_days": -1}),
            "invalid JSON body",
        ),
        (json!({"keep": 1, "extra": true}), "unknown field"),
    ] {
        let r = app.post_json("/api/backups/prune", &body).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{body}");
        let text = r.text().await.unwrap();
        assert!(text.contains(expect), "{body}: {text}");
    }
    assert_eq!(listed(&app).await, made, "a refused prune removes nothing");
    // An age none of them has reached: nothing goes.
    let r = app
        .post_json(
            "/api/backups/prune",
            &json!({"keep": 1, "older_than_days": 30, "tables": ["hired_employees"]}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let pruned: Value = r.json().await.unwrap();
    assert_eq!(pruned[0]["removed"], json!([]));
    assert_eq!(pruned[0]["kept"], 3);
    let r = app
        .post_json("/api/backups/prune", &json!({"keep": 1}))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let pruned: Value = r.json().await.unwrap();
    let tables = tables_of(&pruned);
    assert_eq!(tables, ["departments", "jobs", "hired_employees"]);
    assert_eq!(pruned[2]["removed"], json!(made[..2]));
    assert_eq!(pruned[2]["kept"], 1);
    assert_eq!(listed(&app).await, made[2..]);
    // A table named twice is backed up (and pruned) once, parents first.
    let twice = json!({"tables": ["jobs", "jobs", "departments"]});
    let made: Value = app.post_for_json("/api/backups", &twice).await;
    let tables = tables_of(&made);
    assert_eq!(tables, ["departments", "jobs"]);
    let twice = json!({"keep": 1, "tables": ["jobs", "jobs"]});
    let pruned: Value = app.post_for_json("/api/backups/prune", &twice).await;
    assert_eq!(pruned.as_array().unwrap().len(), 1, "{pruned}");
    assert_eq!(
        pruned[0]["removed"].as_array().unwrap().len(),
        1,
        "{pruned}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_names_that_leave_the_backup_folder_are_refused_and_write_nothing() {
    let app = FreshApp::spawn().await;
    backed_up(&app).await;
    // Names that try to leave the backup folder: 400, nothing written anywhere.
    let root = app.dir.path().to_owned();
    let before = common::files::files_under(&root);
    for bad in [
        "../x",
        "%2e%2e/x",
        "/etc/passwd",
        "hired_employees-20240101T000000000Z/../../x",
        r"x\u0000",
        r"C:\\x",
    ] {
        let body = format!("{{\"backup\": \"{bad}\"}}");
        for op in ["restore", "verify"] {
            let r = app
                .post_raw(
                    &format!("/api/tables/hired_employees/{op}"),
                    "application/json",
                    body.clone(),
                )
                .await;
            assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{op} {bad}");
        }
    }
    let r = app
        .post_json(
            "/api/tables/hired_employees/restore",
            &json!({"backup": "hired_employees-20000101T000000000Z"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let after = common::files::files_under(&root);
    let new: Vec<&String> = after
        .iter()
        .filter(|f| !before.contains(f) && !f.starts_with("hrmig.db"))
        .collect();
    assert!(new.is_empty(), "{new:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_that_would_orphan_employees_is_409_and_changes_nothing() {
    let app = FreshApp::spawn().await;
    backed_up(&app).await;
    // A restore that would orphan employees: 409, table unchanged.
    app.post_json(
        "/api/tables/departments/rows",
        &json!([{"id": 9, "department": "Ops"}]),
    )
    .await;
    app.post_json(EMP, &json!([{"id": 50, "name": "Al", "datetime": "2021-01-01T00:00:00Z", "department_id": 9, "job_id": 1}])).await;
    let r = app
        .post_json("/api/tables/departments/restore", &json!({}))
        .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let err: Value = r.json().await.unwrap();
    assert_eq!(err["error"]["code"], "conflict");
    assert_eq!(app.count("departments").await, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_backup_is_422_and_changes_nothing() {
    let app = FreshApp::spawn().await;
    let backup = name(&backed_up(&app).await);
    let root = app.dir.path().to_owned();
    // A damaged backup: 422, table unchanged.
    let file = root
        .join("storage/backups/hired_employees")
        .join(format!("{backup}.avro"));
    let mut bytes = std::fs::read(&file).unwrap();
    let at = bytes.len() - 20;
    bytes[at] ^= 0xff;
    std::fs::write(&file, bytes).unwrap();
    let r = app
        .post_json(
            "/api/tables/hired_employees/restore",
            &json!({"backup": backup}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(app.count("hired_employees").await, 20);
    let v: Value = app
        .post_for_json(
            "/api/tables/hired_employees/verify",
            &json!({"backup": backup}),
        )
        .await;
    assert_eq!(v["ok"], false);
    assert!(!v["problems"].as_array().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_clients_lose_nothing() {
    let app = Arc::new(FreshApp::spawn().await);
    let mut tasks = Vec::new();
    for client in 0..8i64 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            let (mut received, mut inserted, mut rejected) = (0u64, 0u64, 0u64);
            for batch in 0..50i64 {
                let rows: Vec<Value> = (0..1000i64)
                    .map(|i| {
                        let id = client * 1_000_000 + batch * 1000 + i + 1;
                        if i % 20 == 0 { json!({"id": id, "name": "", "datetime": "2021-01-01T00:00:00Z", "department_id": 1, "job_id": 1}) } else { employee(id) }
                    })
                    .collect();
                let r = app.post_json(EMP, &Value::Array(rows)).await;
                assert_eq!(r.status(), StatusCode::OK);
                let b: Value = r.json().await.unwrap();
                received += b["received"].as_u64().unwrap();
                inserted += b["inserted"].as_u64().unwrap();
                rejected += b["rejected"].as_array().unwrap().len() as u64;
            }
            (received, inserted, rejected)
        }));
    }
    let (mut received, mut inserted, mut rejected) = (0, 0, 0);
    for t in tasks {
        let (r, i, j) = t.await.unwrap();
        received += r;
        inserted += i;
        rejected += j;
    }
    assert_eq!(received, 400_000);
    assert_eq!(received, inserted + rejected);
    assert_eq!((inserted, rejected), (380_000, 20_000));
    assert_eq!(app.count("hired_employees").await, inserted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_on_known_data() {
    let app = FreshApp::spawn().await;
    let e = |id: i64, dt: &str, d: i64, j: i64| json!({"id": id, "name": "N", "datetime": dt, "department_id": d, "job_id": j});
    let rows = json!([
        e(1, "2021-01-15T00:00:00Z", 1, 1),
        e(2, "2021-02-15T00:00:00Z", 1, 1),
        e(3, "2021-05-01T00:00:00Z", 1, 2),
        e(4, "2021-12-31T23:59:59Z", 1, 2),
        e(5, "2021-07-01T00:00:00Z", 3, 1),
        e(6, "2022-01-01T00:00:00Z", 2, 1),
        e(7, "2021-03-31T23:00:00-02:00", 3, 2),
        e(8, "2020-06-01T00:00:00Z", 2, 2)
    ]);
    app.post_json(EMP, &rows).await;
    let q = app
        .get_json("/api/reports/hires-by-quarter?year=2021")
        .await;
    assert_eq!(
        q,
        json!([
            {"department":"Engineering","job":"Analyst","q1":0,"q2":1,"q3":0,"q4":0},
            {"department":"Engineering","job":"Engineer","q1":0,"q2":0,"q3":1,"q4":0},
            {"department":"Sales","job":"Analyst","q1":0,"q2":1,"q3":0,"q4":1},
            {"department":"Sales","job":"Engineer","q1":2,"q2":0,"q3":0,"q4":0}
        ])
    );
    // 2021: Sales 4, Legal 0, Engineering 2; mean 2: only Sales is above.
    let above = app.get_json("/api/reports/departments-above-mean").await;
    assert_eq!(above, json!([{"id":1,"department":"Sales","hired":4}]));
    let csv = app
        .client
        .get(format!(
            "{}/api/reports/hires-by-quarter?year=2021",
            app.base
        ))
        .header("accept", "text/csv")
        .send()
        .await
        .unwrap();
    assert!(
        csv.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    assert_eq!(
        csv.text().await.unwrap().lines().next(),
        Some("department,job,q1,q2,q3,q4")
    );
    assert_eq!(
        app.get("/api/reports/hires-by-quarter?year=abc")
            .await
            .status(),
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documents_example_bodies_are_accepted_by_their_tables() {
    for (content_type, app) in [
        ("application/json", FreshApp::spawn().await),
        ("text/csv", FreshApp::spawn().await),
    ] {
        app.seed_parents().await;
        let doc = app.get_json("/api/openapi.json").await;
        let examples = &doc["paths"]["/api/tables/{table}/rows"]["post"]["requestBody"]["content"]
            [content_type]["examples"];
        for table in ["departments", "jobs", "hired_employees"] {
            let value = &examples[table]["value"];
            let body = match value {
                Value::String(csv) => csv.clone(),
                other => other.to_string(),
            };
            assert!(
                !body.is_empty() && *value != Value::Null,
                "{content_type} {table}: {examples}"
            );
            let r = app
                .post_raw(&format!("/api/tables/{table}/rows"), content_type, body)
                .await;
            assert_eq!(r.status(), StatusCode::OK, "{content_type} {table}");
            let b: Value = r.json().await.unwrap();
            assert_eq!(b["inserted"], 1, "{content_type} {table}: {b}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_documents_every_route_and_docs_work_offline() {
    let app = FreshApp::spawn().await;
    let doc = app.get_json("/api/openapi.json").await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    let mut documented = Vec::new();
    for (path, item) in paths {
        for method in item.as_object().unwrap().keys() {
            documented.push(format!("{} {path}", method.to_uppercase()));
        }
    }
    documented.sort();
    let mut expected = vec![
        "GET /api/health",
        "GET /api/metrics",
        "GET /api/tables",
        "POST /api/tables/{table}/rows",
        "GET /api/tables/{table}/rows",
        "POST /api/batches",
        "POST /api/loads",
        "GET /api/loads",
        "GET /api/loads/jobs",
        "GET /api/loads/{id}",
        "POST /api/loads/{id}/run",
        "POST /api/loads/{load_id}/undo",
        "GET /api/tables/{table}/rows/{row_id}",
        "GET /api/rejections",
        "GET /api/rejections/summary",
        "POST /api/rejections/retry",
        "POST /api/rejections/{id}/fix",
        "POST /api/rejections/{id}/dismiss",
        "GET /api/reports/hires-by-quarter",
        "GET /api/reports/departments-above-mean",
        "POST /api/backups",
        "GET /api/backups",
        "POST /api/backups/prune",
        "POST /api/tables/{table}/restore",
        "POST /api/tables/{table}/verify",
    ];
    expected.sort();
    assert_eq!(documented, expected);
    // Every documented route is served (a fallback 404 says "no such route").
    for entry in &documented {
        let (method, path) = entry.split_once(' ').unwrap();
        let url = format!(
            "{}{}",
            app.base,
            path.replace("{table}", "jobs").replace("{id}", "0123abcd")
        );
        let r = app
            .client
            .request(method.parse().unwrap(), url)
            .header("content-type", "application/json")
            .body("[]")
            .send()
            .await
            .unwrap();
        let body = r.text().await.unwrap();
        assert!(
            !body.contains("no such route"),
            "{entry} is documented but not routed"
        );
    }
    // Row schemas come from the dictionary.
    let row = &doc["components"]["schemas"]["hired_employees_row"];
    assert_eq!(
        row["required"],
        json!(["id", "name", "datetime", "department_id", "job_id"])
    );
    assert_eq!(row["properties"]["datetime"]["format"], "date-time");
    assert_eq!(row["properties"]["name"]["maxLength"], 255);
    let page = app.get("/api/docs/").await;
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.unwrap().contains("swagger-ui"));
    let js = app.get("/api/docs/swagger-ui-bundle.js").await;
    assert_eq!(
        js.status(),
        StatusCode::OK,
        "the docs page's script is served locally"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_requests_in_flight_finish() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&common::db::database_url(dir.path()).await)
        .await
        .unwrap();
    let state = AppState::new(
        Arc::new(store),
        Storage::open(dir.path().join("s").to_str().unwrap()).unwrap(),
        Arc::new(Keys::default()),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(hrmig::http::run(listener, state, async {
        let _ = rx.await;
    }));
    // A request whose body is still arriving when the server is told to stop:
    // it must be served to the end.
    let jobs: Vec<Value> = (1..=1000).map(|i| json!({"id": i, "job": "J"})).collect();
    let body = Value::Array(jobs).to_string();
    let addr = base.trim_start_matches("http://").to_owned();
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let head = format!(
        "POST /api/tables/jobs/rows HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    let (first, rest) = body.split_at(body.len() / 2);
    conn.write_all(first.as_bytes()).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    stop.send(()).unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    conn.write_all(rest.as_bytes()).await.unwrap();
    let mut response = String::new();
    conn.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains(r#""inserted":1000"#), "{response}");
    tokio::time::timeout(std::time::Duration::from_secs(10), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    // Stopped: new connections are refused.
    assert!(tokio::net::TcpStream::connect(&addr).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_503_when_the_database_is_gone_and_bodies_are_limited() {
    let app = FreshApp::spawn().await;
    // A body over the limit is answered 413 before it is all read, and the
    // connection is closed. Sent raw, the answer read while the body is
    // still going out: the server's close can reset the connection, and a
    // client that only reads once it has sent everything may lose the
    // answer to that reset.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = app.base.trim_start_matches("http://").to_owned();
        let conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let (mut reader, mut writer) = conn.into_split();
        let size = 9usize << 20;
        let head = format!(
            "POST /api/tables/jobs/rows HTTP/1.1\r\nHost: {addr}\r\n\
             Content-Type: application/json\r\nContent-Length: {size}\r\n\r\n"
        );
        let sending = tokio::spawn(async move {
            let _ = writer.write_all(head.as_bytes()).await;
            let chunk = vec![b'x'; 64 << 10];
            for _ in 0..size / chunk.len() {
                if writer.write_all(&chunk).await.is_err() {
                    break;
                }
            }
        });
        let mut response = Vec::new();
        let mut buf = [0u8; 4096];
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !String::from_utf8_lossy(&response).contains("too_large") {
            assert!(std::time::Instant::now() < deadline, "no answer");
            match tokio::time::timeout(std::time::Duration::from_secs(20), reader.read(&mut buf))
                .await
            {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
                Ok(Ok(n)) => response.extend_from_slice(&buf[..n]),
            }
        }
        let response = String::from_utf8_lossy(&response);
        assert!(response.starts_with("HTTP/1.1 413"), "{response}");
        assert!(response.contains(r#""code":"too_large""#), "{response}");
        sending.abort();
    }
    assert_eq!(app.count("jobs").await, 2);

    if common::db::postgres() || common::db::mssql() {
        // A server that goes away is tested in tests/postgres.rs.
        return;
    }
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(app.dir.path().join(format!("hrmig.db{suffix}")));
    }
    let r = app.get("/api/health").await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.headers().get("retry-after").is_some());
    assert_eq!(r.json::<Value>().await.unwrap()["database"], "unavailable");
}

/// Row counts of every table and the rejection log's length.
async fn written(app: &FreshApp) -> (u64, u64, u64, usize) {
    (
        app.count("departments").await,
        app.count("jobs").await,
        app.count("hired_employees").await,
        app.rejection_count().await,
    )
}

/// A body without its `batch_id` (new in every answer) and `dry_run`.
fn without_ids(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.remove("batch_id");
        o.remove("load_id");
        o.remove("dry_run");
        for (_, t) in o.iter_mut() {
            if t.is_object() {
                *t = without_ids(t.take());
            }
        }
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_answers_as_the_batch_would_and_writes_nothing() {
    let app = FreshApp::spawn().await;
    app.post_json(EMP, &json!([employee(7)])).await;
    // A good row, one already there, one repeated, a broken rule, an
    // unknown parent.
    let mut bad = employee(3);
    bad["department_id"] = json!(9);
    let rows = json!([employee(1), employee(7), employee(1), {"id": 2, "name": ""}, bad]);
    let before = written(&app).await;
    let dry = app.post_json(&format!("{EMP}?dry_run=true"), &rows).await;
    assert_eq!(dry.status(), StatusCode::OK);
    let dry: Value = dry.json().await.unwrap();
    assert_eq!(dry["dry_run"], true, "{dry}");
    assert_eq!(
        (dry["received"].as_u64(), dry["inserted"].as_u64()),
        (Some(5), Some(1))
    );
    assert_eq!(written(&app).await, before, "a dry run wrote something");
    // `dry_run=false` is a real run, and it does what the dry run said.
    let real: Value = app
        .post_for_json(&format!("{EMP}?dry_run=false"), &rows)
        .await;
    assert!(real.get("dry_run").is_none(), "{real}");
    assert_eq!(without_ids(dry), without_ids(real));
    assert_eq!(app.count("hired_employees").await, before.2 + 1);

    // CSV bodies too.
    let before = written(&app).await;
    let r = app
        .post_raw(
            &format!("{EMP}?dry_run=true"),
            "text/csv",
            "50,Bo,2021-07-27T16:02:08Z,1,2\n51,,x,1,2\n",
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (v["inserted"].as_u64(), v["dry_run"].as_bool()),
        (Some(1), Some(true))
    );
    assert_eq!(written(&app).await, before);

    // Several tables: the children are checked against the parents the
    // same batch brings, and nothing is written.
    let batch = json!({
        "departments": [{"id": 40, "department": "Ops"}],
        "hired_employees": [{"id": 60, "name": "Cy", "datetime": "2021-07-27T16:02:08Z", "department_id": 40, "job_id": 1}]
    });
    let v: Value = app.post_for_json("/api/batches?dry_run=true", &batch).await;
    assert_eq!(
        (v["inserted"].as_u64(), v["dry_run"].as_bool()),
        (Some(2), Some(true)),
        "{v}"
    );
    assert_eq!(v["tables"]["hired_employees"]["dry_run"], true);
    assert_eq!(written(&app).await, before);

    // Not a boolean: the client's error, nothing written.
    let r = app.post_json(&format!("{EMP}?dry_run=yes"), &rows).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(written(&app).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_neither_reads_nor_stores_an_idempotency_key() {
    let app = FreshApp::spawn().await;
    let post = |path: String, key: &'static str, body: Value| {
        app.client
            .post(format!("{}{path}", app.base))
            .header("idempotency-key", key)
            .json(&body)
            .send()
    };
    let dry = post(format!("{EMP}?dry_run=true"), "k-dry", json!([employee(1)]))
        .await
        .unwrap();
    assert_eq!(dry.status(), StatusCode::OK);
    assert!(dry.headers().get("idempotency-replayed").is_none());
    // The key is still free: the real run applies.
    let real = post(EMP.to_owned(), "k-dry", json!([employee(1)]))
        .await
        .unwrap();
    assert!(real.headers().get("idempotency-replayed").is_none());
    let real: Value = real.json().await.unwrap();
    assert_eq!(real["inserted"], 1);
    // A dry run with a used key and another body: checked, not refused
    // (nothing would be applied twice), and nothing replayed.
    let again: Value = post(format!("{EMP}?dry_run=true"), "k-dry", json!([employee(2)]))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (again["inserted"].as_u64(), again["dry_run"].as_bool()),
        (Some(1), Some(true))
    );
    assert_eq!(app.count("hired_employees").await, 1);
}
