//! Rebuilding the audit log from the topics (`taskflow-audit-replay`).
//!
//! Replay reads every partition of the audit topics from its earliest retained offset up to
//! the high watermark captured when it starts, and writes each event through the same
//! idempotent [`AuditStore::insert`] as the live worker. It assigns partitions manually under
//! a throwaway group id and never commits, so it neither joins nor disturbs the live
//! `taskflow-audit` group; it may run while the worker runs.
//!
//! Because inserts are idempotent by event, replaying into a log that already holds some rows
//! only adds the missing ones, and replaying into an empty log reproduces the same rows
//! (same event ids, payloads and source positions; only `recorded_at` and the feed position
//! `insert_xid`, `seq` differ), as far as the topics still retain the events.
//!
//! Emptying the log is deliberately hard: the immutability triggers refuse DELETE and
//! TRUNCATE. The documented rebuild paths are
//!
//! 1. a new database: run the migrations, then the replay; or
//! 2. an admin, as superuser, in one transaction:
//!    `SET LOCAL session_replication_role = replica; TRUNCATE audit_log;` (this skips the
//!    TRUNCATE triggers of the parent and of every partition), then the replay. A plain
//!    `ALTER TABLE audit_log DISABLE TRIGGER USER` is not enough: each partition carries its
//!    own TRUNCATE trigger.
//!
//! Messages that cannot be decoded or stored permanently are counted as skipped and logged:
//! the live worker already dead-lettered them. Transient failures are retried.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::OwnedMessage;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use super::store::{AuditStore, ErrorClass, Inserted};
use super::{audit_row, TOPICS};
use crate::runtime::{Backoff, DecodeError, Decoded, Decoder, TopicPartition};

#[derive(Debug, Clone)]
pub struct ReplayOptions {
    pub topics: Vec<String>,
    /// Prefix of the throwaway group id; a random suffix is added.
    pub group_prefix: String,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Timeout of each metadata / watermark request.
    pub metadata_timeout: Duration,
    /// After this long without a message, positions are checked (a partition whose last
    /// offsets are not messages, e.g. transaction markers, is complete by position).
    pub idle_check: Duration,
}

impl ReplayOptions {
    pub fn new(topics: &[&str]) -> Self {
        Self {
            topics: topics.iter().map(|t| (*t).to_owned()).collect(),
            group_prefix: "taskflow-audit-replay".to_owned(),
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(30),
            metadata_timeout: Duration::from_secs(10),
            idle_check: Duration::from_millis(500),
        }
    }
}

impl Default for ReplayOptions {
    fn default() -> Self {
        Self::new(&TOPICS)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// Partitions that had messages to replay.
    pub partitions: usize,
    pub messages: u64,
    pub inserted: u64,
    pub duplicates: u64,
    /// Undecodable or permanently refused messages (already dead-lettered by the worker).
    pub skipped: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error("topic {0} does not exist")]
    UnknownTopic(String),
    #[error("replay cancelled after {0:?}")]
    Cancelled(ReplayReport),
    #[error("replay planning task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// Which partitions still need messages, up to the captured high watermarks. Pure, so the
/// stopping rule is tested without a broker.
#[derive(Debug, Clone, Default)]
pub struct ReplayProgress {
    targets: BTreeMap<TopicPartition, i64>,
    finished: BTreeSet<TopicPartition>,
}

impl ReplayProgress {
    /// `watermarks`: (partition, low, high) captured at the start. Empty partitions are
    /// complete from the start.
    pub fn new(watermarks: impl IntoIterator<Item = (TopicPartition, i64, i64)>) -> Self {
        let targets = watermarks
            .into_iter()
            .filter(|(_, low, high)| high > low)
            .map(|(tp, _, high)| (tp, high))
            .collect();
        Self {
            targets,
            finished: BTreeSet::new(),
        }
    }

    /// Partitions to assign (each from its beginning).
    pub fn partitions(&self) -> impl Iterator<Item = &TopicPartition> {
        self.targets.keys()
    }

    /// Whether a message at `offset` belongs to the replay (below the captured watermark of an
    /// unfinished partition). Later messages are the live worker's business.
    pub fn wants(&self, tp: &TopicPartition, offset: i64) -> bool {
        !self.finished.contains(tp) && self.targets.get(tp).is_some_and(|high| offset < *high)
    }

    /// Records a processed message; returns true when it completed its partition.
    pub fn processed(&mut self, tp: &TopicPartition, offset: i64) -> bool {
        self.reached(tp, offset + 1)
    }

    /// Records the consumer position of a partition; returns true when that completes it.
    pub fn reached(&mut self, tp: &TopicPartition, position: i64) -> bool {
        match self.targets.get(tp) {
            Some(high) if position >= *high => self.finished.insert(tp.clone()),
            _ => false,
        }
    }

    pub fn is_complete(&self) -> bool {
        self.finished.len() == self.targets.len()
    }

    pub fn len(&self) -> usize {
        self.targets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }
}

/// Replays the topics into `store` and returns what it did. Stops early, with
/// [`ReplayError::Cancelled`], when `shutdown` is cancelled.
pub async fn replay<D: Decoder>(
    kafka: ClientConfig,
    options: ReplayOptions,
    decoder: &D,
    store: &AuditStore,
    shutdown: CancellationToken,
) -> Result<ReplayReport, ReplayError> {
    let mut config = kafka;
    config
        .set(
            "group.id",
            format!("{}-{}", options.group_prefix, uuid::Uuid::new_v4()),
        )
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false");
    let consumer: Arc<StreamConsumer> = Arc::new(config.create()?);

    // Metadata and watermark calls block: keep them off the async workers.
    let mut progress = {
        let consumer = consumer.clone();
        let topics = options.topics.clone();
        let timeout = options.metadata_timeout;
        tokio::task::spawn_blocking(move || plan(&consumer, &topics, timeout)).await??
    };
    let mut report = ReplayReport {
        partitions: progress.len(),
        ..ReplayReport::default()
    };
    tracing::info!(partitions = progress.len(), "replay planned");
    if progress.is_empty() {
        return Ok(report);
    }
    let mut tpl = TopicPartitionList::new();
    for tp in progress.partitions() {
        tpl.add_partition_offset(&tp.topic, tp.partition, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;

    let backoff = Backoff::new(options.initial_backoff, options.max_backoff);
    while !progress.is_complete() {
        let next = tokio::select! {
            _ = shutdown.cancelled() => return Err(ReplayError::Cancelled(report)),
            next = tokio::time::timeout(options.idle_check, consumer.recv()) => next.map(|r| r.map(|m| m.detach())),
        };
        match next {
            Err(_idle) => {
                for e in consumer.position()?.elements() {
                    if let Offset::Offset(position) = e.offset() {
                        let tp = TopicPartition::new(e.topic(), e.partition());
                        if progress.reached(&tp, position) {
                            pause(&consumer, &tp);
                        }
                    }
                }
            }
            Ok(Err(error)) => tracing::warn!(%error, "replay consumer error"),
            Ok(Ok(msg)) => {
                let tp = TopicPartition::new(msg.topic(), msg.partition());
                if !progress.wants(&tp, msg.offset()) {
                    continue;
                }
                if !replay_one(&msg, decoder, store, backoff, &shutdown, &mut report).await {
                    return Err(ReplayError::Cancelled(report));
                }
                if progress.processed(&tp, msg.offset()) {
                    tracing::info!(%tp, "partition replayed");
                    pause(&consumer, &tp);
                }
            }
        }
    }
    tracing::info!(?report, "replay complete");
    Ok(report)
}

/// Stops fetching a finished partition (its later messages are not ours).
fn pause(consumer: &StreamConsumer, tp: &TopicPartition) {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(&tp.topic, tp.partition);
    if let Err(error) = consumer.pause(&tpl) {
        tracing::debug!(%error, %tp, "pausing a replayed partition failed");
    }
}

fn plan(
    consumer: &StreamConsumer,
    topics: &[String],
    timeout: Duration,
) -> Result<ReplayProgress, ReplayError> {
    let mut watermarks = Vec::new();
    for topic in topics {
        let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
        let Some(meta) = metadata.topics().iter().find(|t| t.name() == topic) else {
            return Err(ReplayError::UnknownTopic(topic.clone()));
        };
        if meta.error().is_some() || meta.partitions().is_empty() {
            return Err(ReplayError::UnknownTopic(topic.clone()));
        }
        for p in meta.partitions() {
            let (low, high) = consumer.fetch_watermarks(topic, p.id(), timeout)?;
            watermarks.push((TopicPartition::new(topic.as_str(), p.id()), low, high));
        }
    }
    Ok(ReplayProgress::new(watermarks))
}

/// Decodes and stores one message, retrying transient failures; false if cancelled.
async fn replay_one<D: Decoder>(
    msg: &OwnedMessage,
    decoder: &D,
    store: &AuditStore,
    backoff: Backoff,
    shutdown: &CancellationToken,
    report: &mut ReplayReport,
) -> bool {
    report.messages += 1;
    let wait = |retry: u32| async move {
        tokio::select! {
            _ = shutdown.cancelled() => false,
            _ = tokio::time::sleep(backoff.next_delay(retry)) => true,
        }
    };
    let Some(bytes) = msg.payload() else {
        report.skipped += 1;
        return true;
    };
    let mut retry = 0;
    let event = loop {
        match decoder.decode(bytes).await {
            Ok(event) => break event,
            // The live worker dead-lettered these already (an unknown schema id after its
            // retry window): a replay reading retained history does not wait for them again.
            Err(error @ (DecodeError::Invalid(_) | DecodeError::UnknownSchema(_))) => {
                tracing::warn!(topic = msg.topic(), partition = msg.partition(), offset = msg.offset(), %error, "skipping undecodable message");
                report.skipped += 1;
                return true;
            }
            // Registry down or refusing the credentials: never skip good data for that.
            Err(error @ (DecodeError::Transient(_) | DecodeError::Unauthorized(_))) => {
                retry += 1;
                tracing::warn!(retry, %error, "transient decode failure; retrying");
                if !wait(retry).await {
                    return false;
                }
            }
        }
    };
    let row = match audit_row(&Decoded::from_message(event, msg)) {
        Ok(row) => row,
        Err(error) => {
            tracing::warn!(%error, offset = msg.offset(), "skipping event that does not serialise");
            report.skipped += 1;
            return true;
        }
    };
    let mut retry = 0;
    loop {
        match store.insert(&row).await {
            Ok(Inserted::New) => report.inserted += 1,
            Ok(Inserted::Duplicate) => report.duplicates += 1,
            Err(e) if e.class == ErrorClass::Permanent => {
                tracing::warn!(error = %e, event_id = %row.event_id, "skipping event the database refuses");
                report.skipped += 1;
            }
            Err(e) => {
                retry += 1;
                tracing::warn!(error = %e, retry, "transient store failure; retrying");
                if !wait(retry).await {
                    return false;
                }
                continue;
            }
        }
        return true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(p: i32) -> TopicPartition {
        TopicPartition::new("t", p)
    }

    #[test]
    fn empty_partitions_are_complete_from_the_start() {
        let progress = ReplayProgress::new([(tp(0), 0, 0), (tp(1), 5, 5)]);
        assert!(progress.is_empty());
        assert!(progress.is_complete());
    }

    #[test]
    fn stops_at_the_captured_high_watermark() {
        let mut progress = ReplayProgress::new([(tp(0), 0, 3), (tp(1), 10, 12)]);
        assert_eq!(progress.len(), 2);
        assert!(progress.wants(&tp(0), 0));
        assert!(!progress.processed(&tp(0), 0));
        assert!(!progress.processed(&tp(0), 1));
        assert!(progress.processed(&tp(0), 2));
        // Messages produced after the start are not replayed.
        assert!(!progress.wants(&tp(0), 3));
        assert!(!progress.is_complete());
        assert!(progress.wants(&tp(1), 11));
        assert!(!progress.wants(&tp(1), 12));
        assert!(progress.processed(&tp(1), 11));
        assert!(progress.is_complete());
    }

    #[test]
    fn a_position_past_the_watermark_completes_a_partition() {
        // e.g. the last offsets are transaction markers, never delivered as messages.
        let mut progress = ReplayProgress::new([(tp(0), 0, 10)]);
        assert!(!progress.reached(&tp(0), 9));
        assert!(progress.reached(&tp(0), 10));
        assert!(!progress.reached(&tp(0), 11)); // already finished
        assert!(progress.is_complete());
    }

    #[test]
    fn unknown_partitions_are_ignored() {
        let mut progress = ReplayProgress::new([(tp(0), 0, 1)]);
        assert!(!progress.wants(&tp(7), 0));
        assert!(!progress.processed(&tp(7), 0));
        assert!(!progress.is_complete());
    }
}
