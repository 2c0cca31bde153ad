//! Statistical and algebraic properties of bucketing and evaluation.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use upramp_flags::{
    bucket, evaluate, FlagConfig, FlagStore, Percent, PreparedFlag, Reason, Route, Strategy,
    BUCKETS,
};

fn flag(salt: &str, thousandths: u32, strategy: Strategy) -> FlagConfig {
    let mut flag = FlagConfig::new("async_upload");
    flag.enabled = true;
    flag.salt = salt.to_owned();
    flag.rollout = Percent::from_thousandths(thousandths).unwrap();
    flag.strategy = strategy;
    flag
}

fn is_async(flag: &FlagConfig, key: &str) -> bool {
    evaluate(flag, key).route == Route::Async
}

/// 100,000 distinct keys of 16 to 36 random alphanumeric bytes from a fixed seed.
fn random_keys(seed: u64, count: usize) -> Vec<String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut keys = std::collections::HashSet::with_capacity(count);
    while keys.len() < count {
        let len = rng.gen_range(16..=36);
        let key: String = (0..len)
            .map(|_| char::from(rng.sample(rand::distributions::Alphanumeric)))
            .collect();
        keys.insert(key);
    }
    let mut keys: Vec<String> = keys.into_iter().collect();
    keys.sort();
    keys
}

fn strategies() -> impl proptest::strategy::Strategy<Value = Strategy> {
    prop_oneof![Just(Strategy::SipHash), Just(Strategy::Unleash)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn buckets_are_deterministic_and_in_range(salt in "\\PC{0,24}", key in "\\PC{0,48}") {
        let b = bucket(&salt, &key);
        prop_assert!(b < BUCKETS);
        prop_assert_eq!(b, bucket(&salt, &key));
        let f = flag(&salt, 37_000, Strategy::SipHash);
        prop_assert_eq!(evaluate(&f, &key), evaluate(&f, &key));
    }

    #[test]
    fn a_prepared_flag_decides_exactly_as_evaluate(
        salt in "\\PC{0,24}",
        key in "\\PC{0,48}",
        p in 0u32..=100_000,
        enabled in any::<bool>(),
        strategy in strategies(),
    ) {
        let mut f = flag(&salt, p, strategy);
        f.enabled = enabled;
        let expected = evaluate(&f, &key);
        prop_assert_eq!(PreparedFlag::new(f.clone()).evaluate(&key), expected);
        let store = FlagStore::new(f);
        prop_assert_eq!(store.evaluate(&key), expected);
        prop_assert_eq!(store.reader().evaluate(&key), expected);
    }

    #[test]
    fn raising_the_percentage_only_adds_keys(
        salt in "[a-z_]{1,16}",
        key in "\\PC{0,48}",
        p in 0u32..=100_000,
        q in 0u32..=100_000,
        strategy in strategies(),
    ) {
        let (low, high) = (p.min(q), p.max(q));
        if is_async(&flag(&salt, low, strategy), &key) {
            prop_assert!(is_async(&flag(&salt, high, strategy), &key));
        }
    }

    #[test]
    fn zero_lets_nobody_in_and_hundred_everybody(key in "\\PC{0,48}", salt in "[a-z_]{1,16}", strategy in strategies()) {
        let none = evaluate(&flag(&salt, 0, strategy), &key);
        prop_assert_eq!((none.route, none.reason), (Route::Sync, Reason::OutOfRollout));
        let all = evaluate(&flag(&salt, 100_000, strategy), &key);
        prop_assert_eq!((all.route, all.reason), (Route::Async, Reason::InRollout));
    }

    #[test]
    fn a_disabled_flag_sends_everybody_to_sync(key in "\\PC{0,48}", p in 0u32..=100_000) {
        let mut f = flag("async_upload", p, Strategy::SipHash);
        f.enabled = false;
        let decision = evaluate(&f, &key);
        prop_assert_eq!((decision.route, decision.reason), (Route::Sync, Reason::Disabled));
        prop_assert_eq!(decision.bucket, bucket("async_upload", &key));
    }
}

/// Fraction in, and its binomial standard error, for `keys` at `thousandths`.
fn share_in(salt: &str, keys: &[String], thousandths: u32) -> (f64, f64) {
    let f = flag(salt, thousandths, Strategy::SipHash);
    let inside = keys.iter().filter(|k| is_async(&f, k)).count();
    let p = f64::from(thousandths) / 100_000.0;
    let se = (p * (1.0 - p) / keys.len() as f64).sqrt();
    (inside as f64 / keys.len() as f64, se)
}

#[test]
fn share_is_within_three_standard_errors_at_each_stage() {
    let keys = random_keys(7, 100_000);
    for thousandths in [1_000, 10_000, 50_000] {
        let (share, se) = share_in("async_upload", &keys, thousandths);
        let target = f64::from(thousandths) / 100_000.0;
        assert!(
            (share - target).abs() <= 3.0 * se,
            "share {share} at {target} (se {se})"
        );
    }
}

#[test]
fn buckets_are_uniform_by_chi_square() {
    let keys = random_keys(11, 100_000);
    let mut bins = [0u64; 100];
    for key in &keys {
        bins[(bucket("async_upload", key) / 1000) as usize] += 1;
    }
    let expected = keys.len() as f64 / 100.0;
    let chi_square: f64 = bins
        .iter()
        .map(|&o| (o as f64 - expected).powi(2) / expected)
        .sum();
    // 99 degrees of freedom: the 0.999 quantile is 148.23.
    assert!(
        chi_square < 148.23,
        "chi-square {chi_square} over bins {bins:?}"
    );
}

#[test]
fn different_salts_give_independent_cohorts() {
    let keys = random_keys(13, 100_000);
    for (p, q) in [(10_000u32, 50_000u32), (50_000, 50_000), (1_000, 10_000)] {
        let a = flag("async_upload", p, Strategy::SipHash);
        let b = flag("other_flag", q, Strategy::SipHash);
        let both = keys
            .iter()
            .filter(|k| is_async(&a, k) && is_async(&b, k))
            .count() as f64;
        let pq = f64::from(p) / 100_000.0 * f64::from(q) / 100_000.0;
        let n = keys.len() as f64;
        let se = (n * pq * (1.0 - pq)).sqrt();
        assert!(
            (both - n * pq).abs() <= 4.0 * se,
            "overlap {both}, expected {} (se {se})",
            n * pq
        );
    }
}

#[test]
fn unleash_strategy_is_roughly_uniform_too() {
    let keys = random_keys(17, 20_000);
    let f = flag("async_upload", 30_000, Strategy::Unleash);
    let share = keys.iter().filter(|k| is_async(&f, k)).count() as f64 / keys.len() as f64;
    let se = (0.3f64 * 0.7 / keys.len() as f64).sqrt();
    assert!((share - 0.3).abs() <= 4.0 * se, "share {share}");
}
