//! The recurrence worker through HTTP and the broker: a completed daily task's next instance
//! is readable through the API with the right due date, series and causation; a worker killed
//! after its insert and before its commit (and one killed after its commit, before its offset
//! commit) still leaves one instance; racing completions, a duplicated completion consumed by
//! two workers at once, and complete -> reopen -> complete each leave one instance;
//! `DELETE ?scope=series` leaves none, even for a completion already in flight; a patched
//! rule applies from the next instance on; the binary is ready, counts, and drains.
//!
//! Every wait is on state (the API, the database, a metric), never a fixed sleep.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use taskflow_infra::outbox::OutboxWaker;
use taskflow_schemas::{topics, Event};
use taskflow_tests::{
    broker::{brokers, create_topic, Collector},
    registry::registry_url,
    system::TestSystem,
    unique,
    worker::{binary, WorkerProcess},
};
use taskflow_workers::{
    recurrence::{self, RecurrenceSettings},
    runtime::WorkerHandle,
};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(90);

/// Kill tests restart group members on the shared test broker; they run alone (as in
/// `audit.rs`), every other test holds a read guard.
static BROKER_LOAD: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

struct Setup {
    sys: TestSystem,
    token: String,
    group: String,
}

async fn setup() -> Setup {
    let brokers = brokers();
    let topic = unique("recurrence-events");
    let group = unique("recurrence");
    create_topic(&brokers, &topic, 3).await;
    create_topic(&brokers, &topics::dlq(&group), 1).await;
    let sys = TestSystem::start(&brokers, &topic).await;
    let token = sys.user().await;
    Setup { sys, token, group }
}

impl Setup {
    fn settings(&self, group: &str) -> RecurrenceSettings {
        let mut s = RecurrenceSettings::new(&self.sys.brokers, group, &self.sys.topic);
        s.runtime.session_timeout = Duration::from_secs(10);
        s.runtime.commit_interval = Duration::from_millis(200);
        s.runtime.max_backoff = Duration::from_secs(1);
        // tansu holds an empty fetch ~500 ms otherwise.
        s.runtime
            .consumer_overrides
            .push(("fetch.wait.max.ms".to_owned(), "10".to_owned()));
        s
    }

    /// An in-process worker of `group` with its own metrics registry.
    fn worker(
        &self,
        group: &str,
        instance: Option<String>,
    ) -> (WorkerHandle, prometheus::Registry) {
        let registry = prometheus::Registry::new();
        let mut settings = self.settings(group);
        settings.runtime.group_instance_id = instance;
        let handle = recurrence::spawn_recurrence_worker(
            settings,
            self.sys.db.pool.clone(),
            OutboxWaker::new(self.sys.db.pool.clone()),
            self.sys.codec.clone(),
            &registry,
            CancellationToken::new(),
        )
        .expect("recurrence worker");
        (handle, registry)
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.sys.call(&self.token, method, path, body).await
    }

    /// A daily task due tomorrow at 09:00 UTC.
    async fn daily_task(&self, mode: &str) -> (String, DateTime<Utc>) {
        let due = (Utc::now() + ChronoDuration::days(1))
            .date_naive()
            .and_hms_opt(9, 0, 0)
            .unwrap()
            .and_utc();
        let (status, task) = self
            .call(
                Method::POST,
                "/tasks",
                Some(json!({
                    "title": "Water the plants",
                    "description": "balcony",
                    "due_at": due.to_rfc3339(),
                    "priority": "high",
                    "tags": ["home"],
                    "recurrence": {"rrule": "FREQ=DAILY", "tz": "UTC", "mode": mode},
                    "reminders": [{"before": "PT15M"}],
                })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{task}");
        (task["id"].as_str().unwrap().to_owned(), due)
    }

    async fn complete(&self, id: &str) -> StatusCode {
        self.call(Method::POST, &format!("/tasks/{id}/complete"), None)
            .await
            .0
    }

    /// Every live task of the user (one page is plenty here).
    async fn tasks(&self) -> Vec<Value> {
        let (status, page) = self.call(Method::GET, "/tasks?limit=200", None).await;
        assert_eq!(status, StatusCode::OK);
        page["items"].as_array().unwrap().clone()
    }

    /// Rows of the series in the database, deleted ones included.
    async fn instances(&self, series: &str) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM tasks WHERE series_id = $1::uuid")
            .bind(series)
            .fetch_one(&self.sys.db.pool)
            .await
            .unwrap()
    }

    /// Waits until the user has `n` live tasks, and returns them.
    async fn wait_for_tasks(&self, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + WAIT;
        loop {
            let tasks = self.tasks().await;
            if tasks.len() >= n {
                return tasks;
            }
            assert!(
                Instant::now() < deadline,
                "only {} tasks: {tasks:?}",
                tasks.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn series_of(&self, id: &str) -> String {
        let (_, t) = self.call(Method::GET, &format!("/tasks/{id}"), None).await;
        t["series_id"].as_str().expect("series_id").to_owned()
    }
}

fn counter(registry: &prometheus::Registry, name: &str) -> f64 {
    taskflow_tests::metrics::counter(registry, name, &[])
}

async fn wait_for_counter(registry: &prometheus::Registry, name: &str, at_least: f64) {
    taskflow_tests::metrics::wait_for_counter(registry, name, &[], at_least, WAIT).await
}

fn instant(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().expect("a timestamp"))
        .expect("RFC 3339")
        .with_timezone(&Utc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completing_a_daily_task_creates_the_next_instance_with_series_and_causation() {
    let _shared = BROKER_LOAD.read().await;
    let s = setup().await;
    let collector = Collector::new(&s.sys.brokers, &s.sys.topic);
    let (worker, metrics) = s.worker(&s.group, None);
    let (id, due) = s.daily_task("from_due").await;

    // GET shows the series, this instance's occurrence and the next three.
    let (_, first) = s.call(Method::GET, &format!("/tasks/{id}"), None).await;
    let series = first["series_id"].as_str().expect("series_id").to_owned();
    assert_eq!(instant(&first["occurrence"]), due);
    let next: Vec<DateTime<Utc>> = first["next_occurrences"]
        .as_array()
        .unwrap()
        .iter()
        .map(instant)
        .collect();
    assert_eq!(
        next,
        (1..=3)
            .map(|d| due + ChronoDuration::days(d))
            .collect::<Vec<_>>()
    );

    assert_eq!(s.complete(&id).await, StatusCode::OK);
    let tasks = s.wait_for_tasks(2).await;
    let new = tasks.iter().find(|t| t["id"] != id.as_str()).unwrap();
    let new_id = new["id"].as_str().unwrap();
    // Readable through the API: the next day, same series, fields carried over.
    let (status, got) = s.call(Method::GET, &format!("/tasks/{new_id}"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(instant(&got["due_at"]), due + ChronoDuration::days(1));
    assert_eq!(instant(&got["occurrence"]), due + ChronoDuration::days(1));
    assert_eq!(got["series_id"], series.as_str());
    assert_eq!(got["status"], "open");
    assert_eq!(got["title"], "Water the plants");
    assert_eq!(got["description"], "balcony");
    assert_eq!(got["priority"], "high");
    assert_eq!(got["tags"], json!(["home"]));
    // The relative reminder carries over with its id: the series' reminder keeps its identity.
    let (_, done) = s.call(Method::GET, &format!("/tasks/{id}"), None).await;
    assert_eq!(got["reminders"][0]["before"], "PT15M");
    assert_eq!(got["reminders"].as_array().unwrap().len(), 1);
    assert_eq!(got["reminders"][0]["id"], done["reminders"][0]["id"]);
    assert!(got["reminders"][0]["id"].is_string());
    assert_eq!(got["recurrence"]["rrule"], "FREQ=DAILY");
    assert_eq!(
        instant(&got["next_occurrences"][0]),
        due + ChronoDuration::days(2)
    );

    // Through the broker: the new instance's TaskCreated is caused by the completion and
    // shares its correlation id.
    let mut completed = None;
    let mut created = None;
    let deadline = Instant::now() + WAIT;
    while completed.is_none() || created.is_none() {
        assert!(Instant::now() < deadline, "events never arrived");
        for r in collector.collect(1, Duration::from_secs(1)).await {
            match s.sys.codec.decode(&r.payload).await.expect("decodes") {
                Event::TaskCompleted(c) if c.metadata.task_id.to_string() == id => {
                    completed = Some(c)
                }
                Event::TaskCreated(c) if c.metadata.task_id.to_string() == new_id => {
                    created = Some(c)
                }
                _ => {}
            }
        }
    }
    let (completed, created) = (completed.unwrap(), created.unwrap());
    assert_eq!(
        created.metadata.causation_id,
        Some(completed.metadata.event_id.to_string())
    );
    assert_eq!(
        created.metadata.correlation_id,
        completed.metadata.correlation_id
    );
    assert_eq!(
        created.task.series_id.map(|u| u.to_string()),
        Some(series.clone())
    );
    assert_eq!(created.task.occurrence, Some(due + ChronoDuration::days(1)));
    assert_eq!(
        counter(&metrics, "taskflow_recurrence_instances_created_total"),
        1.0
    );
    assert_eq!(s.instances(&series).await, 2);
    worker.stop().await.expect("worker stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_completions_and_a_completion_consumed_twice_create_one_instance() {
    let _shared = BROKER_LOAD.read().await;
    let s = setup().await;
    let (id, _) = s.daily_task("from_completion").await;
    let series = s.series_of(&id).await;

    // Two completions racing over HTTP: one wins, the other is a 409.
    let (a, b) = tokio::join!(s.complete(&id), s.complete(&id));
    let mut statuses = [a, b];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::CONFLICT]);

    // The one completion consumed by two workers at once (two groups, so each gets it):
    // they race on the unique key, and one instance results.
    let (w1, m1) = s.worker(&s.group, None);
    let (w2, m2) = s.worker(&unique("recurrence-other"), None);
    let deadline = Instant::now() + WAIT;
    loop {
        let created = counter(&m1, "taskflow_recurrence_instances_created_total")
            + counter(&m2, "taskflow_recurrence_instances_created_total");
        let skipped = counter(&m1, "taskflow_recurrence_duplicates_skipped_total")
            + counter(&m2, "taskflow_recurrence_duplicates_skipped_total");
        if created + skipped >= 2.0 {
            assert_eq!((created, skipped), (1.0, 1.0));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "created {created}, skipped {skipped}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(s.instances(&series).await, 2);
    assert_eq!(s.tasks().await.len(), 2);
    w1.stop().await.expect("stops");
    w2.stop().await.expect("stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn complete_reopen_complete_creates_one_instance() {
    let _shared = BROKER_LOAD.read().await;
    let s = setup().await;
    let (worker, metrics) = s.worker(&s.group, None);
    let (id, _) = s.daily_task("from_due").await;
    let series = s.series_of(&id).await;
    assert_eq!(s.complete(&id).await, StatusCode::OK);
    wait_for_counter(&metrics, "taskflow_recurrence_instances_created_total", 1.0).await;
    let (status, _) = s
        .call(Method::POST, &format!("/tasks/{id}/reopen"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(s.complete(&id).await, StatusCode::OK);
    wait_for_counter(
        &metrics,
        "taskflow_recurrence_duplicates_skipped_total",
        1.0,
    )
    .await;
    assert_eq!(
        counter(&metrics, "taskflow_recurrence_instances_created_total"),
        1.0
    );
    assert_eq!(s.instances(&series).await, 2);
    worker.stop().await.expect("worker stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_series_stops_it_even_for_a_completion_in_flight() {
    let _shared = BROKER_LOAD.read().await;
    let s = setup().await;
    let (id, _) = s.daily_task("from_due").await;
    let series = s.series_of(&id).await;
    // Completed while no worker runs: the completion is in flight (on the topic, not yet
    // handled) when the series is deleted.
    assert_eq!(s.complete(&id).await, StatusCode::OK);
    let (status, _) = s
        .call(Method::DELETE, &format!("/tasks/{id}?scope=series"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (worker, metrics) = s.worker(&s.group, None);
    wait_for_counter(
        &metrics,
        "taskflow_recurrence_completions_after_end_total",
        1.0,
    )
    .await;
    assert_eq!(
        counter(&metrics, "taskflow_recurrence_instances_created_total"),
        0.0
    );
    assert_eq!(s.instances(&series).await, 1);

    // A series whose next instance already exists: deleting it with scope=series deletes
    // that open instance too, and nothing follows.
    let (id2, _) = s.daily_task("from_due").await;
    let series2 = s.series_of(&id2).await;
    assert_eq!(s.complete(&id2).await, StatusCode::OK);
    wait_for_counter(&metrics, "taskflow_recurrence_instances_created_total", 1.0).await;
    let (status, _) = s
        .call(Method::DELETE, &format!("/tasks/{id2}?scope=series"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(s.tasks().await.is_empty(), "every instance is gone");
    assert_eq!(s.instances(&series2).await, 2);
    let (status, _) = s
        .call(
            Method::DELETE,
            &format!("/tasks/{id2}?scope=everything"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    worker.stop().await.expect("worker stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patched_rule_applies_from_the_next_instance_on() {
    let _shared = BROKER_LOAD.read().await;
    let s = setup().await;
    let (worker, metrics) = s.worker(&s.group, None);
    let (id, due) = s.daily_task("from_due").await;
    let (status, patched) = s
        .call(
            Method::PATCH,
            &format!("/tasks/{id}"),
            Some(json!({"recurrence": {"rrule": "FREQ=WEEKLY", "tz": "UTC"}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    // Same series, same occurrence; the preview follows the new rule.
    let (_, got) = s.call(Method::GET, &format!("/tasks/{id}"), None).await;
    assert_eq!(instant(&got["occurrence"]), due);
    assert_eq!(
        instant(&got["next_occurrences"][0]),
        due + ChronoDuration::days(7)
    );
    assert_eq!(s.complete(&id).await, StatusCode::OK);
    wait_for_counter(&metrics, "taskflow_recurrence_instances_created_total", 1.0).await;
    let tasks = s.tasks().await;
    let open: Vec<&Value> = tasks.iter().filter(|t| t["status"] == "open").collect();
    assert_eq!(open.len(), 1, "{tasks:?}");
    assert_eq!(instant(&open[0]["due_at"]), due + ChronoDuration::days(7));
    assert_eq!(open[0]["series_id"], got["series_id"]);
    assert_eq!(open[0]["recurrence"]["rrule"], "FREQ=WEEKLY");
    worker.stop().await.expect("worker stops");
}

/// The binary with a failpoint: it aborts at the first completion it handles.
async fn run_until_failpoint(s: &Setup, failpoint: &str, instance: &str) {
    let registry = registry_url().await;
    let mut process = WorkerProcess::start_binary(
        binary("taskflow-recurrence"),
        &[
            ("TASKFLOW_DATABASE_URL", s.sys.db.url.clone()),
            ("TASKFLOW_KAFKA_BROKERS", s.sys.brokers.clone()),
            ("TASKFLOW_SCHEMA_REGISTRY_URL", registry),
            ("TASKFLOW_KAFKA_GROUP_ID", s.group.clone()),
            ("TASKFLOW_TOPIC_TASK_EVENTS", s.sys.topic.clone()),
            ("TASKFLOW_KAFKA_GROUP_INSTANCE_ID", instance.to_owned()),
            ("TASKFLOW_KAFKA_SESSION_TIMEOUT_MS", "10000".to_owned()),
            ("TASKFLOW_RECURRENCE_FAILPOINT", failpoint.to_owned()),
        ],
    );
    let status = process.wait_exit(Duration::from_secs(180)).await;
    assert!(
        !status.success(),
        "the failpoint aborts the process: {status}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_after_its_insert_before_its_commit_leaves_one_instance() {
    let _alone = BROKER_LOAD.write().await;
    let s = setup().await;
    let (id, due) = s.daily_task("from_due").await;
    let series = s.series_of(&id).await;
    assert_eq!(s.complete(&id).await, StatusCode::OK);
    let instance = unique("recurrence-instance");
    run_until_failpoint(&s, "abort_before_commit", &instance).await;
    // The insert died with its transaction.
    assert_eq!(s.instances(&series).await, 1);

    // The restarted member (same static id) gets the completion again and creates it.
    let (worker, metrics) = s.worker(&s.group, Some(instance));
    wait_for_counter(&metrics, "taskflow_recurrence_instances_created_total", 1.0).await;
    let tasks = s.wait_for_tasks(2).await;
    let open: Vec<&Value> = tasks.iter().filter(|t| t["status"] == "open").collect();
    assert_eq!(open.len(), 1, "{tasks:?}");
    assert_eq!(instant(&open[0]["due_at"]), due + ChronoDuration::days(1));
    assert_eq!(s.instances(&series).await, 2);
    worker.stop().await.expect("worker stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_after_its_commit_before_its_offset_commit_leaves_one_instance() {
    let _alone = BROKER_LOAD.write().await;
    let s = setup().await;
    let (id, _) = s.daily_task("from_due").await;
    let series = s.series_of(&id).await;
    assert_eq!(s.complete(&id).await, StatusCode::OK);
    let instance = unique("recurrence-instance");
    run_until_failpoint(&s, "abort_after_commit", &instance).await;
    assert_eq!(s.instances(&series).await, 2);

    // The completion is delivered again (its offset was never committed): a duplicate.
    let (worker, metrics) = s.worker(&s.group, Some(instance));
    wait_for_counter(
        &metrics,
        "taskflow_recurrence_duplicates_skipped_total",
        1.0,
    )
    .await;
    assert_eq!(
        counter(&metrics, "taskflow_recurrence_instances_created_total"),
        0.0
    );
    assert_eq!(s.instances(&series).await, 2);
    worker.stop().await.expect("worker stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_readyz_and_metrics_and_drains_on_sigterm() {
    let _shared = BROKER_LOAD.read().await;
    let s = setup().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let process = WorkerProcess::start_binary(
        binary("taskflow-recurrence"),
        &[
            ("TASKFLOW_DATABASE_URL", s.sys.db.url.clone()),
            ("TASKFLOW_KAFKA_BROKERS", s.sys.brokers.clone()),
            ("TASKFLOW_SCHEMA_REGISTRY_URL", registry_url().await),
            ("TASKFLOW_KAFKA_GROUP_ID", s.group.clone()),
            ("TASKFLOW_TOPIC_TASK_EVENTS", s.sys.topic.clone()),
            ("TASKFLOW_KAFKA_SESSION_TIMEOUT_MS", "10000".to_owned()),
            ("TASKFLOW_ADMIN_ADDR", format!("127.0.0.1:{port}")),
        ],
    );
    let admin = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    // Ready: consumer running, task-event schemas registered, database answering.
    let deadline = Instant::now() + WAIT;
    loop {
        let ok = http
            .get(format!("{admin}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ok {
            break;
        }
        assert!(Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let (id, due) = s.daily_task("from_due").await;
    assert_eq!(s.complete(&id).await, StatusCode::OK);
    let tasks = s.wait_for_tasks(2).await;
    let open: Vec<&Value> = tasks.iter().filter(|t| t["status"] == "open").collect();
    assert_eq!(open.len(), 1, "{tasks:?}");
    assert_eq!(instant(&open[0]["due_at"]), due + ChronoDuration::days(1));
    let metrics = http
        .get(format!("{admin}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("taskflow_recurrence_instances_created_total{mode=\"from_due\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("taskflow_recurrence_duplicates_skipped_total 0"));
    let status = process.terminate().await;
    assert!(status.success(), "SIGTERM: drain, commit, exit 0: {status}");
}
