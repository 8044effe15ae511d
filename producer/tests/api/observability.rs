use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::spawn_app;

#[tokio::test]
async fn openapi_document_describes_the_api() {
    let app = spawn_app().await;
    let r = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let doc: Value = r.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/auth/signup",
        "/auth/login",
        "/tasks",
        "/tasks/{id}",
        "/tasks/{id}/complete",
        "/tasks/{id}/reopen",
    ] {
        assert!(paths.contains_key(p), "{p} missing");
    }
    assert!(doc["paths"]["/tasks/{id}"]["patch"].is_object());
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert!(doc["components"]["schemas"]["Problem"].is_object());
}

#[tokio::test]
async fn http_metrics_use_route_templates() {
    let app = spawn_app().await;
    let (_, token) = app.new_user().await;
    let t = app.create_ok(&token, json!({"title": "m"})).await;
    app.get_task(&token, t["id"].as_str().unwrap()).await;
    app.client
        .get(app.url("/no/such/path"))
        .send()
        .await
        .unwrap();

    let families = app.registry.gather();
    let requests = families
        .iter()
        .find(|f| f.name() == "http_requests_total")
        .expect("http_requests_total registered");
    let labels: Vec<(String, String, String)> = requests
        .get_metric()
        .iter()
        .map(|m| {
            let get = |n: &str| {
                m.get_label()
                    .iter()
                    .find(|l| l.name() == n)
                    .map(|l| l.value().to_owned())
                    .unwrap_or_default()
            };
            (get("route"), get("method"), get("status"))
        })
        .collect();
    assert!(
        labels.contains(&("/tasks/{id}".into(), "GET".into(), "200".into())),
        "{labels:?}"
    );
    assert!(
        labels.contains(&("/tasks".into(), "POST".into(), "201".into())),
        "{labels:?}"
    );
    assert!(
        labels.contains(&("unmatched".into(), "GET".into(), "404".into())),
        "{labels:?}"
    );
    assert!(labels
        .iter()
        .all(|(route, _, _)| !route.contains(t["id"].as_str().unwrap())));
    assert!(families
        .iter()
        .any(|f| f.name() == "http_request_duration_seconds"));
}
