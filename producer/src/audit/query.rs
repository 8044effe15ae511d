//! `GET /audit` query parameters and the feed's cursor (pure parsing).

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use chrono::{DateTime, Utc};
use taskflow_schemas::EventType;

use crate::{
    problem::FieldError,
    tasks::validate::{parse_instant, parse_limit, DEFAULT_LIMIT},
};

/// A position in the audit log: after the row inserted by transaction `insert_xid` with
/// sequence value `seq` (see [`super::store`] for why both). Opaque to clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditCursor {
    pub insert_xid: u64,
    pub seq: i64,
}

impl AuditCursor {
    /// Distinguishes this cursor from the task list's (and from the feed's earlier
    /// `occurred_at` cursor, which it replaces): those are refused rather than misread.
    const TAG: u8 = b'A';

    /// base64url (no padding) of the tag byte, 8 bytes xid and 8 bytes seq, big-endian.
    pub fn encode(&self) -> String {
        let mut buf = Vec::with_capacity(17);
        buf.push(Self::TAG);
        buf.extend_from_slice(&self.insert_xid.to_be_bytes());
        buf.extend_from_slice(&self.seq.to_be_bytes());
        URL_SAFE_NO_PAD.encode(buf)
    }

    pub fn decode(s: &str) -> Option<Self> {
        let bytes = URL_SAFE_NO_PAD.decode(s.trim()).ok()?;
        let (tag, rest) = bytes.split_first()?;
        if *tag != Self::TAG || rest.len() != 16 {
            return None;
        }
        let (xid, seq) = rest.split_at(8);
        Some(Self {
            insert_xid: u64::from_be_bytes(xid.try_into().ok()?),
            seq: i64::from_be_bytes(seq.try_into().ok()?),
        })
    }
}

fn parse_cursor(value: &str) -> Result<AuditCursor, FieldError> {
    AuditCursor::decode(value)
        .ok_or_else(|| FieldError::new("cursor", "is not a cursor returned by GET /audit"))
}

/// Validated `GET /audit` query.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditQuery {
    /// `occurred_at >= from`.
    pub from: Option<DateTime<Utc>>,
    /// `occurred_at < to`.
    pub to: Option<DateTime<Utc>>,
    /// Any of these types; empty = all. Repeating `type=` ORs them.
    pub types: Vec<EventType>,
    pub limit: i64,
    /// Position after the last item of the previous page.
    pub cursor: Option<AuditCursor>,
}

fn type_names() -> String {
    EventType::ALL
        .iter()
        .map(EventType::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn parse_audit_query(pairs: &[(String, String)]) -> Result<AuditQuery, Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut q = AuditQuery {
        from: None,
        to: None,
        types: Vec::new(),
        limit: DEFAULT_LIMIT,
        cursor: None,
    };
    for (key, value) in pairs {
        match key.as_str() {
            "from" => match parse_instant(value) {
                Ok(t) => q.from = Some(t),
                Err(e) => errors.push(FieldError::new("from", e)),
            },
            "to" => match parse_instant(value) {
                Ok(t) => q.to = Some(t),
                Err(e) => errors.push(FieldError::new("to", e)),
            },
            "type" => match EventType::parse(value.trim()) {
                Some(t) if !q.types.contains(&t) => q.types.push(t),
                Some(_) => {}
                None => errors.push(FieldError::new(
                    "type",
                    format!("must be one of {}", type_names()),
                )),
            },
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks::validate::Cursor;
    use chrono::TimeZone;
    use uuid::Uuid;

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn fields(e: &[FieldError]) -> Vec<&str> {
        e.iter().map(|f| f.field.as_str()).collect()
    }

    #[test]
    fn defaults() {
        let q = parse_audit_query(&[]).unwrap();
        assert_eq!(q.limit, DEFAULT_LIMIT);
        assert!(q.types.is_empty() && q.from.is_none() && q.to.is_none() && q.cursor.is_none());
    }

    #[test]
    fn valid_query() {
        let c = AuditCursor {
            insert_xid: 7_000_000_001,
            seq: 42,
        };
        let q = parse_audit_query(&pairs(&[
            ("from", "2026-01-01T01:00:00+01:00"),
            ("to", "2026-02-01T00:00:00Z"),
            ("type", "TaskUpdated"),
            ("type", "ReminderDue"),
            ("type", "TaskUpdated"),
            ("limit", "200"),
            ("cursor", &c.encode()),
        ]))
        .unwrap();
        assert_eq!(
            q.from,
            Some(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap())
        );
        assert_eq!(q.types, [EventType::TaskUpdated, EventType::ReminderDue]);
        assert_eq!(q.limit, 200);
        assert_eq!(q.cursor, Some(c));
    }

    #[test]
    fn every_bad_field_is_named() {
        let e = parse_audit_query(&pairs(&[
            ("from", "2026-01-01T00:00:00"),
            ("to", "yesterday"),
            ("type", "TaskExploded"),
            ("limit", "201"),
            ("cursor", "zzz"),
            ("user_id", "x"),
        ]))
        .unwrap_err();
        assert_eq!(
            fields(&e),
            ["from", "to", "type", "limit", "cursor", "user_id"]
        );
        assert!(e[2].reason.contains("TaskCreated"));
        // an empty range is not an error: it selects nothing
        assert!(parse_audit_query(&pairs(&[
            ("from", "2026-01-02T00:00:00Z"),
            ("to", "2026-01-01T00:00:00Z"),
        ]))
        .is_ok());
    }

    #[test]
    fn cursor_round_trips_and_foreign_cursors_are_refused() {
        for c in [
            AuditCursor {
                insert_xid: 0,
                seq: 1,
            },
            AuditCursor {
                insert_xid: u64::MAX,
                seq: i64::MAX,
            },
        ] {
            assert_eq!(AuditCursor::decode(&c.encode()), Some(c));
        }
        // The task list's cursor, also the format of the feed's former occurred_at cursor.
        let task_cursor = Cursor {
            created_at: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
            id: Uuid::from_u128(5),
        }
        .encode();
        assert_eq!(AuditCursor::decode(&task_cursor), None);
        // The OpenAPI pattern admits exactly what decodes: a sample of
        // pattern-shaped strings all decode, and encoded cursors match it.
        let first = "QRSTUVWXYZabcdef";
        let last = "AEIMQUYcgkosw048";
        let body = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        for (i, (f, l)) in first.chars().zip(last.chars()).enumerate() {
            let mid: String = body.chars().cycle().skip(i * 7).take(20).collect();
            let s = format!("Q{f}{mid}{l}");
            assert!(AuditCursor::decode(&s).is_some(), "{s}");
        }
        let encoded = AuditCursor {
            insert_xid: 123,
            seq: 9,
        }
        .encode();
        assert_eq!(encoded.len(), 23);
        assert!(encoded.starts_with('Q'));
        let e = parse_audit_query(&pairs(&[("cursor", &task_cursor)])).unwrap_err();
        assert_eq!(fields(&e), ["cursor"]);
        assert_eq!(AuditCursor::decode(""), None);
        assert_eq!(AuditCursor::decode("QQ"), None);
    }
}
