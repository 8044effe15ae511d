//! The Avro side of the codec: pre-resolved writers and readers for the
//! current schemas, and the Confluent frame (magic byte 0, 4-byte big-endian
//! schema id, Avro binary datum).
//!
//! apache-avro re-resolves a schema's names on every call of its convenience
//! functions, which dominated encode time in reports (apache/avro-rs #310,
//! #371). The writers and readers here are resolved once per process and live
//! in statics, which also gives them the `'static` schemas they borrow.

use crate::error::CodecError;
use crate::events::{Event, EventType};
use crate::schema::{self, SchemaError};
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::{from_value, types::Value};
use std::sync::LazyLock;

/// First byte of every Confluent-framed value.
pub const MAGIC_BYTE: u8 = 0;
const HEADER_LEN: usize = 5;

/// Writers for the current schemas, indexed like `EventType::ALL`.
pub(crate) static WRITERS: LazyLock<Result<Vec<GenericDatumWriter<'static>>, SchemaError>> =
    LazyLock::new(|| {
        EventType::ALL
            .into_iter()
            .map(|t| {
                let schema = schema::current(t)?;
                // human_readable(false): timestamps serialize as micros (see serde_util).
                GenericDatumWriter::builder(schema)
                    .human_readable(false)
                    .build()
                    .map_err(|e| avro_schema_error(t, e))
            })
            .collect()
    });

/// Readers for data written with the current schema itself: nothing to resolve.
pub(crate) static CURRENT_READERS: LazyLock<Result<Vec<GenericDatumReader<'static>>, SchemaError>> =
    LazyLock::new(|| {
        EventType::ALL
            .into_iter()
            .map(|t| {
                GenericDatumReader::builder(schema::current(t)?)
                    .human_readable(false)
                    .build()
                    .map_err(|e| avro_schema_error(t, e))
            })
            .collect()
    });

fn avro_schema_error(t: EventType, e: apache_avro::Error) -> SchemaError {
    SchemaError::Avro {
        name: t.full_name().to_owned(),
        reason: e.to_string(),
    }
}

pub(crate) fn static_entry<T>(
    all: &'static Result<Vec<T>, SchemaError>,
    t: EventType,
) -> Result<&'static T, CodecError> {
    let all = all.as_ref().map_err(|e| CodecError::Schema(e.clone()))?;
    // Built from `EventType::ALL`, which is in declaration order.
    all.get(t as usize)
        .ok_or_else(|| CodecError::UnknownRecordName(t.full_name().to_owned()))
}

/// Split a Confluent frame into schema id and Avro payload.
pub(crate) fn split_frame(bytes: &[u8]) -> Result<(u32, &[u8]), CodecError> {
    if bytes.is_empty() {
        return Err(CodecError::NotConfluentFraming("empty value"));
    }
    if bytes[0] != MAGIC_BYTE {
        return Err(CodecError::NotConfluentFraming("magic byte is not 0"));
    }
    let (header, payload) =
        bytes
            .split_at_checked(HEADER_LEN)
            .ok_or(CodecError::NotConfluentFraming(
                "shorter than the 5-byte header",
            ))?;
    let id = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
    Ok((id, payload))
}

/// Serialize the event's record straight into Avro binary against the
/// pre-resolved writer (no intermediate `Value`, no schema resolution).
pub(crate) fn write_event(
    writer: &GenericDatumWriter<'_>,
    event: &Event,
    buf: &mut Vec<u8>,
) -> Result<usize, apache_avro::Error> {
    match event {
        Event::TaskCreated(e) => writer.write_ser(buf, e),
        Event::TaskUpdated(e) => writer.write_ser(buf, e),
        Event::TaskCompleted(e) => writer.write_ser(buf, e),
        Event::TaskReopened(e) => writer.write_ser(buf, e),
        Event::TaskDeleted(e) => writer.write_ser(buf, e),
        Event::ReminderDue(e) => writer.write_ser(buf, e),
        Event::ReminderSnoozed(e) => writer.write_ser(buf, e),
    }
}

pub(crate) fn to_event(event_type: EventType, value: &Value) -> Result<Event, CodecError> {
    Ok(match event_type {
        EventType::TaskCreated => Event::TaskCreated(from_value(value)?),
        EventType::TaskUpdated => Event::TaskUpdated(from_value(value)?),
        EventType::TaskCompleted => Event::TaskCompleted(from_value(value)?),
        EventType::TaskReopened => Event::TaskReopened(from_value(value)?),
        EventType::TaskDeleted => Event::TaskDeleted(from_value(value)?),
        EventType::ReminderDue => Event::ReminderDue(from_value(value)?),
        EventType::ReminderSnoozed => Event::ReminderSnoozed(from_value(value)?),
    })
}

// The maps only cache; a panic while holding the lock cannot leave them
#[cfg(test)]
mod tests {
    use super::*;
    use crate::examples;
    use crate::Codec;

    /// Avro body round trip with the static writer and reader, no registry.
    fn body_round_trip(event: &Event) -> Event {
        let t = event.event_type();
        let writer = static_entry(&WRITERS, t).expect("writer");
        let mut buf = Vec::new();
        write_event(writer, event, &mut buf).expect("encodes");
        let value = static_entry(&CURRENT_READERS, t)
            .expect("reader")
            .read_value(&mut buf.as_slice())
            .expect("decodes");
        to_event(t, &value).expect("maps to event")
    }

    #[test]
    fn every_example_round_trips_through_avro() {
        for event in examples::all() {
            assert_eq!(body_round_trip(&event), event);
        }
    }

    #[test]
    fn write_ser_matches_the_generic_value_encoding() {
        // The fast path must produce the same bytes as apache-avro's reference path.
        for event in examples::all() {
            let t = event.event_type();
            let schema = schema::current(t).expect("schema");
            let value = match &event {
                Event::TaskCreated(e) => apache_avro::to_value(e),
                Event::TaskUpdated(e) => apache_avro::to_value(e),
                Event::TaskCompleted(e) => apache_avro::to_value(e),
                Event::TaskReopened(e) => apache_avro::to_value(e),
                Event::TaskDeleted(e) => apache_avro::to_value(e),
                Event::ReminderDue(e) => apache_avro::to_value(e),
                Event::ReminderSnoozed(e) => apache_avro::to_value(e),
            }
            .and_then(|v| v.resolve(schema))
            .expect("resolves");
            let reference = GenericDatumWriter::builder(schema)
                .build()
                .and_then(|w| w.write_value_to_vec(value))
                .expect("encodes");
            let mut fast = Vec::new();
            write_event(
                static_entry(&WRITERS, t).expect("writer"),
                &event,
                &mut fast,
            )
            .expect("encodes");
            assert_eq!(fast, reference, "{t}");
        }
    }

    #[test]
    fn empty_optionals_round_trip_through_avro() {
        let mut task = examples::snapshot();
        task.description = None;
        task.due_at = None;
        task.tags.clear();
        task.recurrence = None;
        task.reminders.clear();
        task.completed_at = None;
        let mut metadata = examples::metadata(1);
        metadata.causation_id = None;
        let event = Event::TaskCreated(crate::TaskCreated { metadata, task });
        assert_eq!(body_round_trip(&event), event);
    }

    #[test]
    fn json_round_trip_uses_type_tag_and_rfc3339() {
        for event in examples::all() {
            let json = serde_json::to_value(&event).expect("json");
            assert_eq!(json["type"], event.event_type().as_str());
            assert!(json["event"]["metadata"]["occurred_at"].is_string());
            let back: Event = serde_json::from_value(json).expect("parses");
            assert_eq!(back, event);
        }
    }

    #[test]
    fn framing_errors_need_no_registry() {
        for bad in [
            &[][..],
            &[1, 0, 0, 0, 1, 2][..],
            &[0, 0, 0][..],
            b"{\"json\":1}",
        ] {
            assert!(matches!(
                split_frame(bad),
                Err(CodecError::NotConfluentFraming(_))
            ));
        }
        assert_eq!(
            split_frame(&[0, 0, 0, 1, 2, 9]).expect("framed"),
            (258, &[9u8][..])
        );
    }

    #[tokio::test]
    async fn decode_rejects_bad_framing_before_any_io() {
        // Port 9 (discard) is closed: a registry call would fail differently.
        let codec = Codec::new("http://127.0.0.1:9");
        for bad in [&b"garbage"[..], &[0xff, 0, 0, 0, 1][..], &[0, 0][..]] {
            let err = codec.decode(bad).await.expect_err("rejected");
            assert!(matches!(err, CodecError::NotConfluentFraming(_)), "{err}");
            assert!(!err.is_transient());
        }
    }
}
