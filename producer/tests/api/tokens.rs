//! Personal access tokens: created, listed and revoked with the login token;
//! accepted beside it on every route, each route enforcing its scope.

use reqwest::{header, Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{assert_problem, error_fields, spawn_app, TestApp};

async fn create_token(app: &TestApp, login: &str, body: Value) -> reqwest::Response {
    app.req(Method::POST, "/tokens", login)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn token_with(app: &TestApp, login: &str, scopes: &[&str]) -> (String, String) {
    let r = create_token(app, login, json!({"name": "test", "scopes": scopes})).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let body: Value = r.json().await.unwrap();
    (
        body["id"].as_str().unwrap().to_owned(),
        body["token"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn a_token_is_shown_once_stored_as_a_hash_and_listed_without_it() {
    let app = spawn_app().await;
    let (_, login) = app.new_user().await;
    let r = create_token(
        &app,
        &login,
        json!({"name": " laptop assistant ", "scopes": ["tasks:write", "tasks:read"], "expires_in_days": 30}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let location = r.headers()[header::LOCATION].to_str().unwrap().to_owned();
    let created: Value = r.json().await.unwrap();
    let token = created["token"].as_str().unwrap();
    assert!(token.starts_with("tfp_"), "{token}");
    assert_eq!(created["name"], "laptop assistant");
    assert_eq!(created["scopes"], json!(["tasks:read", "tasks:write"]));
    assert!(created["expires_at"].is_string());
    assert_eq!(
        location,
        format!("/tokens/{}", created["id"].as_str().unwrap())
    );

    // Only a SHA-256 of the secret is stored: the token appears nowhere.
    let stored: Vec<(String, Vec<u8>)> =
        sqlx::query_as("SELECT lookup, secret_hash FROM personal_access_tokens")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].1.len(), 32);
    assert!(!token.contains(&hex_of(&stored[0].1)));
    assert!(
        token.contains(&stored[0].0),
        "the lookup id is part of the token"
    );

    let r = app
        .req(Method::GET, "/tokens", &login)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let list: Value = r.json().await.unwrap();
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["id"], created["id"]);
    assert!(
        items[0].get("token").is_none(),
        "the list never shows a token"
    );

    // It works as a bearer token, and its use is recorded.
    let r = app.list(token, "").await;
    assert_eq!(r.status(), StatusCode::OK);
    let used: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT last_used_at FROM personal_access_tokens")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert!(used.is_some());
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn each_route_enforces_its_scope_with_a_403_naming_it() {
    let app = spawn_app().await;
    let (_, login) = app.new_user().await;
    let (_, read) = token_with(&app, &login, &["tasks:read"]).await;
    let (_, write) = token_with(&app, &login, &["tasks:write"]).await;
    let (_, notifications) = token_with(&app, &login, &["notifications:read"]).await;

    // tasks:read cannot create, and nothing is written.
    let r = app.create_task(&read, json!({"title": "nope"})).await;
    let www = r.headers()[header::WWW_AUTHENTICATE]
        .to_str()
        .unwrap()
        .to_owned();
    let p = assert_problem(r, StatusCode::FORBIDDEN).await;
    assert_eq!(p["type"], "urn:taskflow:problem:insufficient-scope");
    assert!(p["detail"].as_str().unwrap().contains("tasks:write"), "{p}");
    assert!(www.contains(r#"scope="tasks:write""#), "{www}");
    app.assert_nothing_written().await;

    // tasks:write creates and changes, but cannot read.
    let task = app
        .create_ok(&write, json!({"title": "written with a token"}))
        .await;
    let id = task["id"].as_str().unwrap();
    let r = app.action(&write, id, "complete", None).await;
    assert_eq!(r.status(), StatusCode::OK);
    let p = assert_problem(app.get_task(&write, id).await, StatusCode::FORBIDDEN).await;
    assert!(p["detail"].as_str().unwrap().contains("tasks:read"), "{p}");
    assert_problem(app.list(&write, "").await, StatusCode::FORBIDDEN).await;
    for path in [format!("/tasks/{id}/history"), "/audit".to_owned()] {
        let r = app.req(Method::GET, &path, &write).send().await.unwrap();
        assert_problem(r, StatusCode::FORBIDDEN).await;
    }

    // tasks:read reads (the audit routes included) but cannot change.
    assert_eq!(app.get_task(&read, id).await.status(), StatusCode::OK);
    let r = app.req(Method::GET, "/audit", &read).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    for r in [
        app.action(&read, id, "reopen", None).await,
        app.patch_task(&read, id, json!({"title": "x"}), None).await,
        app.delete_task(&read, id, None).await,
    ] {
        assert_problem(r, StatusCode::FORBIDDEN).await;
    }
    // notifications:read gives nothing on tasks.
    assert_problem(app.list(&notifications, "").await, StatusCode::FORBIDDEN).await;

    // The task was written once, by the writing token, as the user.
    assert_eq!(app.task_count().await, 1);
}

#[tokio::test]
async fn revocation_takes_effect_on_the_next_request() {
    let app = spawn_app().await;
    let (_, login) = app.new_user().await;
    let (id, token) = token_with(&app, &login, &["tasks:read"]).await;
    assert_eq!(app.list(&token, "").await.status(), StatusCode::OK);

    let r = app
        .req(Method::DELETE, &format!("/tokens/{id}"), &login)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_problem(app.list(&token, "").await, StatusCode::UNAUTHORIZED).await;
    // Gone from the list; revoking again is a 404.
    let list: Value = app
        .req(Method::GET, "/tokens", &login)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"], json!([]));
    let r = app
        .req(Method::DELETE, &format!("/tokens/{id}"), &login)
        .send()
        .await
        .unwrap();
    assert_problem(r, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn expired_forged_and_foreign_tokens_are_refused() {
    let app = spawn_app().await;
    let (_, login) = app.new_user().await;
    let (id, token) = token_with(&app, &login, &["tasks:read"]).await;

    // A wrong secret with a real lookup id: 401.
    let (head, _) = token.rsplit_once('_').unwrap();
    let forged = format!("{head}_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    assert_problem(app.list(&forged, "").await, StatusCode::UNAUTHORIZED).await;
    assert_problem(app.list("tfp_garbage", "").await, StatusCode::UNAUTHORIZED).await;

    // Another user can neither see nor revoke it.
    let (_, other) = app.new_user().await;
    let r = app
        .req(Method::DELETE, &format!("/tokens/{id}"), &other)
        .send()
        .await
        .unwrap();
    assert_problem(r, StatusCode::NOT_FOUND).await;

    // Expired: 401 from the instant it expires. (The service role may not
    // change an expiry, so the owner backdates it.)
    let mut owner = app.owner().await;
    sqlx::query("UPDATE personal_access_tokens SET expires_at = now() - interval '1 second'")
        .execute(&mut owner)
        .await
        .unwrap();
    assert_problem(app.list(&token, "").await, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test]
async fn tokens_cannot_manage_tokens() {
    let app = spawn_app().await;
    let (_, login) = app.new_user().await;
    let (id, token) = token_with(&app, &login, &["tasks:read", "tasks:write"]).await;
    let r = create_token(
        &app,
        &token,
        json!({"name": "escalate", "scopes": ["tasks:write"]}),
    )
    .await;
    let p = assert_problem(r, StatusCode::FORBIDDEN).await;
    assert_eq!(p["type"], "urn:taskflow:problem:forbidden");
    let r = app
        .req(Method::GET, "/tokens", &token)
        .send()
        .await
        .unwrap();
    assert_problem(r, StatusCode::FORBIDDEN).await;
    let r = app
        .req(Method::DELETE, &format!("/tokens/{id}"), &token)
        .send()
        .await
        .unwrap();
    assert_problem(r, StatusCode::FORBIDDEN).await;
}

#[tokio::test]
async fn create_validates_every_field() {
    let app = spawn_app().await;
    let (_, login) = app.new_user().await;
    let r = create_token(
        &app,
        &login,
        json!({"name": "", "scopes": ["tasks:read", "admin"], "expires_in_days": 400, "x": 1}),
    )
    .await;
    let p = assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(
        error_fields(&p),
        ["x", "name", "scopes[1]", "expires_in_days"]
    );
    let r = create_token(&app, &login, json!({"name": "n", "scopes": []})).await;
    let p = assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(error_fields(&p), ["scopes"]);
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM personal_access_tokens")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(n, 0);
}
