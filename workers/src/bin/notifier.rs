//! `taskflow-notifier`: every task event and reminder into its user's feed (tailed by the
//! API's live streams), every reminder into the user's inbox. See
//! `taskflow_workers::notifier` for the guarantee; configuration is by `TASKFLOW_*` variables
//! (`TASKFLOW_DATABASE_*` as in `taskflow_infra::db`, `TASKFLOW_SCHEMA_REGISTRY_*`,
//! `TASKFLOW_ADMIN_ADDR` (default `0.0.0.0:9095`), `TASKFLOW_KAFKA_*`, `TASKFLOW_CONSUMER_*`,
//! `TASKFLOW_TOPIC_TASK_EVENTS`, `TASKFLOW_TOPIC_REMINDERS`, `TASKFLOW_FEED_RETENTION_HOURS`).
//!
//! It produces nothing to Kafka but dead letters (original bytes), so it registers no schemas.
//!
//! Exit status: 0 after a graceful shutdown (SIGTERM/SIGINT: stop fetching, finish
//! in-flight, commit); non-zero on a fatal error, including a panic while handling a message.

use std::net::SocketAddr;

use anyhow::Context;
use prometheus::Registry;
use taskflow_infra::admin;
use taskflow_infra::config::env_or;
use taskflow_workers::notifier::{self, NotifierSettings};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    taskflow_infra::telemetry::init_tracing();
    let database = taskflow_infra::db::DatabaseSettings::from_env(10)?;
    let codec =
        taskflow_infra::config::codec_from_env().context("reading Schema Registry settings")?;
    let admin_addr: SocketAddr = env_or(
        "TASKFLOW_ADMIN_ADDR",
        SocketAddr::from(([0, 0, 0, 0], 9095)),
    )?;
    let settings = NotifierSettings::from_env()?;
    let pool = taskflow_infra::db::connect(&database, &taskflow_workers::audit::MIGRATOR).await?;

    let registry = Registry::new();
    let shutdown = taskflow_infra::shutdown::on_signal();
    let worker =
        notifier::spawn_notifier(settings, pool.clone(), codec, &registry, shutdown.clone())?;
    let ready = taskflow_workers::runtime::readiness(worker.probe(), pool, None);
    let admin = admin::spawn(admin_addr, registry, ready, shutdown.clone())
        .await
        .with_context(|| format!("binding the admin port {admin_addr}"))?;

    let result = worker.join().await;
    // A fatal worker error also stops the admin server.
    shutdown.cancel();
    let admin_result = admin.await;
    result.context("notifier failed")?;
    admin_result??;
    tracing::info!("taskflow-notifier stopped");
    Ok(())
}
