//! Failures of the machine underneath, against the real binary: a full
//! disk under the database or the backups, a backup whose manifest cannot
//! follow it, a database that turns read-only. Each is a 503 with
//! `Retry-After` and a stable code, `/api/health` says so, nothing is half
//! written, and the server recovers by itself once the fault is gone.
//!
//! The disks are small tmpfs mounts (this needs root, as CI has); a
//! machine that cannot mount says so loudly and skips, except under CI.

mod common {
    pub mod files;
    pub mod pg_admin;
    pub mod pg_server;
    pub mod port;
    pub mod serve;
    pub mod tables;
}

use common::pg_server::private_server;
use common::serve::Serve;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A tmpfs mounted for one test, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// A tmpfs of `size` (mount's syntax: `64k`, `8m`), or `None` when this
    /// machine cannot mount one.
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs { dir }),
            other => {
                let why = match other {
                    Ok(o) => String::from_utf8_lossy(&o.stderr).into_owned(),
                    Err(e) => e.to_string(),
                };
                if std::env::var("CI").is_ok_and(|v| v == "true") {
                    panic!("CI=true and a tmpfs cannot be mounted: {why}");
                }
                eprintln!("\n*** SKIPPED: cannot mount a tmpfs (needs root): {why}\n");
                None
            }
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Changes the mount's options (`nr_inodes=…`, `size=…`).
    fn remount(&self, options: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,{options}")])
            .arg(self.path())
            .status()
            .unwrap();
        assert!(status.success(), "remount {options}");
    }

    /// Inodes in use.
    fn inodes_used(&self) -> u64 {
        let out = Command::new("stat")
            .args(["-f", "-c", "%c %d"])
            .arg(self.path())
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        let mut n = text.split_whitespace().map(|n| n.parse::<u64>().unwrap());
        let (total, free) = (n.next().unwrap(), n.next().unwrap());
        total - free
    }

    /// Fills the disk with one file, which is returned.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.path().join("filler");
        let mut file = std::fs::File::create(&path).unwrap();
        let chunk = vec![0u8; 4096];
        while file
            .write_all(&chunk)
            .and_then(|()| file.sync_data())
            .is_ok()
        {}
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a server being killed may still hold a file open.
        let _ = Command::new("umount").arg("-l").arg(self.path()).status();
    }
}

/// `n` departments from id `first`, as a JSON batch.
fn departments(first: u32, n: u32) -> Value {
    let rows: Vec<Value> = (first..first + n)
        .map(|id| json!({"id": id, "department": format!("Department number {id}")}))
        .collect();
    Value::Array(rows)
}

async fn post(serve: &Serve, path: &str, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}{path}", serve.base))
        .json(body)
        .send()
        .await
        .unwrap()
}

/// Status, `Retry-After` and body.
async fn answer(r: reqwest::Response) -> (u16, Option<String>, Value) {
    let status = r.status().as_u16();
    let retry = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, retry, r.json().await.unwrap_or(Value::Null))
}

/// A 503 with `code`, `Retry-After`, and a message that says `words`.
fn assert_unavailable(
    (status, retry, body): &(u16, Option<String>, Value),
    code: &str,
    words: &str,
) {
    assert_eq!(*status, 503, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(words), "{body}");
    assert!(retry.is_some(), "no Retry-After: {body}");
}

async fn health(serve: &Serve) -> (u16, Value) {
    let r = reqwest::get(format!("{}/api/health", serve.base))
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// Polls `/api/health` until its `database` is `want` (at most 10 s).
async fn health_becomes(serve: &Serve, want: &str) -> (u16, Value) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = health(serve).await;
        if body["database"] == want || Instant::now() > deadline {
            return (status, body);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn departments_stored(serve: &Serve) -> u64 {
    let tables: Value = reqwest::get(format!("{}/api/tables", serve.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    common::tables::rows_in(&tables, "departments")
}

#[tokio::test]
async fn a_full_disk_under_the_database_is_503_and_loses_nothing() {
    let Some(disk) = Tmpfs::mount("4m") else {
        return;
    };
    let storage = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", disk.path().join("hr.db").display());
    let serve = Serve::start(&db, storage.path(), &[]).await;
    let (status, _, _) =
        answer(post(&serve, "/api/tables/departments/rows", &departments(1, 10)).await).await;
    assert_eq!(status, 200);
    let mut inserted = 10;
    let filler = disk.fill();

    // Until the write-ahead log has no room left, batches still commit.
    let mut refused = None;
    for i in 0..200 {
        let batch = departments(1000 + i * 1000, 1000);
        let (status, retry, body) =
            answer(post(&serve, "/api/tables/departments/rows", &batch).await).await;
        match status {
            200 => inserted += body["inserted"].as_u64().unwrap(),
            _ => {
                refused = Some((status, retry, body));
                break;
            }
        }
    }
    let refused = refused.expect("a full disk never refused a batch");
    assert_unavailable(&refused, "database_unavailable", "disk full");
    let (status, body) = health_becomes(&serve, "cannot_write").await;
    assert_eq!(
        (status, &body["database"]),
        (503, &json!("cannot_write")),
        "{body}"
    );
    // The refused batch left nothing; the ones before it are all there.
    assert_eq!(departments_stored(&serve).await, inserted);

    std::fs::remove_file(filler).unwrap();
    let (status, body) = health_becomes(&serve, "ok").await;
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = answer(
        post(
            &serve,
            "/api/tables/departments/rows",
            &departments(900_000, 5),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(departments_stored(&serve).await, inserted + 5);
}

/// A server on a fresh SQLite database with 1000 departments, backing up
/// into `storage`.
async fn with_departments(storage: &Path) -> (Serve, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("hr.db").display());
    let serve = Serve::start(&db, storage, &[]).await;
    let (status, _, _) = answer(
        post(
            &serve,
            "/api/tables/departments/rows",
            &departments(1, 1000),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200);
    (serve, dir)
}

async fn backup(serve: &Serve) -> (u16, Option<String>, Value) {
    answer(
        post(
            serve,
            "/api/backups",
            &json!({"tables": ["departments"], "codec": "null"}),
        )
        .await,
    )
    .await
}

#[tokio::test]
async fn a_backup_onto_a_full_disk_is_503_and_leaves_no_file() {
    let Some(disk) = Tmpfs::mount("64k") else {
        return;
    };
    let (serve, _db) = with_departments(disk.path()).await;
    let filler = disk.fill();
    let before = common::files::files_under(disk.path());
    assert_unavailable(
        &backup(&serve).await,
        "storage_unavailable",
        "nothing was changed",
    );
    assert_eq!(
        common::files::files_under(disk.path()),
        before,
        "a partial file stayed behind"
    );

    std::fs::remove_file(filler).unwrap();
    let (status, _, body) = backup(&serve).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body[0]["rows"], 1000);
}

#[tokio::test]
async fn a_backup_whose_manifest_cannot_be_written_is_removed() {
    let Some(disk) = Tmpfs::mount("8m") else {
        return;
    };
    let (serve, _db) = with_departments(disk.path()).await;
    let (status, _, body) = backup(&serve).await;
    assert_eq!(status, 200, "{body}");
    let before = common::files::files_under(disk.path());
    assert_eq!(before.len(), 2, "{before:?}");

    // Room for one more file: the Avro file, not its manifest.
    disk.remount(&format!("nr_inodes={}", disk.inodes_used() + 1));
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_unavailable(
        &backup(&serve).await,
        "storage_unavailable",
        "nothing was changed",
    );
    assert_eq!(
        common::files::files_under(disk.path()),
        before,
        "the orphan file stayed"
    );
    let listed: Value = reqwest::get(format!("{}/api/backups?table=departments", serve.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");

    disk.remount("nr_inodes=10000");
    let (status, _, body) = backup(&serve).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(common::files::files_under(disk.path()).len(), 4);
}

#[tokio::test]
async fn a_postgres_database_turned_read_only_is_503_until_it_takes_writes() {
    let Some(pg) = private_server() else {
        return;
    };
    let storage = tempfile::tempdir().unwrap();
    let serve = Serve::start(&pg.url(), storage.path(), &[]).await;
    let (status, _, body) =
        answer(post(&serve, "/api/tables/departments/rows", &departments(1, 3)).await).await;
    assert_eq!(status, 200, "{body}");

    // As a failover to a standby, or an operator, would: every session,
    // the pooled ones included, turns read-only.
    let admin = pg.admin("postgres").await;
    let set = |on: &'static str| {
        let admin = &admin;
        async move {
            let alter = format!("ALTER SYSTEM SET default_transaction_read_only = {on}");
            admin.batch_execute(&alter).await.unwrap();
            admin
                .batch_execute("SELECT pg_reload_conf()")
                .await
                .unwrap();
        }
    };
    set("on").await;
    let (status, body) = health_becomes(&serve, "cannot_write").await;
    assert_eq!(status, 503, "{body}");
    let refused =
        answer(post(&serve, "/api/tables/departments/rows", &departments(10, 3)).await).await;
    assert_unavailable(&refused, "database_unavailable", "read-only");

    set("off").await;
    let (status, body) = health_becomes(&serve, "ok").await;
    assert_eq!(status, 200, "{body}");
    let (status, _, body) =
        answer(post(&serve, "/api/tables/departments/rows", &departments(10, 3)).await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(departments_stored(&serve).await, 6);
}
