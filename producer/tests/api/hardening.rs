//! Failure containment and abuse limits: panics, slow requests, missing
//! secrets, login floods.

use std::{num::NonZeroU32, time::Duration};

use axum::routing::get;
use reqwest::{header, StatusCode};
use serde_json::json;
use taskflow_producer::{app::routes, config::JwtSecret, Application, Settings};

use crate::helpers::{assert_problem, create_database, drop_database, spawn_app_with};

fn counter(registry: &prometheus::Registry, name: &str) -> f64 {
    registry
        .gather()
        .iter()
        .find(|f| f.name() == name)
        .map(|f| {
            f.get_metric()
                .iter()
                .map(|m| m.get_counter().get_value())
                .sum()
        })
        .unwrap_or(0.0)
}

#[tokio::test]
async fn a_panicking_handler_answers_problem_500_and_is_counted() {
    let app = spawn_app_with(
        |_| {},
        routes().route(
            "/test/panic",
            get(|| async {
                if std::hint::black_box(true) {
                    panic!("boom: internal detail");
                }
                "unreachable"
            }),
        ),
    )
    .await;
    assert_eq!(counter(&app.registry, "taskflow_http_panics_total"), 0.0);
    let r = app.client.get(app.url("/test/panic")).send().await.unwrap();
    let p = assert_problem(r, StatusCode::INTERNAL_SERVER_ERROR).await;
    assert!(
        !p["detail"].as_str().unwrap().contains("boom"),
        "panic text leaked"
    );
    assert_eq!(counter(&app.registry, "taskflow_http_panics_total"), 1.0);
    // the server keeps serving
    let r = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_request_over_the_timeout_answers_problem_503() {
    let app = spawn_app_with(
        |s| s.request_timeout = Duration::from_millis(200),
        routes().route(
            "/test/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "too late"
            }),
        ),
    )
    .await;
    let r = app.client.get(app.url("/test/slow")).send().await.unwrap();
    let p = assert_problem(r, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(p["type"], "urn:taskflow:problem:timeout");
}

async fn build_error(secret: Option<JwtSecret>) -> String {
    let (db, url) = create_database().await;
    let mut settings = Settings::new(url);
    settings.jwt_secret = secret;
    let err = Application::build(settings, prometheus::Registry::new())
        .await
        .expect_err("the app must refuse to build");
    drop_database(&db).await;
    format!("{err:#}")
}

#[tokio::test]
async fn the_app_refuses_to_build_without_a_long_enough_jwt_secret() {
    let missing = build_error(None).await;
    assert!(missing.contains("TASKFLOW_JWT_SECRET"), "{missing}");
    let short = build_error(Some(JwtSecret::new("x".repeat(31)))).await;
    assert!(
        short.contains("31 bytes") && short.contains("32"),
        "{short}"
    );
}

#[tokio::test]
async fn login_is_rate_limited_per_account_with_retry_after() {
    let app = spawn_app_with(
        |s| s.auth_rate_per_account = NonZeroU32::new(3).unwrap(),
        routes(),
    )
    .await;
    // signup takes one of the account's three
    assert_eq!(
        app.signup("dave@example.com", "correct horse battery")
            .await
            .status(),
        StatusCode::CREATED
    );
    for _ in 0..2 {
        let r = app.login("DAVE@example.com", "wrong password!").await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    // even the right password is refused once the budget is spent
    let r = app.login("dave@example.com", "correct horse battery").await;
    let retry_after: u64 = r
        .headers()
        .get(header::RETRY_AFTER)
        .expect("Retry-After")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert_problem(r, StatusCode::TOO_MANY_REQUESTS).await;
    // another account is not affected
    let r = app
        .signup("erin@example.com", "correct horse battery")
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn signup_and_login_are_rate_limited_per_client_address() {
    let app = spawn_app_with(
        |s| s.auth_rate_per_ip = NonZeroU32::new(4).unwrap(),
        routes(),
    )
    .await;
    for i in 0..4 {
        let r = app
            .signup(&format!("user{i}@example.com"), "correct horse battery")
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    // every account is new, but the address's budget is spent; invalid
    // bodies count too
    let r = app
        .login("user0@example.com", "correct horse battery")
        .await;
    assert!(r.headers().get(header::RETRY_AFTER).is_some());
    assert_problem(r, StatusCode::TOO_MANY_REQUESTS).await;
    let r = app
        .client
        .post(app.url("/auth/signup"))
        .json(&json!({"email": "nope"}))
        .send()
        .await
        .unwrap();
    assert_problem(r, StatusCode::TOO_MANY_REQUESTS).await;
}
