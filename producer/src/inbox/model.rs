//! Inbox shapes, the list query and its cursor. Pure: no I/O.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{
    problem::FieldError,
    tasks::validate::page::{parse_limit, DEFAULT_LIMIT},
};

/// The feed kind of a read-state change.
pub const NOTIFICATION_READ: &str = "NotificationRead";

/// Position after the last item of an inbox page, in the list order: unread before read,
/// then `created_at` descending, then `id` descending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InboxCursor {
    pub unread: bool,
    pub created_at: DateTime<Utc>,
    pub id: Uuid,
}

/// Length of an encoded inbox cursor: 25 bytes in unpadded base64url.
pub const INBOX_CURSOR_CHARS: usize = 34;

/// Instants a cursor may carry (years 1970 to 9999): a forged one is clamped into
/// PostgreSQL's range instead of failing the query.
const CURSOR_MIN_MICROS: i64 = 0;
const CURSOR_MAX_MICROS: i64 = 253_402_300_799_999_999;

impl InboxCursor {
    /// base64url (no padding) of 1 byte unread flag + 8 bytes big-endian micros + 16 bytes id.
    pub fn encode(&self) -> String {
        let mut buf = Vec::with_capacity(25);
        buf.push(u8::from(self.unread));
        buf.extend_from_slice(&self.created_at.timestamp_micros().to_be_bytes());
        buf.extend_from_slice(self.id.as_bytes());
        URL_SAFE_NO_PAD.encode(buf)
    }

    pub fn decode(s: &str) -> Option<Self> {
        let bytes = URL_SAFE_NO_PAD.decode(s.trim()).ok()?;
        if bytes.len() != 25 {
            return None;
        }
        let unread = match bytes[0] {
            0 => false,
            1 => true,
            _ => return None,
        };
        let micros = i64::from_be_bytes(bytes[1..9].try_into().ok()?)
            .clamp(CURSOR_MIN_MICROS, CURSOR_MAX_MICROS);
        Some(Self {
            unread,
            created_at: DateTime::from_timestamp_micros(micros)?,
            id: Uuid::from_slice(&bytes[9..]).ok()?,
        })
    }
}

/// Validated `GET /notifications` query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxQuery {
    pub limit: i64,
    pub cursor: Option<InboxCursor>,
}

pub fn parse_inbox_query(pairs: &[(String, String)]) -> Result<InboxQuery, Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut q = InboxQuery {
        limit: DEFAULT_LIMIT,
        cursor: None,
    };
    for (key, value) in pairs {
        match key.as_str() {
            "limit" => match parse_limit(value) {
                Ok(n) => q.limit = n,
                Err(e) => errors.push(e),
            },
            "cursor" => match InboxCursor::decode(value) {
                Some(c) => q.cursor = Some(c),
                None => errors.push(FieldError::new(
                    "cursor",
                    "is not a cursor returned by this API",
                )),
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

/// One notification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
pub struct NotificationResponse {
    pub id: Uuid,
    /// What it is about, e.g. `reminder_due`.
    pub kind: String,
    pub task_id: Option<Uuid>,
    pub title: String,
    pub body: Option<String>,
    /// Kind-specific details (for `reminder_due`: `reminder_id`, `fire_at`, `due_at`).
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
    pub created_at: DateTime<Utc>,
    /// `null` while unread.
    pub read_at: Option<DateTime<Utc>>,
}

/// A page of the inbox: unread first, then newest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NotificationPage {
    pub items: Vec<NotificationResponse>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UnreadCount {
    pub unread: i64,
}

/// The answer of `POST /notifications/read-all`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReadAllResponse {
    /// Notifications this call marked read (0: there were none unread).
    pub marked: i64,
    /// Unread notifications after the call.
    pub unread: i64,
}

/// The `data` of a `NotificationRead` feed entry.
pub fn read_entry_data(ids: &[Uuid], unread: i64) -> serde_json::Value {
    serde_json::json!({"type": NOTIFICATION_READ, "notification_ids": ids, "unread": unread})
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn cursor_round_trip_and_garbage() {
        for unread in [true, false] {
            let c = InboxCursor {
                unread,
                created_at: Utc.timestamp_micros(1_780_000_000_123_456).unwrap(),
                id: Uuid::now_v7(),
            };
            let s = c.encode();
            assert_eq!(s.len(), INBOX_CURSOR_CHARS);
            // The shape the OpenAPI document's pattern promises.
            let b = s.as_bytes();
            assert_eq!(b[0], b'A');
            assert!(matches!(b[1], b'A'..=b'Z' | b'a'..=b'f'), "{s}");
            assert!(matches!(b[33], b'A' | b'Q' | b'g' | b'w'), "{s}");
            assert_eq!(InboxCursor::decode(&s), Some(c));
        }
        assert_eq!(InboxCursor::decode(""), None);
        assert_eq!(InboxCursor::decode("not a cursor"), None);
        assert_eq!(
            InboxCursor::decode(&URL_SAFE_NO_PAD.encode([0u8; 24])),
            None
        );
        let mut bad_flag = vec![2u8];
        bad_flag.extend_from_slice(&[0u8; 24]);
        assert_eq!(
            InboxCursor::decode(&URL_SAFE_NO_PAD.encode(&bad_flag)),
            None
        );
        // The task list's cursor is not an inbox cursor.
        let task = crate::tasks::validate::page::Cursor {
            created_at: Utc::now(),
            id: Uuid::now_v7(),
        };
        assert_eq!(InboxCursor::decode(&task.encode()), None);
    }

    #[test]
    fn forged_cursor_instants_are_clamped() {
        let mut buf = vec![1u8];
        buf.extend_from_slice(&i64::MAX.to_be_bytes());
        buf.extend_from_slice(&[0u8; 16]);
        let c = InboxCursor::decode(&URL_SAFE_NO_PAD.encode(&buf)).unwrap();
        assert_eq!(c.created_at.timestamp_micros(), CURSOR_MAX_MICROS);
    }

    #[test]
    fn query_parsing() {
        let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        assert_eq!(
            parse_inbox_query(&[]).unwrap(),
            InboxQuery {
                limit: DEFAULT_LIMIT,
                cursor: None
            }
        );
        let c = InboxCursor {
            unread: true,
            created_at: Utc::now(),
            id: Uuid::now_v7(),
        };
        let q = parse_inbox_query(&pairs(&[("limit", "3"), ("cursor", &c.encode())])).unwrap();
        assert_eq!(q.limit, 3);
        assert_eq!(q.cursor.map(|c| c.id), Some(c.id));
        let e =
            parse_inbox_query(&pairs(&[("limit", "0"), ("cursor", "x"), ("q", "y")])).unwrap_err();
        let fields: Vec<&str> = e.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(fields, ["limit", "cursor", "q"]);
    }

    #[test]
    fn read_entry_shape() {
        let id = Uuid::now_v7();
        assert_eq!(
            read_entry_data(&[id], 2),
            serde_json::json!({"type": "NotificationRead", "notification_ids": [id], "unread": 2})
        );
    }
}
