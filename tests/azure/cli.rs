//! hrmig as a command, its database a SQLite file in a folder of the test's
//! own and its storage in a container.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub const TABLES: [&str; 3] = ["departments", "jobs", "hired_employees"];

/// `hrmig ARGS` with its database in `dir` and its storage at `storage`,
/// reached through `connection` (nothing else from the environment).
pub fn hrmig(dir: &Path, storage: &str, connection: &str, args: &[&str]) -> Output {
    command(dir, storage, connection)
        .args(args)
        .output()
        .unwrap()
}

pub fn command(dir: &Path, storage: &str, connection: &str) -> Command {
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

pub fn ok(o: Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

pub fn json(o: Output) -> serde_json::Value {
    serde_json::from_str(&ok(o)).unwrap()
}

/// `load --json`, `backup --json`: one object a line.
pub fn reports(o: Output) -> Vec<serde_json::Value> {
    ok(o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Count, id sum and a digest of the employees: enough to see any change.
pub fn fingerprint(db: &Path) -> (i64, i64, String) {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row(
        "SELECT COUNT(*), COALESCE(SUM(id), 0), COALESCE(MAX(name || datetime), '') \
         FROM hired_employees",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
    .unwrap()
}

/// `work/extra/hired_employees.csv`, one employee the generated files do
/// not have: a change to the table. The folder.
pub fn extra_employee(work: &Path) -> PathBuf {
    let extra = work.join("extra");
    std::fs::create_dir_all(&extra).unwrap();
    std::fs::write(
        extra.join("hired_employees.csv"),
        "900001,Ada Lovelace,2021-03-01T10:00:00Z,1,1\n",
    )
    .unwrap();
    extra
}
