//! Azure Blob Storage through Azurite: loads from a container, backups into
//! it, listing, verify and restore; a backup killed midway; Azurite stopped
//! midway. The Python Azure SDK (`tests/blob_client.py`) is the independent
//! client that creates containers, uploads the CSVs and checks what hrmig
//! wrote.
//!
//! Needs Azurite (`HRMIG_AZURITE`, or `.tools/node_modules/.bin/azurite-blob`)
//! and a Python with `azure-storage-blob` and `fastavro` (`HRMIG_PYTHON`);
//! `scripts/test` installs both. Without them the tests say so and are
//! skipped, except under `CI=true`, where they fail.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Azurite's documented development account and key.
const ACCOUNT: &str = "devstoreaccount1";
const KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn connection_string(port: u16) -> String {
    format!(
        "DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};\
         BlobEndpoint=http://127.0.0.1:{port}/{ACCOUNT};"
    )
}

/// What the tests need besides cargo's crates, or `None` (skipped; a
/// failure under CI).
fn tools() -> Option<(PathBuf, String)> {
    let azurite = std::env::var("HRMIG_AZURITE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/node_modules/.bin/azurite-blob")
        });
    let python = std::env::var("HRMIG_PYTHON").unwrap_or_else(|_| "python3".into());
    let sdk = Command::new(&python)
        .args(["-c", "import azure.storage.blob, fastavro"])
        .output()
        .is_ok_and(|o| o.status.success());
    if azurite.is_file() && sdk {
        return Some((azurite, python));
    }
    let why = format!(
        "Azurite at {} {}, azure-storage-blob + fastavro for {python} {} \
         (scripts/test installs both)",
        azurite.display(),
        if azurite.is_file() {
            "found"
        } else {
            "missing"
        },
        if sdk { "found" } else { "missing" },
    );
    assert!(std::env::var("CI").is_err(), "required in CI: {why}");
    eprintln!("\n*** SKIPPED: the Azure Blob tests need {why}\n");
    None
}

/// An Azurite blob service on a free loopback port, in memory, stopped when
/// dropped.
struct Azurite {
    child: Child,
    port: u16,
    python: String,
}

impl Azurite {
    /// Started, with `container` created in it.
    fn with_container(container: &str) -> Option<Azurite> {
        let azurite = Azurite::start()?;
        azurite.client(&["create", container]);
        Some(azurite)
    }

    fn start() -> Option<Azurite> {
        let (azurite, python) = tools()?;
        let port = free_port();
        let child = Command::new(azurite)
            .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
            .args(["--inMemoryPersistence", "--disableTelemetry", "--silent"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "Azurite did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(Azurite {
            child,
            port,
            python,
        })
    }

    /// Runs the independent client against this Azurite; panics on failure.
    fn client(&self, args: &[&str]) -> String {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/blob_client.py");
        let out = Command::new(&self.python)
            .arg(script)
            .args(args)
            .env(
                "AZURE_STORAGE_CONNECTION_STRING",
                connection_string(self.port),
            )
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "blob_client {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Committed blobs of a container: name → size.
    fn blobs(&self, container: &str) -> Vec<(String, u64)> {
        self.client(&["list", container])
            .lines()
            .map(|l| {
                let (name, size) = l.split_once('\t').unwrap();
                (name.to_owned(), size.parse().unwrap())
            })
            .collect()
    }

    /// Uploads `<landing>/<table>.csv` to `landing/<table>.csv` under
    /// `root` (`CONTAINER[/PREFIX]`).
    fn upload_landing(&self, root: &str, landing: &Path, tables: &[&str]) {
        let (container, prefix) = root.split_once('/').unwrap_or((root, ""));
        for t in tables {
            let file = landing.join(format!("{t}.csv"));
            let blob = format!("{prefix}/landing/{t}.csv");
            let blob = blob.trim_start_matches('/');
            self.client(&["upload", container, blob, file.to_str().unwrap()]);
        }
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        self.stop();
    }
}

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

/// Sample CSVs in `dir/landing` (no bad rows when `clean`).
fn generate(dir: &Path, employees: u32, clean: bool) -> PathBuf {
    let landing = dir.join("landing");
    let mut args = vec![
        "gen".to_owned(),
        "--out".into(),
        landing.display().to_string(),
    ];
    args.extend(["--employees".into(), employees.to_string()]);
    if clean {
        args.extend(["--invalid-rate".into(), "0".into()]);
    }
    let o = Command::new(env!("CARGO_BIN_EXE_hrmig"))
        .args(&args)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    landing
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

/// Waits (bounded) until `ready`, failing if `child` ends first.
fn wait_for(child: &mut Child, what: &str, ready: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(180);
    while !ready() {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            panic!("{what}: ended first ({status}): {err}");
        }
        assert!(Instant::now() < deadline, "{what}: never got there");
        std::thread::sleep(Duration::from_millis(10));
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

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn functions_dir() -> PathBuf {
    repo_root().join("functions")
}

/// One function: its folder name and bindings.
struct Function {
    name: String,
    bindings: Vec<serde_json::Value>,
}

impl Function {
    fn trigger(&self) -> &serde_json::Value {
        self.bindings
            .iter()
            .find(|b| b["direction"] == "in")
            .unwrap_or_else(|| panic!("{}: no input binding", self.name))
    }

    /// (method, route) pairs of an HTTP function.
    fn routes(&self) -> Vec<(String, String)> {
        let t = self.trigger();
        let route = t["route"].as_str().unwrap().to_owned();
        t["methods"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| (m.as_str().unwrap().to_uppercase(), route.clone()))
            .collect()
    }
}

/// Every `functions/*/function.json`, checked for the shape the host needs.
fn functions() -> Vec<Function> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(functions_dir()).unwrap() {
        let path = entry.unwrap().path();
        let file = path.join("function.json");
        if !file.is_file() {
            continue;
        }
        let doc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let bindings = doc["bindings"].as_array().cloned().unwrap_or_default();
        out.push(Function { name, bindings });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

fn http_functions() -> Vec<Function> {
    let all = functions();
    let (http, other): (Vec<_>, Vec<_>) = all
        .into_iter()
        .partition(|f| f.trigger()["type"] == "httpTrigger");
    // The host forwards a request as it came only for functions with one
    // httpTrigger in and one http out (enableForwardingHttpRequest).
    for f in &http {
        assert_eq!(f.bindings.len(), 2, "{}", f.name);
        assert_eq!(f.bindings[1]["type"], "http", "{}", f.name);
        assert_eq!(f.bindings[1]["direction"], "out", "{}", f.name);
        assert_eq!(f.trigger()["authLevel"], "function", "{}", f.name);
        assert!(!f.trigger()["route"].as_str().unwrap().starts_with('/'));
    }
    assert_eq!(
        other.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(),
        ["NightlyBackup"]
    );
    http
}

/// `api/` + a function route with its parameters filled in.
fn concrete(route: &str, table: &str) -> String {
    let path = route.replace("{table}", table).replace("{*path}", "");
    assert!(!path.contains('{'), "unfilled parameter in {route}");
    format!("/api/{path}")
}

#[test]
fn host_json_and_settings_are_what_the_host_needs() {
    let host: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo_root().join("host.json")).unwrap())
            .unwrap();
    assert_eq!(host["version"], "2.0");
    let handler = &host["customHandler"];
    assert_eq!(handler["description"]["defaultExecutablePath"], "hrmig");
    assert_eq!(
        handler["description"]["arguments"],
        serde_json::json!(["serve"])
    );
    assert_eq!(handler["enableForwardingHttpRequest"], true);
    assert_eq!(host["extensions"]["http"]["routePrefix"], "api");
    // HTTP and timer triggers are built in: no bundle to download at start.
    assert!(host.get("extensionBundle").is_none());

    let settings: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("local.settings.json")).unwrap(),
    )
    .unwrap();
    let values = settings["Values"].as_object().unwrap();
    assert_eq!(values["FUNCTIONS_WORKER_RUNTIME"], "custom");
    assert_eq!(values["AzureWebJobsStorage"], "UseDevelopmentStorage=true");
    // The timer's schedule is an app setting: a 6-field NCRONTAB expression.
    let timer = functions()
        .into_iter()
        .find(|f| f.name == "NightlyBackup")
        .unwrap();
    let trigger = timer.trigger();
    assert_eq!(trigger["type"], "timerTrigger");
    let setting = trigger["schedule"].as_str().unwrap();
    let key = setting.trim_matches('%');
    assert_eq!(
        setting,
        format!("%{key}%"),
        "schedule comes from an app setting"
    );
    let schedule = values[key].as_str().unwrap();
    assert_eq!(schedule.split_whitespace().count(), 6, "{schedule}");
    // No secrets: nothing that looks like an account key or password.
    for (k, v) in values {
        let v = v.as_str().unwrap_or_default();
        assert!(
            !v.contains("AccountKey=") && !v.contains("Password="),
            "{k}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_function_route_is_served_and_every_api_route_has_a_function() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("hr.db").display());
    let state = hrmig::http::AppState {
        store: Arc::new(hrmig::store::Store::open(&url).await.unwrap()),
        storage: hrmig::storage::Storage::open(dir.path().join("s").to_str().unwrap()).unwrap(),
        keys: Arc::new(hrmig::http::Keys::default()),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(hrmig::http::serve(
        listener,
        hrmig::http::functions_router(state.clone()),
        std::future::pending(),
    ));
    let client = reqwest::Client::new();

    // A standalone server has no host routes: no unauthenticated backups.
    let plain = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let plain_base = format!("http://{}", plain.local_addr().unwrap());
    tokio::spawn(hrmig::http::serve(
        plain,
        hrmig::http::router(state),
        std::future::pending(),
    ));
    let r = client
        .post(format!("{plain_base}/NightlyBackup"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.text().await.unwrap().contains("no such route"));
    let http = http_functions();
    assert!(!http.is_empty());
    for f in &http {
        for (method, route) in f.routes() {
            let path = concrete(&route, "departments");
            let r = client
                .request(method.parse().unwrap(), format!("{base}{path}"))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let body = r.text().await.unwrap();
            assert_ne!(status, 405, "{}: {method} {path}", f.name);
            assert!(
                !body.contains("no such route"),
                "{}: {method} {path} is not served: {status} {body}",
                f.name
            );
        }
    }
    // The router's own fallback, so the check above can fail.
    let r = client
        .get(format!("{base}/api/nothing/here"))
        .send()
        .await
        .unwrap();
    assert!(r.text().await.unwrap().contains("no such route"));

    // Every operation of the OpenAPI document has a function.
    let doc = serde_json::to_value(hrmig::http::openapi::document()).unwrap();
    let covered: std::collections::BTreeSet<(String, String)> = http
        .iter()
        .flat_map(|f| f.routes())
        .map(|(m, r)| (m, format!("/api/{r}")))
        .collect();
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let key = (method.to_uppercase(), path.clone());
            assert!(covered.contains(&key), "no function for {key:?}");
            operations += 1;
        }
    }
    assert!(operations >= 10, "{operations}");
}

/// A minimal HTTP/1.1 exchange, as the host's forwarding sends it.
fn forward(port: u16, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let invocation = uuid::Uuid::new_v4();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\
         User-Agent: Azure-Functions-Host/4.1037.1.1\r\n\
         X-Azure-Functions-HostVersion: 4.1037.1.1\r\n\
         X-Azure-Functions-InvocationId: {invocation}\r\n\
         x-functions-key: a-function-key\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Unzips `zip` into `dir` with the file modes it records (Python's
/// zipfile, which the packaging command also uses).
fn unzip(zip: &Path, dir: &Path) {
    let script = "import os,sys,zipfile\n\
        z=zipfile.ZipFile(sys.argv[1])\n\
        for i in z.infolist():\n\
        \x20   p=z.extract(i, sys.argv[2])\n\
        \x20   m=(i.external_attr>>16)&0o777\n\
        \x20   os.chmod(p, m) if m else None\n";
    let o = Command::new("python3")
        .args(["-c", script, zip.to_str().unwrap(), dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// The files below `dir`, as paths relative to it, sorted.
fn files_below(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else {
                let rel = path.strip_prefix(dir).unwrap();
                out.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn the_checkout_has_the_design_cards_layout() {
    let root = repo_root();
    for top in [
        "Cargo.toml",
        "host.json",
        "local.settings.json",
        "functions",
        "src",
        "migrations",
        "tests",
        "README.md",
    ] {
        assert!(root.join(top).exists(), "{top} missing at the root");
    }
    // functions/ holds one folder per function and nothing else.
    let mut expected: Vec<String> = functions()
        .iter()
        .map(|f| format!("{}/function.json", f.name))
        .collect();
    expected.sort();
    assert_eq!(files_below(&functions_dir()), expected);
    assert!(expected.len() > 10, "{expected:?}");
}

#[test]
fn a_function_app_folder_is_laid_out_for_core_tools() {
    let work = tempfile::tempdir().unwrap();
    let app = work.path().join("app");
    let package = |dir: &Path| {
        Command::new(repo_root().join("scripts/package"))
            .args(["--binary", env!("CARGO_BIN_EXE_hrmig"), "--dir"])
            .arg(dir)
            .output()
            .unwrap()
    };
    let o = package(&app);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut expected = vec![
        ".hrmig-app".to_owned(),
        "host.json".to_owned(),
        "hrmig".to_owned(),
        "local.settings.json".to_owned(),
    ];
    expected.extend(
        functions()
            .iter()
            .map(|f| format!("{}/function.json", f.name)),
    );
    expected.sort();
    assert_eq!(files_below(&app), expected);
    for name in ["host.json", "local.settings.json"] {
        assert_eq!(
            std::fs::read(app.join(name)).unwrap(),
            std::fs::read(repo_root().join(name)).unwrap(),
            "{name}"
        );
    }
    let version = Command::new(app.join("hrmig"))
        .arg("--version")
        .current_dir(&app)
        .output()
        .unwrap();
    assert!(version.status.success());

    // Laid out again over its own folder: replaced; over any other: refused.
    std::fs::write(app.join("stale.txt"), "x").unwrap();
    assert!(package(&app).status.success());
    assert!(!app.join("stale.txt").exists());
    let other = work.path().join("mine");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("keep.txt"), "x").unwrap();
    let o = package(&other);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("was not laid out by scripts/package"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(other.join("keep.txt").exists());
}

#[test]
fn the_packaged_handler_serves_every_function_as_the_host_calls_it() {
    let Some(mut azurite) = Azurite::start() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();

    // The packaging command, on the binary under test.
    let zip = work.path().join("app.zip");
    let o = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/package"))
        .args([
            "--binary",
            env!("CARGO_BIN_EXE_hrmig"),
            "--out",
            zip.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let app = work.path().join("app");
    unzip(&zip, &app);
    let mut expected = vec!["hrmig".to_owned(), "host.json".to_owned()];
    expected.extend(
        functions()
            .iter()
            .map(|f| format!("{}/function.json", f.name)),
    );
    for name in &expected {
        assert!(app.join(name).is_file(), "{name} missing from the zip");
    }
    assert!(
        !app.join("local.settings.json").exists(),
        "local settings are not deployed"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(app.join("hrmig"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o111,
        0o111,
        "the handler is not executable: {mode:o}"
    );

    // Started the way the host starts it: from the app folder, with
    // host.json's executable and arguments, the app settings of
    // local.settings.json, and the port in FUNCTIONS_CUSTOMHANDLER_PORT.
    let host: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(app.join("host.json")).unwrap()).unwrap();
    let description = &host["customHandler"]["description"];
    let settings: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("local.settings.json")).unwrap(),
    )
    .unwrap();
    let values = settings["Values"].as_object().unwrap();
    let container = values["HRMIG_STORAGE_URL"]
        .as_str()
        .unwrap()
        .strip_prefix("az://")
        .unwrap()
        .to_owned();
    azurite.client(&["create", &container]);
    let port = free_port();
    let mut handler =
        Command::new(app.join(description["defaultExecutablePath"].as_str().unwrap()));
    for (key, _) in std::env::vars() {
        if key.starts_with("AZURE") || key.starts_with("HRMIG_") || key.starts_with("FUNCTIONS_") {
            handler.env_remove(key);
        }
    }
    for (k, v) in values {
        handler.env(k, v.as_str().unwrap());
    }
    let started = Instant::now();
    let mut handler = handler
        .args(
            description["arguments"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap()),
        )
        .current_dir(&app)
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
        // UseDevelopmentStorage=true means Azurite; this one is on its own port.
        .env(
            "AZURITE_BLOB_STORAGE_URL",
            format!("http://127.0.0.1:{}", azurite.port),
        )
        .env("HRMIG_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The host's readiness probe: GET / until any answer.
    wait_for(&mut handler, "handler start", || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    assert_eq!(forward(port, "GET", "/", "").0, 200);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );

    // Landing files for the load, put there by another client.
    let landing = generate(work.path(), 500, false);
    azurite.upload_landing(&container, &landing, &TABLES);

    // Every HTTP function, in an order where each finds what it needs.
    let employee = r#"{"id":900001,"name":"Ada","datetime":"2021-05-01T00:00:00Z","department_id":1,"job_id":1}"#;
    let calls: &[(&str, &str, &str, &str, &str)] = &[
        ("Health", "GET", "departments", "", r#""database":"ok""#),
        (
            "StartLoad",
            "POST",
            "departments",
            "{}",
            r#""status":"loaded""#,
        ),
        ("ListLoads", "GET", "departments", "", "hired_employees"),
        ("ListTables", "GET", "departments", "", "hired_employees"),
        (
            "IngestRows",
            "POST",
            "departments",
            r#"[{"id":99,"department":"Research"}]"#,
            r#""inserted":1"#,
        ),
        ("ReadRows", "GET", "departments", "", "Research"),
        (
            "IngestBatch",
            "POST",
            "departments",
            &format!(r#"{{"hired_employees":[{employee}]}}"#),
            r#""inserted":1"#,
        ),
        (
            "ListRejections",
            "GET",
            "departments",
            "",
            "hired_employees",
        ),
        (
            "CreateBackups",
            "POST",
            "departments",
            r#"{"tables":["departments"]}"#,
            r#""table":"departments""#,
        ),
        ("ListBackups", "GET", "departments", "", "departments-"),
        ("VerifyBackup", "POST", "departments", "{}", r#""ok":true"#),
        (
            "RestoreTable",
            "POST",
            "departments",
            "{}",
            r#""backup":"departments-"#,
        ),
        ("ReportHiresByQuarter", "GET", "departments", "", r#""q1""#),
        (
            "ReportDepartmentsAboveMean",
            "GET",
            "departments",
            "",
            r#""hired""#,
        ),
        ("OpenApi", "GET", "departments", "", r#""openapi""#),
        ("ApiDocs", "GET", "departments", "", "<html"),
    ];
    let http = http_functions();
    let named: Vec<&str> = calls.iter().map(|c| c.0).collect();
    let mut all: Vec<&str> = http.iter().map(|f| f.name.as_str()).collect();
    all.sort();
    let mut sorted = named.clone();
    sorted.sort();
    assert_eq!(sorted, all, "every HTTP function is called once");
    for (name, method, table, body, expect) in calls {
        let f = http.iter().find(|f| f.name == *name).unwrap();
        let (m, route) = f.routes().into_iter().find(|(m, _)| m == method).unwrap();
        let mut path = concrete(&route, table);
        if name.starts_with("Report") {
            path.push_str("?year=2021");
        }
        // The function key the caller gave travels on with the request.
        path.push_str(if path.contains('?') { "&" } else { "?" });
        path.push_str("code=a-function-key");
        let (status, text) = forward(port, &m, &path, body);
        assert_eq!(status, 200, "{name}: {m} {path}: {text}");
        assert!(text.contains(expect), "{name}: {expect:?} not in {text}");
    }

    // The timer, as the host invokes it: the JSON payload on /NightlyBackup.
    let timer = functions()
        .into_iter()
        .find(|f| f.name == "NightlyBackup")
        .unwrap();
    let binding = timer.trigger()["name"].as_str().unwrap().to_owned();
    let payload = serde_json::json!({
        "Data": { binding: {
            "Schedule": { "AdjustForDST": true },
            "ScheduleStatus": {
                "Last": "2026-11-27T02:00:00+00:00",
                "Next": "2026-11-29T02:00:00+00:00",
                "LastUpdated": "2026-11-27T02:00:00+00:00"
            },
            "IsPastDue": true
        }},
        "Metadata": { "sys": {
            "MethodName": "NightlyBackup",
            "UtcNow": "2026-11-28T02:00:00.0123456Z",
            "RandGuid": "5f0d6d2e-7b7c-4b5a-9a53-0b9b7c6f1d2e"
        }}
    });
    let (status, text) = forward(port, "POST", "/NightlyBackup", &payload.to_string());
    assert_eq!(status, 200, "{text}");
    let answer: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(answer["Outputs"].is_object(), "{answer}");
    let backups = answer["ReturnValue"]["backups"].as_array().unwrap();
    assert_eq!(backups.len(), 3, "{answer}");
    let logs = answer["Logs"].as_array().unwrap();
    assert!(
        logs.iter()
            .any(|l| l.as_str().unwrap().contains("past due")),
        "{answer}"
    );
    let blobs = azurite.blobs(&container);
    for b in backups {
        let (table, name) = (b["table"].as_str().unwrap(), b["backup"].as_str().unwrap());
        let avro = format!("backups/{table}/{name}.avro");
        assert!(
            blobs
                .iter()
                .any(|(n, s)| *n == avro && Some(*s) == b["bytes"].as_u64()),
            "{avro}: {blobs:?}"
        );
    }
    // A payload that is not an invocation: a failed invocation.
    assert_eq!(forward(port, "POST", "/NightlyBackup", "[1]").0, 400);

    // Storage gone: the timer fails (non-2xx, Logs say why), the API says
    // 503 storage_unavailable, and the database is untouched.
    azurite.stop();
    let (status, text) = forward(port, "POST", "/NightlyBackup", &payload.to_string());
    assert_eq!(status, 500, "{text}");
    let answer: serde_json::Value = serde_json::from_str(&text).unwrap();
    let logs = answer["Logs"].as_array().unwrap();
    assert!(
        logs.iter().any(|l| l
            .as_str()
            .unwrap()
            .starts_with("backup of departments failed: az://hrmig/backups/departments/")),
        "{answer}"
    );
    let (status, text) = forward(port, "POST", "/api/backups", "{}");
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("storage_unavailable"), "{text}");
    let (status, text) = forward(port, "POST", "/api/loads", "{}");
    assert_eq!(status, 503, "{text}");
    let (status, text) = forward(port, "GET", "/api/tables/departments/rows", "");
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("Research"));

    // The host stops the handler with SIGTERM.
    Command::new("kill")
        .args(["-TERM", &handler.id().to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while handler.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the handler did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One request seen by [`FakeAzure`]: method, target, lowercased headers.
type Seen = (String, String, Vec<(String, String)>);

/// A stand-in for two Azure endpoints on loopback: App Service's managed
/// identity endpoint (`/msi/token`) and a blob service (`/blob/…`) whose
/// containers are all empty. It records every request.
struct FakeAzure {
    port: u16,
    seen: Arc<std::sync::Mutex<Vec<Seen>>>,
    closed: Arc<AtomicBool>,
}

impl FakeAzure {
    fn start() -> FakeAzure {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let fake = FakeAzure {
            port: listener.local_addr().unwrap().port(),
            seen: Arc::default(),
            closed: Arc::default(),
        };
        let (seen, closed) = (fake.seen.clone(), fake.closed.clone());
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(120);
            while !closed.load(Ordering::Relaxed) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let seen = seen.clone();
                        std::thread::spawn(move || serve_fake(conn, seen));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        fake
    }
}

impl Drop for FakeAzure {
    fn drop(&mut self) {
        self.closed.store(true, Ordering::Relaxed);
    }
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
    let fake = FakeAzure::start();
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
