//! Test doubles for code built on this crate (feature `test-util`): [`RecordingObserver`] keeps
//! every event and gauge change an uploader reports, so a test can assert on them.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use crate::event::{UploadEvent, UploadPath};
use crate::observer::UploadObserver;

/// A test double that keeps every event, and per (provider, path) the net in-flight and queued
/// counts and the highest in-flight count seen.
///
/// Memory grows with the events it is given: meant for tests, not for production.
#[derive(Debug, Default)]
pub struct RecordingObserver {
    state: Mutex<Recorded>,
}

#[derive(Debug, Default)]
struct Recorded {
    events: Vec<UploadEvent>,
    in_flight: HashMap<(String, UploadPath), i64>,
    max_in_flight: HashMap<(String, UploadPath), i64>,
    queued: HashMap<(String, UploadPath), i64>,
}

impl RecordingObserver {
    /// An observer with nothing recorded.
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of the events seen so far, in arrival order.
    pub fn events(&self) -> Vec<UploadEvent> {
        self.lock().events.clone()
    }

    /// The sum of in-flight deltas seen for (provider, path).
    pub fn in_flight(&self, provider: &str, path: UploadPath) -> i64 {
        self.lock()
            .in_flight
            .get(&(provider.to_owned(), path))
            .copied()
            .unwrap_or(0)
    }

    /// The highest in-flight count seen for (provider, path).
    pub fn max_in_flight(&self, provider: &str, path: UploadPath) -> i64 {
        self.lock()
            .max_in_flight
            .get(&(provider.to_owned(), path))
            .copied()
            .unwrap_or(0)
    }

    /// The sum of queued deltas seen for (provider, path).
    pub fn queued(&self, provider: &str, path: UploadPath) -> i64 {
        self.lock()
            .queued
            .get(&(provider.to_owned(), path))
            .copied()
            .unwrap_or(0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Recorded> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl UploadObserver for RecordingObserver {
    fn on_event(&self, event: &UploadEvent) {
        self.lock().events.push(event.clone());
    }

    fn on_in_flight(&self, provider: &str, path: UploadPath, delta: i64) {
        let mut recorded = self.lock();
        let key = (provider.to_owned(), path);
        let now = {
            let count = recorded.in_flight.entry(key.clone()).or_insert(0);
            *count += delta;
            *count
        };
        let max = recorded.max_in_flight.entry(key).or_insert(0);
        *max = (*max).max(now);
    }

    fn on_queued(&self, provider: &str, path: UploadPath, delta: i64) {
        *self
            .lock()
            .queued
            .entry((provider.to_owned(), path))
            .or_insert(0) += delta;
    }
}
