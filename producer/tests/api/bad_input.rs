//! Every bad request: a clear 4xx problem, and not one row written.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_problem, error_fields, spawn_app};

/// POSTs `body` as a task and expects a 422 naming exactly `fields`.
async fn expect_422(body: Value, fields: &[&str]) {
    let app = spawn_app().await;
    let (_, token) = app.new_user().await;
    let r = app.create_task(&token, body).await;
    let p = assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(error_fields(&p), fields);
    for e in p["errors"].as_array().unwrap() {
        assert!(!e["reason"].as_str().unwrap().is_empty());
    }
    app.assert_nothing_written().await;
}

#[tokio::test]
async fn malformed_json_is_400() {
    let app = spawn_app().await;
    let (_, token) = app.new_user().await;
    let r = app
        .req(reqwest::Method::POST, "/tasks", &token)
        .header("content-type", "application/json")
        .body(r#"{"title": "unterminated"#)
        .send()
        .await
        .unwrap();
    let p = assert_problem(r, StatusCode::BAD_REQUEST).await;
    assert!(p["detail"].as_str().unwrap().contains("JSON"));
    app.assert_nothing_written().await;
}

#[tokio::test]
async fn wrong_content_type_is_415() {
    let app = spawn_app().await;
    let (_, token) = app.new_user().await;
    let r = app
        .req(reqwest::Method::POST, "/tasks", &token)
        .header("content-type", "text/plain")
        .body(r#"{"title": "x"}"#)
        .send()
        .await
        .unwrap();
    assert_problem(r, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    app.assert_nothing_written().await;
}

#[tokio::test]
async fn ten_megabyte_body_is_413() {
    let app = spawn_app().await;
    let (_, token) = app.new_user().await;
    let big = json!({"title": "big", "description": "x".repeat(10 * 1024 * 1024)}).to_string();
    let r = app
        .req(reqwest::Method::POST, "/tasks", &token)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_problem(r, StatusCode::PAYLOAD_TOO_LARGE).await;
    app.assert_nothing_written().await;
}

#[tokio::test]
async fn missing_title_is_422() {
    expect_422(json!({"description": "no title"}), &["title"]).await;
}

#[tokio::test]
async fn naive_timestamp_is_422() {
    expect_422(
        json!({"title": "t", "due_at": "2026-05-01T09:00:00"}),
        &["due_at"],
    )
    .await;
}

#[tokio::test]
async fn bad_rrule_is_422() {
    expect_422(
        json!({"title": "t", "recurrence": {"rrule": "FREQ=SOMETIMES", "tz": "UTC"}}),
        &["recurrence.rrule"],
    )
    .await;
}

#[tokio::test]
async fn unknown_zone_is_422() {
    expect_422(
        json!({"title": "t", "recurrence": {"rrule": "FREQ=DAILY", "tz": "Europe/Atlantis"}}),
        &["recurrence.tz"],
    )
    .await;
}

#[tokio::test]
async fn negative_duration_is_422() {
    expect_422(
        json!({"title": "t", "due_at": "2026-05-01T09:00:00Z", "reminders": [{"before": "-PT5M"}]}),
        &["reminders[0].before"],
    )
    .await;
}

#[tokio::test]
async fn relative_reminder_without_due_is_422() {
    expect_422(
        json!({"title": "t", "reminders": [{"before": "PT5M"}]}),
        &["reminders[0].before"],
    )
    .await;
}

#[tokio::test]
async fn several_errors_are_reported_together() {
    expect_422(
        json!({"title": "x".repeat(501), "priority": "asap", "tags": ["", "ok"], "colour": "red"}),
        &["colour", "title", "priority", "tags[0]"],
    )
    .await;
}

#[tokio::test]
async fn unknown_route_and_method_are_problems() {
    let app = spawn_app().await;
    let r = app.client.get(app.url("/nope")).send().await.unwrap();
    assert_problem(r, StatusCode::NOT_FOUND).await;
    let r = app.client.put(app.url("/tasks")).send().await.unwrap();
    assert_problem(r, StatusCode::METHOD_NOT_ALLOWED).await;
}

#[tokio::test]
async fn nul_in_any_text_field_is_422_naming_it_and_writes_nothing() {
    for (body, field) in [
        (json!({"title": "a\u{0}b"}), "title"),
        (
            json!({"title": "t", "description": "d\u{0}"}),
            "description",
        ),
        (json!({"title": "t", "tags": ["ok", "\u{0}"]}), "tags[1]"),
        (
            json!({"title": "t", "recurrence": {"rrule": "FREQ=DAILY\u{0}", "tz": "UTC"}}),
            "recurrence.rrule",
        ),
        (
            json!({"title": "t", "recurrence": {"rrule": "FREQ=DAILY", "tz": "UTC\u{0}"}}),
            "recurrence.tz",
        ),
    ] {
        expect_422(body, &[field]).await;
    }
}

#[tokio::test]
async fn nul_in_a_patch_is_422_and_changes_nothing() {
    let app = spawn_app().await;
    let (_, token) = app.new_user().await;
    let t = app.create_ok(&token, json!({"title": "before"})).await;
    let id = t["id"].as_str().unwrap();
    let r = app
        .patch_task(&token, id, json!({"title": "\u{0}"}), None)
        .await;
    let p = assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(error_fields(&p), ["title"]);
    assert_eq!(app.outbox().await.len(), 1, "only the create's event");
    let r = app.get_task(&token, id).await;
    assert_eq!(r.json::<Value>().await.unwrap()["title"], "before");
}

#[tokio::test]
async fn nul_in_list_filters_is_422_naming_the_filter() {
    let app = spawn_app().await;
    let (_, token) = app.new_user().await;
    for (query, field) in [
        ("?q=a%00b", "q"),
        ("?tag=%00", "tag"),
        ("?tag=x&tag=y%00", "tag"),
    ] {
        let r = app.list(&token, query).await;
        let p = assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(error_fields(&p), [field], "{query}");
    }
}

#[tokio::test]
async fn nul_in_credentials_is_422_and_creates_no_user() {
    let app = spawn_app().await;
    let r = app
        .signup("a\u{0}@example.com", "correct horse battery")
        .await;
    let p = assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(error_fields(&p), ["email"]);
    let r = app
        .login("a\u{0}@example.com", "correct horse battery")
        .await;
    let p = assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(error_fields(&p), ["email"]);
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(n, 0);
    // a NUL in a password is hashed, never stored as text: allowed
    let r = app.signup("b@example.com", "pass\u{0}word!").await;
    assert_eq!(r.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn multi_byte_character_at_the_rrule_prefix_boundary_is_422() {
    // the 6th byte falls inside "é": this used to panic the handler
    expect_422(
        json!({"title": "t", "recurrence": {"rrule": "FREQ=é", "tz": "UTC"}}),
        &["recurrence.rrule"],
    )
    .await;
}
