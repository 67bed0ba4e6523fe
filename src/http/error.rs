//! The one place where errors become HTTP responses: stable `code` strings,
//! and opaque 5xx bodies (the cause is logged by the trace layer, never
//! sent). The error answers that several routes document are declared here
//! once, for the OpenAPI document ([`documented`]).

use crate::ops::backup::BackupError;
use crate::ops::ingest::IngestError;
use crate::ops::load::LoadError;
use crate::store::{Fault, StoreError};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use tracing::Level;

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

/// The error answers several routes document, declared once here: a path
/// lists them by name beside its own rows (`responses((status = 200, …),
/// Unauthorized, DatabaseUnavailable)`), and each is the [`ErrorBody`] with
/// its status and description.
pub mod documented {
    macro_rules! error_answers {
        ($($name:ident: $status:tt, $description:tt;)*) => {$(
            #[doc = concat!($status, ": ", $description, ".")]
            #[derive(utoipa::IntoResponses)]
            #[response(status = $status, description = $description)]
            pub struct $name(pub super::ErrorBody);
        )*};
    }

    error_answers! {
        Malformed: 400, "Malformed request";
        BadBackupName: 400, "Malformed request or backup name";
        Unauthorized: 401, "Missing or wrong API key";
        Forbidden: 403, "Needs the admin key";
        UnknownTable: 404, "Unknown table";
        NoSuchBackup: 404, "Unknown table or backup";
        NoSuchJob: 404, "No such job";
        TooManyRows: 413, "More than 1000 rows or body too large";
        WouldOrphanRows: 409, "Would break a foreign key; table unchanged";
        KeyReused: 422, "Idempotency-Key reused with another body";
        BackupDamaged: 422, "The backup is damaged; table unchanged";
        DatabaseUnavailable: 503, "Database unavailable";
    }
}

/// An error of the HTTP door. Its text is the message the client gets:
/// a 5xx's cause goes to the log only (`ApiError::cause`).
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 with a message for the client.
    #[error("{0}")]
    BadRequest(String),
    /// 401; the body never says which part was wrong.
    #[error("missing or invalid API key")]
    Unauthorized,
    /// 403: the route needs the admin key.
    #[error("this operation needs the admin key")]
    Forbidden,
    /// 404.
    #[error("{0}")]
    NotFound(String),
    /// 413.
    #[error("{0}")]
    TooLarge(String),
    /// 415.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 422: an idempotency key reused with another body.
    #[error("the Idempotency-Key was already used with a different request")]
    KeyReused,
    /// 409: the request conflicts with the database's rules (a restore that
    /// would break a foreign key).
    #[error("{0}")]
    Conflict(String),
    /// 422: a backup that failed verification.
    #[error("{0}")]
    Damaged(String),
    /// 408: the request body made no progress within the body timeout; the
    /// connection is closed, since the rest of the body may still come.
    #[error("the request body made no progress in time; nothing was changed")]
    RequestTimeout,
    /// 429: the client's key (or address) is over its rate; retry after
    /// this many seconds.
    #[error("too many requests; retry in {retry_after_secs} s")]
    RateLimited {
        /// When the next request would pass.
        retry_after_secs: u64,
    },
    /// 503: the server is serving as many requests as it may at once.
    #[error("the server is serving as many requests as it can; retry shortly")]
    Overloaded,
    /// 503: the database cannot be reached; the cause goes to the log only.
    #[error("the database is unavailable; retry later")]
    Unavailable(String),
    /// 503 (`database_unavailable` too): the database answers but takes no
    /// writes (disk full or failing, read-only); nothing was changed. The
    /// cause goes to the log only.
    #[error(
        "the database takes no writes now (disk full or read-only); nothing was changed; retry later"
    )]
    CannotWrite(String),
    /// 503: the storage (blob service or disk) failed or cannot be reached;
    /// nothing was changed. The cause goes to the log only.
    #[error("the storage is unavailable; nothing was changed; retry later")]
    StorageUnavailable(String),
    /// 500; the cause goes to the log only.
    #[error("internal error; see the server log")]
    Internal(String),
}

impl ApiError {
    /// The status and the stable code.
    fn status(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            ApiError::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            ApiError::KeyReused => (StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::Damaged(_) => (StatusCode::UNPROCESSABLE_ENTITY, "backup_damaged"),
            ApiError::RequestTimeout => (StatusCode::REQUEST_TIMEOUT, "request_timeout"),
            ApiError::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ApiError::Overloaded => (StatusCode::SERVICE_UNAVAILABLE, "overloaded"),
            ApiError::Unavailable(_) | ApiError::CannotWrite(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "database_unavailable")
            }
            ApiError::StorageUnavailable(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable")
            }
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }

    /// `Retry-After` for the answers that say "later": 429, and every 503
    /// (5 s unless the variant knows better).
    fn retry_after_secs(&self) -> Option<u64> {
        match self {
            ApiError::RateLimited { retry_after_secs } => Some(*retry_after_secs),
            ApiError::Overloaded => Some(1),
            ApiError::Unavailable(_)
            | ApiError::CannotWrite(_)
            | ApiError::StorageUnavailable(_) => Some(5),
            _ => None,
        }
    }

    /// What the server's log says about it: the cause, which the client
    /// never sees.
    fn cause(self) -> Option<ErrorCause> {
        let (level, what, cause) = match self {
            ApiError::Unavailable(cause) => (Level::WARN, "database unavailable", cause),
            ApiError::CannotWrite(cause) => (Level::WARN, "database takes no writes", cause),
            ApiError::StorageUnavailable(cause) => (Level::WARN, "storage unavailable", cause),
            ApiError::Internal(cause) => (Level::ERROR, "internal error", cause),
            _ => return None,
        };
        Some(ErrorCause { level, what, cause })
    }
}

/// A response extension: why a request failed on the server's side. The
/// request's trace layer logs it, in the request's span.
#[derive(Debug, Clone)]
pub struct ErrorCause {
    level: Level,
    what: &'static str,
    cause: String,
}

impl ErrorCause {
    /// Logs the cause at its level.
    pub fn log(&self) {
        let (what, cause) = (self.what, &self.cause);
        match self.level {
            Level::ERROR => tracing::error!(%cause, "{what}"),
            _ => tracing::warn!(%cause, "{what}"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status();
        let message = self.to_string();
        let retry_after = self.retry_after_secs();
        // The rest of a stalled body may still come: the connection cannot
        // carry another request.
        let close = matches!(self, ApiError::RequestTimeout);
        let body = ErrorBody {
            error: ErrorDetail { code, message },
        };
        let mut response = (status, axum::Json(body)).into_response();
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
        if let Some(cause) = self.cause() {
            response.extensions_mut().insert(cause);
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e.fault() {
            Fault::CannotWrite => ApiError::CannotWrite(e.to_string()),
            // The credential's name and the fix go to the log; the token
            // never is in the error.
            Fault::Transient | Fault::Unavailable => ApiError::Unavailable(e.to_string()),
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
            BackupError::BadName(_) | BackupError::BadRetention(_) => {
                ApiError::BadRequest(e.to_string())
            }
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
