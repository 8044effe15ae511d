//! Recurrence rules: RFC 5545 RRULEs evaluated on the local wall clock of an IANA zone.
//!
//! # Why the rule is expanded on naive local times
//!
//! The `rrule` crate expands a rule from a zoned DTSTART, and has open DST defects there
//! (fmeringdal/rust-rrule #115, #109). A rule such as "every day at 09:00 in Europe/Berlin" is
//! a statement about the wall clock, so this crate expands it on the wall clock only: DTSTART
//! is converted to its naive local time, the rule is expanded in UTC (a zone without DST,
//! standing in for "no zone"), and every naive result is then placed in the real zone by
//! [`place`]:
//!
//! * a local time that exists once is that instant;
//! * a local time that does not exist (inside a DST gap) is read with the offset in force
//!   before the gap, i.e. it moves forward by the gap, as RFC 5545 (3.3.5) and calendar apps
//!   do: 02:30 Europe/Berlin on 2026-03-29 is 03:30+02:00; Australia/Lord_Howe's half-hour
//!   gap turns 02:15 on 2026-10-04 into 02:45+11:00;
//! * a local time that occurs twice (DST fold) is the first (earlier) instant.
//!
//! Two naive times can land on one instant (an hourly rule across a gap); the later one is
//! dropped, so occurrences strictly increase.
//!
//! # COUNT, UNTIL and exdates
//!
//! `COUNT` and `UNTIL` are taken out of the rule and applied here, after placement, so they
//! mean instants and not the crate's zone handling: `UNTIL` with `Z` bounds the instant,
//! `UNTIL` without `Z` (floating, or a date meaning "through that local day") bounds the local
//! time. `COUNT` counts the rule's occurrences from DTSTART; exdates are removed after that
//! (RFC 5545: EXDATE excludes from the set the RRULE generated), so a skipped occurrence still
//! uses one of the COUNT.

use std::collections::BTreeSet;
use std::str::FromStr;

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;
use rrule::{Frequency, RRule, RRuleSet, Unvalidated};

mod words;

/// The most rule occurrences one evaluation walks through before giving up. An hourly rule
/// anchored five decades ago is about this many (~10^5 per decade); beyond this bound an
/// evaluation is refused rather than allowed to stall a worker.
pub const MAX_STEPS: usize = 500_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CalendarError {
    #[error("invalid RRULE: {0}")]
    InvalidRule(String),
    #[error("recurrences more frequent than hourly are not supported")]
    TooFrequent,
    #[error("{0:?} is not an IANA time zone (e.g. Europe/Berlin)")]
    UnknownZone(String),
    #[error("evaluating the rule took more than {MAX_STEPS} steps")]
    TooManySteps,
}

/// Where a series' next instance is computed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// After the previous instance's scheduled instant (or after now, if that is past).
    FromDue,
    /// After the completion (Todoist's "every!").
    FromCompletion,
}

/// The end of a rule (`UNTIL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Until {
    /// `UNTIL=...Z`: an instant.
    Instant(DateTime<Utc>),
    /// `UNTIL=YYYYMMDDTHHMMSS` (floating) or `UNTIL=YYYYMMDD` (through that local day).
    Local(NaiveDateTime),
}

/// A parsed rule: the RRULE without `COUNT` and `UNTIL` (expanded by the `rrule` crate) plus
/// those two, applied by [`Occurrences`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    body: String,
    count: Option<u32>,
    until: Option<Until>,
}

impl Rule {
    /// Parses an RRULE value (an `RRULE:` prefix is accepted). Refuses rules finer than hourly.
    pub fn parse(s: &str) -> Result<Self, CalendarError> {
        let s = s.trim();
        let s = match s.get(..6) {
            Some(p) if p.eq_ignore_ascii_case("RRULE:") => s.get(6..).unwrap_or_default(),
            _ => s,
        };
        if s.contains(['\n', '\r']) {
            return Err(CalendarError::InvalidRule("must be a single line".into()));
        }
        let mut count = None;
        let mut until = None;
        let mut parts = Vec::new();
        for part in s.split(';').filter(|p| !p.is_empty()) {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| CalendarError::InvalidRule(format!("{part:?} is not KEY=VALUE")))?;
            if key.eq_ignore_ascii_case("COUNT") {
                let n: u32 =
                    value.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                        CalendarError::InvalidRule("COUNT must be positive".into())
                    })?;
                if count.replace(n).is_some() {
                    return Err(CalendarError::InvalidRule("COUNT given twice".into()));
                }
            } else if key.eq_ignore_ascii_case("UNTIL") {
                if until.replace(parse_until(value)?).is_some() {
                    return Err(CalendarError::InvalidRule("UNTIL given twice".into()));
                }
            } else {
                parts.push(part);
            }
        }
        if count.is_some() && until.is_some() {
            return Err(CalendarError::InvalidRule(
                "COUNT and UNTIL must not both be given (RFC 5545)".into(),
            ));
        }
        let body = parts.join(";");
        let parsed = parse_body(&body)?;
        if matches!(parsed.get_freq(), Frequency::Minutely | Frequency::Secondly) {
            return Err(CalendarError::TooFrequent);
        }
        let rule = Self { body, count, until };
        // Validation needs an anchor; any one will do for the rule's own consistency.
        rule.set(NaiveDate::from_ymd_opt(2026, 1, 1).and_then(|d| d.and_hms_opt(9, 0, 0)))?;
        Ok(rule)
    }

    /// `COUNT`, if the rule has one.
    pub fn count(&self) -> Option<u32> {
        self.count
    }

    /// The rule's expansion anchored at `dtstart` (naive local time, seconds precision).
    fn set(&self, dtstart: Option<NaiveDateTime>) -> Result<RRuleSet, CalendarError> {
        let dtstart = dtstart.ok_or_else(|| CalendarError::InvalidRule("no anchor".into()))?;
        let start = rrule::Tz::UTC.from_utc_datetime(&dtstart);
        parse_body(&self.body)?
            .build(start)
            .map(RRuleSet::limit)
            .map_err(|e| CalendarError::InvalidRule(e.to_string()))
    }
}

fn parse_body(body: &str) -> Result<RRule<Unvalidated>, CalendarError> {
    RRule::<Unvalidated>::from_str(body).map_err(|e| CalendarError::InvalidRule(e.to_string()))
}

fn parse_until(v: &str) -> Result<Until, CalendarError> {
    let bad = || CalendarError::InvalidRule(format!("UNTIL={v:?} is not YYYYMMDD[THHMMSS[Z]]"));
    if let Some(utc) = v.strip_suffix('Z').or_else(|| v.strip_suffix('z')) {
        let t = NaiveDateTime::parse_from_str(utc, "%Y%m%dT%H%M%S").map_err(|_| bad())?;
        return Ok(Until::Instant(t.and_utc()));
    }
    if v.len() == 8 {
        let d = NaiveDate::parse_from_str(v, "%Y%m%d").map_err(|_| bad())?;
        let end = d.and_hms_opt(23, 59, 59).ok_or_else(bad)?;
        return Ok(Until::Local(end));
    }
    NaiveDateTime::parse_from_str(v, "%Y%m%dT%H%M%S")
        .map(Until::Local)
        .map_err(|_| bad())
}

/// An IANA zone by name.
pub fn zone(name: &str) -> Result<Tz, CalendarError> {
    Tz::from_str(name).map_err(|_| CalendarError::UnknownZone(name.to_owned()))
}

/// The instant of wall-clock time `local` in `zone`: a nonexistent time moves forward by the
/// gap (it is read with the offset before the gap), an ambiguous one is the earlier instant.
pub fn place(local: NaiveDateTime, zone: Tz) -> DateTime<Utc> {
    match zone.from_local_datetime(&local) {
        chrono::LocalResult::Single(t) => t.with_timezone(&Utc),
        chrono::LocalResult::Ambiguous(a, b) => a.min(b).with_timezone(&Utc),
        chrono::LocalResult::None => {
            // The offset before the gap is the offset of the last minute that exists before
            // it. Gaps are at most a day (Pacific/Apia skipped 2011-12-30), hence 48 h.
            let mut probe = local;
            for _ in 0..48 * 60 {
                probe -= Duration::minutes(1);
                if let Some(t) = zone.from_local_datetime(&probe).latest() {
                    let offset = t.offset().fix().local_minus_utc();
                    return (local - Duration::seconds(i64::from(offset))).and_utc();
                }
            }
            // Unreachable for real zones; reading it as UTC still yields an instant.
            local.and_utc()
        }
    }
}

/// A series' schedule: a rule anchored at `dtstart` in `zone`, minus `exdates`.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule<'a> {
    pub rule: &'a Rule,
    pub zone: Tz,
    /// The anchor (the first instance's scheduled instant); its local time of day is the
    /// series' time of day. Sub-second parts are dropped.
    pub dtstart: DateTime<Utc>,
    pub exdates: &'a [DateTime<Utc>],
}

impl Schedule<'_> {
    /// Every occurrence in order, COUNT, UNTIL and exdates applied.
    pub fn occurrences(&self) -> Result<Occurrences, CalendarError> {
        self.occurrences_counting(self.rule.count)
    }

    fn occurrences_counting(&self, count: Option<u32>) -> Result<Occurrences, CalendarError> {
        let local = self.dtstart.with_timezone(&self.zone).naive_local();
        let local = local
            .date()
            .and_hms_opt(
                chrono::Timelike::hour(&local),
                chrono::Timelike::minute(&local),
                chrono::Timelike::second(&local),
            )
            .unwrap_or(local);
        let set = self.rule.set(Some(local))?;
        Ok(Occurrences {
            inner: (&set).into_iter(),
            zone: self.zone,
            until: self.rule.until,
            remaining: count,
            exdates: self.exdates.iter().copied().collect(),
            last: None,
            steps: 0,
            failed: false,
        })
    }

    /// The first occurrence strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, CalendarError> {
        Ok(self.next_n(after, 1)?.into_iter().next())
    }

    /// The first `n` occurrences strictly after `after`.
    pub fn next_n(
        &self,
        after: DateTime<Utc>,
        n: usize,
    ) -> Result<Vec<DateTime<Utc>>, CalendarError> {
        take_after(self.occurrences()?, after, n)
    }
}

fn take_after(
    mut occ: Occurrences,
    after: DateTime<Utc>,
    n: usize,
) -> Result<Vec<DateTime<Utc>>, CalendarError> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        match occ.next() {
            Some(Ok(t)) if t > after => out.push(t),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e),
            None => break,
        }
    }
    Ok(out)
}

/// Iterator over a [`Schedule`]'s instants; yields an error (once) if [`MAX_STEPS`] is hit.
pub struct Occurrences {
    inner: rrule::RRuleSetIter,
    zone: Tz,
    until: Option<Until>,
    remaining: Option<u32>,
    exdates: BTreeSet<DateTime<Utc>>,
    last: Option<DateTime<Utc>>,
    steps: usize,
    failed: bool,
}

impl Iterator for Occurrences {
    type Item = Result<DateTime<Utc>, CalendarError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.failed || self.remaining == Some(0) {
                return None;
            }
            self.steps += 1;
            if self.steps > MAX_STEPS {
                self.failed = true;
                return Some(Err(CalendarError::TooManySteps));
            }
            let local = self.inner.next()?.naive_utc();
            if let Some(Until::Local(end)) = self.until {
                if local > end {
                    return None;
                }
            }
            let at = place(local, self.zone);
            if let Some(Until::Instant(end)) = self.until {
                if at > end {
                    return None;
                }
            }
            // Two wall-clock times on one instant (a gap): the set holds it once.
            if self.last.is_some_and(|last| at <= last) {
                continue;
            }
            self.last = Some(at);
            if let Some(r) = self.remaining.as_mut() {
                *r -= 1;
            }
            if self.exdates.contains(&at) {
                continue;
            }
            return Some(Ok(at));
        }
    }
}

/// Everything the next instance of a series depends on.
#[derive(Debug, Clone, PartialEq)]
pub struct Series<'a> {
    pub schedule: Schedule<'a>,
    pub mode: Mode,
}

/// The completed instance a next one is computed from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Completed {
    /// Its scheduled instant (its occurrence).
    pub occurrence: DateTime<Utc>,
    /// 0 for the first instance of the series.
    pub index: u32,
    pub completed_at: DateTime<Utc>,
}

impl Series<'_> {
    /// The scheduled instant of the instance that follows `done`, or `None` when the series
    /// has ended (COUNT, UNTIL).
    ///
    /// * [`Mode::FromDue`]: the first occurrence after `done.occurrence`; if that is not after
    ///   `now`, the first occurrence after `now` (a task completed late never produces a burst
    ///   of overdue copies).
    /// * [`Mode::FromCompletion`]: the rule re-anchored at the completion's local day at the
    ///   series' time of day, and its first occurrence after that anchor, the completion and
    ///   the completed instance's occurrence (a task completed early does not repeat its own
    ///   occurrence). COUNT then bounds the number of instances of the series (the anchor moves,
    ///   so the rule's own count would restart every time).
    pub fn next_instance(
        &self,
        done: &Completed,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, CalendarError> {
        Ok(self.upcoming(done, now, 1)?.into_iter().next())
    }

    /// The next `n` instances if `done` were completed as given and every later one on time:
    /// the first is [`Series::next_instance`], the others follow it in the schedule.
    pub fn upcoming(
        &self,
        done: &Completed,
        now: DateTime<Utc>,
        n: usize,
    ) -> Result<Vec<DateTime<Utc>>, CalendarError> {
        match self.mode {
            Mode::FromDue => {
                let s = &self.schedule;
                let first = s.next_after(done.occurrence)?;
                let Some(first) = first else {
                    return Ok(vec![]);
                };
                let from = if first > now { done.occurrence } else { now };
                s.next_n(from, n)
            }
            Mode::FromCompletion => {
                let remaining = match self.schedule.rule.count {
                    Some(c) => (c.saturating_sub(done.index.saturating_add(1))) as usize,
                    None => usize::MAX,
                };
                let zone = self.schedule.zone;
                let time = series_time(self.schedule.dtstart, zone);
                let day = done.completed_at.with_timezone(&zone).date_naive();
                let anchor = place(day.and_time(time), zone);
                let rebased = Schedule {
                    dtstart: anchor,
                    ..self.schedule.clone()
                };
                let occ = rebased.occurrences_counting(None)?;
                // Never at or before the completed instance's own occurrence either: a task
                // completed ahead of its due date must not yield that same occurrence again
                // (the series' unique key would then refuse it and the series would stop).
                let after = anchor.max(done.completed_at).max(done.occurrence);
                take_after(occ, after, n.min(remaining))
            }
        }
    }
}

/// The series' local time of day (whole seconds).
fn series_time(dtstart: DateTime<Utc>, zone: Tz) -> NaiveTime {
    let t = dtstart.with_timezone(&zone).time();
    NaiveTime::from_hms_opt(
        chrono::Timelike::hour(&t),
        chrono::Timelike::minute(&t),
        chrono::Timelike::second(&t),
    )
    .unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("test instant")
            .with_timezone(&Utc)
    }

    #[test]
    fn parse_takes_count_and_until_out() {
        let r = Rule::parse("RRULE:FREQ=DAILY;COUNT=3").expect("rule");
        assert_eq!(r.count(), Some(3));
        assert_eq!(r.body, "FREQ=DAILY");
        let r = Rule::parse("FREQ=WEEKLY;UNTIL=20261231T235959Z;BYDAY=MO").expect("rule");
        assert_eq!(r.until, Some(Until::Instant(utc("2026-12-31T23:59:59Z"))));
        assert_eq!(r.body, "FREQ=WEEKLY;BYDAY=MO");
    }

    #[test]
    fn parse_refuses_bad_rules() {
        for bad in [
            "",
            "FREQ=MINUTELY",
            "FREQ=SECONDLY",
            "FREQ=FORTNIGHTLY",
            "FREQ=DAILY;COUNT=0",
            "FREQ=DAILY;COUNT=x",
            "FREQ=DAILY;UNTIL=tomorrow",
            "FREQ=DAILY;COUNT=2;UNTIL=20270101",
            "FREQ=DAILY;BYHOUR=25",
            "FREQ=DAILY\nEXDATE:20260101T000000Z",
            "FREQ=é",
            "INTERVAL=2",
        ] {
            assert!(Rule::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn place_handles_gaps_and_folds() {
        let berlin = zone("Europe/Berlin").expect("zone");
        let naive = |s: &str| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").expect("naive");
        assert_eq!(
            place(naive("2026-03-29 02:30"), berlin),
            utc("2026-03-29T03:30:00+02:00")
        );
        assert_eq!(
            place(naive("2026-10-25 02:30"), berlin),
            utc("2026-10-25T02:30:00+02:00")
        );
        let lhi = zone("Australia/Lord_Howe").expect("zone");
        assert_eq!(
            place(naive("2026-10-04 02:15"), lhi),
            utc("2026-10-04T02:45:00+11:00")
        );
    }

    #[test]
    fn an_evaluation_too_long_to_walk_is_refused() {
        let rule = Rule::parse("FREQ=HOURLY").expect("rule");
        let s = Schedule {
            rule: &rule,
            zone: zone("UTC").expect("zone"),
            dtstart: utc("1900-01-01T00:00:00Z"),
            exdates: &[],
        };
        // 126 years of hours: more than MAX_STEPS.
        assert_eq!(
            s.next_after(utc("2026-01-01T00:00:00Z")),
            Err(CalendarError::TooManySteps)
        );
        // Within the bound it answers.
        assert_eq!(
            s.next_after(utc("1901-01-01T00:00:00Z")),
            Ok(Some(utc("1901-01-01T01:00:00Z")))
        );
    }

    #[test]
    fn from_due_skips_to_after_now_when_late() {
        let rule = Rule::parse("FREQ=DAILY").expect("rule");
        let series = Series {
            schedule: Schedule {
                rule: &rule,
                zone: zone("Europe/Berlin").expect("zone"),
                dtstart: utc("2026-11-01T09:00:00+01:00"),
                exdates: &[],
            },
            mode: Mode::FromDue,
        };
        let done = Completed {
            occurrence: utc("2026-11-01T09:00:00+01:00"),
            index: 0,
            completed_at: utc("2026-11-10T12:00:00+01:00"),
        };
        // On time: the day after.
        assert_eq!(
            series
                .next_instance(&done, utc("2026-11-01T10:00:00+01:00"))
                .expect("ok"),
            Some(utc("2026-11-02T09:00:00+01:00"))
        );
        // Nine days late: the first one after now, not nine overdue copies.
        assert_eq!(
            series
                .next_instance(&done, utc("2026-11-10T12:00:00+01:00"))
                .expect("ok"),
            Some(utc("2026-11-11T09:00:00+01:00"))
        );
    }

    #[test]
    fn from_completion_counts_from_the_completion_day() {
        let rule = Rule::parse("FREQ=DAILY;INTERVAL=3;COUNT=3").expect("rule");
        let series = Series {
            schedule: Schedule {
                rule: &rule,
                zone: zone("America/New_York").expect("zone"),
                dtstart: utc("2026-11-01T09:00:00-05:00"),
                exdates: &[],
            },
            mode: Mode::FromCompletion,
        };
        let done = Completed {
            occurrence: utc("2026-11-01T09:00:00-05:00"),
            index: 0,
            completed_at: utc("2026-11-05T20:00:00-05:00"),
        };
        let now = done.completed_at;
        assert_eq!(
            series.next_instance(&done, now).expect("ok"),
            Some(utc("2026-11-08T09:00:00-05:00"))
        );
        // Completed a day early: the next is after its own occurrence, not on it.
        let early = Completed {
            occurrence: utc("2026-11-06T09:00:00-05:00"),
            index: 0,
            completed_at: utc("2026-11-05T10:00:00-05:00"),
        };
        let daily = Rule::parse("FREQ=DAILY").expect("rule");
        let every_day = Series {
            schedule: Schedule {
                rule: &daily,
                ..series.schedule.clone()
            },
            mode: Mode::FromCompletion,
        };
        assert_eq!(
            every_day
                .next_instance(&early, early.completed_at)
                .expect("ok"),
            Some(utc("2026-11-07T09:00:00-05:00"))
        );
        // COUNT=3: instances 0, 1, 2; the third one's completion ends the series.
        let last = Completed { index: 2, ..done };
        assert_eq!(series.next_instance(&last, now).expect("ok"), None);
    }
}
