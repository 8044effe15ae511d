//! The reminders worker through HTTP, PostgreSQL and the broker: reminders fire once, as
//! `ReminderDue` on the reminders topic, with their ids and instants; a due change
//! reschedules, complete and delete cancel, reopen re-arms what is still ahead, a snooze
//! re-arms a fired reminder; an older event replayed after a newer one changes nothing; a
//! 09:00 local reminder on a DST-change day fires at the right UTC instant; two replicas
//! never fire one reminder twice; and 2,000 reminders due over 20 s fire exactly once each
//! (none of a task completed meanwhile) while the binary is SIGKILLed and restarted twice.
//!
//! Every wait is on state (the database, the topic, a metric), never a fixed sleep.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use chrono::{DateTime, Duration as ChronoDuration, SubsecRound, Utc};
use futures::StreamExt;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use taskflow_infra::outbox::OutboxWaker;
use taskflow_schemas::{topics, Event, ReminderDue};
use taskflow_tests::{
    broker::{brokers, create_topic, Collector, Received, TansuBroker},
    metrics::{counter, wait_for_counter},
    registry::registry_url,
    system::TestSystem,
    unique,
    worker::{binary, WorkerProcess},
};
use taskflow_workers::reminders::{self, Clock, ReminderSettings, RemindersWorker};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(90);

/// The kill test restarts group members on the shared test broker; it runs alone, every
/// other test holds a read guard.
static BROKER_LOAD: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

struct Setup {
    sys: TestSystem,
    token: String,
    group: String,
    reminders_topic: String,
}

async fn setup() -> Setup {
    setup_on(brokers()).await
}

async fn setup_on(brokers: String) -> Setup {
    let topic = unique("reminders-task-events");
    let reminders_topic = unique("reminders-due");
    let group = unique("reminders");
    create_topic(&brokers, &topic, 3).await;
    create_topic(&brokers, &reminders_topic, 3).await;
    create_topic(&brokers, &topics::dlq(&group), 1).await;
    let sys = TestSystem::start(&brokers, &topic).await;
    let token = sys.user().await;
    Setup {
        sys,
        token,
        group,
        reminders_topic,
    }
}

/// A running in-process worker, stopped on drop of its token.
struct Worker {
    handle: RemindersWorker,
    metrics: prometheus::Registry,
    shutdown: CancellationToken,
}

impl Worker {
    async fn stop(self) {
        self.shutdown.cancel();
        self.handle.join().await.expect("worker stops cleanly");
    }
}

impl Setup {
    fn settings(&self) -> ReminderSettings {
        let mut s = ReminderSettings::new(
            &self.sys.brokers,
            &self.group,
            &self.sys.topic,
            &self.reminders_topic,
        );
        s.runtime.session_timeout = Duration::from_secs(10);
        s.runtime.commit_interval = Duration::from_millis(200);
        s.runtime.max_backoff = Duration::from_secs(1);
        s.runtime
            .consumer_overrides
            .push(("fetch.wait.max.ms".to_owned(), "10".to_owned()));
        s
    }

    fn worker_with(&self, settings: ReminderSettings) -> Worker {
        let metrics = prometheus::Registry::new();
        let shutdown = CancellationToken::new();
        let handle = reminders::spawn_reminders_worker(
            settings,
            self.sys.db.pool.clone(),
            OutboxWaker::new(self.sys.db.pool.clone()),
            self.sys.codec.clone(),
            &metrics,
            shutdown.clone(),
        )
        .expect("reminders worker");
        Worker {
            handle,
            metrics,
            shutdown,
        }
    }

    fn worker(&self) -> Worker {
        self.worker_with(self.settings())
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.sys.call(&self.token, method, path, body).await
    }

    /// Creates a task; returns its id and its reminders' ids, in order.
    async fn task(&self, body: Value) -> (Uuid, Vec<Uuid>) {
        let (status, task) = self.call(Method::POST, "/tasks", Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{task}");
        let id = Uuid::parse_str(task["id"].as_str().unwrap()).unwrap();
        let rids = task["reminders"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| Uuid::parse_str(r["id"].as_str().expect("reminder id")).unwrap())
            .collect();
        (id, rids)
    }

    async fn post(&self, path: &str, body: Option<Value>) -> Value {
        let (status, v) = self.call(Method::POST, path, body).await;
        assert_eq!(status, StatusCode::OK, "{path}: {v}");
        v
    }

    /// The timer's (instant, state), once the predicate holds.
    async fn wait_timer(
        &self,
        task: Uuid,
        reminder: Uuid,
        what: &str,
        ok: impl Fn(DateTime<Utc>, &str) -> bool,
    ) -> (DateTime<Utc>, String) {
        let deadline = Instant::now() + WAIT;
        loop {
            let row: Option<(DateTime<Utc>, String)> = sqlx::query_as(
                "SELECT fire_at, state FROM reminder_timers WHERE task_id = $1 AND reminder_id = $2",
            )
            .bind(task)
            .bind(reminder)
            .fetch_optional(&self.sys.db.pool)
            .await
            .expect("read timer");
            if let Some((at, state)) = &row {
                if ok(*at, state) {
                    return (*at, state.clone());
                }
            }
            assert!(Instant::now() < deadline, "{what}: timer is {row:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn count_fired(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM reminder_timers WHERE state = 'fired'")
            .fetch_one(&self.sys.db.pool)
            .await
            .expect("count fired")
    }
}

fn instant(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().expect("a timestamp"))
        .expect("RFC 3339")
        .with_timezone(&Utc)
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("instant")
        .with_timezone(&Utc)
}

async fn decode_due(sys: &TestSystem, received: &[Received]) -> Vec<ReminderDue> {
    let mut out = Vec::new();
    for r in received {
        match sys.codec.decode(&r.payload).await.expect("decodes") {
            Event::ReminderDue(d) => out.push(d),
            other => panic!("not a ReminderDue: {other:?}"),
        }
    }
    out
}

/// Receives `ReminderDue`s until `n` distinct (reminder, instant) keys arrived.
async fn collect_keys(sys: &TestSystem, c: &Collector, n: usize) -> Vec<ReminderDue> {
    let deadline = Instant::now() + WAIT * 2;
    let mut all = Vec::new();
    let mut keys = HashSet::new();
    while keys.len() < n {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} reminders arrived",
            keys.len()
        );
        let got = decode_due(sys, &c.collect(n, Duration::from_millis(500)).await).await;
        for d in got {
            keys.insert(d.reminder_key.clone());
            all.push(d);
        }
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reminders_fire_once_with_their_ids_and_instants() {
    let _shared = BROKER_LOAD.read().await;
    let s = setup().await;
    let collector = Collector::new(&s.sys.brokers, &s.reminders_topic);
    let worker = s.worker();
    let now = Utc::now().trunc_subsecs(0);
    let due = now + ChronoDuration::seconds(4);
    let absolute = now + ChronoDuration::seconds(2);
    let (task, rids) = s
        .task(json!({
            "title": "Call the plumber",
            "due_at": due.to_rfc3339(),
            "reminders": [{"before": "PT1S"}, {"at": absolute.to_rfc3339()},
                          {"at": (now - ChronoDuration::hours(1)).to_rfc3339()}],
        }))
        .await;
    assert_eq!(rids.len(), 3);
    let fired = collect_keys(&s.sys, &collector, 2).await;
    let by_id: HashMap<Uuid, &ReminderDue> = fired
        .iter()
        .map(|d| (d.reminder_id.expect("reminder id"), d))
        .collect();
    let before = by_id[&rids[0]];
    assert_eq!(before.fire_at, due - ChronoDuration::seconds(1));
    assert_eq!(before.due_at, Some(due));
    assert_eq!(before.title, "Call the plumber");
    assert_eq!(before.metadata.task_id, task);
    assert!(before.fired_at.expect("fired_at") >= before.fire_at);
    assert_eq!(by_id[&rids[1]].fire_at, absolute);
    // The reminder set in the past never fires; nothing fires twice.
    assert!(!by_id.contains_key(&rids[2]));
    let extra = decode_due(&s.sys, &collector.drain_extra(Duration::from_secs(2)).await).await;
    assert!(extra.is_empty(), "{extra:?}");
    let (_, state) = s
        .wait_timer(task, rids[2], "past reminder", |_, st| st == "expired")
        .await;
    assert_eq!(state, "expired");
    assert_eq!(
        counter(&worker.metrics, "taskflow_reminders_fired_total", &[]),
        2.0
    );
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn due_changes_reschedule_complete_and_delete_cancel_reopen_rearms() {
    let _shared = BROKER_LOAD.read().await;
    let s = setup().await;
    let worker = s.worker();
    let due = (Utc::now() + ChronoDuration::days(2)).trunc_subsecs(0);
    let (task, rids) = s
        .task(json!({"title": "Dentist", "due_at": due.to_rfc3339(),
                     "reminders": [{"before": "PT15M"}]}))
        .await;
    let r = rids[0];
    let first = due - ChronoDuration::minutes(15);
    s.wait_timer(task, r, "armed on create", |a, st| {
        a == first && st == "pending"
    })
    .await;

    let moved = due + ChronoDuration::days(1);
    let (status, body) = s
        .call(
            Method::PATCH,
            &format!("/tasks/{task}"),
            Some(json!({"due_at": moved.to_rfc3339()})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["reminders"][0]["id"],
        r.to_string(),
        "the id is stable"
    );
    let second = moved - ChronoDuration::minutes(15);
    s.wait_timer(task, r, "rescheduled", |a, st| {
        a == second && st == "pending"
    })
    .await;

    s.post(&format!("/tasks/{task}/complete"), None).await;
    s.wait_timer(task, r, "cancelled", |_, st| st == "cancelled")
        .await;
    s.post(&format!("/tasks/{task}/reopen"), None).await;
    s.wait_timer(task, r, "re-armed", |a, st| a == second && st == "pending")
        .await;
    let (status, _) = s
        .call(Method::DELETE, &format!("/tasks/{task}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    s.wait_timer(task, r, "cancelled by delete", |_, st| st == "cancelled")
        .await;
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_event_replayed_after_a_newer_one_changes_nothing() {
    let _shared = BROKER_LOAD.read().await;
    let s = setup().await;
    let events = Collector::new(&s.sys.brokers, &s.sys.topic);
    let worker = s.worker();
    let due = (Utc::now() + ChronoDuration::days(2)).trunc_subsecs(0);
    let (task, rids) = s
        .task(json!({"title": "Replay", "due_at": due.to_rfc3339(),
                     "reminders": [{"before": "PT15M"}]}))
        .await;
    s.post(&format!("/tasks/{task}/complete"), None).await;
    s.wait_timer(task, rids[0], "cancelled", |_, st| st == "cancelled")
        .await;
    // v1 (TaskCreated, which armed the timer) again, after v2.
    let created = events
        .collect(1, WAIT)
        .await
        .into_iter()
        .next()
        .expect("TaskCreated on the topic");
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &s.sys.brokers)
        .create()
        .expect("producer");
    let stale_before = counter(
        &worker.metrics,
        "taskflow_reminders_events_applied_total",
        &[("outcome", "stale")],
    );
    producer
        .send(
            FutureRecord::to(&s.sys.topic)
                .key(created.key.as_deref().unwrap_or_default())
                .payload(&created.payload),
            Duration::from_secs(10),
        )
        .await
        .expect("replayed");
    wait_for_counter(
        &worker.metrics,
        "taskflow_reminders_events_applied_total",
        &[("outcome", "stale")],
        stale_before + 1.0,
        WAIT,
    )
    .await;
    let (_, state) = s
        .wait_timer(task, rids[0], "still cancelled", |_, _| true)
        .await;
    assert_eq!(state, "cancelled");
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snoozed_reminder_fires_again_at_the_new_instant() {
    let _shared = BROKER_LOAD.read().await;
    let s = setup().await;
    let collector = Collector::new(&s.sys.brokers, &s.reminders_topic);
    let worker = s.worker();
    let soon = (Utc::now() + ChronoDuration::seconds(1)).trunc_subsecs(3);
    let (task, rids) = s
        .task(json!({"title": "Stretch", "reminders": [{"at": soon.to_rfc3339()}]}))
        .await;
    let first = collect_keys(&s.sys, &collector, 1).await;
    assert_eq!(first[0].fire_at, soon);
    let snoozed = s
        .post(
            &format!("/tasks/{task}/reminders/{}/snooze", rids[0]),
            Some(json!({"for": "PT2S"})),
        )
        .await;
    let until = instant(&snoozed["reminders"][0]["snoozed_until"]);
    assert!(until > soon);
    let again = collect_keys(&s.sys, &collector, 1).await;
    assert_eq!(again[0].reminder_id, Some(rids[0]));
    assert_eq!(again[0].fire_at, until);
    assert_ne!(again[0].reminder_key, first[0].reminder_key);
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_09_00_local_reminder_on_a_dst_change_day_fires_at_the_right_utc_instant() {
    let _shared = BROKER_LOAD.read().await;
    let s = setup().await;
    let collector = Collector::new(&s.sys.brokers, &s.reminders_topic);
    // Berlin moves to summer time on 2027-03-28: 09:00 local is 08:00Z the day before and
    // 07:00Z that day. A daily 09:00 series, reminded 15 minutes before; its next instance
    // (created by the recurrence worker) falls on the change day.
    let recurrence_group = unique("recurrence");
    create_topic(&s.sys.brokers, &topics::dlq(&recurrence_group), 1).await;
    let mut rs = taskflow_workers::recurrence::RecurrenceSettings::new(
        &s.sys.brokers,
        &recurrence_group,
        &s.sys.topic,
    );
    rs.runtime
        .consumer_overrides
        .push(("fetch.wait.max.ms".to_owned(), "10".to_owned()));
    let recurrence_registry = prometheus::Registry::new();
    let recurrence = taskflow_workers::recurrence::spawn_recurrence_worker(
        rs,
        s.sys.db.pool.clone(),
        OutboxWaker::new(s.sys.db.pool.clone()),
        s.sys.codec.clone(),
        &recurrence_registry,
        CancellationToken::new(),
    )
    .expect("recurrence worker");

    let (first, _) = s
        .task(json!({
            "title": "Stand-up",
            "due_at": "2027-03-27T09:00:00+01:00",
            "recurrence": {"rrule": "FREQ=DAILY", "tz": "Europe/Berlin"},
            "reminders": [{"before": "PT15M"}],
        }))
        .await;
    s.post(&format!("/tasks/{first}/complete"), None).await;
    let deadline = Instant::now() + WAIT;
    let next: Value = loop {
        let (_, page) = s.call(Method::GET, "/tasks?status=open", None).await;
        if let Some(t) = page["items"].as_array().and_then(|a| a.first()) {
            break t.clone();
        }
        assert!(Instant::now() < deadline, "no next instance");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(instant(&next["due_at"]), at("2027-03-28T07:00:00Z"));
    let next_id = Uuid::parse_str(next["id"].as_str().unwrap()).unwrap();
    let rid = Uuid::parse_str(next["reminders"][0]["id"].as_str().unwrap()).unwrap();

    // A worker whose clock reads two seconds before that reminder.
    let mut settings = s.settings();
    settings.clock = Clock::shifted(at("2027-03-28T06:44:58Z") - Utc::now());
    let worker = s.worker_with(settings);
    s.wait_timer(next_id, rid, "armed", |a, st| {
        a == at("2027-03-28T06:45:00Z") && st == "pending"
    })
    .await;
    let fired = collect_keys(&s.sys, &collector, 1).await;
    assert_eq!(fired[0].metadata.task_id, next_id);
    assert_eq!(fired[0].fire_at, at("2027-03-28T06:45:00Z"));
    assert_eq!(fired[0].due_at, Some(at("2027-03-28T07:00:00Z")));
    assert!(fired[0].fired_at.expect("fired_at") >= fired[0].fire_at);
    worker.stop().await;
    recurrence.stop().await.expect("recurrence stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_never_fire_a_reminder_twice() {
    let _shared = BROKER_LOAD.read().await;
    let s = setup().await;
    let collector = Collector::new(&s.sys.brokers, &s.reminders_topic);
    let a = s.worker();
    let b = s.worker();
    let start = (Utc::now() + ChronoDuration::seconds(3)).trunc_subsecs(3);
    let n = 300;
    futures::stream::iter(0..n)
        .map(|i| {
            let when = start + ChronoDuration::milliseconds(i * 10);
            let s = &s;
            async move {
                s.task(json!({"title": format!("r{i}"), "reminders": [{"at": when.to_rfc3339()}]}))
                    .await
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;
    let fired = collect_keys(&s.sys, &collector, n as usize).await;
    let extra = decode_due(&s.sys, &collector.drain_extra(Duration::from_secs(2)).await).await;
    let mut events: HashMap<String, HashSet<Uuid>> = HashMap::new();
    for d in fired.iter().chain(extra.iter()) {
        events
            .entry(d.reminder_key.clone())
            .or_default()
            .insert(d.metadata.event_id);
    }
    assert_eq!(events.len(), n as usize);
    assert!(
        events.values().all(|ids| ids.len() == 1),
        "a key fired twice"
    );
    let total = counter(&a.metrics, "taskflow_reminders_fired_total", &[])
        + counter(&b.metrics, "taskflow_reminders_fired_total", &[]);
    assert_eq!(total, n as f64);
    a.stop().await;
    b.stop().await;
}

/// The binary, with static membership so a restarted process gets its partitions back.
fn start_binary(s: &Setup, instance: &str, registry: &str, admin_port: u16) -> WorkerProcess {
    WorkerProcess::start_binary(
        binary("taskflow-reminders"),
        &[
            ("TASKFLOW_DATABASE_URL", s.sys.db.url.clone()),
            ("TASKFLOW_KAFKA_BROKERS", s.sys.brokers.clone()),
            ("TASKFLOW_SCHEMA_REGISTRY_URL", registry.to_owned()),
            ("TASKFLOW_KAFKA_GROUP_ID", s.group.clone()),
            ("TASKFLOW_TOPIC_TASK_EVENTS", s.sys.topic.clone()),
            ("TASKFLOW_TOPIC_REMINDERS", s.reminders_topic.clone()),
            ("TASKFLOW_KAFKA_GROUP_INSTANCE_ID", instance.to_owned()),
            ("TASKFLOW_KAFKA_SESSION_TIMEOUT_MS", "10000".to_owned()),
            ("TASKFLOW_CONSUMER_FETCH_WAIT_MAX_MS", "10".to_owned()),
            ("TASKFLOW_ADMIN_ADDR", format!("127.0.0.1:{admin_port}")),
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_reminders_fire_exactly_once_across_two_sigkills() {
    let _alone = BROKER_LOAD.write().await;
    // A broker of its own: the shared one by now holds every earlier test's topics,
    // records and groups, and the kill test would measure that store.
    let broker = TansuBroker::start_new().await;
    let s = setup_on(broker.address()).await;
    let collector = Collector::new(&s.sys.brokers, &s.reminders_topic);
    let registry = registry_url().await;
    let began = Instant::now();
    let instance = unique("reminders-instance");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut process = start_binary(&s, &instance, &registry, port);

    // 2,000 reminders due over 20 s, starting once they are all created.
    let n: i64 = 2_000;
    let start = (Utc::now() + ChronoDuration::seconds(15)).trunc_subsecs(3);
    let mut created: Vec<(i64, Uuid)> = futures::stream::iter(0..n)
        .map(|i| {
            let when = start + ChronoDuration::milliseconds(i * 10);
            let s = &s;
            async move {
                let (id, _) = s
                    .task(
                        json!({"title": format!("k{i}"), "reminders": [{"at": when.to_rfc3339()}]}),
                    )
                    .await;
                (i, id)
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    created.sort_unstable();
    assert!(
        Utc::now() < start,
        "creating took too long: the window started already"
    );

    // First kill once a quarter has fired; while it is down, complete 100 tasks whose
    // reminders are still ahead: they must never fire.
    let wait_fired = |at_least: i64| {
        let s = &s;
        async move {
            let deadline = Instant::now() + WAIT * 2;
            while s.count_fired().await < at_least {
                assert!(Instant::now() < deadline, "{at_least} never fired");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    wait_fired(500).await;
    process.kill().await;
    let mut completed: HashSet<Uuid> = HashSet::new();
    // The last 100 reminders of the window (`created` is in due order).
    for (_, task) in created.iter().rev().take(100) {
        let (status, body) = s
            .call(Method::POST, &format!("/tasks/{task}/complete"), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        completed.insert(*task);
    }
    process = start_binary(&s, &instance, &registry, port);
    wait_fired(1_200).await;
    process.kill().await;
    process = start_binary(&s, &instance, &registry, port);

    let expected = (n as usize) - completed.len();
    let fired = collect_keys(&s.sys, &collector, expected).await;
    println!(
        "{expected} reminders on the topic {:.1} s after the window opened ({:.1} s in all)",
        (Utc::now() - start).num_milliseconds() as f64 / 1000.0,
        began.elapsed().as_secs_f64()
    );
    let extra = decode_due(&s.sys, &collector.drain_extra(Duration::from_secs(3)).await).await;
    let mut events: HashMap<String, HashSet<Uuid>> = HashMap::new();
    for d in fired.iter().chain(extra.iter()) {
        assert!(
            !completed.contains(&d.metadata.task_id),
            "a reminder of a task completed before it fired"
        );
        events
            .entry(d.reminder_key.clone())
            .or_default()
            .insert(d.metadata.event_id);
    }
    assert_eq!(events.len(), expected, "every reminder fired");
    let twice: Vec<_> = events.iter().filter(|(_, ids)| ids.len() > 1).collect();
    assert!(twice.is_empty(), "fired twice: {twice:?}");
    let cancelled: i64 =
        sqlx::query_scalar("SELECT count(*) FROM reminder_timers WHERE state = 'cancelled'")
            .fetch_one(&s.sys.db.pool)
            .await
            .unwrap();
    assert_eq!(cancelled, completed.len() as i64);

    // The binary serves its metrics and drains on SIGTERM.
    let metrics = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("taskflow_reminder_lateness_seconds_bucket"));
    assert!(metrics.contains("taskflow_reminders_pending"));
    let status = process.terminate().await;
    assert!(status.success(), "SIGTERM: drain, commit, exit 0: {status}");
}
