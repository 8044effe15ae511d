//! The live feed (`GET /feed/stream`): fan-out to a user's streams only, resume by
//! `Last-Event-ID`, resync after pruning, stream tokens, credentials that end a stream,
//! several replicas, a lost listener connection. Feed rows are written here as the
//! notifier writes them; no broker or worker runs.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use taskflow_producer::{
    config::JwtSecret,
    feed::credential::{Parent, StreamTokenKeys},
};

use crate::{
    helpers::{assert_problem, spawn_app, spawn_app_with, TestApp},
    sse::{append, append_silently, open, reminder_due, task_event, SseStream},
};

fn metric(registry: &prometheus::Registry, name: &str) -> f64 {
    use prometheus::proto::MetricType;
    registry
        .gather()
        .iter()
        .filter(|f| f.name() == name)
        .flat_map(|f| f.get_metric().iter().map(move |m| (f.get_field_type(), m)))
        .map(|(kind, m)| match kind {
            MetricType::GAUGE => m.get_gauge().get_value(),
            MetricType::COUNTER => m.get_counter().get_value(),
            _ => m.get_histogram().get_sample_count() as f64,
        })
        .sum()
}

async fn wait_for(mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + crate::sse::WAIT;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met in time"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn token_with(app: &TestApp, login: &str, scopes: &[&str]) -> (String, String) {
    let r = app
        .req(Method::POST, "/tokens", login)
        .json(&json!({"name": "stream", "scopes": scopes}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let body: Value = r.json().await.unwrap();
    (
        body["id"].as_str().unwrap().to_owned(),
        body["token"].as_str().unwrap().to_owned(),
    )
}

async fn stream_token(app: &TestApp, bearer: &str) -> reqwest::Response {
    app.req(Method::POST, "/feed/stream-tokens", bearer)
        .send()
        .await
        .unwrap()
}

async fn open_with_query(app: &TestApp, token: &str) -> reqwest::Response {
    app.client
        .get(app.url("/feed/stream"))
        .query(&[("access_token", token)])
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn both_streams_of_a_user_get_each_entry_in_order_and_another_user_gets_none() {
    let app = spawn_app().await;
    let (alice, alice_token) = app.new_user().await;
    let (bob, bob_token) = app.new_user().await;
    let mut a1 = open(&app.address, &alice_token, None).await;
    let mut a2 = open(&app.address, &alice_token, None).await;
    let mut b = open(&app.address, &bob_token, None).await;
    wait_for(|| metric(&app.registry, "taskflow_streams_open") == 3.0).await;

    let created = append(
        &app.pool,
        alice,
        "TaskCreated",
        task_event("TaskCreated", "milk"),
    )
    .await;
    let (notification, due) = reminder_due(&app.pool, alice, "milk", chrono::Utc::now()).await;
    let done = append(
        &app.pool,
        alice,
        "TaskCompleted",
        task_event("TaskCompleted", "milk"),
    )
    .await;
    for s in [&mut a1, &mut a2] {
        let f = s.expect_entry(created, "TaskCreated").await;
        assert_eq!(f.json()["type"], "TaskCreated");
        assert_eq!(f.json()["event"]["title"], "milk");
        let f = s.expect_entry(due, "ReminderDue").await;
        assert_eq!(f.json()["notification_id"], json!(notification));
        s.expect_entry(done, "TaskCompleted").await;
    }
    // Bob's first event is his own, appended after all of Alice's: he got none of hers.
    let mine = append(
        &app.pool,
        bob,
        "TaskCreated",
        task_event("TaskCreated", "bob's"),
    )
    .await;
    b.expect_entry(mine, "TaskCreated").await;
    assert_eq!(mine, 1, "per-user seqs");

    assert_eq!(
        metric(&app.registry, "taskflow_stream_events_pushed_total"),
        7.0
    );
    assert_eq!(
        metric(&app.registry, "taskflow_stream_push_lag_seconds"),
        7.0
    );
    drop((a1, a2));
    wait_for(|| metric(&app.registry, "taskflow_streams_open") == 1.0).await;
}

#[tokio::test]
async fn a_fresh_stream_starts_at_the_head_and_a_resumed_one_gets_exactly_what_it_missed() {
    let app = spawn_app().await;
    let (user, token) = app.new_user().await;
    let before = append(
        &app.pool,
        user,
        "TaskCreated",
        task_event("TaskCreated", "old"),
    )
    .await;

    let mut s = open(&app.address, &token, None).await;
    let one = append(
        &app.pool,
        user,
        "TaskCreated",
        task_event("TaskCreated", "a"),
    )
    .await;
    let two = append(
        &app.pool,
        user,
        "TaskUpdated",
        task_event("TaskUpdated", "a"),
    )
    .await;
    // The entry from before the stream opened is not sent: the stream starts at the head.
    s.expect_entry(one, "TaskCreated").await;
    s.expect_entry(two, "TaskUpdated").await;
    drop(s);

    // Missed while disconnected.
    let missed: Vec<i64> = {
        let mut v = Vec::new();
        for i in 0..3 {
            v.push(
                append(
                    &app.pool,
                    user,
                    "TaskUpdated",
                    task_event("TaskUpdated", &i.to_string()),
                )
                .await,
            );
        }
        v
    };
    let mut s = open(&app.address, &token, Some(two)).await;
    for seq in &missed {
        s.expect_entry(*seq, "TaskUpdated").await;
    }
    // Then live, and nothing twice: the next event is the next entry.
    let live = append(
        &app.pool,
        user,
        "TaskDeleted",
        task_event("TaskDeleted", "a"),
    )
    .await;
    s.expect_entry(live, "TaskDeleted").await;
    drop(s);

    // Resuming from the very first entry replays everything after it, in order.
    let mut s = open(&app.address, &token, Some(before)).await;
    for seq in [one, two].iter().chain(&missed).chain([live].iter()) {
        assert_eq!(s.next_event().await.seq(), *seq);
    }
    // Replayed backlog is pushed but not counted as push lag.
    assert_eq!(
        metric(&app.registry, "taskflow_stream_push_lag_seconds"),
        3.0
    );
}

#[tokio::test]
async fn a_stream_resumed_below_the_pruned_mark_is_told_to_resync() {
    let app = spawn_app().await;
    let (user, token) = app.new_user().await;
    for i in 0..4 {
        append(
            &app.pool,
            user,
            "TaskCreated",
            task_event("TaskCreated", &i.to_string()),
        )
        .await;
    }
    // Retention removed entries 1 to 3.
    sqlx::query("DELETE FROM feed WHERE user_id = $1 AND seq <= 3")
        .bind(user)
        .execute(&app.pool)
        .await
        .unwrap();
    sqlx::query("UPDATE feed_heads SET pruned_through = 3 WHERE user_id = $1")
        .bind(user)
        .execute(&app.pool)
        .await
        .unwrap();

    let mut s = open(&app.address, &token, Some(1)).await;
    let f = s.next_event().await;
    assert_eq!(f.kind(), "resync");
    assert_eq!(f.json()["reason"], "pruned");
    assert_eq!(f.seq(), 4, "continues from the head");
    let next = append(
        &app.pool,
        user,
        "TaskUpdated",
        task_event("TaskUpdated", "x"),
    )
    .await;
    s.expect_entry(next, "TaskUpdated").await;

    // Exactly at the pruned mark nothing is missing: entry 4 follows, no resync.
    let mut s = open(&app.address, &token, Some(3)).await;
    s.expect_entry(4, "TaskCreated").await;
    s.expect_entry(next, "TaskUpdated").await;

    // A position beyond the head was never handed out.
    let mut s = open(&app.address, &token, Some(99)).await;
    let f = s.next_event().await;
    assert_eq!(
        (f.kind(), f.json()["reason"].clone()),
        ("resync", json!("unknown_position"))
    );

    let r = app
        .req(Method::GET, "/feed/stream", &token)
        .header("last-event-id", "abc")
        .send()
        .await
        .unwrap();
    assert_problem(r, StatusCode::BAD_REQUEST).await;
}

#[tokio::test]
async fn a_stream_token_opens_a_stream_and_an_expired_or_forged_one_is_refused() {
    let app = spawn_app().await;
    let (user, login) = app.new_user().await;
    let r = stream_token(&app, &login).await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    let token = body["token"].as_str().unwrap();
    let expires_at: chrono::DateTime<chrono::Utc> =
        body["expires_at"].as_str().unwrap().parse().unwrap();
    let ttl = expires_at - chrono::Utc::now();
    assert!(
        ttl <= chrono::Duration::seconds(60) && ttl > chrono::Duration::seconds(50),
        "{ttl}"
    );

    let mut s = SseStream::new(open_with_query(&app, token).await);
    let seq = append(
        &app.pool,
        user,
        "TaskCreated",
        task_event("TaskCreated", "t"),
    )
    .await;
    s.expect_entry(seq, "TaskCreated").await;

    let keys = StreamTokenKeys::new(&JwtSecret::new(app.secret.clone()));
    let now = chrono::Utc::now().timestamp();
    let (expired, _) = keys
        .issue(user, Parent::Session { exp: now + 3600 }, now - 120)
        .unwrap();
    let forged = StreamTokenKeys::new(&JwtSecret::new("another-secret-another-secret-xx"))
        .issue(user, Parent::Session { exp: now + 3600 }, now)
        .unwrap()
        .0;
    // A login token is not a stream token: it never goes in a URL.
    for bad in [
        expired.as_str(),
        forged.as_str(),
        "garbage",
        "",
        login.as_str(),
    ] {
        let r = open_with_query(&app, bad).await;
        assert_problem(r, StatusCode::UNAUTHORIZED).await;
    }
    // And a stream token is not a bearer token.
    let r = app.list(token, "").await;
    assert_problem(r, StatusCode::UNAUTHORIZED).await;
    let r = app
        .client
        .get(app.url("/feed/stream"))
        .send()
        .await
        .unwrap();
    assert_problem(r, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test]
async fn revoking_a_personal_access_token_ends_its_streams() {
    let app = spawn_app_with(
        |s| s.stream_heartbeat = Duration::from_millis(100),
        taskflow_producer::app::routes(),
    )
    .await;
    let (user, login) = app.new_user().await;
    let (id, pat) = token_with(&app, &login, &["notifications:read"]).await;
    let mut direct = open(&app.address, &pat, None).await;
    let r = stream_token(&app, &pat).await;
    let minted: Value = r.json().await.unwrap();
    let mut via_stream_token =
        SseStream::new(open_with_query(&app, minted["token"].as_str().unwrap()).await);
    let mut by_login = open(&app.address, &login, None).await;

    let seq = append(
        &app.pool,
        user,
        "TaskCreated",
        task_event("TaskCreated", "t"),
    )
    .await;
    direct.expect_entry(seq, "TaskCreated").await;
    via_stream_token.expect_entry(seq, "TaskCreated").await;

    let r = app
        .req(Method::DELETE, &format!("/tokens/{id}"), &login)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    direct.expect_end("revoked").await;
    via_stream_token.expect_end("revoked").await;
    // The stream token of a revoked parent opens nothing any more.
    let r = open_with_query(&app, minted["token"].as_str().unwrap()).await;
    assert_problem(r, StatusCode::UNAUTHORIZED).await;

    // The login stream lives on.
    by_login.expect_entry(seq, "TaskCreated").await;
    let next = append(
        &app.pool,
        user,
        "TaskUpdated",
        task_event("TaskUpdated", "t"),
    )
    .await;
    by_login.expect_entry(next, "TaskUpdated").await;
    wait_for(|| metric(&app.registry, "taskflow_streams_open") == 1.0).await;
}

#[tokio::test]
async fn a_login_stream_ends_when_its_token_expires() {
    let app = spawn_app_with(
        |s| {
            s.stream_heartbeat = Duration::from_millis(100);
            s.jwt_ttl_secs = 1;
        },
        taskflow_producer::app::routes(),
    )
    .await;
    let (_, login) = app.new_user().await;
    let mut s = open(&app.address, &login, None).await;
    s.expect_end("expired").await;
}

#[tokio::test]
async fn a_token_without_notifications_read_is_refused() {
    let app = spawn_app().await;
    let (_, login) = app.new_user().await;
    let (_, pat) = token_with(&app, &login, &["tasks:read", "tasks:write"]).await;
    let r = app
        .req(Method::GET, "/feed/stream", &pat)
        .send()
        .await
        .unwrap();
    let p = assert_problem(r, StatusCode::FORBIDDEN).await;
    assert!(p["detail"].as_str().unwrap().contains("notifications:read"));
    let r = stream_token(&app, &pat).await;
    assert_problem(r, StatusCode::FORBIDDEN).await;
}

#[tokio::test]
async fn two_replicas_each_send_one_copy_of_each_entry_to_their_streams() {
    let app = spawn_app().await;
    let replica = app.spawn_replica().await;
    let (user, token) = app.new_user().await;
    let mut on_first = open(&app.address, &token, None).await;
    let mut on_second = open(&replica.address, &token, None).await;

    let seqs = [
        append(
            &app.pool,
            user,
            "TaskCreated",
            task_event("TaskCreated", "r"),
        )
        .await,
        append(
            &app.pool,
            user,
            "TaskUpdated",
            task_event("TaskUpdated", "r"),
        )
        .await,
    ];
    // A read-state change made through the second replica reaches the first.
    let (id, due) = reminder_due(&app.pool, user, "r", chrono::Utc::now()).await;
    let r = reqwest::Client::new()
        .post(replica.url(&format!("/notifications/{id}/read")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    for s in [&mut on_first, &mut on_second] {
        s.expect_entry(seqs[0], "TaskCreated").await;
        s.expect_entry(seqs[1], "TaskUpdated").await;
        s.expect_entry(due, "ReminderDue").await;
        let f = s.expect_entry(due + 1, "NotificationRead").await;
        assert_eq!(f.json()["notification_ids"], json!([id]));
    }
    // One copy: the next event on each is the next entry.
    let last = append(
        &app.pool,
        user,
        "TaskDeleted",
        task_event("TaskDeleted", "r"),
    )
    .await;
    on_first.expect_entry(last, "TaskDeleted").await;
    on_second.expect_entry(last, "TaskDeleted").await;
    assert_eq!(metric(&replica.registry, "taskflow_streams_open"), 1.0);
}

#[tokio::test]
async fn streams_catch_up_when_the_listener_connection_was_lost() {
    let app = spawn_app().await;
    let (user, token) = app.new_user().await;
    let mut s = open(&app.address, &token, None).await;
    // Written while nobody would hear of it: no NOTIFY reaches the stream.
    let seq = append_silently(
        &app.pool,
        user,
        "TaskCreated",
        task_event("TaskCreated", "lost"),
    )
    .await;
    let mut owner = app.owner().await;
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = current_database() AND query ILIKE 'LISTEN%'",
    )
    .fetch_all(&mut owner)
    .await
    .unwrap();
    assert_eq!(killed, [true], "one listener per API process");
    // Reconnected, the listener wakes every stream, which reads what it missed.
    s.expect_entry(seq, "TaskCreated").await;
    let next = append(
        &app.pool,
        user,
        "TaskUpdated",
        task_event("TaskUpdated", "back"),
    )
    .await;
    s.expect_entry(next, "TaskUpdated").await;
}

#[tokio::test]
async fn shutdown_ends_open_streams() {
    let app = spawn_app().await;
    let (_, token) = app.new_user().await;
    let mut s = open(&app.address, &token, None).await;
    drop(app);
    s.expect_end("shutdown").await;
}

#[tokio::test]
async fn a_stream_never_carries_another_users_entry_even_with_a_forged_position() {
    let app = spawn_app().await;
    let (alice, _) = app.new_user().await;
    let (bob, bob_token) = app.new_user().await;
    for i in 0..3 {
        append(
            &app.pool,
            alice,
            "TaskCreated",
            task_event("TaskCreated", &i.to_string()),
        )
        .await;
    }
    append(
        &app.pool,
        bob,
        "TaskCreated",
        task_event("TaskCreated", "bob"),
    )
    .await;
    // Bob resumes from 0: he gets his one entry, never Alice's seqs 1 to 3.
    let mut s = open(&app.address, &bob_token, Some(0)).await;
    let f = s.expect_entry(1, "TaskCreated").await;
    assert_eq!(f.json()["event"]["title"], "bob");
}

#[tokio::test]
async fn openapi_documents_the_feed_and_inbox_routes() {
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
    if std::env::var_os("TASKFLOW_TEST_PRINT_OPENAPI").is_some() {
        for p in [
            "/feed/stream",
            "/feed/stream-tokens",
            "/notifications",
            "/notifications/{id}/read",
        ] {
            println!(
                "{p}: {}",
                serde_json::to_string_pretty(&doc["paths"][p]).unwrap()
            );
        }
    }
    let stream = &doc["paths"]["/feed/stream"]["get"];
    assert!(stream["responses"]["200"]["content"]["text/event-stream"].is_object());
    let statuses: Vec<&String> = stream["responses"].as_object().unwrap().keys().collect();
    assert_eq!(statuses, ["200", "400", "401", "403", "500", "503"]);
    assert_eq!(
        stream["security"],
        json!([{"bearer": []}, {"stream_token": []}])
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["stream_token"],
        json!({"type": "apiKey", "in": "query", "name": "access_token",
               "description": doc["components"]["securitySchemes"]["stream_token"]["description"]})
    );
    let tokens = &doc["paths"]["/feed/stream-tokens"]["post"];
    let statuses: Vec<&String> = tokens["responses"].as_object().unwrap().keys().collect();
    assert_eq!(statuses, ["200", "401", "403", "500", "503"]);
    let list = &doc["paths"]["/notifications"]["get"];
    let statuses: Vec<&String> = list["responses"].as_object().unwrap().keys().collect();
    assert_eq!(statuses, ["200", "400", "401", "403", "422", "500", "503"]);
    let cursor = list["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "cursor")
        .unwrap();
    assert_eq!(
        cursor["schema"]["pattern"],
        "^A[A-Za-f][A-Za-z0-9_-]{31}[AQgw]$"
    );
    let read = &doc["paths"]["/notifications/{id}/read"]["post"];
    assert!(read["responses"]["404"].is_object());
    for path in ["/notifications/unread-count", "/notifications/read-all"] {
        assert!(doc["paths"][path].is_object(), "{path}");
    }
    assert!(doc["components"]["schemas"]["NotificationPage"].is_object());
}

/// A new `EventSource` cannot set `Last-Event-ID`: a browser resumes with a fresh stream
/// token and `?last_event_id=`, and gets exactly what it missed. The header wins over the
/// query (it is what `EventSource` sends on its own reconnects); a malformed value is a 400.
#[tokio::test]
async fn a_stream_resumes_from_the_last_event_id_query_parameter() {
    let app = spawn_app().await;
    let (user, token) = app.new_user().await;
    let seen = append(
        &app.pool,
        user,
        "TaskCreated",
        task_event("TaskCreated", "a"),
    )
    .await;
    let missed = append(
        &app.pool,
        user,
        "TaskUpdated",
        task_event("TaskUpdated", "a"),
    )
    .await;

    let stream: Value = stream_token(&app, &token).await.json().await.unwrap();
    let r = app
        .client
        .get(app.url("/feed/stream"))
        .query(&[
            ("access_token", stream["token"].as_str().unwrap()),
            ("last_event_id", &seen.to_string()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let mut s = SseStream::new(r);
    s.expect_entry(missed, "TaskUpdated").await;
    drop(s);

    // Both given: the header's position (before `seen`) wins over the query's.
    let r = app
        .req(Method::GET, "/feed/stream", &token)
        .header("last-event-id", (seen - 1).to_string())
        .query(&[("last_event_id", missed.to_string())])
        .send()
        .await
        .unwrap();
    let mut s = SseStream::new(r);
    s.expect_entry(seen, "TaskCreated").await;
    drop(s);

    let r = app
        .req(Method::GET, "/feed/stream", &token)
        .query(&[("last_event_id", "abc")])
        .send()
        .await
        .unwrap();
    assert_problem(r, StatusCode::BAD_REQUEST).await;
}
