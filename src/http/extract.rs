//! What a request says, read once at the edge: the table of a path, of a
//! query or of a body, an optional JSON body, a page's limit, a folder under
//! the storage root; and why a request could not be read, as the
//! [`ApiError`] its client gets.

use super::app::MAX_BODY_BYTES;
use super::error::ApiError;
use crate::dictionary::Table;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequestParts, Path};
use axum::http::StatusCode;
use axum::http::request::Parts;

/// The `{table}` of a route's path: an unknown one is a resource that is
/// not there (404), answered before the rest of the request is read.
pub(super) struct TablePath(pub Table);

impl<S: Send + Sync> FromRequestParts<S> for TablePath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<TablePath, ApiError> {
        let Path(name) = Path::<String>::from_request_parts(parts, state).await?;
        Table::parse(&name)
            .map(TablePath)
            .map_err(|e| ApiError::NotFound(e.to_string()))
    }
}

/// The table a query parameter or body names: an unknown one is a
/// malformed request.
pub(super) fn query_table(name: &str) -> Result<Table, ApiError> {
    Table::parse(name).map_err(|e| ApiError::BadRequest(e.to_string()))
}

/// The tables a request body names (none: an empty list); an unknown name
/// is the client's error (400), not a missing route.
pub(super) fn tables_in_body(names: Option<&[String]>) -> Result<Vec<Table>, ApiError> {
    names
        .unwrap_or_default()
        .iter()
        .map(|t| query_table(t))
        .collect()
}

/// An optional JSON body: empty means the defaults; otherwise a JSON
/// object (serde would also take a struct as an array of its fields).
pub(super) fn optional_body<T: Default + serde::de::DeserializeOwned>(
    body: &[u8],
) -> Result<T, ApiError> {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        None => Ok(T::default()),
        Some(b'{') => serde_json::from_slice(body)
            .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}"))),
        Some(_) => Err(ApiError::BadRequest(
            "the body must be a JSON object (or empty, for the defaults)".into(),
        )),
    }
}

/// A page's `limit`: 1 to 1000, `default` when absent.
pub(super) fn page_limit(limit: Option<u32>, default: u32) -> Result<u32, ApiError> {
    match limit.unwrap_or(default) {
        n @ 1..=1000 => Ok(n),
        _ => Err(ApiError::BadRequest("limit must be 1 to 1000".into())),
    }
}

/// A folder under the storage root: relative, no `..`, no URL.
pub(super) fn folder_under_root(from: &str) -> Result<&str, ApiError> {
    // Segments that are neither empty nor start with a dot (so no `.`,
    // `..` or hidden folders), without `\\`, `:` (schemes, drives), `%`
    // (encodings) or NUL: the pattern the OpenAPI document gives.
    let segment =
        |p: &str| !p.is_empty() && !p.starts_with('.') && !p.contains(['\\', ':', '%', '\0']);
    if from.split('/').all(segment) {
        Ok(from)
    } else {
        Err(ApiError::BadRequest(format!(
            "\"from\" must be a folder under the storage root, such as \"landing\"; got {:?}",
            from.chars().take(100).collect::<String>()
        )))
    }
}

/// A body that could not be read: too large (413), stalled past the body
/// timeout (408), or cut off by the client (400).
impl From<BytesRejection> for ApiError {
    fn from(e: BytesRejection) -> Self {
        match e.status() {
            StatusCode::PAYLOAD_TOO_LARGE => {
                ApiError::TooLarge(format!("request body over {MAX_BODY_BYTES} bytes"))
            }
            _ if is_body_timeout(&e) => ApiError::RequestTimeout,
            _ => ApiError::BadRequest(e.body_text()),
        }
    }
}

/// A query string that does not parse: axum's message, in the API's body.
impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> Self {
        ApiError::BadRequest(e.body_text())
    }
}

/// A path segment that does not decode; a route without the parameter its
/// handler reads is the server's error.
impl From<PathRejection> for ApiError {
    fn from(e: PathRejection) -> Self {
        match e.status() {
            s if s.is_server_error() => ApiError::Internal(e.body_text()),
            _ => ApiError::BadRequest(e.body_text()),
        }
    }
}

/// Whether a body error is the body timeout's: the error is boxed at every
/// layer, so the source chain is walked.
fn is_body_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if e.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        current = e.source();
    }
    false
}
