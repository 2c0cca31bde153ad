//! One validation world: Kimi and GLM stand-ins, an uploader per provider sharing one flag store, the
//! telemetry observers, and the production controller on a simulated clock.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use upramp_flags::{FlagConfig, FlagStore, Percent, Route, ASYNC_UPLOAD};
use upramp_harness::corpus::{self, FileKind};
use upramp_harness::{FaultPlan, Flavor, StandIn, StandInConfig};
use upramp_providers::{ApiKey, ProviderClient, ProviderKind};
use upramp_rollout::{
    AggregatorSource, AuditLog, Controller, Decision, Plan, StateStore, StoreSink,
};
use upramp_telemetry::{
    AggregatorConfig, Clock, EventKind, FanOut, GateAggregator, PrometheusObserver, SimulatedClock,
    UploadEvent, UploadObserver,
};
use upramp_uploader::{UploadRequest, Uploader};

use super::profile::Profile;
use super::ValidateError;
use crate::observe::{
    AuditRollback, ControllerPosition, DecisionKind, DecisionRecord, GateRecord, LegRecord,
    Provider, RequestRecord, RequestResult, StoredRecord, Verdict,
};
use crate::stats::Interval;

/// The purpose every validation upload uses: accepted by both providers up to 50 MB.
const PURPOSE: &str = "file-extract";

/// The controller type every world runs: the production controller over the in-process aggregator,
/// applying percents to the uploaders' flag store.
pub(crate) type RolloutController = Controller<AggregatorSource, StoreSink>;

/// A generated file the traffic reuses (distinct routing keys per request; content may repeat).
#[derive(Debug, Clone)]
pub(crate) struct CorpusFile {
    pub(crate) path: PathBuf,
    pub(crate) bytes: u64,
    pub(crate) sha256: String,
}

/// The files of a run, generated once into a temporary directory.
#[derive(Debug)]
pub(crate) struct Corpus {
    _dir: tempfile::TempDir,
    pub(crate) small: Vec<CorpusFile>,
    pub(crate) big: Vec<CorpusFile>,
}

/// Small sizes: 1 KiB to 64 KiB, roughly log-spaced.
const SMALL_SIZES: [u64; 6] = [1_024, 3_000, 8_192, 20_000, 40_960, 65_536];

/// Sizes of the twin files: per kind, two files at each of these sizes with one name
/// (`report-<size>.<ext>`, in folders `twin-a` and `twin-b`) and different content, the case
/// where a file list shows nothing that tells them apart.
const TWIN_SIZES: [u64; 2] = [8_192, 40_960];

/// Uploaders per provider: two hosts of one service sharing each provider account (their own
/// clients, seeds and adoption bookkeeping), so same-named files also meet across uploaders.
const HOSTS: usize = 2;

impl Corpus {
    /// Every kind at every small size, the twins, plus the profile's big files.
    pub(crate) fn generate(seed: u64, big: &[(FileKind, u64)]) -> Result<Self, ValidateError> {
        let dir = tempfile::tempdir().map_err(|source| ValidateError::Corpus {
            path: std::env::temp_dir(),
            source,
        })?;
        let describe = |path: PathBuf| -> Result<CorpusFile, ValidateError> {
            let bytes = std::fs::metadata(&path)
                .map_err(|source| ValidateError::Corpus {
                    path: path.clone(),
                    source,
                })?
                .len();
            let sha256 = upramp_harness::corpus::sha256_file(&path).map_err(|source| {
                ValidateError::Corpus {
                    path: path.clone(),
                    source,
                }
            })?;
            Ok(CorpusFile {
                path,
                bytes,
                sha256,
            })
        };
        let make = |kind: FileKind, size: u64, salt: u64| {
            corpus::generate(dir.path(), kind, size, seed ^ salt).map_err(|source| {
                ValidateError::Corpus {
                    path: dir.path().to_owned(),
                    source,
                }
            })
        };
        let mut small = Vec::new();
        for (k, kind) in FileKind::ALL.into_iter().enumerate() {
            for (s, size) in SMALL_SIZES.into_iter().enumerate() {
                small.push(describe(make(kind, size, (k * 16 + s) as u64)?)?);
            }
        }
        for (k, kind) in FileKind::ALL.into_iter().enumerate() {
            for (s, size) in TWIN_SIZES.into_iter().enumerate() {
                for (t, folder) in ["twin-a", "twin-b"].into_iter().enumerate() {
                    let generated = make(kind, size, 0x7_1000 + (k * 16 + s * 2 + t) as u64)?;
                    let twin_dir = dir.path().join(folder);
                    let twin = twin_dir.join(format!("report-{size}.{}", kind.extension()));
                    std::fs::create_dir_all(&twin_dir)
                        .and_then(|()| std::fs::rename(&generated, &twin))
                        .map_err(|source| ValidateError::Corpus {
                            path: twin.clone(),
                            source,
                        })?;
                    small.push(describe(twin)?);
                }
            }
        }
        let mut large = Vec::new();
        for (i, (kind, size)) in big.iter().enumerate() {
            large.push(describe(make(*kind, *size, 0xB16 + i as u64)?)?);
        }
        Ok(Corpus {
            _dir: dir,
            small,
            big: large,
        })
    }
}

/// Records each request leg (a telemetry `Request` event) with its simulated time, for the report's
/// per-path numbers and the timeline.
#[derive(Debug)]
pub(crate) struct LegRecorder {
    start: SystemTime,
    legs: Mutex<Vec<LegRecord>>,
}

impl LegRecorder {
    fn new(start: SystemTime) -> Self {
        LegRecorder {
            start,
            legs: Mutex::new(Vec::new()),
        }
    }

    /// Every leg recorded so far.
    pub(crate) fn all(&self) -> Vec<LegRecord> {
        self.legs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl UploadObserver for LegRecorder {
    fn on_event(&self, event: &UploadEvent) {
        if event.kind != EventKind::Request {
            return;
        }
        let at_hours = event
            .at
            .duration_since(self.start)
            .map_or(0.0, |d| d.as_secs_f64() / 3600.0);
        let leg = LegRecord {
            at_hours,
            path: event.path,
            success: event.outcome.is_success(),
            duration_ms: event.duration.as_secs_f64() * 1000.0,
        };
        self.legs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(leg);
    }
}

/// One upload the driver will make.
#[derive(Debug, Clone)]
pub(crate) struct Job {
    provider: Provider,
    /// Which of the provider's uploaders (hosts) sends it.
    host: usize,
    key: String,
    file: usize,
    big: bool,
}

/// Simulated start of every world: a fixed instant, so reports are comparable between runs.
pub(crate) fn epoch() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_767_225_600) // 2026-01-01T00:00:00Z
}

/// A fresh world: fresh stand-ins, flag store at 0%, aggregator, controller.
pub(crate) struct World {
    pub(crate) clock: Arc<SimulatedClock>,
    pub(crate) start: SystemTime,
    pub(crate) flags: FlagStore,
    pub(crate) aggregator: Arc<GateAggregator>,
    pub(crate) legs: Arc<LegRecorder>,
    stand_ins: Vec<(Provider, StandIn)>,
    uploaders: Vec<(Provider, Uploader)>,
    corpus: Arc<Corpus>,
    rng: ChaCha8Rng,
    keys: Vec<String>,
    key_prefix: String,
    requests_made: u64,
    intervals_run: u64,
    /// Per tick interval: its end (simulated hours) and the percent applied during it.
    pub(crate) intervals: Vec<(f64, f64)>,
    pub(crate) bytes_sent: u64,
    profile: Profile,
    pub(crate) state_dir: tempfile::TempDir,
    pub(crate) decisions: Vec<DecisionRecord>,
    /// Per stand-in, where [`World::new_stored_files`] left off.
    stored_cursors: Vec<u64>,
    servers: tokio::runtime::Handle,
}

impl World {
    /// Starts the stand-ins on `servers` (their own runtime, as a provider is its own process: the
    /// clients' runtime then carries only client work, and the two paths are timed fairly) and builds the
    /// uploaders; the flag is enabled at 0%.
    pub(crate) async fn start(
        profile: &Profile,
        corpus: Arc<Corpus>,
        seed: u64,
        servers: &tokio::runtime::Handle,
    ) -> Result<Self, ValidateError> {
        let start = epoch();
        let clock = Arc::new(SimulatedClock::starting_at(start));
        let mut flag = FlagConfig::new(ASYNC_UPLOAD);
        flag.enabled = true;
        flag.rollout = Percent::ZERO;
        let flags = FlagStore::new(flag);
        let aggregator = Arc::new(
            GateAggregator::new(AggregatorConfig::with_window(
                profile.window,
                profile.window_slices,
            ))
            .map_err(|e| ValidateError::Setup(format!("gate aggregator: {e}")))?,
        );
        let legs = Arc::new(LegRecorder::new(start));
        let observer: Arc<dyn UploadObserver> = Arc::new(
            FanOut::new()
                .with(Arc::new(PrometheusObserver::new()))
                .with(aggregator.clone())
                .with(legs.clone()),
        );
        let mut stand_ins = Vec::new();
        let mut uploaders = Vec::new();
        for (i, provider) in Provider::ALL.into_iter().enumerate() {
            let (flavor, kind) = match provider {
                Provider::Kimi => (Flavor::Kimi, ProviderKind::Kimi),
                Provider::Glm => (Flavor::Glm, ProviderKind::Glm),
            };
            let config = StandInConfig::new(flavor)
                .with_seed(seed.wrapping_add(i as u64))
                // Validation never deletes; the Kimi account cap would otherwise refuse uploads.
                .with_max_files(usize::MAX)
                // Validation never reads `/content`; 64 KiB of each of ~60,000 files would be gigabytes.
                .with_content_bytes(4 * 1024);
            let stand_in = servers
                .spawn(StandIn::start(config))
                .await
                .map_err(|e| ValidateError::Setup(format!("{provider} stand-in task: {e}")))?
                .map_err(|e| ValidateError::Setup(format!("{provider} stand-in: {e}")))?;
            for host in 0..HOSTS {
                let client = ProviderClient::with_base_url(
                    kind,
                    &stand_in.base_url(),
                    ApiKey::new(stand_in.api_key()),
                )
                .map_err(|e| ValidateError::Setup(format!("{provider} client: {e}")))?;
                let blocking = client.blocking();
                let uploader = Uploader::builder(Arc::new(client), Arc::new(blocking))
                    .flags(flags.clone())
                    .observer(observer.clone())
                    .clock(clock.clone())
                    .concurrency(profile.workers)
                    .sync_concurrency(profile.workers)
                    .retry_policy(profile.retry)
                    .seed(seed ^ (0x5eed + (i * HOSTS + host) as u64))
                    .build()
                    .map_err(|e| ValidateError::Setup(format!("{provider} uploader: {e}")))?;
                uploaders.push((provider, uploader));
            }
            stand_ins.push((provider, stand_in));
        }
        let keys = (0..profile.returning_keys)
            .map(|i| format!("tenant-{:04x}-{i:05}", seed & 0xffff))
            .collect();
        let state_dir = tempfile::tempdir().map_err(|source| ValidateError::Corpus {
            path: std::env::temp_dir(),
            source,
        })?;
        Ok(World {
            clock,
            start,
            flags,
            aggregator,
            legs,
            stand_ins,
            uploaders,
            corpus,
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0x7aff1c),
            keys,
            key_prefix: format!("user-{:04x}", seed & 0xffff),
            requests_made: 0,
            intervals_run: 0,
            intervals: Vec::new(),
            bytes_sent: 0,
            profile: profile.clone(),
            state_dir,
            decisions: Vec::new(),
            stored_cursors: vec![0; Provider::ALL.len()],
            servers: servers.clone(),
        })
    }

    /// Builds the production controller for `plan`, its state file and audit log in this world's state
    /// directory.
    pub(crate) fn controller(&self, plan: Plan) -> Result<RolloutController, ValidateError> {
        let audit = AuditLog::open(self.audit_path())
            .map_err(|e| ValidateError::Setup(format!("audit log: {e}")))?;
        Ok(Controller::new(
            plan,
            AggregatorSource::new(self.aggregator.clone()),
            StoreSink(self.flags.clone()),
        )
        .map_err(|e| ValidateError::Setup(format!("controller: {e}")))?
        .with_store(StateStore::new(self.state_path()))
        .with_audit(audit))
    }

    /// A controller resumed from this world's state file, as a restarted process would build it.
    pub(crate) fn resumed_controller(&self) -> Result<RolloutController, ValidateError> {
        let state = StateStore::new(self.state_path())
            .load()
            .map_err(|e| ValidateError::Setup(format!("state file: {e}")))?;
        let audit = AuditLog::open(self.audit_path())
            .map_err(|e| ValidateError::Setup(format!("audit log: {e}")))?;
        Ok(Controller::from_state(
            state,
            AggregatorSource::new(self.aggregator.clone()),
            StoreSink(self.flags.clone()),
        )
        .with_store(StateStore::new(self.state_path()))
        .with_audit(audit))
    }

    pub(crate) fn state_path(&self) -> PathBuf {
        self.state_dir.path().join("rollout-state.json")
    }

    pub(crate) fn audit_path(&self) -> PathBuf {
        self.state_dir.path().join("audit.jsonl")
    }

    /// The simulated clock's current time.
    pub(crate) fn clock_now(&self) -> SystemTime {
        self.clock.now()
    }

    /// Simulated hours since the world started.
    pub(crate) fn hours(&self) -> f64 {
        self.clock
            .now()
            .duration_since(self.start)
            .map_or(0.0, |d| d.as_secs_f64() / 3600.0)
    }

    /// Injects `faults` on both stand-ins.
    pub(crate) fn set_faults(&self, faults: &FaultPlan) {
        for (_, stand_in) in &self.stand_ins {
            stand_in.set_faults(faults.clone());
        }
    }

    /// Upload requests made so far.
    pub(crate) fn requests_made(&self) -> u64 {
        self.requests_made
    }

    /// `count` small-file jobs plus `big` big-file ones. A share of the requests come from returning
    /// tenants (a fixed pool, so keys recur across stages); every other request carries a fresh key.
    /// Providers half and half, files drawn uniformly.
    pub(crate) fn jobs(&mut self, count: usize, big: usize) -> Vec<Job> {
        let mut jobs = Vec::with_capacity(count + big);
        for i in 0..count + big {
            let key = if self.rng.gen_bool(self.profile.returning_share) {
                self.keys[self.rng.gen_range(0..self.keys.len())].clone()
            } else {
                format!("{}-{:08}", self.key_prefix, self.requests_made + i as u64)
            };
            let provider = Provider::ALL[self.rng.gen_range(0..Provider::ALL.len())];
            let host = self.rng.gen_range(0..HOSTS);
            let is_big = i >= count && !self.corpus.big.is_empty();
            let file = if is_big {
                self.rng.gen_range(0..self.corpus.big.len())
            } else {
                self.rng.gen_range(0..self.corpus.small.len())
            };
            jobs.push(Job {
                provider,
                host,
                key,
                file,
                big: is_big,
            });
        }
        jobs
    }

    /// Runs one tick interval of traffic: half the interval passes, the batch runs (its events stamped
    /// mid-interval), the rest passes. Every `big_every`-th interval adds one big upload.
    pub(crate) async fn traffic(&mut self, requests: usize) -> Vec<RequestRecord> {
        let half = self.profile.tick / 2;
        let percent = self.flags.snapshot().rollout.as_f64();
        let big = usize::from(self.intervals_run % self.profile.big_every == 0);
        self.intervals_run += 1;
        self.advance(half);
        let jobs = self.jobs(requests, big);
        let records = self.drive(jobs).await;
        self.advance(self.profile.tick - half);
        self.intervals.push((self.hours(), percent));
        records
    }

    /// One tick interval of traffic, then a controller tick.
    pub(crate) async fn interval(
        &mut self,
        controller: &mut RolloutController,
        requests: usize,
    ) -> Result<(Vec<RequestRecord>, DecisionRecord), ValidateError> {
        let records = self.traffic(requests).await;
        let decision = self.tick(controller)?;
        Ok((records, decision))
    }

    /// Runs `jobs` through the uploaders at the profile's concurrency, every event stamped with the
    /// simulated clock's current time, and records each request's result.
    pub(crate) async fn drive(&mut self, jobs: Vec<Job>) -> Vec<RequestRecord> {
        self.requests_made += jobs.len() as u64;
        let corpus = self.corpus.clone();
        let flags = self.flags.clone();
        let uploaders = self.uploaders.clone();
        let records: Vec<RequestRecord> = futures::stream::iter(jobs)
            .map(|job| {
                let corpus = corpus.clone();
                let flags = flags.clone();
                let uploader = uploaders
                    .iter()
                    .filter(|(p, _)| *p == job.provider)
                    .nth(job.host)
                    .map(|(_, u)| u.clone());
                async move {
                    let file = if job.big {
                        &corpus.big[job.file]
                    } else {
                        &corpus.small[job.file]
                    };
                    // The driver's own evaluation of the same key, to check the uploader routed by it.
                    let decided_async = flags.evaluate(&job.key).route == Route::Async;
                    // The file's own name: many requests share it (and the twins share it with a
                    // different file of the same size), so adoption after an ambiguous failure
                    // must tell requests apart by itself.
                    let request =
                        UploadRequest::new(&file.path, PURPOSE).routing_key(job.key.clone());
                    let result = match uploader {
                        Some(uploader) => match uploader.upload(request).await {
                            Ok(receipt) => RequestResult::Receipt {
                                file_id: receipt.file.id.clone(),
                                path: receipt.path,
                                sha256: receipt.sha256.clone(),
                                bytes: receipt.bytes,
                                attempts: receipt.attempts,
                            },
                            Err(err) => RequestResult::Error {
                                message: err.to_string(),
                            },
                        },
                        None => RequestResult::Error {
                            message: format!("no uploader for {}", job.provider),
                        },
                    };
                    RequestRecord {
                        provider: job.provider,
                        routing_key: job.key,
                        decided_async,
                        source_sha256: file.sha256.clone(),
                        source_bytes: file.bytes,
                        result,
                    }
                }
            })
            .buffer_unordered(self.profile.workers)
            .collect()
            .await;
        self.bytes_sent += records
            .iter()
            .filter_map(|r| match &r.result {
                RequestResult::Receipt { bytes, .. } => Some(*bytes),
                RequestResult::Error { .. } => None,
            })
            .sum::<u64>();
        records
    }

    /// Files stored on the stand-ins since the last call.
    pub(crate) fn new_stored_files(&mut self) -> Vec<StoredRecord> {
        let mut fresh = Vec::new();
        for ((provider, stand_in), cursor) in self.stand_ins.iter().zip(&mut self.stored_cursors) {
            let (files, next) = stand_in.stored_files_since(*cursor);
            *cursor = next;
            fresh.extend(files.into_iter().map(|file| StoredRecord {
                provider: *provider,
                id: file.id,
                bytes: file.bytes,
                sha256: file.sha256,
            }));
        }
        fresh
    }

    /// Advances the simulated clock by `by` and returns the new time.
    pub(crate) fn advance(&self, by: Duration) -> SystemTime {
        self.clock.advance(by)
    }

    /// Ticks the controller at the current simulated time and records the decision.
    pub(crate) fn tick(
        &mut self,
        controller: &mut RolloutController,
    ) -> Result<DecisionRecord, ValidateError> {
        let now = self.clock.now();
        let record = controller
            .tick(now)
            .map_err(|e| ValidateError::Controller(e.to_string()))?;
        let observed = observe_decision(&record, self.start);
        self.decisions.push(observed.clone());
        Ok(observed)
    }

    /// A manual promotion (audited), used to start a scenario at a later stage.
    pub(crate) fn promote(
        &mut self,
        controller: &mut RolloutController,
        reason: &str,
    ) -> Result<DecisionRecord, ValidateError> {
        let now = self.clock.now();
        let record = controller
            .advance(now, reason)
            .map_err(|e| ValidateError::Controller(e.to_string()))?;
        let observed = observe_decision(&record, self.start);
        self.decisions.push(observed.clone());
        Ok(observed)
    }

    /// Stops the stand-ins.
    pub(crate) async fn shutdown(self) {
        for (_, stand_in) in self.stand_ins {
            // A stand-in that fails to stop leaves nothing to check; the runtime's end reclaims it.
            let _ = self.servers.spawn(stand_in.shutdown()).await;
        }
    }
}

fn verdict(v: upramp_rollout::Verdict) -> Verdict {
    match v {
        upramp_rollout::Verdict::Pass => Verdict::Pass,
        upramp_rollout::Verdict::Fail => Verdict::Fail,
        upramp_rollout::Verdict::Inconclusive => Verdict::Inconclusive,
    }
}

fn gate_record(gate: &upramp_rollout::GateVerdict) -> GateRecord {
    let control = gate.path == upramp_rollout::PathRole::Sync;
    GateRecord {
        name: format!(
            "{} {}",
            if control { "sync" } else { "async" },
            gate.gate.as_str()
        ),
        control,
        verdict: verdict(gate.verdict),
        value: gate.observed,
        threshold: Some(gate.threshold),
        interval: gate.interval.map(|i| Interval { lo: i.lo, hi: i.hi }),
    }
}

/// The plain observation of one controller decision.
pub(crate) fn observe_decision(
    record: &upramp_rollout::DecisionRecord,
    start: SystemTime,
) -> DecisionRecord {
    let kind = match record.decision {
        Decision::Advance => DecisionKind::Advance,
        Decision::Rollback => DecisionKind::Rollback,
        Decision::Complete => DecisionKind::Complete,
        Decision::Hold | Decision::Pause | Decision::Resume => DecisionKind::Hold,
    };
    DecisionRecord {
        at_hours: record
            .at
            .duration_since(start)
            .map_or(0.0, |d| d.as_secs_f64() / 3600.0),
        stage_index: record.stage_index,
        percent_after: record.percent.as_f64(),
        kind,
        reason: record.reason.clone(),
        async_samples: record.inputs.map_or(0, |i| i.async_.samples),
        gates: record
            .gates
            .iter()
            .chain(&record.control)
            .map(gate_record)
            .collect(),
    }
}

/// The rollbacks as the audit log file records them, read back from disk.
pub(crate) fn audit_rollbacks(path: &Path) -> Result<Vec<AuditRollback>, ValidateError> {
    let records = AuditLog::read(path)
        .map_err(|e| ValidateError::Controller(format!("reading the audit log: {e}")))?;
    Ok(records
        .iter()
        .filter(|r| r.decision == Decision::Rollback)
        .map(|r| AuditRollback {
            reason: r.reason.clone(),
            failed_gates: r.failing_gates().map(gate_record).collect(),
        })
        .collect())
}

/// Where the controller stands, from its state.
pub(crate) fn position(state: &upramp_rollout::ControllerState) -> ControllerPosition {
    let bake_started = match &state.phase {
        upramp_rollout::Phase::Baking { since, .. }
        | upramp_rollout::Phase::Paused { since, .. } => upramp_rollout::format_timestamp(*since),
        _ => "-".to_owned(),
    };
    ControllerPosition {
        stage_index: state.stage_index(),
        percent_thousandths: state.percent.thousandths(),
        state: state.phase.as_str().to_owned(),
        bake_started,
        consecutive_failures: state.consecutive_failures,
    }
}
