//! Every file kind at two sizes, to Kimi and GLM, on both upload paths, through the public crates:
//! each stored file's SHA-256 and size on the stand-in match the source, and nothing is stored twice.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use upramp_flags::{FlagConfig, FlagStore, Percent, ASYNC_UPLOAD};
use upramp_harness::corpus::{self, FileKind};
use upramp_harness::{Flavor, StandIn, StandInConfig};
use upramp_providers::{ApiKey, ProviderClient, ProviderKind};
use upramp_telemetry::UploadPath;
use upramp_uploader::{ForcedPath, UploadRequest, Uploader};

const SIZES: [u64; 2] = [3_000, 2 * 1024 * 1024 + 17];

fn sha256(path: &std::path::Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_kinds_two_sizes_both_providers_both_paths() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for kind in FileKind::ALL {
        for (i, size) in SIZES.into_iter().enumerate() {
            let path = corpus::generate(dir.path(), kind, size, 40 + i as u64).unwrap();
            let sha = sha256(&path);
            files.push((kind, size, path, sha));
        }
    }
    for (flavor, kind) in [
        (Flavor::Kimi, ProviderKind::Kimi),
        (Flavor::Glm, ProviderKind::Glm),
    ] {
        let stand_in = StandIn::start(StandInConfig::new(flavor).with_seed(3))
            .await
            .unwrap();
        let client = ProviderClient::with_base_url(
            kind,
            &stand_in.base_url(),
            ApiKey::new(stand_in.api_key()),
        )
        .unwrap();
        let blocking = client.blocking();
        let mut flag = FlagConfig::new(ASYNC_UPLOAD);
        flag.enabled = true;
        flag.rollout = Percent::from_thousandths(50_000).unwrap();
        let uploader = Uploader::builder(Arc::new(client), Arc::new(blocking))
            .flags(FlagStore::new(flag))
            .seed(11)
            .build()
            .unwrap();
        let mut expected = Vec::new();
        for (file_kind, size, path, sha) in &files {
            for (forced, taken) in [
                (ForcedPath::Async, UploadPath::Async),
                (ForcedPath::Sync, UploadPath::Sync),
            ] {
                let name = format!("{}-{size}-{}", file_kind.as_str(), taken.as_str());
                let request = UploadRequest::new(path, "file-extract")
                    .routing_key(name.clone())
                    .filename(format!("{name}.{}", file_kind.extension()));
                let receipt = uploader.upload_on(request, forced).await.unwrap();
                assert_eq!(receipt.path, taken, "{name}");
                assert_eq!(receipt.bytes, *size, "{name}");
                assert_eq!(&receipt.sha256, sha, "{name}: receipt SHA-256");
                expected.push((receipt.file.id.clone(), *size, sha.clone(), name));
            }
        }
        let stored = stand_in.stored_files();
        assert_eq!(
            stored.len(),
            expected.len(),
            "{flavor:?}: one stored file per upload, no duplicates"
        );
        for (id, size, sha, name) in expected {
            let file = stored
                .iter()
                .find(|f| f.id == id)
                .unwrap_or_else(|| panic!("{name}: {id} not stored"));
            assert_eq!(file.bytes, size, "{name}: stored size");
            assert_eq!(file.sha256, sha, "{name}: stored SHA-256");
        }
        stand_in.shutdown().await;
    }
}
