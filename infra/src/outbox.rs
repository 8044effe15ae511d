//! The transactional outbox.
//!
//! A write that must produce an event calls [`enqueue`] inside the same
//! database transaction as the change it describes, so the event exists if
//! and only if the change committed, and calls [`OutboxWaker::wake`] after
//! the commit. The [`Relay`] publishes the rows later; that is what lets the
//! API answer 2xx while the broker is down.

mod parked;
pub mod plan;
mod relay;
mod waker;

pub use parked::{list_parked, retry_parked, ParkedRow};
pub use relay::{Fencing, Relay, RelayConfig, RelayError, SELECT_HEADS};
pub use waker::OutboxWaker;

use sqlx::PgConnection;
use taskflow_schemas::Event;

/// The channel the relay listens on. Writers never notify inside their
/// transaction (see [`OutboxWaker`]): a coalesced `NOTIFY` follows the commit.
pub const NOTIFY_CHANNEL: &str = "taskflow_outbox";

/// Inserts `event` into the outbox in the caller's transaction. Call
/// [`OutboxWaker::wake`] once the transaction has committed.
///
/// `traceparent` is the W3C trace context of the request that caused the
/// event; without one, a context is derived from the event id so every event
/// still carries a valid, unique `traceparent` header.
pub async fn enqueue(
    conn: &mut PgConnection,
    topic: &str,
    event: &Event,
    traceparent: Option<&str>,
) -> Result<(), sqlx::Error> {
    let rows = OutboxRows::one(event, traceparent)?;
    rows.bind(sqlx::query(INSERT_MANY), topic)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Inserts `events` (any number, in this order) into the outbox in the caller's transaction,
/// with one statement: the reminders worker fires thousands of reminders a second, and a
/// round trip per row would be most of its latency. Each row gets the `traceparent` derived
/// from its event id. Call [`OutboxWaker::wake`] once the transaction has committed.
pub async fn enqueue_many(
    conn: &mut PgConnection,
    topic: &str,
    events: &[Event],
) -> Result<(), sqlx::Error> {
    let rows = OutboxRows::new(events)?;
    rows.bind(sqlx::query(INSERT_MANY), topic)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The statement [`enqueue_many`] runs: `$1` the topic, `$2`..`$6` the arrays of an
/// [`OutboxRows`]. Public so that a writer may run it as the last part of a statement of
/// its own (`WITH ... INSERT ...`), saving a round trip; the rows are then exactly those
/// [`enqueue_many`] would insert (see [`insert_many_from`] for other parameter numbers).
/// WITH ORDINALITY + ORDER BY: ids follow the slice's order, so a task's rows keep theirs.
/// Payloads travel as JSON text, which PostgreSQL parses into `jsonb` as it would a
/// `jsonb` parameter.
pub const INSERT_MANY: &str = "INSERT INTO outbox \
         (event_id, topic, partition_key, event_type, payload, traceparent) \
     SELECT u.event_id, $1, u.partition_key, u.event_type, u.payload::jsonb, u.traceparent \
     FROM UNNEST($2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[]) \
          WITH ORDINALITY AS u(event_id, partition_key, event_type, payload, traceparent, n) \
     ORDER BY u.n";

/// [`INSERT_MANY`] with its parameters numbered from `$first` (the topic) to `$first+5`,
/// for a statement whose earlier parameters are its own.
pub fn insert_many_from(first: usize) -> String {
    // Each `$n` read whole, so renumbering `$1` cannot touch a `$19` written for `$2`.
    let mut sql = String::with_capacity(INSERT_MANY.len() + 8);
    let mut rest = INSERT_MANY;
    while let Some(at) = rest.find('$') {
        sql.push_str(&rest[..=at]);
        rest = &rest[at + 1..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        match rest[..digits].parse::<usize>() {
            Ok(n) => sql.push_str(&(first + n - 1).to_string()),
            Err(_) => sql.push_str(&rest[..digits]),
        }
        rest = &rest[digits..];
    }
    sql.push_str(rest);
    sql
}

/// The outbox rows of `events`, as the arrays [`INSERT_MANY`] takes.
pub struct OutboxRows {
    pub ids: Vec<uuid::Uuid>,
    pub keys: Vec<String>,
    pub types: Vec<&'static str>,
    /// Each event serialised to JSON text once (no intermediate `serde_json::Value` tree:
    /// at thousands of events a second the tree's allocations were a measurable share of
    /// the reminders worker's firing time).
    pub payloads: Vec<String>,
    pub traceparents: Vec<String>,
}

impl OutboxRows {
    pub fn new(events: &[Event]) -> Result<Self, sqlx::Error> {
        let mut rows = Self {
            ids: Vec::with_capacity(events.len()),
            keys: Vec::with_capacity(events.len()),
            types: Vec::with_capacity(events.len()),
            payloads: Vec::with_capacity(events.len()),
            traceparents: Vec::with_capacity(events.len()),
        };
        for event in events {
            let id = event.metadata().event_id;
            rows.ids.push(id);
            rows.keys.push(event.key());
            rows.types.push(event.event_type().as_str());
            rows.payloads
                .push(serde_json::to_string(event).map_err(|e| sqlx::Error::Encode(Box::new(e)))?);
            rows.traceparents.push(traceparent_for(id));
        }
        Ok(rows)
    }

    /// Binds `topic` and the five arrays, in [`INSERT_MANY`]'s order, as the next six
    /// parameters of `query`: `$1`..`$6` of [`INSERT_MANY`] itself, or wherever
    /// [`insert_many_from`] put them in a statement that binds its own parameters first.
    pub fn bind<'q>(
        &'q self,
        query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
        topic: &'q str,
    ) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
        query
            .bind(topic)
            .bind(&self.ids)
            .bind(&self.keys)
            .bind(&self.types)
            .bind(&self.payloads)
            .bind(&self.traceparents)
    }

    /// The rows of one event whose `traceparent` is the caller's request's, when it is a
    /// valid one (else derived from the event id, as [`enqueue`] does).
    pub fn one(event: &Event, traceparent: Option<&str>) -> Result<Self, sqlx::Error> {
        let mut rows = Self::new(std::slice::from_ref(event))?;
        if let Some(tp) = traceparent.filter(|t| is_valid_traceparent(t)) {
            rows.traceparents[0] = tp.to_owned();
        }
        Ok(rows)
    }
}

/// A W3C `traceparent` whose trace id is the event id and whose span id is
/// taken from its random tail, so it is unique and never all zeros.
pub fn traceparent_for(event_id: uuid::Uuid) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    // Built in place: one allocation (it runs for every outbox row).
    let mut s = String::with_capacity(55);
    s.push_str("00-");
    s.push_str(
        event_id
            .simple()
            .encode_lower(&mut uuid::Uuid::encode_buffer()),
    );
    s.push('-');
    for b in &event_id.as_bytes()[8..16] {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    s.push_str("-01");
    s
}

/// `00-<32 hex>-<16 hex>-<2 hex>` with non-zero ids, per W3C Trace Context.
pub fn is_valid_traceparent(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    let hex = |p: &str, n: usize| p.len() == n && p.bytes().all(|b| b.is_ascii_hexdigit());
    let nonzero = |p: &str| p.bytes().any(|b| b != b'0');
    parts.len() == 4
        && hex(parts[0], 2)
        && parts[0] != "ff"
        && hex(parts[1], 32)
        && nonzero(parts[1])
        && hex(parts[2], 16)
        && nonzero(parts[2])
        && hex(parts[3], 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_many_renumbers_every_parameter() {
        assert_eq!(insert_many_from(1), INSERT_MANY);
        let sql = insert_many_from(18);
        for n in 18..=23 {
            assert!(sql.contains(&format!("${n}")), "{sql}");
        }
        assert!(!sql.contains("$1,") && !sql.contains("$2::"), "{sql}");
        assert!(!sql.contains("$24") && !sql.contains("$189"), "{sql}");
        assert_eq!(sql.matches('$').count(), INSERT_MANY.matches('$').count());
    }

    #[test]
    fn derived_traceparent_is_valid_and_unique() {
        let a = traceparent_for(uuid::Uuid::now_v7());
        let b = traceparent_for(uuid::Uuid::now_v7());
        assert!(is_valid_traceparent(&a), "{a}");
        assert_ne!(a, b);
    }

    #[test]
    fn derived_traceparent_is_the_event_id_and_its_random_tail() {
        let id = uuid::Uuid::now_v7();
        let bytes = id.as_bytes();
        let span: String = bytes[8..16].iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(traceparent_for(id), format!("00-{}-{span}-01", id.simple()));
    }

    #[test]
    fn malformed_traceparents_are_refused() {
        assert!(is_valid_traceparent(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        ));
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
        ] {
            assert!(!is_valid_traceparent(bad), "{bad}");
        }
    }
}
