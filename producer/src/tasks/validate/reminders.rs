//! Reminders: exactly one of `before` (a duration before `due_at`) or `at`; an optional
//! `id` naming one of the task's reminders; and how a new list keeps the ids (and snoozes)
//! of the reminders it keeps ([`assign_ids`]).

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use taskflow_infra::preferences::Channel;
use taskflow_schemas::ReminderSpec;
use uuid::Uuid;

use super::{duration::IsoDuration, instant::parse_instant};
use crate::problem::FieldError;

pub const MAX_REMINDERS: usize = 20;

/// The keys a reminder object may carry. `snoozed_until` is read-only: accepted so a client
/// can send back what it read, and ignored (only the snooze endpoint sets it).
const KEYS: [&str; 5] = ["before", "at", "id", "snoozed_until", "channels"];

/// At most [`MAX_REMINDERS`] items; items with the same rule collapse into the first.
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
                if r.id.is_some() && out.iter().any(|o| o.id == r.id) {
                    errors.push(FieldError::new(
                        format!("reminders[{i}].id"),
                        "the same reminder id appears twice",
                    ));
                } else if !out.iter().any(|o| o.same_rule(&r)) {
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
    if obj.keys().any(|k| !KEYS.contains(&k.as_str())) {
        return Err((
            "",
            "only `before` or `at`, `id` and `channels` (and the read-only `snoozed_until`) are allowed"
                .to_owned(),
        ));
    }
    let id = match obj.get("id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(
            Uuid::parse_str(s).map_err(|_| ("id", "must be a reminder id (a UUID)".to_owned()))?,
        ),
        Some(_) => return Err(("id", "must be a reminder id (a UUID)".to_owned())),
    };
    // Read-only and ignored, but what the document promises (null or an instant) is checked,
    // so a malformed body is refused rather than half-read.
    match obj.get("snoozed_until") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => {
            parse_instant(s).map_err(|e| ("snoozed_until", e))?;
        }
        Some(_) => {
            return Err((
                "snoozed_until",
                "must be null or an RFC 3339 string".to_owned(),
            ))
        }
    }
    let rule = match (obj.get("before"), obj.get("at")) {
        (Some(b), None) => {
            let s = b
                .as_str()
                .ok_or(("before", "must be an ISO-8601 duration string".to_owned()))?;
            let d = IsoDuration::parse(s).map_err(|e| ("before", e))?;
            ReminderSpec::before(d.seconds())
        }
        (None, Some(a)) => {
            let s = a
                .as_str()
                .ok_or(("at", "must be an RFC 3339 string".to_owned()))?;
            let at = parse_instant(s).map_err(|e| ("at", e))?;
            ReminderSpec::at(at)
        }
        _ => return Err(("", "exactly one of `before` or `at` is required".to_owned())),
    };
    let channels = parse_channels(obj.get("channels"))?;
    Ok(ReminderSpec {
        id,
        channels,
        ..rule
    })
}

/// `null` (the owner's preferences) or a list of channel names, kept sorted and unique.
fn parse_channels(v: Option<&Value>) -> Result<Option<Vec<String>>, (&'static str, String)> {
    const WHAT: &str = "must be null or an array of inbox, live, webhook, email";
    let items = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(("channels", WHAT.to_owned())),
    };
    let mut out: Vec<Channel> = Vec::new();
    for item in items {
        let c = item
            .as_str()
            .and_then(Channel::parse)
            .ok_or(("channels", WHAT.to_owned()))?;
        if !out.contains(&c) {
            out.push(c);
        }
    }
    out.sort();
    Ok(Some(out.iter().map(|c| c.as_str().to_owned()).collect()))
}

/// The reminders after a change, with ids and snoozes settled.
///
/// Each item keeps the reminder it names by `id`; an item without one takes the id of a
/// current reminder with the same rule not otherwise kept (so a client that never saw ids
/// does not replace every reminder by resending the list); the rest get new ids (`new_id`).
/// A kept reminder keeps its snooze only while the instant its rule names is unchanged
/// (a snooze was relative to that instant): moving `due_at` or changing the rule clears it.
/// An id that is not one of `current`'s names nothing to keep: that item is a new reminder
/// (merge by id, as a client that copied a reminder from another task would expect).
pub fn assign_ids(
    current: &[ReminderSpec],
    current_due: Option<DateTime<Utc>>,
    next: &[ReminderSpec],
    next_due: Option<DateTime<Utc>>,
    mut new_id: impl FnMut() -> Uuid,
) -> Vec<ReminderSpec> {
    let named: Vec<Uuid> = next
        .iter()
        .filter_map(|r| r.id)
        .filter(|id| current.iter().any(|c| c.id == Some(*id)))
        .collect();
    let mut taken: Vec<Uuid> = named.clone();
    next.iter()
        .map(|r| {
            let kept = match r.id.filter(|id| named.contains(id)) {
                Some(id) => current.iter().find(|c| c.id == Some(id)),
                None => {
                    let found = current
                        .iter()
                        .find(|c| c.same_rule(r) && c.id.is_some_and(|id| !taken.contains(&id)));
                    if let Some(id) = found.and_then(|c| c.id) {
                        taken.push(id);
                    }
                    found
                }
            };
            let snoozed_until = kept
                .filter(|c| c.rule_instant(current_due) == r.rule_instant(next_due))
                .and_then(|c| c.snoozed_until);
            ReminderSpec {
                id: Some(kept.and_then(|c| c.id).unwrap_or_else(&mut new_id)),
                snoozed_until,
                before_seconds: r.before_seconds,
                at: r.at,
                channels: r.channels.clone(),
            }
        })
        .collect()
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
        let r = parse_reminders(&json!([{"before": "PT5M", "id": "0190a0b0-0000-7000-8000-000000000001", "snoozed_until": "2026-05-01T08:00:00Z"}])).unwrap();
        assert_eq!(
            r[0].id,
            Some(Uuid::from_u128(0x0190a0b0_0000_7000_8000_000000000001))
        );
        assert_eq!(r[0].snoozed_until, None, "read-only: ignored");
        for bad in [
            json!([{"before": "PT5M", "id": "nope"}]),
            json!([{"before": "PT5M", "id": 7}]),
        ] {
            assert_eq!(
                parse_reminders(&bad).unwrap_err()[0].field,
                "reminders[0].id"
            );
        }
        let twice = json!([{"before": "PT5M", "id": "0190a0b0-0000-7000-8000-000000000001"},
                           {"before": "PT6M", "id": "0190a0b0-0000-7000-8000-000000000001"}]);
        assert_eq!(
            parse_reminders(&twice).unwrap_err()[0].field,
            "reminders[1].id"
        );
        let many: Vec<_> = (0..21)
            .map(|i| json!({"before": format!("PT{i}M")}))
            .collect();
        assert_eq!(
            parse_reminders(&json!(many)).unwrap_err()[0].field,
            "reminders"
        );
    }

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn with(r: ReminderSpec, n: u128, snooze: Option<&str>) -> ReminderSpec {
        ReminderSpec {
            id: Some(id(n)),
            snoozed_until: snooze.map(at),
            ..r
        }
    }

    fn ids(rs: &[ReminderSpec]) -> Vec<Uuid> {
        rs.iter().map(|r| r.id.unwrap()).collect()
    }

    #[test]
    fn ids_are_kept_by_id_then_by_rule_and_new_ones_are_fresh() {
        let due = Some(at("2026-05-01T09:00:00Z"));
        let current = [
            with(ReminderSpec::before(900), 1, Some("2026-05-01T08:55:00Z")),
            with(ReminderSpec::at(at("2026-05-01T07:00:00Z")), 2, None),
        ];
        let mut n = 100;
        let mut fresh = || {
            n += 1;
            id(n)
        };
        // Same rules, no ids (a client that never saw them): same ids, snooze kept.
        let same = [
            ReminderSpec::before(900),
            ReminderSpec::at(at("2026-05-01T07:00:00Z")),
        ];
        let out = assign_ids(&current, due, &same, due, &mut fresh);
        assert_eq!(ids(&out), [id(1), id(2)]);
        assert_eq!(out[0].snoozed_until, Some(at("2026-05-01T08:55:00Z")));
        // Reminder 2 kept by id with a new rule (snooze would be cleared), one new reminder.
        let next = [
            with(ReminderSpec::at(at("2026-05-01T06:00:00Z")), 2, None),
            ReminderSpec::before(60),
        ];
        let out = assign_ids(&current, due, &next, due, &mut fresh);
        assert_eq!(ids(&out), [id(2), id(101)]);
        // A due change clears the snooze of a relative reminder but keeps its id.
        let moved = Some(at("2026-05-02T09:00:00Z"));
        let out = assign_ids(&current, due, &current, moved, &mut fresh);
        assert_eq!(ids(&out), [id(1), id(2)]);
        assert_eq!(out[0].snoozed_until, None);
        // On create there is nothing to keep: every reminder is new, whatever it names.
        let out = assign_ids(&[], None, &next, due, &mut fresh);
        assert_eq!(ids(&out), [id(102), id(103)]);
        // An id the task does not have is a new reminder.
        let stray = [with(ReminderSpec::before(120), 99, None)];
        let out = assign_ids(&current, due, &stray, due, &mut fresh);
        assert_eq!(ids(&out), [id(104)]);
    }
}
