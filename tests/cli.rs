//! The `hrmig` binary as a user runs it: exit codes, output formats, and a
//! load killed midway.

use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn hrmig(dir: &Path, args: &[&str]) -> Output {
    hrmig_logging(dir, "warn", args)
}

/// `hrmig ARGS` in `dir` with text logs filtered by `log`.
fn hrmig_logging(dir: &Path, log: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hrmig"))
        .current_dir(dir)
        .env_remove("HRMIG_DATABASE_URL")
        .env_remove("HRMIG_STORAGE_URL")
        .env_remove("HRMIG_LOG_FORMAT")
        .env("HRMIG_LOG", log)
        .args(args)
        .output()
        .unwrap()
}

/// `hrmig gen` of `employees` rows (and the other tables) into
/// `storage/landing`, with `more` flags.
fn generate(dir: &Path, employees: u64, more: &[&str]) {
    let n = employees.to_string();
    let mut args = vec!["gen", "--out", "storage/landing", "--employees", &n];
    args.extend(more);
    let o = hrmig(dir, &args);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// One JSON object a line, as `--json` prints reports.
fn json_lines(o: &Output) -> Vec<serde_json::Value> {
    stdout(o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn count(db: &Path, table: &str) -> i64 {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

#[test]
fn schema_prints_the_migration_of_each_dialect() {
    let dir = tempfile::tempdir().unwrap();
    for d in ["sqlite", "postgres", "mssql"] {
        let out = hrmig(dir.path(), &["schema", "--dialect", d]);
        assert!(out.status.success());
        let file =
            Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("migrations/{d}/0001_init.sql"));
        assert_eq!(stdout(&out), std::fs::read_to_string(file).unwrap());
    }
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["load", "employees"][..],
        &["gen"],
        &["gen", "--out", "x", "--invalid-rate", "2"],
        &["gen", "--out", "az://hrdata/landing"],
        &["schema", "--dialect", "oracle"],
        &["rejections", "--format", "xml"],
        &["frobnicate"],
    ] {
        let out = hrmig(dir.path(), args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn missing_file_exits_1_naming_it_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let land = dir.path().join("storage/landing");
    std::fs::create_dir_all(&land).unwrap();
    std::fs::write(land.join("departments.csv"), "1,Sales\n").unwrap();
    let out = hrmig(dir.path(), &["load"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("jobs.csv") && err.contains("does not exist"),
        "{err}"
    );
    assert_eq!(count(&dir.path().join("hrmig.db"), "departments"), 0);
    // An unopenable database is a failure too, with the reason.
    let out = hrmig(
        dir.path(),
        &["load", "--database", "sqlite:///no/such/dir/x.db"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("cannot open database"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn gen_is_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    for (out, seed) in [("a", "5"), ("b", "5"), ("c", "6")] {
        let o = hrmig(
            dir.path(),
            &["gen", "--out", out, "--employees", "3000", "--seed", seed],
        );
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let read = |d: &str| std::fs::read(dir.path().join(d).join("hired_employees.csv")).unwrap();
    assert_eq!(read("a"), read("b"));
    assert_ne!(read("a"), read("c"));
    assert_eq!(read("a").iter().filter(|b| **b == b'\n').count(), 3000);
    let jobs = std::fs::read_to_string(dir.path().join("a/jobs.csv")).unwrap();
    assert_eq!(jobs.lines().count(), 183);
}

#[test]
fn load_json_and_rejection_formats() {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path(), 500, &[]);
    let o = hrmig(dir.path(), &["load", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let reports = json_lines(&o);
    assert_eq!(reports.len(), 3);
    let emp = &reports[2];
    assert_eq!(emp["table"], "hired_employees");
    assert_eq!(emp["status"], "loaded");
    for key in [
        "source",
        "rows_read",
        "inserted",
        "rejected",
        "blank",
        "seconds",
    ] {
        assert!(emp.get(key).is_some(), "no {key} in {emp}");
    }
    let rejected = emp["rejected"].as_u64().unwrap();
    assert!(rejected > 0);
    assert_eq!(
        emp["rows_read"].as_u64().unwrap(),
        emp["inserted"].as_u64().unwrap() + rejected
    );

    let o = hrmig(
        dir.path(),
        &["rejections", "--format", "json", "--limit", "1000"],
    );
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(rows.len() as u64, rejected);
    for key in [
        "id",
        "table",
        "source",
        "position",
        "raw",
        "errors",
        "rejected_at",
    ] {
        assert!(rows[0].get(key).is_some(), "no {key} in {}", rows[0]);
    }
    let o = hrmig(
        dir.path(),
        &[
            "rejections",
            "--format",
            "csv",
            "--table",
            "hired_employees",
        ],
    );
    let mut csv = csv::Reader::from_reader(o.stdout.as_slice());
    assert_eq!(csv.headers().unwrap().len(), 9);
    assert_eq!(&csv.headers().unwrap()[7], "status");
    assert_eq!(csv.records().count() as u64, rejected.min(100));
    let o = hrmig(dir.path(), &["rejections", "--table", "jobs"]);
    assert_eq!(
        stdout(&o).lines().count(),
        1,
        "only the header: jobs had no rejections"
    );

    let o = hrmig(dir.path(), &["load"]);
    assert!(
        stdout(&o).matches("already_loaded").count() == 3,
        "{}",
        stdout(&o)
    );
}

#[test]
fn a_file_that_is_not_its_tables_csv_exits_1_and_is_not_marked_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let land = dir.path().join("storage/landing");
    std::fs::create_dir_all(&land).unwrap();
    std::fs::write(land.join("departments.csv"), "1,Sales\n").unwrap();
    std::fs::write(land.join("jobs.csv"), "1;Engineer\n2;Analyst\n").unwrap();
    let mut gzip = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03".to_vec();
    gzip.extend(b"\x33\xd4\x71\xcc\xcb\x53\xf0\x49\x4d\xe5\x02\x00");
    std::fs::write(land.join("hired_employees.csv"), gzip).unwrap();
    for run in 0..2 {
        let o = hrmig(dir.path(), &["load", "--json"]);
        assert_eq!(o.status.code(), Some(1), "run {run}: {}", stderr(&o));
        let reports = json_lines(&o);
        let status: Vec<&str> = reports
            .iter()
            .map(|r| r["status"].as_str().unwrap())
            .collect();
        let first = if run == 0 { "loaded" } else { "already_loaded" };
        assert_eq!(status, vec![first, "aborted", "aborted"], "run {run}");
        assert_eq!(
            reports[1]["message"],
            "not a CSV of jobs: none of its first 2 records has the 2 fields of a jobs row; \
             check its delimiter"
        );
        assert!(
            reports[2]["message"]
                .as_str()
                .unwrap()
                .contains("it starts like a gzip file"),
            "{}",
            reports[2]
        );
    }
    let db = dir.path().join("hrmig.db");
    assert_eq!(count(&db, "jobs"), 0);
    assert_eq!(count(&db, "hrmig_rejections"), 0);
    let conn = rusqlite::Connection::open(&db).unwrap();
    let aborted: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM hrmig_loads WHERE status = 'aborted' AND message LIKE 'not a CSV of %'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(aborted, 4);
}

#[test]
fn demo_writes_samples_loads_them_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let o = hrmig(dir.path(), &["demo", "--employees", "1000"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("hired_employees") && out.contains("loaded"),
        "{out}"
    );
    assert!(
        dir.path()
            .join("storage/landing/hired_employees.csv")
            .is_file()
    );
    let o = hrmig(dir.path(), &["demo"]);
    assert_eq!(
        stdout(&o).matches("already_loaded").count(),
        3,
        "{}",
        stdout(&o)
    );
}

#[test]
fn a_load_killed_midway_leaves_the_database_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path(), 1_500_000, &[]);
    let o = hrmig(dir.path(), &["load", "departments", "jobs"]);
    assert!(o.status.success());
    let db = dir.path().join("hrmig.db");
    let wal = dir.path().join("hrmig.db-wal");
    let wal_before = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);

    let mut child = Command::new(env!("CARGO_BIN_EXE_hrmig"))
        .current_dir(dir.path())
        .env("HRMIG_LOG", "error")
        .args(["load", "hired_employees"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill once the load's transaction has clearly started writing.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let size = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        if size > wal_before + (8 << 20) {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the load finished before it could be killed"
        );
        assert!(Instant::now() < deadline, "the load never started writing");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    assert_eq!(count(&db, "hired_employees"), 0);
    assert_eq!(count(&db, "hrmig_rejections"), 0);
    assert_eq!(count(&db, "hrmig_loads"), 2);
    let o = hrmig(dir.path(), &["load", "--json", "hired_employees"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(report["status"], "loaded");
    assert_eq!(report["rows_read"], 1_500_000);
    assert_eq!(
        count(&db, "hired_employees"),
        report["inserted"].as_i64().unwrap()
    );
    // At exit the write-ahead log is copied into the database file: the
    // `.db` file alone holds the load.
    assert_eq!(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0), 0);
}

/// Count, id sum and a digest of the names: enough to see any change.
fn fingerprint(db: &Path) -> (i64, i64, String) {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row(
        "SELECT COUNT(*), COALESCE(SUM(id), 0), COALESCE(MAX(name || datetime), '') FROM hired_employees",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
    .unwrap()
}

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Starts `hrmig args…` and SIGKILLs it once `ready` holds (checked every
/// 10 ms); fails if it ends first.
fn kill_when(dir: &Path, args: &[&str], ready: impl Fn() -> bool) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hrmig"))
        .current_dir(dir)
        .env("HRMIG_LOG", "error")
        .args(args)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !ready() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "{args:?} finished before it could be killed"
        );
        assert!(Instant::now() < deadline, "{args:?} never got there");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
}

#[test]
fn a_backup_or_restore_killed_midway_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path(), 1_000_000, &["--invalid-rate", "0"]);
    assert!(hrmig(dir.path(), &["load"]).status.success());
    let o = hrmig(
        dir.path(),
        &["backup", "hired_employees", "--codec", "null", "--json"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let first: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    let folder = dir.path().join("storage/backups/hired_employees");
    let before = files(&folder);

    // A backup killed while it writes: no new file under a backup name.
    kill_when(
        dir.path(),
        &["backup", "hired_employees", "--codec", "null"],
        || {
            files(&folder).iter().any(|f| f.ends_with(".partial"))
                && std::fs::read_dir(&folder).unwrap().flatten().any(|e| {
                    e.file_name().to_string_lossy().ends_with(".partial")
                        && e.metadata().map(|m| m.len() > 1 << 20).unwrap_or(false)
                })
        },
    );
    let after: Vec<String> = files(&folder)
        .into_iter()
        .filter(|f| !f.ends_with(".partial"))
        .collect();
    assert_eq!(
        after, before,
        "a killed backup left a file under a backup name"
    );
    let o = hrmig(dir.path(), &["verify", "hired_employees"]);
    assert!(o.status.success(), "{}", stderr(&o));

    // A restore killed while it writes: the table as it was; then it completes.
    let db = dir.path().join("hrmig.db");
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch("DELETE FROM hired_employees WHERE id % 2 = 0")
        .unwrap();
    drop(c);
    let changed = fingerprint(&db);
    let wal = dir.path().join("hrmig.db-wal");
    let wal_before = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    kill_when(dir.path(), &["restore", "hired_employees"], || {
        std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0) > wal_before + (8 << 20)
    });
    assert_eq!(
        fingerprint(&db),
        changed,
        "a killed restore changed the table"
    );
    let o = hrmig(dir.path(), &["restore", "hired_employees", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let done: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(done["backup"], first["backup"]);
    assert_eq!(count(&db, "hired_employees"), 1_000_000);
}

#[test]
fn reports_and_json_logs() {
    let dir = tempfile::tempdir().unwrap();
    let land = dir.path().join("storage/landing");
    std::fs::create_dir_all(&land).unwrap();
    std::fs::write(land.join("departments.csv"), "1,Sales\n2,Legal\n3,Ops\n").unwrap();
    std::fs::write(land.join("jobs.csv"), "1,Engineer\n2,Analyst\n").unwrap();
    std::fs::write(
        land.join("hired_employees.csv"),
        "1,A,2021-01-01T00:00:00Z,1,1\n2,B,2021-04-01T00:00:00Z,1,2\n3,C,2021-12-01T00:00:00Z,2,1\n\
         4,D,2022-01-01T00:00:00Z,3,1\n5,,2021-01-01T00:00:00Z,1,1\n6,F,2021-05-05T00:00:00Z,1,1\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hrmig"))
        .current_dir(dir.path())
        .env("HRMIG_LOG", "info")
        .env("HRMIG_LOG_FORMAT", "json")
        .args(["load"])
        .output()
        .unwrap();
    assert!(out.status.success());
    // Every log line is one JSON object; the rejection is one of them.
    let events: Vec<serde_json::Value> = stderr(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let rejection = events
        .iter()
        .find(|e| e["target"] == "hrmig::rejection")
        .unwrap();
    assert_eq!(rejection["position"], 5);
    assert_eq!(rejection["codes"], "missing");

    let o = hrmig(
        dir.path(),
        &["report", "hires-by-quarter", "--format", "csv"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "department,job,q1,q2,q3,q4\nLegal,Engineer,0,0,0,1\nSales,Analyst,0,1,0,0\nSales,Engineer,1,1,0,0\n"
    );
    let o = hrmig(
        dir.path(),
        &[
            "report",
            "departments-above-mean",
            "--format",
            "json",
            "--year",
            "2021",
        ],
    );
    let rows: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        rows,
        serde_json::json!([{"id": 1, "department": "Sales", "hired": 3}])
    );
    let o = hrmig(
        dir.path(),
        &["report", "departments-above-mean", "--year", "2022"],
    );
    assert!(stdout(&o).contains("Ops"), "{}", stdout(&o));
    assert_eq!(
        hrmig(dir.path(), &["report", "nope"]).status.code(),
        Some(2)
    );
    assert_eq!(
        hrmig(dir.path(), &["report", "hires-by-quarter", "--year", "0"])
            .status
            .code(),
        Some(2)
    );
}

fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

#[test]
fn serve_takes_the_functions_port_and_stops_on_sigterm() {
    serve_on_the_port_of("FUNCTIONS_CUSTOMHANDLER_PORT");
}

#[test]
fn serve_falls_back_to_the_older_port_variable() {
    serve_on_the_port_of("FUNCTIONS_HTTPWORKER_PORT");
}

fn serve_on_the_port_of(variable: &str) {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_hrmig"))
        .current_dir(dir.path())
        .env("HRMIG_LOG", "warn")
        .env_remove("FUNCTIONS_CUSTOMHANDLER_PORT")
        .env_remove("FUNCTIONS_HTTPWORKER_PORT")
        .env(variable, port.to_string())
        .args(["serve", "--listen", "127.0.0.1:1"])
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let health = loop {
        if let Some(r) = http_get(port, "/api/health") {
            break r;
        }
        assert!(child.try_wait().unwrap().is_none(), "serve exited early");
        assert!(
            Instant::now() < deadline,
            "serve never answered on the Functions port"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(
        health.contains(r#"{"status":"ok","database":"ok"}"#),
        "{health}"
    );
    // The host's readiness probe.
    let probe = http_get(port, "/").unwrap();
    assert!(probe.starts_with("HTTP/1.1 200"), "{probe}");
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "serve did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    assert!(http_get(port, "/api/health").is_none());
}

#[test]
fn a_sql_server_that_refuses_connections_is_named_within_seconds() {
    let dir = tempfile::tempdir().unwrap();
    // A port nothing listens on: the bound socket is dropped at once.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("mssql://hrmig:s3cret@127.0.0.1:{port}/hr");
    let started = Instant::now();
    let out = hrmig(dir.path(), &["--database", &url, "rejections"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    // The retries of a transient failure (about 6 s), not the pool's
    // timeout per try, and the cause rather than "timed out".
    assert!(started.elapsed() < Duration::from_secs(20), "{err}");
    assert!(err.contains("Connection refused"), "{err}");
    assert!(err.contains("database is unavailable"), "{err}");
    assert!(!err.contains("s3cret"), "{err}");
}

#[test]
fn a_driver_error_says_each_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let url = "sqlite:///nonexistent-dir-of-hrmig/x.db";
    let out = hrmig(dir.path(), &["--database", url, "rejections"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.matches("does not exist").count(), 1, "{err}");
    assert!(err.contains("unable to open database file"), "{err}");
}

#[test]
fn text_logs_summarise_rejections_per_file_instead_of_a_line_per_row() {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path(), 2000, &[]);
    let out = hrmig_logging(dir.path(), "info", &["load"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rejected = count(&dir.path().join("hrmig.db"), "hrmig_rejections");
    assert!(rejected > 10, "{rejected}");
    assert!(!stderr(&out).contains("row rejected"), "{}", stderr(&out));
    // Counted per code as the log holds them (a row under each of its codes).
    let conn = rusqlite::Connection::open(dir.path().join("hrmig.db")).unwrap();
    let per_code = "SELECT code, COUNT(*) FROM (SELECT DISTINCT r.id, e.value ->> 'code' AS code
                    FROM hrmig_rejections r, json_each(r.errors) e
                    WHERE r.table_name = 'hired_employees') GROUP BY code";
    let mut st = conn.prepare(per_code).unwrap();
    let counts: HashSet<String> = (st.query_map([], |r| {
        Ok(format!(
            "{} {}",
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?
        ))
    }))
    .unwrap()
    .map(Result::unwrap)
    .collect();
    assert!(!counts.is_empty());
    let line = (stdout(&out).lines())
        .find(|l| l.starts_with("hired_employees: "))
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("{}", stdout(&out)));
    let start = format!("hired_employees: {rejected} rows rejected (");
    let end = "), each with its reasons: hrmig rejections --table hired_employees";
    let listed = (line.strip_prefix(&start))
        .and_then(|rest| rest.strip_suffix(end))
        .unwrap_or_else(|| panic!("{line}"));
    let listed: HashSet<String> = listed.split(", ").map(str::to_owned).collect();
    assert_eq!(listed, counts, "{line}");
}

#[test]
fn a_missing_load_folder_is_named_and_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no/such/folder");
    let out = hrmig(dir.path(), &["load", "--from", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("{}: no such folder", missing.display())),
        "{err}"
    );
    assert!(!dir.path().join("no").exists(), "the folder was created");
}

#[test]
fn backups_prune_keeps_the_newest_and_refuses_keep_0() {
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..3 {
        let o = hrmig(dir.path(), &["backup", "jobs", "--json"]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let names = |dir: &Path| {
        let o = hrmig(dir, &["backups", "jobs", "--json"]);
        assert!(o.status.success(), "{}", stderr(&o));
        let all: Vec<serde_json::Value> = serde_json::from_str(&stdout(&o)).unwrap();
        all.iter()
            .map(|m| m["backup"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let before = names(dir.path());
    assert_eq!(before.len(), 3);
    // Refused, with nothing removed: keep 0, a table that does not exist,
    // no --keep at all.
    for (args, expect) in [
        (
            &["backups", "prune", "--keep", "0"][..],
            "keep must be 1 or more",
        ),
        (
            &["backups", "prune", "nope", "--keep", "1"][..],
            "invalid value 'nope'",
        ),
        (&["backups", "prune"][..], "--keep"),
    ] {
        let o = hrmig(dir.path(), args);
        assert!(!o.status.success(), "{args:?}");
        assert!(stderr(&o).contains(expect), "{args:?}: {}", stderr(&o));
    }
    assert_eq!(names(dir.path()), before);
    let o = hrmig(dir.path(), &["backups", "prune", "jobs", "--keep", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains(&format!(
            "jobs: removed {}, {}, 1 kept",
            before[0], before[1]
        )),
        "{text}"
    );
    assert_eq!(names(dir.path()), before[2..]);
    let o = hrmig(dir.path(), &["backups", "prune", "--keep", "1", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let lines = json_lines(&o);
    assert_eq!(lines.len(), 3);
    assert!(lines.iter().all(|p| p["removed"] == serde_json::json!([])));
    assert_eq!(lines[1]["kept"], 1);
}

#[test]
fn load_dry_run_reports_what_a_load_would_do_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path(), 500, &["--seed", "3"]);
    let o = hrmig(dir.path(), &["load", "--dry-run", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let dry = json_lines(&o);
    assert!(dry.iter().all(|r| r["dry_run"] == true), "{dry:?}");
    let db = dir.path().join("hrmig.db");
    for table in ["departments", "jobs", "hired_employees"] {
        assert_eq!(count(&db, table), 0, "{table}");
    }
    let rejected = dry[2]["rejected"].as_u64().unwrap();
    assert!(rejected > 0);
    let shown = dry[2]["rejections"].as_array().unwrap();
    assert_eq!(shown.len() as u64, rejected.min(100));
    assert!(shown[0]["errors"][0]["code"].is_string(), "{}", shown[0]);
    // Text: the first reasons, and that nothing was written.
    let o = hrmig(dir.path(), &["load", "--dry-run"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("dry run: nothing was written"), "{text}");
    assert!(
        text.contains(&format!("hired_employees line {}", shown[0]["line"])),
        "{text}"
    );
    // The real load does what the dry run said.
    let o = hrmig(dir.path(), &["load", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let real = json_lines(&o);
    for (d, r) in dry.iter().zip(&real) {
        assert_eq!(
            (&d["inserted"], &d["rejected"]),
            (&r["inserted"], &r["rejected"])
        );
        assert!(
            r.get("dry_run").is_none() && r.get("rejections").is_none(),
            "{r}"
        );
    }
    assert_eq!(
        count(&db, "hired_employees") as u64,
        real[2]["inserted"].as_u64().unwrap()
    );
}

#[test]
fn loads_lists_the_history_with_ids_newest_first() {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path(), 50, &[]);
    assert!(hrmig(dir.path(), &["load"]).status.success());
    let o = hrmig(dir.path(), &["loads", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let all: Vec<serde_json::Value> = serde_json::from_str(&stdout(&o)).unwrap();
    let tables: Vec<&str> = all.iter().map(|l| l["table"].as_str().unwrap()).collect();
    assert_eq!(tables, ["hired_employees", "jobs", "departments"]);
    let o = hrmig(dir.path(), &["loads", "--table", "jobs", "--json"]);
    let jobs: Vec<serde_json::Value> = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(jobs, [all[1].clone()]);
    // Text: the id first, then the kind, the table and status.
    let o = hrmig(dir.path(), &["loads", "--limit", "1"]);
    let text = stdout(&o);
    let row = text.lines().nth(1).unwrap();
    let fields: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        fields[..4],
        [
            all[0]["id"].to_string().as_str(),
            "load",
            "hired_employees",
            "loaded"
        ]
    );
    assert_eq!(text.lines().count(), 2, "{text}");
    for bad in [
        &["loads", "--limit", "0"][..],
        &["loads", "--table", "nope"][..],
    ] {
        assert!(!hrmig(dir.path(), bad).status.success(), "{bad:?}");
    }
}

#[test]
fn the_rejection_queue_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    generate(d, 300, &[]);
    // The employees before their parents: every row rejected.
    let o = hrmig(d, &["load", "--from", "storage/landing", "hired_employees"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(count(&d.join("hrmig.db"), "hired_employees"), 0);
    let o = hrmig(
        d,
        &["load", "--from", "storage/landing", "departments", "jobs"],
    );
    assert!(o.status.success(), "{}", stderr(&o));

    let o = hrmig(d, &["rejections", "retry", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let report = &json_lines(&o)[0];
    let resolved = report["resolved"].as_i64().unwrap();
    assert!(resolved > 250, "{report}");
    assert_eq!(count(&d.join("hrmig.db"), "hired_employees"), resolved);
    assert_eq!(
        report["checked"].as_i64(),
        Some(resolved + report["still_open"].as_i64().unwrap())
    );

    let o = hrmig(
        d,
        &[
            "rejections",
            "--summary",
            "--status",
            "resolved",
            "--format",
            "json",
        ],
    );
    let summary: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let fk = summary
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["code"] == "foreign_key")
        .unwrap();
    assert_eq!(fk["count"].as_i64(), Some(resolved));

    let o = hrmig(
        d,
        &[
            "rejections",
            "--status",
            "open",
            "--format",
            "json",
            "--limit",
            "1",
        ],
    );
    let open: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let id = open[0]["id"].as_i64().unwrap().to_string();
    let o = hrmig(d, &["rejections", "fix", &id, r#"{"id": 1}"#]);
    assert_eq!(o.status.code(), Some(1), "a refused fix exits 1");
    assert!(stdout(&o).contains("stays open"), "{}", stdout(&o));
    let o = hrmig(d, &["rejections", "dismiss", &id]);
    assert!(
        stdout(&o).contains(&format!("rejection {id}: dismissed")),
        "{}",
        stdout(&o)
    );
    let o = hrmig(d, &["rejections", "dismiss", &id, "--json"]);
    assert_eq!(json_lines(&o)[0]["changed"], false);
    let o = hrmig(d, &["rejections", "dismiss", "99999999"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("no rejection with id 99999999"),
        "{}",
        stderr(&o)
    );
    let o = hrmig(d, &["rejections", "fix", &id, "{}"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("is dismissed"), "{}", stderr(&o));
    for bad in [
        &["rejections", "--status", "closed"][..],
        &["rejections", "--code", "nope"],
        &["rejections", "dismiss"],
        &["rejections", "retry", "--table", "people"],
    ] {
        assert_eq!(hrmig(d, bad).status.code(), Some(2), "{bad:?}");
    }
    let o = hrmig(d, &["loads", "--json"]);
    assert!(stdout(&o).contains(r#""kind": "retry""#), "{}", stdout(&o));
}

#[test]
fn a_load_updates_on_request_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    generate(d, 10, &[]);
    let o = hrmig(
        d,
        &["load", "--from", "storage/landing", "departments", "jobs"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stdout(&o).contains("updated"), "{}", stdout(&o));
    std::fs::write(d.join("storage/landing/jobs.csv"), "1,Staff Engineer\n").unwrap();
    let o = hrmig(d, &["load", "--from", "storage/landing", "jobs"]);
    assert!(stdout(&o).contains("1 rows rejected"), "{}", stdout(&o));
    let args = [
        "load",
        "--from",
        "storage/landing",
        "--on-duplicate",
        "update",
        "jobs",
        "--force",
    ];
    let o = hrmig(d, &args);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    let head: Vec<&str> = text.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        head[..5],
        ["table", "status", "rows_read", "inserted", "updated"]
    );
    let row: Vec<&str> = text.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(row[..5], ["jobs", "loaded", "1", "0", "1"], "{text}");
    let db = d.join("hrmig.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    let job: String = conn
        .query_row("SELECT job FROM jobs WHERE id = 1", [], |r| r.get(0))
        .unwrap();
    assert_eq!(job, "Staff Engineer");
    let o = hrmig(d, &["load", "--on-duplicate", "replace"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn undo_and_row_say_what_they_did_and_exit_1_when_they_cannot() {
    let dir = tempfile::tempdir().unwrap();
    let land = dir.path().join("storage/landing");
    std::fs::create_dir_all(&land).unwrap();
    std::fs::write(land.join("departments.csv"), "1,Sales\n2,Legal\n").unwrap();
    std::fs::write(land.join("jobs.csv"), "1,Engineer\n").unwrap();
    std::fs::write(
        land.join("hired_employees.csv"),
        "1,Ann,2021-01-05T10:00:00Z,2,1\n",
    )
    .unwrap();
    let out = hrmig(dir.path(), &["load", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let ids: Vec<i64> = json_lines(&out)
        .iter()
        .map(|r| r["load_id"].as_i64().unwrap())
        .collect();
    let [departments, _, employees] = ids[..] else {
        panic!("{ids:?}");
    };
    let out = hrmig(dir.path(), &["row", "departments", "2"]);
    let row: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(row["origin"]["operation"], departments);
    assert_eq!(row["origin"]["line"], 2);
    let out = hrmig(dir.path(), &["row", "departments", "3"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no row with id 3"),
        "{}",
        stderr(&out)
    );

    // Refused, with the count; unknown; then done, and done before.
    let out = hrmig(dir.path(), &["undo", &departments.to_string()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("1 rows of other tables"),
        "{}",
        stderr(&out)
    );
    assert_eq!(count(&dir.path().join("hrmig.db"), "departments"), 2);
    let out = hrmig(dir.path(), &["undo", "4242"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no operation with id 4242"),
        "{}",
        stderr(&out)
    );
    let out = hrmig(dir.path(), &["undo", &employees.to_string()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("1 rows of hired_employees removed"),
        "{}",
        stdout(&out)
    );
    let out = hrmig(dir.path(), &["undo", &employees.to_string(), "--json"]);
    assert_eq!(json_lines(&out)[0]["changed"], false);
    let out = hrmig(dir.path(), &["loads"]);
    let text = stdout(&out);
    assert!(
        text.contains("undone") && text.contains("(removed 1)"),
        "{text}"
    );
}
