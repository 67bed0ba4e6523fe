//! API keys: `HRMIG_API_KEY` for every route but health, `HRMIG_ADMIN_KEY`
//! for operations that change data in bulk (loads, backups, prunes,
//! restores, retries of the rejection log). Keys are compared as SHA-256 digests in constant time, so
//! neither timing nor length leaks.

use super::error::ApiError;
use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// The configured keys (digests only).
#[derive(Default)]
pub struct Keys {
    api: Option<[u8; 32]>,
    admin: Option<[u8; 32]>,
}

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

impl Keys {
    /// Keys from their values; empty strings count as unset.
    pub fn new(api: Option<&str>, admin: Option<&str>) -> Keys {
        let set = |k: Option<&str>| k.filter(|k| !k.is_empty()).map(digest);
        Keys {
            api: set(api),
            admin: set(admin),
        }
    }

    /// Keys from `HRMIG_API_KEY` and `HRMIG_ADMIN_KEY`.
    pub fn from_env() -> Keys {
        let api = std::env::var("HRMIG_API_KEY").ok();
        let admin = std::env::var("HRMIG_ADMIN_KEY").ok();
        Keys::new(api.as_deref(), admin.as_deref())
    }

    /// Whether any key is set (without one, every route is open).
    pub fn configured(&self) -> bool {
        self.api.is_some() || self.admin.is_some()
    }

    fn matches(stored: &[u8; 32], presented: &[u8; 32]) -> bool {
        stored.ct_eq(presented).into()
    }
}

/// The digest of the key a request presents, if any.
pub(super) fn presented(req: &Request) -> Option<[u8; 32]> {
    let h = req.headers();
    if let Some(v) = h.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(digest(v));
    }
    let auth = h.get("authorization")?.to_str().ok()?;
    let token = auth
        .strip_prefix("Bearer ")
        .or_else(|| auth.strip_prefix("bearer "))?;
    Some(digest(token.trim()))
}

/// Routes that need the admin key when one is set.
fn is_admin(method: &Method, path: &str) -> bool {
    method == Method::POST
        && (path == "/api/loads"
            || path == "/api/backups"
            || path == "/api/backups/prune"
            || path == "/api/rejections/retry"
            || path.ends_with("/restore")
            || (path.starts_with("/api/loads/")
                && (path.ends_with("/run") || path.ends_with("/undo"))))
}

/// Answers 401 (no valid key) or 403 (not the admin key) before the route
/// runs; `/api/health`, the console's files and a server without keys are
/// open.
pub(super) async fn require_key(
    State(keys): State<Arc<Keys>>,
    req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path();
    if path == "/api/health"
        || super::routes::console::is_console(path)
        || (keys.api.is_none() && keys.admin.is_none())
    {
        return next.run(req).await;
    }
    let given = presented(&req);
    let admin_route = is_admin(req.method(), path);
    let is = |k: &Option<[u8; 32]>| match (k, &given) {
        (Some(k), Some(g)) => Keys::matches(k, g),
        _ => false,
    };
    let admin_ok = is(&keys.admin) || (keys.admin.is_none() && is(&keys.api));
    let api_ok = is(&keys.api) || is(&keys.admin);
    if admin_route {
        if admin_ok {
            next.run(req).await
        } else if api_ok {
            ApiError::Forbidden.into_response()
        } else {
            ApiError::Unauthorized.into_response()
        }
    } else if keys.api.is_none() || api_ok {
        next.run(req).await
    } else {
        ApiError::Unauthorized.into_response()
    }
}
