//! Azurite behind a relay that drops, stalls or cuts connections: retried
//! drops, a backup killed midway, Azurite stopped midway.

use crate::cli::{command, extra_employee, fingerprint, hrmig, json, ok, reports};
use crate::common::azurite::{Azurite, connection_string, generate, wait_for};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A TCP relay to Azurite that counts the bytes each way. It can stall the
/// upload once it passes a mark (relaying nothing more, closing nothing),
/// or cut the download at a mark: every connection is closed and new ones
/// are refused from then on, as when the service goes away.
struct Relay {
    port: u16,
    up: Arc<AtomicU64>,
    down: Arc<AtomicU64>,
    stall_up_after: Arc<AtomicU64>,
    cut_down_after: Arc<AtomicU64>,
    /// Set once the download was cut.
    cut: Arc<AtomicBool>,
    /// Connections to drop as soon as they are accepted (a flaky network).
    drop_next: Arc<AtomicU64>,
    closed: Arc<AtomicBool>,
}

/// One direction of a relayed connection.
struct Pipe {
    count: Arc<AtomicU64>,
    /// Stop relaying (without closing) at this count.
    stall: Arc<AtomicU64>,
    /// Close everything at this count.
    cut_at: Arc<AtomicU64>,
    cut: Arc<AtomicBool>,
    closed: Arc<AtomicBool>,
}

impl Relay {
    fn start(target: u16) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let never = || Arc::new(AtomicU64::new(u64::MAX));
        let relay = Relay {
            port: listener.local_addr().unwrap().port(),
            up: Arc::default(),
            down: Arc::default(),
            stall_up_after: never(),
            cut_down_after: never(),
            cut: Arc::default(),
            drop_next: Arc::default(),
            closed: Arc::default(),
        };
        let drop_next = relay.drop_next.clone();
        let up = Pipe {
            count: relay.up.clone(),
            stall: relay.stall_up_after.clone(),
            cut_at: never(),
            cut: relay.cut.clone(),
            closed: relay.closed.clone(),
        };
        let down = Pipe {
            count: relay.down.clone(),
            stall: never(),
            cut_at: relay.cut_down_after.clone(),
            cut: relay.cut.clone(),
            closed: relay.closed.clone(),
        };
        listener.set_nonblocking(true).unwrap();
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(300);
            while !up.closed.load(Ordering::Relaxed) && Instant::now() < deadline {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                if up.cut.load(Ordering::Relaxed) {
                    drop(client); // refused, as a stopped service would
                    continue;
                }
                let flaky = drop_next
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
                if flaky.is_ok() {
                    drop(client);
                    continue;
                }
                client.set_nonblocking(false).unwrap();
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                up.run(&client, &server);
                down.run(&server, &client);
            }
        });
        relay
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.closed.store(true, Ordering::Relaxed);
    }
}

impl Pipe {
    /// Copies `from` to `to` on a thread; stops at EOF, an error, a cut,
    /// the relay's close or five minutes.
    fn run(&self, from: &TcpStream, to: &TcpStream) {
        let (mut from, mut to) = (from.try_clone().unwrap(), to.try_clone().unwrap());
        from.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let (count, stall, cut_at, cut, closed) = (
            self.count.clone(),
            self.stall.clone(),
            self.cut_at.clone(),
            self.cut.clone(),
            self.closed.clone(),
        );
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(300);
            let mut buf = vec![0; 64 * 1024];
            while !closed.load(Ordering::Relaxed) && Instant::now() < deadline {
                if cut.load(Ordering::Relaxed) {
                    break;
                }
                let done = count.load(Ordering::Relaxed);
                if done >= stall.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
                let room = cut_at.load(Ordering::Relaxed).saturating_sub(done);
                if room == 0 {
                    cut.store(true, Ordering::Relaxed);
                    break;
                }
                let want = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
                match from.read(&mut buf[..want]) {
                    Ok(0) => break,
                    Ok(n) => {
                        if to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        count.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) => {}
                    Err(_) => break,
                }
            }
            let _ = to.shutdown(std::net::Shutdown::Both);
            let _ = from.shutdown(std::net::Shutdown::Both);
        });
    }
}

#[test]
fn dropped_connections_are_retried() {
    let Some(azurite) = Azurite::with_container("flaky") else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let landing = generate(work.path(), 200, true);
    azurite.upload_landing("flaky", &landing, &["departments", "jobs"]);
    let relay = Relay::start(azurite.port);
    let conn = connection_string(relay.port);
    // Each operation meets two dropped connections first, and gets through.
    relay.drop_next.store(2, Ordering::Relaxed);
    let loaded = reports(hrmig(
        work.path(),
        "az://flaky",
        &conn,
        &["load", "departments", "jobs", "--json"],
    ));
    assert_eq!(loaded[0]["inserted"], 12, "{loaded:?}");
    assert_eq!(
        relay.drop_next.load(Ordering::Relaxed),
        0,
        "no connection was dropped"
    );
    relay.drop_next.store(2, Ordering::Relaxed);
    ok(hrmig(work.path(), "az://flaky", &conn, &["backup", "jobs"]));
    assert_eq!(relay.drop_next.load(Ordering::Relaxed), 0);
    relay.drop_next.store(2, Ordering::Relaxed);
    ok(hrmig(work.path(), "az://flaky", &conn, &["verify", "jobs"]));
    assert_eq!(
        azurite.blobs("flaky").len(),
        2 + 2,
        "{:?}",
        azurite.blobs("flaky")
    );
}

/// Employees enough for an Avro file of several upload blocks (8 MiB each).
const MANY: u32 = 450_000;

#[test]
fn a_backup_killed_midway_leaves_no_committed_blob() {
    let Some(azurite) = Azurite::with_container("hrdata") else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let landing = generate(work.path(), MANY, true);
    let db = work.path();
    ok(hrmig(
        db,
        "az://hrdata",
        "",
        &["load", "--from", landing.to_str().unwrap()],
    ));

    let relay = Relay::start(azurite.port);
    // The first block (8 MiB) goes through; the upload then stalls.
    relay.stall_up_after.store(9 << 20, Ordering::Relaxed);
    let mut child = command(db, "az://hrdata", &connection_string(relay.port))
        .args(["backup", "hired_employees", "--codec", "null"])
        .spawn()
        .unwrap();
    wait_for(&mut child, "backup", || {
        relay.up.load(Ordering::Relaxed) >= 9 << 20
    });
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap(); // SIGKILL, mid-upload
    child.wait().unwrap();

    // Blocks were uploaded, but no blob was committed: no file, no manifest.
    assert_eq!(azurite.blobs("hrdata"), vec![], "a committed blob is left");
    let pending = azurite.client(&["uncommitted", "hrdata"]);
    assert!(
        pending.lines().any(
            |n| n.starts_with("backups/hired_employees/hired_employees-") && n.ends_with(".avro")
        ),
        "the upload had not started: {pending:?}"
    );
    let listed = json(hrmig(
        db,
        "az://hrdata",
        &connection_string(azurite.port),
        &["backups", "--json"],
    ));
    assert_eq!(listed, serde_json::json!([]));

    // A backup run to the end afterwards is complete and verifies.
    let conn = connection_string(azurite.port);
    ok(hrmig(
        db,
        "az://hrdata",
        &conn,
        &["backup", "hired_employees", "--codec", "null"],
    ));
    ok(hrmig(
        db,
        "az://hrdata",
        &conn,
        &["verify", "hired_employees"],
    ));
    assert_eq!(azurite.blobs("hrdata").len(), 2);
}

/// Runs `hrmig args…` on `az://hrdata` through a relay that cuts the
/// download after `after` bytes, then stops Azurite; returns the stderr of
/// the run, which must have failed with exit 1.
fn cut_off(db: &Path, azurite: &mut Azurite, after: u64, args: &[&str]) -> String {
    let relay = Relay::start(azurite.port);
    relay.cut_down_after.store(after, Ordering::Relaxed);
    let mut child = command(db, "az://hrdata", &connection_string(relay.port))
        .args(args)
        .spawn()
        .unwrap();
    wait_for(&mut child, args[0], || relay.cut.load(Ordering::Relaxed));
    azurite.stop();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
    err
}

#[test]
fn azurite_stopped_midway_gives_a_clear_error_and_changes_nothing() {
    let Some(mut azurite) = Azurite::with_container("hrdata") else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let landing = generate(work.path(), MANY, true);
    let db = work.path().join("db");
    std::fs::create_dir_all(&db).unwrap();
    let conn = connection_string(azurite.port);

    // A restore reading a backup when Azurite stops.
    ok(hrmig(
        &db,
        "az://hrdata",
        &conn,
        &["load", "--from", landing.to_str().unwrap()],
    ));
    ok(hrmig(
        &db,
        "az://hrdata",
        &conn,
        &["backup", "--codec", "null"],
    ));
    let extra = extra_employee(work.path());
    ok(hrmig(
        &db,
        "az://hrdata",
        &conn,
        &["load", "--from", extra.to_str().unwrap(), "hired_employees"],
    ));
    let before = fingerprint(&db.join("hr.db"));
    let err = cut_off(&db, &mut azurite, 2 << 20, &["restore", "hired_employees"]);
    assert!(
        err.contains("az://hrdata/backups/hired_employees/"),
        "{err}"
    );
    assert!(
        !err.contains("damaged"),
        "a storage failure is not damage: {err}"
    );
    eprintln!("restore with Azurite stopped: {err}");
    assert_eq!(fingerprint(&db.join("hr.db")), before);

    // A load reading a CSV blob when Azurite stops (after the whole file
    // was hashed, while rows are going in).
    let Some(azurite) = Azurite::with_container("hrdata") else {
        return;
    };
    let csv = landing.join("hired_employees.csv");
    let size = std::fs::metadata(&csv).unwrap().len();
    azurite.upload_landing("hrdata", &landing, &["hired_employees"]);
    // Into a database with the parents only: a load that went through
    // would add every employee.
    let db = work.path().join("db2");
    std::fs::create_dir_all(&db).unwrap();
    let parents = [
        "load",
        "--from",
        landing.to_str().unwrap(),
        "departments",
        "jobs",
    ];
    ok(hrmig(&db, "az://hrdata", "", &parents));
    let before = fingerprint(&db.join("hr.db"));
    let mut azurite = azurite;
    let err = cut_off(
        &db,
        &mut azurite,
        size + (2 << 20),
        &["load", "hired_employees"],
    );
    assert!(
        err.contains("az://hrdata/landing/hired_employees.csv"),
        "{err}"
    );
    eprintln!("load with Azurite stopped: {err}");
    assert_eq!(fingerprint(&db.join("hr.db")), before);
}
