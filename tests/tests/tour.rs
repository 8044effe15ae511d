//! The README's tour (`scripts/tour`), run as the README says against the natively started
//! system: the `taskflow-api`, `taskflow-reminders` and `taskflow-notifier` binaries on the
//! test broker and a database of their own, and a real webhook receiver that verifies each
//! request with the Standard Webhooks library for Python. The script must succeed (the
//! reminder on the live stream, in the inbox, delivered to the webhook) and the receiver must
//! have verified the reminder it got.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use taskflow_schemas::topics;
use taskflow_tests::{
    broker::{brokers, create_topic},
    db,
    registry::registry_url,
    unique,
    webhooks::{Behaviour, Receiver},
    worker::{binary, free_port, ApiProcess, WorkerProcess},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_tour_does_what_the_readme_says() {
    let brokers = brokers();
    let task_events = unique("tour-task-events");
    let reminders = unique("tour-reminders");
    let (reminders_group, notifier_group) = (unique("tour-reminders"), unique("tour-notifier"));
    for t in [&task_events, &reminders] {
        create_topic(&brokers, t, 3).await;
    }
    for g in [&reminders_group, &notifier_group] {
        create_topic(&brokers, &topics::dlq(g), 1).await;
    }
    let database = db::fresh().await;
    let registry = registry_url().await;
    let api = ApiProcess::start(
        &database.url,
        &brokers,
        &registry,
        &task_events,
        &[("TASKFLOW_WEBHOOK_ALLOW_PRIVATE", "true".to_owned())],
    )
    .await;
    let worker = |bin: &str, group: &str, extra: &[(&str, String)]| {
        let mut env = vec![
            ("TASKFLOW_DATABASE_URL", database.url.clone()),
            ("TASKFLOW_KAFKA_BROKERS", brokers.clone()),
            ("TASKFLOW_SCHEMA_REGISTRY_URL", registry.clone()),
            ("TASKFLOW_KAFKA_GROUP_ID", group.to_owned()),
            ("TASKFLOW_TOPIC_TASK_EVENTS", task_events.clone()),
            ("TASKFLOW_TOPIC_REMINDERS", reminders.clone()),
            ("TASKFLOW_CONSUMER_FETCH_WAIT_MAX_MS", "10".to_owned()),
            ("TASKFLOW_ADMIN_ADDR", format!("127.0.0.1:{}", free_port())),
        ];
        env.extend(extra.iter().cloned());
        WorkerProcess::start_binary(binary(bin), &env)
    };
    let _reminders = worker("taskflow-reminders", &reminders_group, &[]);
    let _notifier = worker(
        "taskflow-notifier",
        &notifier_group,
        &[
            ("TASKFLOW_WEBHOOK_ALLOW_PRIVATE", "true".to_owned()),
            // The receiver learns the secret only once the tour printed it: its first
            // answers are 401-like failures, retried soon.
            ("TASKFLOW_WEBHOOK_RETRY_INITIAL_MS", "200".to_owned()),
            ("TASKFLOW_WEBHOOK_RETRY_MAX_MS", "1000".to_owned()),
        ],
    );
    let mut receiver = Receiver::start(Behaviour::FailFirst(0)).await;

    let secret_file = std::env::temp_dir().join(format!("{}.secret", unique("tour")));
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/tour");
    let mut tour = tokio::process::Command::new("bash")
        .arg(script)
        .env("API", &api.base)
        .env("REMINDER_IN", "5")
        .env("WEBHOOK_URL", &receiver.url)
        .env("WEBHOOK_SECRET_FILE", &secret_file)
        .kill_on_drop(true)
        .spawn()
        .expect("run scripts/tour");
    // The receiver gets the secret the tour was shown.
    let deadline = Instant::now() + Duration::from_secs(60);
    let secret = loop {
        if let Ok(s) = std::fs::read_to_string(&secret_file) {
            if s.trim().starts_with("whsec_") {
                break s.trim().to_owned();
            }
        }
        assert!(Instant::now() < deadline, "the tour never printed a secret");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    receiver.set_secret(&secret).await;
    let status = tokio::time::timeout(Duration::from_secs(180), tour.wait())
        .await
        .expect("the tour ends")
        .expect("wait for the tour");
    assert!(status.success(), "scripts/tour failed: {status}");
    // What the receiver verified: the reminder among it.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = receiver
            .next(deadline.saturating_duration_since(Instant::now()))
            .await
            .expect("the reminder reached the receiver");
        if r["type"] == "reminder.due" && r["verified"] == true {
            assert_eq!(r["data"]["title"], "Call the plumber");
            break;
        }
    }
    let _ = std::fs::remove_file(&secret_file);
}
