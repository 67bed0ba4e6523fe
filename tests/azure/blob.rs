//! Azure Blob Storage through Azurite: loads from a container, backups into
//! it, listing, verify and restore, emulator settings and bad storage URLs.

use crate::cli::{TABLES, command, extra_employee, fingerprint, hrmig, json, ok, reports};
use crate::common::azurite::{Azurite, KEY, connection_string, generate};
use crate::common::port::free_port;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// Generated CSVs (with bad rows) uploaded to `landing/` under the storage
/// root `az://hrdata/raw`, and loaded from there into a database in a
/// folder of its own: the files' folder, the database's, the connection
/// string and the load's reports.
fn loaded_from_blobs(azurite: &Azurite) -> (TempDir, TempDir, String, Vec<serde_json::Value>) {
    let conn = connection_string(azurite.port);
    let work = tempfile::tempdir().unwrap();
    let landing = generate(work.path(), 3000, false);
    azurite.upload_landing("hrdata/raw", &landing, &TABLES);

    // Storage root az://hrdata/raw: the default load source is its landing/.
    let db = tempfile::tempdir().unwrap();
    let loaded = reports(hrmig(
        db.path(),
        "az://hrdata/raw",
        &conn,
        &["load", "--json"],
    ));
    (work, db, conn, loaded)
}

/// `backup --json` of every table into `az://hrdata/raw`: its reports.
fn backed_up(db: &Path, conn: &str) -> Vec<serde_json::Value> {
    let made = reports(hrmig(db, "az://hrdata/raw", conn, &["backup", "--json"]));
    assert_eq!(made.len(), 3);
    made
}

#[test]
fn historic_files_load_from_a_container_as_from_a_folder_and_only_once() {
    let Some(azurite) = Azurite::with_container("hrdata") else {
        return;
    };
    let (work, db, conn, loaded) = loaded_from_blobs(&azurite);
    let landing = work.path().join("landing");
    // The reference: the same files loaded from the local disk.
    let local = tempfile::tempdir().unwrap();
    let expected = reports(hrmig(
        local.path(),
        local.path().join("storage").to_str().unwrap(),
        "",
        &["load", "--from", landing.to_str().unwrap(), "--json"],
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
}

#[test]
fn backups_land_in_the_container_where_the_layout_says_and_fastavro_reads_them() {
    let Some(azurite) = Azurite::with_container("hrdata") else {
        return;
    };
    let (work, db, conn, _) = loaded_from_blobs(&azurite);
    let made = backed_up(db.path(), &conn);

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
}

#[test]
fn backups_in_the_container_are_listed_verified_and_restored() {
    let Some(azurite) = Azurite::with_container("hrdata") else {
        return;
    };
    let (work, db, conn, _) = loaded_from_blobs(&azurite);
    let before = fingerprint(&db.path().join("hr.db"));
    let made = backed_up(db.path(), &conn);

    let employees = &made[2];
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
    let extra = extra_employee(work.path());
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
fn backups_in_the_container_are_pruned_manifest_and_file() {
    let Some(azurite) = Azurite::with_container("hrdata") else {
        return;
    };
    let db = tempfile::tempdir().unwrap();
    let conn = connection_string(azurite.port);
    let mut jobs = Vec::new();
    for _ in 0..3 {
        jobs.push(backed_up(db.path(), &conn)[1]["backup"].clone());
    }
    let pruned = reports(hrmig(
        db.path(),
        "az://hrdata/raw",
        &conn,
        &["backups", "prune", "jobs", "--keep", "1", "--json"],
    ));
    assert_eq!(pruned.len(), 1);
    assert_eq!(pruned[0]["removed"], serde_json::json!(jobs[..2]));
    assert_eq!(pruned[0]["kept"], 1);
    // Both blobs of each removed backup are gone; the other tables' stay.
    let blobs: Vec<String> = azurite.blobs("hrdata").into_iter().map(|b| b.0).collect();
    for name in &jobs[..2] {
        let name = name.as_str().unwrap();
        assert!(!blobs.iter().any(|b| b.contains(name)), "{name}: {blobs:?}");
    }
    let under = |table: &str| {
        let prefix = format!("raw/backups/{table}/");
        blobs.iter().filter(|b| b.starts_with(&prefix)).count()
    };
    assert_eq!((under("jobs"), under("departments")), (2, 6), "{blobs:?}");
    let listed = json(hrmig(
        db.path(),
        "az://hrdata/raw",
        &conn,
        &["backups", "jobs", "--json"],
    ));
    assert_eq!(listed[0]["backup"], jobs[2]);
    ok(hrmig(
        db.path(),
        "az://hrdata/raw",
        &conn,
        &["restore", "jobs"],
    ));
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
