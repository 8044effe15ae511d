//! `taskflow-audit`: records every task event and reminder in the append-only audit log.
//! See `taskflow_workers::audit` for the guarantee; configuration is by `TASKFLOW_*`
//! variables (`TASKFLOW_DATABASE_*` as in `taskflow_infra::db`, `TASKFLOW_SCHEMA_REGISTRY_URL`, `TASKFLOW_ADMIN_ADDR`,
//! `TASKFLOW_KAFKA_*`, `TASKFLOW_CONSUMER_*`).
//!
//! It registers no schemas at start-up: the only records it produces are dead letters, which
//! carry the original bytes untouched (no Avro encoding). A registry settings error still
//! stops the start.
//!
//! Exit status: 0 after a graceful shutdown (SIGTERM/SIGINT); non-zero on a fatal error,
//! including a panic while decoding or handling a message (the runtime stops without
//! committing that message), so the supervisor restarts the process.

use std::net::SocketAddr;

use anyhow::Context;
use prometheus::Registry;
use taskflow_infra::admin;
use taskflow_infra::config::env_or;
use taskflow_workers::audit::{self, AuditSettings};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    taskflow_infra::telemetry::init_tracing();
    let database = taskflow_infra::db::DatabaseSettings::from_env(10)?;
    let codec =
        taskflow_infra::config::codec_from_env().context("reading Schema Registry settings")?;
    let admin_addr: SocketAddr = env_or(
        "TASKFLOW_ADMIN_ADDR",
        SocketAddr::from(([0, 0, 0, 0], 9091)),
    )?;
    let settings = AuditSettings::from_env()?;

    // Migrations as the owner (when configured), then a pool as the service role.
    let pool = taskflow_infra::db::connect(&database, &audit::MIGRATOR).await?;

    let registry = Registry::new();
    let shutdown = taskflow_infra::shutdown::on_signal();
    let worker =
        audit::spawn_audit_worker(settings, pool.clone(), codec, &registry, shutdown.clone())?;

    let ready = taskflow_workers::runtime::readiness(worker.probe(), pool, None);
    let admin = admin::spawn(admin_addr, registry, ready, shutdown.clone())
        .await
        .with_context(|| format!("binding the admin port {admin_addr}"))?;

    let result = worker.join().await;
    // A fatal worker error also stops the admin server.
    shutdown.cancel();
    let admin_result = admin.await;
    result.context("audit worker failed")?;
    admin_result??;
    tracing::info!("taskflow-audit stopped");
    Ok(())
}
