//! The triggers that are not HTTP, against `hrmig serve` as a host's custom
//! handler: the queue trigger running load jobs (and finishing one whose
//! instance died), and Event Grid's blob events loading the CSVs that land.

use crate::cli::TABLES;
use crate::common::azurite::{Azurite, generate};
use crate::common::port::free_port;
use crate::functions::NO_JOB;
use crate::host::{
    blob_created, forward, handler, http_invocation, invoke, job_of, loads_recorded,
    queue_invocation, table_count,
};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

/// StartLoad invoked as the host invokes it: the queue message it put out
/// and the job's id.
fn start_load(port: u16) -> (serde_json::Value, String) {
    let (_, answer) = invoke(
        port,
        "StartLoad",
        &http_invocation("POST", "/api/loads", "{}"),
    );
    assert_eq!(answer["Outputs"]["res"]["statusCode"], "202", "{answer}");
    let message = answer["Outputs"]["job"].clone();
    let id: String = serde_json::from_str::<serde_json::Value>(message.as_str().unwrap()).unwrap()
        ["job"]
        .as_str()
        .unwrap()
        .to_owned();

    (message, id)
}

/// Delivers `message` to `instance` as the queue does and kills the instance
/// while it loads the employees.
fn killed_during_the_load(mut instance: Child, port: u16, id: &str, message: &serde_json::Value) {
    // The queue delivers the message; the instance dies during the load.
    let delivery = {
        let message = message.clone();
        std::thread::spawn(move || {
            let payload = queue_invocation(message, 1).to_string();
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            let _ = write!(
                s,
                "POST /RunLoadJob HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{payload}",
                payload.len()
            );
            let mut out = String::new();
            let _ = s.read_to_string(&mut out);
            out
        })
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let job = job_of(port, id);
        if job["progress"]["table"] == "hired_employees"
            && job["progress"]["rows_read"].as_u64() > Some(0)
        {
            break;
        }
        assert_ne!(job["status"], "done", "finished before the kill: {job}");
        assert!(Instant::now() < deadline, "{job}");
        std::thread::sleep(Duration::from_millis(20));
    }
    instance.kill().unwrap();
    instance.wait().unwrap();
    let cut = delivery.join().unwrap();
    assert!(!cut.contains("200 OK"), "the invocation ended: {cut}");
}

#[test]
fn a_redelivery_to_a_new_instance_finishes_a_load_whose_instance_died() {
    let Some(azurite) = Azurite::with_container("hrdata") else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    // Big enough that the employees' load is still going when the
    // instance is killed.
    let landing = generate(work.path(), 600_000, false);
    azurite.upload_landing("hrdata", &landing, &TABLES);
    let port = free_port();
    let instance = handler(work.path(), &azurite, "hrdata", port);
    let (message, id) = start_load(port);
    killed_during_the_load(instance, port, &id, &message);

    // The host starts a new instance and delivers the message again.
    let mut instance = handler(work.path(), &azurite, "hrdata", port);
    let deadline = Instant::now() + Duration::from_secs(10);
    while job_of(port, &id)["status"] != "interrupted" {
        assert!(Instant::now() < deadline, "{}", job_of(port, &id));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(table_count(port, "hired_employees"), 0);
    let object = serde_json::from_str::<serde_json::Value>(message.as_str().unwrap()).unwrap();
    let (status, answer) = invoke(port, "RunLoadJob", &queue_invocation(object.clone(), 2));
    assert_eq!(status, 200, "{answer}");
    let job = &answer["ReturnValue"];
    assert_eq!(job["status"], "done", "{answer}");
    let statuses: Vec<&str> = job["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["already_loaded", "already_loaded", "loaded"]);
    let inserted = job["tables"][2]["inserted"].as_u64().unwrap();
    assert_eq!(table_count(port, "hired_employees"), inserted);

    // Delivered once more (the host lost the answer): nothing changes.
    let (status, answer) = invoke(port, "RunLoadJob", &queue_invocation(object, 3));
    assert_eq!(status, 200, "{answer}");
    assert!(
        answer["Logs"].to_string().contains("nothing to do"),
        "{answer}"
    );
    assert_eq!(table_count(port, "hired_employees"), inserted);
    assert_eq!(loads_recorded(port), 3);

    let _ = instance.kill();
    let _ = instance.wait();
}

#[test]
fn queue_messages_that_name_no_job_are_refused() {
    let Some(azurite) = Azurite::with_container("hrdata") else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let landing = generate(work.path(), 100, false);
    azurite.upload_landing("hrdata", &landing, &TABLES);
    let port = free_port();
    let mut instance = handler(work.path(), &azurite, "hrdata", port);
    let (_, id) = start_load(port);
    // Messages that name no job: refused, nothing run.
    for bad in [
        serde_json::json!("not a job"),
        serde_json::json!({ "id": id }),
        serde_json::json!({ "job": NO_JOB }),
    ] {
        let (status, answer) = invoke(port, "RunLoadJob", &queue_invocation(bad.clone(), 1));
        assert_eq!(status, 400, "{bad}: {answer}");
    }
    assert_eq!(forward(port, "POST", "/RunLoadJob", "[]").0, 400);
    let _ = instance.kill();
    let _ = instance.wait();
}

/// The CSVs uploaded under `landing/` of `hrdata` (and a file that is not
/// one), then each one's BlobCreated event invoked on `instance`, parents
/// first: each loads itself. The employees loaded.
fn land_and_load(azurite: &Azurite, work: &Path) -> (Child, u16, u64) {
    let landing = generate(work, 300, false);
    let upload = |blob: &str, file: &str| {
        azurite.client(&[
            "upload",
            "hrdata",
            blob,
            landing.join(file).to_str().unwrap(),
        ]);
    };
    upload("landing/departments.csv", "departments.csv");
    upload("landing/jobs-2021.csv", "jobs.csv");
    upload("landing/hired_employees/part-1.csv", "hired_employees.csv");
    upload("landing/readme.csv.txt", "jobs.csv");
    let port = free_port();
    let instance = handler(work, azurite, "hrdata", port);

    // Each file, as its event arrives, parents first.
    for (blob, table) in [
        ("landing/departments.csv", "departments"),
        ("landing/jobs-2021.csv", "jobs"),
        ("landing/hired_employees/part-1.csv", "hired_employees"),
    ] {
        let (status, answer) = invoke(port, "LoadLandedBlob", &blob_created("hrdata", blob));
        assert_eq!(status, 200, "{answer}");
        let job = &answer["ReturnValue"];
        assert_eq!(job["status"], "done", "{answer}");
        assert_eq!(job["tables"][0]["table"], table);
        assert_eq!(job["tables"][0]["status"], "loaded", "{answer}");
        assert!(
            job["tables"][0]["source"].as_str().unwrap().ends_with(blob),
            "{answer}"
        );
    }
    let employees = table_count(port, "hired_employees");
    assert!(employees > 200, "{employees}");

    (instance, port, employees)
}

#[test]
fn a_csv_landing_in_the_container_loads_itself_once() {
    let Some(azurite) = Azurite::with_container("hrdata") else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let (mut instance, port, _) = land_and_load(&azurite, work.path());
    // The same event again: the file is loaded once.
    let (status, answer) = invoke(
        port,
        "LoadLandedBlob",
        &blob_created("hrdata", "landing/jobs-2021.csv"),
    );
    assert_eq!(status, 200);
    assert_eq!(
        answer["ReturnValue"]["tables"][0]["status"],
        "already_loaded"
    );

    let _ = instance.kill();
    let _ = instance.wait();
}

#[test]
fn blob_events_that_load_nothing_are_ignored_or_refused_and_change_nothing() {
    let Some(azurite) = Azurite::with_container("hrdata") else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let (mut instance, port, employees) = land_and_load(&azurite, work.path());
    // Ignored with 200: not a table's file, another container, another
    // event type; a blob gone since its event: nothing loaded.
    let mut deleted = blob_created("hrdata", "landing/jobs.csv");
    deleted["Data"]["event"]["eventType"] = "Microsoft.Storage.BlobDeleted".into();
    for (payload, says) in [
        (
            blob_created("hrdata", "landing/readme.csv.txt"),
            "not a table's file",
        ),
        (
            blob_created("hrdata", "backups/jobs/x.avro"),
            "not a table's file",
        ),
        (
            blob_created("other", "landing/jobs.csv"),
            "outside the storage root",
        ),
        (deleted, "BlobDeleted event ignored"),
        (
            blob_created("hrdata", "landing/departments-gone.csv"),
            "no longer there",
        ),
    ] {
        let (status, answer) = invoke(port, "LoadLandedBlob", &payload);
        assert_eq!(status, 200, "{answer}");
        assert!(
            answer["Logs"].to_string().contains(says),
            "{says}: {answer}"
        );
        assert_eq!(answer["ReturnValue"], serde_json::Value::Null, "{answer}");
    }
    // Malformed events: 400, nothing loaded.
    let mut no_subject = blob_created("hrdata", "landing/jobs.csv");
    no_subject["Data"]["event"]["subject"] = serde_json::Value::Null;
    for payload in [
        no_subject,
        serde_json::json!({ "Data": { "event": "{not json" }, "Metadata": {} }),
        serde_json::json!({ "Data": { "event": [] }, "Metadata": {} }),
        serde_json::json!({ "Metadata": {} }),
    ] {
        let (status, answer) = invoke(port, "LoadLandedBlob", &payload);
        assert_eq!(status, 400, "{payload}: {answer}");
    }
    assert_eq!(table_count(port, "hired_employees"), employees);
    assert_eq!(loads_recorded(port), 3);
    let _ = instance.kill();
    let _ = instance.wait();
}
