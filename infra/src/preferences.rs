//! A user's notification preferences: their IANA zone, quiet hours in that zone, and which
//! channels each kind of event goes to. Pure: the API validates and shows them, the notifier
//! routes by them; both read the same row (`notification_preferences`).

use std::collections::BTreeMap;

use chrono::NaiveTime;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// Where a notification can go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    /// A notification in the inbox (with read state).
    Inbox,
    /// An entry on the user's feed, pushed to their open streams.
    Live,
    /// A signed POST to each of the user's webhook endpoints.
    Webhook,
    /// A mail to the user's address.
    Email,
}

impl Channel {
    pub const ALL: [Channel; 4] = [
        Channel::Inbox,
        Channel::Live,
        Channel::Webhook,
        Channel::Email,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Inbox => "inbox",
            Channel::Live => "live",
            Channel::Webhook => "webhook",
            Channel::Email => "email",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// Held during quiet hours (the push channels); the inbox and the feed record at once,
    /// silently.
    pub fn held_in_quiet_hours(self) -> bool {
        matches!(self, Channel::Webhook | Channel::Email)
    }
}

/// The kinds of events a preference names: the webhook types.
pub const KINDS: [&str; 7] = [
    "task.created",
    "task.updated",
    "task.completed",
    "task.reopened",
    "task.deleted",
    "reminder.snoozed",
    "reminder.due",
];

/// Where `kind` goes unless the user said otherwise: a reminder everywhere; a task change
/// to the feed (the user's other devices) and webhooks, not to the inbox or by mail.
pub fn default_channels(kind: &str) -> Vec<Channel> {
    match kind {
        "reminder.due" => Channel::ALL.to_vec(),
        _ => vec![Channel::Live, Channel::Webhook],
    }
}

/// Every IANA zone name a preference may take (and `null`, the default UTC): what the API
/// documents as the exact set.
pub fn zone_names() -> Vec<serde_json::Value> {
    let mut names: Vec<serde_json::Value> = chrono_tz::TZ_VARIANTS
        .iter()
        .map(|tz| serde_json::Value::String(tz.name().to_owned()))
        .collect();
    names.push(serde_json::Value::Null);
    names
}

/// Quiet hours as wall-clock times in the user's zone; `start > end` spans midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuietWindow {
    pub start: NaiveTime,
    pub end: NaiveTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preferences {
    pub time_zone: chrono_tz::Tz,
    pub quiet: Option<QuietWindow>,
    /// Overrides per kind; kinds not named take [`default_channels`].
    pub channels: BTreeMap<String, Vec<Channel>>,
}

impl Default for Preferences {
    fn default() -> Self {
        Self {
            time_zone: chrono_tz::UTC,
            quiet: None,
            channels: BTreeMap::new(),
        }
    }
}

impl Preferences {
    pub fn channels_for(&self, kind: &str) -> Vec<Channel> {
        self.channels
            .get(kind)
            .cloned()
            .unwrap_or_else(|| default_channels(kind))
    }

    pub fn wants(&self, kind: &str, channel: Channel) -> bool {
        self.channels_for(kind).contains(&channel)
    }

    /// The JSON the API shows: every kind with its effective channels.
    pub fn to_json(&self) -> Value {
        let channels: Map<String, Value> = KINDS
            .iter()
            .map(|k| {
                (
                    (*k).to_owned(),
                    json!(self
                        .channels_for(k)
                        .iter()
                        .map(|c| c.as_str())
                        .collect::<Vec<_>>()),
                )
            })
            .collect();
        json!({
            "time_zone": self.time_zone.name(),
            "quiet_hours": self.quiet.map(|q| json!({
                "start": q.start.format("%H:%M:%S").to_string(),
                "end": q.end.format("%H:%M:%S").to_string(),
            })),
            "channels": channels,
        })
    }
}

/// One invalid field: its path and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub field: String,
    pub reason: String,
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Invalid {
    Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

/// `HH:MM` or `HH:MM:SS`.
pub fn parse_time(s: &str) -> Option<NaiveTime> {
    NaiveTime::parse_from_str(s, "%H:%M:%S")
        .or_else(|_| NaiveTime::parse_from_str(s, "%H:%M"))
        .ok()
}

/// A whole preferences document (`PUT /preferences`): absent fields take their defaults.
pub fn parse(body: &Value) -> Result<Preferences, Vec<Invalid>> {
    let Some(obj) = body.as_object() else {
        return Err(vec![invalid("body", "must be a JSON object")]);
    };
    let mut errors = Vec::new();
    for k in obj.keys() {
        if !["time_zone", "quiet_hours", "channels"].contains(&k.as_str()) {
            errors.push(invalid(
                k.as_str(),
                "unknown field; allowed: time_zone, quiet_hours, channels",
            ));
        }
    }
    let mut prefs = Preferences::default();
    match obj.get("time_zone") {
        None | Some(Value::Null) => {}
        Some(Value::String(name)) => match name.parse::<chrono_tz::Tz>() {
            Ok(tz) => prefs.time_zone = tz,
            Err(_) => errors.push(invalid(
                "time_zone",
                "must be an IANA zone, e.g. Europe/Berlin",
            )),
        },
        Some(_) => errors.push(invalid("time_zone", "must be a string")),
    }
    match obj.get("quiet_hours") {
        None | Some(Value::Null) => {}
        Some(Value::Object(q)) => {
            for k in q.keys() {
                if k != "start" && k != "end" {
                    errors.push(invalid(
                        format!("quiet_hours.{k}"),
                        "unknown field; allowed: start, end",
                    ));
                }
            }
            let time = |name: &str, errors: &mut Vec<Invalid>| match q.get(name) {
                Some(Value::String(s)) => parse_time(s).or_else(|| {
                    errors.push(invalid(
                        format!("quiet_hours.{name}"),
                        "must be HH:MM or HH:MM:SS",
                    ));
                    None
                }),
                _ => {
                    errors.push(invalid(
                        format!("quiet_hours.{name}"),
                        "is required (HH:MM or HH:MM:SS)",
                    ));
                    None
                }
            };
            let (start, end) = (time("start", &mut errors), time("end", &mut errors));
            // Equal ends are an empty window: no quiet hours, as if `null` had been sent.
            if let (Some(start), Some(end)) = (start, end) {
                if start != end {
                    prefs.quiet = Some(QuietWindow { start, end });
                }
            }
        }
        Some(_) => errors.push(invalid("quiet_hours", "must be an object or null")),
    }
    match obj.get("channels") {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (kind, list) in map {
                if !KINDS.contains(&kind.as_str()) {
                    errors.push(invalid(
                        format!("channels.{kind}"),
                        format!("unknown kind; allowed: {}", KINDS.join(", ")),
                    ));
                    continue;
                }
                let Some(items) = list.as_array() else {
                    errors.push(invalid(format!("channels.{kind}"), "must be an array"));
                    continue;
                };
                let mut chosen = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    match item.as_str().and_then(Channel::parse) {
                        Some(c) if !chosen.contains(&c) => chosen.push(c),
                        Some(_) => {}
                        None => errors.push(invalid(
                            format!("channels.{kind}[{i}]"),
                            "must be one of inbox, live, webhook, email",
                        )),
                    }
                }
                chosen.sort();
                prefs.channels.insert(kind.clone(), chosen);
            }
        }
        Some(_) => errors.push(invalid("channels", "must be an object")),
    }
    if errors.is_empty() {
        Ok(prefs)
    } else {
        Err(errors)
    }
}

/// A stored row's columns back to [`Preferences`]; a value that no longer parses (a zone
/// removed from the database) falls back to its default rather than failing delivery.
pub fn from_row(
    time_zone: &str,
    quiet_start: Option<NaiveTime>,
    quiet_end: Option<NaiveTime>,
    channels: &Value,
) -> Preferences {
    let mut prefs = Preferences {
        time_zone: time_zone.parse().unwrap_or(chrono_tz::UTC),
        ..Preferences::default()
    };
    if let (Some(start), Some(end)) = (quiet_start, quiet_end) {
        if start != end {
            prefs.quiet = Some(QuietWindow { start, end });
        }
    }
    if let Some(map) = channels.as_object() {
        for (kind, list) in map {
            let chosen: Vec<Channel> = list
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().and_then(Channel::parse))
                        .collect()
                })
                .unwrap_or_default();
            prefs.channels.insert(kind.clone(), chosen);
        }
    }
    prefs
}

/// The overrides as stored (`channels` column).
pub fn channels_json(prefs: &Preferences) -> Value {
    Value::Object(
        prefs
            .channels
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    json!(v.iter().map(|c| c.as_str()).collect::<Vec<_>>()),
                )
            })
            .collect(),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let p = Preferences::default();
        assert_eq!(p.channels_for("reminder.due"), Channel::ALL.to_vec());
        assert!(!p.wants("task.created", Channel::Inbox));
        assert!(p.wants("task.created", Channel::Live));
        let shown = p.to_json();
        assert_eq!(shown["time_zone"], "UTC");
        assert_eq!(shown["quiet_hours"], Value::Null);
        assert_eq!(
            shown["channels"]["task.updated"],
            json!(["live", "webhook"])
        );
    }

    #[test]
    fn a_full_document() {
        let p = parse(&json!({
            "time_zone": "America/New_York",
            "quiet_hours": {"start": "22:00", "end": "07:00:30"},
            "channels": {"task.created": ["inbox", "live", "inbox"], "reminder.due": []},
        }))
        .unwrap();
        assert_eq!(p.time_zone, chrono_tz::America::New_York);
        assert_eq!(
            p.quiet,
            Some(QuietWindow {
                start: NaiveTime::from_hms_opt(22, 0, 0).unwrap(),
                end: NaiveTime::from_hms_opt(7, 0, 30).unwrap(),
            })
        );
        assert_eq!(
            p.channels_for("task.created"),
            [Channel::Inbox, Channel::Live]
        );
        assert!(p.channels_for("reminder.due").is_empty());
        let stored = channels_json(&p);
        let back = from_row(
            "America/New_York",
            p.quiet.map(|q| q.start),
            p.quiet.map(|q| q.end),
            &stored,
        );
        assert_eq!(back, p);
    }

    #[test]
    fn invalid_fields_are_named() {
        let errs = parse(&json!({
            "time_zone": "Mars/Olympus",
            "quiet_hours": {"start": "25:00", "extra": 1},
            "channels": {"task.exploded": ["inbox"], "task.created": ["pager"]},
            "colour": "blue",
        }))
        .unwrap_err();
        let mut fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        fields.sort_unstable();
        assert_eq!(
            fields,
            [
                "channels.task.created[0]",
                "channels.task.exploded",
                "colour",
                "quiet_hours.end",
                "quiet_hours.extra",
                "quiet_hours.start",
                "time_zone",
            ]
        );
        assert_eq!(
            parse(&json!({"quiet_hours": {"start": "09:00", "end": "09:00"}}))
                .unwrap()
                .quiet,
            None
        );
        assert!(parse(&json!([])).is_err());
    }

    #[test]
    fn a_stored_row_that_no_longer_parses_falls_back() {
        let p = from_row(
            "Gone/Zone",
            None,
            None,
            &json!({"task.created": ["pager", "live"]}),
        );
        assert_eq!(p.time_zone, chrono_tz::UTC);
        assert_eq!(p.channels_for("task.created"), [Channel::Live]);
    }
}
