//! The file matrix of issue #5: every file kind at 1, 10, 50 and 100 MiB (plus two sizes that do not
//! fall on a chunk boundary), to Kimi and GLM, on both upload paths, through the public crates. Each
//! receipt names the path that was forced, the file's size and its SHA-256; each stand-in stores
//! exactly one file per upload, with the source's size, SHA-256 and purpose.
//!
//! Sizes are binary megabytes because both the client's limits and the stand-ins read the contract's
//! "100 MB" as 100 MiB, and both refuse only what is strictly larger: the 100 MiB files sit exactly
//! on the limit.
//!
//! Cost: about 3.9 GB go through loopback HTTP with SHA-256 on both ends, in a debug build on CI's
//! two cores. Each file is generated and hashed once and reused for both providers and both paths;
//! one test per size lets the test harness overlap the sizes, and a few uploads run at once within
//! a test so that hashing on one side overlaps socket I/O on the other.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::StreamExt;
use upramp_flags::{FlagConfig, FlagStore, Percent, ASYNC_UPLOAD};
use upramp_harness::corpus::{self, FileKind};
use upramp_harness::{Flavor, StandIn, StandInConfig};
use upramp_providers::{ApiKey, ErrorKind, ProviderClient, ProviderKind};
use upramp_telemetry::UploadPath;
use upramp_uploader::{Route, UploadError, UploadRequest, Uploader};

const MIB: u64 = 1024 * 1024;

/// Uploads in flight per test, on either path. The sync path holds a whole file in memory, so four
/// 100 MiB sync uploads at once cost a few hundred MiB: affordable, and enough to keep both cores
/// busy while a socket waits.
const IN_FLIGHT: usize = 4;

const PROVIDERS: [(Flavor, ProviderKind); 2] = [
    (Flavor::Kimi, ProviderKind::Kimi),
    (Flavor::Glm, ProviderKind::Glm),
];

const PATHS: [(Route, UploadPath); 2] = [
    (Route::Async, UploadPath::Async),
    (Route::Sync, UploadPath::Sync),
];

/// The purpose each provider's contract accepts for a file of `size` bytes of any of the six kinds.
///
/// Kimi takes every kind under `file-extract` up to 100 MB. GLM's `file-extract` stops at 50 MB, so
/// the 100 MiB files go to GLM as `agent`: its purpose table says 20 MB but its agent page says
/// 100 MB, and the contract tells clients to accept either reading (the client and the stand-in
/// both allow 100 MB). `batch` also allows 100 MB, but only for `.jsonl`, which none of the six kinds
/// is; `code-interpreter` stops at 20 MB, and `voice-clone-input` and `retrieval` are for audio and
/// knowledge bases. [`glm_file_extract_refuses_100_mib_before_sending`] pins the 50 MB refusal.
fn purpose(provider: ProviderKind, size: u64) -> &'static str {
    match provider {
        ProviderKind::Glm if size > 50 * MIB => "agent",
        _ => "file-extract",
    }
}

/// One generated file, hashed once.
struct Source {
    kind: FileKind,
    size: u64,
    path: PathBuf,
    sha256: String,
}

/// Every kind at each size, generated and hashed on blocking threads, one per kind, so both cores
/// work on it.
async fn generate(dir: &Path, sizes: &[u64]) -> Vec<Source> {
    let mut jobs = tokio::task::JoinSet::new();
    for (index, kind) in FileKind::ALL.into_iter().enumerate() {
        let (dir, sizes) = (dir.to_path_buf(), sizes.to_vec());
        jobs.spawn_blocking(move || {
            sizes
                .into_iter()
                .map(|size| {
                    let path = corpus::generate(&dir, kind, size, 40 + index as u64).unwrap();
                    assert_eq!(std::fs::metadata(&path).unwrap().len(), size);
                    let sha256 = corpus::sha256_file(&path).unwrap();
                    Source {
                        kind,
                        size,
                        path,
                        sha256,
                    }
                })
                .collect::<Vec<_>>()
        });
    }
    let mut sources: Vec<Source> = jobs.join_all().await.into_iter().flatten().collect();
    sources.sort_by_key(|s| (s.size, s.kind));
    sources
}

/// A stand-in of one provider and an uploader of its clients.
struct Target {
    provider: ProviderKind,
    stand_in: StandIn,
    uploader: Uploader,
}

async fn start(flavor: Flavor, provider: ProviderKind) -> Target {
    let stand_in = StandIn::start(StandInConfig::new(flavor).with_seed(3))
        .await
        .unwrap();
    let client = ProviderClient::with_base_url(
        provider,
        &stand_in.base_url(),
        ApiKey::new(stand_in.api_key()),
    )
    .unwrap();
    let blocking = client.blocking();
    // Forced paths bypass routing; fallback off makes a failed async leg an error instead of a
    // receipt from the sync path, so every receipt is of the path that was asked for.
    let mut flag = FlagConfig::new(ASYNC_UPLOAD);
    flag.enabled = true;
    flag.rollout = Percent::HUNDRED;
    flag.fallback = false;
    let uploader = Uploader::builder(Arc::new(client), Arc::new(blocking))
        .flags(FlagStore::new(flag))
        .concurrency(IN_FLIGHT)
        .sync_concurrency(IN_FLIGHT)
        .seed(11)
        .build()
        .unwrap();
    Target {
        provider,
        stand_in,
        uploader,
    }
}

/// What one upload must have stored.
struct Expected {
    name: String,
    id: String,
    size: u64,
    sha256: String,
    purpose: &'static str,
}

/// Upload every source to both providers on both paths, `IN_FLIGHT` at a time, check each receipt,
/// then check that each stand-in holds exactly the uploaded files with the sources' bytes.
async fn upload_matrix(sources: &[Source]) {
    let mut targets = Vec::new();
    for (flavor, provider) in PROVIDERS {
        targets.push(start(flavor, provider).await);
    }
    let jobs = sources.iter().flat_map(|source| {
        targets
            .iter()
            .enumerate()
            .flat_map(move |(target, _)| PATHS.into_iter().map(move |path| (source, target, path)))
    });
    let targets_ref = &targets;
    let done: Vec<(usize, Expected)> = futures::stream::iter(jobs)
        .map(|(source, target, (forced, taken))| async move {
            let Target {
                provider, uploader, ..
            } = &targets_ref[target];
            let purpose = purpose(*provider, source.size);
            let name = format!(
                "{provider}-{}-{}-{}",
                source.kind.as_str(),
                source.size,
                taken.as_str()
            );
            let request = UploadRequest::new(&source.path, purpose)
                .routing_key(name.clone())
                .filename(format!("{name}.{}", source.kind.extension()));
            let receipt = uploader
                .upload_on(request, forced)
                .await
                .unwrap_or_else(|err| panic!("{name}: {err}"));
            assert_eq!(receipt.path, taken, "{name}: path");
            assert_eq!(receipt.bytes, source.size, "{name}: receipt bytes");
            assert_eq!(receipt.sha256, source.sha256, "{name}: receipt SHA-256");
            assert!(
                !receipt.adopted,
                "{name}: nothing failed, so nothing to adopt"
            );
            let expected = Expected {
                name,
                id: receipt.file.id.clone(),
                size: source.size,
                sha256: source.sha256.clone(),
                purpose,
            };
            (target, expected)
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;

    for (index, target) in targets.into_iter().enumerate() {
        let expected: Vec<&Expected> = done
            .iter()
            .filter(|(t, _)| *t == index)
            .map(|(_, e)| e)
            .collect();
        assert_eq!(expected.len(), sources.len() * PATHS.len());
        let stored = target.stand_in.stored_files();
        assert_eq!(
            stored.len(),
            expected.len(),
            "{}: one stored file per upload, no duplicates",
            target.provider
        );
        for file in expected {
            let name = &file.name;
            let held = stored
                .iter()
                .find(|f| f.id == file.id)
                .unwrap_or_else(|| panic!("{name}: {} not stored", file.id));
            assert_eq!(held.bytes, file.size, "{name}: stored size");
            assert_eq!(held.sha256, file.sha256, "{name}: stored SHA-256");
            assert_eq!(held.purpose, file.purpose, "{name}: stored purpose");
        }
        target.stand_in.shutdown().await;
    }
}

async fn matrix(sizes: &[u64]) {
    let dir = tempfile::tempdir().unwrap();
    let sources = generate(dir.path(), sizes).await;
    upload_matrix(&sources).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_kinds_at_1_mib_both_providers_both_paths() {
    matrix(&[MIB]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_kinds_at_10_mib_both_providers_both_paths() {
    matrix(&[10 * MIB]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_kinds_at_50_mib_both_providers_both_paths() {
    matrix(&[50 * MIB]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_kinds_at_100_mib_both_providers_both_paths() {
    matrix(&[100 * MIB]).await;
}

/// Sizes off the 128 KiB chunk grid, so the last chunk of a streamed body is a partial one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_kinds_at_sizes_off_the_chunk_grid() {
    matrix(&[3_000, 2 * MIB + 17]).await;
}

/// Why the GLM column uses `agent` at 100 MiB: `file-extract` refuses the file before a byte leaves,
/// on either path, with an error naming the file, its size, the 50 MB limit and the purpose.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn glm_file_extract_refuses_100_mib_before_sending() {
    let dir = tempfile::tempdir().unwrap();
    // Sparse: the limit is checked on the size alone, so the file's bytes are never read.
    let path = dir.path().join("big.txt");
    std::fs::File::create(&path)
        .unwrap()
        .set_len(100 * MIB)
        .unwrap();
    let target = start(Flavor::Glm, ProviderKind::Glm).await;
    for (forced, _) in PATHS {
        let err = target
            .uploader
            .upload_on(UploadRequest::new(&path, "file-extract"), forced)
            .await
            .unwrap_err();
        let UploadError::TooLarge { size, source, .. } = &err else {
            panic!("{forced:?}: expected a too-large refusal, got {err}");
        };
        assert_eq!(*size, 100 * MIB);
        assert_eq!(source.kind, ErrorKind::TooLarge);
        assert!(source.rejected_before_send, "{forced:?}: {err}");
        assert!(
            err.to_string().contains(
                "is 104857600 bytes, over the 52428800 byte (50 MB) limit for purpose file-extract"
            ),
            "{forced:?}: {err}"
        );
    }
    assert!(target.stand_in.stored_files().is_empty());
    assert_eq!(target.stand_in.stats().requests, 0);
    target.stand_in.shutdown().await;
}
