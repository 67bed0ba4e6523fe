//! What a request says, read once at the edge: the table of a path, of a
//! query or of a body, an optional JSON body, a page's limit, a folder under
//! the storage root; and why a request could not be read, as the
//! [`ApiError`] its client gets.

use super::app::MAX_BODY_BYTES;
use super::error::ApiError;
use crate::dictionary::Table;
use crate::ops::ingest::{How, Shape};
use crate::store::OnDuplicate;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::Deserialize;

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

/// A numeric `{id}` of a route's path (a rejection's, an operation's): one
/// that is not a positive number names nothing there (404, with the noun).
pub(super) fn id_in_path(
    id: Result<Path<String>, PathRejection>,
    noun: &str,
) -> Result<i64, ApiError> {
    let Path(id) = id?;
    id.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::NotFound(format!("no {noun} with id {id:?}")))
}

/// The table a query parameter or body names: an unknown one is a
/// malformed request.
pub(super) fn query_table(name: &str) -> Result<Table, ApiError> {
    Table::parse(name).map_err(|e| ApiError::BadRequest(e.to_string()))
}

/// The tables a request body names, as the client wrote them (absent or
/// `null`: none): checked by [`TableList::tables`], so that an unknown
/// name is the client's error (400) in the API's words, not serde's.
#[derive(serde::Deserialize, Default, utoipa::ToSchema)]
#[schema(value_type = Option<Vec<Table>>)]
pub(super) struct TableList(Option<Vec<String>>);

impl TableList {
    /// The tables named (none: an empty list).
    pub(super) fn tables(&self) -> Result<Vec<Table>, ApiError> {
        self.0.iter().flatten().map(|t| query_table(t)).collect()
    }

    /// The tables named, each once and parents first, or every table when
    /// none is ([`Table::each_once`]).
    pub(super) fn or_all(&self) -> Result<Vec<Table>, ApiError> {
        Ok(Table::each_once(&self.tables()?))
    }
}

/// An optional JSON body: empty means the defaults; otherwise a JSON
/// object (serde would also take a struct as an array of its fields).
pub(super) struct OptionalJson<T>(pub T);

/// A JSON object body that must be there.
pub(super) struct JsonObject<T>(pub T);

/// The body as a JSON object, `None` when it is empty; anything else is
/// refused with "the body must be `expected`".
async fn object_body<S, T>(req: Request, state: &S, expected: &str) -> Result<Option<T>, ApiError>
where
    S: Send + Sync,
    T: serde::de::DeserializeOwned,
{
    let body = Bytes::from_request(req, state).await?;
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        None => Ok(None),
        Some(b'{') => serde_json::from_slice(&body)
            .map(Some)
            .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}"))),
        Some(_) => Err(ApiError::BadRequest(format!("the body must be {expected}"))),
    }
}

impl<S, T> FromRequest<S> for OptionalJson<T>
where
    S: Send + Sync,
    T: Default + serde::de::DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<OptionalJson<T>, ApiError> {
        let expected = "a JSON object (or empty, for the defaults)";
        let body = object_body(req, state, expected).await?;
        Ok(OptionalJson(body.unwrap_or_default()))
    }
}

impl<S, T> FromRequest<S> for JsonObject<T>
where
    S: Send + Sync,
    T: serde::de::DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<JsonObject<T>, ApiError> {
        match object_body(req, state, "a JSON object").await? {
            Some(body) => Ok(JsonObject(body)),
            None => Err(ApiError::BadRequest(
                "the body must be a JSON object".into(),
            )),
        }
    }
}

/// A query string read into `T`; one that does not parse is a 400 in the
/// API's body.
pub(super) struct QueryOf<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequestParts<S> for QueryOf<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<QueryOf<T>, ApiError> {
        let Query(t) = Query::<T>::from_request_parts(parts, state).await?;
        Ok(QueryOf(t))
    }
}

/// How a route that writes rows writes them: `?dry_run=true` makes every
/// check and writes nothing; `?on_duplicate=update` makes a valid row whose
/// id is taken replace the stored one (`reject`, the default, keeps the
/// data rules).
pub(super) struct Writing {
    pub dry_run: bool,
    pub on_duplicate: OnDuplicate,
}

/// The query of [`Writing`], as the document gives it.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct WriteFlags {
    /// Check every row as a real run would (against the database and the
    /// batch's earlier rows) and write nothing; the response says
    /// `"dry_run": true`.
    dry_run: Option<bool>,
    /// `reject` (default): a row whose id is taken is a `duplicate`
    /// rejection. `update`: a valid row whose id is taken replaces the
    /// stored row (the later of two rows with one id wins), counted in
    /// `updated`.
    #[param(value_type = Option<OnDuplicate>)]
    on_duplicate: Option<String>,
}

impl Writing {
    /// How a batch of this request is applied, answered in `shape`.
    pub(super) fn how(&self, shape: Shape) -> How {
        How {
            shape,
            dry_run: self.dry_run,
            on_duplicate: self.on_duplicate,
        }
    }

    /// The route as an idempotency fingerprint names it: a key sent again
    /// with the same body but another `on_duplicate` is another request
    /// (422), not a replay.
    pub(super) fn route(&self, route: &str) -> String {
        match self.on_duplicate {
            OnDuplicate::Reject => route.to_owned(),
            OnDuplicate::Update => format!("{route}?on_duplicate=update"),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Writing {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Writing, ApiError> {
        let Query(flags) = Query::<WriteFlags>::from_request_parts(parts, state).await?;
        let on_duplicate = match flags.on_duplicate.as_deref() {
            None | Some("reject") => OnDuplicate::Reject,
            Some("update") => OnDuplicate::Update,
            Some(other) => {
                return Err(ApiError::BadRequest(format!(
                    "on_duplicate must be reject or update, not {other:?}"
                )));
            }
        };
        Ok(Writing {
            dry_run: flags.dry_run.unwrap_or(false),
            on_duplicate,
        })
    }
}

/// The `{id}` of a load job's path.
pub(super) struct JobPath(pub String);

impl<S: Send + Sync> FromRequestParts<S> for JobPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<JobPath, ApiError> {
        let Path(id) = Path::<String>::from_request_parts(parts, state).await?;
        Ok(JobPath(id))
    }
}

/// A count that JSON may write as `5` or `5.0`: JSON Schema's `integer`
/// is any number without a fractional part, and the document says
/// `integer`.
pub(super) fn whole_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    use serde::de::Error;
    let n = serde_json::Number::deserialize(d)?;
    if let Some(n) = n.as_u64() {
        return Ok(n);
    }
    match n.as_f64() {
        Some(f) if f >= 0.0 && f.fract() == 0.0 && f < 2f64.powi(64) => Ok(f as u64),
        _ => Err(D::Error::custom(format!(
            "expected a whole number of 0 or more, not {n}"
        ))),
    }
}

/// [`whole_number`], or nothing (absent or `null`).
pub(super) fn optional_whole_number<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<u64>, D::Error> {
    #[derive(serde::Deserialize)]
    struct Whole(#[serde(deserialize_with = "whole_number")] u64);
    Ok(Option::<Whole>::deserialize(d)?.map(|w| w.0))
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
