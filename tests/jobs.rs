//! Load jobs over HTTP (`POST /api/loads` → 202 and a job to poll), against
//! the real server process: on SQLite, and on PostgreSQL with
//! `HRMIG_TEST_DATABASE=postgres` (part of the conformance suite).

mod common {
    pub mod db;
    pub mod port;
    pub mod serve;
    pub mod servers;
    pub mod tables;
}

use common::serve::Serve;
use hrmig::ops::sample::{GenOptions, generate};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};

/// A heartbeat short enough that a dead runner shows within a second.
const HEARTBEAT: (&str, &str) = ("HRMIG_JOB_HEARTBEAT_MS", "200");

fn landed_files(storage: &Path, employees: u64) {
    generate(
        &storage.join("landing"),
        &GenOptions {
            employees,
            invalid_rate: 0.05,
            seed: 7,
        },
    )
    .unwrap();
}

async fn post(base: &str, path: &str, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{base}{path}"))
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn get(base: &str, path: &str) -> (StatusCode, Value) {
    let r = reqwest::get(format!("{base}{path}")).await.unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Polls a job until `until` holds of it (at most 60 s).
async fn wait_for(base: &str, location: &str, until: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, job) = get(base, location).await;
        assert_eq!(status, StatusCode::OK, "{job}");
        if until(&job) {
            return job;
        }
        assert!(Instant::now() < deadline, "job never got there: {job}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn ended(job: &Value) -> bool {
    job["status"] == "done" || job["status"] == "failed"
}

/// (status, table, inserted) of each report of a job.
fn reports(job: &Value) -> Vec<(String, String, u64)> {
    job["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["status"].as_str().unwrap().to_owned(),
                r["table"].as_str().unwrap().to_owned(),
                r["inserted"].as_u64().unwrap(),
            )
        })
        .collect()
}

async fn count(base: &str, table: &str) -> u64 {
    let (_, tables) = get(base, "/api/tables").await;
    common::tables::rows_in(&tables, table)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_is_a_job_that_answers_at_once_and_reports_as_it_goes() {
    let dir = tempfile::tempdir().unwrap();
    let url = common::db::database_url(dir.path()).await;
    let storage = dir.path().join("storage");
    landed_files(&storage, 2000);
    let server = Serve::start(&url, &storage, &[]).await;

    let r = post(&server.base, "/api/loads", &json!({})).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let job: Value = r.json().await.unwrap();
    let id = job["id"].as_str().unwrap();
    assert_eq!(location, format!("/api/loads/{id}"));
    assert!(
        ["queued", "running", "done"].contains(&job["status"].as_str().unwrap()),
        "{job}"
    );
    assert_eq!(job["request"]["from"], "landing");

    let done = wait_for(&server.base, &location, ended).await;
    assert_eq!(done["status"], "done", "{done}");
    assert!(done.get("error").is_none(), "{done}");
    assert_eq!(done["progress"], Value::Null);
    let got = reports(&done);
    assert_eq!(
        got.iter()
            .map(|r| (r.0.as_str(), r.1.as_str()))
            .collect::<Vec<_>>(),
        [
            ("loaded", "departments"),
            ("loaded", "jobs"),
            ("loaded", "hired_employees")
        ]
    );
    assert_eq!(got[2].2, count(&server.base, "hired_employees").await);
    assert_eq!(done["tables"][2]["rows_read"], 2000);
    // The history lists the files, as before, newest first, each with its
    // id; one table's, or fewer, on request.
    let (_, history) = get(&server.base, "/api/loads").await;
    let history = history.as_array().unwrap().clone();
    assert_eq!(history.len(), 3);
    let ids: Vec<i64> = history.iter().map(|h| h["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "{ids:?}");
    let (_, jobs_only) = get(&server.base, "/api/loads?table=jobs").await;
    assert_eq!(jobs_only, json!([history[1]]));
    let (_, newest) = get(&server.base, "/api/loads?limit=1").await;
    assert_eq!(newest, json!([history[0]]));
    for bad in ["table=employees", "limit=0", "limit=1001", "limit=x"] {
        let (status, body) = get(&server.base, &format!("/api/loads?{bad}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }

    // Another instance over the same database sees the same job.
    let other = Serve::start(&url, &storage, &[]).await;
    let (status, seen) = get(&other.base, &location).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(seen["status"], "done");
    assert_eq!(seen["tables"], done["tables"]);

    // The same files again: a job whose every file was already loaded.
    let r = post(&other.base, "/api/loads", &json!({"tables": ["jobs"]})).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let again = r.headers()["location"].to_str().unwrap().to_owned();
    let again = wait_for(&other.base, &again, ended).await;
    assert_eq!(
        reports(&again),
        [("already_loaded".into(), "jobs".into(), 0)]
    );

    // A finished job cannot be run again.
    let r = post(&server.base, &format!("{location}/run"), &json!({})).await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_job_requests_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let url = common::db::database_url(dir.path()).await;
    let storage = dir.path().join("storage");
    std::fs::create_dir_all(storage.join("landing")).unwrap();
    std::fs::write(storage.join("landing/departments.csv"), "1,Sales\n").unwrap();
    let server = Serve::start(&url, &storage, &[]).await;

    for id in [
        "0123456789abcdef0123456789abcdef",
        "not-a-job",
        "x'; DROP TABLE hrmig_jobs; --",
        &"a".repeat(200),
    ] {
        let path = format!("/api/loads/{}", urlencode(id));
        let (status, body) = get(&server.base, &path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{id}: {body}");
        assert_eq!(body["error"]["code"], "not_found");
        let r = post(&server.base, &format!("{path}/run"), &json!({})).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{id}");
    }
    // A missing file is found before any job is recorded.
    let r = post(&server.base, "/api/loads", &json!({"tables": ["jobs"]})).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("jobs.csv"),
        "{body}"
    );
    for bad in [
        json!({"tables": ["employees"]}),
        json!({"from": "../etc"}),
        json!({"speed": "fast"}),
        json!([]),
    ] {
        let r = post(&server.base, "/api/loads", &bad).await;
        assert!(
            r.status() == StatusCode::BAD_REQUEST || r.status() == StatusCode::NOT_FOUND,
            "{bad}: {}",
            r.status()
        );
    }
    let (_, history) = get(&server.base, "/api/loads").await;
    assert_eq!(history, json!([]));
    assert_eq!(count(&server.base, "departments").await, 0);
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_server_dies_is_interrupted_and_running_it_again_finishes_it() {
    let dir = tempfile::tempdir().unwrap();
    let url = common::db::database_url(dir.path()).await;
    let storage = dir.path().join("storage");
    // Big enough that the load of the employees is still going when the
    // server is killed.
    landed_files(&storage, 600_000);
    let mut server = Serve::start(&url, &storage, &[HEARTBEAT]).await;
    let r = post(&server.base, "/api/loads", &json!({})).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    // Killed while it reads the employees' file, with rows read.
    let midway = wait_for(&server.base, &location, |job| {
        ended(job)
            || (job["progress"]["table"] == "hired_employees"
                && job["progress"]["rows_read"].as_u64() > Some(0))
    })
    .await;
    assert_eq!(
        midway["status"], "running",
        "finished before the kill: {midway}"
    );
    server.kill();

    let server = Serve::start(&url, &storage, &[HEARTBEAT]).await;
    let interrupted = wait_for(&server.base, &location, |job| job["status"] != "running").await;
    assert_eq!(interrupted["status"], "interrupted", "{interrupted}");
    // The file in progress left nothing: its load is one transaction.
    assert_eq!(count(&server.base, "hired_employees").await, 0);
    let done_before: Vec<_> = reports(&interrupted).into_iter().map(|r| r.1).collect();
    assert_eq!(done_before, ["departments", "jobs"]);

    // Running it again finishes it; the parents are not loaded twice.
    let r = post(&server.base, &format!("{location}/run"), &json!({})).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let done = wait_for(&server.base, &location, ended).await;
    assert_eq!(done["status"], "done", "{done}");
    let got = reports(&done);
    assert_eq!(got[0].0, "already_loaded");
    assert_eq!(got[1].0, "already_loaded");
    assert_eq!(got[2].0, "loaded");
    assert_eq!(got[2].2, count(&server.base, "hired_employees").await);
    assert!(got[2].2 > 500_000, "{got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_jobs_for_one_table_take_turns_and_load_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let url = common::db::database_url(dir.path()).await;
    let storage = dir.path().join("storage");
    landed_files(&storage, 50_000);
    let a = Serve::start(&url, &storage, &[]).await;
    let b = Serve::start(&url, &storage, &[]).await;
    let parents = post(
        &a.base,
        "/api/loads",
        &json!({"tables": ["departments", "jobs"]}),
    )
    .await;
    let parents = parents.headers()["location"].to_str().unwrap().to_owned();
    wait_for(&a.base, &parents, ended).await;

    let body = json!({"tables": ["hired_employees"]});
    let (first, second) = tokio::join!(
        post(&a.base, "/api/loads", &body),
        post(&b.base, "/api/loads", &body)
    );
    let first = first.headers()["location"].to_str().unwrap().to_owned();
    let second = second.headers()["location"].to_str().unwrap().to_owned();
    let first = wait_for(&a.base, &first, ended).await;
    let second = wait_for(&b.base, &second, ended).await;
    let mut statuses = [reports(&first)[0].0.clone(), reports(&second)[0].0.clone()];
    statuses.sort();
    assert_eq!(statuses, ["already_loaded", "loaded"], "{first} {second}");
    let inserted = reports(&first)[0].2 + reports(&second)[0].2;
    assert_eq!(inserted, count(&a.base, "hired_employees").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_a_job_again_needs_the_admin_key() {
    let dir = tempfile::tempdir().unwrap();
    let url = common::db::database_url(dir.path()).await;
    let storage = dir.path().join("storage");
    landed_files(&storage, 10);
    let server = Serve::start(
        &url,
        &storage,
        &[
            ("HRMIG_API_KEY", "reader-1"),
            ("HRMIG_ADMIN_KEY", "admin-1"),
        ],
    )
    .await;
    let client = reqwest::Client::new();
    let call = |path: String, key: &'static str| {
        client
            .post(format!("{}{path}", server.base))
            .header("x-api-key", key)
            .json(&json!({}))
            .send()
    };
    let r = call("/api/loads".into(), "reader-1").await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = call("/api/loads".into(), "admin-1").await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let r = call(format!("{location}/run"), "reader-1").await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let job = client
        .get(format!("{}{location}", server.base))
        .header("x-api-key", "reader-1")
        .send()
        .await
        .unwrap();
    assert_eq!(job.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_jobs_are_listed_newest_first_from_any_instance() {
    let dir = tempfile::tempdir().unwrap();
    let url = common::db::database_url(dir.path()).await;
    let storage = dir.path().join("storage");
    landed_files(&storage, 200);
    let a = Serve::start(&url, &storage, &[]).await;
    let b = Serve::start(&url, &storage, &[]).await;
    let (status, none) = get(&a.base, "/api/loads/jobs").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(none, json!([]));
    let mut ids = Vec::new();
    for tables in [json!(["departments", "jobs"]), json!(["hired_employees"])] {
        let r = post(&a.base, "/api/loads", &json!({ "tables": tables })).await;
        let location = r.headers()["location"].to_str().unwrap().to_owned();
        let job = wait_for(&a.base, &location, ended).await;
        ids.push(job["id"].as_str().unwrap().to_owned());
    }
    // Another instance lists them too, newest first, each as `GET` on its
    // location answers it.
    let (status, listed) = get(&b.base, "/api/loads/jobs").await;
    assert_eq!(status, StatusCode::OK);
    let listed_ids: Vec<&str> = (listed.as_array().unwrap().iter())
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed_ids, [ids[1].as_str(), ids[0].as_str()], "{listed}");
    let (_, second) = get(&b.base, &format!("/api/loads/{}", ids[1])).await;
    assert_eq!(listed[0], second);
    let (_, one) = get(&b.base, "/api/loads/jobs?limit=1").await;
    assert_eq!(one.as_array().unwrap().len(), 1);
    for bad in ["0", "1001", "x"] {
        let (status, _) = get(&b.base, &format!("/api/loads/jobs?limit={bad}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "limit={bad}");
    }
}
