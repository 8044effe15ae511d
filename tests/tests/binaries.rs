//! The shipped `taskflow-api` binary as an operator runs it: configured from
//! `TASKFLOW_*` variables, serving the admin port, publishing through its
//! relay, and stopping cleanly on SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::{json, Value};
use taskflow_tests::{
    broker::{brokers, create_topic, Collector},
    db,
    registry::registry_url,
    unique,
    worker::{wait_http_ok, ApiProcess},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_binary_serves_admin_endpoints_publishes_and_stops_on_sigterm() {
    let brokers = brokers();
    let topic = unique("api-bin");
    create_topic(&brokers, &topic, 3).await;
    let database = db::fresh().await;
    let api = ApiProcess::start(
        &database.url,
        &brokers,
        &registry_url().await,
        &topic,
        &[("TASKFLOW_LOG_FORMAT", "json".to_owned())],
    )
    .await;
    let http = reqwest::Client::new();
    let (base, admin) = (api.base.clone(), api.admin.clone());
    wait_http_ok(&http, &format!("{admin}/healthz"), Duration::from_secs(60)).await;

    let creds = json!({"email": "ops@example.test", "password": "a long enough passphrase"});
    assert!(http
        .post(format!("{base}/auth/signup"))
        .json(&creds)
        .send()
        .await
        .unwrap()
        .status()
        .is_success());
    let login: Value = http
        .post(format!("{base}/auth/login"))
        .json(&creds)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["access_token"].as_str().unwrap();
    let created = http
        .post(format!("{base}/tasks"))
        .bearer_auth(token)
        .json(&json!({"title": "from the binary"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let received = Collector::new(&brokers, &topic)
        .collect(1, Duration::from_secs(60))
        .await;
    assert_eq!(received.len(), 1, "the binary's relay published the event");

    let metrics = http
        .get(format!("{admin}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for needle in [
        "http_requests_total",
        "route=\"/tasks\"",
        "taskflow_outbox_published_total",
        "taskflow_outbox_publish_latency_seconds_bucket",
        "taskflow_outbox_backlog",
        "taskflow_outbox_relay_active 1",
    ] {
        assert!(metrics.contains(needle), "/metrics lacks {needle}");
    }

    let status = tokio::time::timeout(Duration::from_secs(30), api.process.terminate())
        .await
        .expect("taskflow-api exits within 30 s of SIGTERM");
    assert!(status.success(), "exit status {status:?}");
}
