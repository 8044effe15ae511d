//! The web page's routes: served without a credential, with their content types, the page
//! with its Content-Security-Policy; and none of them in the OpenAPI document (they are
//! not API routes). The page itself is tested in a browser by tests/tests/web.rs.

use reqwest::StatusCode;
use serde_json::Value;
use taskflow_producer::web::CONTENT_SECURITY_POLICY;

use crate::helpers::spawn_app;

#[tokio::test]
async fn the_page_and_its_assets_are_served_with_their_headers() {
    let app = spawn_app().await;
    for (path, content_type) in [
        ("/", "text/html; charset=utf-8"),
        ("/app/app.js", "text/javascript; charset=utf-8"),
        ("/app/app.css", "text/css; charset=utf-8"),
        ("/app/icon.svg", "image/svg+xml"),
    ] {
        let r = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        let h = r.headers();
        assert_eq!(h["content-type"], content_type, "{path}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
        if path == "/" {
            assert_eq!(h["content-security-policy"], CONTENT_SECURITY_POLICY);
            let body = r.text().await.unwrap();
            // Everything the page loads is one of the routes above (no inline code).
            assert!(body.contains(r#"<script type="module" src="/app/app.js"></script>"#));
            assert!(body.contains(r#"<link rel="stylesheet" href="/app/app.css">"#));
            assert!(!body.contains("style="), "no inline style");
        }
    }
    // Other paths keep the API's problem+json 404.
    let r = app
        .client
        .get(app.url("/app/nope.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_page_routes_are_not_in_the_openapi_document() {
    let app = spawn_app().await;
    let doc: Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let paths = doc["paths"].as_object().unwrap();
    for path in ["/", "/app/app.js", "/app/app.css", "/app/icon.svg"] {
        assert!(!paths.contains_key(path), "{path}");
    }
    // `?last_event_id=` is documented on the SSE stream as on the WebSocket.
    let params = doc["paths"]["/feed/stream"]["get"]["parameters"]
        .as_array()
        .unwrap();
    assert!(params
        .iter()
        .any(|p| p["name"] == "last_event_id" && p["in"] == "query"));
}
