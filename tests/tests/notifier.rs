//! The notifier through HTTP, the broker and PostgreSQL: every task event and every reminder
//! lands in its owner's feed once, in version order per task, and never in another user's; a
//! reminder is also an inbox notification; the notifier binary SIGKILLed twice while events
//! flow loses and repeats nothing (a reader tailing the feed by sequence, and a live stream
//! open throughout, get every event once, in order).
//!
//! Every wait is on state (the database), never a fixed sleep.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::time::{Duration, Instant};

use chrono::{Duration as ChronoDuration, SubsecRound, Utc};
use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use taskflow_infra::outbox::OutboxWaker;
use taskflow_schemas::topics;
use taskflow_tests::{
    broker::{brokers, create_topic, TansuBroker},
    registry::registry_url,
    sse::SseStream,
    system::TestSystem,
    unique,
    worker::{binary, WorkerProcess},
};
use taskflow_workers::notifier::{self, NotifierSettings};
use taskflow_workers::reminders::{self, ReminderSettings};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(120);

static BROKER_LOAD: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

struct Setup {
    sys: TestSystem,
    group: String,
    reminders_topic: String,
}

async fn setup_on(brokers: String) -> Setup {
    let topic = unique("notifier-task-events");
    let reminders_topic = unique("notifier-reminders");
    let group = unique("notifier");
    create_topic(&brokers, &topic, 3).await;
    create_topic(&brokers, &reminders_topic, 3).await;
    create_topic(&brokers, &topics::dlq(&group), 1).await;
    let sys = TestSystem::start(&brokers, &topic).await;
    Setup {
        sys,
        group,
        reminders_topic,
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

    async fn create(&self, token: &str, body: Value) -> String {
        let (status, task) = self.call(token, Method::POST, "/tasks", Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{task}");
        task["id"].as_str().unwrap().to_owned()
    }

    async fn user_id(&self, task: &str) -> Uuid {
        sqlx::query_scalar("SELECT user_id FROM tasks WHERE id = $1")
            .bind(Uuid::parse_str(task).unwrap())
            .fetch_one(&self.sys.db.pool)
            .await
            .unwrap()
    }

    /// The user's feed, read as a stream does: by sequence, a page at a time.
    async fn feed(&self, user: Uuid) -> Vec<taskflow_infra::feed::FeedRow> {
        let mut out = Vec::new();
        let mut after = 0;
        loop {
            let page = taskflow_infra::feed::read_after(&self.sys.db.pool, user, after, 100)
                .await
                .unwrap();
            let Some(last) = page.last() else { break };
            after = last.seq;
            out.extend(page);
        }
        out
    }

    async fn wait_feed(&self, user: Uuid, n: usize) -> Vec<taskflow_infra::feed::FeedRow> {
        let deadline = Instant::now() + WAIT;
        loop {
            let feed = self.feed(user).await;
            if feed.len() >= n {
                return feed;
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {n} feed entries",
                feed.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_land_in_their_owners_feed_once_in_order_and_reminders_in_the_inbox() {
    let _shared = BROKER_LOAD.read().await;
    let s = setup_on(brokers()).await;
    let mut settings = NotifierSettings::new(
        &s.sys.brokers,
        &s.group,
        &[s.sys.topic.as_str(), s.reminders_topic.as_str()],
    );
    settings
        .runtime
        .consumer_overrides
        .push(("fetch.wait.max.ms".to_owned(), "10".to_owned()));
    let registry = prometheus::Registry::new();
    let stop = CancellationToken::new();
    let worker = notifier::spawn_notifier(
        settings,
        s.sys.db.pool.clone(),
        s.sys.codec.clone(),
        &registry,
        stop.clone(),
    )
    .expect("notifier");
    // The real reminders worker makes the ReminderDue.
    let reminders_group = unique("reminders");
    create_topic(&s.sys.brokers, &topics::dlq(&reminders_group), 1).await;
    let mut rs = ReminderSettings::new(
        &s.sys.brokers,
        &reminders_group,
        &s.sys.topic,
        &s.reminders_topic,
    );
    rs.runtime
        .consumer_overrides
        .push(("fetch.wait.max.ms".to_owned(), "10".to_owned()));
    let reminders_worker = reminders::spawn_reminders_worker(
        rs,
        s.sys.db.pool.clone(),
        OutboxWaker::new(s.sys.db.pool.clone()),
        s.sys.codec.clone(),
        &prometheus::Registry::new(),
        stop.clone(),
    )
    .expect("reminders worker");

    let (alice, bob) = (s.sys.user().await, s.sys.user().await);
    let soon = (Utc::now() + ChronoDuration::seconds(1)).trunc_subsecs(3);
    let task = s
        .create(
            &alice,
            json!({"title": "Call mum", "reminders": [{"at": soon.to_rfc3339()}]}),
        )
        .await;
    let (status, _) = s
        .call(
            &alice,
            Method::PATCH,
            &format!("/tasks/{task}"),
            Some(json!({"priority": "high"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let other = s.create(&bob, json!({"title": "Bob's"})).await;
    let (alice_id, bob_id) = (s.user_id(&task).await, s.user_id(&other).await);

    let feed = s.wait_feed(alice_id, 3).await;
    let kinds: Vec<&str> = feed.iter().map(|r| r.kind.as_str()).collect();
    let task_kinds: Vec<&str> = kinds
        .iter()
        .copied()
        .filter(|k| *k != "ReminderDue")
        .collect();
    assert_eq!(task_kinds, ["TaskCreated", "TaskUpdated"], "{kinds:?}");
    assert!(kinds.contains(&"ReminderDue"), "{kinds:?}");
    assert!(feed.windows(2).all(|w| w[0].seq < w[1].seq));
    let versions: Vec<i64> = feed
        .iter()
        .filter(|r| r.kind != "ReminderDue")
        .map(|r| r.data["event"]["metadata"]["version"].as_i64().unwrap())
        .collect();
    assert_eq!(versions, [1, 2]);
    let due = feed.iter().find(|r| r.kind == "ReminderDue").unwrap();
    let notification = Uuid::parse_str(due.data["notification_id"].as_str().unwrap()).unwrap();
    let (user, title, read): (Uuid, String, Option<chrono::DateTime<Utc>>) =
        sqlx::query_as("SELECT user_id, title, read_at FROM notifications WHERE id = $1")
            .bind(notification)
            .fetch_one(&s.sys.db.pool)
            .await
            .unwrap();
    assert_eq!((user, title.as_str(), read), (alice_id, "Call mum", None));

    // Bob's feed holds Bob's event only, and Alice's none of Bob's.
    let bobs = s.wait_feed(bob_id, 1).await;
    assert_eq!(bobs.len(), 1);
    assert_eq!(bobs[0].task_id, Some(Uuid::parse_str(&other).unwrap()));
    assert!(s
        .feed(alice_id)
        .await
        .iter()
        .all(|r| r.task_id == Some(Uuid::parse_str(&task).unwrap())));
    stop.cancel();
    worker.join().await.expect("notifier stops");
    reminders_worker
        .join()
        .await
        .expect("reminders worker stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkilled_notifier_loses_and_repeats_nothing() {
    let _alone = BROKER_LOAD.write().await;
    // A broker of its own, as for every kill test (the shared one carries every other test's
    // records by then).
    let broker = TansuBroker::start_new().await;
    let owned = setup_on(broker.address()).await;
    let s = &owned;
    let registry = registry_url().await;
    let instance = unique("notifier-instance");
    let start = |s: &Setup| {
        WorkerProcess::start_binary(
            binary("taskflow-notifier"),
            &[
                ("TASKFLOW_DATABASE_URL", s.sys.db.url.clone()),
                ("TASKFLOW_KAFKA_BROKERS", s.sys.brokers.clone()),
                ("TASKFLOW_SCHEMA_REGISTRY_URL", registry.clone()),
                ("TASKFLOW_KAFKA_GROUP_ID", s.group.clone()),
                ("TASKFLOW_TOPIC_TASK_EVENTS", s.sys.topic.clone()),
                ("TASKFLOW_TOPIC_REMINDERS", s.reminders_topic.clone()),
                ("TASKFLOW_KAFKA_GROUP_INSTANCE_ID", instance.clone()),
                ("TASKFLOW_KAFKA_SESSION_TIMEOUT_MS", "10000".to_owned()),
                ("TASKFLOW_CONSUMER_FETCH_WAIT_MAX_MS", "10".to_owned()),
            ],
        )
    };
    let process = start(s);
    let token = s.sys.user().await;
    // A device of the user, connected throughout: what it shows is what the kills must not
    // disturb.
    let mut stream = SseStream::open(&s.sys.http, &s.sys.api, &token, None)
        .await
        .unwrap();
    // 300 tasks, each created then patched: 600 events of one user, in three partitions.
    let n = 300;
    let writes = async {
        futures::stream::iter(0..n)
            .map(|i| {
                let token = &token;
                async move {
                    let id = s.create(token, json!({"title": format!("t{i}")})).await;
                    let (status, _) = s
                        .call(
                            token,
                            Method::PATCH,
                            &format!("/tasks/{id}"),
                            Some(json!({"priority": "low"})),
                        )
                        .await;
                    assert_eq!(status, StatusCode::OK);
                    id
                }
            })
            .buffer_unordered(4)
            .collect::<Vec<String>>()
            .await
    };
    let user = async {
        // The first task's owner, once it exists.
        let deadline = Instant::now() + WAIT;
        loop {
            let u: Option<Uuid> = sqlx::query_scalar("SELECT user_id FROM tasks LIMIT 1")
                .fetch_optional(&s.sys.db.pool)
                .await
                .unwrap();
            if let Some(u) = u {
                return u;
            }
            assert!(Instant::now() < deadline, "no task created");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let kills = async move {
        let user = user.await;
        let mut process = process;
        for at_least in [100, 300] {
            s.wait_feed(user, at_least).await;
            process.kill().await;
            process = start(s);
        }
        (user, process)
    };
    let (ids, (user, process)) = tokio::join!(writes, kills);
    let feed = s.wait_feed(user, 2 * n).await;
    let events: HashSet<Uuid> = feed.iter().map(|r| r.event_id).collect();
    assert_eq!(feed.len(), 2 * n, "one entry per event");
    assert_eq!(events.len(), 2 * n, "no event twice");
    let outbox_events: Vec<Uuid> = sqlx::query_scalar("SELECT event_id FROM outbox")
        .fetch_all(&s.sys.db.pool)
        .await
        .unwrap();
    assert!(outbox_events.is_empty(), "every event was published");
    // Per task: created before updated.
    for id in &ids {
        let of_task: Vec<&str> = feed
            .iter()
            .filter(|r| r.task_id == Some(Uuid::parse_str(id).unwrap()))
            .map(|r| r.kind.as_str())
            .collect();
        assert_eq!(of_task, ["TaskCreated", "TaskUpdated"], "{id}");
    }
    // The stream got the same entries: each once, in feed order, none missing.
    let frames = stream
        .frames_until(Instant::now() + WAIT, |f| f.len() >= 2 * n)
        .await;
    let seqs: Vec<i64> = frames.iter().filter_map(|f| f.id).collect();
    let expected: Vec<i64> = feed.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, expected, "the stream shows the feed, in order, once");
    let streamed: HashSet<String> = frames
        .iter()
        .filter_map(|f| f.data["event"]["metadata"]["event_id"].as_str())
        .map(str::to_owned)
        .collect();
    let stored: HashSet<String> = events.iter().map(|e| e.to_string()).collect();
    assert_eq!(streamed, stored, "every event on the stream, none twice");
    let status = process.terminate().await;
    assert!(status.success(), "SIGTERM: drain, commit, exit 0: {status}");
}
