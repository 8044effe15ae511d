//! Reminders: exactly one of `before` (a duration before `due_at`) or `at`.

use serde_json::{Map, Value};
use taskflow_schemas::ReminderSpec;

use super::{duration::IsoDuration, instant::parse_instant};
use crate::problem::FieldError;

pub const MAX_REMINDERS: usize = 20;

/// At most [`MAX_REMINDERS`] items; duplicates are dropped.
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
            let d = IsoDuration::parse(s).map_err(|e| ("before", e))?;
            Ok(ReminderSpec::before(d.seconds()))
        }
        (None, Some(a)) => {
            let s = a
                .as_str()
                .ok_or(("at", "must be an RFC 3339 string".to_owned()))?;
            let at = parse_instant(s).map_err(|e| ("at", e))?;
            Ok(ReminderSpec::at(at))
        }
        _ => Err(("", "exactly one of `before` or `at` is required".to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn shapes() {
        let r = parse_reminders(&json!([{"before": "PT15M"}, {"before": "PT15M"}])).unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].before_seconds, Some(900));
        assert_eq!(parse_reminders(&json!(null)), Ok(Vec::new()));
        for bad in [
            json!([{"before": "PT1M", "at": "2026-05-01T08:00:00Z"}]),
            json!([{}]),
            json!([{"at": "2026-05-01T08:00:00"}]),
            json!([{"every": "PT1M"}]),
            json!(["PT1M"]),
            json!({"before": "PT1M"}),
        ] {
            assert!(parse_reminders(&bad).is_err(), "{bad}");
        }
        let many: Vec<_> = (0..21)
            .map(|i| json!({"before": format!("PT{i}M")}))
            .collect();
        assert_eq!(
            parse_reminders(&json!(many)).unwrap_err()[0].field,
            "reminders"
        );
    }
}
