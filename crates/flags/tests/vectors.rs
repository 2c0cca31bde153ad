//! Pinned bucketing vectors: any change to the algorithm (key, separator, hash, mapping) fails here.
#![allow(clippy::unwrap_used)]

use std::fmt::Write;

use upramp_flags::{bucket, unleash};

const VECTORS: [(&str, &str); 24] = [
    ("async_upload", ""),
    ("async_upload", "a"),
    ("async_upload", "tenant-1"),
    ("async_upload", "tenant-2"),
    ("async_upload", "tenant-42"),
    ("async_upload", "user:0001"),
    ("async_upload", "user:0002"),
    ("async_upload", "req-5f2b9c1e-8d3a-4b7e-9f10-2c4d6e8a0b1c"),
    ("async_upload", "0123456789abcdef"),
    ("async_upload", "0123456789abcdef0123456789abcdef0123"),
    ("async_upload", "ключ"),
    ("async_upload", "🔑 key with spaces"),
    ("", ""),
    ("", "tenant-1"),
    ("other_flag", "tenant-1"),
    ("other_flag", "tenant-42"),
    ("salt", "key"),
    ("sal", "tkey"),
    ("saltk", "ey"),
    ("async_upload_v2", "tenant-1"),
    ("ASYNC_UPLOAD", "tenant-1"),
    ("a", "b"),
    ("x", "y\u{0}z"),
    ("long salt with spaces and punctuation!?", "k"),
];

#[test]
fn siphash_bucket_vectors() {
    let mut table = String::from("salt\tkey\tbucket\n");
    for (salt, key) in VECTORS {
        writeln!(table, "{salt:?}\t{key:?}\t{}", bucket(salt, key)).unwrap();
    }
    insta::assert_snapshot!(table);
}

#[test]
fn unleash_normalized_vectors() {
    let mut table = String::from("group_id\tkey\tnormalized\n");
    for (salt, key) in VECTORS {
        writeln!(
            table,
            "{salt:?}\t{key:?}\t{}",
            unleash::normalized_value(salt, key)
        )
        .unwrap();
    }
    insta::assert_snapshot!(table);
}

#[test]
fn moving_bytes_between_salt_and_key_changes_the_bucket() {
    let splits = [
        ("salt", "key"),
        ("sal", "tkey"),
        ("saltk", "ey"),
        ("", "saltkey"),
        ("saltkey", ""),
    ];
    let buckets: std::collections::HashSet<u32> =
        splits.iter().map(|(s, k)| bucket(s, k)).collect();
    assert_eq!(buckets.len(), splits.len(), "{buckets:?}");
}
