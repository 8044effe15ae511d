//! The tools' input and output JSON Schemas, derived with `schemars` from
//! types that mirror the API's request and response shapes, with the API's
//! own bounds (imported from `taskflow-producer`, so they cannot drift).
//!
//! These types only describe: the tools forward the caller's arguments to
//! the API as sent, so the API's validation (every field error at once) is
//! the one that decides, exactly as for an HTTP client.

#![allow(dead_code)]

use chrono::{DateTime, Utc};
use schemars::{JsonSchema, Schema};
use serde_json::Value;
use taskflow_producer::recurrence::MAX_PREVIEW;
use taskflow_producer::tasks::validate::{
    DESCRIPTION_MAX_CHARS, MAX_LIMIT, MAX_REMINDERS, MAX_TAGS, Q_MAX_CHARS, RRULE_MAX_CHARS,
    TAG_MAX_CHARS, TITLE_MAX_CHARS,
};

/// For an optional field the API refuses `null` for (`priority`): the
/// derived `anyOf: [T, null]` becomes `T`, so the field stays optional but
/// not nullable.
fn non_null(schema: &mut Schema) {
    let Some(obj) = schema.as_object_mut() else {
        return;
    };
    if let Some(Value::Array(any)) = obj.remove("anyOf") {
        let mut rest: Vec<Value> = any
            .into_iter()
            .filter(|s| s.get("type") != Some(&Value::from("null")))
            .collect();
        match (rest.len(), rest.pop()) {
            (1, Some(Value::Object(inner))) => {
                for (k, v) in inner {
                    obj.entry(k).or_insert(v);
                }
            }
            (_, last) => {
                rest.extend(last);
                obj.insert("anyOf".into(), Value::Array(rest));
            }
        }
    }
}

/// Task priority.
#[derive(JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Low,
    Medium,
    High,
    Urgent,
}

/// Task status.
#[derive(JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Open,
    Completed,
}

/// How the next occurrence is computed.
#[derive(JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RecurrenceMode {
    /// The next due date follows the previous due date (default).
    FromDue,
    /// The next due date follows the completion time.
    FromCompletion,
}

/// A repeating task: an RFC 5545 RRULE evaluated in an IANA time zone.
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Recurrence {
    /// RRULE value, at most hourly, e.g. `FREQ=WEEKLY;BYDAY=MO,WE`.
    #[schemars(length(min = 1, max = RRULE_MAX_CHARS))]
    pub rrule: String,
    /// IANA time zone the rule's wall-clock times are in, e.g. `Europe/Berlin`.
    pub tz: String,
    /// `from_due` (default) or `from_completion`.
    pub mode: Option<RecurrenceMode>,
}

/// A reminder: either relative to the due date or at a fixed instant.
#[derive(JsonSchema)]
#[serde(untagged)]
pub enum Reminder {
    Relative(RelativeReminder),
    Absolute(AbsoluteReminder),
}

/// Remind this long before `due_at` (the task needs a due date).
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RelativeReminder {
    /// ISO-8601 duration, e.g. `PT15M`, `P1D`.
    pub before: String,
}

/// Remind at this instant.
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AbsoluteReminder {
    /// RFC 3339 timestamp with an offset, e.g. `2026-12-01T07:00:00Z`.
    #[schemars(extend("format" = "date-time"))]
    pub at: String,
}

/// Arguments of `create_task`.
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTask {
    /// What to do; not blank, stored trimmed.
    #[schemars(length(min = 1, max = TITLE_MAX_CHARS))]
    pub title: String,
    /// Longer notes.
    #[schemars(length(max = DESCRIPTION_MAX_CHARS))]
    pub description: Option<String>,
    /// When it is due: RFC 3339 with an offset (`2026-12-01T09:00:00+01:00`);
    /// a time without an offset is refused, since its instant is ambiguous.
    #[schemars(extend("format" = "date-time"))]
    pub due_at: Option<String>,
    /// Default `medium`.
    #[schemars(transform = non_null)]
    pub priority: Option<Priority>,
    /// Labels, trimmed and de-duplicated.
    #[schemars(length(max = MAX_TAGS), inner(length(min = 1, max = TAG_MAX_CHARS)))]
    pub tags: Option<Vec<String>>,
    /// Makes the task repeat: completing it creates the next occurrence.
    pub recurrence: Option<Recurrence>,
    /// Reminders; a relative one (`before`) needs `due_at`.
    #[schemars(length(max = MAX_REMINDERS))]
    pub reminders: Option<Vec<Reminder>>,
    /// Optional key making a retried create safe: a retry with the same key
    /// and arguments returns the task created the first time.
    #[schemars(length(min = 1, max = 255), regex(pattern = r"^[!-~]+$"))]
    pub idempotency_key: Option<String>,
}

/// Arguments of `list_tasks`. Every filter is optional; they combine with AND.
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListTasks {
    /// Only open or only completed tasks.
    pub status: Option<Status>,
    /// Only tasks carrying every one of these tags.
    #[schemars(length(max = MAX_TAGS), inner(length(min = 1, max = TAG_MAX_CHARS)))]
    pub tag: Option<Vec<String>>,
    /// Only tasks of this priority.
    pub priority: Option<Priority>,
    /// Due strictly after this instant (RFC 3339 with an offset).
    #[schemars(extend("format" = "date-time"))]
    pub due_after: Option<String>,
    /// Due strictly before this instant (RFC 3339 with an offset).
    #[schemars(extend("format" = "date-time"))]
    pub due_before: Option<String>,
    /// Case-insensitive text searched in title and description.
    #[schemars(length(max = Q_MAX_CHARS))]
    pub q: Option<String>,
    /// Page size (default 50).
    #[schemars(range(min = 1, max = MAX_LIMIT))]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page, to get the next one.
    pub cursor: Option<String>,
}

/// Arguments naming one task.
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskRef {
    /// The task id (a UUID, as returned by `create_task` or `list_tasks`).
    #[schemars(extend("format" = "uuid"))]
    pub id: String,
}

/// Arguments of a state change (`complete_task`, `reopen_task`, `delete_task`).
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskChange {
    /// The task id (a UUID).
    #[schemars(extend("format" = "uuid"))]
    pub id: String,
    /// Optional optimistic-concurrency check: the task's `version` you last
    /// saw. If the task changed since, the call fails (412) and nothing is
    /// changed; read the task again and decide anew.
    #[schemars(range(min = 1))]
    pub if_version: Option<i64>,
}

/// Arguments of `snooze_reminder`: exactly one of `for` and `until`.
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SnoozeReminder {
    /// The task id (a UUID).
    #[schemars(extend("format" = "uuid"))]
    pub id: String,
    /// The reminder's id: the `id` of one of the task's `reminders`.
    #[schemars(extend("format" = "uuid"))]
    pub reminder_id: String,
    /// Snooze for this long from now: a positive ISO-8601 duration, e.g. `PT10M`, `PT1H`,
    /// `P1D`; zero rings it at once.
    #[serde(rename = "for")]
    pub for_: Option<String>,
    /// Or until this instant: RFC 3339 with an offset (a past instant rings it at once).
    #[schemars(extend("format" = "date-time"))]
    pub until: Option<String>,
    /// Optional optimistic-concurrency check, as for `update_task`.
    #[schemars(range(min = 1))]
    pub if_version: Option<i64>,
}

/// Arguments of `list_notifications`.
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListNotifications {
    /// At most this many (default 50).
    #[schemars(range(min = 1, max = MAX_LIMIT))]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// Arguments naming one notification.
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NotificationRef {
    /// The notification id (a UUID, as returned by `list_notifications`).
    #[schemars(extend("format" = "uuid"))]
    pub id: String,
}

/// A notification of the user's inbox.
#[derive(JsonSchema)]
pub struct Notification {
    #[schemars(extend("format" = "uuid"))]
    pub id: String,
    /// What kind of notification, e.g. `reminder_due`.
    pub kind: String,
    pub task_id: Option<String>,
    pub title: String,
    pub body: Option<String>,
    pub data: Value,
    pub created_at: DateTime<Utc>,
    /// When it was marked read; `null` while unread.
    pub read_at: Option<DateTime<Utc>>,
}

/// One page of the inbox: unread first, then newest first.
#[derive(JsonSchema)]
pub struct NotificationPage {
    pub items: Vec<Notification>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// Arguments of `update_task`: `id`, optionally `if_version`, and the fields
/// to change. An absent field is left as is; `null` clears `description`,
/// `due_at` and `recurrence` and empties `tags` and `reminders`.
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTask {
    /// The task id (a UUID).
    #[schemars(extend("format" = "uuid"))]
    pub id: String,
    /// Optional optimistic-concurrency check (see `complete_task`).
    #[schemars(range(min = 1))]
    pub if_version: Option<i64>,
    /// New title; not blank.
    #[schemars(length(min = 1, max = TITLE_MAX_CHARS))]
    pub title: Option<String>,
    /// New description, or `null` to clear it.
    #[schemars(length(max = DESCRIPTION_MAX_CHARS))]
    pub description: Option<String>,
    /// New due instant (RFC 3339 with an offset), or `null` to clear it.
    #[schemars(extend("format" = "date-time"))]
    pub due_at: Option<String>,
    /// New priority.
    #[schemars(transform = non_null)]
    pub priority: Option<Priority>,
    /// The new complete list of tags (replaces the old one), or `null`.
    #[schemars(length(max = MAX_TAGS), inner(length(min = 1, max = TAG_MAX_CHARS)))]
    pub tags: Option<Vec<String>>,
    /// New recurrence, or `null` to stop repeating.
    pub recurrence: Option<Recurrence>,
    /// The new complete list of reminders (replaces the old one), or `null`.
    #[schemars(length(max = MAX_REMINDERS))]
    pub reminders: Option<Vec<Reminder>>,
}

/// A recurrence as stored.
#[derive(JsonSchema)]
pub struct RecurrenceOut {
    pub rrule: String,
    pub tz: String,
    pub mode: RecurrenceMode,
}

/// A reminder as stored: exactly one of `before` and `at`, its `id`, and `snoozed_until`
/// while it is snoozed.
#[derive(JsonSchema)]
pub struct ReminderOut {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<DateTime<Utc>>,
    /// Stable id of the reminder (what `snooze_reminder` takes).
    #[schemars(extend("format" = "uuid"))]
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snoozed_until: Option<DateTime<Utc>>,
}

/// A task, as the API returns it.
#[derive(JsonSchema)]
pub struct Task {
    #[schemars(extend("format" = "uuid"))]
    pub id: String,
    pub title: String,
    pub description: Option<String>,
    pub status: Status,
    pub due_at: Option<DateTime<Utc>>,
    pub priority: Priority,
    pub tags: Vec<String>,
    pub recurrence: Option<RecurrenceOut>,
    pub reminders: Vec<ReminderOut>,
    /// Increases with every change; pass it as `if_version` to change the
    /// task only if nobody else did meanwhile.
    pub version: i64,
    pub completed_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One page of tasks, oldest first.
#[derive(JsonSchema)]
pub struct TaskPage {
    pub items: Vec<Task>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// The result of `delete_task`.
#[derive(JsonSchema)]
pub struct Deleted {
    #[schemars(extend("format" = "uuid"))]
    pub id: String,
    /// Always true.
    pub deleted: bool,
}

/// Arguments of `preview_recurrence`.
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PreviewRecurrence {
    /// RRULE value, at most hourly, e.g. `FREQ=WEEKLY;BYDAY=MO,WE`.
    #[schemars(length(min = 1, max = RRULE_MAX_CHARS))]
    pub rrule: String,
    /// IANA time zone the rule's wall-clock times are in, e.g. `Europe/Berlin`.
    pub tz: String,
    /// The first occurrence, as a task's `due_at` would be (RFC 3339 with an offset);
    /// now when absent or null.
    #[schemars(extend("format" = "date-time"))]
    pub start: Option<String>,
    /// How many occurrences to list (default 5).
    #[schemars(range(min = 1, max = MAX_PREVIEW))]
    pub count: Option<u32>,
}

/// What a rule means: in words, and its next occurrences.
#[derive(JsonSchema)]
pub struct RecurrencePreview {
    pub rrule: String,
    /// The rule in plain English, e.g. "every Monday at 09:00" (in `tz`).
    pub description: String,
    pub start: DateTime<Utc>,
    /// The occurrences after `start`, as instants.
    pub next: Vec<DateTime<Utc>>,
}
