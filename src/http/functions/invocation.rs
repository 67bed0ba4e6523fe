//! HTTP functions that arrive as invocations (they have a queue output
//! beside the HTTP one, so the host does not forward them): the request in
//! `Data.req` is rebuilt and served by the API router, keys, limits and
//! all, and its response goes back as `Outputs.res`; a load job the
//! response recorded goes out as `Outputs.job`, which the host puts on the
//! load queue.
//!
//! Microsoft documents `Data.req` as `{Url, Method, Query, Headers, Params,
//! Body}` with `Query` a JSON-encoded string and header values arrays of
//! strings; hosts and samples differ, so `Query` may also be an object and
//! a header value a string.

use super::{Invocation, answer, answer_with, refused};
use crate::http::app::MAX_BODY_BYTES;
use crate::http::state::QueuedJob;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{Method, Request, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};
use tower::ServiceExt;

/// The queue output binding's name in `StartLoad` and `RerunLoad`.
pub const QUEUE_OUTPUT: &str = "job";

/// Serves one HTTP invocation with `api`.
pub(super) async fn serve(api: Router, body: Bytes) -> Response {
    let invocation = match Invocation::parse(&body) {
        Ok(i) => i,
        Err(why) => return refused(why),
    };
    let request = match invocation
        .input("req")
        .ok_or_else(|| "the invocation has no Data.req".to_owned())
    {
        Ok(req) => request_of(req),
        Err(e) => Err(e),
    };
    let request = match request {
        Ok(r) => r,
        Err(why) => return refused(why),
    };
    let log = format!("{} {}", request.method(), request.uri().path());
    let response = match api.oneshot(request).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    let queued = response.extensions().get::<QueuedJob>().cloned();
    let status = response.status();
    let mut headers = serde_json::Map::new();
    for (name, value) in response.headers() {
        if let Ok(v) = value.to_str() {
            headers.insert(name.as_str().to_owned(), Value::String(v.to_owned()));
        }
    }
    let body = match axum::body::to_bytes(response.into_body(), MAX_BODY_BYTES * 2).await {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) => {
            return answer(
                StatusCode::INTERNAL_SERVER_ERROR,
                vec![format!("{log}: the response could not be read: {e}")],
                Value::Null,
            );
        }
    };
    let mut outputs = json!({
        "res": { "statusCode": status.as_u16().to_string(), "headers": headers, "body": body }
    });
    let mut logs = vec![format!("{log} → {}", status.as_u16())];
    if let Some(QueuedJob(id)) = queued {
        outputs[QUEUE_OUTPUT] = Value::String(json!({ "job": id }).to_string());
        logs.push(format!("load job {id} queued"));
    }
    // The invocation itself succeeded whatever the API answered: a 4xx is
    // the client's, in Outputs.res.
    answer_with(StatusCode::OK, outputs, logs, Value::Null)
}

/// The request an invocation's `Data.req` describes.
fn request_of(req: &Value) -> Result<Request<Body>, String> {
    let method = req["Method"].as_str().unwrap_or("GET");
    let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes())
        .map_err(|_| format!("Data.req.Method {method:?} is not an HTTP method"))?;
    let url = req["Url"].as_str().ok_or("Data.req.Url is missing")?;
    let url = url::Url::parse(url).map_err(|e| format!("Data.req.Url {url:?}: {e}"))?;
    let mut target = url.path().to_owned();
    let query = match url.query() {
        Some(q) => q.to_owned(),
        None => query_of(&req["Query"])?,
    };
    if !query.is_empty() {
        target.push('?');
        target.push_str(&query);
    }
    let mut builder = Request::builder().method(method).uri(&target);
    if let Some(headers) = req["Headers"].as_object() {
        for (name, values) in headers {
            let values: Vec<&str> = match values {
                Value::String(s) => vec![s.as_str()],
                Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            };
            for v in values {
                builder = builder.header(name.as_str(), v);
            }
        }
    }
    let body = match &req["Body"] {
        Value::Null => Vec::new(),
        Value::String(s) => s.clone().into_bytes(),
        other => other.to_string().into_bytes(),
    };
    builder
        .body(Body::from(body))
        .map_err(|e| format!("Data.req does not make a request: {e}"))
}

/// The query string of `Data.req.Query`: an object of names to values (or
/// arrays of values), or the same JSON-encoded in a string.
fn query_of(query: &Value) -> Result<String, String> {
    let parsed;
    let query = match query {
        Value::Null => return Ok(String::new()),
        Value::String(s) if s.trim().is_empty() => return Ok(String::new()),
        Value::String(s) => {
            parsed = serde_json::from_str::<Value>(s)
                .map_err(|e| format!("Data.req.Query is not a JSON object: {e}"))?;
            &parsed
        }
        other => other,
    };
    let object = query.as_object().ok_or("Data.req.Query is not an object")?;
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in object {
        match value {
            Value::Array(values) => {
                for v in values {
                    out.append_pair(name, &plain(v));
                }
            }
            v => {
                out.append_pair(name, &plain(v));
            }
        }
    }
    Ok(out.finish())
}

fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_request_and_its_variants_make_the_same_request() {
        let documented = json!({
            "Url": "http://localhost:7071/api/loads",
            "Method": "POST",
            "Query": "{\"dry\":\"1\"}",
            "Headers": {"Content-Type": ["application/json"], "x-api-key": ["k"]},
            "Params": {},
            "Body": "{\"tables\":[\"jobs\"]}"
        });
        let liberal = json!({
            "Url": "http://localhost:7071/api/loads",
            "Method": "post",
            "Query": {"dry": 1},
            "Headers": {"Content-Type": "application/json", "x-api-key": "k"},
            "Body": {"tables": ["jobs"]}
        });
        for req in [documented, liberal] {
            let r = request_of(&req).unwrap();
            assert_eq!(r.method(), Method::POST);
            assert_eq!(r.uri().to_string(), "/api/loads?dry=1");
            assert_eq!(r.headers()["x-api-key"], "k");
            assert_eq!(r.headers()["content-type"], "application/json");
        }
        let with_url_query = json!({"Url": "http://h/api/loads?a=b", "Query": {"c": "d"}});
        assert_eq!(
            request_of(&with_url_query).unwrap().uri().to_string(),
            "/api/loads?a=b"
        );
    }

    #[test]
    fn a_request_that_cannot_be_rebuilt_is_named() {
        for (req, says) in [
            (json!({"Method": "POST"}), "Url is missing"),
            (json!({"Url": "not a url"}), "Data.req.Url"),
            (
                json!({"Url": "http://h/", "Method": "PO ST"}),
                "not an HTTP method",
            ),
            (
                json!({"Url": "http://h/", "Query": "[1"}),
                "Query is not a JSON object",
            ),
            (
                json!({"Url": "http://h/", "Query": 3}),
                "Query is not an object",
            ),
        ] {
            let e = request_of(&req).unwrap_err();
            assert!(e.contains(says), "{e}");
        }
    }
}
