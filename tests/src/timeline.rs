//! `timeline.svg`: rollout percent and success rate by path over simulated time, rollbacks marked.
//!
//! Hand-written SVG (no charting dependency): one panel per run part (the five stages, then each scenario),
//! stacked, sharing one legend. The y axis is a percentage for both series: the applied rollout percent
//! (a step line) and each path's success rate over each tick interval.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::observe::DecisionKind;

/// One tick interval of one panel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelinePoint {
    /// End of the interval, simulated hours since the panel's start.
    pub at_hours: f64,
    /// Rollout percent applied during the interval.
    pub percent: f64,
    /// Async-path leg success rate over the interval (0..=1), if it carried async legs.
    pub async_success: Option<f64>,
    /// Sync-path leg success rate over the interval.
    pub sync_success: Option<f64>,
    /// Sync-fallback leg success rate over the interval.
    pub fallback_success: Option<f64>,
}

/// A controller decision worth marking on the chart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Marker {
    /// When, simulated hours since the panel's start.
    pub at_hours: f64,
    /// Which decision.
    pub kind: DecisionKind,
    /// Short label drawn next to it.
    pub label: String,
}

/// A shaded stretch of time (a fault window, a stopped controller).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Span {
    /// Start, simulated hours.
    pub from_hours: f64,
    /// End, simulated hours.
    pub to_hours: f64,
    /// What happened during it.
    pub label: String,
}

/// One chart panel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelinePanel {
    /// Panel heading.
    pub title: String,
    /// Tick intervals, in time order.
    pub points: Vec<TimelinePoint>,
    /// Decisions to mark (rollbacks always; advances as stage labels).
    pub markers: Vec<Marker>,
    /// Shaded windows.
    pub spans: Vec<Span>,
}

const WIDTH: f64 = 980.0;
const PANEL_HEIGHT: f64 = 270.0;
const LEGEND_HEIGHT: f64 = 64.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 24.0;
const PLOT_TOP: f64 = 34.0;
const PLOT_HEIGHT: f64 = 180.0;

const PERCENT_COLOUR: &str = "#1f4e9c";
const ASYNC_COLOUR: &str = "#2ca02c";
const SYNC_COLOUR: &str = "#ff7f0e";
const FALLBACK_COLOUR: &str = "#9467bd";
const ROLLBACK_COLOUR: &str = "#d62728";

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn day_step(days: f64) -> f64 {
    [0.25, 0.5, 1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .find(|step| days / step <= 12.0)
        .unwrap_or(20.0)
}

struct Frame {
    top: f64,
    hours: f64,
}

impl Frame {
    fn x(&self, hours: f64) -> f64 {
        LEFT + (hours / self.hours).clamp(0.0, 1.0) * (WIDTH - LEFT - RIGHT)
    }

    fn y(&self, percent: f64) -> f64 {
        self.top + PLOT_TOP + (1.0 - percent.clamp(0.0, 100.0) / 100.0) * PLOT_HEIGHT
    }
}

fn polyline(out: &mut String, points: &[(f64, f64)], colour: &str, width: f64, dash: Option<&str>) {
    if points.is_empty() {
        return;
    }
    let coords = points
        .iter()
        .map(|(x, y)| format!("{x:.1},{y:.1}"))
        .collect::<Vec<_>>()
        .join(" ");
    let dash = dash
        .map(|d| format!(r#" stroke-dasharray="{d}""#))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        r#"<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="{width}"{dash}/>"#
    );
}

fn rate_series(
    out: &mut String,
    frame: &Frame,
    points: &[TimelinePoint],
    rate: impl Fn(&TimelinePoint) -> Option<f64>,
    colour: &str,
    dash: Option<&str>,
) {
    // A gap (an interval without legs on the path) breaks the line instead of drawing a misleading slope.
    let mut run: Vec<(f64, f64)> = Vec::new();
    for point in points {
        match rate(point) {
            Some(r) => {
                let (x, y) = (frame.x(point.at_hours), frame.y(r * 100.0));
                run.push((x, y));
                let _ = writeln!(
                    out,
                    r#"<circle cx="{x:.1}" cy="{y:.1}" r="2" fill="{colour}"/>"#
                );
            }
            None => {
                polyline(out, &run, colour, 1.5, dash);
                run.clear();
            }
        }
    }
    polyline(out, &run, colour, 1.5, dash);
}

fn panel(out: &mut String, panel: &TimelinePanel, top: f64) {
    let end = panel
        .points
        .iter()
        .map(|p| p.at_hours)
        .chain(panel.markers.iter().map(|m| m.at_hours))
        .chain(panel.spans.iter().map(|s| s.to_hours))
        .fold(0.0_f64, f64::max);
    let days = (end / 24.0).max(0.25);
    let step = day_step(days);
    let days = (days / step).ceil() * step;
    let frame = Frame {
        top,
        hours: days * 24.0,
    };
    let (plot_left, plot_right) = (LEFT, WIDTH - RIGHT);
    let (plot_top, plot_bottom) = (frame.y(100.0), frame.y(0.0));

    let _ = writeln!(
        out,
        r#"<text x="{LEFT}" y="{:.1}" font-size="15" font-weight="bold">{}</text>"#,
        top + 20.0,
        escape(&panel.title)
    );
    for span in &panel.spans {
        let (x0, x1) = (frame.x(span.from_hours), frame.x(span.to_hours));
        let _ = writeln!(
            out,
            r##"<rect x="{x0:.1}" y="{plot_top:.1}" width="{:.1}" height="{PLOT_HEIGHT}" fill="#f4c7c3" fill-opacity="0.55"/>"##,
            (x1 - x0).max(1.0)
        );
        let _ = writeln!(
            out,
            r##"<text x="{:.1}" y="{:.1}" font-size="11" fill="#8a1c1c">{}</text>"##,
            x0 + 3.0,
            plot_bottom - 6.0,
            escape(&span.label)
        );
    }
    for percent in [0.0, 25.0, 50.0, 75.0, 100.0] {
        let y = frame.y(percent);
        let _ = writeln!(
            out,
            r##"<line x1="{plot_left}" y1="{y:.1}" x2="{plot_right}" y2="{y:.1}" stroke="#dddddd"/>"##
        );
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end">{percent}%</text>"#,
            plot_left - 6.0,
            y + 4.0
        );
    }
    let mut day = 0.0;
    while day <= days + 1e-9 {
        let x = frame.x(day * 24.0);
        let _ = writeln!(
            out,
            r##"<line x1="{x:.1}" y1="{plot_bottom:.1}" x2="{x:.1}" y2="{:.1}" stroke="#333333"/>"##,
            plot_bottom + 4.0
        );
        let _ = writeln!(
            out,
            r#"<text x="{x:.1}" y="{:.1}" font-size="11" text-anchor="middle">{day}</text>"#,
            plot_bottom + 16.0
        );
        day += step;
    }
    let _ = writeln!(
        out,
        r##"<rect x="{plot_left}" y="{plot_top:.1}" width="{:.1}" height="{PLOT_HEIGHT}" fill="none" stroke="#333333"/>"##,
        plot_right - plot_left
    );
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" font-size="12" text-anchor="middle">simulated days</text>"#,
        (plot_left + plot_right) / 2.0,
        plot_bottom + 32.0
    );
    let _ = writeln!(
        out,
        r#"<text x="16" y="{:.1}" font-size="12" text-anchor="middle" transform="rotate(-90 16 {:.1})">percent</text>"#,
        (plot_top + plot_bottom) / 2.0,
        (plot_top + plot_bottom) / 2.0
    );

    let mut step_line = Vec::new();
    let mut previous_x = frame.x(0.0);
    for point in &panel.points {
        let (x, y) = (frame.x(point.at_hours), frame.y(point.percent));
        step_line.push((previous_x, y));
        step_line.push((x, y));
        previous_x = x;
    }
    polyline(out, &step_line, PERCENT_COLOUR, 2.5, None);
    rate_series(
        out,
        &frame,
        &panel.points,
        |p| p.sync_success,
        SYNC_COLOUR,
        None,
    );
    rate_series(
        out,
        &frame,
        &panel.points,
        |p| p.async_success,
        ASYNC_COLOUR,
        None,
    );
    rate_series(
        out,
        &frame,
        &panel.points,
        |p| p.fallback_success,
        FALLBACK_COLOUR,
        Some("4 3"),
    );

    for marker in &panel.markers {
        let x = frame.x(marker.at_hours);
        match marker.kind {
            DecisionKind::Rollback => {
                let _ = writeln!(
                    out,
                    r#"<line x1="{x:.1}" y1="{plot_top:.1}" x2="{x:.1}" y2="{plot_bottom:.1}" stroke="{ROLLBACK_COLOUR}" stroke-width="2" stroke-dasharray="6 3"/>"#
                );
                let _ = writeln!(
                    out,
                    r#"<text x="{:.1}" y="{:.1}" font-size="12" font-weight="bold" fill="{ROLLBACK_COLOUR}">▼ {}</text>"#,
                    x + 4.0,
                    plot_top + 14.0,
                    escape(&marker.label)
                );
            }
            DecisionKind::Advance | DecisionKind::Complete => {
                let _ = writeln!(
                    out,
                    r##"<text x="{:.1}" y="{:.1}" font-size="10" fill="{PERCENT_COLOUR}">{}</text>"##,
                    x + 3.0,
                    plot_top - 4.0,
                    escape(&marker.label)
                );
            }
            DecisionKind::Hold => {}
        }
    }
}

fn legend(out: &mut String) {
    let items = [
        (PERCENT_COLOUR, "rollout percent (applied)", None),
        (ASYNC_COLOUR, "async success rate", None),
        (SYNC_COLOUR, "sync success rate", None),
        (FALLBACK_COLOUR, "sync-fallback success rate", Some("4 3")),
        (ROLLBACK_COLOUR, "automatic rollback", Some("6 3")),
    ];
    let _ = writeln!(
        out,
        r#"<text x="{LEFT}" y="22" font-size="17" font-weight="bold">upramp validation: rollout percent and success rate by path over simulated time</text>"#
    );
    let mut x = LEFT;
    for (colour, label, dash) in items {
        let dash = dash
            .map(|d| format!(r#" stroke-dasharray="{d}""#))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            r#"<line x1="{x:.1}" y1="44" x2="{:.1}" y2="44" stroke="{colour}" stroke-width="3"{dash}/>"#,
            x + 24.0
        );
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="48" font-size="12">{}</text>"#,
            x + 30.0,
            escape(label)
        );
        x += 36.0 + label.len() as f64 * 6.6;
    }
    let _ = writeln!(
        out,
        r##"<text x="{:.1}" y="48" font-size="12"><tspan fill="#8a1c1c">shaded</tspan>: fault window</text>"##,
        x
    );
}

/// Renders the panels as one standalone SVG document.
pub fn svg(panels: &[TimelinePanel]) -> String {
    let height = LEGEND_HEIGHT + PANEL_HEIGHT * panels.len().max(1) as f64;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif">"#
    );
    let _ = writeln!(
        out,
        r#"<rect x="0" y="0" width="{WIDTH}" height="{height}" fill="white"/>"#
    );
    legend(&mut out);
    for (i, p) in panels.iter().enumerate() {
        panel(&mut out, p, LEGEND_HEIGHT + PANEL_HEIGHT * i as f64);
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn scenario() -> TimelinePanel {
        TimelinePanel {
            title: "async-breaks <30% 503>".to_owned(),
            points: (1..=8)
                .map(|i| TimelinePoint {
                    at_hours: f64::from(i) * 6.0,
                    percent: if i <= 5 { 10.0 } else { 0.0 },
                    async_success: (i <= 5).then_some(if i >= 3 { 0.7 } else { 1.0 }),
                    sync_success: Some(1.0),
                    fallback_success: (3..=5).contains(&i).then_some(1.0),
                })
                .collect(),
            markers: vec![Marker {
                at_hours: 30.0,
                kind: DecisionKind::Rollback,
                label: "rollback: success_rate".to_owned(),
            }],
            spans: vec![Span {
                from_hours: 12.0,
                to_hours: 48.0,
                label: "503 on 30% of async".to_owned(),
            }],
        }
    }

    #[test]
    fn svg_has_one_panel_per_part_and_marks_rollbacks() {
        let out = svg(&[scenario(), scenario()]);
        assert!(out.starts_with("<svg "));
        assert!(out.trim_end().ends_with("</svg>"));
        assert_eq!(out.matches("simulated days</text>").count(), 2);
        assert_eq!(out.matches("▼ rollback: success_rate").count(), 2);
        // Titles are escaped, so the document stays well formed.
        assert!(out.contains("async-breaks &lt;30% 503&gt;"));
        assert!(!out.contains("<30%"));
    }

    #[test]
    fn gaps_break_a_rate_line() {
        let mut out = String::new();
        let frame = Frame {
            top: 0.0,
            hours: 48.0,
        };
        rate_series(
            &mut out,
            &frame,
            &scenario().points,
            |p| p.async_success,
            "#000",
            None,
        );
        assert_eq!(out.matches("<polyline").count(), 1);
        rate_series(
            &mut out,
            &frame,
            &scenario().points,
            |p| p.fallback_success,
            "#000",
            None,
        );
        assert_eq!(out.matches("<polyline").count(), 2);
    }

    #[test]
    fn day_ticks_stay_readable() {
        assert_eq!(day_step(0.5), 0.25);
        assert_eq!(day_step(21.0), 2.0);
        assert_eq!(day_step(3.0), 0.25);
    }
}
