//! `dlq list|show|replay`: the dead letters of a consumer group (`taskflow.dlq.<group>`).
//!
//! A dead letter is the original record (key, value, headers) plus the failure headers the
//! runtime appends (`crate::runtime::dlq`). Replay produces the original key, value and
//! headers, without the failure headers, back to `source.topic`, with an idempotent
//! producer (`acks=all`), and waits for the broker's acknowledgement. The key decides the
//! partition with librdkafka's default partitioner, as for the relay's records, so the
//! event lands beside the rest of its task.
//!
//! Once only: each replayed record is recorded in PostgreSQL (`dlq_replays`, keyed by DLQ
//! topic, partition and offset). The row is inserted and the record produced inside one
//! transaction that commits after the acknowledgement, so a second run skips it, and a
//! concurrent run waits on the row's key and then skips it. A commit that fails after the
//! acknowledgement leaves no row: that record is sent again by the next run, which the
//! consumers absorb (their effects are idempotent by `event_id`). A consumer-group offset
//! on the DLQ topic was not used: it records a prefix, and operators replay single offsets
//! out of order.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::{Message, Offset, TopicPartitionList};
use serde::Serialize;
use sqlx::PgPool;

use super::table::{opt, Table};
use super::{AdminError, Broker, Human};
use crate::runtime::dlq::{
    message_headers, HEADER_ATTEMPTS, HEADER_ERROR, HEADER_ERROR_KIND, HEADER_SOURCE_OFFSET,
    HEADER_SOURCE_PARTITION, HEADER_SOURCE_TOPIC,
};

/// The headers the runtime appends to a dead letter, in the order it appends them.
pub const FAILURE_HEADERS: [&str; 6] = [
    HEADER_ERROR,
    HEADER_ERROR_KIND,
    HEADER_SOURCE_TOPIC,
    HEADER_SOURCE_PARTITION,
    HEADER_SOURCE_OFFSET,
    HEADER_ATTEMPTS,
];

/// How long reading a range of the DLQ topic may take.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Delivery bound of one replayed record.
const DELIVERY_TIMEOUT_MS: &str = "30000";

pub type RawHeaders = Vec<(String, Option<Vec<u8>>)>;

/// Splits a dead letter's headers into the original ones and the failure headers. The
/// runtime appends the failure headers last, in [`FAILURE_HEADERS`] order: when the tail
/// matches, exactly that tail is removed (an original header may share a name). Otherwise
/// (a dead letter written by other code) every header with a failure name is removed.
pub fn split_headers(all: &[(String, Option<Vec<u8>>)]) -> (RawHeaders, HashMap<String, String>) {
    let n = FAILURE_HEADERS.len();
    let tail_matches = all.len() >= n
        && all[all.len() - n..]
            .iter()
            .zip(FAILURE_HEADERS)
            .all(|((k, _), want)| k == want);
    let text = |v: &Option<Vec<u8>>| {
        String::from_utf8_lossy(v.as_deref().unwrap_or_default()).into_owned()
    };
    if tail_matches {
        let (original, failure) = all.split_at(all.len() - n);
        let failure = failure.iter().map(|(k, v)| (k.clone(), text(v))).collect();
        return (original.to_vec(), failure);
    }
    let mut failure = HashMap::new();
    let mut original = Vec::with_capacity(all.len());
    for (k, v) in all {
        if FAILURE_HEADERS.contains(&k.as_str()) {
            failure.insert(k.clone(), text(v));
        } else {
            original.push((k.clone(), v.clone()));
        }
    }
    (original, failure)
}

/// `OFFSET` (partition 0, a DLQ topic has one) or `PARTITION:OFFSET`.
pub fn parse_position(s: &str) -> Result<(i32, i64), AdminError> {
    let invalid = || {
        AdminError::Invalid(format!(
            "{s:?} is not a DLQ position: expected OFFSET or PARTITION:OFFSET"
        ))
    };
    let (p, o) = match s.split_once(':') {
        Some((p, o)) => (p.trim().parse().map_err(|_| invalid())?, o),
        None => (0, s),
    };
    let o: i64 = o.trim().parse().map_err(|_| invalid())?;
    if p < 0 || o < 0 {
        return Err(invalid());
    }
    Ok((p, o))
}

/// A header as shown: values as text (lossy), for people and JSON alike.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HeaderView {
    pub key: String,
    pub value: Option<String>,
}

/// One dead letter.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub timestamp: Option<DateTime<Utc>>,
    pub key: Option<String>,
    pub value_bytes: usize,
    /// The Confluent schema id of the value, when it is framed like one.
    pub schema_id: Option<u32>,
    pub error: Option<String>,
    pub error_kind: Option<String>,
    pub source_topic: Option<String>,
    pub source_partition: Option<i32>,
    pub source_offset: Option<i64>,
    pub attempts: Option<u32>,
    /// The original record's headers (the failure headers removed).
    pub headers: Vec<HeaderView>,
    /// When `dlq replay` sent it back; `None`: not replayed (or unknown, see `replay_state`).
    pub replayed_at: Option<DateTime<Utc>>,
    /// `known`, or why the replay record could not be read (the database is unreachable).
    pub replay_state: String,
    #[serde(skip)]
    original_headers: RawHeaders,
    #[serde(skip)]
    raw_key: Option<Vec<u8>>,
    #[serde(skip)]
    raw_value: Option<Vec<u8>>,
}

impl DeadLetter {
    pub fn from_message(msg: &OwnedMessage) -> Self {
        let (original, failure) = split_headers(&message_headers(msg));
        let get = |k: &str| failure.get(k).cloned();
        let value = msg.payload();
        let schema_id = value
            .filter(|v| v.len() >= 5 && v[0] == taskflow_schemas::MAGIC_BYTE)
            .and_then(|v| v.get(1..5))
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_be_bytes);
        Self {
            topic: msg.topic().to_owned(),
            partition: msg.partition(),
            offset: msg.offset(),
            timestamp: msg
                .timestamp()
                .to_millis()
                .and_then(DateTime::<Utc>::from_timestamp_millis),
            key: msg.key().map(|k| String::from_utf8_lossy(k).into_owned()),
            value_bytes: value.map_or(0, <[u8]>::len),
            schema_id,
            error: get(HEADER_ERROR),
            error_kind: get(HEADER_ERROR_KIND),
            source_topic: get(HEADER_SOURCE_TOPIC),
            source_partition: get(HEADER_SOURCE_PARTITION).and_then(|v| v.parse().ok()),
            source_offset: get(HEADER_SOURCE_OFFSET).and_then(|v| v.parse().ok()),
            attempts: get(HEADER_ATTEMPTS).and_then(|v| v.parse().ok()),
            headers: original
                .iter()
                .map(|(k, v)| HeaderView {
                    key: k.clone(),
                    value: v
                        .as_deref()
                        .map(|v| String::from_utf8_lossy(v).into_owned()),
                })
                .collect(),
            replayed_at: None,
            replay_state: "unknown".to_owned(),
            original_headers: original,
            raw_key: msg.key().map(<[u8]>::to_vec),
            raw_value: value.map(<[u8]>::to_vec),
        }
    }

    fn position(&self) -> String {
        format!("{}:{}", self.partition, self.offset)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct DeadLetters {
    pub topic: String,
    pub dead_letters: Vec<DeadLetter>,
}

impl Human for DeadLetters {
    fn human(&self) -> String {
        if self.dead_letters.is_empty() {
            return format!("no dead letters in {}\n", self.topic);
        }
        let mut t = Table::new(&[
            "POSITION",
            "TIMESTAMP",
            "KIND",
            "SOURCE",
            "ATTEMPTS",
            "REPLAYED",
            "KEY",
            "ERROR",
        ]);
        for d in &self.dead_letters {
            let source = match (&d.source_topic, d.source_partition, d.source_offset) {
                (Some(t), Some(p), Some(o)) => format!("{t}/{p}@{o}"),
                (Some(t), _, _) => t.clone(),
                _ => "-".to_owned(),
            };
            t.row(vec![
                d.position(),
                opt(d.timestamp.map(|t| t.to_rfc3339())),
                opt(d.error_kind.as_deref()),
                source,
                opt(d.attempts),
                replayed_cell(d),
                opt(d.key.as_deref()),
                opt(d.error.as_deref()),
            ]);
        }
        t.render()
    }
}

fn replayed_cell(d: &DeadLetter) -> String {
    match (d.replayed_at, d.replay_state.as_str()) {
        (Some(at), _) => at.to_rfc3339(),
        (None, "known") => "no".to_owned(),
        (None, _) => "?".to_owned(),
    }
}

/// `dlq show`: one dead letter in full.
#[derive(Debug, Clone, Serialize)]
pub struct Shown(pub DeadLetter);

impl Human for Shown {
    fn human(&self) -> String {
        let d = &self.0;
        let mut t = Table::new(&["FIELD", "VALUE"]);
        let mut row = |k: &str, v: String| t.row(vec![k.to_owned(), v]);
        row("topic", d.topic.clone());
        row("position", d.position());
        row("timestamp", opt(d.timestamp.map(|t| t.to_rfc3339())));
        row("key", opt(d.key.as_deref()));
        row(
            "value",
            format!("{} bytes, schema id {}", d.value_bytes, opt(d.schema_id)),
        );
        row("error.kind", opt(d.error_kind.as_deref()));
        row("error", opt(d.error.as_deref()));
        row("source.topic", opt(d.source_topic.as_deref()));
        row("source.partition", opt(d.source_partition));
        row("source.offset", opt(d.source_offset));
        row("attempts", opt(d.attempts));
        row("replayed", replayed_cell(d));
        for h in &d.headers {
            row(&format!("header {}", h.key), opt(h.value.as_deref()));
        }
        t.render()
    }
}

/// Reads `[start, end)` of each given partition of `topic`, at most `limit` records, in
/// (partition, offset) order. Assigns partitions directly: no group is joined.
fn read_ranges(
    broker: &Broker,
    topic: &str,
    ranges: &[(i32, i64, i64)],
    limit: usize,
) -> Result<Vec<OwnedMessage>, AdminError> {
    let mut remaining: HashMap<i32, i64> = HashMap::new();
    let mut tpl = TopicPartitionList::new();
    // No partition needs more than `limit` records: the output is cut at `limit` in
    // (partition, offset) order.
    let cap = i64::try_from(limit).unwrap_or(i64::MAX);
    for &(p, start, end) in ranges.iter().filter(|(_, s, e)| s < e) {
        let end = end.min(start.saturating_add(cap));
        tpl.add_partition_offset(topic, p, Offset::Offset(start))
            .map_err(AdminError::kafka("building the assignment"))?;
        remaining.insert(p, end);
    }
    let mut out = Vec::new();
    if remaining.is_empty() || limit == 0 {
        return Ok(out);
    }
    let consumer: BaseConsumer = broker
        .client_config()
        // librdkafka wants a group id for a consumer; assign() never joins it.
        .set("group.id", "taskflow-admin-reader")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .create()
        .map_err(AdminError::kafka("creating the DLQ reader"))?;
    consumer
        .assign(&tpl)
        .map_err(AdminError::kafka(format!("assigning {topic}")))?;
    let deadline = std::time::Instant::now() + READ_TIMEOUT;
    while !remaining.is_empty() {
        if std::time::Instant::now() > deadline {
            return Err(AdminError::Timeout(format!(
                "reading {topic}: {} partition(s) did not reach their end in {READ_TIMEOUT:?}",
                remaining.len()
            )));
        }
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let p = m.partition();
                let Some(&end) = remaining.get(&p) else {
                    continue;
                };
                if m.offset() < end {
                    out.push(m.detach());
                }
                if m.offset() + 1 >= end {
                    remaining.remove(&p);
                }
            }
            Some(Err(e)) => return Err(AdminError::kafka(format!("reading {topic}"))(e)),
            None => {}
        }
    }
    out.sort_by_key(|m| (m.partition(), m.offset()));
    out.truncate(limit);
    Ok(out)
}

/// Whole retained range of every partition of `topic`, from `from` on.
fn retained_ranges(
    broker: &Broker,
    topic: &str,
    from: i64,
) -> Result<Vec<(i32, i64, i64)>, AdminError> {
    let mut ranges = Vec::new();
    for p in broker.partitions(topic)? {
        let (low, high) = broker.watermarks(topic, p)?;
        ranges.push((p, low.max(from), high));
    }
    Ok(ranges)
}

/// The record at one position, or `NotFound`.
fn read_one(broker: &Broker, topic: &str, (p, o): (i32, i64)) -> Result<OwnedMessage, AdminError> {
    let not_found = || AdminError::NotFound(format!("no dead letter at {topic} {p}:{o}"));
    if !broker.partitions(topic)?.contains(&p) {
        return Err(not_found());
    }
    let (low, high) = broker.watermarks(topic, p)?;
    if o < low || o >= high {
        return Err(not_found());
    }
    read_ranges(broker, topic, &[(p, o, o + 1)], 1)?
        .into_iter()
        .find(|m| m.offset() == o)
        .ok_or_else(not_found)
}

/// Fills in `replayed_at` from the replay record; without a database the state says why.
async fn annotate(pool: Result<&PgPool, String>, letters: &mut [DeadLetter]) {
    let pool = match pool {
        Ok(pool) => pool,
        Err(why) => {
            letters
                .iter_mut()
                .for_each(|d| d.replay_state = why.clone());
            return;
        }
    };
    for d in letters.iter_mut() {
        let row: Result<Option<(DateTime<Utc>,)>, sqlx::Error> = sqlx::query_as(
            "SELECT replayed_at FROM dlq_replays
             WHERE dlq_topic = $1 AND dlq_partition = $2 AND dlq_offset = $3",
        )
        .bind(&d.topic)
        .bind(d.partition)
        .bind(d.offset)
        .fetch_optional(pool)
        .await;
        match row {
            Ok(r) => {
                d.replayed_at = r.map(|(at,)| at);
                d.replay_state = "known".to_owned();
            }
            Err(e) => d.replay_state = format!("replay record unreadable: {e}"),
        }
    }
}

/// `dlq list`: up to `limit` dead letters from offset `from` on.
pub async fn list(
    broker: &Broker,
    pool: Result<&PgPool, String>,
    topic: &str,
    from: i64,
    limit: usize,
) -> Result<DeadLetters, AdminError> {
    let ranges = retained_ranges(broker, topic, from)?;
    let messages = read_ranges(broker, topic, &ranges, limit)?;
    let mut dead_letters: Vec<DeadLetter> = messages.iter().map(DeadLetter::from_message).collect();
    annotate(pool, &mut dead_letters).await;
    Ok(DeadLetters {
        topic: topic.to_owned(),
        dead_letters,
    })
}

/// `dlq show`.
pub async fn show(
    broker: &Broker,
    pool: Result<&PgPool, String>,
    topic: &str,
    position: (i32, i64),
) -> Result<Shown, AdminError> {
    let msg = read_one(broker, topic, position)?;
    let mut d = [DeadLetter::from_message(&msg)];
    annotate(pool, &mut d).await;
    let [d] = d;
    Ok(Shown(d))
}

/// Which dead letters `dlq replay` sends back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    All,
    Positions(Vec<(i32, i64)>),
}

/// What happened to one dead letter.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayOutcome {
    pub partition: i32,
    pub offset: i64,
    pub target_topic: Option<String>,
    /// `replayed`, `already-replayed` or `failed`.
    pub outcome: &'static str,
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReplayReport {
    pub topic: String,
    pub replayed: usize,
    pub already_replayed: usize,
    pub failed: usize,
    pub records: Vec<ReplayOutcome>,
}

impl Human for ReplayReport {
    fn human(&self) -> String {
        let mut t = Table::new(&["POSITION", "TARGET", "OUTCOME", "DETAIL"]);
        for r in &self.records {
            t.row(vec![
                format!("{}:{}", r.partition, r.offset),
                opt(r.target_topic.as_deref()),
                r.outcome.to_owned(),
                opt(r.detail.as_deref()),
            ]);
        }
        let mut out = if t.is_empty() {
            String::new()
        } else {
            t.render()
        };
        out.push_str(&format!(
            "{}: {} replayed, {} already replayed before, {} failed\n",
            self.topic, self.replayed, self.already_replayed, self.failed
        ));
        out
    }
}

/// The record a dead letter is replayed as: original key, value and headers.
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

/// `dlq replay`: sends the selected dead letters back to their source topics, each once.
pub async fn replay(
    broker: &Broker,
    pool: &PgPool,
    topic: &str,
    selection: &Selection,
) -> Result<ReplayReport, AdminError> {
    let messages = match selection {
        Selection::All => {
            let ranges = retained_ranges(broker, topic, 0)?;
            read_ranges(broker, topic, &ranges, usize::MAX)?
        }
        Selection::Positions(positions) => positions
            .iter()
            .map(|pos| read_one(broker, topic, *pos))
            .collect::<Result<_, _>>()?,
    };
    let producer: FutureProducer = broker
        .client_config()
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("message.timeout.ms", DELIVERY_TIMEOUT_MS)
        .create()
        .map_err(AdminError::kafka("creating the replay producer"))?;
    let mut records = Vec::with_capacity(messages.len());
    for msg in &messages {
        let d = DeadLetter::from_message(msg);
        records.push(replay_one(&producer, pool, &d).await?);
    }
    let count = |o: &str| records.iter().filter(|r| r.outcome == o).count();
    Ok(ReplayReport {
        topic: topic.to_owned(),
        replayed: count("replayed"),
        already_replayed: count("already-replayed"),
        failed: count("failed"),
        records,
    })
}

/// One dead letter: record, send, commit; see the module docs for why in this order.
/// Database errors end the whole replay (`Err`); a record that cannot be sent is `failed`.
async fn replay_one(
    producer: &FutureProducer,
    pool: &PgPool,
    d: &DeadLetter,
) -> Result<ReplayOutcome, AdminError> {
    let outcome = |target: Option<String>, outcome, detail: Option<String>| ReplayOutcome {
        partition: d.partition,
        offset: d.offset,
        target_topic: target,
        outcome,
        detail,
    };
    let Some(target) = d.source_topic.clone().filter(|t| !t.is_empty()) else {
        return Ok(outcome(
            None,
            "failed",
            Some("no source.topic header: not a Taskflow dead letter".to_owned()),
        ));
    };
    let mut tx = pool.begin().await?;
    let inserted = sqlx::query(
        "INSERT INTO dlq_replays (dlq_topic, dlq_partition, dlq_offset, target_topic)
         VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
    )
    .bind(&d.topic)
    .bind(d.partition)
    .bind(d.offset)
    .bind(&target)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if inserted == 0 {
        tx.rollback().await?;
        return Ok(outcome(Some(target), "already-replayed", None));
    }
    let mut record: FutureRecord<'_, [u8], [u8]> =
        FutureRecord::to(&target).headers(owned_headers(&d.original_headers));
    if let Some(k) = &d.raw_key {
        record = record.key(k.as_slice());
    }
    if let Some(v) = &d.raw_value {
        record = record.payload(v.as_slice());
    }
    match producer
        .send(record, Timeout::After(Duration::from_secs(5)))
        .await
    {
        Ok(delivery) => match tx.commit().await {
            Ok(()) => Ok(outcome(
                Some(target.clone()),
                "replayed",
                Some(format!(
                    "now at {target}/{}@{}",
                    delivery.partition, delivery.offset
                )),
            )),
            Err(e) => Ok(outcome(
                Some(target),
                "failed",
                Some(format!(
                    "sent, but recording the replay failed ({e}): a next run sends it again"
                )),
            )),
        },
        Err((e, _)) => {
            tx.rollback().await?;
            Ok(outcome(
                Some(target),
                "failed",
                Some(format!("not sent: {e}")),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::dlq::{dlq_headers, Failure, FailureKind, Source};

    fn h(k: &str, v: &str) -> (String, Option<Vec<u8>>) {
        (k.to_owned(), Some(v.as_bytes().to_vec()))
    }

    #[test]
    fn failure_headers_are_split_off_and_originals_kept_in_order() {
        // An original header that shares a failure header's name stays.
        let original = vec![
            h("event_type", "TaskCreated"),
            h("error", "app-level"),
            ("empty".to_owned(), None),
        ];
        let all = dlq_headers(
            &original,
            &Failure {
                kind: FailureKind::Handler,
                reason: "refused".to_owned(),
            },
            Source {
                topic: "taskflow.task-events",
                partition: 2,
                offset: 40,
                attempts: 3,
            },
        );
        let (kept, failure) = split_headers(&all);
        assert_eq!(kept, original);
        assert_eq!(failure["error"], "refused");
        assert_eq!(failure["error.kind"], "handler");
        assert_eq!(failure["source.topic"], "taskflow.task-events");
        assert_eq!(failure["source.partition"], "2");
        assert_eq!(failure["source.offset"], "40");
        assert_eq!(failure["attempts"], "3");
    }

    #[test]
    fn headers_of_other_writers_lose_every_failure_name() {
        let all = vec![h("source.topic", "t"), h("a", "1"), h("error", "x")];
        let (kept, failure) = split_headers(&all);
        assert_eq!(kept, vec![h("a", "1")]);
        assert_eq!(failure["source.topic"], "t");
        assert_eq!(failure.len(), 2);
    }

    #[test]
    fn positions_parse_with_or_without_partition() {
        assert_eq!(parse_position("17").ok(), Some((0, 17)));
        assert_eq!(parse_position("2:5").ok(), Some((2, 5)));
        assert!(parse_position("x").is_err());
        assert!(parse_position("-1").is_err());
        assert!(parse_position("1:").is_err());
    }

    #[test]
    fn a_dead_letter_message_is_read_into_its_fields() {
        let all = dlq_headers(
            &[h("event_type", "TaskCreated")],
            &Failure {
                kind: FailureKind::Decode,
                reason: "unknown schema id 9".to_owned(),
            },
            Source {
                topic: "src",
                partition: 1,
                offset: 7,
                attempts: 1,
            },
        );
        let msg = OwnedMessage::new(
            Some(vec![0, 0, 0, 0, 9, 1, 2]),
            Some(b"task-1".to_vec()),
            "taskflow.dlq.g".to_owned(),
            rdkafka::message::Timestamp::CreateTime(1_700_000_000_000),
            0,
            3,
            Some(owned_headers(&all)),
        );
        let d = DeadLetter::from_message(&msg);
        assert_eq!(d.key.as_deref(), Some("task-1"));
        assert_eq!(d.schema_id, Some(9));
        assert_eq!(d.value_bytes, 7);
        assert_eq!(d.error_kind.as_deref(), Some("decode"));
        assert_eq!(d.source_topic.as_deref(), Some("src"));
        assert_eq!(
            (d.source_partition, d.source_offset, d.attempts),
            (Some(1), Some(7), Some(1))
        );
        assert_eq!(
            d.headers,
            vec![HeaderView {
                key: "event_type".into(),
                value: Some("TaskCreated".into())
            }]
        );
        assert!(d.timestamp.is_some());
    }
}
