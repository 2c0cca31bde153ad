//! Adoption after an ambiguous failure never names another request's file: not within one
//! uploader, not between two uploaders (two processes or hosts) sharing a provider account, even
//! when the files share a name and a size.

use std::collections::HashMap;

use futures::StreamExt;
use upramp_harness::{Flavor, StandIn};
use upramp_uploader::{Receipt, Route, UploadError, UploadRequest, Uploader};

use crate::common::{flag, rig, same_named_files, sha256_file, uploader_for};

/// Every receipt names a stored file whose bytes are its own source file's, and no two receipts
/// name the same file.
fn assert_receipts_name_their_own_bytes(stand_in: &StandIn, receipts: &[&Receipt]) {
    let stored: HashMap<String, String> = stand_in
        .stored_files()
        .into_iter()
        .map(|f| (f.id, f.sha256))
        .collect();
    let mut seen = HashMap::new();
    for receipt in receipts {
        let own = sha256_file(&receipt.source);
        let held = stored
            .get(receipt.id())
            .unwrap_or_else(|| panic!("receipt {} names no stored file", receipt.id()));
        assert_eq!(
            *held,
            own,
            "receipt {} for {} (adopted: {}) names another file's bytes",
            receipt.id(),
            receipt.source.display(),
            receipt.adopted
        );
        assert_eq!(receipt.sha256, own);
        if let Some(other) = seen.insert(receipt.id().to_owned(), receipt.source.clone()) {
            panic!(
                "{} and {} share stored file {}",
                other.display(),
                receipt.source.display(),
                receipt.id()
            );
        }
    }
}

/// The reproduction: A's `report.txt` is stored by the sync path; then B's different
/// `report.txt` of the same size goes on the async path, whose every attempt is reset after the
/// body (fallback off). B must not come back with A's id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_same_named_same_sized_file_is_never_adopted() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("dirA");
    let b = dir.path().join("dirB");
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let (a, b) = (a.join("report.txt"), b.join("report.txt"));
    std::fs::write(&a, vec![b'A'; 65_536]).unwrap();
    std::fs::write(&b, vec![b'B'; 65_536]).unwrap();

    let first = rig(Flavor::Kimi, "reset:1.0@async", flag(0, 3, false), |b| b).await;
    let receipt_a = first
        .uploader
        .upload(UploadRequest::new(&a, "file-extract"))
        .await
        .unwrap();
    // A second process: its own clients and seed, the flag at 100% without fallback.
    let (second, _) = uploader_for(
        &first.stand_in,
        Flavor::Kimi,
        flag(100, 3, false),
        12,
        |b| b,
    );
    let result_b = second.upload(UploadRequest::new(&b, "file-extract")).await;
    match &result_b {
        Ok(receipt) => {
            assert_ne!(receipt.id(), receipt_a.id(), "B adopted A's file");
            assert_receipts_name_their_own_bytes(&first.stand_in, &[&receipt_a, receipt]);
        }
        Err(err) => assert!(err.to_string().contains("report.txt"), "{err}"),
    }
    assert_receipts_name_their_own_bytes(&first.stand_in, &[&receipt_a]);
    assert_eq!(
        first.stand_in.stored_files().len(),
        1 + usize::from(result_b.is_ok())
    );
}

/// 40 files all named `report.txt`, all the same size, different content, in flight together
/// under drops and malformed answers: each receipt names its own bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forty_same_named_files_under_ambiguous_faults_keep_their_own_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let files = same_named_files(dir.path(), "host", "report.txt", 40, 4_000);
    let rig = rig(
        Flavor::Glm,
        "drop:0.4,malformed:0.3",
        flag(50, 5, true),
        |b| b.concurrency(8).sync_concurrency(4),
    )
    .await;
    let requests = files
        .iter()
        .enumerate()
        .map(|(i, p)| UploadRequest::new(p, "file-extract").routing_key(format!("tenant-{i}")))
        .collect();
    let results: Vec<(usize, Result<Receipt, UploadError>)> =
        rig.uploader.upload_many(requests).collect().await;
    let receipts: Vec<&Receipt> = results
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok())
        .collect();
    assert_eq!(
        receipts.len(),
        40,
        "{:?}",
        results
            .iter()
            .filter_map(|(_, r)| r.as_ref().err())
            .collect::<Vec<_>>()
    );
    assert!(
        receipts.iter().any(|r| r.adopted),
        "no ambiguous failure was exercised"
    );
    for receipt in &receipts {
        assert_eq!(receipt.filename, "report.txt");
        assert_eq!(receipt.file.filename, receipt.stored_filename);
    }
    assert_receipts_name_their_own_bytes(&rig.stand_in, &receipts);
    rig.assert_exactly_stored(&receipts);
}

/// Upload `files` through `uploader` on `path`, all at once.
async fn upload_all(
    uploader: &Uploader,
    files: &[std::path::PathBuf],
    path: Route,
) -> Vec<Result<Receipt, UploadError>> {
    futures::stream::iter(files.iter().map(|p| {
        let uploader = uploader.clone();
        async move {
            uploader
                .upload_on(UploadRequest::new(p, "file-extract"), path)
                .await
        }
    }))
    .buffer_unordered(8)
    .collect()
    .await
}

/// Two hosts (separate uploaders: own clients, own adoption bookkeeping) upload `report.txt`
/// files of one size and different content to one account at the same time, under resets,
/// drops and malformed answers: no receipt names the other host's bytes. Run with different
/// seeds and with the same seed: the stored-name marker must not depend on the seed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hosts_uploading_same_named_files_never_adopt_each_others() {
    for (seed_one, seed_two) in [(21, 22), (5, 5)] {
        let dir = tempfile::tempdir().unwrap();
        let one = same_named_files(dir.path(), "one", "report.txt", 16, 3_000);
        let two = same_named_files(dir.path(), "two", "report.txt", 16, 3_000);
        let rig = rig(
            Flavor::Kimi,
            "drop:0.3,malformed:0.3,reset:0.1",
            flag(100, 6, false),
            |b| b.seed(seed_one),
        )
        .await;
        let (other, _) = uploader_for(
            &rig.stand_in,
            Flavor::Kimi,
            flag(100, 6, false),
            seed_two,
            |b| b,
        );
        let (results_one, results_two) = tokio::join!(
            upload_all(&rig.uploader, &one, Route::Async),
            upload_all(&other, &two, Route::Sync),
        );
        let receipts: Vec<&Receipt> = results_one
            .iter()
            .chain(&results_two)
            .filter_map(|r| r.as_ref().ok())
            .collect();
        assert!(
            receipts.len() >= 28,
            "seeds {seed_one}/{seed_two}: too many failures: {:?}",
            results_one
                .iter()
                .chain(&results_two)
                .filter_map(|r| r.as_ref().err())
                .collect::<Vec<_>>()
        );
        assert!(receipts.iter().any(|r| r.adopted));
        assert_receipts_name_their_own_bytes(&rig.stand_in, &receipts);
        let mut stored_names: Vec<&str> = receipts
            .iter()
            .map(|r| r.stored_filename.as_str())
            .collect();
        stored_names.sort_unstable();
        stored_names.dedup();
        assert_eq!(
            stored_names.len(),
            receipts.len(),
            "two requests shared a stored name"
        );
        rig.assert_exactly_stored(&receipts);
    }
}

/// With unique stored names off, an ambiguous failure next to a same-named, same-sized file
/// cannot be resolved: the request ends in `OutcomeUnknown` instead of adopting it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_unique_names_ambiguity_ends_in_outcome_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let files = same_named_files(dir.path(), "plain", "report.txt", 2, 65_536);
    let first = rig(Flavor::Kimi, "reset:1.0@async", flag(0, 3, false), |b| {
        b.unique_stored_names(false)
    })
    .await;
    let receipt_a = first
        .uploader
        .upload(UploadRequest::new(&files[0], "file-extract"))
        .await
        .unwrap();
    assert_eq!(receipt_a.stored_filename, "report.txt");
    let (second, _) = uploader_for(
        &first.stand_in,
        Flavor::Kimi,
        flag(100, 3, false),
        12,
        |b| b.unique_stored_names(false),
    );
    let err = second
        .upload(UploadRequest::new(&files[1], "file-extract"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            UploadError::OutcomeUnknown {
                cause: upramp_uploader::UnknownCause::NotProvable { candidates: 1 },
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(first.stand_in.stored_files().len(), 1);
}
