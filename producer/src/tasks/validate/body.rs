//! Create and patch bodies: every field parsed on its own, then the rules
//! that span fields checked on the merged task; and the field-level changes
//! a patch makes.

use chrono::{DateTime, Utc};
use serde_json::Value;
use taskflow_schemas::{FieldChange, Priority, Recurrence, ReminderSpec};
use uuid::Uuid;

use super::{
    instant::parse_instant,
    recurrence::{check_rrule, parse_recurrence},
    reminders::{assign_ids, parse_reminders},
    text::{parse_description, parse_tags, parse_title},
};
use crate::{
    problem::FieldError,
    tasks::model::{parse_priority, RecurrenceBody, ReminderBody, TaskFields},
};

/// The client-settable fields, in the order changes are reported.
pub const FIELDS: [&str; 7] = [
    "title",
    "description",
    "due_at",
    "priority",
    "tags",
    "recurrence",
    "reminders",
];

/// A parsed request body: `None` = absent (unchanged). For nullable fields
/// the inner `Option` is `None` when the client sent `null`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldsPatch {
    pub title: Option<String>,
    pub description: Option<Option<String>>,
    pub due_at: Option<Option<DateTime<Utc>>>,
    pub priority: Option<Priority>,
    pub tags: Option<Vec<String>>,
    pub recurrence: Option<Option<Recurrence>>,
    pub reminders: Option<Vec<ReminderSpec>>,
}

impl FieldsPatch {
    pub fn apply(&self, base: &TaskFields) -> TaskFields {
        let mut f = base.clone();
        if let Some(v) = &self.title {
            f.title = v.clone();
        }
        if let Some(v) = &self.description {
            f.description = v.clone();
        }
        if let Some(v) = &self.due_at {
            f.due_at = *v;
        }
        if let Some(v) = self.priority {
            f.priority = v;
        }
        if let Some(v) = &self.tags {
            f.tags = v.clone();
        }
        if let Some(v) = &self.recurrence {
            f.recurrence = v.clone();
        }
        // Ids and snoozes are settled against the task's current reminders whenever the
        // list or the due date changes (a due change may end a relative reminder's snooze).
        let reminders = self.reminders.as_deref().unwrap_or(&base.reminders);
        f.reminders = assign_ids(
            &base.reminders,
            base.due_at,
            reminders,
            f.due_at,
            Uuid::now_v7,
        );
        f
    }
}

/// Validates a `POST /tasks` body into the fields of a new task.
pub fn validate_create(body: &Value, now: DateTime<Utc>) -> Result<TaskFields, Vec<FieldError>> {
    let patch = parse_body(body, true)?;
    let fields = patch.apply(&TaskFields::default());
    check_fields(&fields, now)?;
    Ok(fields)
}

/// Validates a `PATCH /tasks/{id}` body against the current fields and
/// returns the fields after the patch.
pub fn validate_patch(
    current: &TaskFields,
    body: &Value,
    now: DateTime<Utc>,
) -> Result<TaskFields, PatchError> {
    let patch = parse_body(body, false).map_err(PatchError::Invalid)?;
    apply_patch(current, &patch, now)
}

/// Applies a parsed patch to the current fields and checks the rules that
/// span fields on the result.
pub fn apply_patch(
    current: &TaskFields,
    patch: &FieldsPatch,
    now: DateTime<Utc>,
) -> Result<TaskFields, PatchError> {
    let fields = patch.apply(current);
    check_fields(&fields, now).map_err(|errors| {
        // A rule that does not parse is wrong whatever the task holds; a
        // relative reminder without a due date is a valid patch meeting the
        // task's state (e.g. removing `due_at` while such reminders exist).
        if errors.iter().any(|e| e.field == "recurrence.rrule") {
            PatchError::Invalid(errors)
        } else {
            PatchError::Conflict(errors)
        }
    })?;
    Ok(fields)
}

/// Why a patch was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum PatchError {
    /// The body itself is invalid (422).
    Invalid(Vec<FieldError>),
    /// Each field is valid, but the task after the patch would break a rule
    /// that spans fields (409).
    Conflict(Vec<FieldError>),
}

impl PatchError {
    pub fn errors(&self) -> &[FieldError] {
        match self {
            PatchError::Invalid(e) | PatchError::Conflict(e) => e,
        }
    }
}

/// Parses each field on its own; `require_title` is set for creation.
pub fn parse_body(body: &Value, require_title: bool) -> Result<FieldsPatch, Vec<FieldError>> {
    let Some(obj) = body.as_object() else {
        return Err(vec![FieldError::new("body", "must be a JSON object")]);
    };
    let mut errors = Vec::new();
    let mut patch = FieldsPatch::default();
    for key in obj.keys() {
        if !FIELDS.contains(&key.as_str()) {
            errors.push(FieldError::new(
                key.as_str(),
                format!("unknown field; allowed: {}", FIELDS.join(", ")),
            ));
        }
    }
    match obj.get("title") {
        None if require_title => errors.push(FieldError::new("title", "is required")),
        None => {}
        Some(v) => match parse_title(v) {
            Ok(t) => patch.title = Some(t),
            Err(e) => errors.push(FieldError::new("title", e)),
        },
    }
    if let Some(v) = obj.get("description") {
        match parse_description(v) {
            Ok(d) => patch.description = Some(d),
            Err(e) => errors.push(FieldError::new("description", e)),
        }
    }
    if let Some(v) = obj.get("due_at") {
        match v {
            Value::Null => patch.due_at = Some(None),
            Value::String(s) => match parse_instant(s) {
                Ok(t) => patch.due_at = Some(Some(t)),
                Err(e) => errors.push(FieldError::new("due_at", e)),
            },
            _ => errors.push(FieldError::new(
                "due_at",
                "must be an RFC 3339 string or null",
            )),
        }
    }
    if let Some(v) = obj.get("priority") {
        match v.as_str().and_then(parse_priority) {
            Some(p) => patch.priority = Some(p),
            None => errors.push(FieldError::new(
                "priority",
                "must be one of low, medium, high, urgent",
            )),
        }
    }
    if let Some(v) = obj.get("tags") {
        match parse_tags(v) {
            Ok(t) => patch.tags = Some(t),
            Err(mut e) => errors.append(&mut e),
        }
    }
    if let Some(v) = obj.get("recurrence") {
        match parse_recurrence(v) {
            Ok(r) => patch.recurrence = Some(r),
            Err(mut e) => errors.append(&mut e),
        }
    }
    if let Some(v) = obj.get("reminders") {
        match parse_reminders(v) {
            Ok(r) => patch.reminders = Some(r),
            Err(mut e) => errors.append(&mut e),
        }
    }
    if errors.is_empty() {
        Ok(patch)
    } else {
        Err(errors)
    }
}

/// Rules that span fields, checked on the complete (merged) task.
pub fn check_fields(f: &TaskFields, now: DateTime<Utc>) -> Result<(), Vec<FieldError>> {
    let mut errors = Vec::new();
    if f.due_at.is_none() {
        for (i, r) in f.reminders.iter().enumerate() {
            if r.before_seconds.is_some() {
                errors.push(FieldError::new(
                    format!("reminders[{i}].before"),
                    "a reminder relative to the due date needs due_at",
                ));
            }
        }
    }
    if let Some(r) = &f.recurrence {
        let rule = check_rrule(&r.rrule, &r.tz, f.due_at, now);
        let rule_ok = rule.is_ok();
        if let Err(e) = rule {
            errors.push(FieldError::new("recurrence.rrule", e));
        }
        // The next instance follows the previous one's scheduled instant: without a due date
        // there is none. On create this is a 422; a patch that would leave a from_due task
        // without due_at meets the task's state and is a 409 (see `apply_patch`). Checked
        // once the rule itself is valid, so a bad rule gets one error, not two.
        if rule_ok && r.mode == taskflow_schemas::RecurrenceMode::FromDue && f.due_at.is_none() {
            errors.push(FieldError::new(
                "due_at",
                "a recurring task in from_due mode needs due_at (or use mode from_completion)",
            ));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Field-level differences for `TaskUpdated.changes`; values are JSON text in
/// the API's representation (`None` = null).
pub fn compute_changes(old: &TaskFields, new: &TaskFields) -> Vec<FieldChange> {
    let a = fields_json(old);
    let b = fields_json(new);
    FIELDS
        .iter()
        .filter_map(|name| {
            let (o, n) = (&a[*name], &b[*name]);
            (o != n).then(|| FieldChange {
                field: (*name).to_owned(),
                old_value: json_text(o),
                new_value: json_text(n),
            })
        })
        .collect()
}

fn json_text(v: &Value) -> Option<String> {
    if v.is_null() {
        None
    } else {
        Some(v.to_string())
    }
}

/// The settable fields in the API's JSON representation (what `changes`
/// values are the JSON text of).
pub fn fields_json(f: &TaskFields) -> Value {
    serde_json::json!({
        "title": f.title,
        "description": f.description,
        "due_at": f.due_at,
        "priority": f.priority,
        "tags": f.tags,
        "recurrence": f.recurrence.as_ref().map(RecurrenceBody::from),
        "reminders": f.reminders.iter().map(ReminderBody::from).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;
    use taskflow_schemas::RecurrenceMode;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
    }

    fn fields_of(errs: &[FieldError]) -> Vec<&str> {
        errs.iter().map(|e| e.field.as_str()).collect()
    }

    #[test]
    fn minimal_create_gets_defaults() {
        let f = validate_create(&json!({"title": "  Buy milk "}), now()).unwrap();
        assert_eq!(f.title, "Buy milk");
        assert_eq!(f.priority, Priority::Medium);
        assert!(f.tags.is_empty() && f.reminders.is_empty());
    }

    #[test]
    fn body_must_be_object_and_fields_known() {
        assert!(validate_create(&json!([1]), now()).is_err());
        let e = validate_create(&json!({"title": "a", "status": "completed"}), now()).unwrap_err();
        assert_eq!(fields_of(&e), ["status"]);
    }

    #[test]
    fn naive_timestamp_is_rejected() {
        let e = validate_create(
            &json!({"title": "a", "due_at": "2026-05-01T09:00:00"}),
            now(),
        )
        .unwrap_err();
        assert_eq!(fields_of(&e), ["due_at"]);
        let f = validate_create(
            &json!({"title": "a", "due_at": "2026-05-01T09:00:00.1234567+02:00"}),
            now(),
        )
        .unwrap();
        assert_eq!(
            f.due_at.unwrap().to_rfc3339(),
            "2026-05-01T07:00:00.123456+00:00"
        );
    }

    #[test]
    fn priority_values() {
        let f = validate_create(&json!({"title": "a", "priority": "urgent"}), now()).unwrap();
        assert_eq!(f.priority, Priority::Urgent);
        assert!(validate_create(&json!({"title": "a", "priority": "URGENT"}), now()).is_err());
        assert!(validate_create(&json!({"title": "a", "priority": null}), now()).is_err());
    }

    #[test]
    fn recurrence_valid_and_normalised() {
        let f = validate_create(
            &json!({"title": "a", "due_at": "2026-03-29T02:30:00+02:00",
                    "recurrence": {"rrule": "RRULE:FREQ=WEEKLY;BYDAY=MO,WE", "tz": "Europe/Berlin"}}),
            now(),
        )
        .unwrap();
        let r = f.recurrence.unwrap();
        assert_eq!(r.rrule, "FREQ=WEEKLY;BYDAY=MO,WE");
        assert_eq!(r.mode, RecurrenceMode::FromDue);
        // without a due date the rule is anchored at "now"
        assert!(validate_create(
            &json!({"title": "a", "recurrence": {"rrule": "FREQ=DAILY", "tz": "UTC", "mode": "from_completion"}}),
            now()
        )
        .is_ok()); // from_due needs a due date to follow.
        let e = validate_create(
            &json!({"title": "a", "recurrence": {"rrule": "FREQ=DAILY", "tz": "UTC"}}),
            now(),
        )
        .unwrap_err();
        assert_eq!(fields_of(&e), ["due_at"]);
    }

    #[test]
    fn bad_rrule_is_rejected() {
        for bad in [
            "FREQ=FORTNIGHTLY",
            "BYDAY=MO",
            "FREQ=DAILY;BYHOUR=25",
            "",
            "FREQ=DAILY\nEXDATE:20260101T000000Z",
            "FREQ=MINUTELY",
        ] {
            let e = validate_create(
                &json!({"title": "a", "recurrence": {"rrule": bad, "tz": "UTC"}}),
                now(),
            )
            .unwrap_err();
            assert_eq!(fields_of(&e), ["recurrence.rrule"], "{bad:?}");
        }
    }

    #[test]
    fn unknown_zone_is_rejected() {
        let e = validate_create(
            &json!({"title": "a", "recurrence": {"rrule": "FREQ=DAILY", "tz": "Mars/Olympus"}}),
            now(),
        )
        .unwrap_err();
        assert_eq!(fields_of(&e), ["recurrence.tz"]);
        let e = validate_create(
            &json!({"title": "a", "recurrence": {"rrule": "FREQ=DAILY", "tz": "UTC", "mode": "sometimes"}}),
            now(),
        )
        .unwrap_err();
        assert_eq!(fields_of(&e), ["recurrence.mode"]);
    }

    #[test]
    fn reminders_rules() {
        let e = validate_create(
            &json!({"title": "a", "reminders": [{"before": "-PT5M"}]}),
            now(),
        )
        .unwrap_err();
        assert_eq!(fields_of(&e), ["reminders[0].before"]);
        // relative reminders need a due date
        let e = validate_create(
            &json!({"title": "a", "reminders": [{"before": "PT5M"}]}),
            now(),
        )
        .unwrap_err();
        assert_eq!(fields_of(&e), ["reminders[0].before"]);
        assert!(e[0].reason.contains("due_at"));
        let f = validate_create(
            &json!({"title": "a", "due_at": "2026-05-01T09:00:00Z",
                    "reminders": [{"before": "PT15M"}, {"at": "2026-05-01T08:00:00+02:00"}, {"before": "PT15M"}]}),
            now(),
        )
        .unwrap();
        assert_eq!(f.reminders.len(), 2);
        assert_eq!(f.reminders[0].before_seconds, Some(900));
        assert_eq!(
            f.reminders[1].at,
            Some(Utc.with_ymd_and_hms(2026, 5, 1, 6, 0, 0).unwrap())
        );
        for bad in [
            json!([{"before": "PT1M", "at": "2026-05-01T08:00:00Z"}]),
            json!([{}]),
            json!([{"at": "2026-05-01T08:00:00"}]),
            json!([{"every": "PT1M"}]),
            json!(["PT1M"]),
        ] {
            assert!(
                validate_create(
                    &json!({"title": "a", "due_at": "2026-05-01T09:00:00Z", "reminders": bad}),
                    now()
                )
                .is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn errors_are_collected_together() {
        let e = validate_create(
            &json!({"title": "", "due_at": "tomorrow", "priority": "meh", "tags": [""]}),
            now(),
        )
        .unwrap_err();
        assert_eq!(fields_of(&e), ["title", "due_at", "priority", "tags[0]"]);
    }

    #[test]
    fn patch_merge_semantics_and_changes() {
        let current = validate_create(
            &json!({"title": "a", "description": "d", "due_at": "2026-05-01T09:00:00Z", "tags": ["x"]}),
            now(),
        )
        .unwrap();
        // absent = unchanged
        let same = validate_patch(&current, &json!({}), now()).unwrap();
        assert_eq!(same, current);
        assert!(compute_changes(&current, &same).is_empty());
        // setting the same value changes nothing either
        let same = validate_patch(&current, &json!({"title": " a "}), now()).unwrap();
        assert!(compute_changes(&current, &same).is_empty());
        // null clears
        let cleared = validate_patch(
            &current,
            &json!({"description": null, "tags": null, "priority": "high"}),
            now(),
        )
        .unwrap();
        assert_eq!(cleared.description, None);
        assert!(cleared.tags.is_empty());
        let changes = compute_changes(&current, &cleared);
        let names: Vec<&str> = changes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(names, ["description", "priority", "tags"]);
        assert_eq!(changes[0].old_value.as_deref(), Some("\"d\""));
        assert_eq!(changes[0].new_value, None);
        assert_eq!(changes[1].new_value.as_deref(), Some("\"high\""));
        assert_eq!(changes[2].old_value.as_deref(), Some("[\"x\"]"));
        assert_eq!(changes[2].new_value.as_deref(), Some("[]"));
        // title cannot be cleared
        assert!(validate_patch(&current, &json!({"title": null}), now()).is_err());
    }

    #[test]
    fn patch_checks_merged_state() {
        let current = validate_create(
            &json!({"title": "a", "due_at": "2026-05-01T09:00:00Z", "reminders": [{"before": "PT5M"}]}),
            now(),
        )
        .unwrap();
        let e = validate_patch(&current, &json!({"due_at": null}), now()).unwrap_err();
        assert!(matches!(e, PatchError::Conflict(_)));
        assert_eq!(fields_of(e.errors()), ["reminders[0].before"]);
        let e = validate_patch(
            &current,
            &json!({"reminders": [{"before": "-PT1M"}]}),
            now(),
        )
        .unwrap_err();
        assert!(matches!(e, PatchError::Invalid(_)));
        assert!(validate_patch(&current, &json!({"due_at": null, "reminders": []}), now()).is_ok());
    }

    #[test]
    fn nul_in_any_text_field_names_the_field() {
        let e = validate_create(
            &json!({"title": "a\u{0}", "description": "\u{0}", "tags": ["x\u{0}"],
                    "recurrence": {"rrule": "FREQ=DAILY\u{0}", "tz": "UTC"}}),
            now(),
        )
        .unwrap_err();
        assert_eq!(
            fields_of(&e),
            ["title", "description", "tags[0]", "recurrence.rrule"]
        );
    }

    #[test]
    fn multi_byte_rrule_is_a_field_error() {
        let e = validate_create(
            &json!({"title": "a", "recurrence": {"rrule": "FREQ=é", "tz": "UTC"}}),
            now(),
        )
        .unwrap_err();
        assert_eq!(fields_of(&e), ["recurrence.rrule"]);
    }
}
