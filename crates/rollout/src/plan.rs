//! Rollout plans: ordered stages with a target percent, a minimum bake time, a minimum number of async
//! samples and gates; the default three-week plan; strict TOML loading.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use upramp_flags::Percent;

use crate::gates::Gates;
use crate::timefmt::parse_duration;

/// One stage of a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stage {
    /// A short unique name (`canary-1`).
    pub name: String,
    /// The rollout percent applied while the stage bakes.
    pub percent: Percent,
    /// How long the stage must bake before it may advance.
    #[serde(with = "crate::timefmt::duration_text")]
    pub min_bake: Duration,
    /// Async samples the judged window must hold before a gate may pass.
    pub min_async_samples: u64,
    /// The gates of this stage.
    pub gates: Gates,
}

/// An ordered list of stages whose percents strictly rise, plus the controller's failure limit.
///
/// ```
/// use upramp_rollout::Plan;
///
/// let plan = Plan::from_toml_str(r#"
///     [[stages]]
///     name = "canary"
///     percent = 5
///     min_bake = "1h"
///     min_async_samples = 200
///
///     [[stages]]
///     name = "full"
///     percent = 100
///     min_bake = "1d"
///     min_async_samples = 1000
/// "#)?;
/// assert_eq!(plan.stages.len(), 2);
/// assert_eq!(plan.failure_limit, 2);
///
/// let err = Plan::from_toml_str("[[stages]]\nname = \"x\"\npercent = 150\nmin_bake = \"1h\"\nmin_async_samples = 1\n")
///     .unwrap_err();
/// assert!(err.to_string().starts_with("plan stage 1 (`x`): field `percent`"));
/// # Ok::<(), upramp_rollout::PlanError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// The stages, in order.
    pub stages: Vec<Stage>,
    /// Consecutive failed evaluations that roll back (default 2); a decisive breach rolls back at once.
    pub failure_limit: u32,
}

/// Why a plan was refused. Every message is one line naming the stage (1-based) and field.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PlanError {
    /// The file could not be read.
    #[error("plan {path}: cannot read: {message}")]
    Read {
        /// The file.
        path: String,
        /// The OS error.
        message: String,
    },
    /// Not valid TOML.
    #[error("plan: invalid TOML at line {line}, column {column}: {message}")]
    Syntax {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The parser's message.
        message: String,
    },
    /// No stages at all.
    #[error("plan has no stages: add at least one [[stages]] table")]
    Empty,
    /// A plan-level field is wrong.
    #[error("plan: field `{field}`: {message}")]
    Field {
        /// The field.
        field: String,
        /// What is wrong, naming the value.
        message: String,
    },
    /// A stage field is wrong.
    #[error("plan stage {index} (`{name}`): field `{field}`: {message}")]
    Stage {
        /// 1-based stage number.
        index: usize,
        /// The stage name, or `?` when it has none.
        name: String,
        /// The field (`gates.max_error_rate` for gate fields).
        field: String,
        /// What is wrong, naming the value.
        message: String,
    },
}

impl Plan {
    /// The legacy runbook: 0% for 2 days, 1% for 5, 10% for 4, 50% for 3, 100% for 7 (21 days), default
    /// gates, failure limit 2.
    ///
    /// Minimum async samples per judged window: 300 at 1%, 1000 at 10%, 2000 at 50% and 100%. Note that a
    /// 98% success gate at 95% confidence cannot pass with fewer than about 190 samples even with no
    /// failure at all, so scaling below that makes the gates the binding minimum.
    pub fn default_three_week() -> Self {
        const DAY: u64 = 86_400;
        let stage = |name: &str, thousandths: u32, days: u64, min_async_samples: u64| Stage {
            name: name.to_owned(),
            percent: Percent::from_thousandths(thousandths).unwrap_or(Percent::ZERO),
            min_bake: Duration::from_secs(days * DAY),
            min_async_samples,
            gates: Gates::default(),
        };
        Self {
            stages: vec![
                stage("baseline", 0, 2, 0),
                stage("canary-1", 1_000, 5, 300),
                stage("early-10", 10_000, 4, 1_000),
                stage("half-50", 50_000, 3, 2_000),
                stage("full-100", 100_000, 7, 2_000),
            ],
            failure_limit: 2,
        }
    }

    /// Total minimum bake time of all stages.
    pub fn total_bake(&self) -> Duration {
        self.stages.iter().map(|s| s.min_bake).sum()
    }

    /// Multiply every stage's `min_async_samples` by `factor` (rounded up; a non-zero minimum stays at
    /// least 1), for runs with less traffic such as `cargo xtask validate --quick`. Gate minimums are
    /// unchanged. A factor that is not finite and positive leaves the plan as it is.
    pub fn scale_min_samples(&mut self, factor: f64) {
        if !(factor.is_finite() && factor > 0.0) {
            return;
        }
        for stage in &mut self.stages {
            if stage.min_async_samples > 0 {
                let scaled = (stage.min_async_samples as f64 * factor).ceil();
                stage.min_async_samples = if scaled >= u64::MAX as f64 {
                    u64::MAX
                } else {
                    (scaled as u64).max(1)
                };
            }
        }
    }

    /// Read and validate a plan file; see [`Plan::from_toml_str`].
    pub fn from_file(path: &Path) -> Result<Self, PlanError> {
        let text = std::fs::read_to_string(path).map_err(|e| PlanError::Read {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Self::from_toml_str(&text)
    }

    /// Parse and validate a plan.
    ///
    /// Format: optional top-level `failure_limit` (integer >= 1) and `[gates]` (defaults for every
    /// stage), then `[[stages]]` tables with `name`, `percent` (0 to 100, up to three decimals),
    /// `min_bake` (`"2d"`, `"36h"`, ...), `min_async_samples` and optional `[stages.gates]` overrides.
    /// Gate fields are those of [`Gates`]; rates are fractions (`max_error_rate = 0.02`).
    ///
    /// Refused: no stages, percents that do not strictly rise or exceed 100, zero or negative
    /// durations, unknown fields, duplicate names, out-of-range gate values.
    pub fn from_toml_str(text: &str) -> Result<Self, PlanError> {
        let doc: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| syntax_error(text, &e))?;
        let mut failure_limit = 2u32;
        let mut defaults = Gates::default();
        let mut raw_stages = None;
        for (key, value) in &doc {
            match key.as_str() {
                "failure_limit" => {
                    failure_limit = match value.as_integer() {
                        Some(n) if n >= 1 && n <= i64::from(u32::MAX) => n as u32,
                        _ => {
                            return Err(PlanError::Field {
                                field: key.clone(),
                                message: format!("{value} must be an integer of at least 1"),
                            })
                        }
                    }
                }
                "gates" => {
                    let table = value.as_table().ok_or_else(|| PlanError::Field {
                        field: key.clone(),
                        message: "must be a table".to_owned(),
                    })?;
                    apply_gates(&mut defaults, table).map_err(|(field, message)| {
                        PlanError::Field {
                            field: format!("gates.{field}"),
                            message,
                        }
                    })?;
                }
                "stages" => raw_stages = Some(value),
                other => {
                    return Err(PlanError::Field {
                        field: other.to_owned(),
                        message: "unknown field (expected failure_limit, gates or stages)"
                            .to_owned(),
                    })
                }
            }
        }
        let raw_stages = match raw_stages {
            None => return Err(PlanError::Empty),
            Some(v) => v.as_array().ok_or_else(|| PlanError::Field {
                field: "stages".to_owned(),
                message: "must be an array of tables ([[stages]])".to_owned(),
            })?,
        };
        let mut stages = Vec::with_capacity(raw_stages.len());
        for (i, raw) in raw_stages.iter().enumerate() {
            stages.push(parse_stage(i + 1, raw, defaults)?);
        }
        let plan = Plan {
            stages,
            failure_limit,
        };
        plan.validate()?;
        Ok(plan)
    }

    /// Check the plan's invariants: at least one stage, unique non-empty names, strictly rising
    /// percents, positive bake times, valid gates, failure limit at least 1.
    pub fn validate(&self) -> Result<(), PlanError> {
        if self.stages.is_empty() {
            return Err(PlanError::Empty);
        }
        if self.failure_limit == 0 {
            return Err(PlanError::Field {
                field: "failure_limit".to_owned(),
                message: "0 must be at least 1".to_owned(),
            });
        }
        for (i, stage) in self.stages.iter().enumerate() {
            let err = |field: &str, message: String| PlanError::Stage {
                index: i + 1,
                name: if stage.name.is_empty() {
                    "?".to_owned()
                } else {
                    stage.name.clone()
                },
                field: field.to_owned(),
                message,
            };
            if stage.name.trim().is_empty() {
                return Err(err("name", "must not be empty".to_owned()));
            }
            if let Some(j) = self.stages[..i].iter().position(|s| s.name == stage.name) {
                return Err(err(
                    "name",
                    format!("`{}` is already the name of stage {}", stage.name, j + 1),
                ));
            }
            if stage.percent > Percent::HUNDRED {
                return Err(err("percent", format!("{} exceeds 100%", stage.percent)));
            }
            if i > 0 && stage.percent <= self.stages[i - 1].percent {
                return Err(err(
                    "percent",
                    format!(
                        "{} does not rise above the previous stage's {}",
                        stage.percent,
                        self.stages[i - 1].percent
                    ),
                ));
            }
            if stage.min_bake.is_zero() {
                return Err(err("min_bake", "0s must be a positive duration".to_owned()));
            }
            stage
                .gates
                .check()
                .map_err(|(field, message)| err(&format!("gates.{field}"), message))?;
        }
        Ok(())
    }
}

fn syntax_error(text: &str, e: &toml::de::Error) -> PlanError {
    let (line, column) = match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            (line, column)
        }
        None => (1, 1),
    };
    PlanError::Syntax {
        line,
        column,
        message: e.message().replace('\n', " ").trim().to_owned(),
    }
}

fn parse_stage(index: usize, raw: &toml::Value, defaults: Gates) -> Result<Stage, PlanError> {
    let table = raw.as_table().ok_or_else(|| PlanError::Stage {
        index,
        name: "?".to_owned(),
        field: "stages".to_owned(),
        message: "must be a table".to_owned(),
    })?;
    let name = match table.get("name") {
        Some(toml::Value::String(s)) if !s.trim().is_empty() => s.clone(),
        Some(other) => {
            return Err(PlanError::Stage {
                index,
                name: "?".to_owned(),
                field: "name".to_owned(),
                message: format!("{other} must be a non-empty string"),
            })
        }
        None => {
            return Err(PlanError::Stage {
                index,
                name: "?".to_owned(),
                field: "name".to_owned(),
                message: "missing".to_owned(),
            })
        }
    };
    let err = |field: &str, message: String| PlanError::Stage {
        index,
        name: name.clone(),
        field: field.to_owned(),
        message,
    };
    let mut percent = None;
    let mut min_bake = None;
    let mut min_async_samples = None;
    let mut gates = defaults;
    for (key, value) in table {
        match key.as_str() {
            "name" => {}
            "percent" => {
                let text = match value {
                    toml::Value::Integer(n) => n.to_string(),
                    toml::Value::Float(f) => format!("{f}"),
                    toml::Value::String(s) => s.clone(),
                    other => {
                        return Err(err(key, format!("{other} must be a number from 0 to 100")))
                    }
                };
                percent = Some(Percent::parse(&text).map_err(|e| err(key, e.to_string()))?);
            }
            "min_bake" => {
                let duration = match value {
                    toml::Value::String(s) => {
                        parse_duration(s).map_err(|e| err(key, e.to_string()))?
                    }
                    toml::Value::Integer(n) if *n < 0 => {
                        return Err(err(
                            key,
                            format!("{n} seconds: durations cannot be negative"),
                        ))
                    }
                    toml::Value::Integer(n) => Duration::from_secs(*n as u64),
                    other => {
                        return Err(err(
                            key,
                            format!("{other} must be a duration like \"2d\" or \"36h\""),
                        ))
                    }
                };
                if duration.is_zero() {
                    return Err(err(key, format!("{value} must be a positive duration")));
                }
                min_bake = Some(duration);
            }
            "min_async_samples" => {
                min_async_samples = Some(match value.as_integer() {
                    Some(n) if n >= 0 => n as u64,
                    _ => return Err(err(key, format!("{value} must be a non-negative integer"))),
                });
            }
            "gates" => {
                let t = value
                    .as_table()
                    .ok_or_else(|| err(key, "must be a table".to_owned()))?;
                apply_gates(&mut gates, t)
                    .map_err(|(field, message)| err(&format!("gates.{field}"), message))?;
            }
            other => {
                return Err(err(
                    other,
                    "unknown field (expected name, percent, min_bake, min_async_samples or gates)"
                        .to_owned(),
                ))
            }
        }
    }
    Ok(Stage {
        percent: percent.ok_or_else(|| err("percent", "missing".to_owned()))?,
        min_bake: min_bake.ok_or_else(|| err("min_bake", "missing".to_owned()))?,
        min_async_samples: min_async_samples
            .ok_or_else(|| err("min_async_samples", "missing".to_owned()))?,
        gates,
        name,
    })
}

fn apply_gates(gates: &mut Gates, table: &toml::Table) -> Result<(), (String, String)> {
    for (key, value) in table {
        let number = || match value {
            toml::Value::Float(f) => Ok(*f),
            toml::Value::Integer(n) => Ok(*n as f64),
            other => Err((key.clone(), format!("{other} must be a number"))),
        };
        let count = || match value.as_integer() {
            Some(n) if n >= 0 => Ok(n as u64),
            _ => Err((
                key.clone(),
                format!("{value} must be a non-negative integer"),
            )),
        };
        match key.as_str() {
            "min_success_rate" => gates.min_success_rate = number()?,
            "max_error_rate" => gates.max_error_rate = number()?,
            "max_timeout_rate" => gates.max_timeout_rate = number()?,
            "max_fallback_rate" => gates.max_fallback_rate = number()?,
            "max_p99_ratio" => gates.max_p99_ratio = number()?,
            "confidence" => gates.confidence = number()?,
            "decisive_factor" => gates.decisive_factor = number()?,
            "min_fail_samples" => gates.min_fail_samples = count()?,
            "min_latency_samples" => gates.min_latency_samples = count()?,
            "decisive_min_samples" => gates.decisive_min_samples = count()?,
            "min_p99_excess_ms" => gates.min_p99_excess_ms = count()?,
            "min_latency_fail_samples" => gates.min_latency_fail_samples = count()?,
            "min_control_samples" => gates.min_control_samples = count()?,
            "alpha_spending" => {
                gates.alpha_spending = value
                    .as_bool()
                    .ok_or_else(|| (key.clone(), format!("{value} must be true or false")))?;
            }
            other => return Err((other.to_owned(), "unknown gate field".to_owned())),
        }
    }
    gates.check().map_err(|(f, m)| (f.to_owned(), m))
}
