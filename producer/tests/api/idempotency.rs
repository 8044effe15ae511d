use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_problem, spawn_app, TestApp};

async fn post_with_key(app: &TestApp, token: &str, key: &str, body: &str) -> reqwest::Response {
    app.req(reqwest::Method::POST, "/tasks", token)
        .header("idempotency-key", key)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn retry_with_same_key_replays_and_creates_once() {
    let app = spawn_app().await;
    let (_, token) = app.new_user().await;
    let r1 = post_with_key(&app, &token, "key-1", r#"{"title": "once", "tags": ["a"]}"#).await;
    assert_eq!(r1.status(), StatusCode::CREATED);
    let b1: Value = r1.json().await.unwrap();
    // the same JSON, formatted differently, is the same request
    let r2 = post_with_key(
        &app,
        &token,
        "key-1",
        "{\"tags\":[\"a\"],\n \"title\":\"once\"}",
    )
    .await;
    assert_eq!(r2.status(), StatusCode::CREATED);
    assert_eq!(r2.headers()["idempotent-replayed"], "true");
    assert_eq!(r2.headers()["etag"], "\"1\"");
    let b2: Value = r2.json().await.unwrap();
    assert_eq!(b1, b2);
    assert_eq!(app.task_count().await, 1);
    let rows = app.outbox().await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].event_type, "TaskCreated");

    // same key, different body: refused, nothing written
    let r3 = post_with_key(&app, &token, "key-1", r#"{"title": "different"}"#).await;
    assert_problem(r3, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(app.task_count().await, 1);
    assert_eq!(app.outbox().await.len(), 1);

    // keys are per user
    let (_, other) = app.new_user().await;
    let r4 = post_with_key(&app, &other, "key-1", r#"{"title": "different"}"#).await;
    assert_eq!(r4.status(), StatusCode::CREATED);
    assert_eq!(app.task_count().await, 2);
}

#[tokio::test]
async fn concurrent_retries_create_one_task() {
    let app = spawn_app().await;
    let (_, token) = app.new_user().await;
    let body = r#"{"title": "raced"}"#;
    let results =
        futures::future::join_all((0..6).map(|_| post_with_key(&app, &token, "race-key", body)))
            .await;
    let mut ids = Vec::new();
    for r in results {
        assert_eq!(r.status(), StatusCode::CREATED);
        let b: Value = r.json().await.unwrap();
        ids.push(b["id"].as_str().unwrap().to_owned());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "every retry answers the same task");
    assert_eq!(app.task_count().await, 1);
    assert_eq!(app.outbox().await.len(), 1);
}

#[tokio::test]
async fn invalid_body_with_key_stores_nothing() {
    let app = spawn_app().await;
    let (_, token) = app.new_user().await;
    let r = post_with_key(&app, &token, "k", r#"{"title": ""}"#).await;
    assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY).await;
    app.assert_nothing_written().await;
    // the key is still free for a corrected request
    let r = post_with_key(&app, &token, "k", r#"{"title": "fixed"}"#).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let bad_key = post_with_key(
        &app,
        &token,
        &"x".repeat(300),
        &json!({"title": "t"}).to_string(),
    )
    .await;
    assert_problem(bad_key, StatusCode::BAD_REQUEST).await;
}
