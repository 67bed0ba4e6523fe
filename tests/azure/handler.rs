//! The custom handler played as the host plays it: forwarded HTTP requests,
//! and JSON invocations (`Data`, `Metadata` in; `Outputs`, `Logs`,
//! `ReturnValue` out) for the timer, the HTTP functions with a queue output,
//! the queue trigger and Event Grid.

use crate::cli::TABLES;
use crate::common::azurite::{Azurite, generate, wait_for};
use crate::common::port::free_port;
use crate::functions::{NO_JOB, concrete, functions, http_functions, repo_root};
use crate::host::{
    blob_created, forward, handler, http_invocation, invoke, job_of, queue_invocation, table_count,
};
use crate::packaging::unzip;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_function_route_is_served_and_every_api_route_has_a_function() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("hr.db").display());
    let state = hrmig::http::AppState::new(
        Arc::new(hrmig::store::Store::open(&url).await.unwrap()),
        hrmig::storage::Storage::open(dir.path().join("s").to_str().unwrap()).unwrap(),
        Arc::new(hrmig::http::Keys::default()),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(hrmig::http::serve(
        listener,
        hrmig::http::functions_router(state.clone()),
        Default::default(),
        std::future::pending(),
    ));
    let client = reqwest::Client::new();

    // A standalone server has no host routes: no unauthenticated backups.
    let plain = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let plain_base = format!("http://{}", plain.local_addr().unwrap());
    tokio::spawn(hrmig::http::serve(
        plain,
        hrmig::http::router(state),
        Default::default(),
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
    // The HTTP functions with a queue output come as invocations on
    // /<Name>, the request in Data.req; the API router serves that request.
    for f in http
        .iter()
        .filter(|f| hrmig::http::functions::QUEUED_HTTP.contains(&f.name.as_str()))
    {
        let (method, route) = f.routes().remove(0);
        let invocation = http_invocation(&method, &concrete(&route, "departments"), "{}");
        let r = client
            .post(format!("{base}/{}", f.name))
            .body(invocation.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", f.name);
        let answer: serde_json::Value = r.json().await.unwrap();
        let res = &answer["Outputs"]["res"];
        assert!(res["statusCode"].is_string(), "{}: {answer}", f.name);
        assert!(
            !res["body"].as_str().unwrap().contains("no such route"),
            "{}: {answer}",
            f.name
        );
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

/// The invocation of an HTTP function that the host does not forward, as

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
    // RerunLoad, also an invocation: a job that is done is not run again,
    // and nothing goes on the queue.
    let rerun = http_invocation("POST", &format!("/api/loads/{id}/run"), "{}");
    let (status, answer) = invoke(port, "RerunLoad", &rerun);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["Outputs"]["res"]["statusCode"], "409", "{answer}");
    assert!(answer["Outputs"].get("job").is_none(), "{answer}");

    // Every other HTTP function, in an order where each finds what it needs.
    let employee = r#"{"id":900001,"name":"Ada","datetime":"2021-05-01T00:00:00Z","department_id":1,"job_id":1}"#;
    let calls: &[(&str, &str, &str, &str, &str)] = &[
        ("Health", "GET", "departments", "", r#""database":"ok""#),
        ("ListLoads", "GET", "departments", "", "hired_employees"),
        ("GetLoad", "GET", "departments", "", r#""status":"done""#),
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
        let mut path = concrete(&route, table).replace(NO_JOB, &id);
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

#[test]
fn queue_invocations_run_load_jobs_and_a_redelivery_finishes_an_interrupted_one() {
    let Some(azurite) = Azurite::with_container("hrdata") else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    // Big enough that the employees' load is still going when the
    // instance is killed.
    let landing = generate(work.path(), 600_000, false);
    azurite.upload_landing("hrdata", &landing, &TABLES);
    let port = free_port();
    let mut instance = handler(work.path(), &azurite, "hrdata", port);

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
        let job = job_of(port, &id);
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
    let (_, history) = forward(port, "GET", "/api/loads", "");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&history)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        3
    );

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

#[test]
fn a_csv_landing_in_the_container_loads_itself() {
    let Some(azurite) = Azurite::with_container("hrdata") else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let landing = generate(work.path(), 300, false);
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
    let mut instance = handler(work.path(), &azurite, "hrdata", port);

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
    let (_, history) = forward(port, "GET", "/api/loads", "");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&history)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        3
    );
    let _ = instance.kill();
    let _ = instance.wait();
}
