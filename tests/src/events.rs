//! Generates valid task events and produces them, Avro-encoded through the
//! codec, the way the outbox relay does.

use chrono::{Duration as ChronoDuration, Utc};
use rdkafka::{
    message::{Header, OwnedHeaders},
    producer::{FutureProducer, FutureRecord},
    ClientConfig,
};
use taskflow_schemas::{
    Codec, Event, EventMetadata, FieldChange, Priority, TaskCreated, TaskSnapshot, TaskStatus,
    TaskUpdated,
};
use uuid::Uuid;

fn snapshot(title: String) -> TaskSnapshot {
    let now = Utc::now();
    TaskSnapshot {
        title,
        description: None,
        status: TaskStatus::Open,
        due_at: Some(now + ChronoDuration::days(1)),
        priority: Priority::Medium,
        tags: vec!["generated".to_owned()],
        recurrence: None,
        reminders: Vec::new(),
        completed_at: None,
        created_at: now,
        updated_at: now,
        series_id: None,
        occurrence: None,
    }
}

/// `n` events over `tasks` tasks: each task's first event is a `TaskCreated`,
/// later ones `TaskUpdated` with increasing versions, as the API emits them.
pub fn task_events(n: usize, tasks: usize) -> Vec<Event> {
    let user = Uuid::now_v7();
    let ids: Vec<Uuid> = (0..tasks.max(1)).map(|_| Uuid::now_v7()).collect();
    let mut versions = vec![0i64; ids.len()];
    (0..n)
        .map(|i| {
            let t = i % ids.len();
            versions[t] += 1;
            let metadata = EventMetadata {
                event_id: Uuid::now_v7(),
                occurred_at: Utc::now(),
                user_id: user,
                task_id: ids[t],
                version: versions[t],
                correlation_id: format!("gen-{i}"),
                causation_id: None,
            };
            let task = snapshot(format!("task {t}"));
            if versions[t] == 1 {
                Event::TaskCreated(TaskCreated { metadata, task })
            } else {
                Event::TaskUpdated(TaskUpdated {
                    metadata,
                    changes: vec![FieldChange {
                        field: "title".to_owned(),
                        old_value: Some(format!("\"task {t} v{}\"", versions[t] - 1)),
                        new_value: Some(format!("\"task {t} v{}\"", versions[t])),
                    }],
                    task,
                })
            }
        })
        .collect()
}

pub fn producer(brokers: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .create()
        .expect("producer")
}

/// Encodes and sends every event (sends concurrent, reports awaited in bulk).
pub async fn produce(producer: &FutureProducer, codec: &Codec, topic: &str, events: &[Event]) {
    let mut encoded = Vec::with_capacity(events.len());
    for e in events {
        encoded.push((
            e.key(),
            e.event_type().as_str(),
            codec.encode(topic, e).await.expect("encode"),
        ));
    }
    produce_raw(
        producer,
        topic,
        encoded
            .iter()
            .map(|(k, t, v)| (k.as_str(), *t, v.as_slice())),
    )
    .await;
}

/// Sends (key, event_type header, value) triples as they are.
pub async fn produce_raw<'a>(
    producer: &FutureProducer,
    topic: &str,
    msgs: impl IntoIterator<Item = (&'a str, &'a str, &'a [u8])>,
) {
    let futures: Vec<_> = msgs
        .into_iter()
        .map(|(key, event_type, value)| {
            let headers = OwnedHeaders::new().insert(Header {
                key: "event_type",
                value: Some(event_type),
            });
            producer
                .send_result(
                    FutureRecord::to(topic)
                        .key(key)
                        .payload(value)
                        .headers(headers),
                )
                .map_err(|(e, _)| e)
                .expect("enqueue")
        })
        .collect();
    for f in futures {
        f.await.expect("delivery future").expect("delivered");
    }
}

/// The example event of `kind`, re-addressed to version `version` of `task`
/// with a fresh event id: for tests that write outbox rows directly.
pub fn versioned(kind: taskflow_schemas::EventType, task: Uuid, version: i64) -> Event {
    let mut e = taskflow_schemas::examples::example(kind);
    let m = match &mut e {
        Event::TaskCreated(x) => &mut x.metadata,
        Event::TaskUpdated(x) => &mut x.metadata,
        Event::TaskCompleted(x) => &mut x.metadata,
        Event::TaskReopened(x) => &mut x.metadata,
        Event::TaskDeleted(x) => &mut x.metadata,
        Event::ReminderDue(x) => &mut x.metadata,
        Event::ReminderSnoozed(x) => &mut x.metadata,
    };
    m.event_id = Uuid::now_v7();
    m.task_id = task;
    m.version = version;
    e
}
