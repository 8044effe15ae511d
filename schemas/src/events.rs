//! Typed events, exactly the records of `schemas/avro/*.avsc`.
//!
//! The same derives serve the outbox (JSON) and Kafka (Avro, through
//! [`crate::Codec`]). Avro carries instants with microsecond precision:
//! truncate (`chrono::SubsecRound::trunc_subsecs(6)`) before comparing a
//! decoded event with the original.

use crate::serde_util::{micros, micros_opt, micros_vec, uuid_opt, uuid_str};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Envelope fields every event carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventMetadata {
    /// UUIDv7; consumers deduplicate effects by it.
    #[serde(with = "uuid_str")]
    pub event_id: Uuid,
    #[serde(with = "micros")]
    pub occurred_at: DateTime<Utc>,
    #[serde(with = "uuid_str")]
    pub user_id: Uuid,
    #[serde(with = "uuid_str")]
    pub task_id: Uuid,
    /// Per-task version, monotonically increasing.
    pub version: i64,
    pub correlation_id: String,
    /// `event_id` of the event that caused this one (e.g. the completion that spawned a recurrence).
    #[serde(default)]
    pub causation_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Low,
    Medium,
    High,
    Urgent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    Open,
    Completed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecurrenceMode {
    FromDue,
    FromCompletion,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recurrence {
    /// RFC 5545 RRULE.
    pub rrule: String,
    /// IANA zone the rule is evaluated in.
    pub tz: String,
    pub mode: RecurrenceMode,
    /// Occurrences (scheduled instants) skipped. Added in schema v2 (default empty).
    #[serde(default, with = "micros_vec")]
    pub exdates: Vec<DateTime<Utc>>,
}

/// Exactly one of `before_seconds` and `at` is `Some` (checked at the API edge, not here).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReminderSpec {
    #[serde(default)]
    pub before_seconds: Option<i64>,
    #[serde(default, with = "micros_opt")]
    pub at: Option<DateTime<Utc>>,
    /// Stable id within the task (schema v3; `None` only in events written before it).
    #[serde(default, with = "uuid_opt")]
    pub id: Option<Uuid>,
    /// A snooze moved the reminder here (schema v3).
    #[serde(default, with = "micros_opt")]
    pub snoozed_until: Option<DateTime<Utc>>,
    /// The channels this reminder goes to (`inbox`, `live`, `webhook`, `email`), instead
    /// of its owner's preferences for reminders; `None`: the preferences (schema v4).
    #[serde(default)]
    pub channels: Option<Vec<String>>,
}

impl ReminderSpec {
    /// A relative reminder with no id (tests, and the API before it assigns one).
    pub fn before(seconds: i64) -> Self {
        Self {
            before_seconds: Some(seconds),
            at: None,
            id: None,
            snoozed_until: None,
            channels: None,
        }
    }

    /// An absolute reminder with no id.
    pub fn at(instant: DateTime<Utc>) -> Self {
        Self {
            before_seconds: None,
            at: Some(instant),
            id: None,
            snoozed_until: None,
            channels: None,
        }
    }

    /// Same rule (`before`/`at`), whatever the id and snooze.
    pub fn same_rule(&self, other: &ReminderSpec) -> bool {
        self.before_seconds == other.before_seconds && self.at == other.at
    }

    /// The instant its rule names for a task due at `due_at`, ignoring a snooze; `None` for
    /// a relative reminder without a due date (or out of range).
    pub fn rule_instant(&self, due_at: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
        match (self.at, self.before_seconds) {
            (Some(at), _) => Some(at),
            (None, Some(before)) => {
                due_at?.checked_sub_signed(chrono::TimeDelta::try_seconds(before)?)
            }
            (None, None) => None,
        }
    }

    /// When it fires: the snooze if there is one, else [`ReminderSpec::rule_instant`].
    pub fn fire_instant(&self, due_at: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
        self.snoozed_until.or_else(|| self.rule_instant(due_at))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskSnapshot {
    pub title: String,
    #[serde(default)]
    pub description: Option<String>,
    pub status: TaskStatus,
    #[serde(default, with = "micros_opt")]
    pub due_at: Option<DateTime<Utc>>,
    pub priority: Priority,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub recurrence: Option<Recurrence>,
    #[serde(default)]
    pub reminders: Vec<ReminderSpec>,
    #[serde(default, with = "micros_opt")]
    pub completed_at: Option<DateTime<Utc>>,
    #[serde(with = "micros")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "micros")]
    pub updated_at: DateTime<Utc>,
    /// The series a recurring task belongs to (schema v2; absent in older events).
    #[serde(default, with = "uuid_opt")]
    pub series_id: Option<Uuid>,
    /// The scheduled instant of this instance of its series (schema v2).
    #[serde(default, with = "micros_opt")]
    pub occurrence: Option<DateTime<Utc>>,
}

/// One changed field; values are JSON text (`None` = absent/null).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldChange {
    pub field: String,
    #[serde(default)]
    pub old_value: Option<String>,
    #[serde(default)]
    pub new_value: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskCreated {
    pub metadata: EventMetadata,
    pub task: TaskSnapshot,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskUpdated {
    pub metadata: EventMetadata,
    #[serde(default)]
    pub changes: Vec<FieldChange>,
    pub task: TaskSnapshot,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskCompleted {
    pub metadata: EventMetadata,
    #[serde(with = "micros")]
    pub completed_at: DateTime<Utc>,
    pub task: TaskSnapshot,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskReopened {
    pub metadata: EventMetadata,
    pub task: TaskSnapshot,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskDeleted {
    pub metadata: EventMetadata,
    #[serde(with = "micros")]
    pub deleted_at: DateTime<Utc>,
    pub task: TaskSnapshot,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReminderDue {
    pub metadata: EventMetadata,
    /// Stable key of the reminder occurrence: `<reminder id>@<fire_at micros>`.
    pub reminder_key: String,
    /// The instant it was scheduled for.
    #[serde(with = "micros")]
    pub fire_at: DateTime<Utc>,
    #[serde(default, with = "micros_opt")]
    pub due_at: Option<DateTime<Utc>>,
    pub title: String,
    /// The reminder's stable id (schema v2).
    #[serde(default, with = "uuid_opt")]
    pub reminder_id: Option<Uuid>,
    /// When it fired (schema v2); `fired_at - fire_at` is its lateness.
    #[serde(default, with = "micros_opt")]
    pub fired_at: Option<DateTime<Utc>>,
}

/// A reminder was snoozed: it fires at `snoozed_until` (also in the snapshot's reminder).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReminderSnoozed {
    pub metadata: EventMetadata,
    #[serde(with = "uuid_str")]
    pub reminder_id: Uuid,
    #[serde(with = "micros")]
    pub snoozed_until: DateTime<Utc>,
    pub task: TaskSnapshot,
}

/// The kind of an event; one Avro record per kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    TaskCreated,
    TaskUpdated,
    TaskCompleted,
    TaskReopened,
    TaskDeleted,
    ReminderDue,
    ReminderSnoozed,
}

impl EventType {
    pub const ALL: [EventType; 7] = [
        EventType::TaskCreated,
        EventType::TaskUpdated,
        EventType::TaskCompleted,
        EventType::TaskReopened,
        EventType::TaskDeleted,
        EventType::ReminderDue,
        EventType::ReminderSnoozed,
    ];

    /// The records of `taskflow.task-events` (everything the API's outbox publishes): each
    /// changes the task and carries its snapshot and next version.
    pub const TASK_LIFECYCLE: [EventType; 6] = [
        EventType::TaskCreated,
        EventType::TaskUpdated,
        EventType::TaskCompleted,
        EventType::TaskReopened,
        EventType::TaskDeleted,
        EventType::ReminderSnoozed,
    ];

    /// The Kafka `event_type` header and `outbox.event_type` value; also the Avro record name.
    pub fn as_str(&self) -> &'static str {
        match self {
            EventType::TaskCreated => "TaskCreated",
            EventType::TaskUpdated => "TaskUpdated",
            EventType::TaskCompleted => "TaskCompleted",
            EventType::TaskReopened => "TaskReopened",
            EventType::TaskDeleted => "TaskDeleted",
            EventType::ReminderDue => "ReminderDue",
            EventType::ReminderSnoozed => "ReminderSnoozed",
        }
    }

    /// Avro full name, e.g. `com.taskflow.events.TaskCreated`.
    pub fn full_name(&self) -> &'static str {
        match self {
            EventType::TaskCreated => "com.taskflow.events.TaskCreated",
            EventType::TaskUpdated => "com.taskflow.events.TaskUpdated",
            EventType::TaskCompleted => "com.taskflow.events.TaskCompleted",
            EventType::TaskReopened => "com.taskflow.events.TaskReopened",
            EventType::TaskDeleted => "com.taskflow.events.TaskDeleted",
            EventType::ReminderDue => "com.taskflow.events.ReminderDue",
            EventType::ReminderSnoozed => "com.taskflow.events.ReminderSnoozed",
        }
    }

    /// Inverse of [`EventType::as_str`]; also accepts the full name.
    pub fn parse(s: &str) -> Option<EventType> {
        EventType::ALL
            .into_iter()
            .find(|t| t.as_str() == s || t.full_name() == s)
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Any event. The JSON form (`{"type": "TaskCreated", "event": {...}}`) is the outbox payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "event")]
pub enum Event {
    TaskCreated(TaskCreated),
    TaskUpdated(TaskUpdated),
    TaskCompleted(TaskCompleted),
    TaskReopened(TaskReopened),
    TaskDeleted(TaskDeleted),
    ReminderDue(ReminderDue),
    ReminderSnoozed(ReminderSnoozed),
}

impl Event {
    pub fn metadata(&self) -> &EventMetadata {
        match self {
            Event::TaskCreated(e) => &e.metadata,
            Event::TaskUpdated(e) => &e.metadata,
            Event::TaskCompleted(e) => &e.metadata,
            Event::TaskReopened(e) => &e.metadata,
            Event::TaskDeleted(e) => &e.metadata,
            Event::ReminderDue(e) => &e.metadata,
            Event::ReminderSnoozed(e) => &e.metadata,
        }
    }

    pub fn event_type(&self) -> EventType {
        match self {
            Event::TaskCreated(_) => EventType::TaskCreated,
            Event::TaskUpdated(_) => EventType::TaskUpdated,
            Event::TaskCompleted(_) => EventType::TaskCompleted,
            Event::TaskReopened(_) => EventType::TaskReopened,
            Event::TaskDeleted(_) => EventType::TaskDeleted,
            Event::ReminderDue(_) => EventType::ReminderDue,
            Event::ReminderSnoozed(_) => EventType::ReminderSnoozed,
        }
    }

    /// The task after the change, for the events of `taskflow.task-events`.
    pub fn snapshot(&self) -> Option<&TaskSnapshot> {
        match self {
            Event::TaskCreated(e) => Some(&e.task),
            Event::TaskUpdated(e) => Some(&e.task),
            Event::TaskCompleted(e) => Some(&e.task),
            Event::TaskReopened(e) => Some(&e.task),
            Event::TaskDeleted(e) => Some(&e.task),
            Event::ReminderSnoozed(e) => Some(&e.task),
            Event::ReminderDue(_) => None,
        }
    }

    /// Kafka key: the task id, hyphenated, so one task's events share a partition.
    pub fn key(&self) -> String {
        self.metadata().task_id.hyphenated().to_string()
    }
}
