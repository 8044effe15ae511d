//! `taskflow-audit-replay`: rebuilds the audit log from the topics, from the earliest retained
//! offset up to the high watermarks seen at start, then exits. Idempotent: safe to run on a
//! full log, and on an emptied one it reproduces the rows. How to empty the log (it refuses
//! DELETE and TRUNCATE) is in `taskflow_workers::audit::replay`.
//!
//! Variables: `TASKFLOW_DATABASE_URL`, `TASKFLOW_SCHEMA_REGISTRY_URL`, `TASKFLOW_KAFKA_*`
//! (`TASKFLOW_KAFKA_TOPICS` defaults to the audit topics).

use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::PgPoolOptions;
use taskflow_infra::config::{env_or, KafkaSettings};
use taskflow_workers::audit::replay::{replay, ReplayOptions};
use taskflow_workers::audit::{self, AuditStore, TOPICS};
use taskflow_workers::runtime::settings::parse_topics;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    taskflow_infra::telemetry::init_tracing();
    let database_url: String = env_or(
        "TASKFLOW_DATABASE_URL",
        "postgres://postgres@localhost:5432/taskflow".to_owned(),
    )?;
    let codec = taskflow_infra::config::codec_from_env()?;
    let kafka = KafkaSettings::from_env("taskflow-audit-replay")?;
    let topics = parse_topics(&env_or("TASKFLOW_KAFKA_TOPICS", TOPICS.join(","))?)
        .map_err(anyhow::Error::msg)?;

    let pool = PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(5))
        .connect(&database_url)
        .await
        .context("connecting to the database")?;
    audit::migrate(&pool).await?;

    let topic_refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    let report = replay(
        kafka.client_config(),
        ReplayOptions::new(&topic_refs),
        &codec,
        &AuditStore::new(pool),
        taskflow_infra::shutdown::on_signal(),
    )
    .await?;
    tracing::info!(
        partitions = report.partitions,
        messages = report.messages,
        inserted = report.inserted,
        duplicates = report.duplicates,
        skipped = report.skipped,
        "audit replay finished"
    );
    Ok(())
}
