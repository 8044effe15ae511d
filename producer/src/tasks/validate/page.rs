//! Pagination parameters shared by `GET /tasks` and `GET /audit`.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::problem::FieldError;

pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 200;

/// A page size from 1 to [`MAX_LIMIT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit(i64);

impl Limit {
    pub const DEFAULT: Limit = Limit(DEFAULT_LIMIT);

    pub fn parse(value: &str) -> Option<Self> {
        match value.trim().parse::<i64>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => Some(Self(n)),
            _ => None,
        }
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

/// `limit` of a paginated list: 1 to [`MAX_LIMIT`].
pub fn parse_limit(value: &str) -> Result<i64, FieldError> {
    Limit::parse(value).map(Limit::get).ok_or_else(|| {
        FieldError::new("limit", format!("must be an integer from 1 to {MAX_LIMIT}"))
    })
}

/// `cursor` of a paginated list: [`CURSOR_CHARS`] base64url characters.
pub fn parse_cursor(value: &str) -> Result<Cursor, FieldError> {
    Cursor::decode(value)
        .ok_or_else(|| FieldError::new("cursor", "is not a cursor returned by this API"))
}

/// Position after the last item of a page: (instant, id), the list order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: DateTime<Utc>,
    pub id: Uuid,
}

/// Instants a cursor may carry: years 1970 to 9999. The API only hands out
/// instants it wrote; a forged cursor is clamped into this range, which
/// keeps it inside PostgreSQL's timestamp range (outside it the query would
/// fail: a 500) and still positions it before or after every row.
const CURSOR_MIN_MICROS: i64 = 0;
const CURSOR_MAX_MICROS: i64 = 253_402_300_799_999_999;

/// Length of an encoded cursor: 24 bytes in unpadded base64url.
pub const CURSOR_CHARS: usize = 32;

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
        let micros = i64::from_be_bytes(bytes[..8].try_into().ok()?)
            .clamp(CURSOR_MIN_MICROS, CURSOR_MAX_MICROS);
        let id = Uuid::from_slice(&bytes[8..]).ok()?;
        Some(Cursor {
            created_at: DateTime::from_timestamp_micros(micros)?,
            id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn limits() {
        assert_eq!(parse_limit("200"), Ok(200));
        assert_eq!(parse_limit(" 1 "), Ok(1));
        for bad in ["0", "201", "-1", "x", "", "1.5"] {
            assert!(parse_limit(bad).is_err(), "{bad:?}");
        }
        assert_eq!(Limit::DEFAULT.get(), DEFAULT_LIMIT);
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
    fn forged_cursor_is_clamped_into_the_database_range() {
        let decode = |micros: i64| {
            let mut buf = micros.to_be_bytes().to_vec();
            buf.extend_from_slice(&[0u8; 16]);
            let s = URL_SAFE_NO_PAD.encode(&buf);
            assert_eq!(s.len(), CURSOR_CHARS);
            Cursor::decode(&s).unwrap().created_at
        };
        assert_eq!(decode(i64::MIN), DateTime::UNIX_EPOCH);
        assert_eq!(decode(i64::MAX).timestamp_micros(), CURSOR_MAX_MICROS);
        // any 32 base64url characters are a cursor
        assert!(Cursor::decode(&"_".repeat(CURSOR_CHARS)).is_some());
    }
}
