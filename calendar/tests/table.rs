//! Table tests: DST gaps and folds, month ends, leap years, in Europe/Berlin,
//! America/New_York and Australia/Lord_Howe (half-hour DST). The README's edge-case table
//! quotes these cases.

use chrono::{DateTime, Utc};
use taskflow_calendar::{zone, Rule, Schedule};

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("{s}: {e}"))
        .with_timezone(&Utc)
}

/// The first `n` occurrences of `rule` in `tz` from `start`, as RFC 3339 in the zone.
fn first(rule: &str, tz: &str, start: &str, n: usize) -> Vec<String> {
    first_with(rule, tz, start, &[], n)
}

fn first_with(rule: &str, tz: &str, start: &str, exdates: &[&str], n: usize) -> Vec<String> {
    let rule = Rule::parse(rule).unwrap_or_else(|e| panic!("{rule}: {e}"));
    let zone = zone(tz).expect("zone");
    let exdates: Vec<_> = exdates.iter().map(|s| utc(s)).collect();
    let schedule = Schedule {
        rule: &rule,
        zone,
        dtstart: utc(start),
        exdates: &exdates,
    };
    schedule
        .occurrences()
        .expect("occurrences")
        .take(n)
        .map(|t| t.expect("in bounds").with_timezone(&zone).to_rfc3339())
        .collect()
}

#[test]
fn berlin_nine_o_clock_stays_nine_across_both_transitions() {
    assert_eq!(
        first(
            "FREQ=DAILY",
            "Europe/Berlin",
            "2026-03-28T09:00:00+01:00",
            3
        ),
        [
            "2026-03-28T09:00:00+01:00",
            "2026-03-29T09:00:00+02:00",
            "2026-03-30T09:00:00+02:00"
        ]
    );
    assert_eq!(
        first(
            "FREQ=DAILY",
            "Europe/Berlin",
            "2026-10-24T09:00:00+02:00",
            3
        ),
        [
            "2026-10-24T09:00:00+02:00",
            "2026-10-25T09:00:00+01:00",
            "2026-10-26T09:00:00+01:00"
        ]
    );
}

#[test]
fn berlin_nonexistent_time_moves_forward_by_the_gap() {
    assert_eq!(
        first(
            "FREQ=DAILY",
            "Europe/Berlin",
            "2026-03-28T02:30:00+01:00",
            3
        ),
        [
            "2026-03-28T02:30:00+01:00",
            "2026-03-29T03:30:00+02:00",
            "2026-03-30T02:30:00+02:00"
        ]
    );
}

#[test]
fn berlin_ambiguous_time_takes_the_first() {
    assert_eq!(
        first(
            "FREQ=DAILY",
            "Europe/Berlin",
            "2026-10-24T02:30:00+02:00",
            3
        ),
        [
            "2026-10-24T02:30:00+02:00",
            "2026-10-25T02:30:00+02:00",
            "2026-10-26T02:30:00+01:00"
        ]
    );
}

#[test]
fn berlin_hourly_across_the_gap_has_no_duplicate() {
    assert_eq!(
        first(
            "FREQ=HOURLY",
            "Europe/Berlin",
            "2026-03-29T00:30:00+01:00",
            4
        ),
        [
            "2026-03-29T00:30:00+01:00",
            "2026-03-29T01:30:00+01:00",
            // 02:30 does not exist and becomes 03:30, which the rule also yields: once.
            "2026-03-29T03:30:00+02:00",
            "2026-03-29T04:30:00+02:00"
        ]
    );
}

#[test]
fn new_york_weekly_keeps_local_time() {
    assert_eq!(
        first(
            "FREQ=WEEKLY;BYDAY=SU",
            "America/New_York",
            "2026-03-01T09:00:00-05:00",
            3
        ),
        [
            "2026-03-01T09:00:00-05:00",
            "2026-03-08T09:00:00-04:00",
            "2026-03-15T09:00:00-04:00"
        ]
    );
    assert_eq!(
        first(
            "FREQ=WEEKLY;BYDAY=SU",
            "America/New_York",
            "2026-10-25T09:00:00-04:00",
            2
        ),
        ["2026-10-25T09:00:00-04:00", "2026-11-01T09:00:00-05:00"]
    );
}

#[test]
fn new_york_gap_and_fold() {
    assert_eq!(
        first(
            "FREQ=DAILY",
            "America/New_York",
            "2026-03-07T02:30:00-05:00",
            2
        ),
        ["2026-03-07T02:30:00-05:00", "2026-03-08T03:30:00-04:00"]
    );
    assert_eq!(
        first(
            "FREQ=DAILY",
            "America/New_York",
            "2026-10-31T01:30:00-04:00",
            3
        ),
        [
            "2026-10-31T01:30:00-04:00",
            "2026-11-01T01:30:00-04:00",
            "2026-11-02T01:30:00-05:00"
        ]
    );
}

#[test]
fn lord_howe_half_hour_gap_and_fold() {
    // Gap: 02:00 +10:30 -> 02:30 +11:00 on 2026-10-04.
    assert_eq!(
        first(
            "FREQ=DAILY",
            "Australia/Lord_Howe",
            "2026-10-03T02:15:00+10:30",
            3
        ),
        [
            "2026-10-03T02:15:00+10:30",
            "2026-10-04T02:45:00+11:00",
            "2026-10-05T02:15:00+11:00"
        ]
    );
    // Fold: 02:00 +11:00 -> 01:30 +10:30 on 2026-04-05; 01:45 happens twice, the first counts.
    assert_eq!(
        first(
            "FREQ=DAILY",
            "Australia/Lord_Howe",
            "2026-04-04T01:45:00+11:00",
            3
        ),
        [
            "2026-04-04T01:45:00+11:00",
            "2026-04-05T01:45:00+11:00",
            "2026-04-06T01:45:00+10:30"
        ]
    );
    // And 09:00 stays 09:00.
    assert_eq!(
        first(
            "FREQ=DAILY",
            "Australia/Lord_Howe",
            "2026-10-03T09:00:00+10:30",
            2
        ),
        ["2026-10-03T09:00:00+10:30", "2026-10-04T09:00:00+11:00"]
    );
}

#[test]
fn monthly_on_the_31st_skips_shorter_months() {
    assert_eq!(
        first(
            "FREQ=MONTHLY;BYMONTHDAY=31",
            "Europe/Berlin",
            "2026-01-31T09:00:00+01:00",
            4
        ),
        [
            "2026-01-31T09:00:00+01:00",
            "2026-03-31T09:00:00+02:00",
            "2026-05-31T09:00:00+02:00",
            "2026-07-31T09:00:00+02:00"
        ]
    );
}

#[test]
fn bymonthday_minus_one_is_the_last_day() {
    assert_eq!(
        first(
            "FREQ=MONTHLY;BYMONTHDAY=-1",
            "America/New_York",
            "2028-01-31T09:00:00-05:00",
            4
        ),
        [
            "2028-01-31T09:00:00-05:00",
            "2028-02-29T09:00:00-05:00",
            "2028-03-31T09:00:00-04:00",
            "2028-04-30T09:00:00-04:00"
        ]
    );
}

#[test]
fn last_friday_and_last_weekday() {
    assert_eq!(
        first(
            "FREQ=MONTHLY;BYDAY=-1FR",
            "Europe/Berlin",
            "2026-01-01T09:00:00+01:00",
            3
        ),
        [
            "2026-01-30T09:00:00+01:00",
            "2026-02-27T09:00:00+01:00",
            "2026-03-27T09:00:00+01:00"
        ]
    );
    assert_eq!(
        first(
            "FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1",
            "Europe/Berlin",
            "2026-01-01T09:00:00+01:00",
            3
        ),
        [
            "2026-01-30T09:00:00+01:00",
            "2026-02-27T09:00:00+01:00",
            "2026-03-31T09:00:00+02:00"
        ]
    );
}

#[test]
fn february_29_yearly_only_in_leap_years() {
    assert_eq!(
        first(
            "FREQ=YEARLY",
            "Australia/Lord_Howe",
            "2024-02-29T09:00:00+11:00",
            3
        ),
        [
            "2024-02-29T09:00:00+11:00",
            "2028-02-29T09:00:00+11:00",
            "2032-02-29T09:00:00+11:00"
        ]
    );
}

#[test]
fn count_until_and_exdates() {
    assert_eq!(
        first("FREQ=DAILY;COUNT=2", "UTC", "2026-01-01T09:00:00Z", 5),
        ["2026-01-01T09:00:00+00:00", "2026-01-02T09:00:00+00:00"]
    );
    // UNTIL with Z bounds the instant, inclusive.
    assert_eq!(
        first(
            "FREQ=DAILY;UNTIL=20260102T080000Z",
            "Europe/Berlin",
            "2026-01-01T09:00:00+01:00",
            5
        ),
        ["2026-01-01T09:00:00+01:00", "2026-01-02T09:00:00+01:00"]
    );
    // A date UNTIL means through that local day.
    assert_eq!(
        first(
            "FREQ=DAILY;UNTIL=20260102",
            "Europe/Berlin",
            "2026-01-01T23:00:00+01:00",
            5
        ),
        ["2026-01-01T23:00:00+01:00", "2026-01-02T23:00:00+01:00"]
    );
    // An exdate is skipped but still uses one of the COUNT.
    assert_eq!(
        first_with(
            "FREQ=DAILY;COUNT=3",
            "Europe/Berlin",
            "2026-01-01T09:00:00+01:00",
            &["2026-01-02T08:00:00Z"],
            5
        ),
        ["2026-01-01T09:00:00+01:00", "2026-01-03T09:00:00+01:00"]
    );
}
