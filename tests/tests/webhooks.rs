//! Webhooks end to end: API → outbox → relay → broker → notifier (plans the delivery in the
//! event's transaction) → sender → a real receiver that verifies each request with the
//! Standard Webhooks library for Python. Retries and the attempt log, rotation, a dead
//! receiver that must not slow anyone else down, the delivery-time address check, and an
//! endpoint disabled after failing too long.
//!
//! Every wait is on state (a request reaching the receiver, rows in the log), never a fixed
//! sleep, except where a test shows that something does *not* happen within a window.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use chrono::{Duration as ChronoDuration, SubsecRound, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use taskflow_infra::webhook::target::TargetPolicy;
use taskflow_tests::{
    broker::{brokers, create_topic},
    system::TestSystem,
    unique,
    webhooks::{Behaviour, Receiver},
};
use taskflow_workers::delivery::DeliverySettings;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(60);

struct Setup {
    sys: TestSystem,
    stop: CancellationToken,
    notifier: Option<taskflow_workers::runtime::WorkerHandle>,
    reminders: Option<taskflow_workers::reminders::RemindersWorker>,
}

/// The API and relay, and the notifier with `delivery` (private targets allowed unless the
/// test says otherwise: the receivers listen on 127.0.0.1).
async fn setup(delivery: DeliverySettings) -> Setup {
    setup_with(delivery, false).await
}

/// [`setup`], with the reminders worker too when `reminders`.
async fn setup_with(delivery: DeliverySettings, with_reminders: bool) -> Setup {
    let brokers = brokers();
    let topic = unique("webhooks-task-events");
    let reminders = unique("webhooks-reminders");
    create_topic(&brokers, &topic, 3).await;
    create_topic(&brokers, &reminders, 3).await;
    let sys = TestSystem::start(&brokers, &topic).await;
    let stop = CancellationToken::new();
    let notifier = sys
        .spawn_notifier(&[topic.as_str(), reminders.as_str()], &stop, |ns| {
            ns.delivery = delivery;
        })
        .await;
    let reminders = if with_reminders {
        Some(sys.spawn_reminders(&reminders, &stop).await)
    } else {
        None
    };
    Setup {
        sys,
        stop,
        notifier: Some(notifier),
        reminders,
    }
}

fn fast() -> DeliverySettings {
    DeliverySettings {
        policy: TargetPolicy {
            allow_private: true,
        },
        timeout: Duration::from_secs(5),
        retry_initial: Duration::from_millis(200),
        retry_max: Duration::from_secs(1),
        max_idle: Duration::from_secs(2),
        ..DeliverySettings::default()
    }
}

impl Setup {
    async fn call(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.sys.call(token, method, path, body).await
    }

    /// Registers `url` for `token`'s user; returns (endpoint id, secret).
    async fn endpoint(&self, token: &str, url: &str) -> (String, String) {
        let (status, body) = self
            .call(token, Method::POST, "/webhooks", Some(json!({"url": url})))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        (
            body["id"].as_str().unwrap().to_owned(),
            body["secret"].as_str().unwrap().to_owned(),
        )
    }

    async fn create_task(&self, token: &str, title: &str) -> String {
        let (status, body) = self
            .call(token, Method::POST, "/tasks", Some(json!({"title": title})))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_str().unwrap().to_owned()
    }

    async fn deliveries(&self, token: &str, endpoint: &str) -> Vec<Value> {
        let (status, body) = self
            .call(
                token,
                Method::GET,
                &format!("/webhooks/{endpoint}/deliveries"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["items"].as_array().unwrap().clone()
    }

    /// Waits until `check` holds for the endpoint's delivery log.
    async fn wait_log(
        &self,
        token: &str,
        endpoint: &str,
        check: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let deadline = Instant::now() + WAIT;
        loop {
            let log = self.deliveries(token, endpoint).await;
            if check(&log) {
                return log;
            }
            assert!(
                Instant::now() < deadline,
                "delivery log never matched: {log:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn stop(mut self) {
        self.stop.cancel();
        if let Some(n) = self.notifier.take() {
            n.join().await.unwrap();
        }
        if let Some(r) = self.reminders.take() {
            r.join().await.unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_that_fails_twice_then_succeeds_has_three_attempts_and_one_success() {
    let s = setup(fast()).await;
    let mut receiver = Receiver::start(Behaviour::FailFirst(2)).await;
    let token = s.sys.user().await;
    let (endpoint, secret) = s.endpoint(&token, &receiver.url).await;
    assert!(secret.starts_with("whsec_"), "{secret}");
    receiver.set_secret(&secret).await;
    let task = s.create_task(&token, "water the plants").await;

    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(
            receiver
                .next(WAIT)
                .await
                .expect("an attempt reaches the receiver"),
        );
    }
    for r in &seen {
        assert_eq!(r["verified"], true, "the Python library verifies it: {r}");
        assert_eq!(r["type"], "task.created");
        assert_eq!(r["data"]["metadata"]["task_id"], task.as_str());
    }
    let statuses: Vec<i64> = seen.iter().map(|r| r["status"].as_i64().unwrap()).collect();
    assert_eq!(statuses, [500, 500, 204]);
    assert!(
        seen.iter().all(|r| r["id"] == seen[0]["id"]),
        "one webhook-id for every attempt: {seen:?}"
    );

    let log = s
        .wait_log(&token, &endpoint, |log| {
            log.len() == 1 && log[0]["state"] == "succeeded"
        })
        .await;
    let attempts = log[0]["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 3, "{log:?}");
    let recorded: Vec<(i64, bool)> = attempts
        .iter()
        .map(|a| {
            (
                a["status"].as_i64().unwrap(),
                a["succeeded"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(recorded, [(500, false), (500, false), (204, true)]);
    assert_eq!(log[0]["webhook_id"], seen[0]["id"]);
    assert!(attempts
        .iter()
        .all(|a| a["latency_ms"].as_i64().unwrap() >= 0));
    // Nothing more arrives: the success is final.
    assert!(receiver.next(Duration::from_secs(1)).await.is_none());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_receiver_does_not_hold_up_another_users_deliveries() {
    let s = setup(DeliverySettings {
        // Far longer than the test: A's attempts stay in flight throughout.
        timeout: Duration::from_secs(120),
        per_endpoint: 2,
        ..fast()
    })
    .await;
    let dead = Receiver::start(Behaviour::Hang).await;
    let mut alive = Receiver::start(Behaviour::FailFirst(0)).await;
    let (alice, bob) = (s.sys.user().await, s.sys.user().await);
    let (dead_endpoint, _) = s.endpoint(&alice, &dead.url).await;
    let (_, secret) = s.endpoint(&bob, &alive.url).await;
    alive.set_secret(&secret).await;
    for i in 0..10 {
        s.create_task(&alice, &format!("alice {i}")).await;
    }
    // Alice's deliveries are in flight (two at a time) at the dead receiver.
    s.wait_log(&alice, &dead_endpoint, |log| {
        log.len() == 10 && log.iter().any(|d| d["state"] == "pending")
    })
    .await;
    let started = Instant::now();
    for i in 0..5 {
        s.create_task(&bob, &format!("bob {i}")).await;
    }
    for _ in 0..5 {
        let r = alive.next(WAIT).await.expect("bob's delivery arrives");
        assert_eq!(r["verified"], true);
    }
    let took = started.elapsed();
    // Every one of Bob's arrived while Alice's first attempts were still hanging.
    let log = s.deliveries(&alice, &dead_endpoint).await;
    assert!(
        log.iter()
            .all(|d| d["attempts"].as_array().unwrap().is_empty()),
        "no attempt at the dead receiver has finished: {log:?}"
    );
    assert!(took < Duration::from_secs(60), "{took:?}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_secret_signs_with_both_until_the_overlap_ends_and_a_test_event_is_sent() {
    let s = setup(fast()).await;
    let mut receiver = Receiver::start(Behaviour::FailFirst(0)).await;
    let token = s.sys.user().await;
    let (endpoint, old) = s.endpoint(&token, &receiver.url).await;
    receiver.set_secret(&old).await;
    let (status, queued) = s
        .call(
            &token,
            Method::POST,
            &format!("/webhooks/{endpoint}/test"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
    let r = receiver.next(WAIT).await.unwrap();
    assert_eq!(r["type"], "webhook.test");
    assert_eq!(r["verified"], true);
    assert_eq!(r["id"], queued["webhook_id"]);
    assert_eq!(r["signatures"], 1);

    let (status, rotated) = s
        .call(
            &token,
            Method::POST,
            &format!("/webhooks/{endpoint}/rotate-secret"),
            Some(json!({"overlap_seconds": 3600})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let new = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    // The receiver still holds the old secret: it verifies, as the new one would.
    s.create_task(&token, "during the overlap").await;
    let r = receiver.next(WAIT).await.unwrap();
    assert_eq!(
        (r["verified"].clone(), r["signatures"].clone()),
        (json!(true), json!(2))
    );
    receiver.set_secret(&new).await;
    s.create_task(&token, "with the new secret").await;
    let r = receiver.next(WAIT).await.unwrap();
    assert_eq!(r["verified"], true, "{r}");

    // Without an overlap only the new secret signs.
    let (_, rotated) = s
        .call(
            &token,
            Method::POST,
            &format!("/webhooks/{endpoint}/rotate-secret"),
            Some(json!({"overlap_seconds": 0})),
        )
        .await;
    receiver.set_secret(&new).await;
    s.create_task(&token, "old secret retired").await;
    let r = receiver.next(WAIT).await.unwrap();
    assert_eq!(r["signatures"], 1);
    assert_eq!(
        r["verified"], false,
        "signed only with the newest secret: {r}"
    );
    receiver
        .set_secret(rotated["secret"].as_str().unwrap())
        .await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_that_now_resolves_to_loopback_is_refused_at_delivery() {
    // The strict policy, as in production.
    let s = setup(DeliverySettings {
        policy: TargetPolicy {
            allow_private: false,
        },
        max_attempts: 2,
        ..fast()
    })
    .await;
    let mut receiver = Receiver::start(Behaviour::FailFirst(0)).await;
    let token = s.sys.user().await;
    let user: Uuid = sqlx::query_scalar("SELECT id FROM users ORDER BY created_at DESC LIMIT 1")
        .fetch_one(&s.sys.db.pool)
        .await
        .unwrap();
    // Registered while the name pointed elsewhere (DNS rebinding): written as the API would.
    let port = receiver
        .url
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches("/hook")
        .to_owned();
    let endpoint = Uuid::now_v7();
    sqlx::query("INSERT INTO webhook_endpoints (id, user_id, url, secret) VALUES ($1, $2, $3, $4)")
        .bind(endpoint)
        .bind(user)
        .bind(format!("https://localhost:{port}/hook"))
        .bind(taskflow_infra::webhook::signing::new_secret())
        .execute(&s.sys.db.pool)
        .await
        .unwrap();
    s.create_task(&token, "nothing leaves").await;
    let log = s
        .wait_log(&token, &endpoint.to_string(), |log| {
            log.len() == 1 && log[0]["state"] == "failed"
        })
        .await;
    for a in log[0]["attempts"].as_array().unwrap() {
        let error = a["error"].as_str().unwrap();
        assert!(
            error.contains("localhost resolves only to internal addresses"),
            "{error}"
        );
        assert!(a["status"].is_null());
    }
    assert!(
        receiver.next(Duration::from_secs(1)).await.is_none(),
        "nothing reached the receiver"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_failing_too_long_is_disabled_and_its_owner_told() {
    let s = setup(DeliverySettings {
        disable_after: Duration::from_secs(1),
        ..fast()
    })
    .await;
    let receiver = Receiver::start(Behaviour::FailFirst(usize::MAX)).await;
    let token = s.sys.user().await;
    let (endpoint, _) = s.endpoint(&token, &receiver.url).await;
    s.create_task(&token, "never acknowledged").await;
    let deadline = Instant::now() + WAIT;
    let listed = loop {
        let (_, list) = s.call(&token, Method::GET, "/webhooks", None).await;
        if list["items"][0]["enabled"] == false {
            break list;
        }
        assert!(Instant::now() < deadline, "never disabled: {list}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let item = &listed["items"][0];
    assert!(item["disabled_reason"]
        .as_str()
        .unwrap()
        .starts_with("failing continuously since"));
    let log = s.deliveries(&token, &endpoint).await;
    assert_eq!(log[0]["state"], "cancelled", "{log:?}");
    let (_, inbox) = s.call(&token, Method::GET, "/notifications", None).await;
    let kinds: Vec<&str> = inbox["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["webhook_disabled"], "{inbox}");
    // Enabled again, it receives the next event.
    let (status, enabled) = s
        .call(
            &token,
            Method::POST,
            &format!("/webhooks/{endpoint}/enable"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{enabled}");
    assert_eq!(enabled["enabled"], true);
    assert!(enabled["failing_since"].is_null());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preferences_choose_the_channels_of_each_kind() {
    let s = setup(fast()).await;
    let mut receiver = Receiver::start(Behaviour::FailFirst(0)).await;
    let token = s.sys.user().await;
    let (_, secret) = s.endpoint(&token, &receiver.url).await;
    receiver.set_secret(&secret).await;
    let (status, body) = s
        .call(
            &token,
            Method::PUT,
            "/preferences",
            Some(json!({"channels": {"task.created": ["inbox"], "task.updated": ["live", "webhook"]}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let task = s.create_task(&token, "routed").await;
    let (status, _) = s
        .call(
            &token,
            Method::PATCH,
            &format!("/tasks/{task}"),
            Some(json!({"priority": "high"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // Only the update reaches the webhook; it comes after the create was handled (one
    // partition per task), so nothing for the create can still be on its way.
    let r = receiver.next(WAIT).await.unwrap();
    assert_eq!(r["type"], "task.updated");
    assert!(receiver.next(Duration::from_secs(1)).await.is_none());
    let (_, inbox) = s.call(&token, Method::GET, "/notifications", None).await;
    let kinds: Vec<&str> = inbox["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["task_created"], "{inbox}");
    let feed: Vec<String> = sqlx::query_scalar("SELECT kind FROM feed ORDER BY seq")
        .fetch_all(&s.sys.db.pool)
        .await
        .unwrap();
    assert_eq!(feed, ["TaskUpdated"], "the create stayed off the feed");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_hours_hold_webhooks_until_the_window_ends_but_an_urgent_reminder_goes_at_once() {
    let s = setup_with(fast(), true).await;
    let mut receiver = Receiver::start(Behaviour::FailFirst(0)).await;
    let token = s.sys.user().await;
    let (_, secret) = s.endpoint(&token, &receiver.url).await;
    receiver.set_secret(&secret).await;
    // A zone with daylight saving time; the window began an hour ago and ends in 12 s.
    let zone = chrono_tz::America::New_York;
    let now = Utc::now().trunc_subsecs(0);
    let end = now + ChronoDuration::seconds(12);
    let local = |t: chrono::DateTime<Utc>| t.with_timezone(&zone).format("%H:%M:%S").to_string();
    let (status, body) = s
        .call(
            &token,
            Method::PUT,
            "/preferences",
            Some(json!({"time_zone": "America/New_York",
                        "quiet_hours": {"start": local(now - ChronoDuration::hours(1)), "end": local(end)}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    s.create_task(&token, "ordinary one").await;
    s.create_task(&token, "ordinary two").await;
    let soon = (Utc::now() + ChronoDuration::seconds(2)).trunc_subsecs(3);
    let (status, body) = s
        .call(
            &token,
            Method::POST,
            "/tasks",
            Some(json!({"title": "the boiler", "priority": "urgent",
                        "reminders": [{"at": soon.to_rfc3339()}]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let first = receiver.next(WAIT).await.unwrap();
    assert_eq!(
        first["type"], "reminder.due",
        "the urgent reminder first: {first}"
    );
    assert!(Utc::now() < end, "delivered inside the quiet hours");
    let mut held = Vec::new();
    while held.len() < 3 {
        let r = receiver.next(WAIT).await.expect("the held deliveries come");
        held.push((r["type"].as_str().unwrap().to_owned(), Utc::now()));
    }
    for (kind, at) in &held {
        assert_eq!(kind, "task.created");
        assert!(*at >= end, "held until the window's end: {at} < {end}");
    }
    let spread = held[2].1 - held[0].1;
    assert!(
        spread < ChronoDuration::seconds(3),
        "released together: {held:?}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reminder_that_names_its_channels_goes_only_there() {
    let s = setup_with(fast(), true).await;
    let mut receiver = Receiver::start(Behaviour::FailFirst(0)).await;
    let token = s.sys.user().await;
    let (endpoint, secret) = s.endpoint(&token, &receiver.url).await;
    receiver.set_secret(&secret).await;
    // Task events stay off the webhook, so what arrives there is reminders only.
    let (status, body) = s
        .call(
            &token,
            Method::PUT,
            "/preferences",
            Some(json!({"channels": {"task.created": ["live"]}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let soon = |secs| {
        (Utc::now() + ChronoDuration::seconds(secs))
            .trunc_subsecs(3)
            .to_rfc3339()
    };
    let (status, inbox_only) = s
        .call(
            &token,
            Method::POST,
            "/tasks",
            Some(json!({"title": "inbox only",
                        "reminders": [{"at": soon(2), "channels": ["inbox", "inbox"]}]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{inbox_only}");
    assert_eq!(inbox_only["reminders"][0]["channels"], json!(["inbox"]));
    let (status, hook_only) = s
        .call(
            &token,
            Method::POST,
            "/tasks",
            Some(json!({"title": "webhook only",
                        "reminders": [{"at": soon(3), "channels": ["webhook"]}]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{hook_only}");

    let r = receiver
        .next(WAIT)
        .await
        .expect("the webhook-only reminder");
    assert_eq!(r["type"], "reminder.due");
    assert_eq!(r["data"]["title"], "webhook only");
    // Both reminders have fired by now (the inbox one first); its notification is the only
    // one, and nothing else reaches the webhook.
    let deadline = Instant::now() + WAIT;
    let inbox = loop {
        let (_, inbox) = s.call(&token, Method::GET, "/notifications", None).await;
        if !inbox["items"].as_array().unwrap().is_empty() {
            break inbox;
        }
        assert!(Instant::now() < deadline, "no notification");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let titles: Vec<&str> = inbox["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["inbox only"], "{inbox}");
    let log = s.deliveries(&token, &endpoint).await;
    assert_eq!(log.len(), 1, "{log:?}");
    assert!(receiver.next(Duration::from_secs(1)).await.is_none());
    s.stop().await;
}
