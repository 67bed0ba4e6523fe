//! Azure Blob Storage through Azurite: loads from a container, backups into
//! it, listing, verify and restore; a backup killed midway; Azurite stopped
//! midway; managed identity as App Service provides it. The Python Azure
//! SDK (`tests/blob_client.py`) is the independent client that creates
//! containers, uploads the CSVs and checks what hrmig wrote (see
//! `common::azurite` for what the tests need).

mod common;

use common::azurite::{Azurite, KEY, connection_string, generate, wait_for};
use common::fake::Fake;
use common::pg_server::free_port;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// `hrmig ARGS` with its database in `dir` and its storage at `storage`,
/// reached through `connection` (nothing else from the environment).
fn hrmig(dir: &Path, storage: &str, connection: &str, args: &[&str]) -> Output {
    command(dir, storage, connection)
        .args(args)
        .output()
        .unwrap()
}

fn command(dir: &Path, storage: &str, connection: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_hrmig"));
    for (key, _) in std::env::vars() {
        if key.starts_with("AZURE") || key.starts_with("HRMIG_") {
            c.env_remove(key);
        }
    }
    c.current_dir(dir)
        .env(
            "HRMIG_DATABASE_URL",
            format!("sqlite://{}", dir.join("hr.db").display()),
        )
        .env("HRMIG_STORAGE_URL", storage)
        .env("AZURE_STORAGE_CONNECTION_STRING", connection)
        .env("HRMIG_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

fn ok(o: Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

fn json(o: Output) -> serde_json::Value {
    serde_json::from_str(&ok(o)).unwrap()
}

/// `load --json`, `backup --json`: one object a line.
fn reports(o: Output) -> Vec<serde_json::Value> {
    ok(o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Count, id sum and a digest of the employees: enough to see any change.
fn fingerprint(db: &Path) -> (i64, i64, String) {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row(
        "SELECT COUNT(*), COALESCE(SUM(id), 0), COALESCE(MAX(name || datetime), '') \
         FROM hired_employees",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
    .unwrap()
}

const TABLES: [&str; 3] = ["departments", "jobs", "hired_employees"];

#[test]
fn historic_load_backup_list_verify_restore_through_blobs() {
    let Some(azurite) = Azurite::with_container("hrdata") else {
        return;
    };
    let conn = connection_string(azurite.port);
    let work = tempfile::tempdir().unwrap();
    let landing = generate(work.path(), 3000, false);
    azurite.upload_landing("hrdata/raw", &landing, &TABLES);

    // The reference: the same files loaded from the local disk.
    let local = tempfile::tempdir().unwrap();
    let expected = reports(hrmig(
        local.path(),
        local.path().join("storage").to_str().unwrap(),
        "",
        &["load", "--from", landing.to_str().unwrap(), "--json"],
    ));

    // Storage root az://hrdata/raw: the default load source is its landing/.
    let db = tempfile::tempdir().unwrap();
    let loaded = reports(hrmig(
        db.path(),
        "az://hrdata/raw",
        &conn,
        &["load", "--json"],
    ));
    assert_eq!(loaded.len(), 3);
    for (got, want) in loaded.iter().zip(&expected) {
        for key in [
            "table",
            "status",
            "rows_read",
            "inserted",
            "rejected",
            "blank",
        ] {
            assert_eq!(got[key], want[key], "{key}: {got} vs {want}");
        }
        assert!(
            got["source"]
                .as_str()
                .unwrap()
                .contains("az://hrdata/raw/landing/"),
            "{got}"
        );
    }
    assert!(
        loaded[2]["rejected"].as_u64().unwrap() > 0,
        "sample data has bad rows"
    );
    // Loaded again: skipped, by content.
    let again = reports(hrmig(
        db.path(),
        "az://hrdata/raw",
        &conn,
        &["load", "--json"],
    ));
    assert!(
        again.iter().all(|r| r["status"] == "already_loaded"),
        "{again:?}"
    );
    let before = fingerprint(&db.path().join("hr.db"));

    let made = reports(hrmig(
        db.path(),
        "az://hrdata/raw",
        &conn,
        &["backup", "--json"],
    ));
    assert_eq!(made.len(), 3);

    // Where the contract says, seen by another client: the Avro file and
    // its manifest for each table, nothing else.
    let blobs = azurite.blobs("hrdata");
    for m in &made {
        let (table, name) = (m["table"].as_str().unwrap(), m["backup"].as_str().unwrap());
        let avro = format!("raw/backups/{table}/{name}.avro");
        let size = blobs.iter().find(|(n, _)| *n == avro).map(|(_, s)| *s);
        assert_eq!(size, m["bytes"].as_u64(), "{avro} in {blobs:?}");
        let manifest = format!("raw/backups/{table}/{name}.manifest.json");
        assert!(blobs.iter().any(|(n, _)| *n == manifest), "{manifest}");
    }
    assert_eq!(blobs.len(), 3 + 6, "{blobs:?}");

    // fastavro reads the employees file we uploaded: every row.
    let employees = &made[2];
    let file = work.path().join("employees.avro");
    let blob = format!(
        "raw/backups/hired_employees/{}.avro",
        employees["backup"].as_str().unwrap()
    );
    azurite.client(&["download", "hrdata", &blob, file.to_str().unwrap()]);
    let count = Command::new(&azurite.python)
        .args([
            "-c",
            "import fastavro,sys; print(sum(1 for _ in fastavro.reader(open(sys.argv[1],'rb'))))",
            file.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&count.stdout).trim(),
        employees["rows"].to_string()
    );

    let listed = json(hrmig(
        db.path(),
        "az://hrdata/raw",
        &conn,
        &["backups", "--json"],
    ));
    assert_eq!(listed.as_array().unwrap().len(), 3, "{listed}");
    let verified = ok(hrmig(
        db.path(),
        "az://hrdata/raw",
        &conn,
        &["verify", "hired_employees"],
    ));
    assert!(verified.contains("ok"), "{verified}");

    // The table changes, then comes back from the blob.
    let extra = work.path().join("extra");
    std::fs::create_dir_all(&extra).unwrap();
    std::fs::write(
        extra.join("hired_employees.csv"),
        "900001,Ada Lovelace,2021-03-01T10:00:00Z,1,1\n",
    )
    .unwrap();
    let o = hrmig(
        db.path(),
        "az://hrdata/raw",
        &conn,
        &["load", "--from", extra.to_str().unwrap(), "hired_employees"],
    );
    ok(o);
    assert_ne!(fingerprint(&db.path().join("hr.db")), before);
    let restored = json(hrmig(
        db.path(),
        "az://hrdata/raw",
        &conn,
        &["restore", "hired_employees", "--json"],
    ));
    assert_eq!(restored["rows"], employees["rows"]);
    assert_eq!(fingerprint(&db.path().join("hr.db")), before);
}

#[test]
fn emulator_settings_and_bad_storage_urls() {
    let Some(azurite) = Azurite::with_container("emu") else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let landing = generate(work.path(), 200, true);
    azurite.upload_landing("emu", &landing, &["departments"]);
    let address = format!("http://127.0.0.1:{}", azurite.port);

    // AZURE_STORAGE_USE_EMULATOR, and UseDevelopmentStorage=true: both are
    // Azurite's well-known account, at AZURITE_BLOB_STORAGE_URL.
    for (variable, value) in [
        ("AZURE_STORAGE_USE_EMULATOR", "true"),
        (
            "AZURE_STORAGE_CONNECTION_STRING",
            "UseDevelopmentStorage=true",
        ),
    ] {
        let db = tempfile::tempdir().unwrap();
        let mut c = command(db.path(), "az://emu", "");
        c.env_remove("AZURE_STORAGE_CONNECTION_STRING")
            .env(variable, value)
            .env("AZURITE_BLOB_STORAGE_URL", &address)
            .args(["load", "departments", "--json"]);
        let report = reports(c.output().unwrap());
        assert_eq!(report[0]["inserted"], 12, "{variable}: {report:?}");
    }

    let db = tempfile::tempdir().unwrap();
    let conn = connection_string(azurite.port);
    let refused = |storage: &str, connection: &str, expect: &str| {
        let o = hrmig(db.path(), storage, connection, &["backups"]);
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert_eq!(o.status.code(), Some(1), "{storage}: {err}");
        assert!(err.contains(expect), "{storage}: {expect:?} not in {err}");
        assert!(!err.contains(KEY), "the key leaked: {err}");
    };
    refused("az://Bad_Name", &conn, "is not a container name");
    refused("az://emu", "AccountKey=x", "no AccountName");
    refused(
        "az://emu",
        "",
        "no storage account: set AZURE_STORAGE_CONNECTION_STRING",
    );
    // A container that does not exist, and wrong credentials: the service's
    // refusal, named.
    refused("az://nosuchcontainer", &conn, "az://nosuchcontainer");
    let wrong = conn.replace(KEY, "d3Jvbmcga2V5");
    refused("az://emu", &wrong, "az://emu");
    // Nothing listening: a clear error within seconds, not minutes.
    let started = Instant::now();
    refused("az://emu", &connection_string(free_port()), "az://emu");
    assert!(
        started.elapsed() < Duration::from_secs(40),
        "{:?}",
        started.elapsed()
    );
}

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
    let extra = work.path().join("extra");
    std::fs::create_dir_all(&extra).unwrap();
    std::fs::write(
        extra.join("hired_employees.csv"),
        "900001,Ada Lovelace,2021-03-01T10:00:00Z,1,1\n",
    )
    .unwrap();
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

// ---------------------------------------------------------------------------
// The Azure Functions custom handler, with this test playing the host.

/// One request seen by [`fake_azure`]: method, target, lowercased headers.
type Seen = (String, String, Vec<(String, String)>);

/// A stand-in for two Azure endpoints on loopback: App Service's managed
/// identity endpoint (`/msi/token`) and a blob service (`/blob/…`) whose
/// containers are all empty. It records every request.
fn fake_azure() -> Fake<Seen> {
    Fake::start(serve_fake)
}

/// Answers the requests of one keep-alive connection (bodiless ones: GET
/// and HEAD are all this fake expects).
fn serve_fake(conn: TcpStream, seen: Arc<std::sync::Mutex<Vec<Seen>>>) {
    use std::io::BufRead;
    conn.set_nonblocking(false).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = std::io::BufReader::new(conn.try_clone().unwrap());
    let mut out = conn;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_owned();
        let target = parts.next().unwrap_or_default().to_owned();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                break;
            }
            if let Some((k, v)) = h.trim_end().split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
            }
        }
        seen.lock().unwrap().push((method, target.clone(), headers));
        let (kind, body) = if target.starts_with("/msi/token") {
            let expires = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs()
                + 3600;
            let token = format!(
                r#"{{"access_token":"mi-token","expires_on":"{expires}","resource":"https://storage.azure.com","token_type":"Bearer"}}"#
            );
            ("application/json", token)
        } else {
            let list = "<?xml version=\"1.0\" encoding=\"utf-8\"?><EnumerationResults>\
                        <Blobs></Blobs><NextMarker></NextMarker></EnumerationResults>";
            ("application/xml", list.to_owned())
        };
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if out.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

#[test]
fn managed_identity_as_app_service_provides_it() {
    let fake = fake_azure();
    let dir = tempfile::tempdir().unwrap();
    let base = format!("http://127.0.0.1:{}", fake.port);
    // What a function app with a user-assigned identity has: the identity
    // endpoint and header that the platform sets, an account name and the
    // identity's client id as app settings, and no key.
    let out = command(dir.path(), "az://hrdata", "")
        .env("AZURE_STORAGE_ACCOUNT_NAME", "hrdataacct")
        .env("AZURE_STORAGE_ENDPOINT", format!("{base}/blob"))
        .env("AZURE_ALLOW_HTTP", "true")
        .env("IDENTITY_ENDPOINT", format!("{base}/msi/token"))
        .env("IDENTITY_HEADER", "platform-secret")
        .env("AZURE_CLIENT_ID", "user-assigned-id")
        .args(["backups", "--json"])
        .output()
        .unwrap();
    assert_eq!(json(out), serde_json::json!([]));

    let seen = fake.seen.lock().unwrap().clone();
    let header = |h: &[(String, String)], name: &str| {
        h.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    };
    let tokens: Vec<&Seen> = seen
        .iter()
        .filter(|r| r.1.starts_with("/msi/token"))
        .collect();
    assert!(!tokens.is_empty(), "no token was asked for: {seen:?}");
    let (method, target, headers) = tokens[0];
    assert_eq!(method, "GET");
    for part in [
        "api-version=2019-08-01",
        "resource=https%3A%2F%2Fstorage.azure.com",
        "client_id=user-assigned-id",
    ] {
        assert!(target.contains(part), "{part} not in {target}");
    }
    assert_eq!(
        header(headers, "x-identity-header").as_deref(),
        Some("platform-secret")
    );
    // Every blob request carries the token, one listing a table.
    let lists: Vec<&Seen> = seen
        .iter()
        .filter(|r| r.1.starts_with("/blob/hrdata"))
        .collect();
    assert_eq!(lists.len(), 3, "{seen:?}");
    for (_, target, headers) in lists {
        assert_eq!(
            header(headers, "authorization").as_deref(),
            Some("Bearer mi-token"),
            "{target}"
        );
    }
}
