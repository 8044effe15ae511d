//! `taskflow-audit-replay`: rebuilds the audit log from the topics, from the earliest retained
//! offset up to the high watermarks seen at start, then exits. Idempotent: safe to run on a
//! full log, and on an emptied one it reproduces the rows. How to empty the log (it refuses
//! DELETE and TRUNCATE) is in `taskflow_workers::audit::replay`.
//!
//! Variables: `TASKFLOW_DATABASE_*` (see `taskflow_infra::db`), `TASKFLOW_SCHEMA_REGISTRY_URL`, `TASKFLOW_KAFKA_*`
//! (`TASKFLOW_KAFKA_TOPICS` defaults to the audit topics).

use taskflow_infra::config::{env_or, KafkaSettings};
use taskflow_workers::audit::replay::{replay, ReplayOptions};
use taskflow_workers::audit::{self, AuditStore, TOPICS};
use taskflow_workers::runtime::settings::parse_topics;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    taskflow_infra::telemetry::init_tracing();
    let database = taskflow_infra::db::DatabaseSettings::from_env(4)?;
    let codec = taskflow_infra::config::codec_from_env()?;
    let kafka = KafkaSettings::from_env("taskflow-audit-replay")?;
    let topics = parse_topics(&env_or("TASKFLOW_KAFKA_TOPICS", TOPICS.join(","))?)
        .map_err(anyhow::Error::msg)?;

    let pool = taskflow_infra::db::connect(&database, &audit::MIGRATOR).await?;

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
