//! `taskflow-recurrence`: creates the next instance of a recurring task when one is completed.
//! See `taskflow_workers::recurrence` for the guarantee; configuration is by `TASKFLOW_*`
//! variables (`TASKFLOW_DATABASE_*` as in `taskflow_infra::db`, `TASKFLOW_SCHEMA_REGISTRY_*`,
//! `TASKFLOW_ADMIN_ADDR` (default `0.0.0.0:9092`), `TASKFLOW_KAFKA_*`, `TASKFLOW_CONSUMER_*`,
//! `TASKFLOW_OUTBOX_*`, `TASKFLOW_TOPIC_TASK_EVENTS`).
//!
//! It writes outbox rows (the new instances' `TaskCreated`), so, like the API, it runs the
//! outbox relay as a candidate: one relay per database wins the advisory lock and publishes
//! every binary's rows; this one stands by otherwise. It registers the task-event schemas at
//! start-up (retried in the background) and is not ready until that succeeded.
//!
//! Exit status: 0 after a graceful shutdown (SIGTERM/SIGINT: stop fetching, finish in-flight,
//! commit); non-zero on a fatal error, including a panic while handling a message.

use taskflow_infra::registration::Subjects;
use taskflow_schemas::EventType;
use taskflow_workers::process::Process;
use taskflow_workers::recurrence::{self, RecurrenceSettings};
use taskflow_workers::runtime::readiness;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut process = Process::start(9092).await?;
    let settings = RecurrenceSettings::from_env()?;
    let registration = process.register(vec![Subjects::new(
        settings.topic_task_events.clone(),
        &EventType::TASK_LIFECYCLE,
    )])?;
    let waker = process.run_relay(&settings.kafka)?;
    let worker = recurrence::spawn_recurrence_worker(
        settings,
        process.pool.clone(),
        waker,
        process.codec.clone(),
        &process.registry,
        process.shutdown.clone(),
    )?;
    let ready = readiness(worker.probe(), process.pool.clone(), Some(registration));
    process
        .serve("taskflow-recurrence", ready, worker.join())
        .await
}
