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

use std::net::SocketAddr;

use anyhow::Context;
use prometheus::Registry;
use taskflow_infra::admin;
use taskflow_infra::config::env_or;
use taskflow_infra::outbox::{OutboxWaker, Relay, RelayConfig};
use taskflow_infra::registration::{self, SchemaRegistration, Subjects};
use taskflow_workers::recurrence::{self, RecurrenceSettings};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    taskflow_infra::telemetry::init_tracing();
    let database = taskflow_infra::db::DatabaseSettings::from_env(10)?;
    let codec =
        taskflow_infra::config::codec_from_env().context("reading Schema Registry settings")?;
    let admin_addr: SocketAddr = env_or(
        "TASKFLOW_ADMIN_ADDR",
        SocketAddr::from(([0, 0, 0, 0], 9092)),
    )?;
    let settings = RecurrenceSettings::from_env()?;
    let relay_config = RelayConfig::from_env().context("reading outbox settings")?;

    let pool = taskflow_infra::db::connect(&database, &taskflow_workers::audit::MIGRATOR).await?;

    let registry = Registry::new();
    let shutdown = taskflow_infra::shutdown::on_signal();
    let registration = SchemaRegistration::spawn(
        codec.clone(),
        vec![Subjects::new(
            settings.topic_task_events.clone(),
            &taskflow_schemas::EventType::TASK_LIFECYCLE,
        )],
        registration::default_backoff(),
        &registry,
        shutdown.clone(),
    )
    .context("registering schema registration metrics")?;

    let waker = OutboxWaker::new(pool.clone());
    let relay = Relay::new(
        pool.clone(),
        &settings.kafka,
        codec.clone(),
        relay_config,
        &registry,
    )
    .context("creating the outbox relay")?
    .with_waker(waker.clone());
    let relay = tokio::spawn(relay.run(shutdown.clone()));

    let worker = recurrence::spawn_recurrence_worker(
        settings,
        pool.clone(),
        waker,
        codec,
        &registry,
        shutdown.clone(),
    )?;

    let ready =
        taskflow_workers::runtime::readiness(worker.probe(), pool.clone(), Some(registration));
    let admin = admin::spawn(admin_addr, registry, ready, shutdown.clone())
        .await
        .with_context(|| format!("binding the admin port {admin_addr}"))?;

    let result = worker.join().await;
    // A fatal worker error also stops the relay and the admin server.
    shutdown.cancel();
    let relay_result = relay.await;
    let admin_result = admin.await;
    result.context("recurrence worker failed")?;
    relay_result.context("outbox relay task")?;
    admin_result??;
    tracing::info!("taskflow-recurrence stopped");
    Ok(())
}
