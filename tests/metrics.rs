//! `GET /api/metrics`: the exposition text parsed, and its counters
//! compared before and after requests whose effects are known from their
//! own responses.

mod common {
    pub mod app;
}

use common::app::TestApp;
use hrmig::http::Keys;
use serde_json::{Value, json};
use std::collections::HashMap;

/// Every sample of the exposition: `name{labels}` → value.
fn parse(text: &str) -> HashMap<String, f64> {
    assert!(text.ends_with("# EOF\n"), "not OpenMetrics text:\n{text}");
    let mut out = HashMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = line.rsplit_once(' ').unwrap();
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("{line}"));
        assert!(
            out.insert(series.to_owned(), value).is_none(),
            "{series} twice"
        );
    }
    out
}

async fn scrape(app: &TestApp) -> HashMap<String, f64> {
    let r = app.get("/api/metrics").await;
    assert_eq!(r.status(), 200);
    let ty = r.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ty.starts_with("application/openmetrics-text"), "{ty}");
    parse(&r.text().await.unwrap())
}

/// How much a series moved (absent counts as 0).
fn moved(before: &HashMap<String, f64>, after: &HashMap<String, f64>, series: &str) -> f64 {
    after.get(series).copied().unwrap_or(0.0) - before.get(series).copied().unwrap_or(0.0)
}

fn rows(table: &str, outcome: &str) -> String {
    format!(r#"hrmig_rows_total{{table="{table}",outcome="{outcome}"}}"#)
}

fn code(table: &str, code: &str) -> String {
    format!(r#"hrmig_rejections_total{{table="{table}",code="{code}"}}"#)
}

async fn fresh() -> (TestApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("hr.db").display());
    let app = TestApp::spawn(&db, &dir.path().join("storage"), Keys::default()).await;
    (app, dir)
}

async fn post(app: &TestApp, path: &str, body: &Value) -> Value {
    let r = app.post_json(path, body).await;
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

#[tokio::test]
async fn counters_move_by_exactly_what_a_mixed_batch_did() {
    let (app, _dir) = fresh().await;
    post(
        &app,
        "/api/tables/departments/rows",
        &json!([{"id": 1, "department": "Sales"}]),
    )
    .await;
    post(
        &app,
        "/api/tables/jobs/rows",
        &json!([{"id": 1, "job": "Analyst"}]),
    )
    .await;
    let before = scrape(&app).await;
    let batch = json!([
        {"id": 1, "name": "Ann", "datetime": "2021-01-05T10:00:00Z", "department_id": 1, "job_id": 1},
        {"id": 2, "name": "Bob", "datetime": "2021-02-05T10:00:00Z", "department_id": 9, "job_id": 1},
        {"id": 3, "name": "", "datetime": "2021-03-05T10:00:00Z", "department_id": 9, "job_id": 1},
        {"id": 4, "name": "Dan", "datetime": "not a date", "department_id": 1, "job_id": 1},
        {"id": 1, "name": "Ann again", "datetime": "2021-01-05T10:00:00Z", "department_id": 1, "job_id": 1}
    ]);
    let answer = post(&app, "/api/tables/hired_employees/rows", &batch).await;
    let after = scrape(&app).await;
    // What the response says it did.
    let rejected = answer["rejected"].as_array().unwrap();
    let mut per_code: HashMap<String, f64> = HashMap::new();
    for r in rejected {
        let mut codes: Vec<&str> = (r["errors"].as_array().unwrap().iter())
            .map(|e| e["code"].as_str().unwrap())
            .collect();
        codes.sort();
        codes.dedup();
        for c in codes {
            *per_code.entry(c.to_owned()).or_default() += 1.0;
        }
    }
    assert!(per_code.len() >= 3, "a mixed batch: {answer}");
    let t = "hired_employees";
    assert_eq!(moved(&before, &after, &rows(t, "received")), 5.0);
    assert_eq!(
        moved(&before, &after, &rows(t, "inserted")),
        answer["inserted"].as_f64().unwrap()
    );
    assert_eq!(moved(&before, &after, &rows(t, "updated")), 0.0);
    assert_eq!(
        moved(&before, &after, &rows(t, "rejected")),
        rejected.len() as f64
    );
    for (c, n) in &per_code {
        assert_eq!(moved(&before, &after, &code(t, c)), *n, "{c}");
    }
    // The request itself, by its route's pattern.
    let route = r#"hrmig_http_request_duration_seconds_count{route="/api/tables/{table}/rows",method="POST",status="200"}"#;
    assert_eq!(moved(&before, &after, route), 1.0);
    // Other tables did not move.
    assert_eq!(
        moved(&before, &after, &rows("departments", "received")),
        0.0
    );
}

#[tokio::test]
async fn dry_runs_and_replayed_keys_move_no_row_counter_and_an_upsert_counts_updated() {
    let (app, _dir) = fresh().await;
    let body = json!([{"id": 5, "department": "Ops"}, {"id": 6, "department": ""}]);
    let before = scrape(&app).await;
    post(&app, "/api/tables/departments/rows?dry_run=true", &body).await;
    let after_dry = scrape(&app).await;
    assert_eq!(
        moved(&before, &after_dry, &rows("departments", "received")),
        0.0
    );
    for _ in 0..2 {
        let r = app
            .client
            .post(format!("{}/api/tables/departments/rows", app.base))
            .header("idempotency-key", "metrics-1")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let after_keyed = scrape(&app).await;
    assert_eq!(
        moved(&after_dry, &after_keyed, &rows("departments", "received")),
        2.0
    );
    assert_eq!(
        moved(&after_dry, &after_keyed, &rows("departments", "inserted")),
        1.0
    );
    assert_eq!(
        moved(&after_dry, &after_keyed, &code("departments", "missing")),
        1.0
    );
    let upsert = json!([{"id": 5, "department": "Operations"}]);
    post(
        &app,
        "/api/batches?on_duplicate=update",
        &json!({"departments": upsert}),
    )
    .await;
    let after_upsert = scrape(&app).await;
    assert_eq!(
        moved(&after_keyed, &after_upsert, &rows("departments", "updated")),
        1.0
    );
    assert_eq!(
        moved(
            &after_keyed,
            &after_upsert,
            &rows("departments", "inserted")
        ),
        0.0
    );
}

#[tokio::test]
async fn unknown_paths_share_one_series_and_the_build_and_pool_are_there() {
    let (app, _dir) = fresh().await;
    for i in 0..3 {
        assert_eq!(app.get(&format!("/api/no-such-{i}")).await.status(), 404);
    }
    let m = scrape(&app).await;
    let unmatched =
        r#"hrmig_http_request_duration_seconds_count{route="unmatched",method="GET",status="404"}"#;
    assert_eq!(m[unmatched], 3.0);
    assert!(m.keys().all(|k| !k.contains("no-such")));
    let build = format!(
        r#"hrmig_build_info{{version="{}",database="sqlite"}}"#,
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(m[&build], 1.0);
    assert_eq!(m["hrmig_db_pool_max_connections"], 1.0);
    assert!(m.contains_key(r#"hrmig_db_pool_connections{state="idle"}"#));
}

#[tokio::test]
async fn a_load_job_and_a_backup_are_counted_with_their_rows() {
    let (app, dir) = fresh().await;
    hrmig::ops::sample::generate(
        &dir.path().join("storage/landing"),
        &hrmig::ops::sample::GenOptions {
            employees: 300,
            invalid_rate: 0.05,
            seed: 5,
        },
    )
    .unwrap();
    let before = scrape(&app).await;
    let r = app.post_json("/api/loads", &json!({})).await;
    assert_eq!(r.status(), 202);
    let job: Value = r.json().await.unwrap();
    let id = job["id"].as_str().unwrap().to_owned();
    // The job's own answer, once done (bounded wait), and the counters
    // moved once the job is counted.
    let mut done = Value::Null;
    for _ in 0..600 {
        done = app
            .get(&format!("/api/loads/{id}"))
            .await
            .json()
            .await
            .unwrap();
        let counted = scrape(&app).await;
        if done["status"] == "done"
            && moved(&before, &counted, &rows("hired_employees", "received")) > 0.0
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(done["status"], "done", "{done}");
    let after = scrape(&app).await;
    for report in done["tables"].as_array().unwrap() {
        let t = report["table"].as_str().unwrap();
        assert_eq!(
            moved(&before, &after, &rows(t, "received")),
            report["rows_read"].as_f64().unwrap(),
            "{t}"
        );
        assert_eq!(
            moved(&before, &after, &rows(t, "rejected")),
            report["rejected"].as_f64().unwrap(),
            "{t}"
        );
        let loads = format!(r#"hrmig_load_duration_seconds_count{{table="{t}",outcome="loaded"}}"#);
        assert_eq!(moved(&before, &after, &loads), 1.0, "{t}");
        // Per code, exactly the file's counts, which are the log's.
        let by_code = report.get("rejected_by_code").cloned().unwrap_or(json!({}));
        let by_code = by_code.as_object().unwrap();
        assert_eq!(by_code.is_empty(), report["rejected"] == 0, "{report}");
        for c in hrmig::dictionary::ErrorCode::ALL.map(|c| c.as_str()) {
            let reported = by_code.get(c).and_then(Value::as_f64).unwrap_or(0.0);
            assert_eq!(moved(&before, &after, &code(t, c)), reported, "{t} {c}");
        }
        let summary: Value = app
            .get(&format!("/api/rejections/summary?table={t}"))
            .await
            .json()
            .await
            .unwrap();
        let logged: serde_json::Map<String, Value> = (summary.as_array().unwrap().iter())
            .map(|c| (c["code"].as_str().unwrap().to_owned(), c["count"].clone()))
            .collect();
        assert_eq!(&logged, by_code, "{t}");
    }
    let employees = &done["tables"][2];
    assert_eq!(employees["table"], "hired_employees");
    assert!(employees["rejected"].as_u64() > Some(0), "{employees}");
    let r = app
        .post_json("/api/backups", &json!({"tables": ["jobs"]}))
        .await;
    assert_eq!(r.status(), 200);
    let m = scrape(&app).await;
    let backups = r#"hrmig_backup_duration_seconds_count{table="jobs",outcome="ok"}"#;
    assert_eq!(m[backups], 1.0);
}

#[tokio::test]
async fn metrics_need_the_api_key_when_one_is_set() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("hr.db").display());
    let app = TestApp::spawn(
        &db,
        &dir.path().join("storage"),
        Keys::new(Some("metrics-key"), None),
    )
    .await;
    assert_eq!(app.get("/api/metrics").await.status(), 401);
    let r = app
        .client
        .get(format!("{}/api/metrics", app.base))
        .header("x-api-key", "metrics-key")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn an_aborted_file_counts_its_time_and_no_rows() {
    let (app, dir) = fresh().await;
    hrmig::ops::sample::generate(
        &dir.path().join("storage/landing"),
        &hrmig::ops::sample::GenOptions {
            employees: 300,
            invalid_rate: 0.2,
            seed: 6,
        },
    )
    .unwrap();
    let parents = json!({"tables": ["departments", "jobs"]});
    let r = app.post_json("/api/loads", &parents).await;
    assert_eq!(r.status(), 202);
    let before_parents: Value = r.json().await.unwrap();
    wait_counted(&app, before_parents["id"].as_str().unwrap(), "jobs").await;
    let before = scrape(&app).await;
    let body = json!({"tables": ["hired_employees"], "max_rejects": 0});
    let r = app.post_json("/api/loads", &body).await;
    assert_eq!(r.status(), 202);
    let job: Value = r.json().await.unwrap();
    let done = wait_counted(&app, job["id"].as_str().unwrap(), "hired_employees").await;
    assert_eq!(done["tables"][0]["status"], "aborted", "{done}");
    let after = scrape(&app).await;
    let aborted = r#"hrmig_load_duration_seconds_count{table="hired_employees",outcome="aborted"}"#;
    assert_eq!(moved(&before, &after, aborted), 1.0);
    for outcome in ["received", "inserted", "rejected"] {
        let series = rows("hired_employees", outcome);
        assert_eq!(moved(&before, &after, &series), 0.0, "{series}");
    }
}

/// Waits (bounded) until job `id` has ended and its file of `table` is in
/// the load histogram; the job as it ended.
async fn wait_counted(app: &TestApp, id: &str, table: &str) -> Value {
    for _ in 0..600 {
        let job: Value = app
            .get(&format!("/api/loads/{id}"))
            .await
            .json()
            .await
            .unwrap();
        let counted = scrape(app).await;
        let timed = counted.iter().any(|(k, v)| {
            k.starts_with("hrmig_load_duration_seconds_count")
                && k.contains(&format!(r#"table="{table}""#))
                && *v > 0.0
        });
        if job["status"] != "queued" && job["status"] != "running" && timed {
            return job;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("job {id} was not counted");
}
