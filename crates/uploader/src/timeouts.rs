//! The three timeouts of an upload attempt.

use std::time::Duration;

/// Timeouts of one upload attempt.
///
/// - `connect`: how long until the transport starts pulling the request body (the connection is up
///   and the headers are written). Measured by the uploader from its own body stream, so it holds
///   for any transport.
/// - `stall`: the longest time with no progress: no body chunk pulled while sending, and no
///   response within `stall` of the last byte once the body is sent.
/// - the total: `total_floor + size / min_throughput` (see [`Timeouts::total_for`]), so a 100 MB
///   file gets more time than a 1 KB one, but a connection that trickles forever is still cut.
///
/// The flag's `timeout` (`ASYNC_UPLOAD_TIMEOUT_SECS`) raises the floor when it is longer than
/// `total_floor`: operators can loosen the limit live without a deploy, never below what the code
/// considers the minimum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Time allowed until the body starts flowing.
    pub connect: Duration,
    /// Longest time without progress.
    pub stall: Duration,
    /// The total timeout of an empty body.
    pub total_floor: Duration,
    /// Bytes per second the total timeout allows for; `0` means the total is the floor alone.
    pub min_throughput: u64,
}

impl Default for Timeouts {
    /// 10 s connect, 30 s stall, a 30 s floor plus 1 MiB/s: a 100 MB file gets about two minutes.
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(10),
            stall: Duration::from_secs(30),
            total_floor: Duration::from_secs(30),
            min_throughput: 1024 * 1024,
        }
    }
}

impl Timeouts {
    /// The total timeout of one attempt sending `size` bytes:
    /// `max(total_floor, flag_floor) + size / min_throughput`, saturating instead of overflowing.
    pub fn total_for(&self, size: u64, flag_floor: Duration) -> Duration {
        let floor = self.total_floor.max(flag_floor);
        if self.min_throughput == 0 {
            return floor;
        }
        // Millisecond resolution avoids float rounding and still overflows only past ~584 million
        // years.
        let transfer_ms = u128::from(size) * 1_000 / u128::from(self.min_throughput);
        let transfer = Duration::from_millis(u64::try_from(transfer_ms).unwrap_or(u64::MAX));
        floor.saturating_add(transfer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn total_grows_with_size_above_the_floor() {
        let t = Timeouts {
            min_throughput: 1_000_000,
            total_floor: Duration::from_secs(5),
            ..Timeouts::default()
        };
        assert_eq!(t.total_for(0, Duration::ZERO), Duration::from_secs(5));
        assert_eq!(
            t.total_for(100_000_000, Duration::ZERO),
            Duration::from_secs(105)
        );
        assert_eq!(
            t.total_for(1_500, Duration::ZERO),
            Duration::from_millis(5_001)
        );
    }

    #[test]
    fn flag_raises_the_floor_but_never_lowers_it() {
        let t = Timeouts {
            total_floor: Duration::from_secs(5),
            min_throughput: 0,
            ..Timeouts::default()
        };
        assert_eq!(
            t.total_for(10, Duration::from_secs(60)),
            Duration::from_secs(60)
        );
        assert_eq!(
            t.total_for(10, Duration::from_secs(1)),
            Duration::from_secs(5)
        );
    }

    proptest! {
        #[test]
        fn total_is_monotonic_in_size(a in any::<u64>(), b in any::<u64>(), tput in 0u64..u64::MAX) {
            let t = Timeouts { min_throughput: tput, ..Timeouts::default() };
            let (small, large) = if a <= b { (a, b) } else { (b, a) };
            prop_assert!(t.total_for(small, Duration::ZERO) <= t.total_for(large, Duration::ZERO));
            prop_assert!(t.total_for(small, Duration::ZERO) >= t.total_floor);
        }
    }
}
