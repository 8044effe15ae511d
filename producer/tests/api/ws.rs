//! The live feed over a WebSocket (`GET /feed/ws`): the same entries and guarantees as the
//! SSE stream, with a real WebSocket client. Feed rows are written as the notifier writes
//! them; no broker or worker runs.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message};

use crate::{
    helpers::{assert_problem, spawn_app, spawn_app_with},
    sse::{append, task_event, WAIT},
};

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(address: &str, bearer: Option<&str>, query: &str) -> Socket {
    let url = format!("{}/feed/ws{query}", address.replacen("http://", "ws://", 1));
    let mut req = url.into_client_request().unwrap();
    if let Some(token) = bearer {
        req.headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    let (socket, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(resp.status(), 101);
    socket
}

/// The next JSON text message (pings skipped), or `None` once the socket closed.
async fn next_json(socket: &mut Socket) -> Option<Value> {
    loop {
        let msg = tokio::time::timeout(WAIT, socket.next())
            .await
            .expect("a message in time");
        match msg? {
            Ok(Message::Text(t)) => return Some(serde_json::from_str(&t).unwrap()),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

async fn expect_entry(socket: &mut Socket, seq: i64, kind: &str) -> Value {
    let m = next_json(socket).await.expect("an entry, not a close");
    assert_eq!(m["type"], "entry", "{m}");
    assert_eq!(m["id"], seq, "{m}");
    assert_eq!(m["event"], kind, "{m}");
    m
}

#[tokio::test]
async fn a_socket_gets_each_entry_once_in_order_resumes_and_never_sees_another_user() {
    let app = spawn_app().await;
    let (alice, alice_token) = app.new_user().await;
    let (bob, bob_token) = app.new_user().await;
    let mut a = connect(&app.address, Some(&alice_token), "").await;
    let mut b = connect(&app.address, Some(&bob_token), "").await;

    let first = append(
        &app.pool,
        alice,
        "TaskCreated",
        task_event("TaskCreated", "milk"),
    )
    .await;
    let second = append(
        &app.pool,
        alice,
        "TaskCompleted",
        task_event("TaskCompleted", "milk"),
    )
    .await;
    let m = expect_entry(&mut a, first, "TaskCreated").await;
    assert_eq!(m["data"]["event"]["title"], "milk");
    expect_entry(&mut a, second, "TaskCompleted").await;
    // Bob's first message is his own entry, appended after Alice's.
    let his = append(
        &app.pool,
        bob,
        "TaskCreated",
        task_event("TaskCreated", "bob's"),
    )
    .await;
    expect_entry(&mut b, his, "TaskCreated").await;

    // A client that saw `first` and reconnects gets exactly what it missed.
    a.close(None).await.unwrap();
    let third = append(
        &app.pool,
        alice,
        "TaskUpdated",
        task_event("TaskUpdated", "milk"),
    )
    .await;
    let mut again = connect(
        &app.address,
        Some(&alice_token),
        &format!("?last_event_id={first}"),
    )
    .await;
    expect_entry(&mut again, second, "TaskCompleted").await;
    expect_entry(&mut again, third, "TaskUpdated").await;
}

#[tokio::test]
async fn a_browser_opens_it_with_a_stream_token_and_revocation_ends_it() {
    let app = spawn_app_with(
        |s| s.stream_heartbeat = Duration::from_millis(100),
        taskflow_producer::app::routes(),
    )
    .await;
    let (user, login) = app.new_user().await;
    let r = app
        .req(Method::POST, "/tokens", &login)
        .json(&serde_json::json!({"name": "ws", "scopes": ["notifications:read"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let pat: Value = r.json().await.unwrap();
    let minted: Value = app
        .req(
            Method::POST,
            "/feed/stream-tokens",
            pat["token"].as_str().unwrap(),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut socket = connect(
        &app.address,
        None,
        &format!("?access_token={}", minted["token"].as_str().unwrap()),
    )
    .await;
    let seq = append(
        &app.pool,
        user,
        "TaskCreated",
        task_event("TaskCreated", "t"),
    )
    .await;
    expect_entry(&mut socket, seq, "TaskCreated").await;
    // Heartbeats arrive as pings, which the client answers by itself.
    socket.send(Message::Text("ignored".into())).await.unwrap();

    let r = app
        .req(
            Method::DELETE,
            &format!("/tokens/{}", pat["id"].as_str().unwrap()),
            &login,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let end = next_json(&mut socket).await.expect("an end message");
    assert_eq!(end, serde_json::json!({"type": "end", "reason": "revoked"}));
    assert!(next_json(&mut socket).await.is_none(), "then a close");
}

#[tokio::test]
async fn a_plain_request_or_no_credential_is_refused_with_a_problem() {
    let app = spawn_app().await;
    let (_, token) = app.new_user().await;
    // Authenticated but not an upgrade: 400, as documented.
    let r = app
        .req(Method::GET, "/feed/ws", &token)
        .send()
        .await
        .unwrap();
    assert_problem(r, StatusCode::BAD_REQUEST).await;
    let r = app.client.get(app.url("/feed/ws")).send().await.unwrap();
    assert_problem(r, StatusCode::UNAUTHORIZED).await;
    let r = app
        .req(Method::GET, "/feed/ws?last_event_id=x", &token)
        .send()
        .await
        .unwrap();
    assert_problem(r, StatusCode::BAD_REQUEST).await;
}
