//! ISO-8601 durations of reminders (`PT15M`, `P1DT2H`, `P2W`).

/// Longest accepted duration: ten years, so `due_at - before` always stays a
/// valid instant.
pub const MAX_DURATION_SECS: i64 = 3_660 * 86_400;

/// A non-negative duration of at most [`MAX_DURATION_SECS`], in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct IsoDuration(i64);

impl IsoDuration {
    pub fn parse(s: &str) -> Result<Self, String> {
        parse_iso_duration(s).map(Self)
    }

    pub fn seconds(self) -> i64 {
        self.0
    }
}

impl std::fmt::Display for IsoDuration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&format_iso_duration(self.0))
    }
}

/// Parses an ISO-8601 duration of weeks, days, hours, minutes and seconds
/// (`PT15M`, `P1DT2H`, `P2W`) into seconds. Years and months are refused
/// because their length depends on the date; negative durations are refused
/// because a reminder "before" the due date cannot come after it.
pub fn parse_iso_duration(s: &str) -> Result<i64, String> {
    let s = s.trim();
    if s.starts_with('-') {
        return Err(format!("{s:?}: negative durations are not allowed"));
    }
    let invalid = || format!("{s:?} is not an ISO-8601 duration such as PT15M or P1DT2H");
    let rest = s.strip_prefix('P').ok_or_else(invalid)?;
    if rest.is_empty() {
        return Err(invalid());
    }
    let (date, time) = match rest.split_once('T') {
        Some((d, t)) => {
            if t.is_empty() {
                return Err(invalid());
            }
            (d, Some(t))
        }
        None => (rest, None),
    };
    let mut total: i64 = 0;
    let mut add = |n: i64, unit: i64| -> Result<(), String> {
        total = n
            .checked_mul(unit)
            .and_then(|x| total.checked_add(x))
            .ok_or_else(|| format!("{s:?} is too long"))?;
        Ok(())
    };
    for (n, unit) in split_units(date).ok_or_else(invalid)? {
        match unit {
            'W' => add(n, 7 * 86_400)?,
            'D' => add(n, 86_400)?,
            'Y' | 'M' => {
                return Err(format!(
                    "{s:?}: years and months have no fixed length; use weeks or days"
                ))
            }
            _ => return Err(invalid()),
        }
    }
    if let Some(time) = time {
        for (n, unit) in split_units(time).ok_or_else(invalid)? {
            match unit {
                'H' => add(n, 3_600)?,
                'M' => add(n, 60)?,
                'S' => add(n, 1)?,
                _ => return Err(invalid()),
            }
        }
    }
    // Bound it so `due_at - before` always stays a valid instant.
    if total > MAX_DURATION_SECS {
        return Err(format!("{s:?} is longer than ten years"));
    }
    Ok(total)
}

/// `1D2H` -> [(1,'D'),(2,'H')]; `None` on anything else (fractions included).
fn split_units(s: &str) -> Option<Vec<(i64, char)>> {
    let mut out = Vec::new();
    let mut digits = String::new();
    let mut seen = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
        } else {
            if digits.is_empty() || seen.contains(c) {
                return None;
            }
            out.push((digits.parse().ok()?, c));
            seen.push(c);
            digits.clear();
        }
    }
    if !digits.is_empty() {
        return None;
    }
    Some(out)
}

/// Canonical ISO-8601 form of a number of seconds: `PT15M`, `P1DT2H`, `PT0S`.
pub fn format_iso_duration(secs: i64) -> String {
    if secs <= 0 {
        return "PT0S".to_owned();
    }
    let (d, rem) = (secs / 86_400, secs % 86_400);
    let (h, m, s) = (rem / 3_600, rem % 3_600 / 60, rem % 60);
    let mut out = String::from("P");
    if d > 0 {
        out.push_str(&format!("{d}D"));
    }
    if h > 0 || m > 0 || s > 0 {
        out.push('T');
        if h > 0 {
            out.push_str(&format!("{h}H"));
        }
        if m > 0 {
            out.push_str(&format!("{m}M"));
        }
        if s > 0 {
            out.push_str(&format!("{s}S"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_durations() {
        assert_eq!(parse_iso_duration("PT15M"), Ok(900));
        assert_eq!(parse_iso_duration("P1DT2H"), Ok(93_600));
        assert_eq!(parse_iso_duration("P2W"), Ok(1_209_600));
        assert_eq!(parse_iso_duration("PT0S"), Ok(0));
        assert_eq!(parse_iso_duration("PT1H30M5S"), Ok(5_405));
        for bad in [
            "", "P", "PT", "15M", "PT15", "PT1.5M", "P1M", "P1Y", "PT15Mx", "PT5M5M", "P1H",
        ] {
            assert!(parse_iso_duration(bad).is_err(), "{bad:?}");
        }
        let neg = parse_iso_duration("-PT5M").unwrap_err();
        assert!(neg.contains("negative"));
        for secs in [0, 59, 60, 900, 3_600, 86_400, 93_605] {
            assert_eq!(parse_iso_duration(&format_iso_duration(secs)), Ok(secs));
        }
        assert_eq!(format_iso_duration(900), "PT15M");
        assert_eq!(format_iso_duration(86_400), "P1D");
    }

    #[test]
    fn typed_duration_displays_canonically() {
        let d = IsoDuration::parse("PT90M").unwrap();
        assert_eq!(d.seconds(), 5_400);
        assert_eq!(d.to_string(), "PT1H30M");
        assert!(IsoDuration::parse("P20Y").is_err());
        assert!(IsoDuration::parse(&format!("P{}D", 3_661)).is_err());
    }
}
