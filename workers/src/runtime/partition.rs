//! The task of one assigned partition: messages strictly in order, one at a time.
//!
//! For each message: decode, call the handler, and on a permanent failure dead-letter it. A
//! transient failure at any step waits (capped exponential backoff) and tries the same step
//! again; the message is marked done only when its effect or its dead letter is durable. The
//! stop signal is honoured between messages and during backoff waits, never in the middle of
//! a handler call, so a revoke or shutdown lets the in-flight attempt finish.
//!
//! A panic while processing a message is caught here, reported to the driver (which stops the
//! worker with an error) and ends the task; the message is not marked done. The wait on the
//! partition queue is bounded, so a lost wake-up (rust-rdkafka #665) costs at most
//! `queue_poll_timeout`.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
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

/// Time bounds of a partition task.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PartitionLimits {
    pub(crate) queue_poll_timeout: Duration,
    pub(crate) unknown_schema_retry: Duration,
}

/// What to do after a failed decode attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DecodeDecision {
    /// Wait (backoff) and decode again; the label is the metric reason.
    Retry(&'static str),
    /// Dead-letter the message.
    DeadLetter,
}

/// The retry policy for decode failures. `failing_for`: how long this message's decode has
/// been failing with an unknown schema id (since its first such failure).
pub(crate) fn decode_decision(
    error: &DecodeError,
    failing_for: Duration,
    unknown_schema_retry: Duration,
) -> DecodeDecision {
    match error {
        // The registry's state, not the message, is at fault: never dead-letter.
        DecodeError::Transient(_) | DecodeError::Unauthorized(_) => {
            DecodeDecision::Retry(error.retry_reason())
        }
        DecodeError::UnknownSchema(_) if failing_for < unknown_schema_retry => {
            DecodeDecision::Retry(error.retry_reason())
        }
        DecodeError::UnknownSchema(_) | DecodeError::Invalid(_) => DecodeDecision::DeadLetter,
    }
}

/// The text of a panic payload (`panic!` with a literal or a formatted message).
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

pub(crate) struct PartitionWorker<H, D> {
    pub(crate) tp: TopicPartition,
    pub(crate) epoch: Epoch,
    pub(crate) handler: Arc<H>,
    pub(crate) decoder: Arc<D>,
    pub(crate) dlq: DlqProducer,
    pub(crate) shared: Arc<Shared>,
    pub(crate) backoff: Backoff,
    pub(crate) limits: PartitionLimits,
    pub(crate) stop: CancellationToken,
}

impl<H: Handler, D: Decoder> PartitionWorker<H, D> {
    pub(crate) async fn run(self, queue: PartitionQueue) {
        let span =
            tracing::info_span!("partition", topic = %self.tp.topic, partition = self.tp.partition);
        async move {
            tracing::debug!(epoch = self.epoch, "partition task started");
            loop {
                // `recv` is cancellation safe: a timeout drops no message, and the next `recv`
                // polls the queue before waiting, so a lost wake-up costs at most this bound.
                let next = tokio::select! {
                    biased;
                    _ = self.stop.cancelled() => break,
                    msg = tokio::time::timeout(self.limits.queue_poll_timeout, queue.recv()) => msg,
                };
                match next {
                    Err(_elapsed) => continue,
                    Ok(Ok(msg)) => {
                        let msg = msg.detach();
                        let offset = msg.offset();
                        // The handler and decoder are shared with the other partitions' tasks:
                        // after a panic the worker stops at once, the others only finish their
                        // in-flight message, and the process exits, so state a panic may have
                        // left half-updated is not relied on for long.
                        match AssertUnwindSafe(self.process(msg)).catch_unwind().await {
                            Ok(true) => {}
                            Ok(false) => break,
                            Err(payload) => {
                                self.shared.partition_panicked(
                                    &self.tp,
                                    Some(offset),
                                    panic_message(payload.as_ref()),
                                );
                                break;
                            }
                        }
                    }
                    // Fetch errors are reported here; librdkafka keeps retrying the fetch.
                    Ok(Err(error)) => tracing::warn!(%error, "partition queue error"),
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
        // When this message's schema id was first reported unknown.
        let mut unknown_since: Option<Instant> = None;
        loop {
            let error = match self.decoder.decode(bytes).await {
                Ok(event) => return Step::Value(event),
                Err(error) => error,
            };
            let failing_for = match &error {
                DecodeError::UnknownSchema(_) => {
                    unknown_since.get_or_insert_with(Instant::now).elapsed()
                }
                _ => Duration::ZERO,
            };
            match decode_decision(&error, failing_for, self.limits.unknown_schema_retry) {
                DecodeDecision::DeadLetter => {
                    return Step::Failed(Failure {
                        kind: FailureKind::Decode,
                        reason: error.to_string(),
                    })
                }
                DecodeDecision::Retry(reason_label) => {
                    retry += 1;
                    *attempts += 1;
                    self.shared.metrics.message(&self.tp.topic, Outcome::Retry);
                    self.shared
                        .metrics
                        .decode_retry(&self.tp.topic, reason_label);
                    tracing::warn!(offset = msg.offset(), retry, reason = reason_label, %error, "decode failure; retrying");
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

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_secs(60);

    #[test]
    fn registry_outages_and_refused_credentials_are_retried_forever() {
        let forever = Duration::from_secs(86_400);
        assert_eq!(
            decode_decision(&DecodeError::Transient("503".into()), forever, WINDOW),
            DecodeDecision::Retry("registry_unavailable")
        );
        assert_eq!(
            decode_decision(&DecodeError::Unauthorized("401".into()), forever, WINDOW),
            DecodeDecision::Retry("registry_unauthorized")
        );
    }

    #[test]
    fn unknown_schema_is_retried_for_the_window_then_dead_lettered() {
        let e = DecodeError::UnknownSchema("schema id 9".into());
        assert_eq!(
            decode_decision(&e, Duration::ZERO, WINDOW),
            DecodeDecision::Retry("unknown_schema")
        );
        assert_eq!(
            decode_decision(&e, WINDOW - Duration::from_millis(1), WINDOW),
            DecodeDecision::Retry("unknown_schema")
        );
        assert_eq!(
            decode_decision(&e, WINDOW, WINDOW),
            DecodeDecision::DeadLetter
        );
        // A zero window dead-letters at once (the old behaviour).
        assert_eq!(
            decode_decision(&e, Duration::ZERO, Duration::ZERO),
            DecodeDecision::DeadLetter
        );
    }

    #[test]
    fn bad_bytes_are_dead_lettered_at_once() {
        assert_eq!(
            decode_decision(
                &DecodeError::Invalid("magic".into()),
                Duration::ZERO,
                WINDOW
            ),
            DecodeDecision::DeadLetter
        );
    }

    #[test]
    fn panic_payloads_become_messages() {
        let literal = std::panic::catch_unwind(|| panic!("boom")).expect_err("panicked");
        assert_eq!(panic_message(literal.as_ref()), "boom");
        let formatted =
            std::panic::catch_unwind(|| panic!("bad offset {}", 7)).expect_err("panicked");
        assert_eq!(panic_message(formatted.as_ref()), "bad offset 7");
        let other = std::panic::catch_unwind(|| std::panic::panic_any(42u8)).expect_err("panicked");
        assert_eq!(panic_message(other.as_ref()), "non-string panic payload");
    }
}
