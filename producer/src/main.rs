//! `taskflow-api`: the HTTP API plus its admin server.

use anyhow::Context;
use taskflow_infra::{
    config::{codec_from_env, KafkaSettings},
    outbox::{Relay, RelayConfig},
    registration::{self, SchemaRegistration, Subjects},
};
use taskflow_producer::{Application, Settings};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    taskflow_infra::telemetry::init_tracing();
    let settings = Settings::from_env().context("reading TASKFLOW_* settings")?;
    let registry = prometheus::Registry::new();
    let shutdown = taskflow_infra::shutdown::on_signal();

    let admin_addr = settings.admin_addr;
    // A registry settings error stops the start; the registration itself is retried in the
    // background, and the API is not ready until every subject it publishes is registered.
    let codec = codec_from_env().context("reading Schema Registry settings")?;
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
    let app = Application::build(settings, registry.clone())
        .await
        .context("building the API")?;

    let pool = app.pool();
    let ready: taskflow_infra::admin::ReadyCheck = std::sync::Arc::new(move || {
        let pool = pool.clone();
        let registration = registration.clone();
        Box::pin(async move {
            registration.check()?;
            sqlx::query("SELECT 1")
                .execute(&pool)
                .await
                .map(|_| ())
                .map_err(|e| format!("database: {e}"))
        })
    });
    let admin = taskflow_infra::admin::spawn(admin_addr, registry.clone(), ready, shutdown.clone())
        .await
        .with_context(|| format!("binding the admin server on {admin_addr}"))?;

    // The relay runs beside the API: the API only writes PostgreSQL, so it
    // keeps answering while the broker or the registry is down.
    let kafka = KafkaSettings::from_env("taskflow-api").context("reading Kafka settings")?;
    let relay = Relay::new(
        app.pool(),
        &kafka,
        codec,
        RelayConfig::from_env().context("reading outbox settings")?,
        &registry,
    )
    .context("creating the outbox relay")?
    .with_waker(app.outbox_waker());
    let relay = tokio::spawn(relay.run(shutdown.clone()));

    app.run_until(shutdown).await?;
    relay.await.context("outbox relay task")?;
    admin.await.context("admin server task")??;
    Ok(())
}
