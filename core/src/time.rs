//! Time as KACHING documents carry it: whole seconds since the Unix epoch (UTC),
//! and the calendar [`Period`]s that quota counters are bucketed by.
//!
//! Nothing in this crate reads the clock; callers pass `now` in.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// Seconds since 1970-01-01T00:00:00Z.
pub type Timestamp = u64;

/// One day in seconds.
pub const DAY: u64 = 86_400;

/// A calendar date in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Date {
    /// Year, e.g. 2026.
    pub year: i64,
    /// Month, 1..=12.
    pub month: u32,
    /// Day of month, 1..=31.
    pub day: u32,
}

/// Converts seconds since the epoch into a UTC calendar date and seconds into that day.
pub fn to_civil(t: Timestamp) -> (Date, u64) {
    let days = (t / DAY) as i64;
    let secs = t % DAY;
    // Howard Hinnant's days-from-civil inverse, valid for all dates after the epoch.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (Date { year, month, day }, secs)
}

/// Converts a UTC calendar date into seconds since the epoch at its midnight.
/// Returns `None` for dates before the epoch or out of range.
pub fn from_civil(d: Date) -> Option<Timestamp> {
    if !(1..=12).contains(&d.month) || d.day == 0 || d.day > days_in_month(d.year, d.month) {
        return None;
    }
    let y = if d.month <= 2 { d.year - 1 } else { d.year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(d.month);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(d.day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days).ok()?.checked_mul(DAY)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

/// Formats a timestamp as RFC 3339 UTC, e.g. `2026-11-22T17:52:21Z`.
pub fn rfc3339(t: Timestamp) -> String {
    let (d, s) = to_civil(t);
    // Four-digit years (all of them, in practice) are written digit by digit:
    // every license verification formats a date, and `format!` with padding
    // cost more than the rest of the verdict's reason (docs/benchmarks.md).
    if let (Ok(year @ 0..=9999), Ok(secs)) = (u32::try_from(d.year), u32::try_from(s)) {
        let fields = [
            (year, 4, '-'),
            (d.month, 2, '-'),
            (d.day, 2, 'T'),
            (secs / 3600, 2, ':'),
            (secs / 60 % 60, 2, ':'),
            (secs % 60, 2, 'Z'),
        ];
        let mut out = String::with_capacity(20);
        for (n, width, after) in fields {
            for p in (0..width).rev() {
                out.push(char::from(b'0' + (n / 10u32.pow(p) % 10) as u8));
            }
            out.push(after);
        }
        return out;
    }
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        d.year,
        d.month,
        d.day,
        s / 3600,
        (s / 60) % 60,
        s % 60
    )
}

/// Parses `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM:SSZ` (UTC only).
pub fn parse_rfc3339(s: &str) -> Option<Timestamp> {
    let s = s.trim();
    let (date, time) = match s.split_once(['T', ' ']) {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    let mut parts = date.splitn(3, '-');
    let year: i64 = parts.next()?.parse().ok()?;
    let month: u32 = parts.next()?.parse().ok()?;
    let day: u32 = parts.next()?.parse().ok()?;
    let midnight = from_civil(Date { year, month, day })?;
    let Some(time) = time else {
        return Some(midnight);
    };
    let time = time
        .strip_suffix('Z')
        .or_else(|| time.strip_suffix("+00:00"))?;
    let mut hms = time.splitn(3, ':');
    let h: u64 = hms.next()?.parse().ok()?;
    let m: u64 = hms.next()?.parse().ok()?;
    let sec: u64 = hms.next().unwrap_or("0").parse().ok()?;
    if h > 23 || m > 59 || sec > 60 {
        return None;
    }
    Some(midnight + h * 3600 + m * 60 + sec)
}

/// How a quota's counter is bucketed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Period {
    /// Resets at 00:00 UTC every day.
    Day,
    /// Resets on the first of every month (UTC).
    Month,
    /// Never resets.
    Total,
    /// Not a counter: the last reported level (e.g. storage in use).
    Gauge,
}

impl Period {
    /// The spelling used in files and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Month => "month",
            Period::Total => "total",
            Period::Gauge => "gauge",
        }
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Period {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "day" => Ok(Period::Day),
            "month" => Ok(Period::Month),
            "total" => Ok(Period::Total),
            "gauge" => Ok(Period::Gauge),
            _ => Err(format!(
                "unknown quota period {s:?}: use day, month, total or gauge"
            )),
        }
    }
}

impl<'de> serde::Deserialize<'de> for Period {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The calendar bucket a timestamp falls into for a quota period:
/// `2026-11-22` (day), `2026-11` (month) or `total`.
pub fn period_key(period: Period, t: Timestamp) -> String {
    let (d, _) = to_civil(t);
    match period {
        Period::Day => format!("{:04}-{:02}-{:02}", d.year, d.month, d.day),
        Period::Month => format!("{:04}-{:02}", d.year, d.month),
        Period::Total | Period::Gauge => "total".to_string(),
    }
}

/// Formats a duration in seconds the way people read it (`30d`, `2h 5m`, `45s`).
pub fn human_duration(secs: u64) -> String {
    if secs == 0 {
        return "0s".into();
    }
    let units = [(DAY, "d"), (3600, "h"), (60, "m"), (1, "s")];
    let mut out = Vec::new();
    let mut rest = secs;
    for (size, name) in units {
        if rest >= size {
            out.push(format!("{}{}", rest / size, name));
            rest %= size;
        }
        if out.len() == 2 {
            break;
        }
    }
    out.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_round_trip_across_leap_years() {
        for t in (0..4_102_444_800u64).step_by(86_400 * 13 + 7) {
            let (d, s) = to_civil(t);
            assert_eq!(from_civil(d).map(|m| m + s), Some(t), "{d:?}");
        }
    }

    #[test]
    fn rfc3339_matches_padded_formatting() {
        for t in [
            0,
            59,
            3_599,
            86_399,
            951_782_400,
            1_795_369_941,
            253_402_300_799,
        ]
        .into_iter()
        .chain((0..2_000u64).map(|i| i * 7_919_993 + i))
        .chain([253_402_300_800, u64::MAX])
        {
            let (d, s) = to_civil(t);
            let padded = format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
                d.year,
                d.month,
                d.day,
                s / 3600,
                (s / 60) % 60,
                s % 60
            );
            assert_eq!(rfc3339(t), padded, "{t}");
        }
    }

    #[test]
    fn rfc3339_known_values() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_369_941), "2026-11-22T17:52:21Z");
        assert_eq!(parse_rfc3339("2026-11-22T17:52:21Z"), Some(1_795_369_941));
        assert_eq!(parse_rfc3339("2024-02-29"), Some(1_709_164_800));
        assert_eq!(parse_rfc3339("2023-02-29"), None);
        assert_eq!(parse_rfc3339("2026-11-22T24:00:00Z"), None);
    }

    #[test]
    fn period_keys_bucket_by_utc_calendar() {
        let t = parse_rfc3339("2026-01-31T23:59:59Z").unwrap_or_default();
        assert_eq!(period_key(Period::Day, t), "2026-01-31");
        assert_eq!(period_key(Period::Day, t + 1), "2026-02-01");
        assert_eq!(period_key(Period::Month, t + 1), "2026-02");
        assert_eq!(period_key(Period::Total, t), "total");
    }
}
