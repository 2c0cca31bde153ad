//! The gateway's own metrics, rendered at scrape time after the telemetry crate's exposition.
//!
//! Rendering from live state (the flag store, the spool) rather than recording gauges means a
//! reloaded flag never leaves a stale series behind. Label values come from closed sets: routes
//! are a fixed list, statuses are numbers, field sources are `default|file|env|override`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use upramp_flags::{FieldOrigins, FlagConfig};

/// Metric names.
pub mod names {
    /// Requests answered, by route and status.
    pub const REQUESTS_TOTAL: &str = "upramp_gateway_requests_total";
    /// Requests being served.
    pub const IN_FLIGHT: &str = "upramp_gateway_requests_in_flight";
    /// The effective flag: value 1, labels give the percent, `enabled` and each field's source.
    pub const FLAG_INFO: &str = "upramp_gateway_flag_info";
    /// The effective rollout percent (0-100).
    pub const FLAG_ROLLOUT_PERCENT: &str = "upramp_gateway_flag_rollout_percent";
    /// Flags file reloads attempted.
    pub const FLAG_RELOADS_TOTAL: &str = "upramp_gateway_flag_reloads_total";
    /// Flags file reloads that failed (the last good snapshot stayed).
    pub const FLAG_RELOAD_ERRORS_TOTAL: &str = "upramp_gateway_flag_reload_errors_total";
    /// Bytes reserved in the spool.
    pub const SPOOL_BYTES: &str = "upramp_gateway_spool_bytes";
    /// The spool's byte budget.
    pub const SPOOL_MAX_BYTES: &str = "upramp_gateway_spool_max_bytes";
    /// Uploads refused with 503 because the spool was full.
    pub const SPOOL_FULL_TOTAL: &str = "upramp_gateway_spool_full_total";
    /// Uploads whose client went away before its body was complete.
    pub const CLIENT_DISCONNECTS_TOTAL: &str = "upramp_gateway_client_disconnects_total";
    /// 1 while ready, 0 while draining.
    pub const READY: &str = "upramp_gateway_ready";
}

/// Counters the request handlers update.
#[derive(Debug, Default)]
pub struct GatewayMetrics {
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    in_flight: AtomicI64,
    disconnects: AtomicU64,
}

/// What the gateway state contributes to a scrape.
pub struct Live<'a> {
    /// The flag now.
    pub flag: &'a FlagConfig,
    /// Where each of its fields came from.
    pub origins: &'a FieldOrigins,
    /// Reloads attempted and failed.
    pub reloads: (u64, u64),
    /// Spool bytes used, budget, full refusals.
    pub spool: (u64, u64, u64),
    /// Ready or draining.
    pub ready: bool,
}

impl GatewayMetrics {
    /// Count one answered request.
    pub fn record(&self, route: &'static str, status: u16) {
        let mut requests = self.requests.lock().unwrap_or_else(PoisonError::into_inner);
        *requests.entry((route, status)).or_insert(0) += 1;
    }

    /// A request started (+1) or ended (-1).
    pub fn in_flight(&self, delta: i64) {
        self.in_flight.fetch_add(delta, Ordering::Relaxed);
    }

    /// A client went away mid-body.
    pub fn disconnect(&self) {
        self.disconnects.fetch_add(1, Ordering::Relaxed);
    }

    /// The exposition of the gateway's series.
    pub fn render(&self, live: &Live<'_>) -> String {
        let mut out = String::new();
        family(
            &mut out,
            names::REQUESTS_TOTAL,
            "counter",
            "Gateway requests answered, by route and status.",
        );
        {
            let requests = self.requests.lock().unwrap_or_else(PoisonError::into_inner);
            for ((route, status), count) in requests.iter() {
                let _ = writeln!(
                    out,
                    "{}{{route=\"{route}\",status=\"{status}\"}} {count}",
                    names::REQUESTS_TOTAL
                );
            }
        }
        family(
            &mut out,
            names::IN_FLIGHT,
            "gauge",
            "Gateway requests being served.",
        );
        let _ = writeln!(
            out,
            "{} {}",
            names::IN_FLIGHT,
            self.in_flight.load(Ordering::Relaxed)
        );

        let flag = live.flag;
        let percent = flag.rollout.as_f64();
        let origins = live.origins;
        family(
            &mut out,
            names::FLAG_INFO,
            "gauge",
            "The effective upload flag (value 1): percent, enabled and the source of each field.",
        );
        let _ = writeln!(
            out,
            "{}{{flag=\"{}\",rollout=\"{percent}\",enabled=\"{}\",fallback=\"{}\",enabled_source=\"{}\",rollout_source=\"{}\",fallback_source=\"{}\",salt_source=\"{}\",max_retries_source=\"{}\",timeout_source=\"{}\",strategy_source=\"{}\"}} 1",
            names::FLAG_INFO,
            label_value(&flag.name),
            flag.enabled,
            flag.fallback,
            origins.enabled.kind(),
            origins.rollout.kind(),
            origins.fallback.kind(),
            origins.salt.kind(),
            origins.max_retries.kind(),
            origins.timeout.kind(),
            origins.strategy.kind(),
        );
        family(
            &mut out,
            names::FLAG_ROLLOUT_PERCENT,
            "gauge",
            "The effective rollout percent (0-100).",
        );
        let _ = writeln!(
            out,
            "{}{{flag=\"{}\"}} {percent}",
            names::FLAG_ROLLOUT_PERCENT,
            label_value(&flag.name)
        );
        family(
            &mut out,
            names::FLAG_RELOADS_TOTAL,
            "counter",
            "Flags file reloads attempted.",
        );
        let _ = writeln!(out, "{} {}", names::FLAG_RELOADS_TOTAL, live.reloads.0);
        family(
            &mut out,
            names::FLAG_RELOAD_ERRORS_TOTAL,
            "counter",
            "Flags file reloads that failed; the last good configuration stayed.",
        );
        let _ = writeln!(
            out,
            "{} {}",
            names::FLAG_RELOAD_ERRORS_TOTAL,
            live.reloads.1
        );

        family(
            &mut out,
            names::SPOOL_BYTES,
            "gauge",
            "Bytes reserved in the spool by uploads in progress.",
        );
        let _ = writeln!(out, "{} {}", names::SPOOL_BYTES, live.spool.0);
        family(
            &mut out,
            names::SPOOL_MAX_BYTES,
            "gauge",
            "The spool's byte budget (--max-spool-bytes).",
        );
        let _ = writeln!(out, "{} {}", names::SPOOL_MAX_BYTES, live.spool.1);
        family(
            &mut out,
            names::SPOOL_FULL_TOTAL,
            "counter",
            "Uploads refused with 503 because the spool was full.",
        );
        let _ = writeln!(out, "{} {}", names::SPOOL_FULL_TOTAL, live.spool.2);
        family(
            &mut out,
            names::CLIENT_DISCONNECTS_TOTAL,
            "counter",
            "Uploads whose client went away before the body was complete (nothing was sent on).",
        );
        let _ = writeln!(
            out,
            "{} {}",
            names::CLIENT_DISCONNECTS_TOTAL,
            self.disconnects.load(Ordering::Relaxed)
        );
        family(
            &mut out,
            names::READY,
            "gauge",
            "1 while the gateway accepts work, 0 while draining.",
        );
        let _ = writeln!(out, "{} {}", names::READY, u8::from(live.ready));
        out
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Flag names are identifiers already; escape anyway so the exposition can never break.
fn label_value(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
