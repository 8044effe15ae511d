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
use taskflow_producer::web::CONTENT_SECURITY_POLICY;
use taskflow_tests::{
    broker::{brokers, create_topic},
    npm,
    system::TestSystem,
    unique,
};
use tokio_util::sync::CancellationToken;

const PLAYWRIGHT_CORE_VERSION: &str = "1.65.2";
const AXE_CORE_VERSION: &str = "4.14.1";
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
    let notifier = sys
        .spawn_notifier(&[topic.as_str(), reminders_topic.as_str()], &stop, |_| {})
        .await;
    let reminder_worker = sys.spawn_reminders(&reminders_topic, &stop).await;
    let recurrence_worker = sys.spawn_recurrence(&stop).await;
    let audit_worker = sys
        .spawn_audit(&[topic.as_str(), reminders_topic.as_str()], &stop)
        .await;
    let axe = npm::package("axe-core", AXE_CORE_VERSION);

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
            .env("AXE_CORE", axe)
            // Set to a directory to refresh the screenshots under docs/ (see the README).
            .env(
                "SCREENSHOTS",
                std::env::var("TASKFLOW_WEB_SCREENSHOTS").unwrap_or_default(),
            )
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

    let words = &report["words"];
    assert_eq!(
        words["preset"],
        format!(
            "Repeats every weekday at 09:00 ({}).",
            report["zone"].as_str().unwrap()
        ),
        "{words}"
    );
    assert_eq!(words["preset_next"], 3, "{words}");
    assert!(
        words["custom"]
            .as_str()
            .unwrap()
            .starts_with("Repeats every month on the first Monday at 09:00"),
        "{words}"
    );
    assert_eq!(words["custom_select"], "custom", "{words}");
    assert!(
        words["invalid"]
            .as_str()
            .unwrap()
            .starts_with("rrule: invalid RRULE"),
        "{words}"
    );
    let badges = words["badges"].as_str().unwrap();
    for b in ["high", "repeats", "#work", "#daily"] {
        assert!(badges.contains(b), "{b} in {badges:?}");
    }

    let filtered = words["filtered"].as_array().unwrap();
    assert_eq!(filtered.len(), 1, "priority and tag filters: {words}");
    assert!(
        filtered[0].as_str().unwrap().starts_with("Standup "),
        "{words}"
    );

    let recurring = &report["recurring"];
    assert_eq!(recurring["next_in_a"], true, "{recurring}");
    assert_eq!(recurring["next_in_b"], true, "{recurring}");
    let series = &report["series"];
    assert_eq!(series["visible"], true, "{series}");
    assert!(
        series["words"]
            .as_str()
            .unwrap()
            .starts_with("Repeats every weekday at 09:00"),
        "{series}"
    );
    assert_eq!(series["next"].as_array().unwrap().len(), 3, "{series}");
    let instances = series["instances"].as_array().unwrap();
    assert_eq!(instances.len(), 2, "{series}");
    assert!(
        instances
            .iter()
            .any(|i| i.as_str().unwrap().ends_with("open (this one)")),
        "{series}"
    );
    let history = report["history"].as_array().unwrap();
    assert!(
        history
            .iter()
            .any(|h| h.as_str().unwrap().starts_with("Created")),
        "{history:?}"
    );
    assert_eq!(
        report["reminder_words"][0], "15 minutes before the due dateRemove",
        "{report:#}"
    );
    assert!(
        report["reminder_badge"]
            .as_str()
            .unwrap()
            .contains("1 reminder"),
        "{report:#}"
    );
    assert_eq!(report["dialog_closed"], true);

    let conflict = &report["conflict"];
    assert_eq!(conflict["shown"], true, "{conflict}");
    assert!(
        conflict["text"]
            .as_str()
            .unwrap()
            .contains("Someone saved version 2"),
        "{conflict}"
    );
    let fields = conflict["fields"].as_array().unwrap();
    assert_eq!(fields.len(), 1, "only the title differs: {conflict}");
    assert_eq!(fields[0][0], "Title");
    assert!(
        fields[0][1].as_str().unwrap().ends_with(" by B"),
        "{conflict}"
    );
    assert!(
        fields[0][2].as_str().unwrap().ends_with(" by A"),
        "{conflict}"
    );
    assert_eq!(conflict["focus"], "conflict-theirs", "{conflict}");
    assert!(
        conflict["saved_title"].as_str().unwrap().ends_with(" by A"),
        "{conflict}"
    );
    assert_eq!(conflict["b_sees"], true, "{conflict}");
    let history: Vec<&str> = conflict["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap())
        .collect();
    assert_eq!(history.len(), 3, "{history:?}");
    assert!(history[0].starts_with("Created"), "{history:?}");
    assert!(
        history[1].starts_with("Changed") && history[1].ends_with(" by B"),
        "{history:?}"
    );
    assert!(
        history[2].starts_with("Changed") && history[2].ends_with(" by A"),
        "{history:?}"
    );

    // axe-core on the log-in page, the task list, the inbox, the task dialog and the
    // conflict: no serious or critical violation.
    assert_eq!(report["axe"], serde_json::json!([]), "{:#}", report["axe"]);
    assert_eq!(
        report["axe_control"],
        serde_json::json!(["image-alt"]),
        "the audit finds a planted violation"
    );

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
            // The broken rule typed on purpose: its preview is a 422.
            let invalid_rule = e["page"] == "a" && text.contains("status of 422");
            // The edit that met a newer version on purpose.
            let stale = e["page"] == "a" && text.contains("status of 412");
            !(invalid_rule || stale || (e["page"] == "b" && cut))
        })
        .collect();
    assert!(errors.is_empty(), "{errors:?}");

    stop.cancel();
    notifier.join().await.unwrap();
    reminder_worker.join().await.unwrap();
    recurrence_worker.join().await.unwrap();
    audit_worker.join().await.unwrap();
}
