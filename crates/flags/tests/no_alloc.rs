//! Evaluation must not touch the heap: counted with an instrumented global allocator.
#![allow(clippy::unwrap_used)]

use std::alloc::System;

use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use upramp_flags::{bucket, evaluate, FlagConfig, FlagStore, Percent, PreparedFlag, Strategy};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

#[test]
fn evaluation_does_not_allocate() {
    let keys: Vec<String> = (0..1000)
        .map(|i| format!("tenant-{i:08}-{}", "x".repeat(i % 20)))
        .collect();
    let mut siphash = FlagConfig::new("async_upload");
    siphash.enabled = true;
    siphash.rollout = Percent::from_thousandths(37_500).unwrap();
    let mut unleash = siphash.clone();
    unleash.strategy = Strategy::Unleash;
    let store = FlagStore::new(siphash.clone());
    let prepared = PreparedFlag::new(siphash.clone());
    let mut async_count = 0usize;

    // arc-swap registers each thread on its first load; that one-time allocation is not per evaluation.
    store.evaluate("warm-up");
    let mut reader = store.reader();
    reader.evaluate("warm-up");

    let region = Region::new(GLOBAL);
    for key in &keys {
        async_count += usize::from(evaluate(&siphash, key).bucket < 37_500);
        async_count += usize::from(evaluate(&unleash, key).bucket <= 37);
        async_count += usize::from(store.evaluate(key).bucket < 37_500);
        async_count += usize::from(prepared.evaluate(key).bucket < 37_500);
        async_count += usize::from(reader.evaluate(key).bucket < 37_500);
        async_count += bucket("salt", key) as usize % 2;
    }
    let stats = region.change();

    assert!(async_count > 0);
    assert_eq!(stats.allocations, 0, "{stats:?}");
    assert_eq!(stats.reallocations, 0, "{stats:?}");
}
