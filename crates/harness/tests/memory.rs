//! A 100 MB upload streams through a stand-in in bounded memory.
//!
//! This is the only test in its binary, so the process's peak resident size (`VmHWM`) reflects this
//! upload alone.

#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use futures::StreamExt;
use reqwest::multipart::{Form, Part};
use sha2::{Digest, Sha256};
use upramp_harness::{Flavor, StandIn, StandInConfig};

const FILE_BYTES: u64 = 100 * 1024 * 1024;
const CHUNK: usize = 64 * 1024;

fn peak_resident_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn chunk(index: u64) -> Bytes {
    // Each chunk differs, so a mix-up in order would change the digest.
    let mut bytes = vec![(index % 251) as u8; CHUNK];
    bytes[..8].copy_from_slice(&index.to_le_bytes());
    Bytes::from(bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mb_upload_leaves_memory_bounded() {
    let stand_in = StandIn::start(StandInConfig::new(Flavor::Glm))
        .await
        .unwrap();
    let chunks = FILE_BYTES / CHUNK as u64;
    let mut expected = Sha256::new();
    for index in 0..chunks {
        expected.update(chunk(index));
    }
    let expected = hex::encode(expected.finalize());

    let before = peak_resident_kib();
    let body = futures::stream::iter(0..chunks).map(|index| Ok::<_, std::io::Error>(chunk(index)));
    let part = Part::stream_with_length(reqwest::Body::wrap_stream(body), FILE_BYTES)
        .file_name("big.jsonl");
    let form = Form::new().text("purpose", "batch").part("file", part);
    let response = reqwest::Client::new()
        .post(format!("{}/files", stand_in.base_url()))
        .bearer_auth(stand_in.api_key())
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let after = peak_resident_kib();

    let stored = stand_in.stored_files();
    assert_eq!(stored[0].bytes, FILE_BYTES);
    assert_eq!(stored[0].sha256, expected);
    if let (Some(before), Some(after)) = (before, after) {
        let growth_mib = (after - before) / 1024;
        eprintln!("peak RSS before {before} KiB, after {after} KiB: grew {growth_mib} MiB for a 100 MiB upload");
        assert!(growth_mib < 32, "peak RSS grew {growth_mib} MiB");
    }
}
