use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{header, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{assert_problem, error_fields, spawn_app, TestApp};

#[tokio::test]
async fn signup_then_login_gives_a_working_bearer_token() {
    let app = spawn_app().await;
    let r = app.signup("Ada@Example.com", "correct horse battery").await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let user: Value = r.json().await.unwrap();
    assert_eq!(user["email"], "Ada@Example.com");
    assert!(Uuid::parse_str(user["id"].as_str().unwrap()).is_ok());

    // email matching is case-insensitive
    let r = app.login("ada@example.com", "correct horse battery").await;
    assert_eq!(r.status(), StatusCode::OK);
    let token: Value = r.json().await.unwrap();
    assert_eq!(token["token_type"], "Bearer");
    assert_eq!(token["expires_in"], 3600);
    let access = token["access_token"].as_str().unwrap();
    let r = app.list(access, "").await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn duplicate_email_is_a_409_problem() {
    let app = spawn_app().await;
    assert_eq!(
        app.signup("bob@example.com", "correct horse battery")
            .await
            .status(),
        StatusCode::CREATED
    );
    let r = app.signup("BOB@example.com", "another password").await;
    assert_problem(r, StatusCode::CONFLICT).await;
}

#[tokio::test]
async fn wrong_password_and_unknown_email_are_401() {
    let app = spawn_app().await;
    app.signup("carol@example.com", "correct horse battery")
        .await;
    let r = app.login("carol@example.com", "wrong password!").await;
    assert_problem(r, StatusCode::UNAUTHORIZED).await;
    let r = app
        .login("nobody@example.com", "correct horse battery")
        .await;
    assert_problem(r, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test]
async fn signup_validates_email_and_password() {
    let app = spawn_app().await;
    let r = app.signup("not-an-email", "short").await;
    let p = assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(error_fields(&p), ["email", "password"]);
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(n, 0);
}

/// Tries a read and a write with `token`; both must be 401 problems and
/// nothing may be written.
async fn assert_rejected(app: &TestApp, token: &str) {
    let r = app.list(token, "").await;
    assert!(r.headers().get(header::WWW_AUTHENTICATE).is_some());
    assert_problem(r, StatusCode::UNAUTHORIZED).await;
    let r = app.create_task(token, json!({"title": "sneaky"})).await;
    assert_problem(r, StatusCode::UNAUTHORIZED).await;
    app.assert_nothing_written().await;
}

#[tokio::test]
async fn missing_or_malformed_authorization_is_401() {
    let app = spawn_app().await;
    let r = app.client.get(app.url("/tasks")).send().await.unwrap();
    assert_problem(r, StatusCode::UNAUTHORIZED).await;
    let r = app
        .client
        .post(app.url("/tasks"))
        .header(header::AUTHORIZATION, "Basic YTpi")
        .json(&json!({"title": "x"}))
        .send()
        .await
        .unwrap();
    assert_problem(r, StatusCode::UNAUTHORIZED).await;
    assert_rejected(&app, "not-a-jwt").await;
}

fn sign(secret: &str, claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

#[tokio::test]
async fn expired_jwt_is_401() {
    let app = spawn_app().await;
    let (user, _) = app.new_user().await;
    let now = chrono::Utc::now().timestamp();
    let token = sign(
        &app.secret,
        &json!({"sub": user.to_string(), "iat": now - 7200, "exp": now - 3600}),
    );
    assert_rejected(&app, &token).await;
}

#[tokio::test]
async fn wrongly_signed_jwt_is_401() {
    let app = spawn_app().await;
    let (user, _) = app.new_user().await;
    let exp = chrono::Utc::now().timestamp() + 600;
    let token = sign(
        "some-other-secret",
        &json!({"sub": user.to_string(), "exp": exp}),
    );
    assert_rejected(&app, &token).await;
}

#[tokio::test]
async fn alg_none_and_rs256_jwts_are_401() {
    let app = spawn_app().await;
    let (user, good) = app.new_user().await;
    let exp = chrono::Utc::now().timestamp() + 600;
    let claims = URL_SAFE_NO_PAD.encode(json!({"sub": user.to_string(), "exp": exp}).to_string());
    for alg in ["none", "None", "RS256"] {
        let header = URL_SAFE_NO_PAD.encode(json!({"alg": alg, "typ": "JWT"}).to_string());
        assert_rejected(&app, &format!("{header}.{claims}.")).await;
    }
    // The real token's signature pasted onto an alg=none header is refused too.
    let sig = good.rsplit('.').next().unwrap();
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#);
    assert_rejected(&app, &format!("{header}.{claims}.{sig}")).await;
}

#[tokio::test]
async fn token_without_sub_is_401() {
    let app = spawn_app().await;
    let exp = chrono::Utc::now().timestamp() + 600;
    assert_rejected(&app, &sign(&app.secret, &json!({"exp": exp}))).await;
    // and a sub that is not a user id
    assert_rejected(
        &app,
        &sign(&app.secret, &json!({"exp": exp, "sub": "admin"})),
    )
    .await;
}
