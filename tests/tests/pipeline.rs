//! The whole product in one test: HTTP writes -> outbox -> relay -> broker ->
//! audit worker -> history API, every piece the real one.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use taskflow_schemas::topics;
use taskflow_tests::{
    broker::{brokers, create_topic},
    system::TestSystem,
    unique,
};
use taskflow_workers::audit::{self, AuditSettings};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_through_the_api_come_back_as_audited_history() {
    let brokers = brokers();
    let topic = unique("pipeline");
    let group = unique("pipeline-audit");
    create_topic(&brokers, &topic, 3).await;
    create_topic(&brokers, &topics::dlq(&group), 1).await;
    let sys = TestSystem::start(&brokers, &topic).await;
    let mut settings = AuditSettings::new(&brokers, &group, &[topic.as_str()]);
    settings.runtime.session_timeout = Duration::from_secs(6);
    let worker = audit::spawn_audit_worker(
        settings,
        sys.db.pool.clone(),
        sys.codec.clone(),
        &prometheus::Registry::new(),
        CancellationToken::new(),
    )
    .expect("audit worker");

    let token = sys.user().await;
    let api = |path: &str| format!("{}{path}", sys.api);
    let created: Value = sys
        .http
        .post(api("/tasks"))
        .bearer_auth(&token)
        .json(&json!({"title": "Renew passport", "priority": "low", "due_at": "2026-12-24T10:00:00+01:00"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    let r = sys
        .http
        .patch(api(&format!("/tasks/{id}")))
        .bearer_auth(&token)
        .header("if-match", "\"1\"")
        .json(&json!({"priority": "urgent", "tags": ["admin"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = sys
        .http
        .post(api(&format!("/tasks/{id}/complete")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // The audit worker records the three events; the history API serves them.
    let deadline = Instant::now() + Duration::from_secs(60);
    let history = loop {
        let h: Value = sys
            .http
            .get(api(&format!("/tasks/{id}/history")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if h["items"].as_array().map_or(0, Vec::len) >= 3 {
            break h;
        }
        assert!(Instant::now() < deadline, "history never filled: {h}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let items = history["items"].as_array().unwrap();
    let kinds: Vec<(&str, i64)> = items
        .iter()
        .map(|i| {
            (
                i["event_type"].as_str().unwrap(),
                i["version"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [("TaskCreated", 1), ("TaskUpdated", 2), ("TaskCompleted", 3)]
    );
    let mut changed: Vec<&str> = items[1]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["field"].as_str().unwrap())
        .collect();
    changed.sort_unstable();
    assert_eq!(changed, ["priority", "tags"]);
    let priority = items[1]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["field"] == "priority")
        .unwrap();
    assert_eq!(
        (&priority["old"], &priority["new"]),
        (&json!("low"), &json!("urgent"))
    );
    assert_eq!(items[2]["task"]["status"], "completed");

    // The feed lists a row once every transaction older than its insert has
    // ended (docs/design.md, "Audit log"): wait for that, briefly.
    let feed = loop {
        let feed: Value = sys
            .http
            .get(api("/audit?type=TaskUpdated"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if !feed["items"].as_array().unwrap().is_empty() {
            break feed;
        }
        assert!(
            Instant::now() < deadline,
            "feed never listed the update: {feed}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(feed["items"].as_array().unwrap().len(), 1, "{feed}");
    worker.stop().await.expect("worker stops");
}
