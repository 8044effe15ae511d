//! Dead-letter queue: `taskflow.dlq.<group>` receives the original key and value bytes
//! untouched, the original headers, and headers naming the failure and the source position.
//!
//! A dead letter counts as the message's effect: the source offset is marked done only after
//! the broker acknowledged the DLQ record (idempotent producer, `acks=all`). A failed DLQ
//! delivery is a transient failure and is retried, so a bad message is never silently
//! skipped.

use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::{ClientConfig, Message};

pub const HEADER_ERROR: &str = "error";
pub const HEADER_ERROR_KIND: &str = "error.kind";
pub const HEADER_SOURCE_TOPIC: &str = "source.topic";
pub const HEADER_SOURCE_PARTITION: &str = "source.partition";
pub const HEADER_SOURCE_OFFSET: &str = "source.offset";
pub const HEADER_ATTEMPTS: &str = "attempts";

/// Why a message is dead-lettered; the value of the `error.kind` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Bad framing, unknown schema id, bytes that do not decode, or no value at all.
    Decode,
    /// The handler refused the event (`HandlerError::Permanent`).
    Handler,
}

impl FailureKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            FailureKind::Decode => "decode",
            FailureKind::Handler => "handler",
        }
    }
}

/// A permanent failure of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: FailureKind,
    pub reason: String,
}

/// Where the failed message came from and how often it was attempted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Source<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub attempts: u32,
}

/// The DLQ record's headers: the original ones first, in order, then the failure headers.
pub fn dlq_headers(
    original: &[(String, Option<Vec<u8>>)],
    failure: &Failure,
    source: Source<'_>,
) -> Vec<(String, Option<Vec<u8>>)> {
    let mut out = original.to_vec();
    let mut push = |key: &str, value: String| out.push((key.to_owned(), Some(value.into_bytes())));
    push(HEADER_ERROR, failure.reason.clone());
    push(HEADER_ERROR_KIND, failure.kind.as_str().to_owned());
    push(HEADER_SOURCE_TOPIC, source.topic.to_owned());
    push(HEADER_SOURCE_PARTITION, source.partition.to_string());
    push(HEADER_SOURCE_OFFSET, source.offset.to_string());
    push(HEADER_ATTEMPTS, source.attempts.to_string());
    out
}

/// The headers of a consumed message as owned pairs.
pub fn message_headers(msg: &OwnedMessage) -> Vec<(String, Option<Vec<u8>>)> {
    msg.headers()
        .map(|h| {
            h.iter()
                .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                .collect()
        })
        .unwrap_or_default()
}

fn owned_headers(pairs: &[(String, Option<Vec<u8>>)]) -> OwnedHeaders {
    pairs
        .iter()
        .fold(OwnedHeaders::new_with_capacity(pairs.len()), |h, (k, v)| {
            h.insert(Header {
                key: k,
                value: v.as_deref(),
            })
        })
}

/// The producer writing dead letters of one consumer group.
#[derive(Clone)]
pub struct DlqProducer {
    producer: FutureProducer,
    topic: String,
}

impl DlqProducer {
    /// `base` carries the bootstrap servers, client id and security settings.
    pub fn new(base: &ClientConfig, topic: String, timeout: Duration) -> Result<Self, KafkaError> {
        let producer = base
            .clone()
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", timeout.as_millis().to_string())
            .create()?;
        Ok(Self { producer, topic })
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Produces the dead letter and waits for the broker's acknowledgement.
    pub async fn send(
        &self,
        msg: &OwnedMessage,
        failure: &Failure,
        attempts: u32,
    ) -> Result<(), KafkaError> {
        let headers = dlq_headers(
            &message_headers(msg),
            failure,
            Source {
                topic: msg.topic(),
                partition: msg.partition(),
                offset: msg.offset(),
                attempts,
            },
        );
        let mut record: FutureRecord<'_, [u8], [u8]> =
            FutureRecord::to(&self.topic).headers(owned_headers(&headers));
        if let Some(key) = msg.key() {
            record = record.key(key);
        }
        if let Some(payload) = msg.payload() {
            record = record.payload(payload);
        }
        // The queue timeout only bounds waiting for room in the local queue; delivery itself
        // is bounded by `message.timeout.ms`.
        self.producer
            .send(record, Timeout::After(Duration::from_secs(5)))
            .await
            .map(|_| ())
            .map_err(|(e, _)| e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::Timestamp;

    #[test]
    fn headers_keep_originals_and_name_the_failure() {
        let original = vec![
            ("event_type".to_owned(), Some(b"TaskCreated".to_vec())),
            ("empty".to_owned(), None),
        ];
        let failure = Failure {
            kind: FailureKind::Decode,
            reason: "unknown schema id 42".to_owned(),
        };
        let h = dlq_headers(
            &original,
            &failure,
            Source {
                topic: "taskflow.task-events",
                partition: 3,
                offset: 17,
                attempts: 1,
            },
        );
        let get = |k: &str| {
            h.iter()
                .find(|(key, _)| key == k)
                .and_then(|(_, v)| v.clone())
                .map(|v| String::from_utf8(v).unwrap())
        };
        assert_eq!(&h[..2], &original[..]);
        assert_eq!(get(HEADER_ERROR).as_deref(), Some("unknown schema id 42"));
        assert_eq!(get(HEADER_ERROR_KIND).as_deref(), Some("decode"));
        assert_eq!(
            get(HEADER_SOURCE_TOPIC).as_deref(),
            Some("taskflow.task-events")
        );
        assert_eq!(get(HEADER_SOURCE_PARTITION).as_deref(), Some("3"));
        assert_eq!(get(HEADER_SOURCE_OFFSET).as_deref(), Some("17"));
        assert_eq!(get(HEADER_ATTEMPTS).as_deref(), Some("1"));
        assert_eq!(h.len(), 8);
    }

    #[test]
    fn message_headers_round_trip_through_owned_headers() {
        let pairs = vec![
            ("a".to_owned(), Some(b"1".to_vec())),
            ("b".to_owned(), None),
        ];
        let msg = OwnedMessage::new(
            Some(b"v".to_vec()),
            Some(b"k".to_vec()),
            "t".to_owned(),
            Timestamp::NotAvailable,
            0,
            5,
            Some(owned_headers(&pairs)),
        );
        assert_eq!(message_headers(&msg), pairs);
    }
}
