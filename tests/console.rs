//! The operator console in a real browser: Debian's Chromium, headless,
//! driven by Playwright from Python (`tests/browser/console.py`), against
//! the real router on a loopback port. Screenshots go to
//! `target/console-artefacts/`.
//!
//! Needs `HRMIG_PYTHON` with `playwright` (scripts/test installs it) and a
//! Chromium (`HRMIG_CHROMIUM`, default `/usr/bin/chromium`; `.ci/run`
//! installs Debian's). Without them the tests say so and skip, except
//! under `CI=true`, where that is a failure.

mod common {
    pub mod app;
    pub mod pg_server;
    pub mod port;
}

use common::app::TestApp;
use common::pg_server::private_server;
use hrmig::http::Keys;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The Python with Playwright and the browser, or `None` (said loudly).
fn browser() -> Option<(String, String)> {
    let python = std::env::var("HRMIG_PYTHON").unwrap_or_else(|_| "python3".into());
    let chromium = std::env::var("HRMIG_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let playwright = Command::new(&python)
        .args(["-c", "import playwright.sync_api"])
        .output()
        .is_ok_and(|o| o.status.success());
    let missing = match (playwright, Path::new(&chromium).is_file()) {
        (true, true) => return Some((python, chromium)),
        (false, _) => format!("no playwright in {python}"),
        (true, false) => format!("no Chromium at {chromium}"),
    };
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI=true and the console cannot be tested: {missing}");
    }
    eprintln!(
        "\n*** SKIPPED: the console's browser test: {missing} (scripts/test installs playwright; apt-get install chromium)\n"
    );
    None
}

fn artefacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/console-artefacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs the browser script in `mode` against `base`; fails the test with
/// its output unless it passes. Bounded: a hung browser is killed.
fn run_console(base: &str, mode: &str, env: &[(&str, String)]) {
    let Some((python, chromium)) = browser() else {
        return;
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/console.py");
    let mut command = Command::new(python);
    command
        .arg(script)
        .arg(mode)
        .env("HRMIG_CONSOLE_URL", base)
        .env("HRMIG_ARTEFACTS", artefacts())
        .env("HRMIG_CHROMIUM", chromium)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(180);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "console.py {mode} failed:\n{text}");
    assert!(text.contains(&format!("console.py {mode}: ok")), "{text}");
}

/// A fresh SQLite database and storage folder, with the API over them.
async fn app(dir: &Path, keys: Keys) -> TestApp {
    let db = format!("sqlite://{}", dir.join("hr.db").display());
    TestApp::spawn(&db, &dir.join("storage"), keys).await
}

async fn json(r: reqwest::Response) -> Value {
    let status = r.status();
    let text = r.text().await.unwrap();
    assert!(status.is_success(), "{status}: {text}");
    serde_json::from_str(&text).unwrap()
}

/// Loads a generated set through a load job and waits for it.
async fn load_generated(app: &TestApp, storage: &Path) {
    hrmig::ops::sample::generate(
        &storage.join("landing"),
        &hrmig::ops::sample::GenOptions {
            employees: 400,
            invalid_rate: 0.05,
            seed: 11,
        },
    )
    .unwrap();
    let job = json(app.post_json("/api/loads", &json!({})).await).await;
    let id = job["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let job = json(app.get(&format!("/api/loads/{id}")).await).await;
        match job["status"].as_str() {
            Some("done") => return,
            Some("queued" | "running") => {}
            other => panic!("load job ended {other:?}: {job}"),
        }
        assert!(Instant::now() < deadline, "the load job did not end");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_a_loaded_set_filters_rejections_draws_2021_and_asks_before_a_restore() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("storage");
    let app = app(dir.path(), Keys::default()).await;
    load_generated(&app, &storage).await;
    // A department whose name is markup: the console shows it as text.
    let xss = json!([{"id": 999, "department": "<img src=x onerror=alert(1)>"}]);
    let added = json(app.post_json("/api/tables/departments/rows", &xss).await).await;
    assert_eq!(added["inserted"], 1, "{added}");
    let backups = json(app.post_json("/api/backups", &json!({})).await).await;
    assert!(backups.to_string().contains("departments-"), "{backups}");
    // What the console must show: the API's own counts.
    let tables = json(app.get("/api/tables").await).await;
    let mut expect = serde_json::Map::new();
    for t in tables.as_array().unwrap() {
        expect.insert(t["name"].as_str().unwrap().to_owned(), t["rows"].clone());
    }
    let summary = json(app.get("/api/rejections/summary").await).await;
    let mut codes = serde_json::Map::new();
    for s in summary.as_array().unwrap() {
        let code = s["code"].as_str().unwrap().to_owned();
        let n = codes.get(&code).and_then(Value::as_u64).unwrap_or(0);
        codes.insert(code, json!(n + s["count"].as_u64().unwrap()));
    }
    assert!(!codes.is_empty(), "the generated set has rejections");
    expect.insert("rejections".into(), Value::Object(codes));
    let history_before = json(app.get("/api/loads").await).await;
    run_console(
        &app.base,
        "loaded",
        &[
            ("HRMIG_EXPECT", Value::Object(expect).to_string()),
            ("HRMIG_XSS_ID", "999".into()),
            ("HRMIG_RESTORE_TABLE", "departments".into()),
        ],
    );
    // The restore was cancelled: nothing was restored.
    let history_after = json(app.get("/api/loads").await).await;
    assert_eq!(history_before, history_after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_an_empty_database_as_zeros() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path(), Keys::default()).await;
    run_console(&app.base, "empty", &[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_asks_for_the_api_key_and_keeps_it_for_the_tab() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path(), Keys::new(Some("console-key-1"), None)).await;
    // The page itself needs no key; the API does.
    let page = app.get("/api/console/").await;
    assert_eq!(page.status(), 200);
    assert_eq!(app.get("/api/tables").await.status(), 401);
    run_console(&app.base, "key", &[("HRMIG_KEY", "console-key-1".into())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_says_when_the_database_is_down() {
    if browser().is_none() {
        return;
    }
    let Some(server) = private_server() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(&server.url(), &dir.path().join("storage"), Keys::default()).await;
    server.pg_ctl("stop").unwrap();
    assert_eq!(app.get("/api/tables").await.status(), 503);
    run_console(&app.base, "down", &[]);
}

#[tokio::test]
async fn the_console_is_served_with_its_policy_and_types() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("hr.db").display());
    let keys = Keys::new(Some("k"), Some("a"));
    let storage = dir.path().join("storage");
    let app = TestApp::spawn_router(&db, &storage, keys, hrmig::http::standalone_router).await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for (path, to) in [("/", "/api/console/"), ("/api/console", "/api/console/")] {
        let r = client
            .get(format!("{}{path}", app.base))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_redirection(), "{path}: {}", r.status());
        assert_eq!(r.headers()["location"], to, "{path}");
    }
    for (path, ty) in [
        ("/api/console/", "text/html; charset=utf-8"),
        ("/api/console/console.js", "text/javascript; charset=utf-8"),
        ("/api/console/console.css", "text/css; charset=utf-8"),
        (
            "/api/console/vendor/uplot-1.6.32/uPlot.iife.min.js",
            "text/javascript; charset=utf-8",
        ),
    ] {
        let r = app.get(path).await;
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.headers()["content-type"], ty, "{path}");
        let policy = r.headers()["content-security-policy"].to_str().unwrap();
        assert!(policy.contains("script-src 'self'"), "{policy}");
        assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    }
    // Only the files compiled in: a name is looked up, never opened.
    for path in ["/api/console/nothing.js", "/api/console/..%2fCargo.toml"] {
        assert_eq!(app.get(path).await.status(), 404, "{path}");
    }
}
