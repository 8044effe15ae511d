//! The task as the service sees it, and its JSON representations.
//!
//! The domain types reuse the event contract's enums (`Priority`,
//! `TaskStatus`, `Recurrence`, `ReminderSpec`) so what is stored, what is
//! answered and what is published cannot drift apart.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use taskflow_schemas::{
    Priority, Recurrence, RecurrenceMode, ReminderSpec, TaskSnapshot, TaskStatus,
};
use utoipa::ToSchema;
use uuid::Uuid;

use super::validate::format_iso_duration;

/// The fields a client sets (on create) and may change (with PATCH).
#[derive(Debug, Clone, PartialEq)]
pub struct TaskFields {
    pub title: String,
    pub description: Option<String>,
    pub due_at: Option<DateTime<Utc>>,
    pub priority: Priority,
    pub tags: Vec<String>,
    pub recurrence: Option<Recurrence>,
    pub reminders: Vec<ReminderSpec>,
}

impl Default for TaskFields {
    fn default() -> Self {
        Self {
            title: String::new(),
            description: None,
            due_at: None,
            priority: Priority::Medium,
            tags: Vec::new(),
            recurrence: None,
            reminders: Vec::new(),
        }
    }
}

/// Where an instance of a recurring task sits in its series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeriesRef {
    pub id: Uuid,
    /// The scheduled instant of this instance (fixed when it is created; moving `due_at`
    /// reschedules this instance only).
    pub occurrence: DateTime<Utc>,
    /// 0 for the first instance.
    pub index: i32,
}

/// A stored, live (not deleted) task.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    pub id: Uuid,
    pub user_id: Uuid,
    pub fields: TaskFields,
    /// Set while the task is (or was) an instance of a recurring series.
    pub series: Option<SeriesRef>,
    pub status: TaskStatus,
    /// Starts at 1, +1 per change; the ETag and the events' `version`.
    pub version: i64,
    pub completed_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Task {
    pub fn snapshot(&self) -> TaskSnapshot {
        TaskSnapshot {
            title: self.fields.title.clone(),
            description: self.fields.description.clone(),
            status: self.status,
            due_at: self.fields.due_at,
            priority: self.fields.priority,
            tags: self.fields.tags.clone(),
            recurrence: self.fields.recurrence.clone(),
            reminders: self.fields.reminders.clone(),
            completed_at: self.completed_at,
            created_at: self.created_at,
            updated_at: self.updated_at,
            series_id: self.series.map(|s| s.id),
            occurrence: self.series.map(|s| s.occurrence),
        }
    }

    pub fn etag(&self) -> String {
        format!("\"{}\"", self.version)
    }
}

pub fn priority_str(p: Priority) -> &'static str {
    match p {
        Priority::Low => "low",
        Priority::Medium => "medium",
        Priority::High => "high",
        Priority::Urgent => "urgent",
    }
}

pub fn parse_priority(s: &str) -> Option<Priority> {
    match s {
        "low" => Some(Priority::Low),
        "medium" => Some(Priority::Medium),
        "high" => Some(Priority::High),
        "urgent" => Some(Priority::Urgent),
        _ => None,
    }
}

pub fn status_str(s: TaskStatus) -> &'static str {
    match s {
        TaskStatus::Open => "open",
        TaskStatus::Completed => "completed",
    }
}

pub fn parse_status(s: &str) -> Option<TaskStatus> {
    match s {
        "open" => Some(TaskStatus::Open),
        "completed" => Some(TaskStatus::Completed),
        _ => None,
    }
}

// Documentation-only mirrors of the contract enums (which cannot derive
// `ToSchema` here), so the OpenAPI document lists the allowed values.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum PriorityDoc {
    Low,
    Medium,
    High,
    Urgent,
}

#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum TaskStatusDoc {
    Open,
    Completed,
}

#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum RecurrenceModeDoc {
    FromDue,
    FromCompletion,
}

/// A recurrence rule: RFC 5545 RRULE evaluated in an IANA zone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RecurrenceBody {
    /// RRULE value, e.g. `FREQ=WEEKLY;BYDAY=MO,WE` (an `RRULE:` prefix is accepted).
    #[schema(example = "FREQ=WEEKLY;BYDAY=MO")]
    pub rrule: String,
    /// IANA time zone the rule's wall-clock times are in.
    #[schema(example = "Europe/Berlin")]
    pub tz: String,
    /// `from_due` (default): next due follows the previous due date;
    /// `from_completion`: it follows the completion time.
    #[schema(value_type = RecurrenceModeDoc)]
    pub mode: RecurrenceMode,
    /// Occurrences (scheduled instants) that are skipped, in order.
    #[serde(default)]
    pub exdates: Vec<DateTime<Utc>>,
}

impl From<&Recurrence> for RecurrenceBody {
    fn from(r: &Recurrence) -> Self {
        Self {
            rrule: r.rrule.clone(),
            tz: r.tz.clone(),
            mode: r.mode,
            exdates: r.exdates.clone(),
        }
    }
}

/// A reminder: exactly one of `before` (ISO-8601 duration before `due_at`)
/// or `at` (an instant with offset).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReminderBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "PT15M")]
    pub before: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<DateTime<Utc>>,
    /// Stable id of the reminder within its task (always set in answers). In a PATCH, name
    /// an existing reminder to keep it (and its snooze); an item without `id` keeps the
    /// reminder with the same rule, if any, else it is a new reminder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Uuid>,
    /// Read-only: set by `POST /tasks/{id}/reminders/{rid}/snooze`, the instant the
    /// reminder fires instead; cleared when its rule or the due date moves it. Ignored in
    /// requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snoozed_until: Option<DateTime<Utc>>,
    /// Where this reminder goes (`inbox`, `live`, `webhook`, `email`) instead of the
    /// owner's preferences for reminders; absent or `null`: the preferences.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<Vec<String>>,
}

impl From<&ReminderSpec> for ReminderBody {
    fn from(r: &ReminderSpec) -> Self {
        Self {
            before: r.before_seconds.map(format_iso_duration),
            at: r.at,
            id: r.id,
            snoozed_until: r.snoozed_until,
            channels: r.channels.clone(),
        }
    }
}

/// A task as the API returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TaskResponse {
    pub id: Uuid,
    pub title: String,
    pub description: Option<String>,
    #[schema(value_type = TaskStatusDoc)]
    pub status: TaskStatus,
    pub due_at: Option<DateTime<Utc>>,
    #[schema(value_type = PriorityDoc)]
    pub priority: Priority,
    pub tags: Vec<String>,
    pub recurrence: Option<RecurrenceBody>,
    pub reminders: Vec<ReminderBody>,
    /// Also sent as the `ETag` header; send it back in `If-Match`.
    pub version: i64,
    pub completed_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The series every instance of a recurring task shares; `null` if it never recurred.
    pub series_id: Option<Uuid>,
    /// The scheduled instant of this instance of its series.
    pub occurrence: Option<DateTime<Utc>>,
    /// Only in `GET /tasks/{id}`: the next three instances' scheduled instants if this one
    /// were completed now (fewer when the series ends; empty when it has ended or the task
    /// does not recur).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_occurrences: Option<Vec<DateTime<Utc>>>,
}

impl From<&Task> for TaskResponse {
    fn from(t: &Task) -> Self {
        Self {
            id: t.id,
            title: t.fields.title.clone(),
            description: t.fields.description.clone(),
            status: t.status,
            due_at: t.fields.due_at,
            priority: t.fields.priority,
            tags: t.fields.tags.clone(),
            recurrence: t.fields.recurrence.as_ref().map(RecurrenceBody::from),
            reminders: t.fields.reminders.iter().map(ReminderBody::from).collect(),
            version: t.version,
            completed_at: t.completed_at,
            created_at: t.created_at,
            updated_at: t.updated_at,
            series_id: t.series.map(|s| s.id),
            occurrence: t.series.map(|s| s.occurrence),
            next_occurrences: None,
        }
    }
}

/// Body of `POST /tasks` (documentation; the handler validates the raw JSON
/// so every field error can be reported at once).
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct CreateTaskRequest {
    /// 1 to 500 characters after trimming.
    pub title: String,
    pub description: Option<String>,
    /// RFC 3339 with an offset (`2026-05-01T09:00:00+02:00`); naive times are refused.
    pub due_at: Option<String>,
    #[schema(value_type = Option<PriorityDoc>)]
    pub priority: Option<String>,
    /// Up to 50 tags of 1 to 64 characters; trimmed and de-duplicated.
    pub tags: Option<Vec<String>>,
    pub recurrence: Option<RecurrenceBody>,
    pub reminders: Option<Vec<ReminderBody>>,
}

/// Body of `PATCH /tasks/{id}`: merge-patch semantics. An absent field is
/// unchanged; `null` clears `description`, `due_at`, `recurrence`, and
/// empties `tags` and `reminders`.
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct PatchTaskRequest {
    pub title: Option<String>,
    pub description: Option<String>,
    pub due_at: Option<String>,
    #[schema(value_type = Option<PriorityDoc>)]
    pub priority: Option<String>,
    pub tags: Option<Vec<String>>,
    pub recurrence: Option<RecurrenceBody>,
    pub reminders: Option<Vec<ReminderBody>>,
}

/// One page of `GET /tasks`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TaskPage {
    pub items: Vec<TaskResponse>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}
