//! The web page for people: one HTML page, one ES module and one stylesheet, embedded in
//! the binary so the API serves them with no build step and no Node at runtime.
//!
//! These routes are not API routes: they are kept out of the OpenAPI document (no
//! `utoipa::path`) and need no credential (the page itself logs in through the API). The
//! page gets a strict Content-Security-Policy: everything comes from this origin, no inline
//! script or style, so an injected task title can never run as code.

use axum::{
    http::{header, HeaderName, HeaderValue},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};

use crate::app::AppState;

const INDEX_HTML: &str = include_str!("index.html");
const APP_JS: &str = include_str!("app.js");
const APP_CSS: &str = include_str!("app.css");
const ICON_SVG: &str = include_str!("icon.svg");

/// The page's Content-Security-Policy (see the module docs).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
     form-action 'self'";

/// `GET /`, `GET /app/app.js`, `GET /app/app.css`, `GET /app/icon.svg` (named by the page,
/// so browsers do not ask for a `/favicon.ico` that would 404).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/app/app.js", get(app_js))
        .route("/app/app.css", get(app_css))
        .route("/app/icon.svg", get(icon_svg))
}

/// `body` as `content_type` with the headers every asset carries. `no-cache` (revalidate)
/// rather than a long max-age: the assets have no content hash in their names, so a new
/// release must not be shadowed by a stale cached script.
fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut resp = body.into_response();
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

async fn index() -> Response {
    let mut resp = asset("text/html; charset=utf-8", INDEX_HTML);
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    // Older browsers that ignore `frame-ancestors`.
    headers.insert(
        HeaderName::from_static("x-frame-options"),
        HeaderValue::from_static("DENY"),
    );
    resp
}

async fn app_js() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

async fn app_css() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}

async fn icon_svg() -> Response {
    asset("image/svg+xml", ICON_SVG)
}
