//! Audit rows and their JSON representation. Everything here is pure: the
//! store hands over [`AuditRecord`]s, these functions shape the answer.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use taskflow_schemas::TaskSnapshot;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::tasks::{
    model::{SeriesRef, Task, TaskFields, TaskResponse},
    validate::{fields_json, FIELDS},
};

#[derive(Debug, thiserror::Error)]
pub enum MappingError {
    #[error("audit event {event_id}: payload is not a {{\"type\", \"event\"}} object")]
    NotAnEvent { event_id: Uuid },
    #[error("audit event {event_id}: invalid task snapshot: {source}")]
    Snapshot {
        event_id: Uuid,
        #[source]
        source: serde_json::Error,
    },
    #[error("audit event {event_id}: {field} is not an instant: {value}")]
    Instant {
        event_id: Uuid,
        field: &'static str,
        value: String,
    },
}

/// One `audit_log` row, as the store reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    pub event_id: Uuid,
    pub event_type: String,
    pub task_id: Uuid,
    pub user_id: Uuid,
    pub occurred_at: DateTime<Utc>,
    pub version: i64,
    pub correlation_id: String,
    pub causation_id: Option<String>,
    /// The event's serde JSON form: `{"type": "TaskUpdated", "event": {...}}`.
    pub payload: Value,
    /// For a `TaskReopened` only: the snapshot of the task's previous
    /// lifecycle event, because the reopen snapshot no longer carries the
    /// `completed_at` it cleared. `None` when unknown.
    pub previous_task: Option<Value>,
}

/// One changed field. `old`/`new` are JSON values in the API's
/// representation (the same as `GET /tasks/{id}` answers); `null` = unset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Change {
    pub field: String,
    pub old: Value,
    pub new: Value,
}

impl Change {
    fn new(field: &str, old: Value, new: Value) -> Self {
        Self {
            field: field.to_owned(),
            old,
            new,
        }
    }
}

/// One audited event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditEventResponse {
    pub event_id: Uuid,
    /// `TaskCreated`, `TaskUpdated`, `TaskCompleted`, `TaskReopened`,
    /// `TaskDeleted` or `ReminderDue`.
    pub event_type: String,
    pub task_id: Uuid,
    /// The task version the event produced (a `ReminderDue` carries the
    /// version it was scheduled from).
    pub version: i64,
    pub occurred_at: DateTime<Utc>,
    pub correlation_id: String,
    /// `event_id` of the event that caused this one, if any.
    pub causation_id: Option<String>,
    /// What the event changed. `TaskCreated`: every set field, `old` null.
    /// `TaskUpdated`: the fields the update changed. `TaskCompleted` /
    /// `TaskReopened`: `status` and `completed_at`. `TaskDeleted`:
    /// `deleted_at`. `ReminderDue`: empty.
    pub changes: Vec<Change>,
    /// The task right after the event (as `GET /tasks/{id}` would have
    /// answered then); `null` for events without a snapshot (`ReminderDue`).
    pub task: Option<TaskResponse>,
}

/// `GET /tasks/{id}/history`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TaskHistory {
    pub task_id: Uuid,
    /// Oldest first: version ascending, then `occurred_at`.
    pub items: Vec<AuditEventResponse>,
}

/// One page of `GET /audit`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditPage {
    /// In the order the audit log recorded the events (not necessarily
    /// `occurred_at` order: events are recorded asynchronously).
    pub items: Vec<AuditEventResponse>,
    /// The position after this page's last item: pass it as `cursor` to get
    /// what follows, now or later (events recorded later come after it).
    /// `null` when the page is empty: nothing follows the given cursor yet;
    /// ask again later with the same cursor.
    pub next_cursor: Option<String>,
}

/// Keeps the first record of each event id. `audit_log` is unique on
/// (event_id, occurred_at), not on the id alone, so this guards the answer
/// against a replay that ever wrote one event twice.
pub fn dedupe(records: Vec<AuditRecord>) -> Vec<AuditRecord> {
    let mut seen = HashSet::with_capacity(records.len());
    records
        .into_iter()
        .filter(|r| seen.insert(r.event_id))
        .collect()
}

pub fn event_response(rec: &AuditRecord) -> Result<AuditEventResponse, MappingError> {
    let event =
        rec.payload
            .get("event")
            .filter(|e| e.is_object())
            .ok_or(MappingError::NotAnEvent {
                event_id: rec.event_id,
            })?;
    let task = match event.get("task") {
        Some(snapshot) if !snapshot.is_null() => {
            let snapshot = parse_snapshot(rec.event_id, snapshot)?;
            Some(TaskResponse::from(&task_of(rec, snapshot)))
        }
        _ => None,
    };
    Ok(AuditEventResponse {
        event_id: rec.event_id,
        event_type: rec.event_type.clone(),
        task_id: rec.task_id,
        version: rec.version,
        occurred_at: rec.occurred_at,
        correlation_id: rec.correlation_id.clone(),
        causation_id: rec.causation_id.clone(),
        changes: derive_changes(rec.event_id, &rec.payload, rec.previous_task.as_ref())?,
        task,
    })
}

fn task_of(rec: &AuditRecord, s: TaskSnapshot) -> Task {
    Task {
        id: rec.task_id,
        user_id: rec.user_id,
        fields: fields_of(&s),
        series: s
            .series_id
            .zip(s.occurrence)
            .map(|(id, occurrence)| SeriesRef {
                id,
                occurrence,
                // Events do not carry the index; history answers never show it.
                index: 0,
            }),
        status: s.status,
        version: rec.version,
        completed_at: s.completed_at,
        created_at: s.created_at,
        updated_at: s.updated_at,
    }
}

fn fields_of(s: &TaskSnapshot) -> TaskFields {
    TaskFields {
        title: s.title.clone(),
        description: s.description.clone(),
        due_at: s.due_at,
        priority: s.priority,
        tags: s.tags.clone(),
        recurrence: s.recurrence.clone(),
        reminders: s.reminders.clone(),
    }
}

fn parse_snapshot(event_id: Uuid, v: &Value) -> Result<TaskSnapshot, MappingError> {
    serde_json::from_value(v.clone()).map_err(|source| MappingError::Snapshot { event_id, source })
}

/// A stored instant re-rendered exactly as the API renders instants, so a
/// `completed_at` change reads the same as the task's `completed_at`.
fn instant(event_id: Uuid, field: &'static str, v: Option<&Value>) -> Result<Value, MappingError> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(Value::Null);
    };
    let bad = || MappingError::Instant {
        event_id,
        field,
        value: v.to_string(),
    };
    let t: DateTime<Utc> = serde_json::from_value(v.clone()).map_err(|_| bad())?;
    serde_json::to_value(t).map_err(|_| bad())
}

/// `TaskUpdated.changes` values are JSON text; a value that is not (never
/// written by this API, but the row is immutable) is kept as a string
/// rather than making the whole history unreadable.
fn json_of_text(v: Option<&Value>) -> Value {
    match v {
        Some(Value::String(text)) => {
            serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.clone()))
        }
        _ => Value::Null,
    }
}

fn status(s: &str) -> Value {
    Value::String(s.to_owned())
}

/// The field-level changes an event describes. `payload` is the event's
/// serde JSON form; `previous_task` the snapshot before a reopen (see
/// [`AuditRecord::previous_task`]). Unknown event types (a future producer)
/// yield no changes rather than an error.
pub fn derive_changes(
    event_id: Uuid,
    payload: &Value,
    previous_task: Option<&Value>,
) -> Result<Vec<Change>, MappingError> {
    let not_an_event = || MappingError::NotAnEvent { event_id };
    let kind = payload
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(not_an_event)?;
    let event = payload.get("event").ok_or_else(not_an_event)?;
    let changes = match kind {
        "TaskCreated" => {
            let snapshot = parse_snapshot(event_id, event.get("task").unwrap_or(&Value::Null))?;
            let fields = fields_json(&fields_of(&snapshot));
            FIELDS
                .iter()
                .filter_map(|name| {
                    let v = &fields[*name];
                    let unset = v.is_null() || v.as_array().is_some_and(Vec::is_empty);
                    (!unset).then(|| Change::new(name, Value::Null, v.clone()))
                })
                .collect()
        }
        "TaskUpdated" => event
            .get("changes")
            .and_then(Value::as_array)
            .map(|changes| {
                changes
                    .iter()
                    .filter_map(|c| {
                        let field = c.get("field")?.as_str()?;
                        Some(Change::new(
                            field,
                            json_of_text(c.get("old_value")),
                            json_of_text(c.get("new_value")),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default(),
        "TaskCompleted" => vec![
            Change::new("status", status("open"), status("completed")),
            Change::new(
                "completed_at",
                Value::Null,
                instant(event_id, "completed_at", event.get("completed_at"))?,
            ),
        ],
        "TaskReopened" => vec![
            Change::new("status", status("completed"), status("open")),
            Change::new(
                "completed_at",
                instant(
                    event_id,
                    "completed_at",
                    previous_task.and_then(|t| t.get("completed_at")),
                )?,
                Value::Null,
            ),
        ],
        "ReminderSnoozed" => {
            let reminders = |task: &Value| -> Result<Value, MappingError> {
                let snapshot = parse_snapshot(event_id, task)?;
                Ok(fields_json(&fields_of(&snapshot))["reminders"].take())
            };
            let old = match previous_task {
                Some(t) => reminders(t)?,
                None => Value::Null,
            };
            let new = reminders(event.get("task").unwrap_or(&Value::Null))?;
            vec![Change::new("reminders", old, new)]
        }
        "TaskDeleted" => vec![Change::new(
            "deleted_at",
            Value::Null,
            instant(event_id, "deleted_at", event.get("deleted_at"))?,
        )],
        _ => Vec::new(),
    };
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use taskflow_schemas::{examples, Event, EventType};

    fn payload(t: EventType) -> Value {
        serde_json::to_value(examples::example(t)).unwrap()
    }

    fn record(event: &Event) -> AuditRecord {
        let m = event.metadata();
        AuditRecord {
            event_id: m.event_id,
            event_type: event.event_type().as_str().to_owned(),
            task_id: m.task_id,
            user_id: m.user_id,
            occurred_at: m.occurred_at,
            version: m.version,
            correlation_id: m.correlation_id.clone(),
            causation_id: m.causation_id.clone(),
            payload: serde_json::to_value(event).unwrap(),
            previous_task: None,
        }
    }

    fn id() -> Uuid {
        Uuid::from_u128(7)
    }

    #[test]
    fn updated_changes_are_parsed_from_json_text() {
        let changes = derive_changes(id(), &payload(EventType::TaskUpdated), None).unwrap();
        assert_eq!(
            changes,
            [
                Change::new("title", json!("Water"), json!("Water the plants")),
                Change::new("description", Value::Null, json!("balcony ones too")),
            ]
        );
        // structured values come back as JSON, not as text
        let p = json!({"type": "TaskUpdated", "event": {"changes": [
            {"field": "tags", "old_value": "[\"a\"]", "new_value": "[\"a\",\"b\"]"},
            {"field": "due_at", "old_value": "\"2026-01-01T00:00:00Z\"", "new_value": null},
            {"field": "title", "old_value": "not json", "new_value": "\"x\""}
        ]}});
        assert_eq!(
            derive_changes(id(), &p, None).unwrap(),
            [
                Change::new("tags", json!(["a"]), json!(["a", "b"])),
                Change::new("due_at", json!("2026-01-01T00:00:00Z"), Value::Null),
                Change::new("title", json!("not json"), json!("x")),
            ]
        );
    }

    #[test]
    fn created_lists_every_set_field_in_api_form() {
        let changes = derive_changes(id(), &payload(EventType::TaskCreated), None).unwrap();
        let fields: Vec<&str> = changes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(fields, FIELDS);
        assert!(changes.iter().all(|c| c.old.is_null()));
        let reminders = &changes[6].new;
        // the API form: ISO-8601 `before`, not the event's `before_seconds`
        assert_eq!(
            reminders[0],
            json!({"before": "PT1H", "id": "00000000-0000-0000-0000-000000000044",
                   "snoozed_until": "2026-01-01T23:03:20.000250Z",
                   "channels": ["inbox", "email"]})
        );
        assert_eq!(changes[3].new, json!("high"));
        assert_eq!(changes[1].new, json!("balcony ones too"));

        // unset fields (null description, no tags...) are left out
        let p = json!({"type": "TaskCreated", "event": {"task": {
            "title": "t", "description": null, "status": "open", "due_at": null,
            "priority": "medium", "tags": [], "recurrence": null, "reminders": [],
            "completed_at": null,
            "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"}}});
        assert_eq!(
            derive_changes(id(), &p, None).unwrap(),
            [
                Change::new("title", Value::Null, json!("t")),
                Change::new("priority", Value::Null, json!("medium")),
            ]
        );
    }

    #[test]
    fn completion_reopen_and_delete() {
        let done = derive_changes(id(), &payload(EventType::TaskCompleted), None).unwrap();
        assert_eq!(
            done[0],
            Change::new("status", json!("open"), json!("completed"))
        );
        assert_eq!(done[1].field, "completed_at");
        assert_eq!(done[1].old, Value::Null);
        assert_eq!(done[1].new, json!("2026-01-02T01:00:00.999999Z"));

        let p = payload(EventType::TaskReopened);
        let unknown = derive_changes(id(), &p, None).unwrap();
        assert_eq!(
            unknown,
            [
                Change::new("status", json!("completed"), json!("open")),
                Change::new("completed_at", Value::Null, Value::Null),
            ]
        );
        let before = json!({"completed_at": "2026-01-02T02:00:00+01:00"});
        let known = derive_changes(id(), &p, Some(&before)).unwrap();
        assert_eq!(known[1].old, json!("2026-01-02T01:00:00Z"));

        let snoozed = derive_changes(
            id(),
            &payload(EventType::ReminderSnoozed),
            Some(&payload(EventType::TaskCreated)["event"]["task"]),
        )
        .unwrap();
        assert_eq!(snoozed.len(), 1);
        assert_eq!(snoozed[0].field, "reminders");
        assert_eq!(
            snoozed[0].new[0]["snoozed_until"],
            "2026-01-01T23:03:20.000250Z"
        );
        let gone = derive_changes(id(), &payload(EventType::TaskDeleted), None).unwrap();
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].field, "deleted_at");
        assert!(gone[0].new.is_string());
    }

    #[test]
    fn reminder_and_unknown_types_have_no_changes() {
        assert!(derive_changes(id(), &payload(EventType::ReminderDue), None)
            .unwrap()
            .is_empty());
        let future = json!({"type": "TaskArchived", "event": {}});
        assert!(derive_changes(id(), &future, None).unwrap().is_empty());
    }

    #[test]
    fn malformed_payloads_are_errors() {
        assert!(derive_changes(id(), &json!("x"), None).is_err());
        assert!(derive_changes(id(), &json!({"type": "TaskCreated"}), None).is_err());
        let bad_instant = json!({"type": "TaskCompleted", "event": {"completed_at": "yesterday"}});
        assert!(matches!(
            derive_changes(id(), &bad_instant, None),
            Err(MappingError::Instant {
                field: "completed_at",
                ..
            })
        ));
    }

    #[test]
    fn responses_carry_the_snapshot_as_a_task() {
        let created = examples::example(EventType::TaskCreated);
        let r = event_response(&record(&created)).unwrap();
        let task = r.task.unwrap();
        assert_eq!(task.id, created.metadata().task_id);
        assert_eq!(task.version, 1);
        assert_eq!(task.title, "Water the plants");
        assert_eq!(r.event_type, "TaskCreated");
        assert_eq!(r.causation_id.as_deref(), Some("0190-cause"));

        let due = examples::example(EventType::ReminderDue);
        let r = event_response(&record(&due)).unwrap();
        assert!(r.task.is_none());
        assert!(r.changes.is_empty());
    }

    #[test]
    fn dedupe_keeps_the_first_of_each_event() {
        let a = record(&examples::example(EventType::TaskCreated));
        let b = record(&examples::example(EventType::TaskUpdated));
        let mut a2 = a.clone();
        a2.correlation_id = "second copy".into();
        let out = dedupe(vec![a.clone(), b.clone(), a2]);
        assert_eq!(out, [a, b]);
    }
}
