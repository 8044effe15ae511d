//! Quiet hours: a daily window in the user's zone during which non-urgent notifications are
//! held and then released together at the window's end.
//!
//! The window is a pair of wall-clock times, so its length changes on a DST day (22:00 to
//! 07:00 lasts 8 or 10 hours then) and it may span midnight. Both ends are placed as instants
//! with [`taskflow_calendar::place`]: a wall-clock end that does not exist that day (inside a
//! spring-forward gap) moves forward by the gap, an ambiguous one (fall-back) is the earlier
//! instant. Comparing instants, never wall-clock times, keeps the check right across the
//! change.

use chrono::{DateTime, Duration, NaiveTime, Utc};
use chrono_tz::Tz;
use taskflow_calendar::place;

/// A daily quiet window `[start, end)` in `zone`; `start > end` spans midnight, and
/// `start == end` is no window at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuietHours {
    pub start: NaiveTime,
    pub end: NaiveTime,
    pub zone: Tz,
}

impl QuietHours {
    /// When something arriving at `now` may be delivered: `None` if `now` is outside the
    /// window (deliver now), else the end of the window `now` falls in.
    pub fn release_at(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if self.start == self.end {
            return None;
        }
        let today = now.with_timezone(&self.zone).date_naive();
        // A window that spans midnight may have started yesterday.
        [today - Duration::days(1), today]
            .into_iter()
            .find_map(|day| {
                let start = place(day.and_time(self.start), self.zone);
                let end_day = if self.end > self.start {
                    day
                } else {
                    day + Duration::days(1)
                };
                let end = place(end_day.and_time(self.end), self.zone);
                (start <= now && now < end).then_some(end)
            })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(h: u32, m: u32) -> NaiveTime {
        NaiveTime::from_hms_opt(h, m, 0).unwrap()
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn a_window_spanning_midnight() {
        let q = QuietHours {
            start: t(22, 0),
            end: t(7, 0),
            zone: chrono_tz::Europe::Berlin,
        };
        // 23:30 Berlin (winter, +01:00): held until 07:00 the next morning.
        assert_eq!(
            q.release_at(utc("2026-01-14T22:30:00Z")),
            Some(utc("2026-01-15T06:00:00Z"))
        );
        // 03:00 local: the window started yesterday.
        assert_eq!(
            q.release_at(utc("2026-01-15T02:00:00Z")),
            Some(utc("2026-01-15T06:00:00Z"))
        );
        // 07:00 sharp and 21:59 local: outside.
        assert_eq!(q.release_at(utc("2026-01-15T06:00:00Z")), None);
        assert_eq!(q.release_at(utc("2026-01-15T20:59:00Z")), None);
    }

    #[test]
    fn a_window_within_a_day() {
        let q = QuietHours {
            start: t(12, 0),
            end: t(13, 30),
            zone: chrono_tz::UTC,
        };
        assert_eq!(
            q.release_at(utc("2026-03-02T12:10:00Z")),
            Some(utc("2026-03-02T13:30:00Z"))
        );
        assert_eq!(q.release_at(utc("2026-03-02T11:59:59Z")), None);
        let none = QuietHours {
            start: t(9, 0),
            end: t(9, 0),
            zone: chrono_tz::UTC,
        };
        assert_eq!(none.release_at(utc("2026-03-02T09:00:00Z")), None);
    }

    #[test]
    fn the_night_the_clocks_change() {
        let berlin = chrono_tz::Europe::Berlin;
        let q = QuietHours {
            start: t(22, 0),
            end: t(7, 0),
            zone: berlin,
        };
        // Spring forward (2026-03-29, 02:00 -> 03:00): the night is an hour shorter; 07:00
        // local is 05:00Z, no longer 06:00Z.
        let end = berlin.with_ymd_and_hms(2026, 3, 29, 7, 0, 0).unwrap();
        assert_eq!(
            q.release_at(utc("2026-03-28T23:30:00Z")),
            Some(end.with_timezone(&Utc))
        );
        assert_eq!(end.with_timezone(&Utc), utc("2026-03-29T05:00:00Z"));
        // Fall back (2026-10-25, 03:00 -> 02:00): 07:00 local is 06:00Z.
        assert_eq!(
            q.release_at(utc("2026-10-25T01:30:00Z")),
            Some(utc("2026-10-25T06:00:00Z"))
        );
        // A window ending inside the gap (02:30 does not exist that night) ends moved
        // forward by the gap: 03:30 local, 01:30Z.
        let gap = QuietHours {
            start: t(1, 0),
            end: t(2, 30),
            zone: berlin,
        };
        assert_eq!(
            gap.release_at(utc("2026-03-29T00:30:00Z")),
            Some(utc("2026-03-29T01:30:00Z"))
        );
    }
}
