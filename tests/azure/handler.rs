//! The packaged app's handler, started as the host starts it and called as
//! the host calls it: forwarded HTTP requests, and JSON invocations (`Data`,
//! `Metadata` in; `Outputs`, `Logs`, `ReturnValue` out) for the timer, the
//! HTTP functions with a queue output and the queue trigger.

use crate::cli::TABLES;
use crate::common::azurite::{Azurite, generate};
use crate::common::port::free_port;
use crate::functions::{NO_JOB, concrete, functions, http_functions, repo_root};
use crate::host::{forward, handler_command, http_invocation, invoke, queue_invocation, start_on};
use crate::packaging::packaged_app;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// The handler of the packaged app over a container of Azurite named as
/// `local.settings.json` says; killed when dropped.
struct Packaged {
    work: tempfile::TempDir,
    port: u16,
    child: Child,
    container: String,
}

impl Packaged {
    /// Packaged, unzipped and started the way the host starts it; the
    /// host's readiness probe answered within seconds.
    fn start(azurite: &Azurite) -> Packaged {
        Packaged::start_with(azurite, &[])
    }

    /// Started as [`Packaged::start`], with these app settings besides.
    fn start_with(azurite: &Azurite, settings_too: &[(&str, &str)]) -> Packaged {
        let work = tempfile::tempdir().unwrap();
        let app = packaged_app(work.path());
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
        let mut command =
            handler_command(&app.join(description["defaultExecutablePath"].as_str().unwrap()));
        for (k, v) in values {
            command.env(k, v.as_str().unwrap());
        }
        command.envs(settings_too.iter().copied());
        let started = Instant::now();
        command
            .args(
                description["arguments"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a.as_str().unwrap()),
            )
            .current_dir(&app)
            // UseDevelopmentStorage=true means Azurite; this one is on its own port.
            .env(
                "AZURITE_BLOB_STORAGE_URL",
                format!("http://127.0.0.1:{}", azurite.port),
            );
        // The host's readiness probe: GET / until any answer.
        let child = start_on(&mut command, port);
        assert_eq!(forward(port, "GET", "/", "").0, 200);
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
        Packaged {
            work,
            port,
            child,
            container,
        }
    }

    /// Stopped the way the host stops it: it exits within seconds.
    fn stop_as_the_host_does(mut self) {
        // The host stops the handler with SIGTERM.
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "the handler did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Packaged {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Landing files put in the container by another client, then a load
/// started and run as the host and its queue do it; the job's id.
fn load_through_the_queue(handler: &Packaged, azurite: &Azurite) -> String {
    let port = handler.port;
    let landing = generate(handler.work.path(), 500, false);
    azurite.upload_landing(&handler.container, &landing, &TABLES);

    // StartLoad comes as an invocation (it has a queue output): the job is
    // recorded and answered 202 in Outputs.res, and goes on the queue in
    // Outputs.job; under the host nothing runs it until the queue does.
    let (status, answer) = invoke(
        port,
        "StartLoad",
        &http_invocation("POST", "/api/loads", "{}"),
    );
    assert_eq!(status, 200, "{answer}");
    let res = &answer["Outputs"]["res"];
    assert_eq!(res["statusCode"], "202", "{answer}");
    let job: serde_json::Value = serde_json::from_str(res["body"].as_str().unwrap()).unwrap();
    let id = job["id"].as_str().unwrap().to_owned();
    assert_eq!(res["headers"]["location"], format!("/api/loads/{id}"));
    let message = answer["Outputs"]["job"].clone();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(message.as_str().unwrap()).unwrap(),
        serde_json::json!({ "job": id })
    );
    let (_, text) = forward(port, "GET", &format!("/api/loads/{id}"), "");
    assert!(text.contains(r#""status":"queued""#), "{text}");
    // The queue trigger runs it inside its invocation.
    let (status, answer) = invoke(port, "RunLoadJob", &queue_invocation(message, 1));
    assert_eq!(status, 200, "{answer}");
    let done = &answer["ReturnValue"];
    assert_eq!(done["status"], "done", "{answer}");
    assert_eq!(done["tables"].as_array().unwrap().len(), 3, "{answer}");
    assert!(
        done["tables"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["status"] == "loaded")
    );
    id
}

/// The timer's invocation, as the host sends it on `/NightlyBackup`.
fn nightly_backup_invocation() -> serde_json::Value {
    let timer = functions()
        .into_iter()
        .find(|f| f.name == "NightlyBackup")
        .unwrap();
    let binding = timer.trigger()["name"].as_str().unwrap().to_owned();
    serde_json::json!({
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
    })
}

#[test]
fn a_load_is_queued_by_start_load_run_by_the_queue_trigger_and_not_rerun_once_done() {
    let Some(azurite) = Azurite::start() else {
        return;
    };
    let handler = Packaged::start(&azurite);
    let port = handler.port;
    let id = load_through_the_queue(&handler, &azurite);
    // RerunLoad, also an invocation: a job that is done is not run again,
    // and nothing goes on the queue.
    let rerun = http_invocation("POST", &format!("/api/loads/{id}/run"), "{}");
    let (status, answer) = invoke(port, "RerunLoad", &rerun);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["Outputs"]["res"]["statusCode"], "409", "{answer}");
    assert!(answer["Outputs"].get("job").is_none(), "{answer}");
    handler.stop_as_the_host_does();
}

#[test]
fn every_forwarded_http_function_answers_as_the_host_calls_it() {
    let Some(azurite) = Azurite::start() else {
        return;
    };
    let handler = Packaged::start(&azurite);
    let port = handler.port;
    let id = load_through_the_queue(&handler, &azurite);

    // Every other HTTP function, in an order where each finds what it needs.
    let employee = r#"{"id":900001,"name":"Ada","datetime":"2021-05-01T00:00:00Z","department_id":1,"job_id":1}"#;
    let calls: &[(&str, &str, &str, &str, &str)] = &[
        ("Health", "GET", "departments", "", r#""database":"ok""#),
        ("ListLoads", "GET", "departments", "", "hired_employees"),
        ("GetLoad", "GET", "departments", "", r#""status":"done""#),
        (
            "ListLoadJobs",
            "GET",
            "departments",
            "",
            r#""status":"done""#,
        ),
        ("ListTables", "GET", "departments", "", "hired_employees"),
        (
            "IngestRows",
            "POST",
            "departments",
            r#"[{"id":99,"department":"Research"}]"#,
            r#""inserted":1"#,
        ),
        ("ReadRows", "GET", "departments", "", "Research"),
        ("ReadRow", "GET", "departments", "", r#""origin":{"#),
        // Before the restore below, which writes every row again.
        ("UndoLoad", "POST", "departments", "", r#""changed":true"#),
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
        (
            "PruneBackups",
            "POST",
            "departments",
            r#"{"keep":1,"tables":["departments"]}"#,
            r#""kept":1"#,
        ),
        (
            "SummarizeRejections",
            "GET",
            "departments",
            "",
            r#""code":"type""#,
        ),
        (
            "RetryRejections",
            "POST",
            "departments",
            "",
            r#""checked":"#,
        ),
        (
            "FixRejection",
            "POST",
            "departments",
            r#"{"id":98,"department":"Fixed"}"#,
            r#""status":"resolved""#,
        ),
        (
            "DismissRejection",
            "POST",
            "departments",
            "",
            r#""changed":false"#,
        ),
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
        (
            "Console",
            "GET",
            "departments",
            "",
            "<title>hrmig console</title>",
        ),
        ("Metrics", "GET", "departments", "", "hrmig_build_info"),
    ];
    // A rejection for the rejection functions' `{id}`.
    let bad = r#"[{"id":98,"department":7}]"#;
    let (status, text) = forward(port, "POST", "/api/tables/departments/rows", bad);
    assert_eq!(status, 200, "{text}");
    let (_, text) = forward(
        port,
        "GET",
        "/api/rejections?table=departments&status=open&error_code=type",
        "",
    );
    let open: serde_json::Value = serde_json::from_str(&text).unwrap();
    let rejection = open[0]["id"].as_i64().unwrap().to_string();
    // An operation for UndoLoad's `{id}`, and a row for ReadRow's.
    let undone = r#"[{"id":97,"department":"Undone"}]"#;
    let (status, text) = forward(port, "POST", "/api/tables/departments/rows", undone);
    assert_eq!(status, 200, "{text}");
    let batch: serde_json::Value = serde_json::from_str(&text).unwrap();
    let operation = batch["load_id"].as_i64().unwrap().to_string();
    let row = "97".to_owned();
    let http = http_functions();
    let mut named: Vec<&str> = calls.iter().map(|c| c.0).collect();
    named.extend(hrmig::http::functions::QUEUED_HTTP);
    let mut all: Vec<&str> = http.iter().map(|f| f.name.as_str()).collect();
    all.sort();
    let mut sorted = named.clone();
    sorted.sort();
    assert_eq!(sorted, all, "every HTTP function is called once");
    for (name, method, table, body, expect) in calls {
        let f = http.iter().find(|f| f.name == *name).unwrap();
        let (m, route) = f.routes().into_iter().find(|(m, _)| m == method).unwrap();
        let of = match *name {
            n if n.contains("Rejection") => &rejection,
            "UndoLoad" => &operation,
            "ReadRow" => &row,
            _ => &id,
        };
        let mut path = concrete(&route, table).replace(NO_JOB, of);
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
    handler.stop_as_the_host_does();
}

#[test]
fn the_timer_backs_up_every_table_into_the_container() {
    let Some(azurite) = Azurite::start() else {
        return;
    };
    let handler = Packaged::start(&azurite);
    let port = handler.port;
    load_through_the_queue(&handler, &azurite);
    let payload = nightly_backup_invocation();
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
    let blobs = azurite.blobs(&handler.container);
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
    handler.stop_as_the_host_does();
}

/// The manifests in the container, per table.
fn manifests(azurite: &Azurite, container: &str, table: &str) -> usize {
    let prefix = format!("backups/{table}/");
    let blobs = azurite.blobs(container);
    let ours = blobs.iter().filter(|(n, _)| n.starts_with(&prefix));
    ours.filter(|(n, _)| n.ends_with(".manifest.json")).count()
}

#[test]
fn with_a_backup_keep_the_timer_prunes_after_backing_up_every_table() {
    let Some(azurite) = Azurite::start() else {
        return;
    };
    let handler = Packaged::start_with(&azurite, &[("HRMIG_BACKUP_KEEP", "2")]);
    let payload = nightly_backup_invocation().to_string();
    for night in 1..=3 {
        let (status, text) = forward(handler.port, "POST", "/NightlyBackup", &payload);
        assert_eq!(status, 200, "{text}");
        let answer: serde_json::Value = serde_json::from_str(&text).unwrap();
        let pruned = answer["ReturnValue"]["pruned"].as_array().unwrap();
        assert_eq!(pruned.len(), 3, "{answer}");
        for p in pruned {
            let removed = p["removed"].as_array().unwrap().len();
            assert_eq!(removed, usize::from(night == 3), "night {night}: {p}");
            assert_eq!(p["kept"], night.min(2), "night {night}: {p}");
        }
        for table in ["departments", "jobs", "hired_employees"] {
            assert_eq!(
                manifests(&azurite, &handler.container, table),
                night.min(2) as usize
            );
        }
    }
    // The avro files went with their manifests.
    let avro = azurite.blobs(&handler.container);
    assert_eq!(avro.iter().filter(|(n, _)| n.ends_with(".avro")).count(), 6);
    handler.stop_as_the_host_does();
}

/// A keep of 0 is refused: the backups are made, nothing is pruned, and the
/// invocation fails so that the setting is seen.
#[test]
fn a_backup_keep_of_0_fails_the_timer_after_the_backups() {
    let Some(azurite) = Azurite::start() else {
        return;
    };
    let handler = Packaged::start_with(&azurite, &[("HRMIG_BACKUP_KEEP", "0")]);
    let payload = nightly_backup_invocation().to_string();
    for _ in 0..2 {
        let (status, text) = forward(handler.port, "POST", "/NightlyBackup", &payload);
        assert_eq!(status, 500, "{text}");
        assert!(
            text.contains("HRMIG_BACKUP_KEEP=\\\"0\\\" is not a count of 1 or more"),
            "{text}"
        );
    }
    assert_eq!(manifests(&azurite, &handler.container, "jobs"), 2);
    handler.stop_as_the_host_does();
}

#[test]
fn with_storage_gone_the_timer_fails_the_api_answers_503_and_reads_are_served() {
    let Some(mut azurite) = Azurite::start() else {
        return;
    };
    let handler = Packaged::start(&azurite);
    let port = handler.port;
    let (status, text) = forward(
        port,
        "POST",
        "/api/tables/departments/rows",
        r#"[{"id":99,"department":"Research"}]"#,
    );
    assert_eq!(status, 200, "{text}");
    let payload = nightly_backup_invocation();

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
    let (status, answer) = invoke(
        port,
        "StartLoad",
        &http_invocation("POST", "/api/loads", "{}"),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["Outputs"]["res"]["statusCode"], "503", "{answer}");
    assert!(answer["Outputs"].get("job").is_none(), "{answer}");
    let (status, text) = forward(port, "GET", "/api/tables/departments/rows", "");
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("Research"));
    handler.stop_as_the_host_does();
}
