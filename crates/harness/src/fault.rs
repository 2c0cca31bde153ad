//! Fault plans: which failures a stand-in injects, how often, and for which upload path.
//!
//! A plan is written as a spec string, a comma-separated list of `kind:value[@target]` items:
//!
//! | kind | value | effect on a matching upload (`POST .../files`) |
//! |---|---|---|
//! | `500`, `502`, `503` | probability | the provider's server error body with that status |
//! | `429` | probability | rate limited, `Retry-After: 1` (seconds) |
//! | `429-date` | probability | rate limited, `Retry-After` as an HTTP-date 2 s ahead |
//! | `quota` | probability | 429 quota exhausted (Kimi `exceeded_current_quota_error`, GLM code `1113`) |
//! | `401` | probability | the provider's authentication error |
//! | `stall` | probability | stop reading the body after its first chunk: the client sees no progress |
//! | `reset` | probability | read the first chunk of the body, then reset the connection (TCP RST) |
//! | `drop` | probability | store the file, then close the connection without a response (the ambiguous case) |
//! | `malformed` | probability | store the file, then answer 200 with a truncated JSON body |
//! | `latency` | duration (`250us`, `50ms`, `2s`) | fixed delay before responding |
//! | `jitter` | duration | extra delay drawn uniformly from `[0, jitter]` |
//! | `bandwidth` | bytes per second (`512b`, `64kb`, `1mb`, `1gb`, 1024-based, optional `/s`) | caps how fast the body is read |
//!
//! The optional `@async` / `@sync` target makes an item apply only to requests whose `User-Agent`
//! contains `(async)` / `(sync)`, as upramp's clients send, so a test can break one upload path alone.
//!
//! Probability faults are mutually exclusive: each upload draws one number and walks the matching items
//! in spec order, so the matching probabilities must add up to at most 1 for either path. Latency and
//! jitter apply to every route (uploads, list, retrieve, content, delete); every other fault applies to
//! uploads only, so tests can always inspect what arrived. Status faults read the whole body before
//! answering, so a client still sending sees the answer rather than a broken pipe; a stalled request is
//! cut with a reset at shutdown or after 5 minutes. Faults are counted in
//! [`StandInStats::faults_by_kind`](crate::StandInStats::faults_by_kind) when actually injected.
//!
//! ```
//! use upramp_harness::FaultPlan;
//!
//! let plan = FaultPlan::parse("500:0.3@async,latency:150ms@async,bandwidth:1mb").unwrap();
//! assert_eq!(plan.to_string(), "500:0.3@async,latency:150ms@async,bandwidth:1mb");
//! assert!(FaultPlan::parse("500:1.5").is_err());
//! ```

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// One upload path a fault item can be limited to, recognised from the request's `User-Agent`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PathTarget {
    /// `User-Agent` contains `(async)`.
    Async,
    /// `User-Agent` contains `(sync)`.
    Sync,
}

impl PathTarget {
    /// The spec spelling: `async` or `sync`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Async => "async",
            Self::Sync => "sync",
        }
    }

    /// The upload path a `User-Agent` header names, if any.
    pub fn from_user_agent(user_agent: &str) -> Option<Self> {
        if user_agent.contains("(async)") {
            Some(Self::Async)
        } else if user_agent.contains("(sync)") {
            Some(Self::Sync)
        } else {
            None
        }
    }
}

/// A failure injected with some probability into an upload request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum InjectedFault {
    /// HTTP 500 with the provider's server error body.
    Status500,
    /// HTTP 502 with the provider's server error body.
    Status502,
    /// HTTP 503 with the provider's overloaded error body.
    Status503,
    /// HTTP 429 rate limit, `Retry-After` in seconds.
    RateLimited,
    /// HTTP 429 rate limit, `Retry-After` as an HTTP-date.
    RateLimitedDate,
    /// HTTP 429 quota exhausted (not retryable).
    QuotaExhausted,
    /// HTTP 401 authentication error.
    Unauthorized,
    /// Stop reading the body mid-way and never answer.
    Stall,
    /// Reset the connection mid-body.
    Reset,
    /// Store the file, then close the connection without answering.
    DropAfterAccept,
    /// Store the file, then answer 200 with broken JSON.
    Malformed,
}

impl InjectedFault {
    /// Every probability fault, in the order the spec table lists them.
    pub const ALL: [Self; 11] = [
        Self::Status500,
        Self::Status502,
        Self::Status503,
        Self::RateLimited,
        Self::RateLimitedDate,
        Self::QuotaExhausted,
        Self::Unauthorized,
        Self::Stall,
        Self::Reset,
        Self::DropAfterAccept,
        Self::Malformed,
    ];

    /// The spec spelling, also the key in [`crate::StandInStats::faults_by_kind`].
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Status500 => "500",
            Self::Status502 => "502",
            Self::Status503 => "503",
            Self::RateLimited => "429",
            Self::RateLimitedDate => "429-date",
            Self::QuotaExhausted => "quota",
            Self::Unauthorized => "401",
            Self::Stall => "stall",
            Self::Reset => "reset",
            Self::DropAfterAccept => "drop",
            Self::Malformed => "malformed",
        }
    }
}

/// What one item of a plan does.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FaultRule {
    /// Inject `fault` into an upload with this probability (0 to 1).
    Chance {
        /// The failure.
        fault: InjectedFault,
        /// Its probability per matching upload.
        probability: f64,
    },
    /// Delay every matching response by this much.
    Latency(Duration),
    /// Delay every matching response by a uniform draw from `[0, jitter]`.
    Jitter(Duration),
    /// Read matching upload bodies at most this many bytes per second.
    Bandwidth(u64),
}

impl FaultRule {
    fn kind_name(&self) -> &'static str {
        match self {
            Self::Chance { fault, .. } => fault.as_str(),
            Self::Latency(_) => "latency",
            Self::Jitter(_) => "jitter",
            Self::Bandwidth(_) => "bandwidth",
        }
    }
}

/// One item of a plan: a rule and the upload path it is limited to (`None`: every request).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FaultItem {
    /// What the item does.
    pub rule: FaultRule,
    /// The path it applies to, or `None` for all requests.
    pub target: Option<PathTarget>,
}

impl FaultItem {
    fn applies_to(&self, path: Option<PathTarget>) -> bool {
        self.target.is_none() || self.target == path
    }
}

/// A malformed fault spec; the message names the bad item and value on one line.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FaultSpecError {
    /// An item is empty (for example a doubled comma).
    #[error("fault spec {spec:?}: empty item")]
    EmptyItem {
        /// The whole spec.
        spec: String,
    },
    /// An item has no `:value`.
    #[error("fault item {item:?}: expected kind:value, e.g. 500:0.1 or latency:50ms")]
    MissingValue {
        /// The bad item.
        item: String,
    },
    /// The kind is not one the stand-ins know.
    #[error("fault item {item:?}: unknown kind {kind:?} (expected 500, 502, 503, 429, 429-date, quota, 401, stall, reset, drop, malformed, latency, jitter or bandwidth)")]
    UnknownKind {
        /// The bad item.
        item: String,
        /// The unknown kind.
        kind: String,
    },
    /// The value does not fit the kind.
    #[error("fault item {item:?}: bad value {value:?}: expected {expected}")]
    BadValue {
        /// The bad item.
        item: String,
        /// The bad value.
        value: String,
        /// What the kind takes.
        expected: &'static str,
    },
    /// The `@target` is neither `async` nor `sync`.
    #[error("fault item {item:?}: unknown target {target:?} (expected @async or @sync)")]
    UnknownTarget {
        /// The bad item.
        item: String,
        /// The unknown target.
        target: String,
    },
    /// The same kind and target appear twice.
    #[error("fault item {item:?}: {kind} is already set for this target")]
    Duplicate {
        /// The repeated item.
        item: String,
        /// Its kind.
        kind: &'static str,
    },
    /// The probabilities that apply to one path add up to more than 1.
    #[error("fault spec: probabilities for {path} requests add up to {sum}, more than 1")]
    ProbabilitySum {
        /// `async`, `sync` or `untagged`.
        path: &'static str,
        /// The sum.
        sum: f64,
    },
}

/// A set of faults a stand-in injects, parsed from a spec string (see the [module docs](self)).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FaultPlan {
    items: Vec<FaultItem>,
}

/// What the plan decided for one request.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct FaultDecision {
    pub fault: Option<InjectedFault>,
    pub delay: Duration,
    pub bandwidth: Option<u64>,
}

impl FaultPlan {
    /// A plan that injects nothing.
    pub fn none() -> Self {
        Self::default()
    }

    /// Parse a spec such as `500:0.1,429-date:0.05,latency:50ms,reset:0.01@async`.
    /// The empty string and `none` mean no faults.
    pub fn parse(spec: &str) -> Result<Self, FaultSpecError> {
        let trimmed = spec.trim();
        if trimmed.is_empty() || trimmed == "none" {
            return Ok(Self::none());
        }
        let items = trimmed
            .split(',')
            .map(|raw| parse_item(raw.trim(), spec))
            .collect::<Result<Vec<_>, _>>()?;
        Self::from_items(items)
    }

    /// Build a plan from items, with the same checks as [`FaultPlan::parse`] (no duplicate kind per
    /// target, probabilities at most 1 per path, values in range).
    pub fn from_items(items: Vec<FaultItem>) -> Result<Self, FaultSpecError> {
        for (index, item) in items.iter().enumerate() {
            let text = format_item(item);
            check_value(item, &text)?;
            let repeated = items[..index].iter().any(|earlier| {
                earlier.target == item.target && earlier.rule.kind_name() == item.rule.kind_name()
            });
            if repeated {
                return Err(FaultSpecError::Duplicate {
                    item: text,
                    kind: item.rule.kind_name(),
                });
            }
        }
        let plan = Self { items };
        for (path, name) in [
            (Some(PathTarget::Async), "async"),
            (Some(PathTarget::Sync), "sync"),
            (None, "untagged"),
        ] {
            let sum: f64 = plan
                .items
                .iter()
                .filter(|item| item.applies_to(path))
                .map(|item| match item.rule {
                    FaultRule::Chance { probability, .. } => probability,
                    _ => 0.0,
                })
                .sum();
            // Tolerate float noise from adding decimal fractions such as 0.1 + 0.2 + 0.7.
            if sum > 1.0 + 1e-9 {
                // Rounded so the message shows 1.1, not 1.0999999999999999.
                let sum = (sum * 1e6).round() / 1e6;
                return Err(FaultSpecError::ProbabilitySum { path: name, sum });
            }
        }
        Ok(plan)
    }

    /// The plan's items, in spec order.
    pub fn items(&self) -> &[FaultItem] {
        &self.items
    }

    /// True when the plan injects nothing.
    pub fn is_none(&self) -> bool {
        self.items.is_empty()
    }

    /// Decide one request's faults from two uniform draws in `[0, 1)`: `pick` chooses the probability
    /// fault, `jitter` scales the jitter. Taking the draws as arguments keeps the caller's random
    /// sequence fixed at two draws per request whatever the plan is.
    pub(crate) fn decide(&self, path: Option<PathTarget>, pick: f64, jitter: f64) -> FaultDecision {
        let mut decision = FaultDecision::default();
        let mut cumulative = 0.0;
        for item in self.items.iter().filter(|item| item.applies_to(path)) {
            match item.rule {
                FaultRule::Chance { fault, probability } => {
                    if decision.fault.is_none() && probability > 0.0 {
                        cumulative += probability;
                        if pick < cumulative {
                            decision.fault = Some(fault);
                        }
                    }
                }
                FaultRule::Latency(delay) => decision.delay += delay,
                FaultRule::Jitter(max) => decision.delay += max.mul_f64(jitter),
                FaultRule::Bandwidth(rate) => {
                    decision.bandwidth =
                        Some(decision.bandwidth.map_or(rate, |current| current.min(rate)));
                }
            }
        }
        decision
    }
}

impl FromStr for FaultPlan {
    type Err = FaultSpecError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        Self::parse(spec)
    }
}

impl fmt::Display for FaultPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.items.is_empty() {
            return f.write_str("none");
        }
        let items: Vec<String> = self.items.iter().map(format_item).collect();
        f.write_str(&items.join(","))
    }
}

fn format_item(item: &FaultItem) -> String {
    let value = match item.rule {
        FaultRule::Chance { probability, .. } => probability.to_string(),
        FaultRule::Latency(delay) | FaultRule::Jitter(delay) => format_duration(delay),
        FaultRule::Bandwidth(rate) => format_rate(rate),
    };
    match item.target {
        Some(target) => format!("{}:{value}@{}", item.rule.kind_name(), target.as_str()),
        None => format!("{}:{value}", item.rule.kind_name()),
    }
}

fn check_value(item: &FaultItem, text: &str) -> Result<(), FaultSpecError> {
    let bad = |value: String, expected| FaultSpecError::BadValue {
        item: text.to_owned(),
        value,
        expected,
    };
    match item.rule {
        FaultRule::Chance { probability, .. } if !(0.0..=1.0).contains(&probability) => {
            Err(bad(probability.to_string(), PROBABILITY))
        }
        FaultRule::Bandwidth(0) => Err(bad("0".to_owned(), RATE)),
        FaultRule::Latency(delay) | FaultRule::Jitter(delay)
            if delay.subsec_nanos() % 1_000 != 0 =>
        {
            Err(bad(format!("{delay:?}"), DURATION))
        }
        _ => Ok(()),
    }
}

const PROBABILITY: &str = "a probability from 0 to 1, e.g. 0.05";
const DURATION: &str = "a whole number with a unit us, ms or s, e.g. 50ms";
const RATE: &str =
    "a positive whole number of bytes per second with a unit b, kb, mb or gb, e.g. 1mb";

fn parse_item(item: &str, spec: &str) -> Result<FaultItem, FaultSpecError> {
    if item.is_empty() {
        return Err(FaultSpecError::EmptyItem {
            spec: spec.to_owned(),
        });
    }
    let (body, target) = match item.rsplit_once('@') {
        Some((body, target)) => {
            let target = match target.trim() {
                "async" => PathTarget::Async,
                "sync" => PathTarget::Sync,
                other => {
                    return Err(FaultSpecError::UnknownTarget {
                        item: item.to_owned(),
                        target: other.to_owned(),
                    })
                }
            };
            (body, Some(target))
        }
        None => (item, None),
    };
    let (kind, value) = body
        .split_once(':')
        .map(|(kind, value)| (kind.trim(), value.trim()))
        .ok_or_else(|| FaultSpecError::MissingValue {
            item: item.to_owned(),
        })?;
    let bad = |expected| FaultSpecError::BadValue {
        item: item.to_owned(),
        value: value.to_owned(),
        expected,
    };
    let rule = match kind {
        "latency" => FaultRule::Latency(parse_duration(value).ok_or_else(|| bad(DURATION))?),
        "jitter" => FaultRule::Jitter(parse_duration(value).ok_or_else(|| bad(DURATION))?),
        "bandwidth" => FaultRule::Bandwidth(parse_rate(value).ok_or_else(|| bad(RATE))?),
        _ => {
            let fault = InjectedFault::ALL
                .into_iter()
                .find(|fault| fault.as_str() == kind)
                .ok_or_else(|| FaultSpecError::UnknownKind {
                    item: item.to_owned(),
                    kind: kind.to_owned(),
                })?;
            let probability = value
                .parse::<f64>()
                .ok()
                .filter(|p| (0.0..=1.0).contains(p))
                .ok_or_else(|| bad(PROBABILITY))?;
            FaultRule::Chance { fault, probability }
        }
    };
    Ok(FaultItem { rule, target })
}

fn split_number(value: &str) -> Option<(u64, String)> {
    let digits_end = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let number = value[..digits_end].parse::<u64>().ok()?;
    Some((number, value[digits_end..].trim().to_ascii_lowercase()))
}

fn parse_duration(value: &str) -> Option<Duration> {
    let (number, unit) = split_number(value)?;
    let micros = match unit.as_str() {
        "us" => number,
        "ms" => number.checked_mul(1_000)?,
        "s" => number.checked_mul(1_000_000)?,
        _ => return None,
    };
    Some(Duration::from_micros(micros))
}

fn format_duration(delay: Duration) -> String {
    let micros = delay.as_micros();
    if micros != 0 && micros % 1_000_000 == 0 {
        format!("{}s", micros / 1_000_000)
    } else if micros % 1_000 == 0 {
        format!("{}ms", micros / 1_000)
    } else {
        format!("{micros}us")
    }
}

const RATE_UNITS: [(&str, u64); 4] = [("gb", 1 << 30), ("mb", 1 << 20), ("kb", 1 << 10), ("b", 1)];

fn parse_rate(value: &str) -> Option<u64> {
    let value = value.strip_suffix("/s").unwrap_or(value);
    let (number, unit) = split_number(value)?;
    let (_, scale) = RATE_UNITS.iter().find(|(name, _)| *name == unit)?;
    number.checked_mul(*scale).filter(|rate| *rate > 0)
}

fn format_rate(rate: u64) -> String {
    let (name, scale) = RATE_UNITS
        .iter()
        .find(|(_, scale)| rate % scale == 0)
        .copied()
        .unwrap_or(("b", 1));
    format!("{}{name}", rate / scale)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_the_documented_example() {
        let spec = "500:0.1,502:0.05,503:0.05,429:0.05,429-date:0.05,quota:0.01,401:0.01,latency:50ms,jitter:10ms,bandwidth:1mb,stall:0.01,reset:0.01,drop:0.02,malformed:0.01";
        let plan = FaultPlan::parse(spec).unwrap();
        assert_eq!(plan.items().len(), 14);
        assert_eq!(plan.to_string(), spec);
        assert_eq!(plan.items()[9].rule, FaultRule::Bandwidth(1 << 20));
    }

    #[test]
    fn parses_targets_and_whitespace() {
        let plan =
            FaultPlan::parse(" 500:0.3@async , latency:150ms@async,reset:0.5@sync ").unwrap();
        assert_eq!(
            plan.to_string(),
            "500:0.3@async,latency:150ms@async,reset:0.5@sync"
        );
        assert_eq!(plan.items()[0].target, Some(PathTarget::Async));
        assert!(FaultPlan::parse("").unwrap().is_none());
        assert!(FaultPlan::parse("none").unwrap().is_none());
        assert_eq!(FaultPlan::none().to_string(), "none");
    }

    #[test]
    fn errors_name_the_item_and_value() {
        let cases = [
            ("500:1.5", "fault item \"500:1.5\": bad value \"1.5\": expected a probability from 0 to 1, e.g. 0.05"),
            ("404:0.1", "fault item \"404:0.1\": unknown kind \"404\" (expected 500, 502, 503, 429, 429-date, quota, 401, stall, reset, drop, malformed, latency, jitter or bandwidth)"),
            ("latency:fast", "fault item \"latency:fast\": bad value \"fast\": expected a whole number with a unit us, ms or s, e.g. 50ms"),
            ("bandwidth:0mb", "fault item \"bandwidth:0mb\": bad value \"0mb\": expected a positive whole number of bytes per second with a unit b, kb, mb or gb, e.g. 1mb"),
            ("500", "fault item \"500\": expected kind:value, e.g. 500:0.1 or latency:50ms"),
            ("500:0.1@batch", "fault item \"500:0.1@batch\": unknown target \"batch\" (expected @async or @sync)"),
            ("500:0.1,,502:0.1", "fault spec \"500:0.1,,502:0.1\": empty item"),
            ("500:0.1,500:0.2", "fault item \"500:0.2\": 500 is already set for this target"),
            ("500:0.6,reset:0.3@async,drop:0.2", "fault spec: probabilities for async requests add up to 1.1, more than 1"),
        ];
        for (spec, message) in cases {
            let err = FaultPlan::parse(spec).unwrap_err();
            assert_eq!(err.to_string(), message, "spec {spec}");
        }
        // The same kind may appear once per target, as long as each path's sum stays at most 1.
        assert!(FaultPlan::parse("500:0.5@async,500:0.5@sync,500:0.5").is_ok());
        assert!(FaultPlan::parse("500:0.6@async,500:0.6").is_err());
    }

    #[test]
    fn decisions_walk_matching_items_in_order() {
        let plan = FaultPlan::parse("500:0.25,reset:0.25@async,latency:10ms@sync,jitter:10ms,bandwidth:2kb,bandwidth:1kb@async").unwrap();
        let async_path = Some(PathTarget::Async);
        assert_eq!(
            plan.decide(async_path, 0.1, 0.0).fault,
            Some(InjectedFault::Status500)
        );
        assert_eq!(
            plan.decide(async_path, 0.3, 0.0).fault,
            Some(InjectedFault::Reset)
        );
        assert_eq!(plan.decide(async_path, 0.6, 0.0).fault, None);
        assert_eq!(plan.decide(Some(PathTarget::Sync), 0.3, 0.0).fault, None);
        assert_eq!(plan.decide(None, 0.3, 0.0).fault, None);
        assert_eq!(
            plan.decide(Some(PathTarget::Sync), 0.9, 0.5).delay,
            Duration::from_millis(15)
        );
        assert_eq!(plan.decide(None, 0.9, 0.5).delay, Duration::from_millis(5));
        assert_eq!(plan.decide(async_path, 0.9, 0.0).bandwidth, Some(1024));
        assert_eq!(plan.decide(None, 0.9, 0.0).bandwidth, Some(2048));
    }

    #[test]
    fn user_agent_names_the_path() {
        assert_eq!(
            PathTarget::from_user_agent("upramp/0.1.0 (async)"),
            Some(PathTarget::Async)
        );
        assert_eq!(
            PathTarget::from_user_agent("upramp/0.1.0 (sync)"),
            Some(PathTarget::Sync)
        );
        assert_eq!(PathTarget::from_user_agent("curl/8"), None);
    }

    fn arb_item() -> impl Strategy<Value = FaultItem> {
        let target = prop_oneof![
            Just(None),
            Just(Some(PathTarget::Async)),
            Just(Some(PathTarget::Sync))
        ];
        let rule = prop_oneof![
            (0..InjectedFault::ALL.len(), 0u32..=1000).prop_map(|(index, thousandths)| {
                FaultRule::Chance {
                    fault: InjectedFault::ALL[index],
                    probability: f64::from(thousandths) / 1000.0 / 8.0,
                }
            }),
            (0u64..10_000_000).prop_map(|micros| FaultRule::Latency(Duration::from_micros(micros))),
            (0u64..10_000_000).prop_map(|micros| FaultRule::Jitter(Duration::from_micros(micros))),
            (1u64..1 << 40).prop_map(FaultRule::Bandwidth),
        ];
        (rule, target).prop_map(|(rule, target)| FaultItem { rule, target })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn display_round_trips(items in proptest::collection::vec(arb_item(), 0..8)) {
            if let Ok(plan) = FaultPlan::from_items(items) {
                let reparsed = FaultPlan::parse(&plan.to_string()).unwrap();
                prop_assert_eq!(reparsed, plan);
            }
        }

        #[test]
        fn parse_never_panics(spec in "[0-9a-z:@,./ -]{0,40}") {
            let _ = FaultPlan::parse(&spec);
        }
    }
}
