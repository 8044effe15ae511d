//! `taskflow-notifier`: every task event and reminder into its user's feed (tailed by the
//! API's live streams), every reminder into the user's inbox. See
//! `taskflow_workers::notifier` for the guarantee; configuration is by `TASKFLOW_*` variables
//! (`TASKFLOW_DATABASE_*` as in `taskflow_infra::db`, `TASKFLOW_SCHEMA_REGISTRY_*`,
//! `TASKFLOW_ADMIN_ADDR` (default `0.0.0.0:9095`), `TASKFLOW_KAFKA_*`, `TASKFLOW_CONSUMER_*`,
//! `TASKFLOW_TOPIC_TASK_EVENTS`, `TASKFLOW_TOPIC_REMINDERS`, `TASKFLOW_FEED_RETENTION_HOURS`,
//! `TASKFLOW_WEBHOOK_*`, and `TASKFLOW_SMTP_*` for email).
//!
//! It produces nothing to Kafka but dead letters (original bytes), so it registers no schemas.
//! Exit status: see `taskflow_workers::process`.

use taskflow_workers::notifier::{self, NotifierSettings};
use taskflow_workers::process::Process;
use taskflow_workers::runtime::readiness;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Settings first: a configuration error (e.g. TASKFLOW_SMTP_HOST without
    // TASKFLOW_SMTP_FROM) stops the start-up before anything connects.
    let settings = NotifierSettings::from_env()?;
    let process = Process::start(9095).await?;
    let worker = notifier::spawn_notifier(
        settings,
        process.pool.clone(),
        process.codec.clone(),
        &process.registry,
        process.shutdown.clone(),
    )?;
    let ready = readiness(worker.probe(), process.pool.clone(), None);
    process
        .serve("taskflow-notifier", ready, worker.join())
        .await
}
