//! Helpers shared by the workers' tests: librdkafka's in-process mock cluster as the broker,
//! a JSON decoder instead of a schema registry, a database per test.
#![allow(dead_code)]

use std::future::Future;
use std::time::{Duration, Instant};

use chrono::{SubsecRound, Utc};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, OwnedHeaders, OwnedMessage};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use taskflow_schemas::{Event, EventMetadata, ReminderDue};
use taskflow_workers::runtime::{DecodeError, Decoder};
use uuid::Uuid;

/// Events travel as their JSON form; anything else is "undecodable".
pub(crate) struct JsonDecoder;

impl Decoder for JsonDecoder {
    fn decode(&self, bytes: &[u8]) -> impl Future<Output = Result<Event, DecodeError>> + Send {
        let result =
            serde_json::from_slice::<Event>(bytes).map_err(|e| DecodeError::Invalid(e.to_string()));
        async move { result }
    }
}

pub(crate) fn event(task_id: Uuid, version: i64) -> Event {
    let now = Utc::now().trunc_subsecs(6);
    Event::ReminderDue(ReminderDue {
        metadata: EventMetadata {
            event_id: Uuid::now_v7(),
            occurred_at: now,
            user_id: Uuid::now_v7(),
            task_id,
            version,
            correlation_id: format!("corr-{version}"),
            causation_id: None,
        },
        reminder_key: format!("r-{version}"),
        fire_at: now,
        due_at: None,
        title: "test".to_owned(),
        reminder_id: None,
        fired_at: None,
    })
}

pub(crate) fn mock_cluster() -> MockCluster<'static, rdkafka::producer::DefaultProducerContext> {
    MockCluster::new(1).expect("mock cluster")
}

pub(crate) fn producer(brokers: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create()
        .expect("producer")
}

/// Produces the events (JSON) keyed by task id, plus headers; waits for every delivery.
pub(crate) async fn produce_events(producer: &FutureProducer, topic: &str, events: &[Event]) {
    let sends = events.iter().map(|e| {
        let payload = serde_json::to_vec(e).expect("json");
        let key = e.key();
        async move {
            producer
                .send(
                    FutureRecord::to(topic).key(&key).payload(&payload).headers(
                        OwnedHeaders::new().insert(Header {
                            key: "event_type",
                            value: Some(e.event_type().as_str()),
                        }),
                    ),
                    Duration::from_secs(5),
                )
                .await
                .expect("delivered");
        }
    });
    futures::future::join_all(sends).await;
}

/// Like `produce_events`, but each event goes to the given partition (still keyed by task
/// id): tests that need every partition to carry messages pick the partitions themselves
/// instead of relying on how random keys hash.
pub(crate) async fn produce_events_to(
    producer: &FutureProducer,
    topic: &str,
    events: &[(i32, Event)],
) {
    let sends = events.iter().map(|(partition, e)| {
        let payload = serde_json::to_vec(e).expect("json");
        let key = e.key();
        async move {
            producer
                .send(
                    FutureRecord::to(topic)
                        .partition(*partition)
                        .key(&key)
                        .payload(&payload)
                        .headers(OwnedHeaders::new().insert(Header {
                            key: "event_type",
                            value: Some(e.event_type().as_str()),
                        })),
                    Duration::from_secs(5),
                )
                .await
                .expect("delivered");
        }
    });
    futures::future::join_all(sends).await;
}

pub(crate) async fn produce_raw(producer: &FutureProducer, topic: &str, key: &str, payload: &[u8]) {
    producer
        .send(
            FutureRecord::to(topic).key(key).payload(payload),
            Duration::from_secs(5),
        )
        .await
        .expect("delivered");
    producer.flush(Duration::from_secs(5)).expect("flush");
}

pub(crate) fn base_config(brokers: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers);
    c
}

/// Every message of a topic, read from the beginning by a group-less consumer.
pub(crate) async fn read_all(
    brokers: &str,
    topic: &str,
    partitions: i32,
    expected: usize,
) -> Vec<OwnedMessage> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("reader-{}", Uuid::new_v4()))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("tpl");
    }
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while out.len() < expected && Instant::now() < deadline {
        if let Ok(Ok(m)) = tokio::time::timeout(Duration::from_millis(500), consumer.recv()).await {
            out.push(m.detach());
        }
    }
    out
}

/// The group's committed offsets for `partitions` of `topic`, read from the broker.
pub(crate) fn committed(
    brokers: &str,
    group: &str,
    topic: &str,
    partitions: i32,
) -> Vec<Option<i64>> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let got = consumer
        .committed_offsets(tpl, Duration::from_secs(5))
        .expect("committed offsets");
    (0..partitions)
        .map(|p| match got.find_partition(topic, p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => Some(o),
            _ => None,
        })
        .collect()
}

pub(crate) fn high_watermarks(brokers: &str, topic: &str, partitions: i32) -> Vec<i64> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "watermarks")
        .create()
        .expect("consumer");
    (0..partitions)
        .map(|p| {
            consumer
                .fetch_watermarks(topic, p, Duration::from_secs(5))
                .expect("watermarks")
                .1
        })
        .collect()
}

/// Polls `cond` until it holds; panics with `what` after `timeout`.
pub(crate) async fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(crate) fn database_url() -> String {
    std::env::var("TASKFLOW_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A new, migrated database for one test; the pool is the owner's.
pub(crate) async fn fresh_database() -> PgPool {
    fresh_database_with_service().await.0
}

/// The login role tests use to have exactly the services' rights.
pub(crate) const SERVICE_ROLE: &str = "taskflow_test_service";

/// A new database migrated by the owner: (owner's pool, pool as [`SERVICE_ROLE`], a login
/// member of `taskflow_app`, as the worker connects in production).
pub(crate) async fn fresh_database_with_service() -> (PgPool, PgPool) {
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect(&database_url())
        .await
        .expect("connect to the test database server");
    let name = format!("taskflow_workers_{}", Uuid::new_v4().simple());
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await
        .expect("create database");
    let url = match database_url().rsplit_once('/') {
        Some((base, _)) => format!("{base}/{name}"),
        None => panic!("database url without a database name"),
    };
    let pool = PgPoolOptions::new()
        .max_connections(5)
        .connect(&url)
        .await
        .expect("connect to the new database");
    taskflow_workers::audit::migrate(&pool)
        .await
        .expect("migrate");
    let mut owner = pool.acquire().await.expect("a connection");
    let service_url = taskflow_infra::db::ensure_login_role(&mut owner, SERVICE_ROLE, &url)
        .await
        .expect("create the service login role");
    drop(owner);
    let service = PgPoolOptions::new()
        .max_connections(5)
        .connect_lazy(&service_url)
        .expect("service role URL");
    (pool, service)
}

pub(crate) fn init_tracing() {
    if std::env::var("TASKFLOW_LOG").is_ok() {
        taskflow_infra::telemetry::init_tracing();
    }
}
