//! [`Percent`]: a rollout percentage as integer thousandths, with a strict parser.

use std::fmt;
use std::str::FromStr;

/// A rollout percentage with a resolution of 0.001%, stored as integer thousandths in `0..=100_000`.
///
/// No float ever takes part in a decision: a key is in when its bucket is below
/// [`thousandths`](Percent::thousandths).
///
/// Parsing is strict (see [`Percent::parse`]): a number from 0 to 100 with at most three decimals and an
/// optional trailing `%`. Everything else is an error, never a clamp.
///
/// ```
/// use upramp_flags::Percent;
///
/// let p: Percent = "12.5%".parse()?;
/// assert_eq!(p.thousandths(), 12_500);
/// assert_eq!(p.to_string(), "12.5%");
/// assert!("150".parse::<Percent>().is_err());
/// # Ok::<(), upramp_flags::PercentError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Percent(u32);

/// Why a value is not a valid [`Percent`]; its `Display` names the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid percentage {value:?}: {problem}")]
pub struct PercentError {
    value: String,
    problem: PercentProblem,
}

impl PercentError {
    fn new(value: impl Into<String>, problem: PercentProblem) -> Self {
        Self {
            value: value.into(),
            problem,
        }
    }

    /// The rejected input, as given.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// What is wrong with it.
    pub fn problem(&self) -> PercentProblem {
        self.problem
    }
}

/// The ways a percentage can be malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PercentProblem {
    /// Nothing (or only `%`) was given.
    #[error("empty value, expected a number from 0 to 100")]
    Empty,
    /// Not a plain decimal number (signs, exponents, hex, NaN, spaces, letters...).
    #[error("expected a plain decimal number from 0 to 100 with at most three decimals, like 12.5 or 12.5%")]
    NotANumber,
    /// More than three digits after the decimal point.
    #[error("more than three decimals (the resolution is 0.001%)")]
    TooPrecise,
    /// Above 100.
    #[error("above 100%")]
    AboveHundred,
}

impl Percent {
    /// 0%: no key is in.
    pub const ZERO: Percent = Percent(0);
    /// 100%: every key is in.
    pub const HUNDRED: Percent = Percent(100_000);

    /// A percentage from integer thousandths of a percent (`12_500` is 12.5%); above `100_000` is an error.
    pub fn from_thousandths(thousandths: u32) -> Result<Percent, PercentError> {
        if thousandths > Self::HUNDRED.0 {
            return Err(PercentError::new(
                format!("{}.{:03}", thousandths / 1000, thousandths % 1000),
                PercentProblem::AboveHundred,
            ));
        }
        Ok(Percent(thousandths))
    }

    /// The percentage in thousandths of a percent, `0..=100_000`.
    pub const fn thousandths(self) -> u32 {
        self.0
    }

    /// The percentage as a float, for display and metrics only (never for decisions).
    pub fn as_f64(self) -> f64 {
        f64::from(self.0) / 1000.0
    }

    /// Parse strictly: ASCII digits, optionally a `.` and one to three more digits, optionally a trailing
    /// `%`, value at most 100. No whitespace, sign, exponent, hex, `NaN` or empty value is accepted.
    pub fn parse(input: &str) -> Result<Percent, PercentError> {
        let number = input.strip_suffix('%').unwrap_or(input);
        if number.is_empty() {
            return Err(PercentError::new(input, PercentProblem::Empty));
        }
        let (whole, fraction) = match number.split_once('.') {
            Some((whole, fraction)) => (whole, Some(fraction)),
            None => (number, None),
        };
        let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !all_digits(whole) || fraction.is_some_and(|f| !all_digits(f)) {
            return Err(PercentError::new(input, PercentProblem::NotANumber));
        }
        let fraction = fraction.unwrap_or("");
        if fraction.len() > 3 {
            return Err(PercentError::new(input, PercentProblem::TooPrecise));
        }
        let whole_digits = whole.trim_start_matches('0');
        if whole_digits.len() > 3 {
            return Err(PercentError::new(input, PercentProblem::AboveHundred));
        }
        // At most three significant digits on each side, so this cannot overflow a u32.
        let whole_value = whole_digits
            .bytes()
            .fold(0u32, |acc, b| acc * 10 + u32::from(b - b'0'));
        let mut fraction_value = 0u32;
        for position in 0..3 {
            let digit = fraction
                .as_bytes()
                .get(position)
                .map_or(0, |b| u32::from(b - b'0'));
            fraction_value = fraction_value * 10 + digit;
        }
        let thousandths = whole_value * 1000 + fraction_value;
        if thousandths > Self::HUNDRED.0 {
            return Err(PercentError::new(input, PercentProblem::AboveHundred));
        }
        Ok(Percent(thousandths))
    }

    /// Whether a SipHash bucket (see [`crate::bucket`]) is inside this percentage.
    pub const fn contains_bucket(self, bucket: u32) -> bool {
        bucket < self.0
    }
}

impl FromStr for Percent {
    type Err = PercentError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Percent::parse(s)
    }
}

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = self.0 / 1000;
        let fraction = self.0 % 1000;
        if fraction == 0 {
            return write!(f, "{whole}%");
        }
        let mut digits = format!("{fraction:03}");
        while digits.ends_with('0') {
            digits.pop();
        }
        write!(f, "{whole}.{digits}%")
    }
}

impl serde::Serialize for Percent {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.0 % 1000 == 0 {
            serializer.serialize_u32(self.0 / 1000)
        } else {
            // Shortest round-trip formatting of this f64 gives back exactly the three decimals.
            serializer.serialize_f64(self.as_f64())
        }
    }
}

impl<'de> serde::Deserialize<'de> for Percent {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(PercentVisitor)
    }
}

/// Turn a float from a config file into a [`Percent`] through its shortest round-trip text, so `12.5` is
/// accepted and `12.34567`, `1e3` (1000), `NaN` and negative values are rejected like their text forms.
pub(crate) fn percent_from_f64(value: f64) -> Result<Percent, PercentError> {
    Percent::parse(&format!("{value}"))
}

/// Same as [`percent_from_f64`] for integers.
pub(crate) fn percent_from_i64(value: i64) -> Result<Percent, PercentError> {
    Percent::parse(&value.to_string())
}

struct PercentVisitor;

impl serde::de::Visitor<'_> for PercentVisitor {
    type Value = Percent;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "a percentage from 0 to 100 with at most three decimals, as a number or a string",
        )
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Percent, E> {
        Percent::parse(&v.to_string()).map_err(E::custom)
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Percent, E> {
        percent_from_i64(v).map_err(E::custom)
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Percent, E> {
        percent_from_f64(v).map_err(E::custom)
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Percent, E> {
        Percent::parse(v).map_err(E::custom)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn accepts_the_documented_forms() {
        let cases = [
            ("0", 0),
            ("0%", 0),
            ("100", 100_000),
            ("100%", 100_000),
            ("100.000", 100_000),
            ("12.5", 12_500),
            ("12.5%", 12_500),
            ("0.001", 1),
            ("99.999%", 99_999),
            ("007", 7_000),
            ("1.10", 1_100),
        ];
        for (input, thousandths) in cases {
            assert_eq!(
                Percent::parse(input).unwrap().thousandths(),
                thousandths,
                "{input}"
            );
        }
    }

    #[test]
    fn rejects_every_malformed_value() {
        use PercentProblem::*;
        let cases = [
            ("", Empty),
            ("%", Empty),
            ("abc", NotANumber),
            ("150", AboveHundred),
            ("100.001", AboveHundred),
            ("1000000000000", AboveHundred),
            ("-1", NotANumber),
            ("+1", NotANumber),
            ("1e3", NotANumber),
            ("0x10", NotANumber),
            ("NaN", NotANumber),
            ("inf", NotANumber),
            ("12.34567", TooPrecise),
            ("12.3456", TooPrecise),
            (" 10", NotANumber),
            ("10 ", NotANumber),
            ("10%%", NotANumber),
            ("10.", NotANumber),
            (".5", NotANumber),
            ("1.2.3", NotANumber),
            ("1,5", NotANumber),
            ("%10", NotANumber),
            ("٣", NotANumber),
        ];
        for (input, problem) in cases {
            let err = Percent::parse(input).unwrap_err();
            assert_eq!(err.problem(), problem, "{input:?}");
            assert_eq!(err.value(), input);
            assert!(err.to_string().contains(&format!("{input:?}")), "{err}");
        }
    }

    #[test]
    fn from_thousandths_rejects_above_hundred() {
        assert_eq!(
            Percent::from_thousandths(100_000).unwrap(),
            Percent::HUNDRED
        );
        let err = Percent::from_thousandths(100_001).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid percentage \"100.001\": above 100%"
        );
    }

    #[test]
    fn display_trims_trailing_zeros() {
        let cases = [
            (0, "0%"),
            (12_500, "12.5%"),
            (1, "0.001%"),
            (10_010, "10.01%"),
            (100_000, "100%"),
        ];
        for (thousandths, text) in cases {
            assert_eq!(
                Percent::from_thousandths(thousandths).unwrap().to_string(),
                text
            );
        }
    }

    #[test]
    fn serde_round_trips_as_a_number_and_accepts_strings() {
        let p = Percent::from_thousandths(12_345).unwrap();
        assert_eq!(serde_json::to_string(&p).unwrap(), "12.345");
        assert_eq!(serde_json::to_string(&Percent::HUNDRED).unwrap(), "100");
        assert_eq!(serde_json::from_str::<Percent>("12.345").unwrap(), p);
        assert_eq!(serde_json::from_str::<Percent>("\"12.345%\"").unwrap(), p);
        assert_eq!(
            serde_json::from_str::<Percent>("50").unwrap().thousandths(),
            50_000
        );
        for bad in ["-1", "150", "12.34567", "\"abc\"", "\"\"", "1e3", "true"] {
            assert!(serde_json::from_str::<Percent>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_percent_round_trips_through_display() {
        for thousandths in (0..=100_000).step_by(7) {
            let p = Percent::from_thousandths(thousandths).unwrap();
            assert_eq!(Percent::parse(&p.to_string()).unwrap(), p);
            assert_eq!(percent_from_f64(p.as_f64()).unwrap(), p);
        }
    }
}
