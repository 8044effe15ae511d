//! What every worker binary does around its worker, in one place: logging, the database (the
//! migrations as the owner when configured, then a pool as the service role), the Schema
//! Registry codec, the signal-driven shutdown token, the admin server, and the exit. The
//! binaries (`src/bin/*.rs`) only choose their worker, its settings and what `/readyz`
//! checks.
//!
//! Exit: [`Process::serve`] returns `Ok` after a graceful shutdown (SIGTERM/SIGINT: the
//! worker stopped fetching, finished in-flight work and committed) and an error when the
//! worker failed (a panic while handling a message included), which the binary's `main`
//! turns into a non-zero exit so its supervisor restarts it.

use std::future::Future;
use std::net::SocketAddr;

use anyhow::Context;
use prometheus::Registry;
use sqlx::PgPool;
use taskflow_infra::admin::{self, ReadyCheck};
use taskflow_infra::config::{env_or, KafkaSettings};
use taskflow_infra::outbox::{OutboxWaker, Relay, RelayConfig};
use taskflow_infra::registration::{self, SchemaRegistration, Subjects};
use taskflow_schemas::Codec;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A worker binary's surroundings, set up from the environment.
pub struct Process {
    pub pool: PgPool,
    pub codec: Codec,
    pub registry: Registry,
    /// Cancelled by SIGTERM/SIGINT, or when the worker fails.
    pub shutdown: CancellationToken,
    admin_addr: SocketAddr,
    relay: Option<JoinHandle<()>>,
}

impl Process {
    /// Reads `TASKFLOW_DATABASE_*`, `TASKFLOW_SCHEMA_REGISTRY_*` and `TASKFLOW_ADMIN_ADDR`
    /// (default `0.0.0.0:<admin_port>`), applies the migrations if configured, and connects.
    pub async fn start(admin_port: u16) -> anyhow::Result<Self> {
        taskflow_infra::telemetry::init_tracing();
        let database = taskflow_infra::db::DatabaseSettings::from_env(10)?;
        let codec =
            taskflow_infra::config::codec_from_env().context("reading Schema Registry settings")?;
        let admin_addr: SocketAddr = env_or(
            "TASKFLOW_ADMIN_ADDR",
            SocketAddr::from(([0, 0, 0, 0], admin_port)),
        )?;
        let pool = taskflow_infra::db::connect(&database, &crate::audit::MIGRATOR).await?;
        Ok(Self {
            pool,
            codec,
            registry: Registry::new(),
            shutdown: taskflow_infra::shutdown::on_signal(),
            admin_addr,
            relay: None,
        })
    }

    /// For a binary that writes outbox rows: runs the outbox relay as a candidate (one relay
    /// per database wins the advisory lock and publishes every binary's rows; the others
    /// stand by), configured by `TASKFLOW_OUTBOX_*`, and returns the process's waker to give
    /// the worker.
    pub fn run_relay(&mut self, kafka: &KafkaSettings) -> anyhow::Result<OutboxWaker> {
        let config = RelayConfig::from_env().context("reading outbox settings")?;
        let waker = OutboxWaker::new(self.pool.clone());
        let relay = Relay::new(
            self.pool.clone(),
            kafka,
            self.codec.clone(),
            config,
            &self.registry,
        )
        .context("creating the outbox relay")?
        .with_waker(waker.clone());
        self.relay = Some(tokio::spawn(relay.run(self.shutdown.clone())));
        Ok(waker)
    }

    /// Registers the schemas this binary produces, in the background with retries; the
    /// returned handle's `check` is what `/readyz` asks.
    pub fn register(&self, subjects: Vec<Subjects>) -> anyhow::Result<SchemaRegistration> {
        SchemaRegistration::spawn(
            self.codec.clone(),
            subjects,
            registration::default_backoff(),
            &self.registry,
            self.shutdown.clone(),
        )
        .context("registering schema registration metrics")
    }

    /// Serves the admin port (`/metrics`, `/healthz`, `/readyz` by `ready`) until `worker`
    /// ends, then stops the relay and the admin server and reports how the worker ended.
    pub async fn serve<E>(
        self,
        name: &str,
        ready: ReadyCheck,
        worker: impl Future<Output = Result<(), E>>,
    ) -> anyhow::Result<()>
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        let admin = admin::spawn(self.admin_addr, self.registry, ready, self.shutdown.clone())
            .await
            .with_context(|| format!("binding the admin port {}", self.admin_addr))?;
        let result = worker.await;
        // A fatal worker error also stops the relay and the admin server.
        self.shutdown.cancel();
        if let Some(relay) = self.relay {
            relay.await.context("outbox relay task")?;
        }
        let admin_result = admin.await;
        result.with_context(|| format!("{name} failed"))?;
        admin_result??;
        tracing::info!("{name} stopped");
        Ok(())
    }
}
