//! The Functions handler's router in this process: every `function.json`
//! route is served, every API operation has a function, and a standalone
//! server has none of the host's routes.

use crate::common::app::TestApp;
use crate::functions::{concrete, http_functions};
use crate::host::http_invocation;
use hrmig::http::Keys;
use hrmig::http::functions::QUEUED_HTTP;
use std::collections::BTreeSet;

/// The handler's router over a fresh SQLite file in `dir`.
async fn spawn_handler(dir: &tempfile::TempDir) -> TestApp {
    let url = format!("sqlite://{}", dir.path().join("hr.db").display());
    let storage = dir.path().join("s");
    TestApp::spawn_router(
        &url,
        &storage,
        Keys::default(),
        hrmig::http::functions_router,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standalone_server_has_no_host_routes() {
    // No unauthenticated backups through a timer's route.
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("hr.db").display());
    let plain = TestApp::spawn(&url, &dir.path().join("s"), Keys::default()).await;
    let r = plain
        .client
        .post(format!("{}/NightlyBackup", plain.base))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.text().await.unwrap().contains("no such route"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_http_function_route_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_handler(&dir).await;
    let http = http_functions();
    assert!(!http.is_empty());
    for f in &http {
        for (method, route) in f.routes() {
            let path = concrete(&route, "departments");
            let r = app
                .client
                .request(method.parse().unwrap(), format!("{}{path}", app.base))
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
    let r = app.get("/api/nothing/here").await;
    assert!(r.text().await.unwrap().contains("no such route"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_functions_with_a_queue_output_are_served_as_invocations() {
    // They come as invocations on /<Name>, the request in Data.req; the API
    // router serves that request.
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_handler(&dir).await;
    let http = http_functions();
    let queued: Vec<_> = http
        .iter()
        .filter(|f| QUEUED_HTTP.contains(&f.name.as_str()))
        .collect();
    assert_eq!(queued.len(), QUEUED_HTTP.len());
    for f in queued {
        let (method, route) = f.routes().remove(0);
        let invocation = http_invocation(&method, &concrete(&route, "departments"), "{}");
        let r = app.post_json(&format!("/{}", f.name), &invocation).await;
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
    // The router's own fallback for an invocation of no function, so the
    // check above can fail.
    let r = app
        .post_json("/NoSuchFunction", &serde_json::json!({}))
        .await;
    assert!(r.text().await.unwrap().contains("no such route"));
}

#[test]
fn every_api_operation_has_a_function() {
    let doc = serde_json::to_value(hrmig::http::openapi::document()).unwrap();
    let covered: BTreeSet<(String, String)> = http_functions()
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
