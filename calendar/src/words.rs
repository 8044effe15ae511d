//! A rule in plain English ("every weekday at 09:00"), for people reading or editing a
//! task next to its RRULE.
//!
//! The wording covers what task rules use (frequency and interval, weekdays, the n-th weekday
//! of a month, month days, months, times of day, COUNT, UNTIL). A rule part it has no words
//! for (BYYEARDAY, BYWEEKNO, BYSECOND, or BYSETPOS without weekdays) is not dropped
//! silently: the text then ends with "(and further conditions: see the RRULE)", so the words
//! never claim a simpler schedule than the rule's.

use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike, Weekday};
use rrule::{Frequency, NWeekday};

use crate::{parse_body, CalendarError, Rule, Until};

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

const WEEKDAYS: [Weekday; 5] = [
    Weekday::Mon,
    Weekday::Tue,
    Weekday::Wed,
    Weekday::Thu,
    Weekday::Fri,
];

impl Rule {
    /// The rule in plain English. `anchor` is the series' first instance on the local wall
    /// clock: its time of day is the rule's when the rule names no BYHOUR/BYMINUTE, and its
    /// date is the day a yearly rule without BYMONTH repeats on.
    pub fn describe(&self, anchor: NaiveDateTime) -> Result<String, CalendarError> {
        let r = parse_body(&self.body)?;
        let freq = r.get_freq();
        let interval = r.get_interval().max(1);
        let mut unsupported = !r.get_by_year_day().is_empty()
            || !r.get_by_week_no().is_empty()
            || r.get_by_second().iter().any(|s| *s != 0);

        let days = r.get_by_weekday();
        let every_days: Vec<Weekday> = days
            .iter()
            .filter_map(|d| match d {
                NWeekday::Every(w) => Some(*w),
                NWeekday::Nth(..) => None,
            })
            .collect();
        let nth_days: Vec<(i16, Weekday)> = days
            .iter()
            .filter_map(|d| match d {
                NWeekday::Nth(n, w) => Some((*n, *w)),
                NWeekday::Every(_) => None,
            })
            .collect();
        let set_pos = r.get_by_set_pos();
        if !set_pos.is_empty() && every_days.is_empty() {
            unsupported = true;
        }

        let mut text = String::new();
        let plain_weekly = every_days.len() == days.len()
            && !every_days.is_empty()
            && set_pos.is_empty()
            && interval == 1
            && matches!(freq, Frequency::Daily | Frequency::Weekly);
        if plain_weekly {
            // "every weekday", "every Monday and Wednesday": the days say it all.
            text.push_str("every ");
            text.push_str(&weekday_set(&every_days));
        } else {
            text.push_str(&every(freq, interval));
            if !every_days.is_empty() || !nth_days.is_empty() {
                let mut parts = Vec::new();
                if !every_days.is_empty() {
                    let set = weekday_set(&every_days);
                    if set_pos.is_empty() {
                        parts.push(set);
                    } else {
                        let pos: Vec<String> = set_pos.iter().map(|p| ordinal_pos(*p)).collect();
                        parts.push(format!("the {} {}", join(&pos, "or"), singular(&set)));
                    }
                }
                for (n, w) in &nth_days {
                    parts.push(format!(
                        "the {} {}",
                        ordinal_pos(i32::from(*n)),
                        day_name(*w)
                    ));
                }
                text.push_str(" on ");
                text.push_str(&join(&parts, "and"));
            }
        }

        let month_days = r.get_by_month_day();
        if !month_days.is_empty() {
            let d: Vec<String> = month_days.iter().map(|d| month_day(*d)).collect();
            text.push_str(" on the ");
            text.push_str(&join(&d, "and"));
        }
        let months = r.get_by_month();
        if !months.is_empty() {
            let m: Vec<String> = months.iter().map(|m| month_name(*m).to_owned()).collect();
            text.push_str(" in ");
            text.push_str(&join(&m, "and"));
        } else if freq == Frequency::Yearly && month_days.is_empty() && days.is_empty() {
            // The rule repeats on its anchor's date.
            let month = u8::try_from(anchor.month()).unwrap_or(1);
            text.push_str(&format!(" on {} {}", anchor.day(), month_name(month)));
        } else if freq == Frequency::Monthly && month_days.is_empty() && days.is_empty() {
            text.push_str(" on the ");
            text.push_str(&ordinal(i32::try_from(anchor.day()).unwrap_or(1)));
        }

        let times = times_of_day(
            r.get_by_hour(),
            r.get_by_minute(),
            anchor.time(),
            freq == Frequency::Hourly,
        );
        if !times.is_empty() {
            text.push(' ');
            text.push_str(&times);
        }

        match self.count {
            Some(1) => text.push_str(", once"),
            Some(n) => text.push_str(&format!(", {n} times")),
            None => {}
        }
        match self.until {
            Some(Until::Local(end)) => {
                text.push_str(", until ");
                text.push_str(&until_local(end));
            }
            Some(Until::Instant(end)) => {
                text.push_str(", until ");
                text.push_str(&end.format("%-d %B %Y %H:%M UTC").to_string());
            }
            None => {}
        }
        if unsupported {
            text.push_str(" (and further conditions: see the RRULE)");
        }
        Ok(text)
    }
}

fn every(freq: Frequency, interval: u16) -> String {
    let unit = match freq {
        Frequency::Yearly => "year",
        Frequency::Monthly => "month",
        Frequency::Weekly => "week",
        Frequency::Daily => "day",
        Frequency::Hourly => "hour",
        Frequency::Minutely => "minute",
        Frequency::Secondly => "second",
    };
    match interval {
        1 => format!("every {unit}"),
        2 => format!("every other {unit}"),
        n => format!("every {n} {unit}s"),
    }
}

/// "weekday", "weekend day", "day", or the days' names in week order.
fn weekday_set(days: &[Weekday]) -> String {
    let mut sorted: Vec<Weekday> = days.to_vec();
    sorted.sort_by_key(|d| d.num_days_from_monday());
    sorted.dedup();
    if sorted.len() == 7 {
        return "day".into();
    }
    if sorted == WEEKDAYS {
        return "weekday".into();
    }
    if sorted == [Weekday::Sat, Weekday::Sun] {
        return "weekend day".into();
    }
    let names: Vec<String> = sorted.iter().map(|d| day_name(*d).to_owned()).collect();
    join(&names, "and")
}

/// "the last weekday", not "the last weekday and ...": after BYSETPOS, one day is picked.
fn singular(set: &str) -> String {
    set.replace(" and ", " or ")
}

fn day_name(d: Weekday) -> &'static str {
    match d {
        Weekday::Mon => "Monday",
        Weekday::Tue => "Tuesday",
        Weekday::Wed => "Wednesday",
        Weekday::Thu => "Thursday",
        Weekday::Fri => "Friday",
        Weekday::Sat => "Saturday",
        Weekday::Sun => "Sunday",
    }
}

fn month_name(m: u8) -> &'static str {
    MONTHS
        .get(usize::from(m.saturating_sub(1)))
        .copied()
        .unwrap_or("?")
}

/// 1 -> "first", -1 -> "last", -2 -> "second to last", 7 -> "7th".
fn ordinal_pos(n: i32) -> String {
    match n {
        1 => "first".into(),
        2 => "second".into(),
        3 => "third".into(),
        4 => "fourth".into(),
        5 => "fifth".into(),
        -1 => "last".into(),
        n if n < 0 => format!("{} to last", ordinal_pos(-n)),
        n => ordinal(n),
    }
}

fn ordinal(n: i32) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// 15 -> "15th", -1 -> "last day", -2 -> "second to last day".
fn month_day(d: i8) -> String {
    if d < 0 {
        format!("{} day", ordinal_pos(i32::from(d)))
    } else {
        ordinal(i32::from(d))
    }
}

/// "a, b and c".
fn join(items: &[String], word: &str) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} {word} {last}", init.join(", ")),
    }
}

/// "at 09:00", "at 09:00 and 17:30"; for an hourly rule "at minute 15" (or nothing at :00).
fn times_of_day(hours: &[u8], minutes: &[u8], anchor: NaiveTime, hourly: bool) -> String {
    let minutes: Vec<u32> = if minutes.is_empty() {
        vec![anchor.minute()]
    } else {
        minutes.iter().map(|m| u32::from(*m)).collect()
    };
    if hourly && hours.is_empty() {
        let m: Vec<String> = minutes.iter().map(|m| format!(":{m:02}")).collect();
        return if minutes == [0] {
            String::new()
        } else {
            format!("at {} past the hour", join(&m, "and"))
        };
    }
    let hours: Vec<u32> = if hours.is_empty() {
        vec![anchor.hour()]
    } else {
        hours.iter().map(|h| u32::from(*h)).collect()
    };
    let mut times = Vec::new();
    for h in &hours {
        for m in &minutes {
            times.push(format!("{h:02}:{m:02}"));
        }
    }
    format!("at {}", join(&times, "and"))
}

fn until_local(end: NaiveDateTime) -> String {
    let whole_day = end.time() == NaiveTime::from_hms_opt(23, 59, 59).unwrap_or_default();
    let date = end.date();
    if whole_day {
        format!("{} (inclusive)", long_date(date))
    } else {
        format!("{} {}", long_date(date), end.format("%H:%M"))
    }
}

fn long_date(d: NaiveDate) -> String {
    d.format("%-d %B %Y").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(rule: &str) -> String {
        let anchor = NaiveDate::from_ymd_opt(2026, 3, 14)
            .and_then(|d| d.and_hms_opt(9, 0, 0))
            .expect("anchor");
        Rule::parse(rule)
            .and_then(|r| r.describe(anchor))
            .expect("describe")
    }

    #[test]
    fn common_rules_read_naturally() {
        let cases = [
            ("FREQ=DAILY", "every day at 09:00"),
            ("FREQ=DAILY;INTERVAL=3", "every 3 days at 09:00"),
            (
                "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR;BYHOUR=9;BYMINUTE=0",
                "every weekday at 09:00",
            ),
            ("FREQ=DAILY;BYDAY=SA,SU", "every weekend day at 09:00"),
            (
                "FREQ=WEEKLY;BYDAY=WE,MO",
                "every Monday and Wednesday at 09:00",
            ),
            (
                "FREQ=WEEKLY;INTERVAL=2;BYDAY=FR;BYHOUR=17;BYMINUTE=30",
                "every other week on Friday at 17:30",
            ),
            ("FREQ=WEEKLY", "every week at 09:00"),
            ("FREQ=MONTHLY", "every month on the 14th at 09:00"),
            (
                "FREQ=MONTHLY;BYMONTHDAY=1",
                "every month on the 1st at 09:00",
            ),
            (
                "FREQ=MONTHLY;BYMONTHDAY=-1",
                "every month on the last day at 09:00",
            ),
            (
                "FREQ=MONTHLY;BYDAY=1MO",
                "every month on the first Monday at 09:00",
            ),
            (
                "FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1",
                "every month on the last weekday at 09:00",
            ),
            ("FREQ=YEARLY", "every year on 14 March at 09:00"),
            (
                "FREQ=YEARLY;BYMONTH=12;BYMONTHDAY=24",
                "every year on the 24th in December at 09:00",
            ),
            ("FREQ=HOURLY;INTERVAL=4", "every 4 hours"),
            ("FREQ=HOURLY;BYMINUTE=15", "every hour at :15 past the hour"),
            (
                "FREQ=DAILY;BYHOUR=8,18;BYMINUTE=0",
                "every day at 08:00 and 18:00",
            ),
            ("FREQ=DAILY;COUNT=10", "every day at 09:00, 10 times"),
            (
                "FREQ=WEEKLY;BYDAY=MO;UNTIL=20270131",
                "every Monday at 09:00, until 31 January 2027 (inclusive)",
            ),
            (
                "FREQ=DAILY;UNTIL=20270131T120000Z",
                "every day at 09:00, until 31 January 2027 12:00 UTC",
            ),
        ];
        for (rule, want) in cases {
            assert_eq!(words(rule), want, "{rule}");
        }
    }

    #[test]
    fn parts_without_words_are_flagged_not_dropped() {
        assert_eq!(
            words("FREQ=YEARLY;BYWEEKNO=20;BYDAY=MO"),
            "every year on Monday at 09:00 (and further conditions: see the RRULE)"
        );
    }

    #[test]
    fn ordinals() {
        assert_eq!(ordinal(1), "1st");
        assert_eq!(ordinal(2), "2nd");
        assert_eq!(ordinal(3), "3rd");
        assert_eq!(ordinal(11), "11th");
        assert_eq!(ordinal(12), "12th");
        assert_eq!(ordinal(13), "13th");
        assert_eq!(ordinal(21), "21st");
        assert_eq!(ordinal(22), "22nd");
        assert_eq!(ordinal(31), "31st");
        assert_eq!(ordinal_pos(-2), "second to last");
    }
}
