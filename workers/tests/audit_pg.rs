//! The audit store against a real PostgreSQL, and the audit worker plus replay end to end
//! (mock Kafka cluster, JSON instead of Avro).
// Test code: a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use chrono::{TimeZone, Utc};
use common::*;
use prometheus::Registry;
use sqlx::{PgPool, Row};
use taskflow_workers::audit::replay::{replay, ReplayOptions};
use taskflow_workers::audit::{self, audit_row, AuditSettings, AuditStore, Inserted};
use taskflow_workers::runtime::Decoded;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

fn decoded(event: taskflow_schemas::Event, offset: i64) -> Decoded {
    Decoded {
        event,
        topic: "taskflow.task-events".to_owned(),
        partition: 0,
        offset,
        key: None,
        headers: vec![],
        timestamp_millis: None,
    }
}

async fn count(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM audit_log")
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn inserts_once_and_refuses_changes() {
    let pool = fresh_database().await;
    let store = AuditStore::new(pool.clone());
    let row = audit_row(&decoded(common::event(Uuid::now_v7(), 1), 7)).unwrap();
    assert_eq!(store.insert(&row).await.unwrap(), Inserted::New);
    assert_eq!(store.insert(&row).await.unwrap(), Inserted::Duplicate);
    // A new store (a restarted worker) still deduplicates: the constraint does, not memory.
    assert_eq!(
        AuditStore::new(pool.clone()).insert(&row).await.unwrap(),
        Inserted::Duplicate
    );
    assert_eq!(count(&pool).await, 1);

    let stored = sqlx::query(
        "SELECT event_type, version, source_offset, payload FROM audit_log WHERE event_id = $1",
    )
    .bind(row.event_id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(stored.get::<String, _>("event_type"), "ReminderDue");
    assert_eq!(stored.get::<i64, _>("source_offset"), 7);
    assert_eq!(stored.get::<serde_json::Value, _>("payload"), row.payload);

    for statement in [
        "UPDATE audit_log SET version = 99",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
    ] {
        let err = sqlx::query(statement).execute(&pool).await.unwrap_err();
        assert!(
            err.to_string().contains("append-only"),
            "{statement}: {err}"
        );
    }
    let partition: String = sqlx::query_scalar("SELECT tableoid::regclass::text FROM audit_log")
        .fetch_one(&pool)
        .await
        .unwrap();
    let truncate_partition = sqlx::query(&format!("TRUNCATE {partition}"))
        .execute(&pool)
        .await;
    assert!(
        truncate_partition.is_err(),
        "a partition cannot be truncated either"
    );
    assert_eq!(count(&pool).await, 1);
}

#[tokio::test]
async fn creates_monthly_partitions_on_demand() {
    // As the service role: it may create partitions (through a SECURITY DEFINER function)
    // but they belong to the owner, so it cannot ALTER them (e.g. to disable triggers).
    let (owner, pool) = fresh_database_with_service().await;
    let store = AuditStore::new(pool.clone());
    let mut row = audit_row(&decoded(common::event(Uuid::now_v7(), 1), 0)).unwrap();
    row.occurred_at = Utc.with_ymd_and_hms(2031, 7, 31, 23, 59, 59).unwrap();
    store.insert(&row).await.unwrap();
    let partition: String = sqlx::query_scalar("SELECT tableoid::regclass::text FROM audit_log")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(partition, "audit_log_2031_07");
    let partition_owner: String = sqlx::query_scalar(
        "SELECT pg_get_userbyid(relowner)::text FROM pg_class WHERE relname = 'audit_log_2031_07'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let table_owner: String = sqlx::query_scalar(
        "SELECT pg_get_userbyid(relowner)::text FROM pg_class WHERE relname = 'audit_log'",
    )
    .fetch_one(&owner)
    .await
    .unwrap();
    assert_eq!(partition_owner, table_owner);
    assert_ne!(partition_owner, SERVICE_ROLE);
    let alter = sqlx::query("ALTER TABLE audit_log_2031_07 DISABLE TRIGGER ALL")
        .execute(&pool)
        .await
        .unwrap_err();
    assert!(alter.to_string().contains("must be owner"), "{alter}");
    // A month created ahead by the migration.
    row.event_id = Uuid::now_v7();
    row.occurred_at = Utc.with_ymd_and_hms(2026, 11, 22, 0, 0, 0).unwrap();
    store.insert(&row).await.unwrap();
    let partitions: Vec<String> =
        sqlx::query_scalar("SELECT tableoid::regclass::text FROM audit_log ORDER BY 1")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(partitions, vec!["audit_log_2026_11", "audit_log_2031_07"]);
}

async fn rows(
    pool: &PgPool,
) -> Vec<(Uuid, String, Uuid, i64, serde_json::Value, String, i32, i64)> {
    sqlx::query(
        "SELECT event_id, event_type, task_id, version, payload, source_topic, source_partition, source_offset \
         FROM audit_log ORDER BY event_id",
    )
    .fetch_all(pool)
    .await
    .unwrap()
    .into_iter()
    .map(|r| {
        (
            r.get(0),
            r.get(1),
            r.get(2),
            r.get(3),
            r.get(4),
            r.get(5),
            r.get(6),
            r.get(7),
        )
    })
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_records_every_event_and_replay_reproduces_the_rows() {
    init_tracing();
    let cluster = mock_cluster();
    let brokers = cluster.bootstrap_servers();
    let events_topic = "audit-e2e.task-events";
    let reminders_topic = "audit-e2e.reminders";
    let group = "audit-e2e";
    cluster.create_topic(events_topic, 3, 1).unwrap();
    cluster.create_topic(reminders_topic, 1, 1).unwrap();
    cluster
        .create_topic(&taskflow_schemas::topics::dlq(group), 1, 1)
        .unwrap();
    let producer = producer(&brokers);
    let tasks: Vec<Uuid> = (0..5).map(|_| Uuid::now_v7()).collect();
    let mut events = Vec::new();
    for v in 1..=4 {
        events.extend(tasks.iter().map(|t| common::event(*t, v)));
    }
    produce_events(&producer, events_topic, &events[..15]).await;
    produce_events(&producer, reminders_topic, &events[15..]).await;
    produce_raw(&producer, events_topic, "k", b"not json").await;

    let pool = fresh_database().await;
    let mut settings = AuditSettings::new(&brokers, group, &[events_topic, reminders_topic]);
    settings.runtime.commit_interval = Duration::from_millis(100);
    let registry = Registry::new();
    let handle = audit::spawn_audit_worker(
        settings,
        pool.clone(),
        JsonDecoder,
        &registry,
        CancellationToken::new(),
    )
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while count(&pool).await < 20 {
        assert!(
            std::time::Instant::now() < deadline,
            "audit rows not written"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    handle.stop().await.unwrap();
    let original = rows(&pool).await;
    assert_eq!(original.len(), 20);
    assert_eq!(
        read_all(&brokers, &taskflow_schemas::topics::dlq(group), 1, 1)
            .await
            .len(),
        1
    );

    // Replay into an empty database reproduces the same rows.
    let rebuilt = fresh_database().await;
    let report = replay(
        base_config(&brokers),
        ReplayOptions::new(&[events_topic, reminders_topic]),
        &JsonDecoder,
        &AuditStore::new(rebuilt.clone()),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    // Replay reads only partitions that hold records; with random task-id keys
    // one of the four may receive none of the 21 messages.
    assert!(
        (1..=4).contains(&report.partitions),
        "partitions read: {}",
        report.partitions
    );
    assert_eq!(report.messages, 21);
    assert_eq!(report.inserted, 20);
    assert_eq!(report.skipped, 1);
    assert_eq!(rows(&rebuilt).await, original);

    // Replay over the full log changes nothing.
    let again = replay(
        base_config(&brokers),
        ReplayOptions::new(&[events_topic, reminders_topic]),
        &JsonDecoder,
        &AuditStore::new(pool.clone()),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(again.inserted, 0);
    assert_eq!(again.duplicates, 20);
    assert_eq!(rows(&pool).await, original);
}
