//! What the Functions host sends the custom handler, as Microsoft documents
//! it, and the handler started as the host starts it.

use crate::common::azurite::{Azurite, connection_string, wait_for};
use crate::common::tables::rows_in;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The invocation of an HTTP function that the host does not forward, as
/// Microsoft documents it: `Data.req` with `Url`, `Method`, `Query` (a JSON
/// string), `Headers` (arrays of values), `Params` and `Body`.
pub fn http_invocation(method: &str, path: &str, body: &str) -> serde_json::Value {
    serde_json::json!({
        "Data": { "req": {
            "Url": format!("http://127.0.0.1:7071{path}?code=a-function-key"),
            "Method": method,
            "Query": "{\"code\":\"a-function-key\"}",
            "Headers": {
                "Content-Type": ["application/json"],
                "x-functions-key": ["a-function-key"],
                "User-Agent": ["curl/8.5.0"]
            },
            "Params": {},
            "Body": body
        }},
        "Metadata": { "sys": {
            "MethodName": "StartLoad",
            "UtcNow": "2026-11-28T02:00:00.0123456Z",
            "RandGuid": "5f0d6d2e-7b7c-4b5a-9a53-0b9b7c6f1d2e"
        }}
    })
}

/// A queue-triggered invocation: the message as the host gives it (a
/// string, or an object when the message is JSON) and its `DequeueCount`.
pub fn queue_invocation(message: serde_json::Value, dequeue_count: u32) -> serde_json::Value {
    serde_json::json!({
        "Data": { "job": message },
        "Metadata": {
            "DequeueCount": dequeue_count,
            "Id": uuid::Uuid::new_v4().to_string(),
            "InsertionTime": "2026-11-28T02:00:00+00:00",
            "sys": { "MethodName": "RunLoadJob", "UtcNow": "2026-11-28T02:00:01Z" }
        }
    })
}

/// An Event Grid-triggered invocation of `Microsoft.Storage.BlobCreated`
/// for `blob` in `container`, in the Event Grid schema.
pub fn blob_created(container: &str, blob: &str) -> serde_json::Value {
    serde_json::json!({
        "Data": { "event": {
            "topic": "/subscriptions/0/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/devstoreaccount1",
            "subject": format!("/blobServices/default/containers/{container}/blobs/{blob}"),
            "eventType": "Microsoft.Storage.BlobCreated",
            "id": uuid::Uuid::new_v4().to_string(),
            "eventTime": "2026-11-28T02:00:00Z",
            "data": {
                "api": "PutBlob",
                "contentType": "text/csv",
                "blobType": "BlockBlob",
                "url": format!("http://127.0.0.1:10000/devstoreaccount1/{container}/{blob}")
            },
            "dataVersion": "",
            "metadataVersion": "1"
        }},
        "Metadata": { "sys": { "MethodName": "LoadLandedBlob", "UtcNow": "2026-11-28T02:00:01Z" } }
    })
}

/// An invocation POSTed to `/<function>` as the host sends it: the status
/// and the answer.
pub fn invoke(port: u16, function: &str, payload: &serde_json::Value) -> (u16, serde_json::Value) {
    let (status, text) = forward(port, "POST", &format!("/{function}"), &payload.to_string());
    let answer = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
    (status, answer)
}

/// A minimal HTTP/1.1 exchange, as the host's forwarding sends it.
pub fn forward(port: u16, method: &str, path: &str, body: &str) -> (u16, String) {
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

/// `hrmig serve` as the custom handler of a host on `port`, over a SQLite
/// file in `dir` and the container `container` of `azurite`.
pub fn handler(dir: &Path, azurite: &Azurite, container: &str, port: u16) -> Child {
    let mut c = handler_command(Path::new(env!("CARGO_BIN_EXE_hrmig")));
    c.arg("serve")
        .current_dir(dir)
        .env(
            "HRMIG_DATABASE_URL",
            format!("sqlite://{}", dir.join("hr.db").display()),
        )
        .env("HRMIG_STORAGE_URL", format!("az://{container}"))
        .env(
            "AZURE_STORAGE_CONNECTION_STRING",
            connection_string(azurite.port),
        )
        .env("HRMIG_JOB_HEARTBEAT_MS", "200");
    start_on(&mut c, port)
}

/// The handler `program` with nothing of this process's environment that
/// the host would not give it.
pub fn handler_command(program: &Path) -> Command {
    let mut c = Command::new(program);
    for (key, _) in std::env::vars() {
        if key.starts_with("AZURE") || key.starts_with("HRMIG_") || key.starts_with("FUNCTIONS_") {
            c.env_remove(key);
        }
    }
    c
}

/// `handler` started with the host's port in `FUNCTIONS_CUSTOMHANDLER_PORT`,
/// once that port takes connections (the host's readiness probe).
pub fn start_on(handler: &mut Command, port: u16) -> Child {
    let mut child = handler
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
        .env("HRMIG_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(&mut child, "handler start", || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    child
}

pub fn job_of(port: u16, id: &str) -> serde_json::Value {
    let (status, text) = forward(port, "GET", &format!("/api/loads/{id}"), "");
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(&text).unwrap()
}

pub fn table_count(port: u16, table: &str) -> u64 {
    let (_, text) = forward(port, "GET", "/api/tables", "");
    let tables: serde_json::Value = serde_json::from_str(&text).unwrap();
    rows_in(&tables, table)
}

/// How many loads `GET /api/loads` lists.
pub fn loads_recorded(port: u16) -> usize {
    let (_, text) = forward(port, "GET", "/api/loads", "");
    let loads: serde_json::Value = serde_json::from_str(&text).unwrap();
    loads.as_array().unwrap().len()
}
