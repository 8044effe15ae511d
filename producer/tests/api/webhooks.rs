//! The webhook endpoint routes: registration with the strict target policy (https only, no
//! internal address, also behind a name), secrets shown once, rotation, test deliveries,
//! the delivery log, ownership and the login-token-only rule. Sending is the notifier's
//! and is tested end to end in `tests/tests/webhooks.rs`.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{assert_problem, spawn_app, spawn_app_with, TestApp};

async fn create(app: &TestApp, token: &str, body: Value) -> reqwest::Response {
    app.req(Method::POST, "/webhooks", token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn internal_and_plain_http_targets_are_refused_unless_allowed() {
    let app = spawn_app().await;
    let (_, token) = app.new_user().await;
    for url in [
        "http://hooks.example.com/t",
        "https://127.0.0.1/t",
        "https://10.0.0.8/t",
        "https://[::1]/t",
        "https://169.254.169.254/latest/meta-data",
        "https://[::ffff:192.168.0.1]/t",
        "https://localhost:8443/t",
        "https://user:pw@hooks.example.com/t",
        "ftp://hooks.example.com/t",
        "not a url",
    ] {
        let r = create(&app, &token, json!({ "url": url })).await;
        let problem = assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(problem["errors"][0]["field"], "url", "{url}: {problem}");
    }
    let r = create(
        &app,
        &token,
        json!({"url": "https://127.0.0.1/t", "extra": 1}),
    )
    .await;
    let problem = assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(problem["errors"].as_array().unwrap().len(), 2, "{problem}");

    let dev = spawn_app_with(
        |s| s.webhook_allow_private = true,
        taskflow_producer::app::routes(),
    )
    .await;
    let (_, token) = dev.new_user().await;
    let r = create(&dev, &token, json!({"url": "http://127.0.0.1:9/hook"})).await;
    assert_eq!(r.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn an_endpoint_is_created_listed_rotated_tested_and_deleted_by_its_owner_only() {
    let app = spawn_app().await;
    let (_, token) = app.new_user().await;
    let (_, other) = app.new_user().await;
    let r = create(
        &app,
        &token,
        json!({"url": "https://hooks.example.com/taskflow", "description": "home"}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let created: Value = r.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/webhooks/{id}"));
    assert!(created["secret"].as_str().unwrap().starts_with("whsec_"));
    assert_eq!(created["enabled"], true);

    let list: Value = app
        .req(Method::GET, "/webhooks", &token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert!(
        list["items"][0].get("secret").is_none(),
        "never listed: {list}"
    );
    let theirs: Value = app
        .req(Method::GET, "/webhooks", &other)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(theirs["items"], json!([]));

    // Another user's id is a 404 on every route.
    for (method, path) in [
        (Method::DELETE, format!("/webhooks/{id}")),
        (Method::POST, format!("/webhooks/{id}/test")),
        (Method::POST, format!("/webhooks/{id}/enable")),
        (Method::GET, format!("/webhooks/{id}/deliveries")),
    ] {
        let r = app.req(method, &path, &other).send().await.unwrap();
        assert_problem(r, StatusCode::NOT_FOUND).await;
    }
    let r = app
        .req(
            Method::POST,
            &format!("/webhooks/{id}/rotate-secret"),
            &other,
        )
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_problem(r, StatusCode::NOT_FOUND).await;

    let r = app
        .req(
            Method::POST,
            &format!("/webhooks/{id}/rotate-secret"),
            &token,
        )
        .json(&json!({"overlap_seconds": 60}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let rotated: Value = r.json().await.unwrap();
    assert_ne!(rotated["secret"], created["secret"]);
    let r = app
        .req(
            Method::POST,
            &format!("/webhooks/{id}/rotate-secret"),
            &token,
        )
        .json(&json!({"overlap_seconds": 10_000_000}))
        .send()
        .await
        .unwrap();
    assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY).await;

    let r = app
        .req(Method::POST, &format!("/webhooks/{id}/test"), &token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let queued: Value = r.json().await.unwrap();
    let log: Value = app
        .req(Method::GET, &format!("/webhooks/{id}/deliveries"), &token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let item = &log["items"][0];
    assert_eq!(item["id"], queued["delivery_id"]);
    assert_eq!(item["webhook_id"], queued["webhook_id"]);
    assert_eq!(item["type"], "webhook.test");
    assert_eq!(item["state"], "pending");
    assert_eq!(item["attempts"], json!([]));

    let r = app
        .req(Method::DELETE, &format!("/webhooks/{id}"), &token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let state: String = sqlx::query_scalar("SELECT state FROM deliveries")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(
        state, "cancelled",
        "a deleted endpoint receives nothing more"
    );
    let r = app
        .req(Method::DELETE, &format!("/webhooks/{id}"), &token)
        .send()
        .await
        .unwrap();
    assert_problem(r, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn webhooks_are_managed_with_the_login_token_only() {
    let app = spawn_app().await;
    let (_, login) = app.new_user().await;
    let r = app
        .req(Method::POST, "/tokens", &login)
        .json(&json!({"name": "script", "scopes": ["tasks:read", "tasks:write", "notifications:read"]}))
        .send()
        .await
        .unwrap();
    let pat: Value = r.json().await.unwrap();
    let pat = pat["token"].as_str().unwrap();
    let r = create(&app, pat, json!({"url": "https://hooks.example.com/t"})).await;
    assert_problem(r, StatusCode::FORBIDDEN).await;
    let r = app.req(Method::GET, "/webhooks", pat).send().await.unwrap();
    assert_problem(r, StatusCode::FORBIDDEN).await;
}
