//! The observer trait the uploader reports through, its fan-out and two simple implementations.

use std::fmt;
use std::sync::Arc;

use crate::event::{UploadEvent, UploadPath};

/// The narrow interface the uploader reports to.
///
/// Implementations must be cheap and must not block for long: they run on the upload path.
pub trait UploadObserver: Send + Sync {
    /// Called once per attempt and once per request leg (see [`UploadEvent`] for the rules).
    fn on_event(&self, event: &UploadEvent);

    /// Called with `+1` when a leg on `path` acquires its path's concurrency slot and `-1` when it
    /// releases it: only legs holding a slot count as in flight.
    fn on_in_flight(&self, provider: &str, path: UploadPath, delta: i64) {
        let _ = (provider, path, delta);
    }

    /// Called with `+1` when a leg on `path` starts waiting for its path's concurrency slot and
    /// `-1` when the wait ends (it got the slot, or it was cancelled).
    fn on_queued(&self, provider: &str, path: UploadPath, delta: i64) {
        let _ = (provider, path, delta);
    }
}

impl<T: UploadObserver + ?Sized> UploadObserver for Arc<T> {
    fn on_event(&self, event: &UploadEvent) {
        (**self).on_event(event);
    }

    fn on_in_flight(&self, provider: &str, path: UploadPath, delta: i64) {
        (**self).on_in_flight(provider, path, delta);
    }
    fn on_queued(&self, provider: &str, path: UploadPath, delta: i64) {
        (**self).on_queued(provider, path, delta);
    }
}

impl<T: UploadObserver + ?Sized> UploadObserver for Box<T> {
    fn on_event(&self, event: &UploadEvent) {
        (**self).on_event(event);
    }

    fn on_in_flight(&self, provider: &str, path: UploadPath, delta: i64) {
        (**self).on_in_flight(provider, path, delta);
    }
    fn on_queued(&self, provider: &str, path: UploadPath, delta: i64) {
        (**self).on_queued(provider, path, delta);
    }
}

impl<T: UploadObserver + ?Sized> UploadObserver for &T {
    fn on_event(&self, event: &UploadEvent) {
        (**self).on_event(event);
    }

    fn on_in_flight(&self, provider: &str, path: UploadPath, delta: i64) {
        (**self).on_in_flight(provider, path, delta);
    }
    fn on_queued(&self, provider: &str, path: UploadPath, delta: i64) {
        (**self).on_queued(provider, path, delta);
    }
}

/// An observer that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoopObserver;

impl UploadObserver for NoopObserver {
    fn on_event(&self, _event: &UploadEvent) {}
}

/// Sends every call to each of its observers, in the order they were added.
///
/// ```
/// use std::sync::Arc;
/// use upramp_telemetry::{FanOut, RecordingObserver, UploadObserver, UploadPath};
///
/// let recorder = Arc::new(RecordingObserver::new());
/// let observers = FanOut::new().with(recorder.clone());
/// observers.on_in_flight("kimi", UploadPath::Async, 1);
/// assert_eq!(recorder.in_flight("kimi", UploadPath::Async), 1);
/// ```
#[derive(Clone, Default)]
pub struct FanOut {
    observers: Vec<Arc<dyn UploadObserver>>,
}

/// The name the architecture page uses for the fan-out.
pub type Observers = FanOut;

impl FanOut {
    /// An empty fan-out (observes nothing until observers are added).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `observer` and returns the fan-out, for chaining.
    #[must_use]
    pub fn with(mut self, observer: Arc<dyn UploadObserver>) -> Self {
        self.observers.push(observer);
        self
    }

    /// Adds `observer`.
    pub fn push(&mut self, observer: Arc<dyn UploadObserver>) {
        self.observers.push(observer);
    }

    /// How many observers receive each call.
    pub fn len(&self) -> usize {
        self.observers.len()
    }

    /// True when no observer is attached.
    pub fn is_empty(&self) -> bool {
        self.observers.is_empty()
    }
}

impl FromIterator<Arc<dyn UploadObserver>> for FanOut {
    fn from_iter<I: IntoIterator<Item = Arc<dyn UploadObserver>>>(iter: I) -> Self {
        Self {
            observers: iter.into_iter().collect(),
        }
    }
}

impl fmt::Debug for FanOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FanOut")
            .field("observers", &self.observers.len())
            .finish()
    }
}

impl UploadObserver for FanOut {
    fn on_event(&self, event: &UploadEvent) {
        for observer in &self.observers {
            observer.on_event(event);
        }
    }

    fn on_in_flight(&self, provider: &str, path: UploadPath, delta: i64) {
        for observer in &self.observers {
            observer.on_in_flight(provider, path, delta);
        }
    }
    fn on_queued(&self, provider: &str, path: UploadPath, delta: i64) {
        for observer in &self.observers {
            observer.on_queued(provider, path, delta);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{EventKind, Outcome};
    use crate::test_util::RecordingObserver;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn fan_out_reaches_every_observer_in_order() {
        let first = Arc::new(RecordingObserver::new());
        let second = Arc::new(RecordingObserver::new());
        let fan_out: FanOut = [
            first.clone() as Arc<dyn UploadObserver>,
            second.clone() as Arc<dyn UploadObserver>,
        ]
        .into_iter()
        .collect();
        let nested = FanOut::new()
            .with(Arc::new(fan_out))
            .with(Arc::new(NoopObserver));
        assert_eq!(nested.len(), 2);
        let event = UploadEvent {
            kind: EventKind::Request,
            provider: "glm".into(),
            path: UploadPath::Sync,
            outcome: Outcome::Success,
            duration: Duration::from_millis(5),
            queue_wait: Duration::ZERO,
            bytes: 10,
            attempt: 1,
            fallback_reason: None,
            at: UNIX_EPOCH,
        };
        nested.on_event(&event);
        nested.on_in_flight("glm", UploadPath::Sync, 1);
        nested.on_in_flight("glm", UploadPath::Sync, -1);
        nested.on_in_flight("glm", UploadPath::Sync, 1);
        nested.on_queued("glm", UploadPath::Async, 1);
        for recorder in [&first, &second] {
            assert_eq!(recorder.events(), vec![event.clone()]);
            assert_eq!(recorder.in_flight("glm", UploadPath::Sync), 1);
            assert_eq!(recorder.in_flight("glm", UploadPath::Async), 0);
            assert_eq!(recorder.max_in_flight("glm", UploadPath::Sync), 1);
            assert_eq!(recorder.queued("glm", UploadPath::Async), 1);
        }
    }
}
