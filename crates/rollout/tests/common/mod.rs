//! Synthetic traffic for controller tests: a sink that shares the applied percent with a source that
//! splits a fixed request volume between the paths by that percent.
#![allow(dead_code, clippy::unwrap_used)]

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use upramp_flags::Percent;
use upramp_rollout::{FlagSink, GateInputs, MetricsSource, PathSample, SinkError, SourceError};

pub const HOUR: Duration = Duration::from_secs(3_600);
pub const DAY: Duration = Duration::from_secs(86_400);

pub fn start() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_714_521_600) // 2024-05-01T00:00:00Z
}

/// Health of one path in a window.
#[derive(Debug, Clone, Copy)]
pub struct Health {
    pub error_rate: f64,
    pub p99_ms: u64,
}

pub const HEALTHY: Health = Health {
    error_rate: 0.002,
    p99_ms: 100,
};

/// Exact counts for `n` legs with `health` (errors rounded to the nearest integer).
pub fn path(n: u64, health: Health) -> PathSample {
    let errors = ((n as f64) * health.error_rate).round() as u64;
    PathSample {
        samples: n,
        successes: n - errors,
        errors,
        p99: (n > 0).then(|| Duration::from_millis(health.p99_ms)),
        ..PathSample::default()
    }
}

/// Requests per window split by the applied percent.
pub fn split(
    total: u64,
    percent: Percent,
    async_health: Health,
    sync_health: Health,
) -> GateInputs {
    let async_n = total * u64::from(percent.thousandths()) / 100_000;
    GateInputs {
        async_: path(async_n, async_health),
        sync: path(total - async_n, sync_health),
    }
}

#[derive(Debug, Clone, Default)]
pub struct SharedSink(pub Rc<Cell<u32>>, pub Rc<Cell<u32>>);

impl SharedSink {
    pub fn percent(&self) -> Percent {
        Percent::from_thousandths(self.0.get()).unwrap()
    }
    pub fn applies(&self) -> u32 {
        self.1.get()
    }
}

impl FlagSink for SharedSink {
    fn apply(&mut self, percent: Percent) -> Result<(), SinkError> {
        self.0.set(percent.thousandths());
        self.1.set(self.1.get() + 1);
        Ok(())
    }
}

/// A source computing each window from the time and the percent the shared sink holds.
pub struct SimSource<F> {
    pub percent: Rc<Cell<u32>>,
    pub scenario: F,
}

impl<F: FnMut(SystemTime, Percent) -> GateInputs> MetricsSource for SimSource<F> {
    fn window(&mut self, now: SystemTime) -> Result<GateInputs, SourceError> {
        let p = Percent::from_thousandths(self.percent.get()).unwrap();
        Ok((self.scenario)(now, p))
    }
}

pub fn sim<F: FnMut(SystemTime, Percent) -> GateInputs>(scenario: F) -> (SimSource<F>, SharedSink) {
    let sink = SharedSink::default();
    (
        SimSource {
            percent: sink.0.clone(),
            scenario,
        },
        sink,
    )
}
