//! `upramp serve` timeouts that really fire: the flag's `timeout_secs` per attempt, the gateway's
//! `--upload-timeout` per request (slot waits included) against a provider that accepts and never
//! answers, and `--body-timeout` against a client that stops sending its body. Bounds are loose
//! (seconds of margin): they tell "cut at the configured time" from "cut by some 30 s default".

#![allow(clippy::unwrap_used)]

mod serve_support;

use std::time::{Duration, Instant};

use serve_support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use upramp_harness::Flavor;

/// Slack on top of a configured limit for process scheduling on a loaded two-core machine.
const MARGIN: Duration = Duration::from_secs(3);

/// A flags file: async for everyone, no fallback, no retries, `timeout_secs` as given.
fn flags_file(dir: &std::path::Path, timeout_secs: u64, rollout: u32) -> String {
    let file = dir.join("flags.toml");
    std::fs::write(
        &file,
        format!("[async_upload]\nenabled = true\nrollout = {rollout}\nfallback = false\nmax_retries = 0\ntimeout_secs = {timeout_secs}\n"),
    )
    .unwrap();
    file.display().to_string()
}

fn without_flag_env(options: Options) -> Options {
    options
        .without_env("ASYNC_UPLOAD_ENABLED")
        .without_env("ASYNC_UPLOAD_ROLLOUT")
        .without_env("ASYNC_UPLOAD_FALLBACK")
        .without_env("ASYNC_UPLOAD_MAX_RETRIES")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_flags_timeout_secs_cuts_an_attempt_below_the_30s_default() {
    // The stand-in stops reading after the first chunk (a 1 KiB body is all of it) and never
    // answers; its list still works, so the attempt's fate is checked and known.
    let stand_in = stand_in(Flavor::Kimi, "stall:1").await;
    let dir = tempfile::tempdir().unwrap();
    let flags = flags_file(dir.path(), 2, 100);
    let gateway = without_flag_env(Options::new(&stand_in, Flavor::Kimi))
        .arg("--flags-file")
        .arg(flags)
        .start();
    let started = Instant::now();
    let response = upload(&gateway, form("a.txt", "file-extract", vec![b'a'; 1024])).await;
    let elapsed = started.elapsed();
    let (status, headers, body) = parts(response).await;
    assert_error(status, &body, 504);
    assert_eq!(body["error"]["code"], "timeout", "{body}");
    assert!(
        elapsed < Duration::from_secs(2) + MARGIN,
        "answered after {elapsed:?}, not near the flag's 2 s"
    );
    // The list showed the file was not stored: the outcome is known.
    assert!(headers.get("x-upramp-outcome").is_none(), "{headers:?}");
    assert!(
        gateway.spool_files().is_empty(),
        "{:?}",
        gateway.spool_files()
    );
    assert!(stand_in.stored_files().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_never_answers_gets_504_outcome_unknown_within_the_upload_timeout() {
    let stalled = StalledProvider::start().await;
    let dir = tempfile::tempdir().unwrap();
    let flags = flags_file(dir.path(), 2, 100);
    let gateway = without_flag_env(Options::at(&stalled.base_url(), Flavor::Kimi))
        .arg("--flags-file")
        .arg(flags)
        .arg("--upload-timeout")
        .arg("4s")
        .start();
    let started = Instant::now();
    let response = upload(&gateway, form("b.txt", "file-extract", vec![b'b'; 1024])).await;
    let elapsed = started.elapsed();
    let (status, headers, body) = parts(response).await;
    assert_error(status, &body, 504);
    // The whole body left and nothing answered, and the list lookup that would tell stalls too.
    assert_eq!(body["error"]["code"], "outcome_unknown", "{body}");
    assert_eq!(headers["x-upramp-outcome"], "unknown", "{headers:?}");
    assert!(
        elapsed >= Duration::from_secs(2) && elapsed < Duration::from_secs(4) + MARGIN,
        "answered after {elapsed:?}, not near the 4 s upload timeout"
    );
    assert!(
        stalled
            .connections
            .load(std::sync::atomic::Ordering::SeqCst)
            >= 1
    );
    assert!(
        gateway.spool_files().is_empty(),
        "{:?}",
        gateway.spool_files()
    );
    assert!(
        !gateway.stderr().contains(PROVIDER_KEY),
        "the key leaked into the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upload_timeout_counts_the_wait_for_a_sync_slot() {
    // One sync slot; the first upload's blocking thread keeps it for its own 10 s attempt after the
    // request deadline cut the request, so the second waits for the slot: the gateway must still
    // answer it within the upload timeout.
    let stalled = StalledProvider::start().await;
    let dir = tempfile::tempdir().unwrap();
    let flags = flags_file(dir.path(), 10, 0);
    let gateway = without_flag_env(Options::at(&stalled.base_url(), Flavor::Kimi))
        .arg("--flags-file")
        .arg(flags)
        .arg("--upload-timeout")
        .arg("2s")
        .arg("--sync-concurrency")
        .arg("1")
        .start();
    let started = Instant::now();
    let first = upload(&gateway, form("c1.txt", "file-extract", vec![b'c'; 1024]));
    let second = async {
        // Let the first take the slot.
        tokio::time::sleep(Duration::from_millis(200)).await;
        upload(&gateway, form("c2.txt", "file-extract", vec![b'd'; 1024])).await
    };
    let (first, second) = tokio::join!(first, second);
    let elapsed = started.elapsed();
    for response in [first, second] {
        let (status, headers, body) = parts(response).await;
        assert_error(status, &body, 504);
        assert_eq!(headers["x-upramp-outcome"], "unknown", "{headers:?}");
    }
    assert!(
        elapsed < Duration::from_secs(2) + MARGIN,
        "both answered after {elapsed:?}, not near the 2 s upload timeout"
    );
    assert!(
        gateway.spool_files().is_empty(),
        "{:?}",
        gateway.spool_files()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_sending_its_body_gets_408_and_nothing_is_sent_on() {
    let stand_in = stand_in(Flavor::Kimi, "none").await;
    let gateway = Options::new(&stand_in, Flavor::Kimi)
        .arg("--body-timeout")
        .arg("1s")
        .start();
    let addr = host(&gateway.url).to_owned();
    let preamble = file_preamble("bz", "file-extract", "slow.bin");
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    stream
        .write_all(
            multipart_head(&addr, "bz", Some(preamble.len() as u64 + 1024 * 1024)).as_bytes(),
        )
        .await
        .unwrap();
    stream.write_all(preamble.as_bytes()).await.unwrap();
    stream.write_all(&vec![9u8; 256 * 1024]).await.unwrap();
    gateway.wait_metric("upramp_gateway_spool_bytes", 1.0).await;
    // Now stop sending, connection open.
    let started = Instant::now();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut answer)).await;
    let elapsed = started.elapsed();
    assert!(read.is_ok(), "no answer within {PATIENCE:?}");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_error(408, &json, 408);
    assert_eq!(json["error"]["code"], "body_timeout", "{json}");
    assert!(
        elapsed < Duration::from_secs(1) + MARGIN,
        "answered after {elapsed:?}, not near the 1 s body timeout"
    );
    assert!(
        gateway.spool_files().is_empty(),
        "{:?}",
        gateway.spool_files()
    );
    assert_eq!(
        gateway.metric("upramp_gateway_spool_bytes").await,
        Some(0.0)
    );
    assert_eq!(stand_in.stats().requests, 0, "nothing reached the provider");
}
