//! Instants sent by clients.

use chrono::{DateTime, SubsecRound, Utc};

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_required_and_micros_kept() {
        assert!(parse_instant("2026-05-01T09:00:00").is_err());
        assert!(parse_instant("tomorrow").is_err());
        assert!(parse_instant("2026-05-01T09:00:00\0Z").is_err());
        assert_eq!(
            parse_instant("2026-05-01T09:00:00.1234567+02:00")
                .unwrap()
                .to_rfc3339(),
            "2026-05-01T07:00:00.123456+00:00"
        );
    }
}
