//! `taskflow-reminders`: durable reminder timers, each fired once as `ReminderDue`.
//! See `taskflow_workers::reminders` for the guarantee; configuration is by `TASKFLOW_*`
//! variables (`TASKFLOW_DATABASE_*` as in `taskflow_infra::db`, `TASKFLOW_SCHEMA_REGISTRY_*`,
//! `TASKFLOW_ADMIN_ADDR` (default `0.0.0.0:9094`), `TASKFLOW_KAFKA_*`, `TASKFLOW_CONSUMER_*`,
//! `TASKFLOW_OUTBOX_*`, `TASKFLOW_TOPIC_TASK_EVENTS`, `TASKFLOW_TOPIC_REMINDERS`,
//! `TASKFLOW_REMINDERS_BATCH`, `TASKFLOW_REMINDERS_MAX_IDLE_MS`).
//!
//! It writes outbox rows (`ReminderDue`), so, like the API, it runs the outbox relay as a
//! candidate: one relay per database wins the advisory lock and publishes every binary's
//! rows; this one stands by otherwise. It registers the `ReminderDue` schema under the
//! reminders topic at start-up (retried in the background) and is not ready until then.
//!
//! Exit status: 0 after a graceful shutdown (SIGTERM/SIGINT: stop fetching and firing,
//! finish in-flight, commit); non-zero on a fatal error, including a panic while handling a
//! message or in the firing loop.

use taskflow_infra::registration::Subjects;
use taskflow_schemas::EventType;
use taskflow_workers::process::Process;
use taskflow_workers::reminders::{self, ReminderSettings};
use taskflow_workers::runtime::readiness;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut process = Process::start(9094).await?;
    let settings = ReminderSettings::from_env()?;
    let registration = process.register(vec![Subjects::new(
        settings.topic_reminders.clone(),
        &[EventType::ReminderDue],
    )])?;
    let waker = process.run_relay(&settings.kafka)?;
    let worker = reminders::spawn_reminders_worker(
        settings,
        process.pool.clone(),
        waker,
        process.codec.clone(),
        &process.registry,
        process.shutdown.clone(),
    )?;
    let ready = readiness(
        worker.consumer.probe(),
        process.pool.clone(),
        Some(registration),
    );
    process
        .serve("taskflow-reminders", ready, worker.join())
        .await
}
