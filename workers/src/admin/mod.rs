//! `taskflow-admin`, the operator's command line: topics, schemas, consumer lag, dead letters
//! and parked outbox rows. The binary (`src/bin/admin.rs`) only parses arguments and prints;
//! each command here is a plain async function returning a report that is printed either as
//! aligned columns ([`Human`]) or as JSON (`serde::Serialize`).
//!
//! Configuration comes from the same variables as every other binary: `TASKFLOW_KAFKA_*`,
//! `TASKFLOW_SCHEMA_REGISTRY_*`, `TASKFLOW_DATABASE_URL`. The tool never applies migrations
//! and never joins a consumer group: lag reads committed offsets without subscribing, so
//! running it cannot trigger a rebalance of a worker's group.
//!
//! Where a broker lacks an admin API (tansu 0.6 has no AlterConfigs), the command reports
//! what it could not do instead of failing the rest.

pub mod dlq;
mod kafka;
pub mod lag;
pub mod outbox;
pub mod schemas;
pub mod table;
pub mod topics;

use rdkafka::error::KafkaError;
use taskflow_infra::config::ConfigError;

pub use kafka::Broker;

/// A report printed for people: aligned columns, a summary line.
pub trait Human {
    fn human(&self) -> String;
}

/// Everything an admin command can fail with.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{context}: {source}")]
    Kafka {
        context: String,
        #[source]
        source: KafkaError,
    },
    #[error("topic {topic}: {reason}")]
    Topic { topic: String, reason: String },
    #[error("schema registry: {0}")]
    Registry(String),
    #[error("schema registry answered {status} to {request}: {message}")]
    RegistryStatus {
        request: String,
        status: u16,
        message: String,
    },
    #[error("the compiled-in schemas could not be loaded: {0}")]
    Schema(#[from] taskflow_schemas::schema::SchemaError),
    #[error("registering schemas: {0}")]
    Codec(#[from] taskflow_schemas::CodecError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("{0}")]
    Connect(#[from] taskflow_infra::db::DbError),
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("timed out: {0}")]
    Timeout(String),
}

impl AdminError {
    pub(crate) fn kafka(context: impl Into<String>) -> impl FnOnce(KafkaError) -> AdminError {
        let context = context.into();
        move |source| AdminError::Kafka { context, source }
    }
}
