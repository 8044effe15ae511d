//! Validation at the edge: plain functions from raw JSON to domain values,
//! collecting every field error (not just the first) so one 422 tells the
//! client everything that is wrong. Nothing here touches the database.

use std::str::FromStr;

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use chrono::{DateTime, SubsecRound, Utc};
use serde_json::{Map, Value};
use taskflow_schemas::{
    FieldChange, Priority, Recurrence, RecurrenceMode, ReminderSpec, TaskStatus,
};
use uuid::Uuid;

use super::model::{parse_priority, parse_status, RecurrenceBody, ReminderBody, TaskFields};
use crate::problem::FieldError;

pub const TITLE_MAX_CHARS: usize = 500;
pub const DESCRIPTION_MAX_CHARS: usize = 10_000;
pub const MAX_TAGS: usize = 50;
pub const TAG_MAX_CHARS: usize = 64;
pub const MAX_REMINDERS: usize = 20;
pub const RRULE_MAX_CHARS: usize = 1_000;
pub const Q_MAX_CHARS: usize = 200;
pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 200;

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
        if let Some(v) = &self.reminders {
            f.reminders = v.clone();
        }
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
) -> Result<TaskFields, Vec<FieldError>> {
    let patch = parse_body(body, false)?;
    let fields = patch.apply(current);
    check_fields(&fields, now)?;
    Ok(fields)
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
        if let Err(e) = check_rrule(&r.rrule, &r.tz, f.due_at, now) {
            errors.push(FieldError::new("recurrence.rrule", e));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

pub fn parse_title(v: &Value) -> Result<String, String> {
    let s = v.as_str().ok_or("must be a string")?;
    let t = s.trim();
    let n = t.chars().count();
    if n == 0 {
        return Err("must not be empty".to_owned());
    }
    if n > TITLE_MAX_CHARS {
        return Err(format!(
            "must be at most {TITLE_MAX_CHARS} characters (got {n})"
        ));
    }
    Ok(t.to_owned())
}

fn parse_description(v: &Value) -> Result<Option<String>, String> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => {
            let n = s.chars().count();
            if n > DESCRIPTION_MAX_CHARS {
                return Err(format!(
                    "must be at most {DESCRIPTION_MAX_CHARS} characters"
                ));
            }
            // An all-blank description carries nothing: store it as absent.
            Ok(if s.trim().is_empty() {
                None
            } else {
                Some(s.clone())
            })
        }
        _ => Err("must be a string or null".to_owned()),
    }
}

/// RFC 3339 with an explicit offset (`Z` or `+02:00`). A naive timestamp is
/// refused rather than guessed: the old design crashed on exactly that mix.
/// Stored at PostgreSQL's microsecond precision so what we answer equals
/// what a later read returns.
pub fn parse_instant(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s.trim())
        .map(|t| t.with_timezone(&Utc).trunc_subsecs(6))
        .map_err(|_| {
            format!("{s:?} is not an RFC 3339 timestamp with an offset (e.g. 2026-05-01T09:00:00+02:00)")
        })
}

/// `limit` of a paginated list: 1 to [`MAX_LIMIT`].
pub fn parse_limit(value: &str) -> Result<i64, FieldError> {
    match value.trim().parse::<i64>() {
        Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        _ => Err(FieldError::new(
            "limit",
            format!("must be an integer from 1 to {MAX_LIMIT}"),
        )),
    }
}

/// `cursor` of a paginated list: only what this API handed out decodes.
pub fn parse_cursor(value: &str) -> Result<Cursor, FieldError> {
    Cursor::decode(value)
        .ok_or_else(|| FieldError::new("cursor", "is not a cursor returned by this API"))
}

pub fn parse_tags(v: &Value) -> Result<Vec<String>, Vec<FieldError>> {
    let arr = match v {
        Value::Null => return Ok(Vec::new()),
        Value::Array(a) => a,
        _ => return Err(vec![FieldError::new("tags", "must be an array of strings")]),
    };
    let mut errors = Vec::new();
    let mut tags: Vec<String> = Vec::new();
    for (i, item) in arr.iter().enumerate() {
        let field = format!("tags[{i}]");
        let Some(s) = item.as_str() else {
            errors.push(FieldError::new(field, "must be a string"));
            continue;
        };
        let t = s.trim();
        let n = t.chars().count();
        if n == 0 {
            errors.push(FieldError::new(field, "must not be empty"));
        } else if n > TAG_MAX_CHARS {
            errors.push(FieldError::new(
                field,
                format!("must be at most {TAG_MAX_CHARS} characters"),
            ));
        } else if !tags.iter().any(|x| x == t) {
            tags.push(t.to_owned());
        }
    }
    if tags.len() > MAX_TAGS {
        errors.push(FieldError::new("tags", format!("at most {MAX_TAGS} tags")));
    }
    if errors.is_empty() {
        Ok(tags)
    } else {
        Err(errors)
    }
}

pub fn parse_recurrence(v: &Value) -> Result<Option<Recurrence>, Vec<FieldError>> {
    let obj = match v {
        Value::Null => return Ok(None),
        Value::Object(o) => o,
        _ => {
            return Err(vec![FieldError::new(
                "recurrence",
                "must be an object or null",
            )])
        }
    };
    let mut errors = Vec::new();
    for key in obj.keys() {
        if !["rrule", "tz", "mode"].contains(&key.as_str()) {
            errors.push(FieldError::new(
                format!("recurrence.{key}"),
                "unknown field",
            ));
        }
    }
    let rrule = match obj.get("rrule").and_then(Value::as_str) {
        Some(s) => match normalize_rrule(s) {
            Ok(r) => Some(r),
            Err(e) => {
                errors.push(FieldError::new("recurrence.rrule", e));
                None
            }
        },
        None => {
            errors.push(FieldError::new(
                "recurrence.rrule",
                "is required (a string)",
            ));
            None
        }
    };
    let tz = match obj.get("tz").and_then(Value::as_str) {
        Some(s) => match chrono_tz::Tz::from_str(s.trim()) {
            Ok(_) => Some(s.trim().to_owned()),
            Err(_) => {
                errors.push(FieldError::new(
                    "recurrence.tz",
                    format!("{s:?} is not an IANA time zone (e.g. Europe/Berlin)"),
                ));
                None
            }
        },
        None => {
            errors.push(FieldError::new(
                "recurrence.tz",
                "is required (an IANA time zone)",
            ));
            None
        }
    };
    let mode = match obj.get("mode") {
        None | Some(Value::Null) => Some(RecurrenceMode::FromDue),
        Some(Value::String(s)) if s == "from_due" => Some(RecurrenceMode::FromDue),
        Some(Value::String(s)) if s == "from_completion" => Some(RecurrenceMode::FromCompletion),
        Some(_) => {
            errors.push(FieldError::new(
                "recurrence.mode",
                "must be from_due or from_completion",
            ));
            None
        }
    };
    match (rrule, tz, mode) {
        (Some(rrule), Some(tz), Some(mode)) if errors.is_empty() => {
            Ok(Some(Recurrence { rrule, tz, mode }))
        }
        _ => Err(errors),
    }
}

/// Strips an optional `RRULE:` prefix and refuses anything that could smuggle
/// other iCalendar lines (DTSTART, EXDATE...) into the rule.
fn normalize_rrule(s: &str) -> Result<String, String> {
    let s = s.trim();
    let s = if s.len() >= 6 && s[..6].eq_ignore_ascii_case("RRULE:") {
        &s[6..]
    } else {
        s
    };
    if s.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if s.len() > RRULE_MAX_CHARS {
        return Err(format!("must be at most {RRULE_MAX_CHARS} characters"));
    }
    if s.contains(['\n', '\r']) {
        return Err("must be a single RRULE line".to_owned());
    }
    Ok(s.to_owned())
}

/// Parses the rule with the `rrule` crate, anchored where the recurrence
/// worker will anchor it: at the due date (or now) in the rule's zone.
pub fn check_rrule(
    rrule: &str,
    tz: &str,
    due_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<(), String> {
    let zone = chrono_tz::Tz::from_str(tz).map_err(|_| format!("unknown time zone {tz:?}"))?;
    let upper = rrule.to_ascii_uppercase();
    // Finer than hourly would turn the recurrence worker into a task generator.
    if upper.contains("FREQ=SECONDLY") || upper.contains("FREQ=MINUTELY") {
        return Err("recurrences more frequent than hourly are not supported".to_owned());
    }
    let local = due_at.unwrap_or(now).with_timezone(&zone);
    let stamp = local.format("%Y%m%dT%H%M%S");
    let dtstart = if zone == chrono_tz::UTC {
        format!("DTSTART:{stamp}Z")
    } else {
        format!("DTSTART;TZID={tz}:{stamp}")
    };
    format!("{dtstart}\nRRULE:{rrule}")
        .parse::<rrule::RRuleSet>()
        .map(|_| ())
        .map_err(|e| format!("invalid RRULE: {e}"))
}

pub fn parse_reminders(v: &Value) -> Result<Vec<ReminderSpec>, Vec<FieldError>> {
    let arr = match v {
        Value::Null => return Ok(Vec::new()),
        Value::Array(a) => a,
        _ => return Err(vec![FieldError::new("reminders", "must be an array")]),
    };
    let mut errors = Vec::new();
    if arr.len() > MAX_REMINDERS {
        errors.push(FieldError::new(
            "reminders",
            format!("at most {MAX_REMINDERS} reminders"),
        ));
    }
    let mut out: Vec<ReminderSpec> = Vec::new();
    for (i, item) in arr.iter().enumerate() {
        match parse_reminder(item) {
            Ok(r) => {
                if !out.contains(&r) {
                    out.push(r);
                }
            }
            Err((sub, reason)) => {
                let field = if sub.is_empty() {
                    format!("reminders[{i}]")
                } else {
                    format!("reminders[{i}].{sub}")
                };
                errors.push(FieldError::new(field, reason));
            }
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

fn parse_reminder(v: &Value) -> Result<ReminderSpec, (&'static str, String)> {
    let obj: &Map<String, Value> = v
        .as_object()
        .ok_or(("", "must be an object with `before` or `at`".to_owned()))?;
    if obj.keys().any(|k| k != "before" && k != "at") {
        return Err(("", "only `before` or `at` are allowed".to_owned()));
    }
    match (obj.get("before"), obj.get("at")) {
        (Some(b), None) => {
            let s = b
                .as_str()
                .ok_or(("before", "must be an ISO-8601 duration string".to_owned()))?;
            let secs = parse_iso_duration(s).map_err(|e| ("before", e))?;
            Ok(ReminderSpec {
                before_seconds: Some(secs),
                at: None,
            })
        }
        (None, Some(a)) => {
            let s = a
                .as_str()
                .ok_or(("at", "must be an RFC 3339 string".to_owned()))?;
            let at = parse_instant(s).map_err(|e| ("at", e))?;
            Ok(ReminderSpec {
                before_seconds: None,
                at: Some(at),
            })
        }
        _ => Err(("", "exactly one of `before` or `at` is required".to_owned())),
    }
}

/// Parses an ISO-8601 duration of weeks, days, hours, minutes and seconds
/// (`PT15M`, `P1DT2H`, `P2W`) into seconds. Years and months are refused
/// because their length depends on the date; negative durations are refused
/// because a reminder "before" the due date cannot come after it.
pub fn parse_iso_duration(s: &str) -> Result<i64, String> {
    let s = s.trim();
    if s.starts_with('-') {
        return Err(format!("{s:?}: negative durations are not allowed"));
    }
    let invalid = || format!("{s:?} is not an ISO-8601 duration such as PT15M or P1DT2H");
    let rest = s.strip_prefix('P').ok_or_else(invalid)?;
    if rest.is_empty() {
        return Err(invalid());
    }
    let (date, time) = match rest.split_once('T') {
        Some((d, t)) => {
            if t.is_empty() {
                return Err(invalid());
            }
            (d, Some(t))
        }
        None => (rest, None),
    };
    let mut total: i64 = 0;
    let mut add = |n: i64, unit: i64| -> Result<(), String> {
        total = n
            .checked_mul(unit)
            .and_then(|x| total.checked_add(x))
            .ok_or_else(|| format!("{s:?} is too long"))?;
        Ok(())
    };
    for (n, unit) in split_units(date).ok_or_else(invalid)? {
        match unit {
            'W' => add(n, 7 * 86_400)?,
            'D' => add(n, 86_400)?,
            'Y' | 'M' => {
                return Err(format!(
                    "{s:?}: years and months have no fixed length; use weeks or days"
                ))
            }
            _ => return Err(invalid()),
        }
    }
    if let Some(time) = time {
        for (n, unit) in split_units(time).ok_or_else(invalid)? {
            match unit {
                'H' => add(n, 3_600)?,
                'M' => add(n, 60)?,
                'S' => add(n, 1)?,
                _ => return Err(invalid()),
            }
        }
    }
    // Bound it so `due_at - before` always stays a valid instant.
    if total > 3_660 * 86_400 {
        return Err(format!("{s:?} is longer than ten years"));
    }
    Ok(total)
}

/// `1D2H` -> [(1,'D'),(2,'H')]; `None` on anything else (fractions included).
fn split_units(s: &str) -> Option<Vec<(i64, char)>> {
    let mut out = Vec::new();
    let mut digits = String::new();
    let mut seen = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
        } else {
            if digits.is_empty() || seen.contains(c) {
                return None;
            }
            out.push((digits.parse().ok()?, c));
            seen.push(c);
            digits.clear();
        }
    }
    if !digits.is_empty() {
        return None;
    }
    Some(out)
}

/// Canonical ISO-8601 form of a number of seconds: `PT15M`, `P1DT2H`, `PT0S`.
pub fn format_iso_duration(secs: i64) -> String {
    if secs <= 0 {
        return "PT0S".to_owned();
    }
    let (d, rem) = (secs / 86_400, secs % 86_400);
    let (h, m, s) = (rem / 3_600, rem % 3_600 / 60, rem % 60);
    let mut out = String::from("P");
    if d > 0 {
        out.push_str(&format!("{d}D"));
    }
    if h > 0 || m > 0 || s > 0 {
        out.push('T');
        if h > 0 {
            out.push_str(&format!("{h}H"));
        }
        if m > 0 {
            out.push_str(&format!("{m}M"));
        }
        if s > 0 {
            out.push_str(&format!("{s}S"));
        }
    }
    out
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

/// Position after the last item of a page: (created_at, id), the list order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: DateTime<Utc>,
    pub id: Uuid,
}

impl Cursor {
    /// base64url (no padding) of 8 bytes big-endian micros + 16 bytes id.
    pub fn encode(&self) -> String {
        let mut buf = Vec::with_capacity(24);
        buf.extend_from_slice(&self.created_at.timestamp_micros().to_be_bytes());
        buf.extend_from_slice(self.id.as_bytes());
        URL_SAFE_NO_PAD.encode(buf)
    }

    pub fn decode(s: &str) -> Option<Cursor> {
        let bytes = URL_SAFE_NO_PAD.decode(s.trim()).ok()?;
        if bytes.len() != 24 {
            return None;
        }
        let micros = i64::from_be_bytes(bytes[..8].try_into().ok()?);
        let id = Uuid::from_slice(&bytes[8..]).ok()?;
        Some(Cursor {
            created_at: DateTime::from_timestamp_micros(micros)?,
            id,
        })
    }
}

/// Validated `GET /tasks` query.
#[derive(Debug, Clone, PartialEq)]
pub struct ListQuery {
    pub status: Option<TaskStatus>,
    /// Every tag must be present (several `tag=` parameters AND together).
    pub tags: Vec<String>,
    pub priority: Option<Priority>,
    /// `due_at > due_after`.
    pub due_after: Option<DateTime<Utc>>,
    /// `due_at < due_before`.
    pub due_before: Option<DateTime<Utc>>,
    pub q: Option<String>,
    pub limit: i64,
    pub cursor: Option<Cursor>,
}

pub fn parse_list_query(pairs: &[(String, String)]) -> Result<ListQuery, Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut q = ListQuery {
        status: None,
        tags: Vec::new(),
        priority: None,
        due_after: None,
        due_before: None,
        q: None,
        limit: DEFAULT_LIMIT,
        cursor: None,
    };
    for (key, value) in pairs {
        match key.as_str() {
            "status" => match parse_status(value) {
                Some(s) => q.status = Some(s),
                None => errors.push(FieldError::new("status", "must be open or completed")),
            },
            "tag" => {
                let t = value.trim();
                if t.is_empty() || t.chars().count() > TAG_MAX_CHARS {
                    errors.push(FieldError::new(
                        "tag",
                        format!("must be 1 to {TAG_MAX_CHARS} characters"),
                    ));
                } else if q.tags.len() >= MAX_TAGS {
                    errors.push(FieldError::new("tag", format!("at most {MAX_TAGS} tags")));
                } else {
                    q.tags.push(t.to_owned());
                }
            }
            "priority" => match parse_priority(value) {
                Some(p) => q.priority = Some(p),
                None => errors.push(FieldError::new(
                    "priority",
                    "must be one of low, medium, high, urgent",
                )),
            },
            "due_after" => match parse_instant(value) {
                Ok(t) => q.due_after = Some(t),
                Err(e) => errors.push(FieldError::new("due_after", e)),
            },
            "due_before" => match parse_instant(value) {
                Ok(t) => q.due_before = Some(t),
                Err(e) => errors.push(FieldError::new("due_before", e)),
            },
            "q" => {
                let t = value.trim();
                if t.chars().count() > Q_MAX_CHARS {
                    errors.push(FieldError::new(
                        "q",
                        format!("must be at most {Q_MAX_CHARS} characters"),
                    ));
                } else if !t.is_empty() {
                    q.q = Some(t.to_owned());
                }
            }
            "limit" => match parse_limit(value) {
                Ok(n) => q.limit = n,
                Err(e) => errors.push(e),
            },
            "cursor" => match parse_cursor(value) {
                Ok(c) => q.cursor = Some(c),
                Err(e) => errors.push(e),
            },
            other => errors.push(FieldError::new(other, "unknown query parameter")),
        }
    }
    if errors.is_empty() {
        Ok(q)
    } else {
        Err(errors)
    }
}

/// `%needle%` for ILIKE with `\`, `%` and `_` escaped, so a search for "50%"
/// matches the text "50%" and not everything starting with "50".
pub fn like_pattern(needle: &str) -> String {
    let mut out = String::with_capacity(needle.len() + 2);
    out.push('%');
    for c in needle.chars() {
        if matches!(c, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

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
    fn title_rules() {
        let e = validate_create(&json!({}), now()).unwrap_err();
        assert_eq!(fields_of(&e), ["title"]);
        assert!(validate_create(&json!({"title": "   "}), now()).is_err());
        assert!(validate_create(&json!({"title": 5}), now()).is_err());
        assert!(validate_create(&json!({"title": "x".repeat(500)}), now()).is_ok());
        // 500 characters, not bytes
        assert!(validate_create(&json!({"title": "é".repeat(500)}), now()).is_ok());
        let e = validate_create(&json!({"title": "x".repeat(501)}), now()).unwrap_err();
        assert_eq!(fields_of(&e), ["title"]);
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
    fn tags_are_trimmed_deduped_and_bounded() {
        let t = parse_tags(&json!([" a ", "b", "a"])).unwrap();
        assert_eq!(t, ["a", "b"]);
        let e = parse_tags(&json!(["ok", "  ", 3, "x".repeat(65)])).unwrap_err();
        assert_eq!(fields_of(&e), ["tags[1]", "tags[2]", "tags[3]"]);
        let many: Vec<String> = (0..51).map(|i| format!("t{i}")).collect();
        assert!(parse_tags(&json!(many)).is_err());
        let fifty_distinct: Vec<String> = (0..60).map(|i| format!("t{}", i % 50)).collect();
        assert_eq!(parse_tags(&json!(fifty_distinct)).unwrap().len(), 50);
        assert!(parse_tags(&json!("a")).is_err());
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
        .is_ok());
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
    fn iso_durations() {
        assert_eq!(parse_iso_duration("PT15M"), Ok(900));
        assert_eq!(parse_iso_duration("P1DT2H"), Ok(93_600));
        assert_eq!(parse_iso_duration("P2W"), Ok(1_209_600));
        assert_eq!(parse_iso_duration("PT0S"), Ok(0));
        assert_eq!(parse_iso_duration("PT1H30M5S"), Ok(5_405));
        for bad in [
            "", "P", "PT", "15M", "PT15", "PT1.5M", "P1M", "P1Y", "PT15Mx", "PT5M5M", "P1H",
        ] {
            assert!(parse_iso_duration(bad).is_err(), "{bad:?}");
        }
        let neg = parse_iso_duration("-PT5M").unwrap_err();
        assert!(neg.contains("negative"));
        for secs in [0, 59, 60, 900, 3_600, 86_400, 93_605] {
            assert_eq!(parse_iso_duration(&format_iso_duration(secs)), Ok(secs));
        }
        assert_eq!(format_iso_duration(900), "PT15M");
        assert_eq!(format_iso_duration(86_400), "P1D");
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
        assert_eq!(fields_of(&e), ["reminders[0].before"]);
        assert!(validate_patch(&current, &json!({"due_at": null, "reminders": []}), now()).is_ok());
    }

    #[test]
    fn cursor_round_trip_and_garbage() {
        let c = Cursor {
            created_at: Utc.timestamp_micros(1_780_000_000_123_456).unwrap(),
            id: Uuid::now_v7(),
        };
        let s = c.encode();
        assert!(s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(Cursor::decode(&s), Some(c));
        assert_eq!(Cursor::decode("not a cursor"), None);
        assert_eq!(Cursor::decode(""), None);
        assert_eq!(Cursor::decode(&URL_SAFE_NO_PAD.encode([0u8; 23])), None);
    }

    #[test]
    fn list_query_parsing() {
        let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        let q = parse_list_query(&pairs(&[
            ("status", "open"),
            ("tag", "a"),
            ("tag", "b"),
            ("limit", "200"),
            ("q", " 50% "),
            ("due_after", "2026-01-01T00:00:00Z"),
        ]))
        .unwrap();
        assert_eq!(q.status, Some(TaskStatus::Open));
        assert_eq!(q.tags, ["a", "b"]);
        assert_eq!(q.limit, 200);
        assert_eq!(q.q.as_deref(), Some("50%"));
        assert_eq!(parse_list_query(&[]).unwrap().limit, DEFAULT_LIMIT);
        let e = parse_list_query(&pairs(&[
            ("limit", "0"),
            ("cursor", "zzz"),
            ("due_before", "2026-01-01"),
            ("colour", "red"),
        ]))
        .unwrap_err();
        assert_eq!(fields_of(&e), ["limit", "cursor", "due_before", "colour"]);
        assert!(parse_list_query(&pairs(&[("limit", "201")])).is_err());
    }

    #[test]
    fn like_pattern_escapes() {
        assert_eq!(like_pattern("50%_a\\b"), "%50\\%\\_a\\\\b%");
    }
}
