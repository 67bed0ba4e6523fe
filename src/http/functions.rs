//! The Azure Functions custom-handler side of the server.
//!
//! HTTP functions are forwarded by the host as the original requests
//! (`enableForwardingHttpRequest`), so the API router serves them as they
//! are. What only the host sends is here: its readiness probe (`GET /`)
//! and the JSON invocation of the `NightlyBackup` timer function, which the
//! host POSTs to `/NightlyBackup` with `Data`/`Metadata` and which answers
//! with `Outputs`/`Logs`/`ReturnValue` (a non-2xx status marks the
//! invocation failed).
//!
//! These routes are mounted only when the process runs as a custom handler
//! (bound to 127.0.0.1, reachable by the host alone), and outside the API
//! key check: the host does not send the API key.

use super::AppState;
use crate::dictionary::Table;
use crate::ops::backup::{self, Codec};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

/// The name of the timer function (its folder under `functions/`), which
/// is also the path the host invokes it on.
pub const NIGHTLY_BACKUP: &str = "NightlyBackup";

/// The environment variables that give the port the host expects, in the
/// order they are read.
pub const PORT_VARS: [&str; 2] = ["FUNCTIONS_CUSTOMHANDLER_PORT", "FUNCTIONS_HTTPWORKER_PORT"];

/// The port the Functions host chose, when running under it.
pub fn host_port() -> Option<String> {
    PORT_VARS
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|p| !p.trim().is_empty()))
}

/// The routes only the Functions host calls.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(ready))
        .route(&format!("/{NIGHTLY_BACKUP}"), post(nightly_backup))
        .with_state(state)
}

/// The host's readiness probe: any answer means ready.
async fn ready() -> &'static str {
    "hrmig custom handler ready\n"
}

/// The timer invocation: a backup of every table, parents first. Every
/// table is attempted even when one fails; the invocation fails (500) if
/// any did, and `Logs` says which and why.
async fn nightly_backup(State(state): State<AppState>, body: Bytes) -> Response {
    let invocation: Value = match serde_json::from_slice(&body) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) | Err(_) => {
            return answer(
                StatusCode::BAD_REQUEST,
                vec!["invocation body is not a JSON object with Data and Metadata".into()],
                Value::Null,
            );
        }
    };
    let mut logs = Vec::new();
    // The binding's name is the key under Data; whatever it is called,
    // IsPastDue says whether the host ran the timer late.
    let past_due = invocation["Data"]
        .as_object()
        .into_iter()
        .flat_map(|d| d.values())
        .any(|timer| timer["IsPastDue"].as_bool() == Some(true));
    if past_due {
        logs.push("timer is past due: running the backup now".to_owned());
    }
    let mut made = Vec::new();
    let mut failed = false;
    for table in Table::ALL {
        match backup::backup(&state.store, &state.storage, table, Codec::DEFAULT, false).await {
            Ok(m) => {
                logs.push(format!(
                    "backed up {table}: {} rows, {} bytes, {}",
                    m.rows, m.bytes, m.backup
                ));
                made.push(m);
            }
            Err(e) => {
                tracing::error!(%table, error = %e, "nightly backup failed");
                logs.push(format!("backup of {table} failed: {e}"));
                failed = true;
            }
        }
    }
    let status = match failed {
        true => StatusCode::INTERNAL_SERVER_ERROR,
        false => StatusCode::OK,
    };
    answer(status, logs, json!({ "backups": made }))
}

fn answer(status: StatusCode, logs: Vec<String>, value: Value) -> Response {
    let body = json!({ "Outputs": {}, "Logs": logs, "ReturnValue": value });
    (status, axum::Json(body)).into_response()
}
