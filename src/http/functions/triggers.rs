//! The load functions the host triggers itself.
//!
//! - `RunLoadJob`: a message on the load queue (`{"job": "<id>"}`, put there
//!   by `StartLoad` or `RerunLoad`) runs that job inside the invocation, so
//!   the host keeps the instance alive until the load ends (up to
//!   `functionTimeout`). A message delivered again (`DequeueCount` > 1)
//!   for a job that is done changes nothing; for one whose runner died, it
//!   runs the job again. A failure that may pass (the database was
//!   unavailable) answers 500, so the host delivers the message again.
//! - `LoadLandedBlob`: an Event Grid `Microsoft.Storage.BlobCreated` event
//!   for a blob under the storage root's `landing/` that names a table
//!   ([`jobs::landed`]) records a load job for that one file and runs it in
//!   the invocation. Other blobs are logged and ignored. An event sent
//!   again loads nothing twice: a file's content is loaded once.
//!
//! A message or event that is not what it should be is a 400 and loads
//! nothing (the host retries a queue message, then moves it to the poison
//! queue, `hrmig-loads-poison`).

use super::{Invocation, answer, refused};
use crate::http::state::AppState;
use crate::ops::jobs::{self, JobError, Ran};
use crate::ops::load::LoadError;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

/// The queue-triggered function.
pub const RUN_LOAD_JOB: &str = "RunLoadJob";
/// The Event Grid-triggered function.
pub const LOAD_LANDED_BLOB: &str = "LoadLandedBlob";

/// The job id of a queue message: `{"job": "<id>"}`, as an object or as
/// the JSON text of one, or the bare id.
fn job_of_message(message: &Value) -> Result<String, String> {
    let parsed;
    let message = match message {
        Value::String(s) => match serde_json::from_str::<Value>(s) {
            Ok(v @ Value::Object(_)) => {
                parsed = v;
                &parsed
            }
            _ if !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) => {
                return Ok(s.clone());
            }
            _ => return Err(format!("queue message {:?} names no load job", cut(s))),
        },
        other => other,
    };
    match message["job"].as_str() {
        Some(id) if !id.is_empty() => Ok(id.to_owned()),
        _ => Err(format!(
            "queue message {} is not {{\"job\": \"<id>\"}}",
            cut(&message.to_string())
        )),
    }
}

fn cut(s: &str) -> String {
    s.chars().take(200).collect()
}

/// How many times the host has delivered the message (1 the first time).
fn dequeue_count(metadata: &serde_json::Map<String, Value>) -> u64 {
    match metadata.get("DequeueCount") {
        Some(Value::Number(n)) => n.as_u64().unwrap_or(1),
        Some(Value::String(s)) => s.trim().parse().unwrap_or(1),
        _ => 1,
    }
}

/// Runs the load job a queue message names.
pub(super) async fn run_load_job(State(state): State<AppState>, body: Bytes) -> Response {
    let (invocation, id) =
        match Invocation::triggered_by(&body, "job", "queue message", job_of_message) {
            Ok(triggered) => triggered,
            Err(why) => return refused(why),
        };
    let delivery = dequeue_count(&invocation.metadata);
    let mut logs = vec![format!("load job {id}, delivery {delivery}")];
    run_and_answer(&state, &id, true, &mut logs).await
}

/// Runs a job in this invocation and answers for it.
async fn run_and_answer(
    state: &AppState,
    id: &str,
    failed_too: bool,
    logs: &mut Vec<String>,
) -> Response {
    match jobs::run(&state.store, &state.storage, id, state.jobs, failed_too).await {
        Ok(Ran::Finished { job, transient }) => {
            state.count_job(&job);
            logs.push(format!(
                "load job {id} {}{}",
                serde_json::to_value(job.status).unwrap_or_default(),
                job.error
                    .as_deref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            ));
            let status = match transient {
                true => StatusCode::INTERNAL_SERVER_ERROR,
                false => StatusCode::OK,
            };
            answer(status, std::mem::take(logs), json!(job))
        }
        Ok(Ran::NotTaken(job)) => {
            logs.push(format!(
                "load job {id} is {}: nothing to do",
                serde_json::to_value(job.status).unwrap_or_default()
            ));
            answer(StatusCode::OK, std::mem::take(logs), json!(job))
        }
        Err(e @ JobError::NotFound(_)) => {
            logs.push(e.to_string());
            answer(StatusCode::BAD_REQUEST, std::mem::take(logs), Value::Null)
        }
        Err(e) => {
            tracing::error!(job = id, error = %e, "load job could not run");
            logs.push(format!("load job {id} could not run: {e}"));
            answer(
                StatusCode::INTERNAL_SERVER_ERROR,
                std::mem::take(logs),
                Value::Null,
            )
        }
    }
}

/// What an Event Grid event says about a blob.
#[derive(Debug, PartialEq, Eq)]
enum Event {
    /// A blob was created: its container and name.
    Created { container: String, blob: String },
    /// Another event type (logged and ignored).
    Other(String),
}

/// Reads an event of the Event Grid schema (`eventType`, `subject`) or of
/// the CloudEvents schema (`type`, `subject`), sent as an object, as the
/// JSON text of one, or as an array of one.
fn event_of(value: &Value) -> Result<Event, String> {
    let parsed;
    let mut event = match value {
        Value::String(s) => {
            parsed = serde_json::from_str::<Value>(s)
                .map_err(|e| format!("the event is not JSON: {e}"))?;
            &parsed
        }
        other => other,
    };
    if let Value::Array(events) = event {
        match events.as_slice() {
            [one] => event = one,
            _ => {
                return Err(format!(
                    "{} events in one invocation; expected one",
                    events.len()
                ));
            }
        }
    }
    let kind = event["eventType"]
        .as_str()
        .or_else(|| event["type"].as_str())
        .ok_or("the event has no eventType (nor type)")?;
    if kind != "Microsoft.Storage.BlobCreated" {
        return Ok(Event::Other(kind.to_owned()));
    }
    let subject = event["subject"]
        .as_str()
        .ok_or("the event has no subject")?;
    let rest = subject
        .strip_prefix("/blobServices/default/containers/")
        .ok_or_else(|| format!("subject {:?} does not name a blob", cut(subject)))?;
    let (container, blob) = rest
        .split_once("/blobs/")
        .filter(|(c, b)| !c.is_empty() && !b.is_empty())
        .ok_or_else(|| format!("subject {:?} does not name a blob", cut(subject)))?;
    Ok(Event::Created {
        container: container.to_owned(),
        blob: blob.to_owned(),
    })
}

/// Loads the blob an Event Grid event says was created, when it is a
/// table's file under `landing/`.
pub(super) async fn load_landed_blob(State(state): State<AppState>, body: Bytes) -> Response {
    let event = Invocation::triggered_by(&body, "event", "event", event_of);
    let (container, blob) = match event {
        Ok((_, Event::Created { container, blob })) => (container, blob),
        Ok((_, Event::Other(kind))) => {
            return answer(
                StatusCode::OK,
                vec![format!("{kind} event ignored")],
                Value::Null,
            );
        }
        Err(why) => return refused(why),
    };
    let ignored = |why: String| {
        tracing::info!(container, blob, why, "landed blob ignored");
        answer(StatusCode::OK, vec![why], Value::Null)
    };
    let Some(path) = state.storage.blob_below_root(&container, &blob) else {
        return ignored(format!(
            "{container}/{blob} is outside the storage root {}",
            state.storage.location()
        ));
    };
    let Some(request) = jobs::landed(&path) else {
        return ignored(format!(
            "{path} is not a table's file under landing/ (<table>.csv, <table>-….csv or <table>/….csv)"
        ));
    };
    let job = match jobs::submit_checked(&state.store, &state.storage, request).await {
        Ok(job) => job,
        // Gone since the event was sent: nothing to load, and nothing a
        // retry would find.
        Err(e @ LoadError::Storage(crate::storage::StorageError::NotFound { .. })) => {
            tracing::warn!(error = %e, "landed blob is gone");
            return answer(
                StatusCode::OK,
                vec![format!("{path}: no longer there, nothing loaded ({e})")],
                Value::Null,
            );
        }
        Err(e) => {
            tracing::error!(error = %e, "landed blob could not be queued");
            return answer(
                StatusCode::INTERNAL_SERVER_ERROR,
                vec![format!("{path}: {e}")],
                Value::Null,
            );
        }
    };
    let mut logs = vec![format!("{path}: load job {}", job.id)];
    run_and_answer(&state, &job.id, false, &mut logs).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_messages_name_their_job_in_every_documented_form() {
        let id = "0123456789abcdef0123456789abcdef";
        for message in [
            json!({"job": id}),
            Value::String(json!({"job": id}).to_string()),
            Value::String(id.into()),
        ] {
            assert_eq!(job_of_message(&message).unwrap(), id);
        }
        for bad in [
            json!({"id": id}),
            json!({"job": ""}),
            json!(7),
            Value::String("not a job".into()),
            Value::String(String::new()),
        ] {
            assert!(job_of_message(&bad).is_err(), "{bad}");
        }
        let meta = |v: Value| v.as_object().unwrap().clone();
        assert_eq!(dequeue_count(&meta(json!({"DequeueCount": 3}))), 3);
        assert_eq!(dequeue_count(&meta(json!({"DequeueCount": "2"}))), 2);
        assert_eq!(dequeue_count(&meta(json!({}))), 1);
    }

    #[test]
    fn blob_created_events_name_their_blob_in_both_schemas() {
        let subject = "/blobServices/default/containers/hrdata/blobs/landing/jobs.csv";
        let created = Event::Created {
            container: "hrdata".into(),
            blob: "landing/jobs.csv".into(),
        };
        let grid = json!({"eventType": "Microsoft.Storage.BlobCreated", "subject": subject});
        let cloud = json!({"type": "Microsoft.Storage.BlobCreated", "subject": subject});
        for e in [
            grid.clone(),
            cloud,
            Value::String(grid.to_string()),
            json!([grid]),
        ] {
            assert_eq!(event_of(&e).unwrap(), created);
        }
        assert_eq!(
            event_of(&json!({"eventType": "Microsoft.Storage.BlobDeleted", "subject": subject}))
                .unwrap(),
            Event::Other("Microsoft.Storage.BlobDeleted".into())
        );
        for bad in [
            json!({"subject": subject}),
            json!({"eventType": "Microsoft.Storage.BlobCreated"}),
            json!({"eventType": "Microsoft.Storage.BlobCreated", "subject": "/x/y"}),
            json!({"eventType": "Microsoft.Storage.BlobCreated",
                   "subject": "/blobServices/default/containers/hrdata/blobs/"}),
            json!([]),
            Value::String("{".into()),
        ] {
            assert!(event_of(&bad).is_err(), "{bad}");
        }
    }
}
