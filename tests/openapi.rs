//! The OpenAPI document is what the server does: schemathesis, an
//! independent client, generates requests from `/api/openapi.json` and runs
//! every check (stateful phase included) against a real server: valid
//! requests must be accepted, invalid ones refused, and every answer must
//! match its documented schema. The examples per operation are bounded and
//! the seed fixed, so a run takes seconds and a failure reproduces.

mod common {
    pub mod port;
    pub mod serve;
}

use common::serve::Serve;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Examples per operation and phase: enough for the boundaries and a
/// sample beyond them.
const EXAMPLES: &str = "25";

/// The schemathesis beside `HRMIG_PYTHON` (scripts/test installs it there).
fn schemathesis() -> Option<PathBuf> {
    let python = std::env::var("HRMIG_PYTHON").unwrap_or_else(|_| "python3".into());
    let exe = Path::new(&python).with_file_name("schemathesis");
    let found = Command::new(&exe)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return Some(exe);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI=true and no schemathesis at {}", exe.display());
    }
    eprintln!(
        "\n*** SKIPPED: no schemathesis at {} (scripts/test installs it)\n",
        exe.display()
    );
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_mismatch() {
    let Some(exe) = schemathesis() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("storage");
    // Files to load, so that the load routes get past "no such file".
    hrmig::ops::sample::generate(
        &storage.join("landing"),
        &hrmig::ops::sample::GenOptions {
            employees: 200,
            invalid_rate: 0.1,
            seed: 3,
        },
    )
    .unwrap();
    let db = format!("sqlite://{}", dir.path().join("hr.db").display());
    let serve = Serve::start(&db, &storage, &[]).await;
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/schemathesis/schemathesis.toml");
    let mut child = Command::new(&exe)
        .arg("--no-color")
        .arg("--config-file")
        .arg(&config)
        .args(["run", &format!("{}/api/openapi.json", serve.base)])
        .args(["--checks", "all", "--max-examples", EXAMPLES, "--seed", "1"])
        .args(["--workers", "1", "--request-timeout", "10"])
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Bounded: a hung run is killed and fails the test.
    let deadline = Instant::now() + Duration::from_secs(300);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(status.is_some(), "schemathesis ran over 300 s:\n{text}");
    assert!(
        out.status.success(),
        "schemathesis found mismatches:\n{text}"
    );
    // It really ran, on every operation of the document.
    let doc: serde_json::Value = reqwest::get(format!("{}/api/openapi.json", serve.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let operations: usize = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|item| item.as_object().unwrap().len())
        .sum();
    assert!(operations > 10, "{operations}");
    assert!(text.contains(&format!("Tested: {operations}")), "{text}");
    assert!(text.contains("passed"), "{text}");
}
