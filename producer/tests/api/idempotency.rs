use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_problem, spawn_app, spawn_app_with, TestApp};

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
    let p = assert_problem(r3, StatusCode::CONFLICT).await;
    assert_eq!(p["type"], "urn:taskflow:problem:idempotency-key-reused");
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

#[tokio::test]
async fn an_expired_key_is_treated_as_new() {
    let app = spawn_app().await;
    let (_, token) = app.new_user().await;
    let r = post_with_key(&app, &token, "old-key", r#"{"title": "first"}"#).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    // 25 hours ago: past the default 24 h
    sqlx::query("UPDATE idempotency_keys SET created_at = now() - interval '25 hours'")
        .execute(&app.pool)
        .await
        .unwrap();
    // a different body is not a reuse once the key expired; it creates
    let r = post_with_key(&app, &token, "old-key", r#"{"title": "second"}"#).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert!(r.headers().get("idempotent-replayed").is_none());
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["title"], "second");
    assert_eq!(app.task_count().await, 2);
    assert_eq!(app.outbox().await.len(), 2);
    // and the key is live again: a retry now replays the second
    let r = post_with_key(&app, &token, "old-key", r#"{"title": "second"}"#).await;
    assert_eq!(r.headers()["idempotent-replayed"], "true");
    assert_eq!(app.task_count().await, 2);
}

#[tokio::test]
async fn a_short_ttl_expires_keys_and_old_rows_are_purged() {
    let app = spawn_app_with(
        |s| s.idempotency_ttl = std::time::Duration::from_secs(1),
        taskflow_producer::app::routes(),
    )
    .await;
    let (_, token) = app.new_user().await;
    let r = post_with_key(&app, &token, "k", r#"{"title": "a"}"#).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    // the background purge runs every min(ttl, 1 h): wait for the row to go
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM idempotency_keys")
            .fetch_one(&app.pool)
            .await
            .unwrap();
        if n == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "expired key never purged"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let r = post_with_key(&app, &token, "k", r#"{"title": "a"}"#).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert!(r.headers().get("idempotent-replayed").is_none());
    assert_eq!(app.task_count().await, 2);
}

async fn action_with_key(
    app: &TestApp,
    token: &str,
    id: &str,
    action: &str,
    key: &str,
) -> reqwest::Response {
    app.req(
        reqwest::Method::POST,
        &format!("/tasks/{id}/{action}"),
        token,
    )
    .header("idempotency-key", key)
    .send()
    .await
    .unwrap()
}

#[tokio::test]
async fn complete_and_reopen_honour_idempotency_keys() {
    let app = spawn_app().await;
    let (_, token) = app.new_user().await;
    let t = app.create_ok(&token, json!({"title": "t"})).await;
    let id = t["id"].as_str().unwrap();

    let r1 = action_with_key(&app, &token, id, "complete", "c-1").await;
    assert_eq!(r1.status(), StatusCode::OK);
    let b1: Value = r1.json().await.unwrap();
    // without the key the retry would be a 409; with it, the stored answer
    let r2 = action_with_key(&app, &token, id, "complete", "c-1").await;
    assert_eq!(r2.status(), StatusCode::OK);
    assert_eq!(r2.headers()["idempotent-replayed"], "true");
    assert_eq!(r2.headers()["etag"], "\"2\"");
    assert_eq!(r2.json::<Value>().await.unwrap(), b1);
    let types: Vec<String> = app
        .outbox()
        .await
        .into_iter()
        .map(|r| r.event_type)
        .collect();
    assert_eq!(types, ["TaskCreated", "TaskCompleted"], "no second event");

    // the same key on another action is a reuse, refused, nothing written
    let r = action_with_key(&app, &token, id, "reopen", "c-1").await;
    let p = assert_problem(r, StatusCode::CONFLICT).await;
    assert_eq!(p["type"], "urn:taskflow:problem:idempotency-key-reused");
    assert_eq!(app.outbox().await.len(), 2);

    let r = action_with_key(&app, &token, id, "reopen", "r-1").await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = action_with_key(&app, &token, id, "reopen", "r-1").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["idempotent-replayed"], "true");
    let types: Vec<String> = app
        .outbox()
        .await
        .into_iter()
        .map(|r| r.event_type)
        .collect();
    assert_eq!(types, ["TaskCreated", "TaskCompleted", "TaskReopened"]);

    // a failed transition stores nothing: the key stays free
    let r = action_with_key(&app, &token, id, "reopen", "r-2").await;
    assert_problem(r, StatusCode::CONFLICT).await;
    let r = action_with_key(&app, &token, id, "complete", "r-2").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers().get("idempotent-replayed").is_none());
}

#[tokio::test]
async fn concurrent_completes_with_one_key_complete_once() {
    let app = spawn_app().await;
    let (_, token) = app.new_user().await;
    let t = app.create_ok(&token, json!({"title": "t"})).await;
    let id = t["id"].as_str().unwrap().to_owned();
    let results = futures::future::join_all(
        (0..6).map(|_| action_with_key(&app, &token, &id, "complete", "race")),
    )
    .await;
    for r in results {
        assert_eq!(r.status(), StatusCode::OK);
    }
    assert_eq!(app.outbox().await.len(), 2);
}
