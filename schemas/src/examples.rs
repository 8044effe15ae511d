//! Fully populated example events, for tests and documentation.
//!
//! Every optional field is set and every instant is whole microseconds, so an
//! Avro round trip must return an equal value.

use crate::events::*;
use chrono::{DateTime, TimeZone, Utc};
use uuid::Uuid;

fn at(secs: i64, micros: u32) -> DateTime<Utc> {
    // 2026-01-01T00:00:00Z plus an offset; in range by construction.
    Utc.timestamp_opt(1_767_225_600 + secs, micros * 1_000)
        .single()
        .unwrap_or_default()
}

/// Example metadata; `version` distinguishes the events of one example task.
pub fn metadata(version: i64) -> EventMetadata {
    EventMetadata {
        event_id: Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0000 + version as u128),
        occurred_at: at(version, 123_456),
        user_id: Uuid::from_u128(0x11),
        task_id: Uuid::from_u128(0x22),
        version,
        correlation_id: "req-42".to_owned(),
        causation_id: Some("0190-cause".to_owned()),
    }
}

/// Example snapshot with every optional field set.
pub fn snapshot() -> TaskSnapshot {
    TaskSnapshot {
        title: "Water the plants".to_owned(),
        description: Some("balcony ones too".to_owned()),
        status: TaskStatus::Open,
        due_at: Some(at(86_400, 1)),
        priority: Priority::High,
        tags: vec!["home".to_owned(), "weekly".to_owned()],
        recurrence: Some(Recurrence {
            rrule: "FREQ=WEEKLY;BYDAY=SA".to_owned(),
            tz: "Europe/Berlin".to_owned(),
            mode: RecurrenceMode::FromCompletion,
            exdates: vec![at(7 * 86_400, 0), at(14 * 86_400, 7)],
        }),
        reminders: vec![
            ReminderSpec {
                before_seconds: Some(3_600),
                at: None,
                id: Some(Uuid::from_u128(0x44)),
                snoozed_until: Some(at(83_000, 250)),
                channels: Some(vec!["inbox".to_owned(), "email".to_owned()]),
            },
            ReminderSpec {
                before_seconds: None,
                at: Some(at(80_000, 0)),
                id: Some(Uuid::from_u128(0x45)),
                snoozed_until: None,
                channels: None,
            },
        ],
        completed_at: Some(at(90_000, 999_999)),
        created_at: at(0, 0),
        updated_at: at(10, 5),
        series_id: Some(Uuid::from_u128(0x33)),
        occurrence: Some(at(86_400, 0)),
    }
}

/// An example event of the given type.
pub fn example(event_type: EventType) -> Event {
    let task = snapshot();
    match event_type {
        EventType::TaskCreated => Event::TaskCreated(TaskCreated {
            metadata: metadata(1),
            task,
        }),
        EventType::TaskUpdated => Event::TaskUpdated(TaskUpdated {
            metadata: metadata(2),
            changes: vec![
                FieldChange {
                    field: "title".to_owned(),
                    old_value: Some("\"Water\"".to_owned()),
                    new_value: Some("\"Water the plants\"".to_owned()),
                },
                FieldChange {
                    field: "description".to_owned(),
                    old_value: None,
                    new_value: Some("\"balcony ones too\"".to_owned()),
                },
            ],
            task,
        }),
        EventType::TaskCompleted => Event::TaskCompleted(TaskCompleted {
            metadata: metadata(3),
            completed_at: at(90_000, 999_999),
            task,
        }),
        EventType::TaskReopened => Event::TaskReopened(TaskReopened {
            metadata: metadata(4),
            task,
        }),
        EventType::TaskDeleted => Event::TaskDeleted(TaskDeleted {
            metadata: metadata(5),
            deleted_at: at(100_000, 7),
            task,
        }),
        EventType::ReminderDue => Event::ReminderDue(ReminderDue {
            metadata: metadata(6),
            reminder_key: "00000000-0000-0000-0000-000000000044@1767309000000000".to_owned(),
            fire_at: at(82_800, 0),
            due_at: Some(at(86_400, 1)),
            title: "Water the plants".to_owned(),
            reminder_id: Some(Uuid::from_u128(0x44)),
            fired_at: Some(at(82_800, 12_345)),
        }),
        EventType::ReminderSnoozed => Event::ReminderSnoozed(ReminderSnoozed {
            metadata: metadata(7),
            reminder_id: Uuid::from_u128(0x44),
            snoozed_until: at(83_000, 250),
            task,
        }),
    }
}

/// One example of every event type.
pub fn all() -> Vec<Event> {
    EventType::ALL.into_iter().map(example).collect()
}
