//! What the uploader tells its observer: `Attempt` and `Request` events, and the in-flight and
//! queued gauges, each kept by a guard so every exit (cancellation included) is counted.

use std::sync::Arc;
use std::time::Duration;

use upramp_telemetry::{Clock, EventKind, Outcome, UploadEvent, UploadObserver, UploadPath};

/// The observer, the clock stamping events and the provider label they carry.
pub(crate) struct Events {
    pub(crate) observer: Arc<dyn UploadObserver>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) provider: &'static str,
}

/// One leg's `Request` event.
#[derive(Clone, Copy)]
pub(crate) struct LegEvent {
    pub(crate) path: UploadPath,
    pub(crate) outcome: Outcome,
    /// From holding the slot to the leg's end.
    pub(crate) duration: Duration,
    pub(crate) queue_wait: Duration,
    /// The file size when the leg succeeded, else 0.
    pub(crate) bytes: u64,
    pub(crate) attempts: u32,
    pub(crate) fallback_reason: Option<Outcome>,
}

impl Events {
    /// One HTTP attempt ended.
    pub(crate) fn attempt(
        &self,
        path: UploadPath,
        outcome: Outcome,
        duration: Duration,
        bytes: u64,
        attempt: u32,
    ) {
        self.emit(&UploadEvent {
            kind: EventKind::Attempt,
            provider: self.provider.to_owned(),
            path,
            outcome,
            duration,
            queue_wait: Duration::ZERO,
            bytes,
            attempt,
            fallback_reason: None,
            at: self.clock.now(),
        });
    }

    /// One leg ended.
    pub(crate) fn leg(&self, leg: LegEvent) {
        self.emit(&UploadEvent {
            kind: EventKind::Request,
            provider: self.provider.to_owned(),
            path: leg.path,
            outcome: leg.outcome,
            duration: leg.duration,
            queue_wait: leg.queue_wait,
            bytes: leg.bytes,
            attempt: leg.attempts,
            fallback_reason: leg.fallback_reason,
            at: self.clock.now(),
        });
    }

    fn emit(&self, event: &UploadEvent) {
        self.observer.on_event(event);
    }

    /// Counts a leg as in flight (holding its slot) while the guard lives.
    pub(crate) fn in_flight(&self, path: UploadPath) -> Gauge {
        Gauge::new(self, path, GaugeKind::InFlight)
    }

    /// Counts a leg as queued (waiting for its slot) while the guard lives.
    pub(crate) fn queued(&self, path: UploadPath) -> Gauge {
        Gauge::new(self, path, GaugeKind::Queued)
    }
}

#[derive(Clone, Copy)]
enum GaugeKind {
    InFlight,
    Queued,
}

/// +1 on creation, -1 on drop, whichever way the leg ends (success, error, panic or the future
/// being dropped).
pub(crate) struct Gauge {
    observer: Arc<dyn UploadObserver>,
    provider: &'static str,
    path: UploadPath,
    kind: GaugeKind,
}

impl Gauge {
    fn new(events: &Events, path: UploadPath, kind: GaugeKind) -> Self {
        let gauge = Self {
            observer: events.observer.clone(),
            provider: events.provider,
            path,
            kind,
        };
        gauge.change(1);
        gauge
    }

    fn change(&self, delta: i64) {
        match self.kind {
            GaugeKind::InFlight => self.observer.on_in_flight(self.provider, self.path, delta),
            GaugeKind::Queued => self.observer.on_queued(self.provider, self.path, delta),
        }
    }
}

impl Drop for Gauge {
    fn drop(&mut self) {
        self.change(-1);
    }
}
