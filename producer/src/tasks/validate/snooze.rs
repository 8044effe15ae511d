//! The snooze body: `{"for": "<ISO-8601 duration>"}` or `{"until": "<RFC 3339 instant>"}`.

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::Value;

use super::{duration::IsoDuration, instant::parse_instant};
use crate::problem::FieldError;

/// What a snooze asks for, before the task's row is locked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Snooze {
    /// This long after the snooze is applied.
    For(TimeDelta),
    Until(DateTime<Utc>),
}

impl Snooze {
    /// The instant the reminder fires at when the snooze is applied at `now`: never before
    /// `now` (snoozing "until" a past instant, or for zero seconds, rings it at once).
    pub fn until(self, now: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            Snooze::For(d) => now + d,
            Snooze::Until(at) => at.max(now),
        }
    }
}

/// Parses the body: exactly one of `for` (an ISO-8601 duration, not negative, within the
/// duration parser's bound) and `until` (an RFC 3339 instant with an offset).
pub fn parse_snooze(body: &Value) -> Result<Snooze, Vec<FieldError>> {
    let Some(obj) = body.as_object() else {
        return Err(vec![FieldError::new("body", "must be a JSON object")]);
    };
    let mut errors: Vec<FieldError> = obj
        .keys()
        .filter(|k| *k != "for" && *k != "until")
        .map(|k| FieldError::new(k.as_str(), "unknown field; allowed: for, until"))
        .collect();
    let parsed = match (obj.get("for"), obj.get("until")) {
        (Some(d), None) => match d.as_str().map(IsoDuration::parse) {
            None => Err(FieldError::new(
                "for",
                "must be an ISO-8601 duration string",
            )),
            Some(Err(e)) => Err(FieldError::new("for", e)),
            Some(Ok(d)) => match TimeDelta::try_seconds(d.seconds()) {
                Some(d) if d >= TimeDelta::zero() => Ok(Snooze::For(d)),
                _ => Err(FieldError::new("for", "must not be negative")),
            },
        },
        (None, Some(u)) => match u.as_str().map(parse_instant) {
            None => Err(FieldError::new("until", "must be an RFC 3339 string")),
            Some(Err(e)) => Err(FieldError::new("until", e)),
            Some(Ok(at)) => Ok(Snooze::Until(at)),
        },
        _ => Err(FieldError::new(
            "body",
            "exactly one of `for` (a duration) or `until` (an instant) is required",
        )),
    };
    match parsed {
        Ok(s) if errors.is_empty() => Ok(s),
        Ok(_) => Err(errors),
        Err(e) => {
            errors.push(e);
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-04T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn field(v: Value) -> String {
        parse_snooze(&v).unwrap_err()[0].field.clone()
    }

    #[test]
    fn for_and_until() {
        let s = parse_snooze(&json!({"for": "PT10M"})).unwrap();
        assert_eq!(s.until(now()), now() + TimeDelta::minutes(10));
        let s = parse_snooze(&json!({"until": "2026-12-04T12:00:00+01:00"})).unwrap();
        assert_eq!(s.until(now()), now() + TimeDelta::hours(1));
        // Zero, or a past instant: at once, never in the past.
        let s = parse_snooze(&json!({"for": "PT0S"})).unwrap();
        assert_eq!(s.until(now()), now());
        let s = parse_snooze(&json!({"until": "2026-12-04T09:00:00Z"})).unwrap();
        assert_eq!(s.until(now()), now());
    }

    #[test]
    fn refusals_name_the_field() {
        assert_eq!(field(json!({})), "body");
        assert_eq!(field(json!([])), "body");
        assert_eq!(
            field(json!({"for": "PT1M", "until": "2026-12-05T00:00:00Z"})),
            "body"
        );
        assert_eq!(field(json!({"for": "-PT5M"})), "for");
        assert_eq!(field(json!({"for": 600})), "for");
        assert_eq!(field(json!({"for": "ten minutes"})), "for");
        assert_eq!(field(json!({"until": "2026-12-04T11:00:00"})), "until");
        assert_eq!(
            field(json!({"until": "2026-12-04T11:00:00Z\u{0}"})),
            "until"
        );
        assert_eq!(field(json!({"for": "PT1M", "extra": 1})), "extra");
    }
}
