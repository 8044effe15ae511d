//! The task of one assigned partition: messages strictly in order, one at a time.
//!
//! For each message: decode, call the handler, and on a permanent failure dead-letter it. A
//! transient failure at any step waits (capped exponential backoff) and tries the same step
//! again; the message is marked done only when its effect or its dead letter is durable. The
//! stop signal is honoured between messages and during backoff waits, never in the middle of
//! a handler call, so a revoke or shutdown lets the in-flight attempt finish.

use std::sync::Arc;
use std::time::Instant;

use rdkafka::message::OwnedMessage;
use rdkafka::Message;
use taskflow_schemas::Event;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::context::{PartitionQueue, Shared};
use super::dlq::{DlqProducer, Failure, FailureKind};
use super::metrics::Outcome;
use super::offsets::{Epoch, TopicPartition};
use super::{DecodeError, Decoded, Decoder, Handler, HandlerError};
use taskflow_infra::backoff::Backoff;

/// The result of one step that may be retried.
enum Step<T> {
    Value(T),
    Failed(Failure),
    /// Asked to stop while waiting to retry; the message stays unfinished.
    Stopped,
}

pub(crate) struct PartitionWorker<H, D> {
    pub(crate) tp: TopicPartition,
    pub(crate) epoch: Epoch,
    pub(crate) handler: Arc<H>,
    pub(crate) decoder: Arc<D>,
    pub(crate) dlq: DlqProducer,
    pub(crate) shared: Arc<Shared>,
    pub(crate) backoff: Backoff,
    pub(crate) stop: CancellationToken,
}

impl<H: Handler, D: Decoder> PartitionWorker<H, D> {
    pub(crate) async fn run(self, queue: PartitionQueue) {
        let span =
            tracing::info_span!("partition", topic = %self.tp.topic, partition = self.tp.partition);
        async move {
            tracing::debug!(epoch = self.epoch, "partition task started");
            loop {
                let next = tokio::select! {
                    biased;
                    _ = self.stop.cancelled() => break,
                    msg = queue.recv() => msg.map(|m| m.detach()),
                };
                match next {
                    Ok(msg) => {
                        if !self.process(msg).await {
                            break;
                        }
                    }
                    // Fetch errors are reported here; librdkafka keeps retrying the fetch.
                    Err(error) => tracing::warn!(%error, "partition queue error"),
                }
            }
            tracing::debug!("partition task stopped");
        }
        .instrument(span)
        .await;
    }

    /// Processes one message; false when stopped before it was finished.
    async fn process(&self, msg: OwnedMessage) -> bool {
        // Processing attempts of this message: 1 + the transient retries so far.
        let mut attempts = 1u32;
        let failure = match self.decode(&msg, &mut attempts).await {
            Step::Stopped => return false,
            Step::Failed(failure) => Some(failure),
            Step::Value(event) => {
                let decoded = Decoded::from_message(event, &msg);
                match self.handle(&decoded, &mut attempts).await {
                    Step::Stopped => return false,
                    Step::Failed(failure) => Some(failure),
                    Step::Value(()) => None,
                }
            }
        };
        match failure {
            None => self.shared.metrics.message(&self.tp.topic, Outcome::Ok),
            Some(failure) => {
                tracing::warn!(
                    offset = msg.offset(),
                    kind = failure.kind.as_str(),
                    reason = %failure.reason,
                    dlq = self.dlq.topic(),
                    "dead-lettering message"
                );
                if !self.dead_letter(&msg, &failure, attempts).await {
                    return false;
                }
                self.shared.metrics.message(&self.tp.topic, Outcome::Dlq);
            }
        }
        self.shared
            .mark_done(&self.tp, self.epoch, msg.offset() + 1);
        true
    }

    async fn decode(&self, msg: &OwnedMessage, attempts: &mut u32) -> Step<Event> {
        let Some(bytes) = msg.payload() else {
            return Step::Failed(Failure {
                kind: FailureKind::Decode,
                reason: "message has no value".to_owned(),
            });
        };
        let mut retry = 0;
        loop {
            match self.decoder.decode(bytes).await {
                Ok(event) => return Step::Value(event),
                Err(DecodeError::Invalid(reason)) => {
                    return Step::Failed(Failure {
                        kind: FailureKind::Decode,
                        reason,
                    })
                }
                Err(DecodeError::Transient(reason)) => {
                    retry += 1;
                    *attempts += 1;
                    self.shared.metrics.message(&self.tp.topic, Outcome::Retry);
                    tracing::warn!(offset = msg.offset(), retry, %reason, "transient decode failure; retrying");
                    if !self.wait(retry).await {
                        return Step::Stopped;
                    }
                }
            }
        }
    }

    async fn handle(&self, decoded: &Decoded, attempts: &mut u32) -> Step<()> {
        let mut retry = 0;
        loop {
            let started = Instant::now();
            let result = self.handler.handle(decoded).await;
            self.shared
                .metrics
                .handler_duration(&self.tp.topic, started.elapsed().as_secs_f64());
            match result {
                Ok(()) => return Step::Value(()),
                Err(HandlerError::Permanent(reason)) => {
                    return Step::Failed(Failure {
                        kind: FailureKind::Handler,
                        reason,
                    })
                }
                Err(HandlerError::Transient(reason)) => {
                    retry += 1;
                    *attempts += 1;
                    self.shared.metrics.message(&self.tp.topic, Outcome::Retry);
                    tracing::warn!(offset = decoded.offset, retry, %reason, "transient handler failure; retrying");
                    if !self.wait(retry).await {
                        return Step::Stopped;
                    }
                }
            }
        }
    }

    /// Produces the dead letter, retrying until the broker acknowledges it; false if stopped.
    async fn dead_letter(&self, msg: &OwnedMessage, failure: &Failure, attempts: u32) -> bool {
        let mut retry = 0;
        loop {
            match self.dlq.send(msg, failure, attempts).await {
                Ok(()) => return true,
                Err(error) => {
                    retry += 1;
                    self.shared.metrics.message(&self.tp.topic, Outcome::Retry);
                    tracing::warn!(offset = msg.offset(), retry, %error, "dead letter not delivered; retrying");
                    if !self.wait(retry).await {
                        return false;
                    }
                }
            }
        }
    }

    /// Backoff wait before retry number `retry`; false if asked to stop meanwhile.
    async fn wait(&self, retry: u32) -> bool {
        tokio::select! {
            biased;
            _ = self.stop.cancelled() => false,
            _ = tokio::time::sleep(self.backoff.next_delay(retry)) => true,
        }
    }
}
