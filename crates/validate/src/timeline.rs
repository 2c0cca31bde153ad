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
    /// Rollout percent applied from this decision on: what the percent line steps to after a
    /// decision that closes the panel, when no later interval records it.
    pub percent_after: f64,
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
/// The document title's baseline; the legend rows follow it.
const TITLE_BASELINE: f64 = 22.0;
const LEGEND_FIRST_ROW: f64 = 44.0;
const LEGEND_ROW_HEIGHT: f64 = 20.0;
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

/// A generous estimate of a text's rendered width: SVG has no text metrics, so labels are placed
/// with this, and the layout tests hold every label inside the document with it. DejaVu Sans, the
/// usual fallback for `sans-serif`, averages about 0.55 em for lower case and 0.64 em for digits.
fn text_width(text: &str, font_size: f64, bold: bool) -> f64 {
    let em = if bold { 0.68 } else { 0.62 };
    text.chars().count() as f64 * font_size * em
}

/// Where a label that belongs just right of `x` goes: right of it when it fits before `right_limit`,
/// else ending just left of it, so labels at the right edge of a plot are never cut.
/// `text` cut with an ellipsis so that its estimated width stays within `max_width`.
fn fit(text: &str, font_size: f64, bold: bool, max_width: f64) -> String {
    if text_width(text, font_size, bold) <= max_width {
        return text.to_owned();
    }
    let mut cut: String = text.to_owned();
    while !cut.is_empty()
        && text_width(&cut, font_size, bold) + text_width("…", font_size, bold) > max_width
    {
        cut.pop();
    }
    format!("{}…", cut.trim_end())
}

fn beside(x: f64, gap: f64, width: f64, right_limit: f64) -> (f64, &'static str) {
    if x + gap + width <= right_limit {
        (x + gap, "start")
    } else {
        (x - gap, "end")
    }
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

/// The applied percent as a step line: each interval at its percent, then the step taken by a
/// decision that closes the panel (a run that ends on an advance has no interval after it).
fn percent_steps(panel: &TimelinePanel, frame: &Frame) -> Vec<(f64, f64)> {
    let mut steps = Vec::new();
    let mut previous_x = frame.x(0.0);
    for point in &panel.points {
        let (x, y) = (frame.x(point.at_hours), frame.y(point.percent));
        steps.push((previous_x, y));
        steps.push((x, y));
        previous_x = x;
    }
    let last_interval_end = panel.points.last().map_or(0.0, |p| p.at_hours);
    let closing = panel
        .markers
        .iter()
        .filter(|m| m.kind != DecisionKind::Hold && m.at_hours >= last_interval_end)
        .max_by(|a, b| a.at_hours.total_cmp(&b.at_hours));
    if let (Some(marker), Some(&(_, last_y))) = (closing, steps.last()) {
        let x = frame.x(marker.at_hours);
        steps.push((x, last_y));
        steps.push((x, frame.y(marker.percent_after)));
    }
    steps
}

/// The x axis of a panel: the tick step and the days shown, a whole number of steps that ends
/// after the panel's last event, so a closing step or rollback is not drawn on the frame's edge.
fn day_axis(panel: &TimelinePanel) -> (f64, f64) {
    let end = panel
        .points
        .iter()
        .map(|p| p.at_hours)
        .chain(panel.markers.iter().map(|m| m.at_hours))
        .chain(panel.spans.iter().map(|s| s.to_hours))
        .fold(0.0_f64, f64::max);
    let days = (end / 24.0).max(0.25);
    let step = day_step(days);
    (step, ((days / step).floor() + 1.0) * step)
}

fn panel(out: &mut String, panel: &TimelinePanel, top: f64, x_axis: &str) {
    let (step, days) = day_axis(panel);
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
        escape(&fit(&panel.title, 15.0, true, WIDTH - 2.0 * LEFT))
    );
    for span in &panel.spans {
        let (x0, x1) = (frame.x(span.from_hours), frame.x(span.to_hours));
        let _ = writeln!(
            out,
            r##"<rect x="{x0:.1}" y="{plot_top:.1}" width="{:.1}" height="{PLOT_HEIGHT}" fill="#f4c7c3" fill-opacity="0.55"/>"##,
            (x1 - x0).max(1.0)
        );
        // A window that starts near the right edge has its label end at the edge instead.
        let width = text_width(&span.label, 11.0, false);
        let x = (x0 + 3.0)
            .min(plot_right - 3.0 - width)
            .max(plot_left + 3.0);
        let _ = writeln!(
            out,
            r##"<text x="{x:.1}" y="{:.1}" font-size="11" fill="#8a1c1c">{}</text>"##,
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
        r#"<text x="{:.1}" y="{:.1}" font-size="12" text-anchor="middle">{}</text>"#,
        (plot_left + plot_right) / 2.0,
        plot_bottom + 32.0,
        escape(x_axis)
    );
    let _ = writeln!(
        out,
        r#"<text x="16" y="{:.1}" font-size="12" text-anchor="middle" transform="rotate(-90 16 {:.1})">percent</text>"#,
        (plot_top + plot_bottom) / 2.0,
        (plot_top + plot_bottom) / 2.0
    );

    polyline(
        out,
        &percent_steps(panel, &frame),
        PERCENT_COLOUR,
        2.5,
        None,
    );
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
                let text = format!("▼ {}", marker.label);
                let (text_x, anchor) = beside(x, 4.0, text_width(&text, 12.0, true), WIDTH - 4.0);
                let _ = writeln!(
                    out,
                    r#"<text x="{text_x:.1}" y="{:.1}" font-size="12" font-weight="bold" text-anchor="{anchor}" fill="{ROLLBACK_COLOUR}">{}</text>"#,
                    plot_top + 14.0,
                    escape(&text)
                );
            }
            DecisionKind::Advance | DecisionKind::Complete => {
                let (text_x, anchor) =
                    beside(x, 3.0, text_width(&marker.label, 10.0, false), WIDTH - 4.0);
                let _ = writeln!(
                    out,
                    r##"<text x="{text_x:.1}" y="{:.1}" font-size="10" text-anchor="{anchor}" fill="{PERCENT_COLOUR}">{}</text>"##,
                    plot_top - 4.0,
                    escape(&marker.label)
                );
            }
            DecisionKind::Hold => {}
        }
    }
}

/// The title and the legend, wrapped into as many rows as the width needs; returns the height used.
fn legend(out: &mut String, title: &str) -> f64 {
    let items = [
        (Some(PERCENT_COLOUR), "rollout percent (applied)", None),
        (Some(ASYNC_COLOUR), "async success rate", None),
        (Some(SYNC_COLOUR), "sync success rate", None),
        (
            Some(FALLBACK_COLOUR),
            "sync-fallback success rate",
            Some("4 3"),
        ),
        (Some(ROLLBACK_COLOUR), "automatic rollback", Some("6 3")),
        (None, "shaded: fault window", None),
    ];
    let _ = writeln!(
        out,
        r#"<text x="{LEFT}" y="{TITLE_BASELINE}" font-size="17" font-weight="bold">{}</text>"#,
        escape(&fit(title, 17.0, true, WIDTH - 2.0 * LEFT))
    );
    let (mut x, mut y) = (LEFT, LEGEND_FIRST_ROW);
    for (colour, label, dash) in items {
        let swatch = if colour.is_some() { 30.0 } else { 0.0 };
        let width = swatch + text_width(label, 12.0, false);
        if x > LEFT && x + width > WIDTH - RIGHT {
            x = LEFT;
            y += LEGEND_ROW_HEIGHT;
        }
        match colour {
            Some(colour) => {
                let dash = dash
                    .map(|d| format!(r#" stroke-dasharray="{d}""#))
                    .unwrap_or_default();
                let _ = writeln!(
                    out,
                    r#"<line x1="{x:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{colour}" stroke-width="3"{dash}/>"#,
                    x + 24.0
                );
                let _ = writeln!(
                    out,
                    r#"<text x="{:.1}" y="{:.1}" font-size="12">{}</text>"#,
                    x + swatch,
                    y + 4.0,
                    escape(label)
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    r##"<text x="{x:.1}" y="{:.1}" font-size="12"><tspan fill="#8a1c1c">shaded</tspan>: fault window</text>"##,
                    y + 4.0
                );
            }
        }
        x += width + 18.0;
    }
    y + LEGEND_ROW_HEIGHT
}

/// The document title and the x axis caption: what the time axis counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Captions<'a> {
    /// Drawn above the legend.
    pub title: &'a str,
    /// Drawn under every panel's axis, whose ticks count units of 24 of the points' hours.
    pub x_axis: &'a str,
}

/// The validation engine's captions: simulated hours, ticks in days.
pub const SIMULATED_DAYS: Captions<'static> = Captions {
    title: "upramp validation: rollout percent and success rate by path over simulated time",
    x_axis: "simulated days",
};

/// Renders the panels as one standalone SVG document.
pub fn svg(panels: &[TimelinePanel]) -> String {
    svg_captioned(panels, &SIMULATED_DAYS)
}

/// [`svg`] with another title and time axis (`cargo xtask fleet` draws real seconds).
pub fn svg_captioned(panels: &[TimelinePanel], captions: &Captions<'_>) -> String {
    let mut header = String::new();
    let legend_height = legend(&mut header, captions.title);
    let height = legend_height + PANEL_HEIGHT * panels.len().max(1) as f64;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif">"#
    );
    let _ = writeln!(
        out,
        r#"<rect x="0" y="0" width="{WIDTH}" height="{height}" fill="white"/>"#
    );
    out.push_str(&header);
    for (i, p) in panels.iter().enumerate() {
        panel(
            &mut out,
            p,
            legend_height + PANEL_HEIGHT * i as f64,
            captions.x_axis,
        );
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
                percent_after: 0.0,
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

    fn point(at_hours: f64, percent: f64) -> TimelinePoint {
        TimelinePoint {
            at_hours,
            percent,
            async_success: (percent > 0.0).then_some(1.0),
            sync_success: (percent < 100.0).then_some(1.0),
            fallback_success: None,
        }
    }

    fn marker(at_hours: f64, kind: DecisionKind, label: &str, percent_after: f64) -> Marker {
        Marker {
            at_hours,
            kind,
            label: label.to_owned(),
            percent_after,
        }
    }

    /// Shaped like the real run's panels: the stages, ending on `complete` at the axis's end; a
    /// rollback at the very end of its axis (the latency scenario); and a scenario that ends on the
    /// advance to 100% (outage, restart, low traffic), with a fault window reaching the edge.
    fn run_like_panels() -> Vec<TimelinePanel> {
        let stages = TimelinePanel {
            title: "Five-stage rollout (default three-week plan, healthy providers)".to_owned(),
            points: (1..=84)
                .map(|i| {
                    let hours = f64::from(i) * 6.0;
                    let percent = match hours {
                        h if h <= 48.0 => 0.0,
                        h if h <= 168.0 => 1.0,
                        h if h <= 264.0 => 10.0,
                        h if h <= 336.0 => 50.0,
                        _ => 100.0,
                    };
                    point(hours, percent)
                })
                .collect(),
            markers: vec![
                marker(48.0, DecisionKind::Advance, "1%", 1.0),
                marker(168.0, DecisionKind::Advance, "10%", 10.0),
                marker(264.0, DecisionKind::Advance, "50%", 50.0),
                marker(336.0, DecisionKind::Advance, "100%", 100.0),
                marker(504.0, DecisionKind::Complete, "complete", 100.0),
            ],
            spans: vec![],
        };
        let latency = TimelinePanel {
            title: "Scenario latency: rollback on the p99 ratio gate".to_owned(),
            points: (1..=7).map(|i| point(f64::from(i) * 6.0, 10.0)).collect(),
            markers: vec![marker(
                42.0,
                DecisionKind::Rollback,
                "rollback: p99_ratio",
                0.0,
            )],
            spans: vec![Span {
                from_hours: 12.0,
                to_hours: 42.0,
                label: "async p99 x3".to_owned(),
            }],
        };
        let outage = TimelinePanel {
            title:
                "Scenario outage: hold during the outage (no rollback, no advance), then advance, \
                 with a title long enough to run past the right edge of the document"
                    .to_owned(),
            points: (1..=26).map(|i| point(f64::from(i) * 6.0, 50.0)).collect(),
            markers: vec![marker(156.0, DecisionKind::Advance, "100%", 100.0)],
            spans: vec![Span {
                from_hours: 150.0,
                to_hours: 156.0,
                label: "provider-wide 503 on both paths".to_owned(),
            }],
        };
        vec![stages, latency, outage]
    }

    /// The value of attribute `name` in the start tag `tag`.
    fn attribute<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
        let start = tag.find(&format!(" {name}=\""))? + name.len() + 3;
        let len = tag[start..].find('"')?;
        Some(&tag[start..start + len])
    }

    /// Every `<text>` element: its start tag and its text (inner tags dropped, entities decoded).
    fn texts(svg: &str) -> Vec<(&str, String)> {
        let mut found = Vec::new();
        let mut rest = svg;
        while let Some(start) = rest.find("<text ") {
            let after = &rest[start..];
            let tag_end = after.find('>').unwrap();
            let close = after.find("</text>").unwrap();
            let mut text = String::new();
            let mut in_tag = false;
            for ch in after[tag_end + 1..close].chars() {
                match ch {
                    '<' => in_tag = true,
                    '>' => in_tag = false,
                    c if !in_tag => text.push(c),
                    _ => {}
                }
            }
            let text = text
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&amp;", "&");
            found.push((&after[..tag_end], text));
            rest = &after[close..];
        }
        found
    }

    #[test]
    fn every_label_fits_inside_the_document() {
        let out = svg(&run_like_panels());
        let width: f64 = attribute(&out, "width").unwrap().parse().unwrap();
        let texts = texts(&out);
        assert!(texts.len() > 40, "{} texts", texts.len());
        for (tag, text) in texts {
            if tag.contains("transform=") {
                continue; // the rotated axis title runs along the left edge
            }
            let x: f64 = attribute(tag, "x").unwrap().parse().unwrap();
            let size: f64 = attribute(tag, "font-size").unwrap().parse().unwrap();
            let bold = attribute(tag, "font-weight") == Some("bold");
            let w = text_width(&text, size, bold);
            let (left, right) = match attribute(tag, "text-anchor").unwrap_or("start") {
                "end" => (x - w, x),
                "middle" => (x - w / 2.0, x + w / 2.0),
                _ => (x, x + w),
            };
            assert!(
                left >= 0.0 && right <= width,
                "{text:?} spans {left:.0}..{right:.0}, outside 0..{width}"
            );
        }
    }

    #[test]
    fn the_percent_line_ends_at_the_percent_applied_last() {
        let panels = run_like_panels();
        let out = svg(&panels);
        let legend_height = legend(&mut String::new(), SIMULATED_DAYS.title);
        let lines: Vec<&str> = out
            .lines()
            .filter(|l| l.starts_with("<polyline") && l.contains(PERCENT_COLOUR))
            .collect();
        assert_eq!(lines.len(), panels.len());
        for (i, (line, panel)) in lines.iter().zip(&panels).enumerate() {
            let last = attribute(line, "points")
                .unwrap()
                .split(' ')
                .next_back()
                .unwrap();
            let (x, y) = last.split_once(',').unwrap();
            let (x, y): (f64, f64) = (x.parse().unwrap(), y.parse().unwrap());
            let closing = panel.markers.last().unwrap();
            let frame = Frame {
                top: legend_height + PANEL_HEIGHT * i as f64,
                hours: 1.0,
            };
            assert!(
                (y - frame.y(closing.percent_after)).abs() < 0.1,
                "{}: the line ends at y {y}, not at {}%",
                panel.title,
                closing.percent_after
            );
            let frame = Frame {
                hours: day_axis(panel).1 * 24.0,
                ..frame
            };
            assert!(
                (x - frame.x(closing.at_hours)).abs() < 0.1,
                "{}",
                panel.title
            );
            assert!(
                x < WIDTH - RIGHT - 10.0,
                "{}: the closing step is drawn on the frame's right edge",
                panel.title
            );
        }
    }

    #[test]
    fn day_ticks_stay_readable() {
        assert_eq!(day_step(0.5), 0.25);
        assert_eq!(day_step(21.0), 2.0);
        assert_eq!(day_step(3.0), 0.25);
    }
}
