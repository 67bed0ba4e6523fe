//! The one place where errors become HTTP responses: stable `code` strings,
//! and opaque 5xx bodies (the cause is logged, never sent).

use crate::ops::backup::BackupError;
use crate::ops::ingest::IngestError;
use crate::ops::load::LoadError;
use crate::store::{Fault, StoreError};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// The body of every error response.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// A stable code and a message for people.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable code: bad_request, unauthorized, forbidden, not_found, too_large,
    /// unsupported_media_type, idempotency_key_reused, conflict, backup_damaged,
    /// request_timeout, rate_limited, overloaded, database_unavailable,
    /// storage_unavailable, internal.
    pub code: &'static str,
    /// What is wrong and where.
    pub message: String,
}

/// An error of the HTTP door.
#[derive(Debug)]
pub enum ApiError {
    /// 400 with a message for the client.
    BadRequest(String),
    /// 401; the body never says which part was wrong.
    Unauthorized,
    /// 403: the route needs the admin key.
    Forbidden,
    /// 404.
    NotFound(String),
    /// 413.
    TooLarge(String),
    /// 415.
    UnsupportedMediaType(String),
    /// 422: an idempotency key reused with another body.
    KeyReused,
    /// 409: the request conflicts with the database's rules (a restore that
    /// would break a foreign key).
    Conflict(String),
    /// 422: a backup that failed verification.
    Damaged(String),
    /// 408: the request body made no progress within the body timeout; the
    /// connection is closed, since the rest of the body may still come.
    RequestTimeout,
    /// 429: the client's key (or address) is over its rate; retry after
    /// this many seconds.
    RateLimited {
        /// When the next request would pass.
        retry_after_secs: u64,
    },
    /// 503: the server is serving as many requests as it may at once.
    Overloaded,
    /// 503: the database cannot be reached.
    Unavailable,
    /// 503 (`database_unavailable` too): the database answers but takes no
    /// writes (disk full or failing, read-only); nothing was changed.
    CannotWrite,
    /// 503: the storage (blob service or disk) failed or cannot be reached;
    /// nothing was changed. The cause goes to the log only.
    StorageUnavailable(String),
    /// 500; the cause goes to the log only.
    Internal(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // `Retry-After` for the answers that say "later": every 503 (5 s
        // unless the variant knows better) and 429.
        let mut retry_after = None;
        let mut close = false;
        let (status, code, message) = match self {
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, "bad_request", m),
            ApiError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing or invalid API key".to_owned(),
            ),
            ApiError::Forbidden => (
                StatusCode::FORBIDDEN,
                "forbidden",
                "this operation needs the admin key".to_owned(),
            ),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, "not_found", m),
            ApiError::TooLarge(m) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large", m),
            ApiError::UnsupportedMediaType(m) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                m,
            ),
            ApiError::KeyReused => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "the Idempotency-Key was already used with a different request".to_owned(),
            ),
            ApiError::Conflict(m) => (StatusCode::CONFLICT, "conflict", m),
            ApiError::Damaged(m) => (StatusCode::UNPROCESSABLE_ENTITY, "backup_damaged", m),
            ApiError::RequestTimeout => {
                close = true;
                (
                    StatusCode::REQUEST_TIMEOUT,
                    "request_timeout",
                    "the request body made no progress in time; nothing was changed".to_owned(),
                )
            }
            ApiError::RateLimited { retry_after_secs } => {
                retry_after = Some(retry_after_secs);
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    format!("too many requests; retry in {retry_after_secs} s"),
                )
            }
            ApiError::Overloaded => {
                retry_after = Some(1);
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "overloaded",
                    "the server is serving as many requests as it can; retry shortly".to_owned(),
                )
            }
            ApiError::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "database_unavailable",
                "the database is unavailable; retry later".to_owned(),
            ),
            ApiError::CannotWrite => (
                StatusCode::SERVICE_UNAVAILABLE,
                "database_unavailable",
                "the database takes no writes now (disk full or read-only); nothing was \
                 changed; retry later"
                    .to_owned(),
            ),
            ApiError::StorageUnavailable(cause) => {
                tracing::warn!(%cause, "storage unavailable");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "storage_unavailable",
                    "the storage is unavailable; nothing was changed; retry later".to_owned(),
                )
            }
            ApiError::Internal(cause) => {
                tracing::error!(%cause, "internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error; see the server log".to_owned(),
                )
            }
        };
        let body = ErrorBody {
            error: ErrorDetail { code, message },
        };
        let mut response = (status, axum::Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            retry_after = retry_after.or(Some(5));
        }
        let headers = response.headers_mut();
        if let Some(secs) = retry_after {
            headers.insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
        }
        if close {
            headers.insert(
                header::CONNECTION,
                header::HeaderValue::from_static("close"),
            );
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e.fault() {
            Fault::CannotWrite => {
                tracing::warn!(error = %e, "database takes no writes");
                ApiError::CannotWrite
            }
            // The credential's name and the fix go to the log; the token
            // never is in the error.
            Fault::Transient | Fault::Unavailable => {
                tracing::warn!(error = %e, "database unavailable");
                ApiError::Unavailable
            }
            Fault::Refused => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<IngestError> for ApiError {
    fn from(e: IngestError) -> Self {
        match e {
            IngestError::Empty | IngestError::Json(_) | IngestError::Csv(_) => {
                ApiError::BadRequest(e.to_string())
            }
            IngestError::TooMany(_) => ApiError::TooLarge(e.to_string()),
            IngestError::KeyReused => ApiError::KeyReused,
            IngestError::Store(s) => s.into(),
        }
    }
}

impl From<LoadError> for ApiError {
    fn from(e: LoadError) -> Self {
        match e {
            // Named by its path below the storage root: server paths stay private.
            LoadError::Storage(crate::storage::StorageError::NotFound { path, .. }) => {
                ApiError::NotFound(format!("{path} does not exist in the storage"))
            }
            LoadError::Storage(crate::storage::StorageError::BadUrl(_)) => {
                ApiError::BadRequest(e.to_string())
            }
            LoadError::Storage(s) => s.into(),
            // A storage failure mid-read is `LoadError::Storage` already.
            LoadError::Read { .. } => ApiError::Internal(e.to_string()),
            LoadError::Store { source, .. } => source.into(),
        }
    }
}

impl From<BackupError> for ApiError {
    fn from(e: BackupError) -> Self {
        match e {
            BackupError::BadName(_) => ApiError::BadRequest(e.to_string()),
            BackupError::NotFound(m) => ApiError::NotFound(m),
            BackupError::Damaged { .. } => ApiError::Damaged(e.to_string()),
            BackupError::Refused { .. } => ApiError::Conflict(e.to_string()),
            BackupError::Store(s) => s.into(),
            BackupError::Storage(s) => s.into(),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<crate::storage::StorageError> for ApiError {
    fn from(e: crate::storage::StorageError) -> Self {
        use crate::storage::StorageError;
        match e {
            StorageError::Exists(_) | StorageError::Changed(_) => ApiError::Conflict(e.to_string()),
            StorageError::BadUrl(_) => ApiError::BadRequest(e.to_string()),
            e if e.is_service() => ApiError::StorageUnavailable(e.to_string()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}
