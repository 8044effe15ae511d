//! Property tests over random rules, zones and start dates: occurrences strictly increase,
//! respect COUNT, UNTIL and exdates, and keep the series' local wall-clock time except where
//! that time does not exist on a day (then it moves forward by the gap) or exists twice (then
//! it is the first).

use chrono::{DateTime, Duration, NaiveDate, NaiveTime, TimeZone, Utc};
use proptest::prelude::*;
use taskflow_calendar::{place, zone, Completed, Mode, Rule, Schedule, Series};

const ZONES: [&str; 10] = [
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",
    "UTC",
    "Asia/Kolkata",
    "America/Santiago",
    "Pacific/Apia",
    "Europe/London",
    "Asia/Tehran",
    "America/St_Johns",
];

const TAKE: usize = 40;

#[derive(Debug, Clone)]
struct Case {
    rule: String,
    count: Option<u32>,
    until: Option<DateTime<Utc>>,
    zone: &'static str,
    start: DateTime<Utc>,
}

fn rule_body() -> impl Strategy<Value = String> {
    let freq = prop_oneof!["DAILY", "WEEKLY", "MONTHLY", "YEARLY"];
    let by = prop_oneof![
        Just(String::new()),
        Just(";BYDAY=MO,WE,FR".to_owned()),
        Just(";BYDAY=-1FR".to_owned()),
        Just(";BYMONTHDAY=-1".to_owned()),
        Just(";BYMONTHDAY=31".to_owned()),
        Just(";BYMONTHDAY=1,15".to_owned()),
        Just(";BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1".to_owned()),
    ];
    (freq, 1u16..4, by).prop_map(|(f, i, by)| {
        // BYDAY with a position and BYMONTHDAY need a monthly or yearly frame.
        let by = if matches!(f.as_str(), "DAILY" | "WEEKLY")
            && (by.contains('-') || by.contains("MONTH"))
        {
            String::new()
        } else {
            by
        };
        format!("FREQ={f};INTERVAL={i}{by}")
    })
}

fn case() -> impl Strategy<Value = Case> {
    (
        rule_body(),
        prop::option::of(1u32..30),
        prop::option::of(1i64..2_000),
        0..ZONES.len(),
        0i64..(40 * 365),
        0u32..24,
        prop_oneof![Just(0u32), Just(15), Just(30), Just(45)],
    )
        .prop_map(|(rule, count, until_days, z, day, hour, minute)| {
            let zone_name = ZONES[z];
            let tz = zone(zone_name).expect("zone");
            let date = NaiveDate::from_ymd_opt(2000, 1, 1).expect("date") + Duration::days(day);
            let local = date.and_time(NaiveTime::from_hms_opt(hour, minute, 0).expect("time"));
            let start = place(local, tz);
            // COUNT and UNTIL are exclusive (RFC 5545).
            let until = match count {
                Some(_) => None,
                None => until_days.map(|d| start + Duration::days(d)),
            };
            Case {
                rule,
                count,
                until,
                zone: zone_name,
                start,
            }
        })
}

impl Case {
    fn rule_text(&self) -> String {
        let mut s = self.rule.clone();
        if let Some(c) = self.count {
            s.push_str(&format!(";COUNT={c}"));
        }
        if let Some(u) = self.until {
            s.push_str(&format!(";UNTIL={}", u.format("%Y%m%dT%H%M%SZ")));
        }
        s
    }

    fn occurrences(&self, exdates: &[DateTime<Utc>]) -> Vec<DateTime<Utc>> {
        let rule = Rule::parse(&self.rule_text()).expect("generated rules are valid");
        let schedule = Schedule {
            rule: &rule,
            zone: zone(self.zone).expect("zone"),
            dtstart: self.start,
            exdates,
        };
        schedule
            .occurrences()
            .expect("occurrences")
            .take(TAKE)
            .map(|r| r.expect("within the step bound"))
            .collect()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn occurrences_strictly_increase_and_respect_count_and_until(case in case()) {
        let occ = case.occurrences(&[]);
        for w in occ.windows(2) {
            prop_assert!(w[0] < w[1], "{case:?}: {} !< {}", w[0], w[1]);
        }
        if let Some(c) = case.count {
            prop_assert!(occ.len() <= c as usize, "{case:?}: {} > COUNT", occ.len());
        }
        if let Some(u) = case.until {
            prop_assert!(occ.iter().all(|t| *t <= u), "{case:?}: past UNTIL");
        }
        prop_assert!(occ.first().is_none_or(|t| *t >= case.start), "{case:?}: before DTSTART");
    }

    #[test]
    fn exdates_are_skipped_and_nothing_else_changes(case in case(), pick in prop::collection::vec(any::<prop::sample::Index>(), 0..4)) {
        let all = case.occurrences(&[]);
        prop_assume!(!all.is_empty());
        let exdates: Vec<_> = pick.iter().map(|i| all[i.index(all.len())]).collect();
        let rest = case.occurrences(&exdates);
        // Every exdate is gone, and the rest is the full set minus the exdates: an exdate
        // uses up one of the COUNT rather than pulling in a later occurrence.
        let expected: Vec<_> = all.iter().copied().filter(|t| !exdates.contains(t)).collect();
        prop_assert!(rest.iter().all(|t| !exdates.contains(t)));
        // Exact when `all` is the whole set; when TAKE cut it short, `rest` may rightly go
        // on past its end (fewer taken by exdates), so only the common prefix is comparable.
        if all.len() < TAKE {
            prop_assert_eq!(&rest[..], &expected[..]);
        } else {
            prop_assert_eq!(&rest[..expected.len().min(rest.len())], &expected[..expected.len().min(rest.len())]);
        }
    }

    #[test]
    fn local_wall_clock_time_is_kept(case in case()) {
        let tz = zone(case.zone).expect("zone");
        let time = case.start.with_timezone(&tz).time();
        for t in case.occurrences(&[]) {
            let local = t.with_timezone(&tz);
            if local.time() == time {
                // The time exists that day; if it exists twice, it is the first.
                let earliest = tz
                    .from_local_datetime(&local.naive_local())
                    .earliest()
                    .expect("it exists");
                prop_assert_eq!(earliest.with_timezone(&Utc), t, "{:?}: not the first of a fold", case);
            } else {
                // Only allowed where the wall-clock time does not exist: then it is the
                // time moved forward by the gap (the naive time was on this day or, for a
                // gap across midnight, the day before).
                let d = local.date_naive();
                let candidates = [d, d - Duration::days(1)];
                let ok = candidates.iter().any(|d| {
                    let naive = d.and_time(time);
                    tz.from_local_datetime(&naive).earliest().is_none() && place(naive, tz) == t
                });
                prop_assert!(ok, "{case:?}: {local} does not keep {time}");
            }
        }
    }

    #[test]
    fn from_due_next_instance_is_after_the_previous_and_after_now(case in case(), late_days in 0i64..60) {
        let rule = Rule::parse(&case.rule_text()).expect("rule");
        let series = Series {
            schedule: Schedule { rule: &rule, zone: zone(case.zone).expect("zone"), dtstart: case.start, exdates: &[] },
            mode: Mode::FromDue,
        };
        let done = Completed { occurrence: case.start, index: 0, completed_at: case.start + Duration::days(late_days) };
        let now = done.completed_at;
        if let Some(next) = series.next_instance(&done, now).expect("ok") {
            prop_assert!(next > done.occurrence);
            prop_assert!(next > now);
        }
    }

    #[test]
    fn from_completion_next_instance_is_after_the_completion(case in case(), hours in 0i64..2_000) {
        let rule = Rule::parse(&case.rule_text()).expect("rule");
        let series = Series {
            schedule: Schedule { rule: &rule, zone: zone(case.zone).expect("zone"), dtstart: case.start, exdates: &[] },
            mode: Mode::FromCompletion,
        };
        let completed_at = case.start + Duration::hours(hours);
        let done = Completed { occurrence: case.start, index: 0, completed_at };
        let upcoming = series.upcoming(&done, completed_at, 3).expect("ok");
        prop_assert!(upcoming.iter().all(|t| *t > completed_at && *t > done.occurrence));
        for w in upcoming.windows(2) {
            prop_assert!(w[0] < w[1]);
        }
        if let Some(c) = case.count {
            // Instance 0 is done: at most COUNT - 1 more.
            prop_assert!(upcoming.len() < c as usize);
        }
    }
}
