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

use std::net::SocketAddr;

use anyhow::Context;
use prometheus::Registry;
use taskflow_infra::admin;
use taskflow_infra::config::env_or;
use taskflow_infra::outbox::{OutboxWaker, Relay, RelayConfig};
use taskflow_infra::registration::{self, SchemaRegistration, Subjects};
use taskflow_schemas::EventType;
use taskflow_workers::reminders::{self, ReminderSettings};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    taskflow_infra::telemetry::init_tracing();
    let database = taskflow_infra::db::DatabaseSettings::from_env(10)?;
    let codec =
        taskflow_infra::config::codec_from_env().context("reading Schema Registry settings")?;
    let admin_addr: SocketAddr = env_or(
        "TASKFLOW_ADMIN_ADDR",
        SocketAddr::from(([0, 0, 0, 0], 9094)),
    )?;
    let settings = ReminderSettings::from_env()?;
    let relay_config = RelayConfig::from_env().context("reading outbox settings")?;

    let pool = taskflow_infra::db::connect(&database, &taskflow_workers::audit::MIGRATOR).await?;

    let registry = Registry::new();
    let shutdown = taskflow_infra::shutdown::on_signal();
    let registration = SchemaRegistration::spawn(
        codec.clone(),
        vec![Subjects::new(
            settings.topic_reminders.clone(),
            &[EventType::ReminderDue],
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

    let worker = reminders::spawn_reminders_worker(
        settings,
        pool.clone(),
        waker,
        codec,
        &registry,
        shutdown.clone(),
    )?;

    let ready = taskflow_workers::runtime::readiness(
        worker.consumer.probe(),
        pool.clone(),
        Some(registration),
    );
    let admin = admin::spawn(admin_addr, registry, ready, shutdown.clone())
        .await
        .with_context(|| format!("binding the admin port {admin_addr}"))?;

    let result = worker.join().await;
    // A fatal worker error also stops the relay and the admin server.
    shutdown.cancel();
    let relay_result = relay.await;
    let admin_result = admin.await;
    result.context("reminders worker failed")?;
    relay_result.context("outbox relay task")?;
    admin_result??;
    tracing::info!("taskflow-reminders stopped");
    Ok(())
}
