//! Rebalance callbacks and the state they share with the driver and the partition tasks.
//!
//! librdkafka calls `pre_rebalance` on the thread polling the consumer (our driver thread)
//! *before* it applies the new assignment:
//!
//! * Assign: each new partition gets fresh book state and its own queue
//!   (`split_partition_queue`) and task. Splitting before the assignment is applied means no
//!   message of that partition can land on the main queue first.
//! * Revoke: the partitions' tasks are told to stop after their in-flight message; we wait
//!   for them (bounded), commit their done offsets synchronously, and only then return and let
//!   librdkafka hand the partitions over.
//!
//! Nothing here may panic (it would unwind through librdkafka's C frames): locks recover from
//! poisoning and every failure is logged instead.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant};

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::stream_consumer::StreamPartitionQueue;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::metrics::ConsumerMetrics;
use super::offsets::{lag, Epoch, OffsetBook, TopicPartition};
use super::RuntimeError;

pub(crate) type TaskflowConsumer = StreamConsumer<Ctx>;
pub(crate) type PartitionQueue = StreamPartitionQueue<Ctx>;

/// What the context hands to the spawner for a newly assigned partition.
pub(crate) struct PartitionJob {
    pub(crate) tp: TopicPartition,
    pub(crate) epoch: Epoch,
    pub(crate) queue: PartitionQueue,
    pub(crate) stop: CancellationToken,
}

/// Starts the task of one partition on the async runtime.
pub(crate) type Spawner = Box<dyn Fn(PartitionJob) -> JoinHandle<()> + Send + Sync>;

struct RunningPartition {
    stop: CancellationToken,
    join: JoinHandle<()>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not turn every later rebalance into a panic.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// State shared by the driver, the rebalance callbacks and the partition tasks.
pub(crate) struct Shared {
    book: Mutex<OffsetBook>,
    running: Mutex<HashMap<TopicPartition, RunningPartition>>,
    pub(crate) metrics: ConsumerMetrics,
    /// Woken when enough messages are done to commit before the next tick.
    pub(crate) commit_now: Notify,
    commit_every: u64,
    drain_timeout: Duration,
    is_running: AtomicBool,
    /// Set while a lag refresh runs on the blocking pool (at most one at a time).
    pub(crate) lag_refresh_running: AtomicBool,
    /// Cancelled when a partition task fails fatally (a panic); the driver then stops the
    /// worker with the error kept in `failure`.
    pub(crate) failed: CancellationToken,
    failure: Mutex<Option<RuntimeError>>,
}

impl Shared {
    pub(crate) fn new(
        metrics: ConsumerMetrics,
        commit_every: u64,
        drain_timeout: Duration,
    ) -> Self {
        Self {
            book: Mutex::new(OffsetBook::new()),
            running: Mutex::new(HashMap::new()),
            metrics,
            commit_now: Notify::new(),
            commit_every,
            drain_timeout,
            is_running: AtomicBool::new(false),
            lag_refresh_running: AtomicBool::new(false),
            failed: CancellationToken::new(),
            failure: Mutex::new(None),
        }
    }

    /// A partition task panicked while processing `offset` (or outside any message): count
    /// it, log it, and stop the whole worker with that error. The message was not marked done,
    /// so neither it nor anything after it in its partition is committed.
    pub(crate) fn partition_panicked(
        &self,
        tp: &TopicPartition,
        offset: Option<i64>,
        message: String,
    ) {
        self.metrics.panic(&tp.topic);
        tracing::error!(%tp, ?offset, panic = %message, "partition task panicked; stopping the worker without committing that message");
        self.fail(RuntimeError::PartitionPanicked {
            topic: tp.topic.clone(),
            partition: tp.partition,
            offset,
            message,
        });
    }

    /// Records the first fatal error and wakes the driver.
    pub(crate) fn fail(&self, error: RuntimeError) {
        lock(&self.failure).get_or_insert(error);
        self.failed.cancel();
    }

    pub(crate) fn take_failure(&self) -> Option<RuntimeError> {
        lock(&self.failure).take()
    }

    pub(crate) fn book(&self) -> MutexGuard<'_, OffsetBook> {
        lock(&self.book)
    }

    pub(crate) fn is_running(&self) -> bool {
        self.is_running.load(Ordering::Acquire)
    }

    pub(crate) fn set_running(&self, running: bool) {
        self.is_running.store(running, Ordering::Release);
    }

    /// Called by a partition task once a message's effect (or dead letter) is durable.
    pub(crate) fn mark_done(&self, tp: &TopicPartition, epoch: Epoch, next_offset: i64) {
        let due = {
            let mut book = self.book();
            if !book.mark_done(tp, epoch, next_offset) {
                tracing::debug!(%tp, epoch, "progress of a revoked assignment ignored");
                return;
            }
            book.done_since_offer() >= self.commit_every
        };
        if due {
            self.commit_now.notify_one();
        }
    }

    /// Stops the tasks of `only` (all when `None`): signal, wait up to the drain timeout for
    /// their in-flight message, abort stragglers. Blocks the calling thread; called on the
    /// driver thread only (from the rebalance callback or at shutdown).
    pub(crate) fn stop_partitions(&self, only: Option<&[TopicPartition]>) {
        let taken: Vec<(TopicPartition, RunningPartition)> = {
            let mut running = lock(&self.running);
            let keys: Vec<TopicPartition> = running
                .keys()
                .filter(|tp| only.is_none_or(|set| set.contains(tp)))
                .cloned()
                .collect();
            keys.into_iter()
                .filter_map(|tp| running.remove(&tp).map(|r| (tp, r)))
                .collect()
        };
        if taken.is_empty() {
            return;
        }
        for (_, r) in &taken {
            r.stop.cancel();
        }
        let all_finished = || taken.iter().all(|(_, r)| r.join.is_finished());
        wait_until(Instant::now() + self.drain_timeout, all_finished);
        for (tp, r) in &taken {
            if !r.join.is_finished() {
                // Its message stays uncommitted; the next owner reads it again.
                tracing::warn!(%tp, timeout = ?self.drain_timeout, "partition did not drain in time; abandoning its in-flight message");
                r.join.abort();
            }
        }
        // An aborted task drops its queue handle asynchronously; give it a moment so that the
        // handle is gone before the same partition's queue can be split again.
        wait_until(Instant::now() + Duration::from_secs(1), all_finished);
    }

    /// Commits the done offsets of `only` (all when `None`) synchronously.
    pub(crate) fn commit_sync<C: Consumer<Ctx>>(
        &self,
        consumer: &C,
        only: Option<&[TopicPartition]>,
    ) {
        let offsets = self.book().to_commit(only);
        if offsets.is_empty() {
            return;
        }
        let tpl = match offsets_tpl(&offsets) {
            Ok(tpl) => tpl,
            Err(error) => {
                tracing::error!(%error, "building the commit list failed");
                return;
            }
        };
        match consumer.commit(&tpl, CommitMode::Sync) {
            Ok(()) => {
                self.metrics.commit("sync", true);
                let mut book = self.book();
                for (tp, offset) in &offsets {
                    book.confirm_committed(tp, *offset);
                }
                tracing::debug!(?offsets, "committed synchronously");
            }
            Err(error) => {
                // Not fatal: the uncommitted messages are re-read by the next owner.
                self.metrics.commit("sync", false);
                tracing::warn!(%error, ?offsets, "synchronous commit failed");
            }
        }
    }

    /// Hands the done offsets to librdkafka for an asynchronous commit. rust-rdkafka 0.39
    /// delivers no result event for manual async commits, so `refresh_lag` reads the group's
    /// committed offsets back, which confirms them (and re-requests any that got lost).
    pub(crate) fn commit_async(&self, consumer: &TaskflowConsumer) {
        let offsets = {
            let mut book = self.book();
            let offsets = book.to_request();
            book.mark_requested(&offsets);
            book.offered();
            offsets
        };
        if offsets.is_empty() {
            return;
        }
        let result = offsets_tpl(&offsets).and_then(|tpl| consumer.commit(&tpl, CommitMode::Async));
        self.metrics.commit("async", result.is_ok());
        tracing::debug!(
            ?offsets,
            ok = result.is_ok(),
            "asynchronous commit requested"
        );
        if let Err(error) = result {
            tracing::warn!(%error, "asynchronous commit could not be queued; retried on the next tick");
        }
    }

    /// Reads the group's committed offsets back (confirming async commits, see
    /// `commit_async`) and refreshes the lag gauges: high watermark minus committed offset.
    /// Blocking broker calls: run on the blocking pool (see the driver).
    pub(crate) fn refresh_lag(&self, consumer: &TaskflowConsumer) {
        let timeout = Duration::from_secs(1);
        let assigned = self.book().assigned();
        if assigned.is_empty() {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for tp in &assigned {
            tpl.add_partition(&tp.topic, tp.partition);
        }
        match consumer.committed_offsets(tpl, timeout) {
            Ok(committed) => {
                let mut book = self.book();
                for e in committed.elements() {
                    if let Offset::Offset(o) = e.offset() {
                        book.confirm_from_broker(&TopicPartition::new(e.topic(), e.partition()), o);
                    }
                }
            }
            Err(error) => {
                tracing::debug!(%error, "reading committed offsets failed");
                return;
            }
        }
        for tp in assigned {
            match consumer.fetch_watermarks(&tp.topic, tp.partition, timeout) {
                Ok((low, high)) => {
                    let committed = self.book().committed(&tp);
                    self.metrics
                        .set_lag(&tp.topic, tp.partition, lag(high, low, committed));
                }
                Err(error) => {
                    // The broker is likely unreachable; do not stall the loop partition by
                    // partition.
                    tracing::debug!(%error, %tp, "fetching watermarks failed");
                    break;
                }
            }
        }
    }
}

fn wait_until(deadline: Instant, done: impl Fn() -> bool) {
    while !done() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
}

pub(crate) fn offsets_tpl(offsets: &[(TopicPartition, i64)]) -> KafkaResult<TopicPartitionList> {
    let mut tpl = TopicPartitionList::with_capacity(offsets.len());
    for (tp, offset) in offsets {
        tpl.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(*offset))?;
    }
    Ok(tpl)
}

fn partitions_of(tpl: &TopicPartitionList) -> Vec<TopicPartition> {
    tpl.elements()
        .iter()
        .map(|e| TopicPartition::new(e.topic(), e.partition()))
        .collect()
}

/// The consumer context: routes librdkafka logs to `tracing` and implements the rebalance
/// protocol described in the module docs.
pub(crate) struct Ctx {
    shared: Arc<Shared>,
    /// Set right after the consumer is created; weak because the consumer owns this context.
    consumer: OnceLock<Weak<TaskflowConsumer>>,
    spawner: Spawner,
}

impl Ctx {
    pub(crate) fn new(shared: Arc<Shared>, spawner: Spawner) -> Self {
        Self {
            shared,
            consumer: OnceLock::new(),
            spawner,
        }
    }

    pub(crate) fn set_consumer(&self, consumer: &Arc<TaskflowConsumer>) {
        if self.consumer.set(Arc::downgrade(consumer)).is_err() {
            tracing::error!("consumer context bound twice");
        }
    }

    fn on_assign(&self, tpl: &TopicPartitionList) {
        let tps = partitions_of(tpl);
        tracing::info!(partitions = ?tps, "partitions assigned");
        let Some(consumer) = self.consumer.get().and_then(Weak::upgrade) else {
            tracing::error!("partitions assigned while the consumer is going away; ignoring");
            return;
        };
        // A task left from an earlier assignment of the same partition must be gone before its
        // queue is split again: dropping an old queue handle would disable the new one's
        // wake-ups.
        self.shared.stop_partitions(Some(&tps));
        for tp in tps {
            let epoch = self.shared.book().assign(tp.clone());
            let Some(queue) = consumer.split_partition_queue(&tp.topic, tp.partition) else {
                // Its messages would arrive on the main queue; the driver refuses them.
                tracing::error!(%tp, "could not split the partition queue");
                self.shared.book().revoke(&tp);
                continue;
            };
            let stop = CancellationToken::new();
            let join = (self.spawner)(PartitionJob {
                tp: tp.clone(),
                epoch,
                queue,
                stop: stop.clone(),
            });
            lock(&self.shared.running).insert(tp, RunningPartition { stop, join });
        }
    }

    fn on_revoke(&self, consumer: &BaseConsumer<Self>, tpl: &TopicPartitionList) {
        let tps = partitions_of(tpl);
        tracing::info!(partitions = ?tps, "partitions revoked; draining");
        self.shared.stop_partitions(Some(&tps));
        if consumer.assignment_lost() {
            // The group already gave these partitions away (session timeout): a commit would
            // be rejected, and the new owner re-reads from the last commit.
            tracing::warn!(partitions = ?tps, "assignment lost; not committing");
        } else {
            self.shared.commit_sync(consumer, Some(&tps));
        }
        let mut book = self.shared.book();
        for tp in &tps {
            book.revoke(tp);
            self.shared
                .metrics
                .forget_partition(&tp.topic, tp.partition);
        }
    }
}

impl ClientContext for Ctx {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => tracing::error!(target: "librdkafka", fac, "{log_message}"),
            RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", fac, "{log_message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", fac, "{log_message}")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", fac, "{log_message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(target: "librdkafka", %error, reason, "kafka client error");
    }
}

impl ConsumerContext for Ctx {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                self.shared.metrics.rebalance("assign");
                self.on_assign(tpl);
            }
            Rebalance::Revoke(tpl) => {
                self.shared.metrics.rebalance("revoke");
                self.on_revoke(consumer, tpl);
            }
            Rebalance::Error(error) => {
                self.shared.metrics.rebalance("error");
                tracing::warn!(%error, "rebalance error");
            }
        }
    }

    /// rust-rdkafka 0.39 calls this for librdkafka's automatic commits only (off here), not for
    /// manual ones; kept so confirmations are used should a later version deliver them. The
    /// confirmation that counts comes from `Shared::refresh_lag` and synchronous commits.
    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        tracing::debug!(?result, ?offsets, "commit result");
        match result {
            Ok(()) => {
                let mut book = self.shared.book();
                for e in offsets.elements() {
                    if let (Ok(()), Offset::Offset(o)) = (e.error(), e.offset()) {
                        book.confirm_committed(&TopicPartition::new(e.topic(), e.partition()), o);
                    }
                }
            }
            // Nothing was pending: not an error.
            Err(KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)) => {}
            Err(error) => tracing::warn!(%error, "commit failed; retried on the next tick"),
        }
    }
}
