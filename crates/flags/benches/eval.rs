//! Evaluation cost with realistic 16-36 byte routing keys, for both strategies and through the store.
#![allow(missing_docs, clippy::unwrap_used)]

use criterion::measurement::WallTime;
use criterion::{black_box, criterion_group, criterion_main, BenchmarkGroup, Criterion};
use upramp_flags::{evaluate, FlagConfig, FlagStore, Percent, PreparedFlag, Strategy};

/// 256 keys of 16 to 36 bytes: tenant ids, user ids and request UUIDs.
fn keys() -> Vec<String> {
    (0..256u32)
        .map(|i| match i % 3 {
            0 => format!("tenant-{i:09}"),
            1 => format!(
                "user:{:016x}",
                u64::from(i).wrapping_mul(0x9e37_79b9_7f4a_7c15)
            ),
            _ => format!("{:08x}-1e2d-4c3b-8a9f-{:012x}", i, u64::from(i) * 7919),
        })
        .collect()
}

fn flag(strategy: Strategy) -> FlagConfig {
    let mut flag = FlagConfig::new("async_upload");
    flag.enabled = true;
    flag.rollout = Percent::from_thousandths(50_000).unwrap();
    flag.strategy = strategy;
    flag
}

fn bench_eval(c: &mut Criterion) {
    let keys = keys();
    assert!(keys.iter().all(|k| (16..=36).contains(&k.len())));
    let siphash = flag(Strategy::SipHash);
    let unleash = flag(Strategy::Unleash);
    let prepared = PreparedFlag::new(siphash.clone());
    let store = FlagStore::new(siphash.clone());

    let mut group = c.benchmark_group("evaluate");
    measure(&mut group, "siphash_50pct", &keys, |k| {
        evaluate(&siphash, k).bucket
    });
    measure(&mut group, "prepared_siphash_50pct", &keys, |k| {
        prepared.evaluate(k).bucket
    });
    measure(&mut group, "store_siphash_50pct", &keys, |k| {
        store.evaluate(k).bucket
    });
    let mut reader = store.reader();
    measure(&mut group, "store_reader_siphash_50pct", &keys, |k| {
        reader.evaluate(k).bucket
    });
    measure(&mut group, "unleash_50pct", &keys, |k| {
        evaluate(&unleash, k).bucket
    });
    group.finish();
}

/// One evaluation per iteration, stepping through `keys`; generic so the harness adds no indirect call.
fn measure(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    keys: &[String],
    mut eval: impl FnMut(&str) -> u32,
) {
    // A power of two, so stepping through the keys costs a mask, not a division.
    assert!(keys.len().is_power_of_two());
    let mask = keys.len() - 1;
    let mut i = 0usize;
    group.bench_function(name, |b| {
        b.iter(|| {
            i = (i + 1) & mask;
            eval(black_box(keys[i].as_str()))
        });
    });
}

criterion_group!(benches, bench_eval);
criterion_main!(benches);
