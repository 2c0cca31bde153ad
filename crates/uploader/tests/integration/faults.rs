//! Each fault kind of the stand-in: retried, fallen back or reported as the contract says, and
//! never a duplicate stored file.

use futures::StreamExt;
use upramp_harness::Flavor;
use upramp_providers::ErrorKind;
use upramp_telemetry::{EventKind, Outcome, UploadPath};
use upramp_uploader::{Receipt, Route, UploadError, UploadRequest};

use crate::common::{flag, rig, small_files, Rig};

/// Upload `count` small files on the async path (rollout 100%) under `faults`.
async fn run_async(
    flavor: Flavor,
    faults: &str,
    count: usize,
    max_retries: u32,
    fallback: bool,
) -> (Rig, Vec<Result<Receipt, UploadError>>) {
    let dir = tempfile::tempdir().unwrap();
    let files = small_files(dir.path(), count, 2_000);
    let rig = rig(flavor, faults, flag(100, max_retries, fallback), |b| {
        b.concurrency(4)
    })
    .await;
    let requests = files
        .iter()
        .enumerate()
        .map(|(i, p)| UploadRequest::new(p, "file-extract").routing_key(format!("k{i}")))
        .collect();
    let mut results: Vec<(usize, Result<Receipt, UploadError>)> =
        rig.uploader.upload_many(requests).collect().await;
    results.sort_by_key(|(i, _)| *i);
    // Keep the directory alive until the checks that re-read the files are done.
    let results = results.into_iter().map(|(_, r)| r).collect();
    std::mem::forget(dir);
    (rig, results)
}

fn receipts(results: &[Result<Receipt, UploadError>]) -> Vec<&Receipt> {
    results.iter().filter_map(|r| r.as_ref().ok()).collect()
}

/// Transient server errors on half the attempts: retries carry every request through on the
/// async path, some after more than one attempt. (20 retries make a request that fails every
/// attempt a one-in-two-million event, so the seeded-but-order-dependent draws cannot flake.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_server_errors_and_rate_limits_are_retried() {
    for faults in ["500:0.5", "502:0.5", "503:0.5", "429:0.5", "429-date:0.5"] {
        let (rig, results) = run_async(Flavor::Kimi, faults, 12, 20, false).await;
        let receipts = receipts(&results);
        assert_eq!(
            receipts.len(),
            12,
            "{faults}: {:?}",
            results
                .iter()
                .filter_map(|r| r.as_ref().err())
                .collect::<Vec<_>>()
        );
        assert!(receipts
            .iter()
            .all(|r| r.path == UploadPath::Async && r.fallback_reason.is_none()));
        let attempts: u32 = receipts.iter().map(|r| r.attempts).sum();
        assert!(attempts > 12, "{faults}: no request needed a retry");
        assert_eq!(
            rig.events(EventKind::Attempt).len() as u32,
            attempts,
            "{faults}"
        );
        rig.assert_exactly_stored(&receipts);
        assert_eq!(rig.in_flight(), 0);
    }
}

/// The async path is broken for good (every async request fails with a retryable error): each
/// request spends its retries, falls back once through the sync path and succeeds there, and the
/// events say so: the async leg's Request event carries the reason, the fallback leg has its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_async_path_falls_back_to_sync() {
    for (faults, reason) in [
        ("500:1@async", Outcome::ServerError),
        ("502:1@async", Outcome::ServerError),
        ("503:1@async", Outcome::ServerError),
        ("429:1@async", Outcome::RateLimited),
        ("reset:1@async", Outcome::TransportError),
    ] {
        let (rig, results) = run_async(Flavor::Glm, faults, 3, 2, true).await;
        let receipts = receipts(&results);
        assert_eq!(receipts.len(), 3, "{faults}");
        for receipt in &receipts {
            assert_eq!(receipt.path, UploadPath::SyncFallback, "{faults}");
            assert_eq!(receipt.fallback_reason, Some(reason), "{faults}");
            assert_eq!(
                receipt.attempts, 4,
                "{faults}: 3 async attempts and 1 fallback"
            );
        }
        rig.assert_exactly_stored(&receipts);
        let requests = rig.events(EventKind::Request);
        let async_legs: Vec<_> = requests
            .iter()
            .filter(|e| e.path == UploadPath::Async)
            .collect();
        let fallback_legs: Vec<_> = requests
            .iter()
            .filter(|e| e.path == UploadPath::SyncFallback)
            .collect();
        assert_eq!(async_legs.len(), 3);
        assert!(async_legs
            .iter()
            .all(|e| e.outcome == reason && e.fallback_reason == Some(reason)));
        assert_eq!(fallback_legs.len(), 3);
        assert!(fallback_legs
            .iter()
            .all(|e| e.outcome == Outcome::Success && e.fallback_reason.is_none()));
        assert_eq!(rig.in_flight(), 0);
    }
}

/// Client errors return at once: no retry, no fallback (the sync path would fail the same way).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_errors_fail_at_once_without_fallback() {
    for (faults, kind) in [
        ("401:1", ErrorKind::Authentication),
        ("quota:1", ErrorKind::QuotaExhausted),
    ] {
        let (rig, results) = run_async(Flavor::Kimi, faults, 2, 3, true).await;
        for result in &results {
            let err = result.as_ref().unwrap_err();
            assert_eq!(err.attempts(), 1, "{faults}: {err}");
            assert_eq!(err.path_taken(), Some(UploadPath::Async));
            match err {
                UploadError::Provider {
                    source,
                    fallback_reason,
                    ..
                } => {
                    assert_eq!(source.kind, kind, "{faults}");
                    assert_eq!(*fallback_reason, None);
                }
                other => panic!("{faults}: unexpected {other}"),
            }
            let line = err.to_string();
            assert!(
                line.contains("small-0000") && !line.contains('\n'),
                "{line}"
            );
            assert!(!line.contains(rig.stand_in.api_key()), "{line}");
        }
        assert!(rig.stand_in.stored_files().is_empty());
        assert!(rig
            .events(EventKind::Request)
            .iter()
            .all(|e| e.path == UploadPath::Async && e.fallback_reason.is_none()));
        assert_eq!(rig.in_flight(), 0);
    }
}

/// Without fallback, a path that stays broken ends in an error naming the last cause.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_exhausted_without_fallback_is_an_error() {
    let (rig, results) = run_async(Flavor::Kimi, "503:1", 1, 2, false).await;
    let err = results[0].as_ref().unwrap_err();
    assert_eq!(err.attempts(), 3);
    assert_eq!(err.outcome(), Outcome::ServerError);
    assert!(rig.stand_in.stored_files().is_empty());
}

/// Latency slows uploads but breaks nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_and_jitter_only_slow_things_down() {
    let (rig, results) = run_async(Flavor::Glm, "latency:50ms,jitter:20ms", 8, 0, false).await;
    let receipts = receipts(&results);
    assert_eq!(receipts.len(), 8);
    assert!(receipts
        .iter()
        .all(|r| r.attempts == 1 && r.path == UploadPath::Async));
    rig.assert_exactly_stored(&receipts);
}

/// A server that stops reading: the stall timeout cuts the attempt; the retry meets the same
/// stall; the request falls back and succeeds once, with nothing stored by the stalled attempts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_async_upload_times_out_and_falls_back() {
    let (rig, results) = run_async(Flavor::Kimi, "stall:1@async", 2, 1, true).await;
    let receipts = receipts(&results);
    assert_eq!(receipts.len(), 2);
    for receipt in &receipts {
        assert_eq!(receipt.path, UploadPath::SyncFallback);
        assert_eq!(receipt.fallback_reason, Some(Outcome::Timeout));
        assert_eq!(receipt.attempts, 3);
    }
    rig.assert_exactly_stored(&receipts);
    assert_eq!(rig.in_flight(), 0);
}

/// The stand-in stores the file and hangs up without answering (or answers with broken JSON):
/// the uploader finds the file in the provider's list and adopts it instead of sending it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_upload_is_adopted_not_duplicated() {
    for (faults, forced) in [
        ("drop:1", Route::Async),
        ("drop:1", Route::Sync),
        ("malformed:1", Route::Async),
        ("malformed:1", Route::Sync),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let files = small_files(dir.path(), 3, 3_000);
        let rig = rig(Flavor::Kimi, faults, flag(0, 3, true), |b| b).await;
        let mut all = Vec::new();
        for path in &files {
            let receipt = rig
                .uploader
                .upload_on(UploadRequest::new(path, "file-extract"), forced)
                .await
                .unwrap_or_else(|err| panic!("{faults} {forced:?}: {err}"));
            assert!(receipt.adopted, "{faults} {forced:?}");
            assert_eq!(
                receipt.attempts, 1,
                "{faults} {forced:?}: adopted after the first attempt"
            );
            assert_eq!(receipt.fallback_reason, None);
            all.push(receipt);
        }
        rig.assert_exactly_stored(&all.iter().collect::<Vec<_>>());
        assert_eq!(rig.in_flight(), 0);
    }
}

/// Mixed drops and resets among successes, many requests at once on both paths: every request
/// ends with exactly one stored file, or with a clear error and nothing stored. (A request can
/// meet a reset on all of its attempts; which one does depends on arrival order, so the test
/// accepts such errors instead of pinning them.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drops_among_concurrent_uploads_never_duplicate() {
    let (rig, results) = run_async(Flavor::Glm, "drop:0.3,reset:0.1", 30, 5, true).await;
    let receipts = receipts(&results);
    for err in results.iter().filter_map(|r| r.as_ref().err()) {
        assert!(err.path_taken().is_some() && err.attempts() > 0, "{err}");
        assert!(err.to_string().contains("small-000"), "{err}");
    }
    assert!(
        receipts.len() >= 25,
        "too many failures: {}",
        30 - receipts.len()
    );
    assert!(receipts.iter().any(|r| r.adopted));
    rig.assert_exactly_stored(&receipts);
    assert_eq!(rig.stand_in.stats().uploads_accepted, receipts.len() as u64);
}
