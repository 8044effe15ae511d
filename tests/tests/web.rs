//! The web page end to end in a real browser: headless Chromium (Debian's `chromium`)
//! driven by `playwright-core` from `tests/web/drive.mjs`, against the API, the relay and
//! the notifier and reminders workers in-process. Two pages of one user: a task created in
//! one appears in the other within a second; another user's page shows none of it; the
//! keyboard alone creates and completes a task; a dropped connection resumes where it left
//! off; a reminder rings the bell in both pages;
//! the page carries its Content-Security-Policy and causes no CSP violation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{path::Path, process::Command};

use serde_json::Value;
use taskflow_infra::outbox::OutboxWaker;
use taskflow_producer::web::CONTENT_SECURITY_POLICY;
use taskflow_schemas::topics;
use taskflow_tests::{
    broker::{brokers, create_topic},
    npm,
    system::TestSystem,
    unique,
};
use taskflow_workers::notifier::{self, NotifierSettings};
use taskflow_workers::reminders::{self, ReminderSettings};
use tokio_util::sync::CancellationToken;

const PLAYWRIGHT_CORE_VERSION: &str = "1.65.2";
const CHROMIUM: &str = "/usr/bin/chromium";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_page_lists_creates_completes_live_and_rings_the_bell() {
    // A missing browser is a failure, not a skip: `.ci/run` installs it.
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: install Debian's chromium (`apt-get install -y chromium`; .ci/run does)"
    );
    let playwright = npm::package("playwright-core", PLAYWRIGHT_CORE_VERSION);

    let brokers = brokers();
    let topic = unique("web-task-events");
    let reminders_topic = unique("web-reminders");
    create_topic(&brokers, &topic, 3).await;
    create_topic(&brokers, &reminders_topic, 3).await;
    let sys = TestSystem::start(&brokers, &topic).await;
    let stop = CancellationToken::new();

    let notifier_group = unique("notifier");
    create_topic(&brokers, &topics::dlq(&notifier_group), 1).await;
    let mut ns = NotifierSettings::new(
        &brokers,
        &notifier_group,
        &[topic.as_str(), reminders_topic.as_str()],
    );
    ns.runtime
        .consumer_overrides
        .push(("fetch.wait.max.ms".to_owned(), "10".to_owned()));
    let notifier = notifier::spawn_notifier(
        ns,
        sys.db.pool.clone(),
        sys.codec.clone(),
        &prometheus::Registry::new(),
        stop.clone(),
    )
    .unwrap();
    let reminders_group = unique("reminders");
    create_topic(&brokers, &topics::dlq(&reminders_group), 1).await;
    let mut rs = ReminderSettings::new(&brokers, &reminders_group, &topic, &reminders_topic);
    rs.runtime
        .consumer_overrides
        .push(("fetch.wait.max.ms".to_owned(), "10".to_owned()));
    let reminder_worker = reminders::spawn_reminders_worker(
        rs,
        sys.db.pool.clone(),
        OutboxWaker::new(sys.db.pool.clone()),
        sys.codec.clone(),
        &prometheus::Registry::new(),
        stop.clone(),
    )
    .unwrap();

    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("web")
        .join("drive.mjs");
    let api = sys.api.clone();
    // The browser runs for tens of seconds: off the runtime's threads, which serve the API.
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(script)
            .arg(api)
            .env("PLAYWRIGHT_CORE", playwright)
            .env("CHROMIUM", CHROMIUM)
            .output()
            .expect("run node (Node.js is required)")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("drive.mjs report: {e}\nstdout: {stdout}\nstderr: {stderr}"));
    eprintln!("{report:#}");
    assert!(report["error"].is_null(), "drive.mjs failed: {report:#}");

    let page = &report["page"];
    assert_eq!(page["status"], 200);
    assert_eq!(page["content_type"], "text/html; charset=utf-8");
    assert_eq!(page["csp"], CONTENT_SECURITY_POLICY);
    assert_eq!(page["nosniff"], "nosniff");
    assert_eq!(page["referrer_policy"], "no-referrer");

    let live = &report["live"];
    assert_eq!(live["create_status"], 201);
    let latency = live["created_to_b_ms"].as_i64().unwrap();
    assert!(latency < 1000, "task reached page B after {latency} ms");
    let others = report["other_user_titles"].as_array().unwrap();
    assert!(
        others
            .iter()
            .all(|t| t.as_str().is_some_and(|t| !t.starts_with("Live "))),
        "Bob's page shows Alice's task: {others:?}"
    );

    let kb = &report["keyboard"];
    assert_eq!(kb["reached_title"], true, "{kb}");
    assert_eq!(kb["reached_complete"], true, "{kb}");
    assert_eq!(kb["focus_visible"], true, "{kb}");
    let done = kb["completed_titles"].as_array().unwrap();
    assert!(
        done.iter()
            .any(|t| t.as_str().is_some_and(|t| t.starts_with("Keyboard "))),
        "{kb}"
    );

    let lifecycle = &report["lifecycle"];
    assert_eq!(lifecycle["reopened_in_b"], true, "{lifecycle}");
    assert_eq!(lifecycle["deleted_in_b"], true, "{lifecycle}");
    let searched = lifecycle["searched"].as_array().unwrap();
    assert_eq!(searched.len(), 1, "only the match: {lifecycle}");
    assert!(
        searched[0]
            .as_str()
            .is_some_and(|t| t.starts_with("Keyboard ")),
        "{lifecycle}"
    );

    let reconnect = &report["reconnect"];
    assert_eq!(reconnect["dropped"], true, "{reconnect}");
    assert_eq!(reconnect["resumed"], true, "{reconnect}");
    let urls = reconnect["stream_urls"].as_array().unwrap();
    assert!(
        urls.iter()
            .any(|u| u["token"] == true && u["last_event_id"].is_string()),
        "a reconnect resumes with a fresh stream token and ?last_event_id=: {reconnect}"
    );

    let reminder = &report["reminder"];
    assert_eq!(reminder["create_status"], 201, "{reminder}");
    assert_eq!(reminder["rang"], true, "{reminder}");
    assert_eq!(reminder["bell_other"], "0", "{reminder}");
    assert_eq!(reminder["read_b"], true, "{reminder}");

    assert_eq!(report["phone_overflow"], false, "wider than a phone");
    // No CSP violation, failed asset or script error anywhere; the only errors allowed are
    // page B's failed connections while its network was cut on purpose.
    let errors: Vec<&Value> = report["console_errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            let text = e["text"].as_str().unwrap_or_default();
            let cut = text.contains("net::ERR_CONNECTION")
                || text.contains("net::ERR_EMPTY_RESPONSE")
                || text.contains("net::ERR_INCOMPLETE_CHUNKED_ENCODING");
            !(e["page"] == "b" && cut)
        })
        .collect();
    assert!(errors.is_empty(), "{errors:?}");

    stop.cancel();
    notifier.join().await.unwrap();
    reminder_worker.join().await.unwrap();
}
