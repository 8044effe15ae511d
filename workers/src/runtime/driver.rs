//! The consumer loop: subscribe, serve the main queue (rebalance callbacks, commit
//! confirmations, errors), commit done offsets periodically, refresh lag, and shut down with a
//! drain and a final synchronous commit.
//!
//! It runs on a dedicated thread (`Handle::block_on`) because the rebalance callback blocks
//! while partitions drain and commit; see the runtime module docs.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use std::panic::AssertUnwindSafe;

use futures::{FutureExt, StreamExt};
use prometheus::Registry;
use rdkafka::consumer::Consumer;
use rdkafka::{ClientConfig, Message};
use tokio::sync::oneshot;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use super::context::{Ctx, PartitionJob, Shared, Spawner, TaskflowConsumer};
use super::dlq::DlqProducer;
use super::metrics::ConsumerMetrics;
use super::offsets::TopicPartition;
use super::partition::{panic_message, PartitionLimits, PartitionWorker};
use super::settings::RuntimeSettings;
use super::{Decoder, Handler, Probe, RuntimeError, WorkerHandle};
use taskflow_infra::backoff::Backoff;

/// The consumer's librdkafka configuration: explicit commits only, never the fetch position.
pub(crate) fn consumer_config(base: &ClientConfig, s: &RuntimeSettings) -> ClientConfig {
    let mut config = base.clone();
    config
        .set("group.id", &s.group_id)
        .set("client.id", &s.client_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .set("partition.assignment.strategy", s.assignor.as_str())
        .set(
            "session.timeout.ms",
            s.session_timeout.as_millis().to_string(),
        )
        // Prefetch bounds; with split partition queues the first two apply per partition.
        .set(
            "queued.max.messages.kbytes",
            s.queued_max_kbytes.to_string(),
        )
        .set("queued.min.messages", s.queued_min_messages.to_string())
        .set("fetch.max.bytes", s.fetch_max_bytes.to_string())
        .set(
            "max.partition.fetch.bytes",
            s.max_partition_fetch_bytes.to_string(),
        )
        .set(
            "fetch.wait.max.ms",
            s.fetch_wait_max.as_millis().to_string(),
        );
    if let Some(id) = &s.group_instance_id {
        config.set("group.instance.id", id);
    }
    for (key, value) in &s.consumer_overrides {
        config.set(key, value);
    }
    config
}

pub(crate) fn spawn<H: Handler, D: Decoder>(
    kafka: ClientConfig,
    settings: RuntimeSettings,
    decoder: D,
    handler: H,
    registry: &Registry,
    shutdown: CancellationToken,
) -> Result<WorkerHandle, RuntimeError> {
    settings.validate()?;
    let rt = tokio::runtime::Handle::try_current().map_err(|_| RuntimeError::NoTokioRuntime)?;
    let metrics = ConsumerMetrics::register(registry, &settings.group_id)?;
    let shared = Arc::new(Shared::new(
        metrics,
        settings.commit_every,
        settings.drain_timeout,
    ));

    let mut producer_config = kafka.clone();
    producer_config.set("client.id", format!("{}-dlq", settings.client_id));
    let dlq = DlqProducer::new(
        &producer_config,
        taskflow_schemas::topics::dlq(&settings.group_id),
        settings.dlq_timeout,
    )?;

    let spawner: Spawner = {
        let handler = Arc::new(handler);
        let decoder = Arc::new(decoder);
        let shared = shared.clone();
        let backoff = Backoff::new(settings.initial_backoff, settings.max_backoff);
        let limits = PartitionLimits {
            queue_poll_timeout: settings.queue_poll_timeout,
            unknown_schema_retry: settings.unknown_schema_retry,
        };
        let rt = rt.clone();
        Box::new(move |job: PartitionJob| {
            let tp = job.tp.clone();
            let shared_for_panic = shared.clone();
            let worker = PartitionWorker {
                tp: job.tp,
                epoch: job.epoch,
                handler: handler.clone(),
                decoder: decoder.clone(),
                dlq: dlq.clone(),
                shared: shared.clone(),
                backoff,
                limits,
                stop: job.stop,
            };
            // `run` catches panics of message processing itself; this catches anything else,
            // so no partition task can end silently.
            rt.spawn(async move {
                if let Err(payload) = AssertUnwindSafe(worker.run(job.queue)).catch_unwind().await {
                    shared_for_panic.partition_panicked(&tp, None, panic_message(payload.as_ref()));
                }
            })
        })
    };

    // Created here, inside the runtime: the stream consumer starts a wake-up task on it.
    let consumer: Arc<TaskflowConsumer> = Arc::new(
        consumer_config(&kafka, &settings)
            .create_with_context(Ctx::new(shared.clone(), spawner))?,
    );
    consumer.context().set_consumer(&consumer);
    let topics: Vec<&str> = settings.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics)?;
    shared.set_running(true);
    tracing::info!(group = %settings.group_id, topics = ?settings.topics, assignor = %settings.assignor, "consumer subscribed");

    let token = shutdown.child_token();
    let (tx, rx) = oneshot::channel();
    let driver = Driver {
        consumer,
        shared: shared.clone(),
        settings,
        shutdown: token.clone(),
    };
    std::thread::Builder::new()
        .name("taskflow-consumer".to_owned())
        .spawn(move || {
            let result = rt.block_on(driver.run());
            let _ = tx.send(result);
        })
        .map_err(RuntimeError::Thread)?;

    Ok(WorkerHandle {
        guard: Some(token.clone().drop_guard()),
        token,
        result: rx,
        probe: Probe { shared },
    })
}

/// librdkafka's fatal errors leave the consumer unusable (e.g. a static member fenced by
/// another process with the same `group.instance.id`); everything else it retries itself.
fn is_fatal(error: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode;
    matches!(
        error.rdkafka_error_code(),
        Some(RDKafkaErrorCode::Fatal | RDKafkaErrorCode::FencedInstanceId)
    )
}

struct Driver {
    consumer: Arc<TaskflowConsumer>,
    shared: Arc<Shared>,
    settings: RuntimeSettings,
    shutdown: CancellationToken,
}

impl Driver {
    /// Broker round trips (committed offsets, watermarks) run on the blocking pool so they
    /// never delay rebalance handling, commits or shutdown; at most one at a time.
    fn spawn_lag_refresh(&self) {
        if self.shared.lag_refresh_running.swap(true, Ordering::AcqRel) {
            return;
        }
        let consumer = self.consumer.clone();
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            shared.refresh_lag(&consumer);
            tracing::trace!(elapsed = ?started.elapsed(), "lag refreshed");
            shared.lag_refresh_running.store(false, Ordering::Release);
        });
    }

    async fn run(self) -> Result<(), RuntimeError> {
        let mut commit_tick = tokio::time::interval(self.settings.commit_interval);
        commit_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut lag_tick = tokio::time::interval(self.settings.lag_interval);
        lag_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let consumer = &*self.consumer;
        let mut stream = consumer.stream();

        let result = loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => break Ok(()),
                // A partition task panicked: stop everything (its message stays uncommitted)
                // and let the supervisor restart the process.
                _ = self.shared.failed.cancelled() => {
                    break Err(self.shared.take_failure().unwrap_or(RuntimeError::DriverLost));
                }
                // Polling the main queue runs the rebalance and commit callbacks. After the
                // split, no message should arrive here.
                item = stream.next() => match item {
                    Some(Ok(msg)) => {
                        let tp = TopicPartition::new(msg.topic(), msg.partition());
                        let offset = msg.offset();
                        tracing::error!(%tp, offset, "message outside its partition queue; stopping without committing that partition");
                        // Poison the partition: a later offset processed by its task must not
                        // be committed past this unprocessed one.
                        self.shared.book().revoke(&tp);
                        break Err(RuntimeError::StrayMessage { topic: tp.topic, partition: tp.partition, offset });
                    }
                    Some(Err(error)) if is_fatal(&error) => {
                        tracing::error!(%error, "fatal consumer error; stopping");
                        break Err(RuntimeError::FatalKafka(error.to_string()));
                    }
                    Some(Err(error)) => tracing::warn!(%error, "consumer error"),
                    None => break Ok(()),
                },
                _ = commit_tick.tick() => self.shared.commit_async(consumer),
                _ = self.shared.commit_now.notified() => self.shared.commit_async(consumer),
                _ = lag_tick.tick() => self.spawn_lag_refresh(),
            }
        };
        drop(stream);

        tracing::info!("consumer stopping: draining partitions");
        self.shared.stop_partitions(None);
        self.shared.commit_sync(consumer, None);
        self.shared.set_running(false);
        tracing::info!("consumer stopped");
        // Dropping the consumer leaves the group (librdkafka close); the revoke callback then
        // finds nothing left to drain or commit.
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::Assignor;

    #[test]
    fn consumer_config_commits_explicitly_only() {
        let mut base = ClientConfig::new();
        base.set("bootstrap.servers", "b:9092")
            .set("enable.auto.commit", "true");
        let mut s = RuntimeSettings::new("taskflow-audit", &["t"]);
        s.assignor = Assignor::CooperativeSticky;
        s.consumer_overrides = vec![("session.timeout.ms".to_owned(), "6000".to_owned())];
        let c = consumer_config(&base, &s);
        assert_eq!(c.get("bootstrap.servers"), Some("b:9092"));
        assert_eq!(c.get("group.id"), Some("taskflow-audit"));
        assert_eq!(c.get("enable.auto.commit"), Some("false"));
        assert_eq!(c.get("enable.auto.offset.store"), Some("false"));
        assert_eq!(c.get("auto.offset.reset"), Some("earliest"));
        assert_eq!(
            c.get("partition.assignment.strategy"),
            Some("cooperative-sticky")
        );
        assert_eq!(c.get("session.timeout.ms"), Some("6000"));
        assert_eq!(c.get("group.instance.id"), None);
        assert_eq!(c.get("queued.max.messages.kbytes"), Some("2048"));
        assert_eq!(c.get("queued.min.messages"), Some("2000"));
        assert_eq!(c.get("fetch.max.bytes"), Some("8388608"));
        assert_eq!(c.get("max.partition.fetch.bytes"), Some("1048576"));
    }

    #[test]
    fn static_membership_sets_the_instance_id() {
        let mut s = RuntimeSettings::new("taskflow-audit", &["t"]);
        s.group_instance_id = Some("taskflow-audit-0".to_owned());
        let c = consumer_config(&ClientConfig::new(), &s);
        assert_eq!(c.get("group.instance.id"), Some("taskflow-audit-0"));
    }
}
