//! Time sources: every timestamp below the binaries comes from a [`Clock`] the caller passes in.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

/// A source of wall-clock time.
///
/// Production code uses [`SystemClock`]; tests and `cargo xtask validate` use [`SimulatedClock`] so
/// weeks of rollout run in seconds.
pub trait Clock: Send + Sync {
    /// The current time according to this clock.
    fn now(&self) -> SystemTime;
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now(&self) -> SystemTime {
        (**self).now()
    }
}

impl<C: Clock + ?Sized> Clock for Box<C> {
    fn now(&self) -> SystemTime {
        (**self).now()
    }
}

impl<C: Clock + ?Sized> Clock for &C {
    fn now(&self) -> SystemTime {
        (**self).now()
    }
}

/// The operating system's wall clock.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A manually driven clock: a cheap-to-clone handle whose clones all share one current time.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use upramp_telemetry::{Clock, SimulatedClock};
///
/// let clock = SimulatedClock::starting_at(UNIX_EPOCH + Duration::from_secs(1_000));
/// let seen_by_controller = clock.clone();
/// clock.advance(Duration::from_secs(60));
/// assert_eq!(seen_by_controller.now(), UNIX_EPOCH + Duration::from_secs(1_060));
/// ```
#[derive(Debug, Clone)]
pub struct SimulatedClock {
    current: Arc<Mutex<SystemTime>>,
}

impl SimulatedClock {
    /// A clock that reads `start` until it is advanced or set.
    pub fn starting_at(start: SystemTime) -> Self {
        Self {
            current: Arc::new(Mutex::new(start)),
        }
    }

    /// Moves the shared time forward by `by` and returns the new time.
    ///
    /// A step that would leave `SystemTime`'s range (hundreds of billions of years away) leaves the
    /// clock where it is rather than panicking.
    pub fn advance(&self, by: Duration) -> SystemTime {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(next) = current.checked_add(by) {
            *current = next;
        }
        *current
    }

    /// Sets the shared time to `to`; going backwards is allowed (it models a clock step).
    pub fn set(&self, to: SystemTime) {
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = to;
    }
}

impl Default for SimulatedClock {
    /// A simulated clock starting at the Unix epoch.
    fn default() -> Self {
        Self::starting_at(SystemTime::UNIX_EPOCH)
    }
}

impl Clock for SimulatedClock {
    fn now(&self) -> SystemTime {
        *self.current.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn clones_share_time_and_set_can_go_backwards() {
        let clock = SimulatedClock::starting_at(UNIX_EPOCH + Duration::from_secs(10));
        let other = clock.clone();
        assert_eq!(
            clock.advance(Duration::from_secs(5)),
            UNIX_EPOCH + Duration::from_secs(15)
        );
        assert_eq!(other.now(), UNIX_EPOCH + Duration::from_secs(15));
        other.set(UNIX_EPOCH);
        assert_eq!(clock.now(), UNIX_EPOCH);
        let shared: Arc<dyn Clock> = Arc::new(clock);
        assert_eq!(shared.now(), UNIX_EPOCH);
    }

    #[test]
    fn advance_out_of_range_keeps_the_time() {
        let clock = SimulatedClock::default();
        let before = clock.now();
        assert_eq!(clock.advance(Duration::MAX), before);
    }
}
