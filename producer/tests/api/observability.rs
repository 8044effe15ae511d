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

/// What a generated client or a fuzzer relies on: every status a route can
/// give, refused unknown fields, bounded parameters, entity tags, security.
#[tokio::test]
async fn openapi_document_is_exact_where_clients_rely_on_it() {
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
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            let responses = op["responses"].as_object().unwrap();
            for status in ["500", "503"] {
                assert!(
                    responses.contains_key(status),
                    "{method} {path} lacks {status}"
                );
            }
            let public = path.starts_with("/auth/");
            assert_eq!(
                op["security"].is_array(),
                !public,
                "{method} {path} security"
            );
            if !public {
                assert!(responses.contains_key("401"), "{method} {path} lacks 401");
                // A personal access token without the route's scope.
                assert!(responses.contains_key("403"), "{method} {path} lacks 403");
            } else {
                assert!(responses.contains_key("429"), "{method} {path} lacks 429");
            }
            if op.get("requestBody").is_some() {
                for status in ["400", "413", "415", "422"] {
                    assert!(
                        responses.contains_key(status),
                        "{method} {path} lacks {status}"
                    );
                }
            }
        }
    }
    let schemas = &doc["components"]["schemas"];
    assert_eq!(schemas["PatchTaskRequest"]["additionalProperties"], false);
    for branch in schemas["CreateTaskRequest"]["anyOf"].as_array().unwrap() {
        assert_eq!(branch["additionalProperties"], false);
    }
    assert_eq!(schemas["RecurrenceRequest"]["additionalProperties"], false);
    let token_request = &schemas["CreateAccessTokenRequest"];
    assert_eq!(token_request["additionalProperties"], false);
    assert_eq!(
        token_request["properties"]["scopes"]["items"]["enum"],
        serde_json::json!(["tasks:read", "tasks:write", "notifications:read"])
    );
    assert_eq!(
        token_request["properties"]["expires_in_days"]["maximum"],
        366
    );

    let params = |path: &str, method: &str| -> Vec<Value> {
        doc["paths"][path][method]["parameters"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    let param = |path: &str, method: &str, name: &str| -> Value {
        params(path, method)
            .into_iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{method} {path} has no {name}"))
    };
    for (path, method) in [("/tasks", "get"), ("/audit", "get")] {
        let limit = param(path, method, "limit");
        assert_eq!(limit["schema"]["minimum"], 1);
        assert_eq!(limit["schema"]["maximum"], 200);
    }
    assert_eq!(
        param("/tasks", "get", "due_after")["schema"]["format"],
        "date-time"
    );
    assert_eq!(
        param("/tasks/{id}", "get", "id")["schema"]["format"],
        "uuid"
    );
    assert_eq!(
        param("/tokens/{id}", "delete", "id")["description"],
        "Personal access token id"
    );
    for (path, method) in [
        ("/tasks/{id}", "patch"),
        ("/tasks/{id}", "delete"),
        ("/tasks/{id}/complete", "post"),
        ("/tasks/{id}/reopen", "post"),
    ] {
        let if_match = param(path, method, "If-Match");
        assert!(if_match["description"]
            .as_str()
            .unwrap()
            .contains("Entity tag"));
        assert!(if_match["schema"]["pattern"].is_string());
    }
    for (path, method) in [
        ("/tasks", "post"),
        ("/tasks/{id}/complete", "post"),
        ("/tasks/{id}/reopen", "post"),
    ] {
        param(path, method, "Idempotency-Key");
    }
    // Recurrence: DELETE's scope, and a body without due_at admits only from_completion.
    assert_eq!(
        param("/tasks/{id}", "delete", "scope")["schema"]["enum"],
        serde_json::json!(["instance", "series"])
    );
    let from_completion = &schemas["RecurrenceFromCompletionRequest"];
    assert_eq!(from_completion["additionalProperties"], false);
    assert_eq!(
        from_completion["properties"]["mode"]["const"],
        "from_completion"
    );
    assert_eq!(
        schemas["RecurrenceRequest"]["properties"]["exdates"]["maxItems"],
        100
    );
}
