//! `POST /recurrence/preview`: a rule in plain words and its next occurrences, before it is
//! saved. The web page shows both next to the RRULE field while a person types; any client
//! can use it to check a rule with the same engine the recurrence worker runs.
//!
//! The request is validated as a task's recurrence is (same RRULE and zone rules, same
//! messages), so a rule the preview accepts is one `POST /tasks` accepts.

use axum::Json;
use chrono::{DateTime, Datelike, Utc};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::{
    auth::{ReadTasks, Scoped},
    extract::JsonBody,
    problem::{ApiError, FieldError},
    tasks::validate::{
        check_rrule, parse_instant,
        recurrence::{required_rrule, required_zone},
        Zone,
    },
};

/// The years a preview may start in: wide enough for any real task, and inside what the
/// rule engine evaluates (the document's `start` pattern says the same).
pub const START_YEARS: std::ops::RangeInclusive<i32> = 1900..=8999;

/// Most occurrences one preview lists.
pub const MAX_PREVIEW: usize = 20;
const DEFAULT_PREVIEW: usize = 5;

/// A validated preview request.
#[derive(Debug, Clone, PartialEq)]
pub struct PreviewRequest {
    pub rrule: String,
    pub zone: Zone,
    /// The first instance's scheduled instant (the task's due date).
    pub start: DateTime<Utc>,
    pub count: usize,
}

/// The answer of `POST /recurrence/preview`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct PreviewResponse {
    /// The rule as stored (an `RRULE:` prefix and surrounding blanks removed).
    pub rrule: String,
    /// The rule in plain English, e.g. "every weekday at 09:00".
    pub description: String,
    /// The first instance's scheduled instant the rule was anchored at.
    pub start: DateTime<Utc>,
    /// The next occurrences after `start` (fewer when the rule ends), RFC 3339 in UTC.
    pub next: Vec<DateTime<Utc>>,
}

/// Validates the request body; `now` is the default `start`.
pub fn parse_preview(body: &Value, now: DateTime<Utc>) -> Result<PreviewRequest, Vec<FieldError>> {
    let Some(obj) = body.as_object() else {
        return Err(vec![FieldError::new("body", "must be a JSON object")]);
    };
    let mut errors = Vec::new();
    for key in obj.keys() {
        if !["rrule", "tz", "start", "count"].contains(&key.as_str()) {
            errors.push(FieldError::new(key.clone(), "unknown field"));
        }
    }
    let rrule = required_rrule(obj, "rrule", &mut errors);
    let zone = required_zone(obj, "tz", &mut errors);
    let start = match obj.get("start") {
        None | Some(Value::Null) => Some(now),
        Some(Value::String(s)) => match parse_instant(s) {
            // The year as written (the pattern's), not in UTC: 1900-01-01T00:30+01:00 is in.
            Ok(t) if written_year(s).is_some_and(|y| START_YEARS.contains(&y)) => Some(t),
            Ok(_) => {
                errors.push(FieldError::new(
                    "start",
                    format!(
                        "must be in the years {} to {}",
                        START_YEARS.start(),
                        START_YEARS.end()
                    ),
                ));
                None
            }
            Err(e) => {
                errors.push(FieldError::new("start", e));
                None
            }
        },
        Some(_) => {
            errors.push(FieldError::new(
                "start",
                "must be an RFC 3339 timestamp or null",
            ));
            None
        }
    };
    let count = match obj.get("count") {
        None | Some(Value::Null) => Some(DEFAULT_PREVIEW),
        Some(v) => match v.as_f64() {
            // A whole float is an integer in JSON Schema, so 3.0 is as good as 3.
            Some(n) if n.fract() == 0.0 && (1.0..=MAX_PREVIEW as f64).contains(&n) => {
                Some(n as usize)
            }
            _ => {
                errors.push(FieldError::new(
                    "count",
                    format!("must be an integer from 1 to {MAX_PREVIEW}"),
                ));
                None
            }
        },
    };
    if let Some(r) = &rrule {
        // The rule on its own first, so a bad rule is named even beside a bad zone.
        let checked = match (&zone, start) {
            (Some(z), Some(s)) => check_rrule(r.as_str(), z.name(), Some(s), now),
            _ => taskflow_calendar::Rule::parse(r.as_str())
                .map(|_| ())
                .map_err(|e| e.to_string()),
        };
        if let Err(e) = checked {
            errors.push(FieldError::new("rrule", e));
        }
    }
    match (rrule, zone, start, count) {
        (Some(rrule), Some(zone), Some(start), Some(count)) if errors.is_empty() => {
            Ok(PreviewRequest {
                rrule: rrule.into_string(),
                zone,
                start,
                count,
            })
        }
        _ => Err(errors),
    }
}

fn written_year(s: &str) -> Option<i32> {
    DateTime::parse_from_rfc3339(s.trim())
        .ok()
        .map(|t| t.year())
}

/// The preview itself: plain words and the next occurrences, with the recurrence worker's
/// engine (so DST, COUNT and UNTIL mean here what they will mean for the series).
pub fn preview(req: &PreviewRequest) -> Result<PreviewResponse, Vec<FieldError>> {
    let invalid =
        |e: taskflow_calendar::CalendarError| vec![FieldError::new("rrule", e.to_string())];
    let rule = taskflow_calendar::Rule::parse(&req.rrule).map_err(invalid)?;
    let schedule = taskflow_calendar::Schedule {
        rule: &rule,
        zone: req.zone.tz(),
        dtstart: req.start,
        exdates: &[],
    };
    let anchor = req.start.with_timezone(&req.zone.tz()).naive_local();
    Ok(PreviewResponse {
        rrule: req.rrule.clone(),
        description: rule.describe(anchor).map_err(invalid)?,
        start: req.start,
        next: schedule.next_n(req.start, req.count).map_err(invalid)?,
    })
}

/// A recurrence rule in plain words, with its next occurrences.
///
/// `rrule` and `tz` as in a task's `recurrence`; `start` is the first instance's due date
/// (default: now), whose local time of day is the rule's when it names no BYHOUR/BYMINUTE;
/// `count` (1 to 20, default 5) occurrences after `start` are listed. Nothing is stored.
#[utoipa::path(
    post, path = "/recurrence/preview", tag = "tasks",
    responses((status = 200, description = "The rule in words and its next occurrences", body = PreviewResponse)),
    security(("bearer" = []))
)]
pub async fn preview_recurrence(
    _user: Scoped<ReadTasks>,
    body: JsonBody,
) -> Result<Json<PreviewResponse>, ApiError> {
    let req = parse_preview(&body.value, crate::tasks::service::now_micros())
        .map_err(ApiError::Validation)?;
    // Bounded work (MAX_STEPS in the calendar crate), but off the async workers anyway.
    let answer = tokio::task::spawn_blocking(move || preview(&req))
        .await
        .map_err(|e| ApiError::Internal(format!("preview task: {e}")))?;
    answer.map(Json).map_err(ApiError::Validation)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        "2026-03-10T12:00:00Z".parse().expect("now")
    }

    fn run(body: Value) -> Result<PreviewResponse, Vec<FieldError>> {
        parse_preview(&body, now()).and_then(|r| preview(&r))
    }

    #[test]
    fn weekdays_in_berlin_across_the_spring_change() {
        let p = run(json!({
            "rrule": "RRULE:FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR",
            "tz": "Europe/Berlin",
            "start": "2026-03-27T09:00:00+01:00",
            "count": 3,
        }))
        .expect("preview");
        assert_eq!(p.rrule, "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR");
        assert_eq!(p.description, "every weekday at 09:00");
        // Friday 27 March is CET; Monday 30 March onwards is CEST: 09:00 local both times.
        let want: Vec<DateTime<Utc>> = [
            "2026-03-30T07:00:00Z",
            "2026-03-31T07:00:00Z",
            "2026-04-01T07:00:00Z",
        ]
        .iter()
        .map(|s| s.parse().expect("instant"))
        .collect();
        assert_eq!(p.next, want);
    }

    #[test]
    fn the_readme_example() {
        let p = run(json!({
            "rrule": "FREQ=MONTHLY;BYDAY=1MO",
            "tz": "Europe/Berlin",
            "start": "2027-01-04T09:00:00+01:00",
            "count": 3,
        }))
        .expect("preview");
        assert_eq!(p.description, "every month on the first Monday at 09:00");
        let next: Vec<String> = p
            .next
            .iter()
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .collect();
        assert_eq!(
            next,
            [
                "2027-02-01T08:00:00Z",
                "2027-03-01T08:00:00Z",
                "2027-04-05T07:00:00Z"
            ]
        );
    }

    #[test]
    fn defaults_and_the_end_of_a_rule() {
        let p = run(json!({"rrule": "FREQ=DAILY;COUNT=3", "tz": "UTC"})).expect("preview");
        assert_eq!(p.start, now());
        assert_eq!(p.description, "every day at 12:00, 3 times");
        // The start is the first of the three: two follow it.
        assert_eq!(p.next.len(), 2);
    }

    #[test]
    fn bad_input_names_each_field() {
        let fields = |body: Value| -> Vec<String> {
            run(body)
                .expect_err("invalid")
                .into_iter()
                .map(|e| e.field)
                .collect()
        };
        assert_eq!(fields(json!({"tz": "UTC"})), ["rrule"]);
        assert_eq!(
            fields(json!({"rrule": "FREQ=DAILY", "tz": "Mars/Olympus"})),
            ["tz"]
        );
        assert_eq!(
            fields(json!({"rrule": "FREQ=MINUTELY", "tz": "UTC"})),
            ["rrule"]
        );
        assert_eq!(
            fields(json!({"rrule": "FREQ=DAILY", "tz": "UTC", "count": 21})),
            ["count"]
        );
        assert_eq!(
            fields(json!({"rrule": "FREQ=DAILY", "tz": "UTC", "count": 2.5})),
            ["count"]
        );
        assert_eq!(
            fields(json!({"rrule": "FREQ=DAILY", "tz": "UTC", "start": "today"})),
            ["start"]
        );
        assert_eq!(
            fields(json!({"rrule": "FREQ=DAILY", "tz": "UTC", "x": 1})),
            ["x"]
        );
        assert_eq!(fields(json!([1])), ["body"]);
        assert_eq!(
            fields(json!({"rrule": "FREQ=DAILY", "tz": "UTC", "start": "0001-01-01T00:00:00Z"})),
            ["start"]
        );
        assert!(run(json!({"rrule": "FREQ=DAILY", "tz": "UTC", "count": 3.0})).is_ok());
    }
}
