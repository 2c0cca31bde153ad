//! The timeouts of an upload attempt, of the dedupe lookup, and the request's overall deadline.

use std::time::Duration;

use crate::retry::RetryPolicy;

/// Extra time the sync path's caller waits beyond the blocking client's own timeout before giving
/// up on the thread: the client is expected to time out first and report it itself.
pub(crate) const BLOCKING_GRACE: Duration = Duration::from_secs(5);

/// Timeouts of one upload attempt and of the dedupe lookup, and the overall deadline of a request.
///
/// - `connect`: how long until the transport starts pulling the request body (the connection is up
///   and the headers are written). Measured by the uploader from its own body stream, so it holds
///   for any transport.
/// - `stall`: the longest time with no progress: no body chunk pulled while sending, and no
///   response within `stall` of the last byte once the body is sent.
/// - the total: `total_floor + size / min_throughput` (see [`Timeouts::total_for`]), so a 100 MB
///   file gets more time than a 1 KB one, but a connection that trickles forever is still cut.
///
/// - `list`: how long one dedupe lookup (reading every page of the provider's file list after an
///   ambiguous failure) may take, so a provider that never answers `GET /files` cannot park a
///   request.
/// - `deadline`: the longest a request may work, from the moment its first leg holds its path's
///   concurrency slot to its end, retries, backoff, dedupe lookups and fallback included (time
///   spent waiting for a slot is not counted). `None` derives it from the size and the other
///   settings: see [`Timeouts::deadline_for`]. When it passes, the request ends at once with
///   [`UploadError::OutcomeUnknown`](crate::UploadError::OutcomeUnknown) if the file may be
///   stored, else with [`UploadError::Timeout`](crate::UploadError::Timeout) of kind
///   [`TimeoutKind::Deadline`](crate::TimeoutKind::Deadline).
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
    /// Time allowed for one dedupe lookup (every page of the provider's file list).
    pub list: Duration,
    /// The request's overall deadline; `None` derives it ([`Timeouts::deadline_for`]).
    pub deadline: Option<Duration>,
}

impl Default for Timeouts {
    /// 10 s connect, 30 s stall, a 30 s floor plus 1 MiB/s (a 100 MB file gets about two minutes
    /// per attempt), 15 s per dedupe lookup, and the derived deadline.
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(10),
            stall: Duration::from_secs(30),
            total_floor: Duration::from_secs(30),
            min_throughput: 1024 * 1024,
            list: Duration::from_secs(15),
            deadline: None,
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

    /// The overall deadline of a request sending `size` bytes: [`Timeouts::deadline`] when set,
    /// else the worst case of the retry structure, so it only cuts what no other timeout did:
    ///
    /// ```text
    /// deadline = (n + f) * (T + G + L) + (n - 1) * B
    ///   n = max_retries + 1                      attempts of the first leg
    ///   f = 1 if the flag allows fallback else 0 the fallback leg's single attempt
    ///   T = total_for(size, flag_floor)          one attempt (connect and stall cut earlier)
    ///   G = 5 s                                  grace for a sync attempt's blocking thread
    ///   L = list                                 one dedupe lookup (at most one per attempt)
    ///   B = max(retry.cap, retry.retry_after_cap) one backoff wait
    /// ```
    ///
    /// With the defaults (3 retries, fallback on, 30 s floor, 1 MiB/s, 15 s lookups, 10 s backoff
    /// cap, 30 s `Retry-After` cap) a 1 MiB file gets `5 * (31 + 5 + 15) + 3 * 30 = 345 s`. A
    /// request that stalls on every attempt ends far sooner: each attempt is cut after
    /// `connect` or `stall`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use upramp_uploader::{RetryPolicy, Timeouts};
    ///
    /// let t = Timeouts::default();
    /// let d = t.deadline_for(1024 * 1024, Duration::ZERO, 3, true, &RetryPolicy::default());
    /// assert_eq!(d, Duration::from_secs(345));
    /// let fixed = Timeouts { deadline: Some(Duration::from_secs(20)), ..t };
    /// assert_eq!(fixed.deadline_for(1, Duration::ZERO, 3, true, &RetryPolicy::default()), Duration::from_secs(20));
    /// ```
    pub fn deadline_for(
        &self,
        size: u64,
        flag_floor: Duration,
        max_retries: u32,
        fallback: bool,
        retry: &RetryPolicy,
    ) -> Duration {
        if let Some(fixed) = self.deadline {
            return fixed;
        }
        let attempts = max_retries.saturating_add(1);
        let legs_attempts = attempts.saturating_add(u32::from(fallback));
        let per_attempt = self
            .total_for(size, flag_floor)
            .saturating_add(BLOCKING_GRACE)
            .saturating_add(self.list);
        let backoff = retry.cap.max(retry.retry_after_cap);
        per_attempt
            .checked_mul(legs_attempts)
            .unwrap_or(Duration::MAX)
            .saturating_add(backoff.checked_mul(attempts - 1).unwrap_or(Duration::MAX))
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

    #[test]
    fn derived_deadline_covers_every_attempt_lookup_and_backoff() {
        let t = Timeouts {
            total_floor: Duration::from_secs(2),
            min_throughput: 0,
            list: Duration::from_secs(1),
            ..Timeouts::default()
        };
        let retry = RetryPolicy {
            base: Duration::from_millis(1),
            cap: Duration::from_secs(3),
            retry_after_cap: Duration::from_secs(1),
        };
        // (2 + 1 fallback) * (2 + 5 + 1) + 1 * 3
        assert_eq!(
            t.deadline_for(10, Duration::ZERO, 1, true, &retry),
            Duration::from_secs(27)
        );
        // 2 * (2 + 5 + 1) + 1 * 3
        assert_eq!(
            t.deadline_for(10, Duration::ZERO, 1, false, &retry),
            Duration::from_secs(19)
        );
        let endless = Timeouts {
            total_floor: Duration::MAX,
            ..t
        };
        assert_eq!(
            endless.deadline_for(10, Duration::ZERO, u32::MAX, true, &retry),
            Duration::MAX,
            "saturates instead of overflowing"
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
