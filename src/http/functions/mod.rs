//! The Azure Functions custom-handler side of the server.
//!
//! HTTP functions with one HTTP trigger and one HTTP output are forwarded
//! by the host as the original requests (`enableForwardingHttpRequest`), so
//! the API router serves them as they are. Every other function is a JSON
//! invocation that the host POSTs to `/<FunctionName>` with `Data` (one
//! entry per input binding) and `Metadata`, and that is answered with
//! `Outputs` (one entry per output binding), `Logs` and `ReturnValue`; a
//! non-2xx answer marks the invocation failed (the host then retries a
//! queue message). Those are here, with the host's readiness probe
//! (`GET /`):
//! - `NightlyBackup`, the timer;
//! - `StartLoad` and `RerunLoad`, HTTP functions with a queue output: the
//!   request is served by the API router (`invocation`), and a load job
//!   it recorded goes on the load queue;
//! - `RunLoadJob`, triggered by that queue, and `LoadLandedBlob`, by Event
//!   Grid when a blob is created (`triggers`).
//!
//! These routes are mounted only when the process runs as a custom handler
//! (bound to 127.0.0.1, reachable by the host alone), and outside the API
//! key check: the host does not send the API key.

mod invocation;
mod triggers;

use super::state::AppState;
use crate::dictionary::Table;
use crate::ops::backup::{self, Codec, Pruned, Retention};
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

/// The HTTP functions whose requests come as invocations, because they
/// have a queue output binding (named `invocation::QUEUE_OUTPUT`) beside
/// the HTTP one.
pub const QUEUED_HTTP: [&str; 2] = ["StartLoad", "RerunLoad"];

/// The routes only the Functions host calls.
pub fn router(state: AppState) -> Router {
    let mut router = Router::new()
        .route("/", get(ready))
        .route(&format!("/{NIGHTLY_BACKUP}"), post(nightly_backup))
        .route(
            &format!("/{}", triggers::RUN_LOAD_JOB),
            post(triggers::run_load_job),
        )
        .route(
            &format!("/{}", triggers::LOAD_LANDED_BLOB),
            post(triggers::load_landed_blob),
        );
    let api = super::app::router(state.clone());
    for name in QUEUED_HTTP {
        let api = api.clone();
        router = router.route(
            &format!("/{name}"),
            post(move |body: Bytes| invocation::serve(api.clone(), body)),
        );
    }
    router.with_state(state)
}

/// The host's readiness probe: any answer means ready.
async fn ready() -> &'static str {
    "hrmig custom handler ready\n"
}

/// The timer invocation: a backup of every table, parents first. Every
/// table is attempted even when one fails; the invocation fails (500) if
/// any did, and `Logs` says which and why.
async fn nightly_backup(State(state): State<AppState>, body: Bytes) -> Response {
    let invocation = match Invocation::parse(&body) {
        Ok(i) => i,
        Err(why) => return refused(why),
    };
    let mut logs = Vec::new();
    // The binding's name is the key under Data; whatever it is called,
    // IsPastDue says whether the host ran the timer late.
    let past_due = invocation
        .data
        .values()
        .any(|timer| timer["IsPastDue"].as_bool() == Some(true));
    if past_due {
        logs.push("timer is past due: running the backup now".to_owned());
    }
    let mut made = Vec::new();
    let mut failed = false;
    for table in Table::ALL {
        match state.backup(table, Codec::DEFAULT).await {
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
    let mut pruned = Vec::new();
    if !failed {
        match prune_after_backup(&state, &mut logs).await {
            Ok(p) => pruned = p,
            Err(()) => failed = true,
        }
    }
    let status = match failed {
        true => StatusCode::INTERNAL_SERVER_ERROR,
        false => StatusCode::OK,
    };
    answer(status, logs, json!({ "backups": made, "pruned": pruned }))
}

/// With `HRMIG_BACKUP_KEEP=N`, the older backups of every table beyond its
/// N newest are removed once every table was backed up. A value that is not
/// 1 or more fails the invocation, so that it is seen.
async fn prune_after_backup(state: &AppState, logs: &mut Vec<String>) -> Result<Vec<Pruned>, ()> {
    let Ok(keep) = std::env::var("HRMIG_BACKUP_KEEP") else {
        return Ok(Vec::new());
    };
    let retention = keep
        .trim()
        .parse::<u64>()
        .map_err(|e| e.to_string())
        .and_then(|n| Retention::new(n, None).map_err(|e| e.to_string()));
    let retention = match retention {
        Ok(r) => r,
        Err(why) => {
            tracing::error!(
                value = keep,
                why,
                "HRMIG_BACKUP_KEEP is not a count of 1 or more"
            );
            logs.push(format!(
                "HRMIG_BACKUP_KEEP={keep:?} is not a count of 1 or more: {why}"
            ));
            return Err(());
        }
    };
    let mut all = Vec::new();
    let mut failed = false;
    for table in Table::ALL {
        match backup::prune(&state.storage, table, retention).await {
            Ok(p) => {
                logs.push(format!(
                    "pruned {table}: {} removed, {} kept",
                    p.removed.len(),
                    p.kept
                ));
                all.push(p);
            }
            Err(e) => {
                tracing::error!(%table, error = %e, "nightly prune failed");
                logs.push(format!("prune of {table} failed: {e}"));
                failed = true;
            }
        }
    }
    if failed { Err(()) } else { Ok(all) }
}

fn answer(status: StatusCode, logs: Vec<String>, value: Value) -> Response {
    answer_with(status, json!({}), logs, value)
}

/// An invocation's answer: its outputs, its log lines, its return value.
fn answer_with(status: StatusCode, outputs: Value, logs: Vec<String>, value: Value) -> Response {
    let body = json!({ "Outputs": outputs, "Logs": logs, "ReturnValue": value });
    (status, axum::Json(body)).into_response()
}

/// The answer to a payload that is not what the function takes: a failed
/// invocation, nothing done.
fn refused(why: String) -> Response {
    tracing::warn!(why, "invocation refused");
    answer(StatusCode::BAD_REQUEST, vec![why], Value::Null)
}

/// An invocation body: `Data` and `Metadata` objects.
struct Invocation {
    data: serde_json::Map<String, Value>,
    metadata: serde_json::Map<String, Value>,
}

impl Invocation {
    /// The body as an invocation, or why it is not one.
    fn parse(body: &[u8]) -> Result<Invocation, String> {
        let not_one = || "invocation body is not a JSON object with Data and Metadata".to_owned();
        match serde_json::from_slice(body) {
            Ok(Value::Object(mut o)) => {
                let data = match o.remove("Data") {
                    Some(Value::Object(d)) => d,
                    _ => return Err(not_one()),
                };
                let metadata = match o.remove("Metadata") {
                    Some(Value::Object(m)) => m,
                    _ => serde_json::Map::new(),
                };
                Ok(Invocation { data, metadata })
            }
            _ => Err(not_one()),
        }
    }

    /// The input binding `name`'s data, or the only one there is (the
    /// name is the function.json's, which a user may have changed).
    fn input(&self, name: &str) -> Option<&Value> {
        self.data.get(name).or_else(|| match self.data.len() {
            1 => self.data.values().next(),
            _ => None,
        })
    }

    /// A trigger's invocation and what `read` makes of its input binding
    /// `name` (a queue message, an event); or why it is refused (`missing`:
    /// what the input is called in that message).
    fn triggered_by<T>(
        body: &[u8],
        name: &str,
        missing: &str,
        read: impl FnOnce(&Value) -> Result<T, String>,
    ) -> Result<(Invocation, T), String> {
        let invocation = Invocation::parse(body)?;
        let input = invocation
            .input(name)
            .ok_or_else(|| format!("the invocation has no {missing}"))
            .and_then(read)?;
        Ok((invocation, input))
    }
}
