//! The inbox: order and pagination, unread count, mark one / all read (idempotent, and
//! announced on the user's streams), another user's notification, scopes.

use chrono::{Duration, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::{
    helpers::{assert_problem, error_fields, spawn_app, TestApp},
    sse::{open, reminder_due},
};

async fn get(app: &TestApp, token: &str, path: &str) -> Value {
    let r = app.req(Method::GET, path, token).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{path}");
    r.json().await.unwrap()
}

async fn post(app: &TestApp, token: &str, path: &str) -> reqwest::Response {
    app.req(Method::POST, path, token).send().await.unwrap()
}

async fn head(app: &TestApp, user: Uuid) -> i64 {
    sqlx::query_scalar("SELECT coalesce(max(seq), 0) FROM feed WHERE user_id = $1")
        .bind(user)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn the_inbox_lists_unread_first_then_newest_and_pages_through_every_item_once() {
    let app = spawn_app().await;
    let (user, token) = app.new_user().await;
    let t0 = Utc::now() - Duration::hours(1);
    let mut made = Vec::new();
    for i in 0..5 {
        let (id, _) =
            reminder_due(&app.pool, user, &format!("n{i}"), t0 + Duration::minutes(i)).await;
        made.push(id.to_string());
    }
    // n1 and n3 are read.
    for i in [1, 3] {
        assert_eq!(
            post(&app, &token, &format!("/notifications/{}/read", made[i]))
                .await
                .status(),
            StatusCode::OK
        );
    }
    let expected: Vec<String> = [4, 2, 0, 3, 1].iter().map(|&i| made[i].clone()).collect();
    let all = get(&app, &token, "/notifications").await;
    assert_eq!(ids(&all), expected);
    assert_eq!(all["next_cursor"], Value::Null);
    let first = &all["items"][0];
    assert_eq!(first["kind"], "reminder_due");
    assert_eq!(first["title"], "n4");
    assert_eq!(first["read_at"], Value::Null);
    assert!(first["data"]["reminder_id"].is_string());
    assert!(all["items"][3]["read_at"].is_string());

    let mut seen = Vec::new();
    let mut path = "/notifications?limit=2".to_owned();
    loop {
        let page = get(&app, &token, &path).await;
        assert!(page["items"].as_array().unwrap().len() <= 2);
        seen.extend(ids(&page));
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/notifications?limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, expected);

    let r = app
        .req(
            Method::GET,
            "/notifications?limit=0&cursor=nope&colour=red",
            &token,
        )
        .send()
        .await
        .unwrap();
    let p = assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(error_fields(&p), ["limit", "cursor", "colour"]);
}

#[tokio::test]
async fn marking_read_updates_the_count_is_idempotent_and_reaches_the_users_streams() {
    let app = spawn_app().await;
    let (user, token) = app.new_user().await;
    let mut s = open(&app.address, &token, None).await;
    let (a, seq_a) = reminder_due(&app.pool, user, "a", Utc::now()).await;
    let (b, seq_b) = reminder_due(&app.pool, user, "b", Utc::now()).await;
    let (c, seq_c) = reminder_due(&app.pool, user, "c", Utc::now()).await;
    for seq in [seq_a, seq_b, seq_c] {
        s.expect_entry(seq, "ReminderDue").await;
    }
    assert_eq!(
        get(&app, &token, "/notifications/unread-count").await,
        json!({"unread": 3})
    );

    let r = post(&app, &token, &format!("/notifications/{a}/read")).await;
    assert_eq!(r.status(), StatusCode::OK);
    let read: Value = r.json().await.unwrap();
    assert_eq!(read["id"], json!(a));
    assert!(read["read_at"].is_string());
    let f = s.expect_entry(seq_c + 1, "NotificationRead").await;
    assert_eq!(
        f.json(),
        json!({"type": "NotificationRead", "notification_ids": [a], "unread": 2})
    );
    assert_eq!(
        get(&app, &token, "/notifications/unread-count").await,
        json!({"unread": 2})
    );

    // Again: the same answer, and nothing written (no feed entry, same read_at).
    let before = head(&app, user).await;
    let r = post(&app, &token, &format!("/notifications/{a}/read")).await;
    assert_eq!(r.status(), StatusCode::OK);
    let again: Value = r.json().await.unwrap();
    assert_eq!(again["read_at"], read["read_at"]);
    assert_eq!(head(&app, user).await, before);

    let r = post(&app, &token, "/notifications/read-all").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"marked": 2, "unread": 0})
    );
    let f = s.expect_entry(before + 1, "NotificationRead").await;
    let mut expected = vec![b, c];
    expected.sort();
    assert_eq!(
        f.json(),
        json!({"type": "NotificationRead", "notification_ids": expected, "unread": 0})
    );
    assert_eq!(
        get(&app, &token, "/notifications/unread-count").await,
        json!({"unread": 0})
    );

    // Nothing left unread: read-all writes nothing.
    let r = post(&app, &token, "/notifications/read-all").await;
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"marked": 0, "unread": 0})
    );
    assert_eq!(head(&app, user).await, before + 1);

    // The feed entry carries a fresh event id per change.
    let distinct: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT event_id) FROM feed WHERE user_id = $1 AND kind = 'NotificationRead'",
    )
    .bind(user)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(distinct, 2);
}

#[tokio::test]
async fn another_users_notification_is_not_found_and_untouched() {
    let app = spawn_app().await;
    let (alice, _) = app.new_user().await;
    let (_, bob_token) = app.new_user().await;
    let (id, _) = reminder_due(&app.pool, alice, "private", Utc::now()).await;
    for path in [
        format!("/notifications/{id}/read"),
        format!("/notifications/{}/read", Uuid::now_v7()),
        "/notifications/not-a-uuid/read".to_owned(),
    ] {
        assert_problem(post(&app, &bob_token, &path).await, StatusCode::NOT_FOUND).await;
    }
    let page = get(&app, &bob_token, "/notifications").await;
    assert_eq!(page["items"], json!([]));
    assert_eq!(
        get(&app, &bob_token, "/notifications/unread-count").await,
        json!({"unread": 0})
    );
    // Bob's read-all does not touch Alice's.
    let r = post(&app, &bob_token, "/notifications/read-all").await;
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"marked": 0, "unread": 0})
    );
    let read_at: Option<chrono::DateTime<Utc>> =
        sqlx::query_scalar("SELECT read_at FROM notifications WHERE id = $1")
            .bind(id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(read_at, None);
}

#[tokio::test]
async fn the_inbox_needs_notifications_read() {
    let app = spawn_app().await;
    let (_, login) = app.new_user().await;
    let r = app
        .req(Method::POST, "/tokens", &login)
        .json(&json!({"name": "tasks only", "scopes": ["tasks:read", "tasks:write"]}))
        .send()
        .await
        .unwrap();
    let tasks_only = r.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = app
        .req(Method::POST, "/tokens", &login)
        .json(&json!({"name": "inbox", "scopes": ["notifications:read"]}))
        .send()
        .await
        .unwrap();
    let inbox = r.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let id = Uuid::now_v7();
    for (method, path) in [
        (Method::GET, "/notifications".to_owned()),
        (Method::GET, "/notifications/unread-count".to_owned()),
        (Method::POST, format!("/notifications/{id}/read")),
        (Method::POST, "/notifications/read-all".to_owned()),
    ] {
        let r = app
            .req(method.clone(), &path, &tasks_only)
            .send()
            .await
            .unwrap();
        let p = assert_problem(r, StatusCode::FORBIDDEN).await;
        assert!(
            p["detail"].as_str().unwrap().contains("notifications:read"),
            "{path}"
        );
        let r = app.req(method.clone(), &path, &inbox).send().await.unwrap();
        assert_ne!(r.status(), StatusCode::FORBIDDEN, "{path}");
        let r = app
            .client
            .request(method, app.url(&path))
            .send()
            .await
            .unwrap();
        assert_problem(r, StatusCode::UNAUTHORIZED).await;
    }
}
