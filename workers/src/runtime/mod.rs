//! The consumer runtime every Taskflow worker runs on.
//!
//! A worker names its consumer group and topics ([`RuntimeSettings`]) and supplies a
//! [`Handler`]; the runtime consumes, decodes, calls the handler, retries, dead-letters and
//! commits.
//!
//! # Delivery guarantee: at least once, effectively once
//!
//! Every message is handed to the handler **at least once**, and an offset is committed only
//! after the effect of that message and of every earlier message of its partition is durable.
//! Handlers make their effect idempotent by `event_id` (a unique constraint written in the same
//! database transaction as the effect), so a redelivery changes nothing: at-least-once
//! delivery plus an idempotent effect is effectively once.
//!
//! Why nothing is lost or skipped:
//!
//! * `enable.auto.commit=false` and `enable.auto.offset.store=false`: librdkafka never commits
//!   on its own, and never commits the fetch position (which runs ahead of processing). The
//!   runtime commits explicitly, and only offsets from [`offsets::OffsetBook`], which holds
//!   "one past the last message whose effect is durable" per partition.
//! * Each partition is processed strictly in order by one task, so "offset N is done" implies
//!   every offset below N is done.
//! * A transient failure (database or registry down, registry refusing our credentials, DLQ
//!   produce failed) is retried with capped exponential backoff, forever, and the message is
//!   not marked done meanwhile: its offset and every later one of its partition stay
//!   uncommitted.
//! * A schema id the registry does not know (404) is retried the same way for
//!   `unknown_schema_retry` (a schema registered a moment ago may not have reached every
//!   registry node yet), then dead-lettered.
//! * A permanent failure (undecodable bytes, bad framing, a handler's `Permanent`, an unknown
//!   schema id after its window) goes to `taskflow.dlq.<group>`; the message is marked done
//!   only after the broker acknowledged the dead letter.
//! * A panic while decoding or handling is caught at the partition task, counted
//!   (`taskflow_consumer_panics_total`) and logged; the message is not marked done, and the
//!   whole worker stops with [`RuntimeError::PartitionPanicked`] (after committing only what
//!   was done before it), so the binary exits non-zero and its supervisor restarts it. A
//!   partition never dies silently while the others carry on and `/readyz` stays green.
//! * A partition task waits on its queue for at most `queue_poll_timeout` before polling
//!   again, so a lost wake-up (rust-rdkafka #665) costs at most that long.
//! * On revoke, the revoked partitions' tasks finish their in-flight message (bounded by
//!   `drain_timeout`), then their done offsets are committed synchronously *before* the
//!   partitions are handed over (librdkafka #1647: nothing is committed on revoke otherwise).
//!   A fresh epoch per assignment, and per partition the highest offset this process saw
//!   committed in that assignment (its own confirmed commits, and the group's committed offset
//!   whenever it is read back), keep a commit from moving an offset backwards (librdkafka
//!   #2782); see [`offsets`] for what that cache does and does not know.
//! * On shutdown: stop fetching, finish in-flight messages (bounded), final synchronous commit.
//!
//! What the guarantee depends on: handlers must be idempotent, and must return `Ok` only once
//! the effect is durable (committed). A message still in flight when a drain times out is
//! abandoned uncommitted and re-read by the next owner; that is the at-least-once part.
//!
//! # Structure
//!
//! The Kafka loop only adapts; decisions live in plain, unit-tested code:
//! [`offsets`] (what may be committed), [`Backoff`] (retry delays, shared with the outbox relay), [`dlq`] (dead-letter
//! headers), [`settings`] (configuration). `context` holds the rebalance callbacks,
//! `partition` the per-partition task, `driver` the main loop (rebalance events, periodic
//! commits, lag).
//!
//! The driver runs on its own thread: librdkafka calls the rebalance callback from the thread
//! that polls the consumer, and the callback must block (drain, synchronous commit) before it
//! returns. Blocking a dedicated thread never stalls the async runtime that runs the handlers,
//! whatever its flavour.
//!
//! # Test hooks
//!
//! * [`spawn`] returns a [`WorkerHandle`] at once: `stop().await` cancels and waits for the
//!   final commit; dropping the handle cancels too.
//! * [`WorkerHandle::probe`] gives a [`Probe`]: assigned partitions, done and committed
//!   offsets, whether the loop runs — enough to wait for an assignment or a commit in a test
//!   without sleeping blindly.
//! * [`Decoder`] is a trait: tests can feed JSON or hand-made events without a registry;
//!   `taskflow_schemas::Codec` implements it for production.
//! * [`RuntimeSettings::new`] builds settings without the environment;
//!   `consumer_overrides` passes any librdkafka property (e.g. a short `session.timeout.ms`).

mod context;
pub mod dlq;
mod driver;
pub mod metrics;
pub mod offsets;
mod partition;
pub mod settings;

use std::future::Future;
use std::sync::Arc;

use prometheus::Registry;
use rdkafka::error::KafkaError;
use rdkafka::message::OwnedMessage;
use rdkafka::{ClientConfig, Message};
use taskflow_schemas::{Codec, CodecError, CodecErrorClass, Event};
use tokio::sync::oneshot;
use tokio_util::sync::{CancellationToken, DropGuard};

pub use offsets::TopicPartition;
pub use settings::{Assignor, RuntimeSettings, SettingsError};
pub use taskflow_infra::backoff::Backoff;

use context::Shared;

/// A decoded message as the handler sees it: the event plus where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub event: Event,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    /// Broker or producer timestamp in epoch milliseconds, when the broker reports one.
    pub timestamp_millis: Option<i64>,
}

impl Decoded {
    pub fn from_message(event: Event, msg: &OwnedMessage) -> Self {
        Self {
            event,
            topic: msg.topic().to_owned(),
            partition: msg.partition(),
            offset: msg.offset(),
            key: msg.key().map(<[u8]>::to_vec),
            headers: dlq::message_headers(msg),
            timestamp_millis: msg.timestamp().to_millis(),
        }
    }

    /// The first header named `key`, if it has a value.
    pub fn header(&self, key: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.as_deref())
    }
}

/// How a handler failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandlerError {
    /// A dependency is unavailable (database down, timeout). The message is retried with
    /// capped exponential backoff; it is never committed and never dead-lettered meanwhile.
    #[error("transient failure: {0}")]
    Transient(String),
    /// The message can never succeed (constraint or data error). It is dead-lettered with
    /// this reason and the partition moves on.
    #[error("permanent failure: {0}")]
    Permanent(String),
}

/// A worker's effect for one message.
///
/// Contract: return `Ok` only once the effect is durable; make the effect idempotent by
/// `event_id` (the same message may arrive again after a crash or a rebalance); return
/// `Transient` for anything that may succeed later. Calls for one partition never overlap;
/// calls for different partitions run concurrently.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, msg: &Decoded) -> impl Future<Output = Result<(), HandlerError>> + Send;
}

/// How decoding failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The schema registry is unreachable, timing out or failing (5xx): retried like a
    /// transient handler error, forever, never dead-lettered.
    #[error("transient decode failure: {0}")]
    Transient(String),
    /// The registry refused our credentials (401/403). Retried forever and never
    /// dead-lettered: an expired credential must not dead-letter whole topics. Counted apart
    /// (`reason="registry_unauthorized"`) so it alerts.
    #[error("schema registry refused the credentials: {0}")]
    Unauthorized(String),
    /// The registry does not know the message's schema id (404). Retried for
    /// `RuntimeSettings::unknown_schema_retry`, then dead-lettered.
    #[error("unknown schema: {0}")]
    UnknownSchema(String),
    /// Bad framing, undecodable bytes: dead-lettered at once.
    #[error("undecodable message: {0}")]
    Invalid(String),
}

impl DecodeError {
    /// The bounded `reason` label of `taskflow_consumer_decode_retries_total`.
    pub fn retry_reason(&self) -> &'static str {
        match self {
            DecodeError::Transient(_) => "registry_unavailable",
            DecodeError::Unauthorized(_) => "registry_unauthorized",
            DecodeError::UnknownSchema(_) => "unknown_schema",
            DecodeError::Invalid(_) => "invalid",
        }
    }
}

/// Turns a message value into an event. `taskflow_schemas::Codec` is the production decoder;
/// tests may plug in their own.
pub trait Decoder: Send + Sync + 'static {
    fn decode(&self, bytes: &[u8]) -> impl Future<Output = Result<Event, DecodeError>> + Send;
}

impl Decoder for Codec {
    async fn decode(&self, bytes: &[u8]) -> Result<Event, DecodeError> {
        Codec::decode(self, bytes).await.map_err(decode_error)
    }
}

/// Maps the codec's classification onto the runtime's retry decision.
pub fn decode_error(e: CodecError) -> DecodeError {
    match (e.class(), &e) {
        (CodecErrorClass::Transient, CodecError::RegistryUnauthorized { .. }) => {
            DecodeError::Unauthorized(e.to_string())
        }
        (CodecErrorClass::Transient, _) => DecodeError::Transient(e.to_string()),
        (CodecErrorClass::UnknownSchema, _) => DecodeError::UnknownSchema(e.to_string()),
        (CodecErrorClass::Permanent, _) => DecodeError::Invalid(e.to_string()),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("invalid settings: {0}")]
    Settings(#[from] SettingsError),
    #[error("registering metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("kafka client: {0}")]
    Kafka(#[from] KafkaError),
    #[error("the consumer runtime must be started inside a tokio runtime")]
    NoTokioRuntime,
    #[error("starting the consumer thread: {0}")]
    Thread(#[source] std::io::Error),
    #[error("the consumer thread ended without a result (it panicked)")]
    DriverLost,
    /// Decoding or handling a message panicked. The message was not marked done (its offset
    /// and every later one of its partition stay uncommitted); the worker stopped so that its
    /// supervisor restarts it.
    #[error("partition {topic}[{partition}] panicked at offset {offset:?}: {message}")]
    PartitionPanicked {
        topic: String,
        partition: i32,
        /// The message being processed, when the panic happened inside one.
        offset: Option<i64>,
        message: String,
    },
    /// librdkafka reported a fatal error (e.g. another member fenced this static instance
    /// id): the consumer cannot continue.
    #[error("fatal kafka client error: {0}")]
    FatalKafka(String),
    /// A message arrived on the consumer's main queue instead of its partition's queue. The
    /// runtime cannot process it in order, so it stops without committing that partition.
    #[error("message {topic}[{partition}]@{offset} arrived outside its partition queue")]
    StrayMessage {
        topic: String,
        partition: i32,
        offset: i64,
    },
}

/// A running worker. Dropping it cancels the worker (the final commit still happens on the
/// consumer thread); prefer [`WorkerHandle::stop`] to wait for it.
pub struct WorkerHandle {
    token: CancellationToken,
    guard: Option<DropGuard>,
    result: oneshot::Receiver<Result<(), RuntimeError>>,
    probe: Probe,
}

impl WorkerHandle {
    /// A view of the worker's state for readiness checks and tests.
    pub fn probe(&self) -> Probe {
        self.probe.clone()
    }

    /// Asks the worker to stop (finish in-flight, final commit) without waiting.
    pub fn cancel(&self) {
        self.token.cancel();
    }

    /// Cancels the worker and waits until it has committed and stopped.
    pub async fn stop(self) -> Result<(), RuntimeError> {
        self.token.cancel();
        self.join().await
    }

    /// Waits until the worker stops (its shutdown token is cancelled, or a fatal error).
    pub async fn join(mut self) -> Result<(), RuntimeError> {
        if let Some(guard) = self.guard.take() {
            guard.disarm();
        }
        (&mut self.result)
            .await
            .unwrap_or(Err(RuntimeError::DriverLost))
    }
}

/// Read-only view of a running worker (cheap to clone).
#[derive(Clone)]
pub struct Probe {
    shared: Arc<Shared>,
}

impl Probe {
    /// True from the subscription until the final commit.
    pub fn is_running(&self) -> bool {
        self.shared.is_running()
    }

    /// Partitions currently assigned to this worker, sorted.
    pub fn assigned(&self) -> Vec<TopicPartition> {
        self.shared.book().assigned()
    }

    /// One past the last message of the partition whose effect is durable.
    pub fn done(&self, topic: &str, partition: i32) -> Option<i64> {
        self.shared
            .book()
            .done(&TopicPartition::new(topic, partition))
    }

    /// The highest committed offset this process saw for the partition in this assignment:
    /// its own confirmed commits, or the group's offset read back from the broker (a cache,
    /// refreshed every lag interval; another member's later commit is not seen until then).
    pub fn committed(&self, topic: &str, partition: i32) -> Option<i64> {
        self.shared
            .book()
            .committed(&TopicPartition::new(topic, partition))
    }
}

/// Starts a worker and returns at once. Must be called inside a tokio runtime: handlers run
/// on it, the consumer loop runs on a dedicated thread.
///
/// `kafka` is the base client configuration (bootstrap servers, security), e.g.
/// `taskflow_infra::config::KafkaSettings::client_config()`. `shutdown` stops the worker
/// gracefully when cancelled.
pub fn spawn<H: Handler, D: Decoder>(
    kafka: ClientConfig,
    settings: RuntimeSettings,
    decoder: D,
    handler: H,
    registry: &Registry,
    shutdown: CancellationToken,
) -> Result<WorkerHandle, RuntimeError> {
    driver::spawn(kafka, settings, decoder, handler, registry, shutdown)
}

/// [`spawn`], then wait until the worker stops.
pub async fn run<H: Handler, D: Decoder>(
    kafka: ClientConfig,
    settings: RuntimeSettings,
    decoder: D,
    handler: H,
    registry: &Registry,
    shutdown: CancellationToken,
) -> Result<(), RuntimeError> {
    spawn(kafka, settings, decoder, handler, registry, shutdown)?
        .join()
        .await
}

/// The `/readyz` check of a worker binary: its consumer is running, the schemas it
/// produces are registered (when it produces any), and the database answers.
pub fn readiness(
    probe: Probe,
    pool: sqlx::PgPool,
    registration: Option<taskflow_infra::registration::SchemaRegistration>,
) -> taskflow_infra::admin::ReadyCheck {
    Arc::new(move || {
        let pool = pool.clone();
        let probe = probe.clone();
        let registration = registration.clone();
        Box::pin(async move {
            if !probe.is_running() {
                return Err("consumer not running".to_owned());
            }
            if let Some(r) = &registration {
                r.check()?;
            }
            sqlx::query("SELECT 1")
                .execute(&pool)
                .await
                .map(|_| ())
                .map_err(|e| format!("database: {e}"))
        })
    })
}
