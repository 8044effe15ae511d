//! Recurrence: an RFC 5545 RRULE evaluated in an IANA time zone.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use taskflow_schemas::{Recurrence, RecurrenceMode};

use super::{instant::parse_instant, text::reject_nul};
use crate::problem::FieldError;

pub const RRULE_MAX_CHARS: usize = 1_000;
/// Most skipped occurrences on one recurrence object.
pub const MAX_EXDATES: usize = 100;

/// An RRULE value (no `RRULE:` prefix), one line, 1 to [`RRULE_MAX_CHARS`]
/// characters, no NUL. Whether the rule itself parses depends on its anchor
/// and is checked by [`check_rrule`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rrule(String);

impl Rrule {
    /// Strips an optional `RRULE:` prefix and refuses anything that could
    /// smuggle other iCalendar lines (DTSTART, EXDATE...) into the rule.
    pub fn parse(s: &str) -> Result<Self, String> {
        reject_nul(s)?;
        let s = s.trim();
        // `get` rather than slicing: the 6th byte may fall inside a
        // multi-byte character ("FREQ=é"), where `s[..6]` would panic.
        let s = match s.get(..6) {
            Some(prefix) if prefix.eq_ignore_ascii_case("RRULE:") => &s[6..],
            _ => s,
        };
        if s.is_empty() {
            return Err("must not be empty".to_owned());
        }
        if s.chars().count() > RRULE_MAX_CHARS {
            return Err(format!("must be at most {RRULE_MAX_CHARS} characters"));
        }
        if s.contains(['\n', '\r']) {
            return Err("must be a single RRULE line".to_owned());
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// An IANA time-zone name chrono-tz knows, exactly as listed (the OpenAPI
/// document enumerates them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone {
    name: String,
    tz: chrono_tz::Tz,
}

impl Zone {
    pub fn parse(s: &str) -> Result<Self, String> {
        let name = s;
        chrono_tz::Tz::from_str(name)
            .map(|tz| Self {
                name: name.to_owned(),
                tz,
            })
            .map_err(|_| format!("{s:?} is not an IANA time zone (e.g. Europe/Berlin)"))
    }

    pub fn tz(&self) -> chrono_tz::Tz {
        self.tz
    }

    pub fn name(&self) -> &str {
        &self.name
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
        if !["rrule", "tz", "mode", "exdates"].contains(&key.as_str()) {
            errors.push(FieldError::new(
                format!("recurrence.{key}"),
                "unknown field",
            ));
        }
    }
    let rrule = required_rrule(obj, "recurrence.rrule", &mut errors);
    let tz = required_zone(obj, "recurrence.tz", &mut errors);
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
    let exdates = match parse_exdates(obj.get("exdates")) {
        Ok(e) => e,
        Err(e) => {
            errors.push(FieldError::new("recurrence.exdates", e));
            Vec::new()
        }
    };
    match (rrule, tz, mode) {
        (Some(rrule), Some(tz), Some(mode)) if errors.is_empty() => Ok(Some(Recurrence {
            rrule: rrule.into_string(),
            tz: tz.name,
            mode,
            exdates,
        })),
        _ => Err(errors),
    }
}

/// `obj["rrule"]`, which must be a string [`Rrule::parse`] accepts; a problem is recorded
/// under `field`.
pub fn required_rrule(
    obj: &Map<String, Value>,
    field: &str,
    errors: &mut Vec<FieldError>,
) -> Option<Rrule> {
    let parsed = match obj.get("rrule").and_then(Value::as_str) {
        Some(s) => Rrule::parse(s),
        None => Err("is required (a string)".to_owned()),
    };
    parsed
        .map_err(|e| errors.push(FieldError::new(field, e)))
        .ok()
}

/// `obj["tz"]`, which must be an IANA zone name; a problem is recorded under `field`.
pub fn required_zone(
    obj: &Map<String, Value>,
    field: &str,
    errors: &mut Vec<FieldError>,
) -> Option<Zone> {
    let parsed = match obj.get("tz").and_then(Value::as_str) {
        Some(s) => Zone::parse(s),
        None => Err("is required (an IANA time zone)".to_owned()),
    };
    parsed
        .map_err(|e| errors.push(FieldError::new(field, e)))
        .ok()
}

/// `exdates`: absent, null or an array of at most [`MAX_EXDATES`] RFC 3339 instants; stored
/// sorted and de-duplicated. An occurrence is skipped when its instant equals one of them.
fn parse_exdates(v: Option<&Value>) -> Result<Vec<DateTime<Utc>>, String> {
    let items = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => return Err("must be an array of RFC 3339 timestamps or null".to_owned()),
    };
    if items.len() > MAX_EXDATES {
        return Err(format!("at most {MAX_EXDATES} exdates"));
    }
    let mut out = items
        .iter()
        .map(|i| match i {
            Value::String(s) => parse_instant(s),
            _ => Err("must be an array of RFC 3339 timestamps".to_owned()),
        })
        .collect::<Result<Vec<_>, _>>()?;
    out.sort();
    out.dedup();
    Ok(out)
}

/// Parses the rule with the `rrule` crate, anchored where the recurrence
/// worker will anchor it: at the due date (or now) in the rule's zone.
pub fn check_rrule(
    rrule: &str,
    tz: &str,
    due_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<(), String> {
    let zone = Zone::parse(tz)?.tz();
    let upper = rrule.to_ascii_uppercase();
    // Finer than hourly would turn the recurrence worker into a task generator.
    if upper.contains("FREQ=SECONDLY") || upper.contains("FREQ=MINUTELY") {
        return Err("recurrences more frequent than hourly are not supported".to_owned());
    }
    // Clamped so the DTSTART line stays a four-digit year in any zone: the
    // rule's syntax is what is checked, and an extreme due date must not
    // make a valid rule fail.
    let anchor = due_at
        .unwrap_or(now)
        .clamp(anchor_bound(1, 1, 2), anchor_bound(9999, 12, 30));
    let local = anchor.with_timezone(&zone);
    let stamp = local.format("%Y%m%dT%H%M%S");
    let dtstart = if zone == chrono_tz::UTC {
        format!("DTSTART:{stamp}Z")
    } else {
        format!("DTSTART;TZID={tz}:{stamp}")
    };
    format!("{dtstart}\nRRULE:{rrule}")
        .parse::<rrule::RRuleSet>()
        .map(|_| ())
        .map_err(|e| format!("invalid RRULE: {e}"))?;
    // And as the recurrence worker evaluates it (COUNT and UNTIL apart, see taskflow-calendar).
    taskflow_calendar::Rule::parse(rrule)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn anchor_bound(year: i32, month: u32, day: u32) -> DateTime<Utc> {
    chrono::NaiveDate::from_ymd_opt(year, month, day)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .unwrap_or(DateTime::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
    }

    #[test]
    fn prefix_is_stripped_case_insensitively() {
        assert_eq!(
            Rrule::parse(" rrule:FREQ=DAILY").unwrap().as_str(),
            "FREQ=DAILY"
        );
        assert_eq!(Rrule::parse("FREQ=DAILY").unwrap().as_str(), "FREQ=DAILY");
    }

    #[test]
    fn multi_byte_character_at_the_prefix_boundary_does_not_panic() {
        // the 6th byte is inside "é"
        for s in ["FREQ=é", "FREQ=éé", "ééé", "RRULEé", "€€"] {
            assert!(Rrule::parse(s).is_ok(), "{s:?}");
        }
        let e = parse_recurrence(&json!({"rrule": "FREQ=é", "tz": "UTC"})).unwrap();
        let r = e.unwrap();
        assert!(check_rrule(&r.rrule, &r.tz, None, now()).is_err());
    }

    #[test]
    fn smuggled_lines_nul_and_length_are_refused() {
        assert!(Rrule::parse("FREQ=DAILY\nEXDATE:20260101T000000Z").is_err());
        assert!(Rrule::parse("FREQ=DAILY\0").is_err());
        assert!(Rrule::parse("RRULE:").is_err());
        assert!(Rrule::parse(&"é".repeat(1_000)).is_ok());
        assert!(Rrule::parse(&"é".repeat(1_001)).is_err());
    }

    #[test]
    fn zones() {
        assert_eq!(
            Zone::parse("Europe/Berlin").unwrap().name(),
            "Europe/Berlin"
        );
        assert!(Zone::parse(" Europe/Berlin").is_err());
        assert!(Zone::parse("Mars/Olympus").is_err());
        assert!(Zone::parse("UTC\0").is_err());
    }

    #[test]
    fn rules_are_checked_at_their_anchor() {
        assert!(check_rrule("FREQ=WEEKLY;BYDAY=MO,WE", "Europe/Berlin", None, now()).is_ok());
        assert!(check_rrule("FREQ=MINUTELY", "UTC", None, now()).is_err());
        assert!(check_rrule("FREQ=FORTNIGHTLY", "UTC", None, now()).is_err());
        assert!(check_rrule("FREQ=DAILY;BYHOUR=25", "UTC", None, now()).is_err());
    }

    #[test]
    fn extreme_due_dates_do_not_invalidate_a_rule() {
        let rfc = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        for due in [
            "0001-01-01T00:00:00+23:59",
            "9999-12-31T23:59:59-23:59",
            "1970-01-01T00:00:00Z",
        ] {
            for tz in ["UTC", "Pacific/Kiritimati", "America/Adak", "Europe/Berlin"] {
                for rule in [
                    "FREQ=HOURLY;INTERVAL=999;COUNT=999;BYDAY=MO,TU,WE,TH,FR,SA,SU",
                    "FREQ=YEARLY;BYDAY=SU",
                    "FREQ=MONTHLY;COUNT=1",
                ] {
                    assert!(
                        check_rrule(rule, tz, Some(rfc(due)), now()).is_ok(),
                        "{rule} {tz} {due}: {:?}",
                        check_rrule(rule, tz, Some(rfc(due)), now())
                    );
                }
            }
        }
    }

    #[test]
    fn recurrence_object_rules() {
        assert_eq!(parse_recurrence(&json!(null)), Ok(None));
        let e = parse_recurrence(&json!({"rrule": "FREQ=DAILY", "tz": "UTC", "x": 1})).unwrap_err();
        assert_eq!(e[0].field, "recurrence.x");
        let e = parse_recurrence(&json!({"rrule": "FREQ=DAILY", "tz": "UTC", "mode": "sometimes"}))
            .unwrap_err();
        assert_eq!(e[0].field, "recurrence.mode");
        let r = parse_recurrence(
            &json!({"rrule": "FREQ=DAILY", "tz": "UTC", "mode": "from_completion"}),
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.mode, RecurrenceMode::FromCompletion);
    }

    #[test]
    fn exdates_are_sorted_deduplicated_and_bounded() {
        let r = parse_recurrence(&json!({"rrule": "FREQ=DAILY", "tz": "UTC",
            "exdates": ["2026-12-02T09:00:00+01:00", "2026-12-01T08:00:00Z", "2026-12-02T08:00:00Z"]}))
        .unwrap()
        .unwrap();
        assert_eq!(r.exdates.len(), 2);
        assert!(r.exdates[0] < r.exdates[1]);
        let e = parse_recurrence(
            &json!({"rrule": "FREQ=DAILY", "tz": "UTC", "exdates": ["2026-12-01T09:00:00"]}),
        )
        .unwrap_err();
        assert_eq!(e[0].field, "recurrence.exdates");
        let many: Vec<String> = (0..=MAX_EXDATES)
            .map(|i| format!("2026-12-01T09:{:02}:{:02}Z", i / 60, i % 60))
            .collect();
        assert!(
            parse_recurrence(&json!({"rrule": "FREQ=DAILY", "tz": "UTC", "exdates": many}))
                .is_err()
        );
    }
}
