//! One timeline panel per scenario, drawn by the validation engine's renderer
//! ([`upramp_validate::timeline`]): the percent the gateways applied (from the monitor), each path's
//! success rate as the gateways counted it (read back from Prometheus), the controller's decisions
//! (from the audit log) and what the scenario did to the fleet (shaded).
//!
//! The renderer's axis ticks count units of 24 of its points' hours (simulated days); a fleet panel puts
//! one real second where the validation engine puts a simulated day, so the ticks read in seconds.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use upramp_rollout::{Decision, DecisionRecord};
use upramp_validate::observe::DecisionKind;
use upramp_validate::timeline::{Captions, Marker, Span, TimelinePanel, TimelinePoint};

use super::load::PercentSample;

/// The fleet's captions for [`upramp_validate::timeline::svg_captioned`].
pub const FLEET_CAPTIONS: Captions<'static> = Captions {
    title: "upramp fleet: percent applied and success rate by path, in real time",
    x_axis: "seconds since the load started",
};

/// Seconds between points (the Prometheus range query's step).
const STEP_SECS: u64 = 1;
/// The range each point's `increase` covers: two scrapes at the fleet's 1 s interval.
const RANGE_SECS: u64 = 2;

/// A second of load time as the renderer's hours.
fn hours(seconds: f64) -> f64 {
    seconds * 24.0
}

/// Success counts per path over one step, from `increase(upramp_uploads_total[...])`.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    success: f64,
    total: f64,
}

impl Counts {
    fn rate(self) -> Option<f64> {
        (self.total >= 0.5).then(|| (self.success / self.total).clamp(0.0, 1.0))
    }
}

/// Each path's success counts per step between `from` and `to`, read from Prometheus; empty (the panel
/// then shows only the percent and the decisions) when the server does not answer.
fn path_counts(
    prometheus: &str,
    from: SystemTime,
    to: SystemTime,
) -> BTreeMap<u64, BTreeMap<String, Counts>> {
    let mut out: BTreeMap<u64, BTreeMap<String, Counts>> = BTreeMap::new();
    let unix = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let (start, end) = (unix(from) + STEP_SECS, unix(to) + STEP_SECS);
    let Ok(client) = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
    else {
        return out;
    };
    let query = format!(
        "sum by (path, outcome) (increase(upramp_uploads_total{{job=\"upramp\"}}[{}s]))",
        RANGE_SECS
    );
    let response = client
        .get(format!("{prometheus}/api/v1/query_range"))
        .query(&[
            ("query", query),
            ("start", start.to_string()),
            ("end", end.to_string()),
            ("step", STEP_SECS.to_string()),
        ])
        .send()
        .and_then(|r| r.json::<serde_json::Value>());
    let Ok(body) = response else {
        return out;
    };
    let series = body["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for s in &series {
        let path = s["metric"]["path"].as_str().unwrap_or_default().to_owned();
        let success = s["metric"]["outcome"].as_str() == Some("success");
        for value in s["values"].as_array().into_iter().flatten() {
            let (Some(at), Some(v)) = (
                value[0].as_f64(),
                value[1].as_str().and_then(|v| v.parse::<f64>().ok()),
            ) else {
                continue;
            };
            if !v.is_finite() {
                continue;
            }
            let counts = out
                .entry(at as u64)
                .or_default()
                .entry(path.clone())
                .or_default();
            counts.total += v;
            if success {
                counts.success += v;
            }
        }
    }
    out
}

/// The percent most gateways showed in the last sample before `at` (the median of those answering).
fn applied_percent(samples: &[PercentSample], at: f64) -> Option<f64> {
    let sample = samples.iter().rev().find(|s| s.at <= at)?;
    let mut answering: Vec<f64> = sample.percents.iter().flatten().copied().collect();
    answering.sort_by(f64::total_cmp);
    answering.get(answering.len() / 2).copied()
}

/// Everything a panel is drawn from.
pub struct PanelInputs<'a> {
    /// Heading.
    pub title: String,
    /// The Prometheus server's URL.
    pub prometheus: &'a str,
    /// When the load started (load time 0).
    pub load_wall: SystemTime,
    /// When the scenario's load ended.
    pub end: SystemTime,
    /// The gateways' applied percents.
    pub samples: &'a [PercentSample],
    /// The controller's decisions.
    pub audit: &'a [DecisionRecord],
    /// What the scenario did, in load seconds.
    pub spans: &'a [(f64, f64, String)],
}

/// Build one scenario's panel.
pub fn panel(inputs: &PanelInputs<'_>) -> TimelinePanel {
    let since_load = |t: SystemTime| {
        t.duration_since(inputs.load_wall)
            .unwrap_or_default()
            .as_secs_f64()
    };
    let counts = path_counts(inputs.prometheus, inputs.load_wall, inputs.end);
    let load_start_unix = inputs
        .load_wall
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    let length = since_load(inputs.end);
    let mut points = Vec::new();
    let mut at = STEP_SECS as f64;
    while at <= length + 1e-9 {
        let key = (load_start_unix + at) as u64;
        // Prometheus evaluates at whole seconds; take the step ending nearest to `at`.
        let step = counts
            .range(key.saturating_sub(1)..=key + 1)
            .next()
            .map(|(_, v)| v);
        let rate = |path: &str| step.and_then(|m| m.get(path)).and_then(|c| c.rate());
        if let Some(percent) = applied_percent(inputs.samples, at) {
            points.push(TimelinePoint {
                at_hours: hours(at),
                percent,
                async_success: rate("async"),
                sync_success: rate("sync"),
                fallback_success: rate("sync_fallback"),
            });
        }
        at += STEP_SECS as f64;
    }
    let markers = inputs
        .audit
        .iter()
        .filter_map(|r| {
            let kind = match r.decision {
                Decision::Advance if r.from_percent != r.percent => DecisionKind::Advance,
                Decision::Complete => DecisionKind::Complete,
                Decision::Rollback => DecisionKind::Rollback,
                _ => return None,
            };
            let label = match kind {
                DecisionKind::Rollback => {
                    let manual = r.trigger == upramp_rollout::Trigger::Manual;
                    match r.failing_gates().next() {
                        Some(g) => format!("rollback: {}", g.gate.as_str()),
                        // A rollback of a rolled-back rollout writes 0% again.
                        None if manual && r.from_percent == r.percent => "re-apply".to_owned(),
                        None if manual => "rollback: operator".to_owned(),
                        None => "rollback".to_owned(),
                    }
                }
                DecisionKind::Complete => "complete".to_owned(),
                _ => r.percent.to_string(),
            };
            Some(Marker {
                at_hours: hours(since_load(r.at)),
                kind,
                label,
                percent_after: r.percent.as_f64(),
            })
        })
        .collect();
    let spans = inputs
        .spans
        .iter()
        .map(|(from, to, label)| Span {
            from_hours: hours(*from),
            to_hours: hours(*to),
            label: label.clone(),
        })
        .collect();
    TimelinePanel {
        title: inputs.title.clone(),
        points,
        markers,
        spans,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_applied_percent_is_the_median_of_the_answering_gateways() {
        let samples = vec![
            PercentSample {
                at: 1.0,
                percents: vec![Some(0.0), Some(0.0), Some(0.0)],
            },
            PercentSample {
                at: 2.0,
                percents: vec![Some(25.0), None, Some(25.0)],
            },
            PercentSample {
                at: 3.0,
                percents: vec![Some(50.0), Some(25.0), Some(50.0)],
            },
        ];
        assert_eq!(applied_percent(&samples, 0.5), None);
        assert_eq!(applied_percent(&samples, 1.5), Some(0.0));
        assert_eq!(applied_percent(&samples, 2.0), Some(25.0));
        assert_eq!(applied_percent(&samples, 9.0), Some(50.0));
    }

    #[test]
    fn a_step_without_legs_has_no_rate() {
        assert_eq!(Counts::default().rate(), None);
        let half = Counts {
            success: 3.0,
            total: 6.0,
        };
        assert_eq!(half.rate(), Some(0.5));
    }
}
