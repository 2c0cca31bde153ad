//! Both paths against both stand-ins: file kinds and sizes, routing, concurrency.

use std::collections::HashSet;

use futures::StreamExt;
use upramp_harness::corpus::{self, FileKind};
use upramp_harness::Flavor;
use upramp_telemetry::{EventKind, Outcome, UploadPath};
use upramp_uploader::{Receipt, Route, UploadRequest};

use crate::common::{flag, rig};

const MB: u64 = 1024 * 1024;

fn upload_path(forced: Route) -> UploadPath {
    match forced {
        Route::Async => UploadPath::Async,
        Route::Sync => UploadPath::Sync,
    }
}

/// The file matrix, trimmed to stay within a test budget on 2 cores: every kind at 1 MB on both
/// providers and both paths; every kind at 10 MB once, alternating provider and path; 50 MB on
/// each provider (one per path); 100 MB once (Kimi, async; the memory test sends 100 MB on both
/// paths in a child process). GLM caps `file-extract` at 50 MB, so its 100 MB case would use
/// `batch`. Each file is generated once and reused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_and_size_arrives_intact_on_both_paths_and_providers() {
    let dir = tempfile::tempdir().unwrap();
    let kimi = rig(Flavor::Kimi, "", flag(0, 0, false), |b| b).await;
    let glm = rig(Flavor::Glm, "", flag(0, 0, false), |b| b).await;

    let mut cases: Vec<(Flavor, Route, std::path::PathBuf)> = Vec::new();
    for (i, kind) in FileKind::ALL.into_iter().enumerate() {
        let one = corpus::generate(dir.path(), kind, MB, i as u64).unwrap();
        for flavor in [Flavor::Kimi, Flavor::Glm] {
            for forced in [Route::Async, Route::Sync] {
                cases.push((flavor, forced, one.clone()));
            }
        }
        let ten = corpus::generate(dir.path(), kind, 10 * MB, 100 + i as u64).unwrap();
        let flavor = if i % 2 == 0 {
            Flavor::Kimi
        } else {
            Flavor::Glm
        };
        let forced = if i % 3 == 0 {
            Route::Sync
        } else {
            Route::Async
        };
        cases.push((flavor, forced, ten));
    }
    let fifty = corpus::generate(dir.path(), FileKind::Csv, 50 * MB, 500).unwrap();
    cases.push((Flavor::Kimi, Route::Sync, fifty.clone()));
    cases.push((Flavor::Glm, Route::Async, fifty));
    let hundred = corpus::generate(dir.path(), FileKind::Binary, 100 * MB, 1000).unwrap();
    cases.push((Flavor::Kimi, Route::Async, hundred));

    let mut kimi_receipts = Vec::new();
    let mut glm_receipts = Vec::new();
    for (flavor, forced, path) in cases {
        let target = if flavor == Flavor::Kimi { &kimi } else { &glm };
        let receipt = target
            .uploader
            .upload_on(UploadRequest::new(&path, "file-extract"), forced)
            .await
            .unwrap_or_else(|err| panic!("{flavor:?} {forced:?}: {err}"));
        assert_eq!(receipt.path, upload_path(forced), "{}", path.display());
        assert_eq!(receipt.attempts, 1);
        assert_eq!(receipt.routing.reason, "forced");
        assert!(!receipt.adopted);
        if flavor == Flavor::Kimi {
            kimi_receipts.push(receipt);
        } else {
            glm_receipts.push(receipt);
        }
    }
    kimi.assert_exactly_stored(&kimi_receipts.iter().collect::<Vec<_>>());
    glm.assert_exactly_stored(&glm_receipts.iter().collect::<Vec<_>>());
    assert_eq!(kimi.in_flight() + glm.in_flight(), 0);
    for rig in [&kimi, &glm] {
        let requests = rig.events(EventKind::Request);
        assert!(requests
            .iter()
            .all(|e| e.outcome == Outcome::Success && e.fallback_reason.is_none()));
        assert_eq!(requests.len(), rig.events(EventKind::Attempt).len());
    }
}

async fn upload_batch(count: usize, rollout: u32) -> (Vec<Receipt>, crate::common::Rig) {
    let dir = tempfile::tempdir().unwrap();
    let files = crate::common::small_files(dir.path(), count, 4 * 1024);
    let rig = rig(Flavor::Kimi, "", flag(rollout, 0, true), |b| {
        b.concurrency(64).sync_concurrency(4)
    })
    .await;
    let requests = files
        .iter()
        .enumerate()
        .map(|(i, path)| {
            UploadRequest::new(path, "file-extract").routing_key(format!("tenant-{i}"))
        })
        .collect();
    let mut seen = HashSet::new();
    let mut receipts = Vec::new();
    let mut results = rig.uploader.upload_many(requests);
    while let Some((index, result)) = results.next().await {
        assert!(seen.insert(index), "index {index} yielded twice");
        let receipt = result.unwrap();
        assert_eq!(receipt.source, files[index]);
        receipts.push(receipt);
    }
    assert_eq!(seen.len(), count);
    rig.assert_exactly_stored(&receipts.iter().collect::<Vec<_>>());
    assert_eq!(rig.in_flight(), 0);
    (receipts, rig)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_concurrent_uploads_complete() {
    let (receipts, _rig) = upload_batch(10, 100).await;
    assert!(receipts.iter().all(|r| r.path == UploadPath::Async));
}

/// Half the keys are in the rollout: both paths run side by side, each request sticks to the path
/// its key's bucket chose.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_uploads_split_by_the_flag() {
    let (receipts, rig) = upload_batch(100, 50).await;
    let on_async = receipts
        .iter()
        .filter(|r| r.path == UploadPath::Async)
        .count();
    assert!(
        (25..=75).contains(&on_async),
        "{on_async} of 100 took the async path"
    );
    for receipt in &receipts {
        let expected = if receipt.path == UploadPath::Async {
            "in_rollout"
        } else {
            "out_of_rollout"
        };
        assert_eq!(receipt.routing.reason, expected);
        assert!(!receipt.routing.key_derived);
    }
    let flags = rig.uploader.flags().clone();
    for receipt in &receipts {
        let index: usize = receipt.source.file_stem().unwrap().to_str().unwrap()[6..]
            .parse()
            .unwrap();
        let decision = flags.evaluate(&format!("tenant-{index}"));
        assert_eq!(receipt.routing.decided, decision.route.as_str());
        assert_eq!(receipt.routing.bucket, Some(decision.bucket));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_uploads_complete() {
    let (receipts, _rig) = upload_batch(1000, 100).await;
    assert_eq!(receipts.len(), 1000);
}

/// A request without a routing key is bucketed by its file's derived key, so the same file always
/// takes the same path.
#[tokio::test]
async fn a_request_without_a_key_routes_by_the_derived_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.md");
    std::fs::write(&path, "# report\n").unwrap();
    let rig = rig(Flavor::Glm, "", flag(50, 0, true), |b| b).await;
    let receipt = rig
        .uploader
        .upload(UploadRequest::new(&path, "file-extract"))
        .await
        .unwrap();
    let key = upramp_uploader::derived_routing_key(&path, 9);
    let decision = rig.uploader.flags().evaluate(&key);
    assert!(receipt.routing.key_derived);
    assert_eq!(receipt.routing.bucket, Some(decision.bucket));
    assert_eq!(receipt.routing.decided, decision.route.as_str());
}
