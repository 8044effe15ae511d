//! `taskflow-audit`: records every task event and reminder in the append-only audit log.
//! See `taskflow_workers::audit` for the guarantee; configuration is by `TASKFLOW_*`
//! variables (`TASKFLOW_DATABASE_*` as in `taskflow_infra::db`, `TASKFLOW_SCHEMA_REGISTRY_URL`,
//! `TASKFLOW_ADMIN_ADDR` (default `0.0.0.0:9091`), `TASKFLOW_KAFKA_*`, `TASKFLOW_CONSUMER_*`).
//!
//! It registers no schemas at start-up: the only records it produces are dead letters, which
//! carry the original bytes untouched (no Avro encoding). A registry settings error still
//! stops the start.
//!
//! Exit status: 0 after a graceful shutdown (SIGTERM/SIGINT); non-zero on a fatal error,
//! including a panic while decoding or handling a message (the runtime stops without
//! committing that message), so the supervisor restarts the process.

use taskflow_workers::audit::{self, AuditSettings};
use taskflow_workers::process::Process;
use taskflow_workers::runtime::readiness;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let process = Process::start(9091).await?;
    let settings = AuditSettings::from_env()?;
    let worker = audit::spawn_audit_worker(
        settings,
        process.pool.clone(),
        process.codec.clone(),
        &process.registry,
        process.shutdown.clone(),
    )?;
    let ready = readiness(worker.probe(), process.pool.clone(), None);
    process.serve("taskflow-audit", ready, worker.join()).await
}
