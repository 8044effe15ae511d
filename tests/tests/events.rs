//! End to end: HTTP writes -> outbox -> relay -> broker -> a plain rdkafka
//! consumer decoding with the Schema Registry.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{collections::HashMap, collections::HashSet, time::Duration};

use chrono::{DateTime, Utc};
use futures::{stream, StreamExt};
use serde_json::{json, Value};
use taskflow_schemas::{Event, EventType, Priority, RecurrenceMode, TaskStatus};
use taskflow_tests::{
    broker::{brokers, create_topic, Collector, TansuBroker},
    metrics::{gauge, wait_for_gauge},
    system::TestSystem,
    unique,
};

async fn create_task(sys: &TestSystem, token: &str, body: Value) -> Value {
    let r = sys
        .http
        .post(format!("{}/tasks", sys.api))
        .bearer_auth(token)
        .header("x-correlation-id", "corr-e2e")
        .json(&body)
        .send()
        .await
        .expect("create");
    assert_eq!(r.status(), 201, "create answered {}", r.status());
    r.json().await.expect("task body")
}

async fn call(
    sys: &TestSystem,
    token: &str,
    method: reqwest::Method,
    path: &str,
    version: i64,
    body: Option<Value>,
) -> Value {
    let mut req = sys
        .http
        .request(method, format!("{}{path}", sys.api))
        .bearer_auth(token)
        .header("x-correlation-id", "corr-e2e")
        .header("if-match", format!("\"{version}\""));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.expect("request");
    assert!(r.status().is_success(), "{path} answered {}", r.status());
    if r.status() == 204 {
        Value::Null
    } else {
        r.json().await.unwrap_or(Value::Null)
    }
}

fn json_text(v: &Option<String>) -> Value {
    v.as_deref().map_or(Value::Null, |t| {
        serde_json::from_str(t).expect("change value is JSON text")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_lifecycle_events_arrive_complete_and_in_order() {
    let brokers = brokers();
    let topic = unique("task-events");
    create_topic(&brokers, &topic, 3).await;
    let sys = TestSystem::start(&brokers, &topic).await;
    let token = sys.user().await;

    let a = create_task(
        &sys,
        &token,
        json!({
            "title": "Water the plants",
            "description": "the ones on the balcony",
            "due_at": "2026-12-01T09:00:00+01:00",
            "priority": "high",
            "tags": ["home", "garden"],
            "recurrence": {"rrule": "FREQ=WEEKLY;BYDAY=TU", "tz": "Europe/Berlin", "mode": "from_due"},
            "reminders": [{"before": "PT15M"}, {"at": "2026-12-01T07:00:00Z"}]
        }),
    )
    .await;
    let id = a["id"].as_str().expect("id").to_owned();
    let path = format!("/tasks/{id}");
    call(
        &sys,
        &token,
        reqwest::Method::PATCH,
        &path,
        1,
        Some(json!({"priority": "urgent", "description": null})),
    )
    .await;
    call(
        &sys,
        &token,
        reqwest::Method::POST,
        &format!("{path}/complete"),
        2,
        None,
    )
    .await;
    call(
        &sys,
        &token,
        reqwest::Method::POST,
        &format!("{path}/reopen"),
        3,
        None,
    )
    .await;
    call(&sys, &token, reqwest::Method::DELETE, &path, 4, None).await;
    let b = create_task(&sys, &token, json!({"title": "Second task"})).await;
    let b_id = b["id"].as_str().expect("id").to_owned();

    let collector = Collector::new(&brokers, &topic);
    let received = collector.collect(6, Duration::from_secs(60)).await;
    assert_eq!(
        received.len(),
        6,
        "expected 6 events, got {}",
        received.len()
    );
    assert!(
        collector
            .drain_extra(Duration::from_secs(2))
            .await
            .is_empty(),
        "no event beyond the six"
    );

    let mut by_task: HashMap<String, Vec<(Event, taskflow_tests::broker::Received)>> =
        HashMap::new();
    let mut event_ids = HashSet::new();
    for msg in received {
        let event = sys
            .codec
            .decode(&msg.payload)
            .await
            .expect("decode with the registry");
        let key = String::from_utf8(msg.key.clone().expect("keyed")).expect("utf8 key");
        assert_eq!(
            key,
            event.metadata().task_id.to_string(),
            "key is the task id"
        );
        assert_eq!(
            msg.headers.get("event_type").map(String::as_str),
            Some(event.event_type().as_str())
        );
        assert!(taskflow_infra::outbox::is_valid_traceparent(
            &msg.headers["traceparent"]
        ));
        assert!(
            event_ids.insert(event.metadata().event_id),
            "event ids are unique"
        );
        by_task.entry(key).or_default().push((event, msg));
    }

    let events_a = &by_task[&id];
    let types: Vec<EventType> = events_a.iter().map(|(e, _)| e.event_type()).collect();
    assert_eq!(
        types,
        [
            EventType::TaskCreated,
            EventType::TaskUpdated,
            EventType::TaskCompleted,
            EventType::TaskReopened,
            EventType::TaskDeleted
        ]
    );
    let versions: Vec<i64> = events_a.iter().map(|(e, _)| e.metadata().version).collect();
    assert_eq!(versions, [1, 2, 3, 4, 5]);
    let partitions: HashSet<i32> = events_a.iter().map(|(_, m)| m.partition).collect();
    assert_eq!(partitions.len(), 1, "one task stays in one partition");
    assert!(events_a.windows(2).all(|w| w[0].1.offset < w[1].1.offset));
    let user_ids: HashSet<_> = events_a.iter().map(|(e, _)| e.metadata().user_id).collect();
    assert_eq!(user_ids.len(), 1);
    for (e, _) in events_a {
        let m = e.metadata();
        assert_eq!(m.task_id.to_string(), id);
        assert_eq!(
            m.correlation_id, "corr-e2e",
            "correlation id of the request"
        );
        assert_eq!(m.event_id.get_version_num(), 7, "UUIDv7 event ids");
        assert!((Utc::now() - m.occurred_at).num_seconds() < 120);
    }

    let due: DateTime<Utc> = "2026-12-01T08:00:00Z".parse().unwrap();
    match &events_a[0].0 {
        Event::TaskCreated(c) => {
            let t = &c.task;
            assert_eq!(t.title, "Water the plants");
            assert_eq!(t.description.as_deref(), Some("the ones on the balcony"));
            assert_eq!(t.due_at, Some(due));
            assert_eq!(t.priority, Priority::High);
            assert_eq!(t.status, TaskStatus::Open);
            assert_eq!(t.tags, ["home", "garden"]);
            let r = t.recurrence.as_ref().expect("recurrence");
            assert_eq!(
                (r.rrule.as_str(), r.tz.as_str(), r.mode),
                (
                    "FREQ=WEEKLY;BYDAY=TU",
                    "Europe/Berlin",
                    RecurrenceMode::FromDue
                )
            );
            assert_eq!(t.reminders.len(), 2);
            assert_eq!(t.reminders[0].before_seconds, Some(900));
            assert_eq!(
                t.reminders[1].at,
                Some("2026-12-01T07:00:00Z".parse().unwrap())
            );
            assert!(t.completed_at.is_none());
            assert_eq!(c.metadata.causation_id, None);
        }
        other => panic!("first event is {other:?}"),
    }
    match &events_a[1].0 {
        Event::TaskUpdated(u) => {
            let mut fields: Vec<&str> = u.changes.iter().map(|c| c.field.as_str()).collect();
            fields.sort_unstable();
            assert_eq!(fields, ["description", "priority"]);
            let p = u.changes.iter().find(|c| c.field == "priority").unwrap();
            assert_eq!(
                (json_text(&p.old_value), json_text(&p.new_value)),
                (json!("high"), json!("urgent"))
            );
            let d = u.changes.iter().find(|c| c.field == "description").unwrap();
            assert_eq!(json_text(&d.old_value), json!("the ones on the balcony"));
            assert_eq!(json_text(&d.new_value), Value::Null);
            assert_eq!(u.task.priority, Priority::Urgent);
            assert_eq!(u.task.description, None);
        }
        other => panic!("second event is {other:?}"),
    }
    match &events_a[2].0 {
        Event::TaskCompleted(c) => {
            assert_eq!(c.task.status, TaskStatus::Completed);
            assert_eq!(c.task.completed_at, Some(c.completed_at));
        }
        other => panic!("third event is {other:?}"),
    }
    match &events_a[3].0 {
        Event::TaskReopened(r) => {
            assert_eq!(r.task.status, TaskStatus::Open);
            assert!(r.task.completed_at.is_none());
        }
        other => panic!("fourth event is {other:?}"),
    }
    assert!(matches!(&events_a[4].0, Event::TaskDeleted(d) if d.task.title == "Water the plants"));

    let events_b = &by_task[&b_id];
    assert_eq!(events_b.len(), 1);
    match &events_b[0].0 {
        Event::TaskCreated(c) => {
            assert_eq!(c.metadata.version, 1);
            assert_eq!(c.task.priority, Priority::Medium, "default priority");
            assert!(
                c.task.tags.is_empty()
                    && c.task.reminders.is_empty()
                    && c.task.recurrence.is_none()
            );
        }
        other => panic!("task B's event is {other:?}"),
    }

    // Every acknowledged row left the outbox.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while sys.outbox_len().await > 0 {
        assert!(std::time::Instant::now() < deadline, "outbox never drained");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_outage_loses_nothing_and_duplicates_nothing() {
    let mut broker = TansuBroker::start_new().await;
    let brokers = broker.address();
    let topic = unique("outage");
    create_topic(&brokers, &topic, 3).await;
    let sys = TestSystem::start(&brokers, &topic).await;
    let token = sys.user().await;

    // The pipeline is live before the broker dies.
    let warm = create_task(&sys, &token, json!({"title": "before the outage"})).await;
    let warm_id = warm["id"].as_str().unwrap().to_owned();
    let first = Collector::new(&brokers, &topic)
        .collect(1, Duration::from_secs(60))
        .await;
    assert_eq!(first.len(), 1, "warm-up event published");

    broker.kill().await;
    let created: Vec<String> = stream::iter(0..200)
        .map(|i| {
            let (sys, token) = (&sys, &token);
            async move {
                let t = create_task(
                    sys,
                    token,
                    json!({"title": format!("during the outage {i}")}),
                )
                .await;
                t["id"].as_str().unwrap().to_owned()
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    assert_eq!(
        created.len(),
        200,
        "every create answered 2xx while the broker was down"
    );
    assert!(
        sys.outbox_len().await >= 200,
        "the events wait in the outbox"
    );

    broker.start().await;
    let collector = Collector::new(&brokers, &topic);
    let received = collector.collect(201, Duration::from_secs(180)).await;
    let extra = collector.drain_extra(Duration::from_secs(3)).await;
    assert!(
        extra.is_empty(),
        "{} events beyond the 201 expected",
        extra.len()
    );

    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut event_ids = HashSet::new();
    for msg in &received {
        let event = sys.codec.decode(&msg.payload).await.expect("decode");
        assert_eq!(event.event_type(), EventType::TaskCreated);
        assert!(
            event_ids.insert(event.metadata().event_id),
            "an event arrived twice"
        );
        *seen
            .entry(event.metadata().task_id.to_string())
            .or_default() += 1;
    }
    assert_eq!(seen.remove(&warm_id), Some(1));
    let expected: HashSet<String> = created.into_iter().collect();
    let got: HashSet<String> = seen.keys().cloned().collect();
    assert_eq!(
        got, expected,
        "exactly the 200 tasks created during the outage"
    );
    assert!(seen.values().all(|&n| n == 1), "none twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_relay_per_database_and_a_standby_takes_over_in_order() {
    let brokers = brokers();
    let topic = unique("standby");
    create_topic(&brokers, &topic, 3).await;
    let sys = TestSystem::start(&brokers, &topic).await;
    // The system's own relay leads before the stand-by starts, so which one
    // leads first is not a race.
    wait_for_gauge(
        &sys.metrics,
        "taskflow_outbox_relay_active",
        1,
        Duration::from_secs(20),
        "the first relay never led",
    )
    .await;
    let standby = sys.spawn_standby_relay();
    let token = sys.user().await;

    let mut ids = Vec::new();
    for i in 0..10 {
        let t = create_task(&sys, &token, json!({"title": format!("task {i}")})).await;
        ids.push(t["id"].as_str().unwrap().to_owned());
    }
    // Exactly one of the two relays holds the lock.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (a, b) = (
            gauge(&sys.metrics, "taskflow_outbox_relay_active"),
            gauge(&standby, "taskflow_outbox_relay_active"),
        );
        if a + b == 1 {
            assert_eq!(a, 1, "the first relay started first and leads");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "relay_active gauges {a} + {b}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Updates keep flowing while the leader stops and the stand-by takes over.
    for round in 0..3i64 {
        if round == 1 {
            sys.stop_relay();
        }
        for id in &ids {
            call(
                &sys,
                &token,
                reqwest::Method::PATCH,
                &format!("/tasks/{id}"),
                round + 1,
                Some(json!({"title": format!("round {round}")})),
            )
            .await;
        }
    }
    let received = Collector::new(&brokers, &topic)
        .collect(40, Duration::from_secs(60))
        .await;
    assert_eq!(received.len(), 40, "10 creates + 30 updates");
    assert_eq!(
        gauge(&standby, "taskflow_outbox_relay_active"),
        1,
        "the stand-by leads now"
    );
    let mut versions: HashMap<String, Vec<i64>> = HashMap::new();
    for msg in &received {
        let e = sys.codec.decode(&msg.payload).await.expect("decode");
        versions
            .entry(e.metadata().task_id.to_string())
            .or_default()
            .push(e.metadata().version);
    }
    for id in &ids {
        assert_eq!(
            versions[id],
            [1, 2, 3, 4],
            "task {id}: per-task order across the handover"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_that_commits_late_is_still_published() {
    let brokers = brokers();
    let topic = unique("late-commit");
    create_topic(&brokers, &topic, 1).await;
    let sys = TestSystem::start(&brokers, &topic).await;
    let token = sys.user().await;

    // An outbox row whose transaction takes the lower id but commits last:
    // a relay polling "id > last seen" would skip it for ever.
    let late = taskflow_schemas::examples::example(EventType::TaskCreated);
    let late_id = late.metadata().event_id;
    let mut slow = sys.db.pool.begin().await.expect("begin");
    taskflow_infra::outbox::enqueue(&mut slow, &topic, &late, None)
        .await
        .expect("enqueue");
    let first_id: i64 = sqlx::query_scalar("SELECT max(id) FROM outbox")
        .fetch_one(&mut *slow)
        .await
        .expect("id");

    let early = create_task(&sys, &token, json!({"title": "commits first"})).await;
    let collector = Collector::new(&brokers, &topic);
    let got = collector.collect(1, Duration::from_secs(60)).await;
    assert_eq!(got.len(), 1);
    let e = sys.codec.decode(&got[0].payload).await.expect("decode");
    assert_eq!(
        e.metadata().task_id.to_string(),
        early["id"].as_str().unwrap(),
        "the later id went out first"
    );
    // The row published first really had the higher id.
    let last_issued: i64 = sqlx::query_scalar("SELECT last_value FROM outbox_id_seq")
        .fetch_one(&sys.db.pool)
        .await
        .expect("sequence");
    assert!(
        last_issued > first_id,
        "the early commit took id {last_issued} > {first_id}"
    );

    slow.commit().await.expect("commit");
    let more = collector.collect(1, Duration::from_secs(60)).await;
    assert_eq!(more.len(), 1, "the late row was published");
    let e = sys.codec.decode(&more[0].payload).await.expect("decode");
    assert_eq!(e.metadata().event_id, late_id);
}
