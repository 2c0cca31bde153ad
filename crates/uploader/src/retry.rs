//! The retry policy shared by both upload paths: full-jitter exponential backoff with a cap, and a
//! server's `Retry-After` honoured up to a cap of our own.

use std::time::Duration;

use rand::Rng;

/// How long to wait between attempts. The number of retries is not here: it comes from the flag
/// (`ASYNC_UPLOAD_MAX_RETRIES`), so operators can change it while the service runs.
///
/// Without a `Retry-After`, the wait before retry `n` (0-based) is uniform in
/// `[0, min(cap, base * 2^n)]` ("full jitter": clients that failed together do not retry together).
/// With one, the wait is the server's value capped at `retry_after_cap`, so a hostile or confused
/// server cannot park a request for an hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The first backoff ceiling; it doubles with each retry.
    pub base: Duration,
    /// The largest backoff ceiling.
    pub cap: Duration,
    /// The longest `Retry-After` honoured as given; longer values are cut to this.
    pub retry_after_cap: Duration,
}

impl Default for RetryPolicy {
    /// 200 ms base, 10 s cap, `Retry-After` capped at 30 s: the providers suggest 1 s, 2 s, 4 s
    /// backoffs, and full jitter over a doubling ceiling averages half of it.
    fn default() -> Self {
        Self {
            base: Duration::from_millis(200),
            cap: Duration::from_secs(10),
            retry_after_cap: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The backoff ceiling before retry `retry` (0-based): `min(cap, base * 2^retry)`, without
    /// overflow for any `retry`.
    pub fn ceiling(&self, retry: u32) -> Duration {
        // 2^31 times any base already exceeds every sensible cap; clamping the shift keeps the
        // multiplication finite.
        let factor = 1u32 << retry.min(31);
        self.base
            .checked_mul(factor)
            .map_or(self.cap, |grown| grown.min(self.cap))
    }

    /// The wait before retry `retry` (0-based), drawing jitter from `rng`. A server-given
    /// `retry_after` replaces the jittered backoff, capped at [`RetryPolicy::retry_after_cap`].
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>, rng: &mut impl Rng) -> Duration {
        if let Some(server_wait) = retry_after {
            return server_wait.min(self.retry_after_cap);
        }
        let ceiling = self.ceiling(retry);
        let ceiling_nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        if ceiling_nanos == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(rng.gen_range(0..=ceiling_nanos))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;

    fn policy(base_ms: u64, cap_ms: u64, ra_cap_ms: u64) -> RetryPolicy {
        RetryPolicy {
            base: Duration::from_millis(base_ms),
            cap: Duration::from_millis(cap_ms),
            retry_after_cap: Duration::from_millis(ra_cap_ms),
        }
    }

    #[test]
    fn ceiling_doubles_then_caps() {
        let p = policy(100, 1_000, 5_000);
        let ceilings: Vec<u128> = (0..6).map(|n| p.ceiling(n).as_millis()).collect();
        assert_eq!(ceilings, vec![100, 200, 400, 800, 1_000, 1_000]);
        assert_eq!(p.ceiling(u32::MAX), Duration::from_millis(1_000));
    }

    #[test]
    fn retry_after_is_honoured_up_to_its_cap() {
        let p = policy(100, 1_000, 5_000);
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let short = Some(Duration::from_secs(2));
        assert_eq!(p.delay(0, short, &mut rng), Duration::from_secs(2));
        let long = Some(Duration::from_secs(3_600));
        assert_eq!(p.delay(3, long, &mut rng), Duration::from_secs(5));
    }

    #[test]
    fn same_seed_gives_same_delays() {
        let p = RetryPolicy::default();
        let draw = |seed| {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            (0..5)
                .map(|n| p.delay(n, None, &mut rng))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(42), draw(42));
        assert_ne!(draw(42), draw(43));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn jittered_delay_stays_within_its_ceiling(
            base_ms in 0u64..5_000,
            cap_ms in 0u64..60_000,
            retry in 0u32..80,
            seed in any::<u64>(),
        ) {
            let p = policy(base_ms, cap_ms, 30_000);
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let delay = p.delay(retry, None, &mut rng);
            prop_assert!(delay <= p.ceiling(retry));
            prop_assert!(delay <= p.cap);
        }

        #[test]
        fn server_wait_never_exceeds_its_cap(server_ms in any::<u32>(), cap_ms in 0u64..120_000) {
            let p = policy(100, 1_000, cap_ms);
            let mut rng = rand::rngs::StdRng::seed_from_u64(0);
            let delay = p.delay(0, Some(Duration::from_millis(u64::from(server_ms))), &mut rng);
            prop_assert!(delay <= Duration::from_millis(cap_ms));
            prop_assert!(delay <= Duration::from_millis(u64::from(server_ms)));
        }
    }
}
