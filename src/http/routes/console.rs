//! `/api/console/`: the operator console, a page and its scripts compiled
//! into the binary from `assets/console/` (no network at run time, no
//! build step). It is served outside the API key: the page asks for the
//! key when the API answers 401, and uses the same API as every client.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

/// Where the console lives.
pub(in crate::http) const HOME: &str = "/api/console/";

/// Whether a path is the console's (open without a key; a standalone
/// server's `/` is mounted outside the key check).
pub(in crate::http) fn is_console(path: &str) -> bool {
    path == "/api/console" || path.starts_with(HOME)
}

/// A file of the console.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
    /// Its path names its version (vendored code): cached for good.
    versioned: bool,
}

macro_rules! asset {
    ($path:literal, $type:literal, $versioned:literal) => {
        Asset {
            path: $path,
            content_type: $type,
            body: include_bytes!(concat!("../../../assets/console/", $path)),
            versioned: $versioned,
        }
    };
}

const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8", false),
    asset!("console.css", "text/css; charset=utf-8", false),
    asset!("console.js", "text/javascript; charset=utf-8", false),
    asset!(
        "vendor/uplot-1.6.32/uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        true
    ),
    asset!(
        "vendor/uplot-1.6.32/uPlot.min.css",
        "text/css; charset=utf-8",
        true
    ),
];

/// Scripts and styles only from the server, no inline code, no frames:
/// a value that slipped into the page as markup could not run.
const POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

pub(in crate::http) fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        // The page's own links are relative to the folder.
        .route("/api/console", get(|| async { Redirect::permanent(HOME) }))
        .route(HOME, get(|| async { serve("index.html") }))
        .route("/api/console/{*path}", get(file))
}

/// A standalone server's root, which leads to the console (under the
/// Functions host `/` is the host's readiness probe, and only `/api/…` is
/// forwarded).
pub(in crate::http) fn root<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route("/", get(|| async { Redirect::to(HOME) }))
}

async fn file(Path(path): Path<String>) -> Response {
    serve(&path)
}

fn serve(path: &str) -> Response {
    let Some(asset) = ASSETS.iter().find(|a| a.path == path) else {
        return (StatusCode::NOT_FOUND, "no such file in the console").into_response();
    };
    let cache = if asset.versioned {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let mut response = (
        [
            (header::CONTENT_TYPE, asset.content_type),
            (header::CACHE_CONTROL, cache),
        ],
        asset.body,
    )
        .into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_the_page_names_is_served() {
        let page = std::str::from_utf8(ASSETS[0].body).unwrap();
        let mut named = 0;
        for attr in ["src=\"", "href=\""] {
            for part in page.split(attr).skip(1) {
                let target = part.split('"').next().unwrap();
                if target.starts_with('#') || target.starts_with("data:") {
                    continue;
                }
                named += 1;
                assert!(
                    ASSETS.iter().any(|a| a.path == target),
                    "index.html names {target}, which is not served"
                );
            }
        }
        assert!(named >= 4, "the page names {named} files");
    }

    #[test]
    fn console_paths_are_open_and_others_are_not() {
        assert!(is_console("/api/console"));
        assert!(is_console("/api/console/console.js"));
        assert!(!is_console("/api/consoles"));
        assert!(!is_console("/"));
        assert!(!is_console("/api/tables"));
    }
}
