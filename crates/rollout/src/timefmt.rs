//! Human durations (`2d`, `1d12h`, `90s`) and RFC 3339 timestamps for plans, state and audit records.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use thiserror::Error;

/// A duration or timestamp text that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TimeFormatError {
    /// A duration that is not a sequence of `<integer><unit>` with unit `d`, `h`, `m`, `s` or `ms`.
    #[error("invalid duration `{0}`: expected e.g. `2d`, `1d12h`, `30m`, `45s` or `250ms`")]
    Duration(String),
    /// A duration with a leading minus sign.
    #[error("invalid duration `{0}`: durations cannot be negative")]
    Negative(String),
    /// A timestamp that is not RFC 3339 UTC (`2024-05-01T12:00:00Z`, optional fraction).
    #[error("invalid timestamp `{0}`: expected RFC 3339 UTC like `2024-05-01T12:00:00Z`")]
    Timestamp(String),
}

/// Parse a duration written as one or more `<integer><unit>` parts: `2d`, `1d12h`, `30m`, `45s`, `250ms`.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(upramp_rollout::parse_duration("1d12h").unwrap(), Duration::from_secs(36 * 3600));
/// assert!(upramp_rollout::parse_duration("-2d").is_err());
/// ```
pub fn parse_duration(text: &str) -> Result<Duration, TimeFormatError> {
    let trimmed = text.trim();
    if trimmed.starts_with('-') {
        return Err(TimeFormatError::Negative(text.to_owned()));
    }
    let bad = || TimeFormatError::Duration(text.to_owned());
    if trimmed.is_empty() {
        return Err(bad());
    }
    let mut total = Duration::ZERO;
    let mut rest = trimmed;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(bad());
        }
        let value: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let part = match &rest[..unit_len] {
            "d" => value.checked_mul(86_400).map(Duration::from_secs),
            "h" => value.checked_mul(3_600).map(Duration::from_secs),
            "m" => value.checked_mul(60).map(Duration::from_secs),
            "s" => Some(Duration::from_secs(value)),
            "ms" => Some(Duration::from_millis(value)),
            _ => None,
        }
        .ok_or_else(bad)?;
        total = total.checked_add(part).ok_or_else(bad)?;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

/// Format a duration in the form [`parse_duration`] reads, largest units first (`1d12h`, `0s`).
///
/// ```
/// use std::time::Duration;
/// assert_eq!(upramp_rollout::format_duration(Duration::from_secs(90_061)), "1d1h1m1s");
/// ```
pub fn format_duration(duration: Duration) -> String {
    let mut secs = duration.as_secs();
    let millis = duration.subsec_millis();
    let mut out = String::new();
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    if millis > 0 {
        out.push_str(&format!("{millis}ms"));
    }
    if out.is_empty() {
        out.push_str("0s");
    }
    out
}

/// Format a time as RFC 3339 UTC with millisecond precision (`2024-05-01T12:00:00.000Z`).
/// Times before the Unix epoch are formatted as the epoch: no clock upramp uses goes there.
pub fn format_timestamp(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_millis()
    )
}

/// Parse what [`format_timestamp`] writes (the fraction is optional, 1 to 9 digits).
pub fn parse_timestamp(text: &str) -> Result<SystemTime, TimeFormatError> {
    let bad = || TimeFormatError::Timestamp(text.to_owned());
    let body = text.strip_suffix('Z').ok_or_else(bad)?;
    let (date, time) = body.split_once('T').ok_or_else(bad)?;
    let mut date_parts = date.splitn(3, '-');
    let num = |s: Option<&str>, len: usize| -> Result<u64, TimeFormatError> {
        let s = s.ok_or_else(bad)?;
        if s.len() != len || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        s.parse().map_err(|_| bad())
    };
    let year = num(date_parts.next(), 4)?;
    let month = num(date_parts.next(), 2)?;
    let day = num(date_parts.next(), 2)?;
    let (clock, fraction) = match time.split_once('.') {
        Some((clock, fraction)) => (clock, Some(fraction)),
        None => (time, None),
    };
    let mut clock_parts = clock.splitn(3, ':');
    let hour = num(clock_parts.next(), 2)?;
    let minute = num(clock_parts.next(), 2)?;
    let second = num(clock_parts.next(), 2)?;
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return Err(bad());
    }
    let nanos = match fraction {
        None => 0,
        Some(f) if (1..=9).contains(&f.len()) && f.bytes().all(|b| b.is_ascii_digit()) => {
            let digits: u32 = f.parse().map_err(|_| bad())?;
            digits * 10u32.pow(9 - f.len() as u32)
        }
        Some(_) => return Err(bad()),
    };
    let days = days_from_civil(year as i64, month as u32, day as u32);
    if days < 0 {
        return Err(bad());
    }
    let secs = days as u64 * 86_400 + hour * 3600 + minute * 60 + second;
    Ok(UNIX_EPOCH + Duration::new(secs, nanos))
}

// Howard Hinnant's civil calendar algorithms (proleptic Gregorian, days since 1970-01-01).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Serde adapter: a `Duration` as the text [`format_duration`] writes.
pub(crate) mod duration_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(value: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_duration(*value))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

/// Serde adapter: an optional `Duration` as the text [`format_duration`] writes.
pub(crate) mod opt_duration_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(
        value: &Option<Duration>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(d) => s.serialize_some(&super::format_duration(*d)),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|text| super::parse_duration(&text).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// Serde adapter: a `SystemTime` as an RFC 3339 UTC string.
pub(crate) mod timestamp_text {
    use std::time::SystemTime;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(value: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_timestamp(*value))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_timestamp(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn durations_parse_and_reject() {
        assert_eq!(parse_duration("2d").unwrap(), Duration::from_secs(172_800));
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        for bad in ["", "d", "2", "2w", "1.5h", "h2", "2d-1h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_duration("-1h").unwrap_err().to_string(),
            "invalid duration `-1h`: durations cannot be negative"
        );
    }

    #[test]
    fn timestamps_format_known_dates() {
        assert_eq!(format_timestamp(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_714_564_800_123);
        assert_eq!(format_timestamp(t), "2024-05-01T12:00:00.123Z");
        assert_eq!(parse_timestamp("2024-05-01T12:00:00.123Z").unwrap(), t);
        assert!(parse_timestamp("2024-13-01T00:00:00Z").is_err());
        assert!(parse_timestamp("2024-05-01 12:00:00Z").is_err());
    }

    proptest! {
        #[test]
        fn duration_round_trips(ms in 0u64..10_000_000_000) {
            let d = Duration::from_millis(ms);
            prop_assert_eq!(parse_duration(&format_duration(d)).unwrap(), d);
        }

        #[test]
        fn timestamp_round_trips(ms in 0u64..10_000_000_000_000) {
            let t = UNIX_EPOCH + Duration::from_millis(ms);
            prop_assert_eq!(parse_timestamp(&format_timestamp(t)).unwrap(), t);
        }
    }
}
