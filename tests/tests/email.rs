//! Email end to end against a real SMTP server (`aiosmtpd` from PyPI): API → outbox → relay
//! → broker → reminders worker (fires the reminder) → notifier (plans the mail in the
//! event's transaction) → sender → SMTP. A refused first attempt and its retry, a restarted
//! notifier and a redelivery of every event that send nothing twice, and a digest of mails
//! released together.
//!
//! Every wait is on state (a message reaching the server, rows in the attempt log, metrics),
//! never a fixed sleep, except where a test shows that something does *not* happen.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use chrono::{DateTime, Duration as ChronoDuration, SubsecRound, Utc};
use reqwest::Method;
use serde_json::{json, Value};
use sqlx::PgPool;
use taskflow_schemas::{examples, topics, Event, EventType};
use taskflow_tests::{
    broker::{brokers, create_topic},
    email::SmtpServer,
    metrics,
    system::TestSystem,
    unique,
};
use taskflow_workers::delivery::email::{self, reminder_email, EmailSettings, PlannedEmail};
use taskflow_workers::delivery::{store, DeliverySettings};
use taskflow_workers::notifier::{self, NotifierSettings};
use taskflow_workers::reminders;
use taskflow_workers::runtime::WorkerHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(90);
const FROM: &str = "Taskflow <noreply@example.com>";

struct Setup {
    sys: TestSystem,
    topic: String,
    reminders_topic: String,
    group: String,
    smtp_port: u16,
    stop_reminders: CancellationToken,
    reminders: Option<reminders::RemindersWorker>,
}

struct Notifier {
    stop: CancellationToken,
    handle: WorkerHandle,
    registry: prometheus::Registry,
}

impl Notifier {
    async fn stop(self) {
        self.stop.cancel();
        self.handle.join().await.unwrap();
    }
}

fn delivery(smtp_port: u16) -> DeliverySettings {
    DeliverySettings {
        timeout: Duration::from_secs(5),
        retry_initial: Duration::from_millis(200),
        retry_max: Duration::from_secs(1),
        max_idle: Duration::from_secs(2),
        email: Some(EmailSettings::plaintext(
            "127.0.0.1",
            smtp_port,
            FROM.parse().unwrap(),
        )),
        ..DeliverySettings::default()
    }
}

async fn setup(smtp_port: u16) -> Setup {
    let brokers = brokers();
    let topic = unique("email-task-events");
    let reminders_topic = unique("email-reminders");
    let group = unique("email-notifier");
    create_topic(&brokers, &topic, 3).await;
    create_topic(&brokers, &reminders_topic, 3).await;
    create_topic(&brokers, &topics::dlq(&group), 1).await;
    let sys = TestSystem::start(&brokers, &topic).await;
    let stop_reminders = CancellationToken::new();
    let reminders = sys.spawn_reminders(&reminders_topic, &stop_reminders).await;
    Setup {
        sys,
        topic,
        reminders_topic,
        group,
        smtp_port,
        stop_reminders,
        reminders: Some(reminders),
    }
}

impl Setup {
    /// A notifier with email on, in consumer group `group`.
    fn notifier(&self, group: &str) -> Notifier {
        let mut ns = NotifierSettings::new(
            &self.sys.brokers,
            group,
            &[self.topic.as_str(), self.reminders_topic.as_str()],
        );
        ns.runtime
            .consumer_overrides
            .push(("fetch.wait.max.ms".to_owned(), "10".to_owned()));
        ns.delivery = delivery(self.smtp_port);
        let stop = CancellationToken::new();
        let registry = prometheus::Registry::new();
        let handle = notifier::spawn_notifier(
            ns,
            self.sys.db.pool.clone(),
            self.sys.codec.clone(),
            &registry,
            stop.clone(),
        )
        .unwrap();
        Notifier {
            stop,
            handle,
            registry,
        }
    }

    /// A new user: (token, id, address).
    async fn user(&self) -> (String, Uuid, String) {
        let token = self.sys.user().await;
        let (status, body) = self
            .sys
            .call(
                &token,
                Method::POST,
                "/tasks",
                Some(json!({"title": "who am I"})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        let task: Uuid = body["id"].as_str().unwrap().parse().unwrap();
        let (id, email): (Uuid, String) = sqlx::query_as(
            "SELECT u.id, u.email FROM users u JOIN tasks t ON t.user_id = u.id WHERE t.id = $1",
        )
        .bind(task)
        .fetch_one(&self.sys.db.pool)
        .await
        .unwrap();
        (token, id, email)
    }

    async fn stop(mut self) {
        self.stop_reminders.cancel();
        if let Some(r) = self.reminders.take() {
            r.join().await.unwrap();
        }
    }
}

/// `(state, [(attempt, status, succeeded)])` of each email delivery to `address`, oldest first.
async fn log(pool: &PgPool, address: &str) -> Vec<(String, Vec<(i32, Option<i32>, bool)>)> {
    let rows: Vec<(Uuid, String)> = sqlx::query_as(
        "SELECT id, state FROM deliveries WHERE channel = 'email' AND target = $1 ORDER BY id",
    )
    .bind(address)
    .fetch_all(pool)
    .await
    .unwrap();
    let mut out = Vec::new();
    for (id, state) in rows {
        let attempts: Vec<(i32, Option<i32>, bool)> = sqlx::query_as(
            "SELECT attempt, status, succeeded FROM delivery_attempts \
             WHERE delivery_id = $1 ORDER BY attempt",
        )
        .bind(id)
        .fetch_all(pool)
        .await
        .unwrap();
        out.push((state, attempts));
    }
    out
}

async fn wait_log(
    pool: &PgPool,
    address: &str,
    check: impl Fn(&[(String, Vec<(i32, Option<i32>, bool)>)]) -> bool,
) -> Vec<(String, Vec<(i32, Option<i32>, bool)>)> {
    let deadline = Instant::now() + WAIT;
    loop {
        let l = log(pool, address).await;
        if check(&l) {
            return l;
        }
        assert!(Instant::now() < deadline, "email log never matched: {l:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Plans a reminder mail for `user` as the notifier does, held until `not_before`.
async fn plan(pool: &PgPool, user: Uuid, title: &str, not_before: Option<DateTime<Utc>>) {
    let mut r = match examples::example(EventType::ReminderDue) {
        Event::ReminderDue(r) => r,
        _ => unreachable!(),
    };
    r.title = title.to_owned();
    let mut tx = pool.begin().await.unwrap();
    let planned = store::plan_email(
        &mut tx,
        user,
        Uuid::now_v7(),
        &PlannedEmail {
            payload: reminder_email(&r).unwrap(),
            not_before,
        },
    )
    .await
    .unwrap();
    assert_eq!(planned, 1);
    tx.commit().await.unwrap();
}

fn part<'a>(mail: &'a Value, content_type: &str) -> &'a str {
    mail["parts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["content_type"] == content_type)
        .unwrap_or_else(|| panic!("no {content_type} part: {mail}"))["body"]
        .as_str()
        .unwrap()
}

fn counter(registry: &prometheus::Registry, name: &str, label: (&str, &str)) -> f64 {
    metrics::counter(registry, name, &[label])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reminder_is_mailed_once_through_a_refusal_a_restart_and_a_redelivery() {
    let mut smtp = SmtpServer::start(1).await;
    let s = setup(smtp.port).await;
    let first = s.notifier(&s.group);
    let (token, _user, address) = s.user().await;

    let soon = (Utc::now() + ChronoDuration::seconds(2)).trunc_subsecs(3);
    let (status, body) = s
        .sys
        .call(
            &token,
            Method::POST,
            "/tasks",
            Some(json!({"title": "Pay <rent> & bills", "reminders": [{"at": soon.to_rfc3339()}]})),
        )
        .await;
    assert_eq!(status, 201, "{body}");

    // The server refuses the first attempt with a 451; the retry is accepted.
    let refused = smtp.next(WAIT).await.expect("a first attempt");
    assert_eq!(refused["status"], 451, "{refused}");
    let mail = smtp.next(WAIT).await.expect("a second attempt");
    assert_eq!(mail["status"], 250, "{mail}");
    assert_eq!(mail["message_id"], refused["message_id"], "one Message-ID");
    assert_eq!(mail["from"], FROM);
    assert_eq!(mail["mail_from"], "noreply@example.com");
    assert_eq!(mail["to"], address.as_str());
    assert_eq!(mail["rcpt_tos"], json!([address]));
    assert_eq!(mail["subject"], "Reminder: Pay <rent> & bills");
    assert_eq!(mail["content_type"], "multipart/alternative");
    assert!(
        part(&mail, "text/plain").contains("Reminder: Pay <rent> & bills"),
        "{mail}"
    );
    let html = part(&mail, "text/html");
    assert!(html.contains("Pay &lt;rent&gt; &amp; bills"), "{html}");

    let l = wait_log(&s.sys.db.pool, &address, |l| {
        l.len() == 1 && l[0].0 == "succeeded"
    })
    .await;
    assert_eq!(
        l[0].1,
        [(1, Some(451), false), (2, Some(250), true)],
        "two attempts, the SMTP reply codes recorded"
    );
    let id: Uuid =
        sqlx::query_scalar("SELECT id FROM deliveries WHERE channel = 'email' AND target = $1")
            .bind(&address)
            .fetch_one(&s.sys.db.pool)
            .await
            .unwrap();
    assert_eq!(
        mail["message_id"],
        format!("<{}@example.com>", id.simple()),
        "the Message-ID derives from the delivery id"
    );
    assert_eq!(
        counter(
            &first.registry,
            "taskflow_email_attempts_total",
            ("outcome", "transient")
        ),
        1.0
    );

    // Restart on the same group: nothing is sent again.
    first.stop().await;
    let again = s.notifier(&s.group);
    // And a notifier of a fresh group, which reads every event again from the start.
    let replay_group = unique("email-notifier-replay");
    create_topic(&s.sys.brokers, &topics::dlq(&replay_group), 1).await;
    let replay = s.notifier(&replay_group);
    let deadline = Instant::now() + WAIT;
    while counter(
        &replay.registry,
        "taskflow_notifier_feed_entries_total",
        ("outcome", "duplicate"),
    ) < 3.0
    {
        assert!(
            Instant::now() < deadline,
            "the replay never handled the events"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A short window to show that no second mail comes.
    assert!(
        smtp.next(Duration::from_secs(3)).await.is_none(),
        "no second mail"
    );
    assert_eq!(log(&s.sys.db.pool, &address).await.len(), 1);
    again.stop().await;
    replay.stop().await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reminders_held_in_quiet_hours_arrive_as_one_digest_at_the_windows_end() {
    let mut smtp = SmtpServer::start(0).await;
    let s = setup(smtp.port).await;
    let n = s.notifier(&s.group);
    let (token, _user, address) = s.user().await;
    // Quiet hours in a zone with daylight saving time: began an hour ago, end in 12 s.
    let zone = chrono_tz::Europe::Berlin;
    let now = Utc::now().trunc_subsecs(0);
    let end = now + ChronoDuration::seconds(12);
    let local = |t: DateTime<Utc>| t.with_timezone(&zone).format("%H:%M:%S").to_string();
    let (status, body) = s
        .sys
        .call(
            &token,
            Method::PUT,
            "/preferences",
            Some(json!({"time_zone": "Europe/Berlin",
                        "quiet_hours": {"start": local(now - ChronoDuration::hours(1)), "end": local(end)}})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // Two reminders that fire inside the window, a second apart.
    for (title, secs) in [("Water the plants", 2), ("Call <mum>", 3)] {
        let at = (Utc::now() + ChronoDuration::seconds(secs)).trunc_subsecs(3);
        let (status, body) = s
            .sys
            .call(
                &token,
                Method::POST,
                "/tasks",
                Some(json!({"title": title, "reminders": [{"at": at.to_rfc3339()}]})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    // Both planned, both held until the window's end.
    let held: Vec<DateTime<Utc>> = {
        let deadline = Instant::now() + WAIT;
        loop {
            let rows: Vec<DateTime<Utc>> = sqlx::query_scalar(
                "SELECT next_attempt_at FROM deliveries WHERE channel = 'email' AND target = $1",
            )
            .bind(&address)
            .fetch_all(&s.sys.db.pool)
            .await
            .unwrap();
            if rows.len() == 2 {
                break rows;
            }
            assert!(
                Instant::now() < deadline,
                "the reminders never fired: {rows:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    assert!(held.iter().all(|t| *t == end), "held until {end}: {held:?}");

    let mail = smtp.next(WAIT).await.expect("the digest");
    assert!(Utc::now() >= end, "not before the window's end");
    assert_eq!(mail["status"], 250, "{mail}");
    assert_eq!(mail["subject"], "2 reminders");
    assert_eq!(mail["to"], address.as_str());
    let text = part(&mail, "text/plain");
    let html = part(&mail, "text/html");
    assert!(
        text.contains("- Water the plants") && text.contains("- Call <mum>"),
        "{text}"
    );
    assert!(
        text.find("Water the plants") < text.find("Call <mum>"),
        "in the order they were planned: {text}"
    );
    assert!(
        html.contains("Water the plants") && html.contains("Call &lt;mum&gt;"),
        "{html}"
    );
    assert!(
        mail["message_id"].as_str().unwrap().starts_with("<digest."),
        "{mail}"
    );
    let l = wait_log(&s.sys.db.pool, &address, |l| {
        l.len() == 2 && l.iter().all(|(state, _)| state == "succeeded")
    })
    .await;
    for (_, attempts) in &l {
        assert_eq!(
            attempts,
            &[(1, Some(250), true)],
            "the attempt on each: {l:?}"
        );
    }
    assert!(
        smtp.next(Duration::from_secs(2)).await.is_none(),
        "one mail only"
    );
    assert_eq!(
        counter(
            &n.registry,
            "taskflow_email_attempts_total",
            ("kind", "digest")
        ),
        1.0
    );
    n.stop().await;
    s.stop().await;
}

/// A digest of rows made due together by hand (as an operator releasing held mail would),
/// planned through the notifier's own planning function with a `not_before`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mails_released_together_by_hand_arrive_as_one_digest() {
    let mut smtp = SmtpServer::start(0).await;
    let s = setup(smtp.port).await;
    let n = s.notifier(&s.group);
    let (_token, user, address) = s.user().await;
    let held = Utc::now() + ChronoDuration::hours(1);
    for title in ["One", "Two", "Three"] {
        plan(&s.sys.db.pool, user, title, Some(held)).await;
    }
    // Held: nothing is sent meanwhile (a short window).
    assert!(smtp.next(Duration::from_secs(2)).await.is_none());
    sqlx::query(
        "UPDATE deliveries SET next_attempt_at = now() WHERE channel = 'email' AND target = $1",
    )
    .bind(&address)
    .execute(&s.sys.db.pool)
    .await
    .unwrap();
    sqlx::query("SELECT pg_notify('taskflow_deliveries', '')")
        .execute(&s.sys.db.pool)
        .await
        .unwrap();
    let mail = smtp.next(WAIT).await.expect("the digest");
    assert_eq!(mail["subject"], "3 reminders", "{mail}");
    wait_log(&s.sys.db.pool, &address, |l| {
        l.len() == 3
            && l.iter()
                .all(|(state, a)| state == "succeeded" && a.len() == 1)
    })
    .await;
    assert!(
        smtp.next(Duration::from_secs(2)).await.is_none(),
        "one mail only"
    );
    n.stop().await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_refusal_fails_the_delivery_at_once() {
    let mut smtp = SmtpServer::refusing(1, "550 5.1.1 No such user").await;
    let s = setup(smtp.port).await;
    let n = s.notifier(&s.group);
    let (_token, user, address) = s.user().await;
    plan(&s.sys.db.pool, user, "Nobody reads this", None).await;

    let refused = smtp.next(WAIT).await.expect("an attempt");
    assert_eq!(refused["status"], 550, "{refused}");
    let l = wait_log(&s.sys.db.pool, &address, |l| {
        l.len() == 1 && l[0].0 == "failed"
    })
    .await;
    assert_eq!(l[0].1, [(1, Some(550), false)], "one attempt, not retried");
    assert!(
        smtp.next(Duration::from_secs(2)).await.is_none(),
        "no retry"
    );
    assert_eq!(
        counter(
            &n.registry,
            "taskflow_email_deliveries_total",
            ("outcome", "failed")
        ),
        1.0
    );
    n.stop().await;
    s.stop().await;
}

/// The documented window: a sender that dies after the server accepted the mail and before
/// recording it. Its lease runs out, another sender sends the row again, and both mails
/// carry the same Message-ID (so a client can drop the second).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mail_sent_by_a_sender_that_died_is_resent_after_its_lease_with_the_same_message_id() {
    let mut smtp = SmtpServer::start(0).await;
    let s = setup(smtp.port).await;
    let (_token, user, address) = s.user().await;
    plan(&s.sys.db.pool, user, "Sent twice, deduplicated", None).await;

    // The "dying" sender: claims with a 1 s lease, sends, never records.
    let settings = delivery(smtp.port).email.unwrap();
    let limits = store::ClaimLimits {
        per_target: 4,
        limit: 10,
        digest_max: 50,
        channels: vec!["email".to_owned()],
        lease: Duration::from_secs(1),
    };
    let claimed = store::claim_with(&s.sys.db.pool, &[], &[], &limits)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    let payload = serde_json::from_str(&claimed[0].payload).unwrap();
    let transport = email::transport(&settings).unwrap();
    let sent = email::send(
        &transport,
        &settings,
        &address,
        &[claimed[0].id],
        &[payload],
    )
    .await;
    assert!(sent.attempt.succeeded, "{sent:?}");
    let first = smtp.next(WAIT).await.expect("the first mail");

    // A live notifier takes the row over once the lease ran out.
    let n = s.notifier(&s.group);
    let second = smtp.next(WAIT).await.expect("the resend");
    assert_eq!(first["message_id"], second["message_id"]);
    let l = wait_log(&s.sys.db.pool, &address, |l| {
        l.len() == 1 && l[0].0 == "succeeded"
    })
    .await;
    assert_eq!(
        l[0].1,
        [(2, Some(250), true)],
        "the claim counted the lost attempt"
    );
    assert!(
        smtp.next(Duration::from_secs(2)).await.is_none(),
        "no third mail"
    );
    n.stop().await;
    s.stop().await;
}

/// The shipped binary refuses an incomplete SMTP configuration at start-up, naming the
/// variable, before it connects anywhere (no database or broker is given here).
#[test]
fn the_notifier_binary_names_a_bad_smtp_setting_at_start_up() {
    let bin = taskflow_tests::worker::binary("taskflow-notifier");
    let cases: [(&[(&str, &str)], &str); 4] = [
        (
            &[("TASKFLOW_SMTP_HOST", "smtp.example.com")],
            "TASKFLOW_SMTP_FROM is required when TASKFLOW_SMTP_HOST is set",
        ),
        (
            &[
                ("TASKFLOW_SMTP_HOST", "smtp.example.com"),
                ("TASKFLOW_SMTP_FROM", "not an address"),
            ],
            "TASKFLOW_SMTP_FROM=\"not an address\" is invalid",
        ),
        (
            &[
                ("TASKFLOW_SMTP_HOST", "smtp.example.com"),
                ("TASKFLOW_SMTP_FROM", FROM),
                ("TASKFLOW_SMTP_USERNAME", "mailer"),
            ],
            "TASKFLOW_SMTP_PASSWORD is required when TASKFLOW_SMTP_USERNAME is set",
        ),
        (
            &[
                ("TASKFLOW_SMTP_HOST", "smtp.example.com"),
                ("TASKFLOW_SMTP_FROM", FROM),
                ("TASKFLOW_SMTP_TLS", "ssl"),
            ],
            "TASKFLOW_SMTP_TLS=\"ssl\" is invalid",
        ),
    ];
    for (vars, want) in cases {
        let out = std::process::Command::new(&bin)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(vars.iter().copied())
            .output()
            .expect("run taskflow-notifier (cargo build --workspace --bins first)");
        assert!(!out.status.success(), "{vars:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(want), "{vars:?}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_change_is_mailed_when_its_owner_asked_for_it() {
    let mut smtp = SmtpServer::start(0).await;
    let s = setup(smtp.port).await;
    let n = s.notifier(&s.group);
    let (token, _user, address) = s.user().await;
    let (status, body) = s
        .sys
        .call(
            &token,
            Method::PUT,
            "/preferences",
            Some(json!({"channels": {"task.completed": ["email"]}})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, task) = s
        .sys
        .call(
            &token,
            Method::POST,
            "/tasks",
            Some(json!({"title": "File taxes"})),
        )
        .await;
    assert_eq!(status, 201, "{task}");
    let (status, _) = s
        .sys
        .call(
            &token,
            Method::POST,
            &format!("/tasks/{}/complete", task["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(status, 200);
    // Only the completion is mailed: creations keep their default channels (no email).
    let mail = smtp.next(WAIT).await.expect("the completion's mail");
    assert_eq!(mail["to"], address.as_str());
    assert_eq!(mail["subject"], "Completed: File taxes");
    assert!(
        part(&mail, "text/plain").starts_with("Completed: File taxes"),
        "{mail}"
    );
    assert!(smtp.next(Duration::from_secs(1)).await.is_none());
    n.stop().await;
    s.stop().await;
}
