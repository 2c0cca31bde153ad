//! Shared set-up: a stand-in, a client pair, an uploader with fast timeouts and a recorder.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use upramp_flags::{FlagConfig, FlagStore, Percent};
use upramp_harness::{FaultPlan, Flavor, StandIn, StandInConfig};
use upramp_providers::{ApiKey, ProviderClient, ProviderKind};
use upramp_telemetry::{EventKind, RecordingObserver, UploadEvent, UploadPath};
use upramp_uploader::{Receipt, RetryPolicy, Timeouts, Uploader, UploaderBuilder};

/// Retries that wait milliseconds, not seconds, so fault tests stay fast; `Retry-After` is still
/// honoured, capped at 50 ms.
pub fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        base: Duration::from_millis(5),
        cap: Duration::from_millis(20),
        retry_after_cap: Duration::from_millis(50),
    }
}

/// Timeouts short enough that a stalled or dropped request costs a second, long enough that a
/// loaded 2-core machine does not trip them on healthy uploads.
pub fn fast_timeouts() -> Timeouts {
    Timeouts {
        connect: Duration::from_secs(5),
        stall: Duration::from_secs(1),
        total_floor: Duration::from_secs(20),
        min_throughput: 1024 * 1024,
        ..Timeouts::default()
    }
}

/// The upload flag: enabled, at `rollout` percent, with `max_retries` and `fallback`.
pub fn flag(rollout: u32, max_retries: u32, fallback: bool) -> FlagConfig {
    let mut flag = FlagConfig::new(upramp_flags::ASYNC_UPLOAD);
    flag.enabled = true;
    flag.rollout = Percent::from_thousandths(rollout * 1_000).unwrap();
    flag.max_retries = max_retries;
    flag.fallback = fallback;
    // Below the code's floor, so the builder's `Timeouts` decide.
    flag.timeout = Duration::from_secs(1);
    flag
}

pub fn provider_kind(flavor: Flavor) -> ProviderKind {
    match flavor {
        Flavor::Kimi => ProviderKind::Kimi,
        Flavor::Glm => ProviderKind::Glm,
    }
}

/// A running stand-in and an uploader pointed at it.
pub struct Rig {
    pub stand_in: StandIn,
    pub uploader: Uploader,
    pub recorder: Arc<RecordingObserver>,
    pub provider: &'static str,
}

/// Start a stand-in of `flavor` with `faults` and build an uploader over it, customised by `tune`.
pub async fn rig(
    flavor: Flavor,
    faults: &str,
    flag: FlagConfig,
    tune: impl FnOnce(UploaderBuilder) -> UploaderBuilder,
) -> Rig {
    let stand_in = StandIn::start(
        StandInConfig::new(flavor)
            .with_seed(7)
            .with_max_files(10_000)
            .with_faults(FaultPlan::parse(faults).unwrap()),
    )
    .await
    .unwrap();
    let (uploader, recorder) = uploader_for(&stand_in, flavor, flag, 11, tune);
    Rig {
        stand_in,
        uploader,
        recorder,
        provider: provider_kind(flavor).as_str(),
    }
}

/// An uploader of its own (own clients, own observer, `seed`) over a running stand-in: another
/// process or host uploading to the same provider account.
pub fn uploader_for(
    stand_in: &StandIn,
    flavor: Flavor,
    flag: FlagConfig,
    seed: u64,
    tune: impl FnOnce(UploaderBuilder) -> UploaderBuilder,
) -> (Uploader, Arc<RecordingObserver>) {
    let kind = provider_kind(flavor);
    let client =
        ProviderClient::with_base_url(kind, &stand_in.base_url(), ApiKey::new(stand_in.api_key()))
            .unwrap();
    let blocking = client.blocking();
    let recorder = Arc::new(RecordingObserver::new());
    let builder = Uploader::builder(Arc::new(client), Arc::new(blocking))
        .flags(FlagStore::new(flag))
        .observer(recorder.clone())
        .retry_policy(fast_retry())
        .timeouts(fast_timeouts())
        .seed(seed);
    (tune(builder).build().unwrap(), recorder)
}

impl Rig {
    /// Events of `kind`, in order.
    pub fn events(&self, kind: EventKind) -> Vec<UploadEvent> {
        self.recorder
            .events()
            .into_iter()
            .filter(|e| e.kind == kind)
            .collect()
    }

    /// The in-flight gauge summed over every path.
    pub fn in_flight(&self) -> i64 {
        UploadPath::ALL
            .iter()
            .map(|path| self.recorder.in_flight(self.provider, *path))
            .sum()
    }

    /// Every receipt names a distinct stored file whose SHA-256 and size match, and nothing else
    /// is stored: exactly one stored file per successful request.
    pub fn assert_exactly_stored(&self, receipts: &[&Receipt]) {
        let stored = self.stand_in.stored_files();
        let ids: HashSet<&str> = receipts.iter().map(|r| r.id()).collect();
        assert_eq!(
            ids.len(),
            receipts.len(),
            "two receipts share a stored file"
        );
        assert_eq!(
            stored.len(),
            receipts.len(),
            "stored {:?} for receipts {:?}",
            stored.iter().map(|f| &f.id).collect::<Vec<_>>(),
            ids
        );
        for receipt in receipts {
            let file = stored
                .iter()
                .find(|f| f.id == receipt.id())
                .unwrap_or_else(|| panic!("receipt {} names no stored file", receipt.id()));
            assert_eq!(file.sha256, receipt.sha256, "{}", receipt.source.display());
            assert_eq!(file.bytes, receipt.bytes);
            assert_eq!(file.sha256, sha256_file(&receipt.source));
        }
    }
}

/// SHA-256 of a file on disk (the harness's one hasher, so tests and stand-ins agree by construction).
pub fn sha256_file(path: &Path) -> String {
    upramp_harness::corpus::sha256_file(path)
        .unwrap_or_else(|e| panic!("hashing {}: {e}", path.display()))
}

/// Write `count` files all named `name`, each in its own folder under `dir`, all `size` bytes,
/// each with different content (`tag` and its index repeated).
pub fn same_named_files(
    dir: &Path,
    tag: &str,
    name: &str,
    count: usize,
    size: usize,
) -> Vec<PathBuf> {
    (0..count)
        .map(|i| {
            let folder = dir.join(format!("{tag}-{i:03}"));
            std::fs::create_dir_all(&folder).unwrap();
            let path = folder.join(name);
            let line = format!("{tag} copy {i}\n");
            let contents: String = line.chars().cycle().take(size).collect();
            std::fs::write(&path, contents).unwrap();
            path
        })
        .collect()
}

/// Write `count` small distinct text files into `dir`.
pub fn small_files(dir: &Path, count: usize, size: usize) -> Vec<PathBuf> {
    (0..count)
        .map(|i| {
            let path = dir.join(format!("small-{i:05}.txt"));
            let line = format!("file {i} of {count}\n");
            let contents: String = line.chars().cycle().take(size).collect();
            std::fs::write(&path, contents).unwrap();
            path
        })
        .collect()
}
