//! Kimi and GLM file-API stand-ins; the contract details and choices are documented on [`StandIn`].

mod api;
mod conn;
mod server;

pub use api::FAULTS_CONTROL_PATH;

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::error::HarnessError;
use crate::fault::{FaultDecision, FaultPlan, InjectedFault, PathTarget};
use crate::flavor::Flavor;

/// The API key a stand-in expects unless told otherwise.
pub const DEFAULT_API_KEY: &str = "sk-upramp-mock";

/// How a stand-in is set up.
#[derive(Clone)]
pub struct StandInConfig {
    /// Which provider to imitate.
    pub flavor: Flavor,
    /// Where to listen; the default `127.0.0.1:0` picks a free port.
    pub addr: SocketAddr,
    /// The bearer token requests must carry.
    pub api_key: String,
    /// Faults to inject from the start (changeable later with [`StandIn::set_faults`]).
    pub faults: FaultPlan,
    /// Seed of the fault decisions and file ids.
    pub seed: u64,
    /// Kimi's file-count cap (the contract's 1,000 per account); GLM ignores it.
    pub max_files: usize,
    /// Bytes of each stored file kept for `/content` ([`DEFAULT_CONTENT_BYTES`] by default).
    pub content_bytes: usize,
    /// A size cap that replaces every purpose's documented limit (`None`, the default, keeps the
    /// contract's limits).
    pub max_file_bytes: Option<u64>,
}

/// Bytes of each stored file kept for `/content` unless [`StandInConfig::with_content_bytes`] says
/// otherwise.
pub const DEFAULT_CONTENT_BYTES: usize = 64 * 1024;

impl StandInConfig {
    /// Defaults for `flavor`: loopback port 0, key [`DEFAULT_API_KEY`], no faults, seed 0, 1,000 files,
    /// 64 KiB of each file kept for `/content`.
    pub fn new(flavor: Flavor) -> Self {
        Self {
            flavor,
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            api_key: DEFAULT_API_KEY.to_owned(),
            faults: FaultPlan::none(),
            seed: 0,
            max_files: 1_000,
            content_bytes: DEFAULT_CONTENT_BYTES,
            max_file_bytes: None,
        }
    }

    /// Listen on `addr`.
    pub fn with_addr(mut self, addr: SocketAddr) -> Self {
        self.addr = addr;
        self
    }

    /// Expect `api_key` as the bearer token.
    pub fn with_api_key(mut self, api_key: impl Into<String>) -> Self {
        self.api_key = api_key.into();
        self
    }

    /// Inject `faults` from the start.
    pub fn with_faults(mut self, faults: FaultPlan) -> Self {
        self.faults = faults;
        self
    }

    /// Seed the fault decisions and ids.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Change Kimi's file-count cap (long load runs that never delete need more than 1,000).
    pub fn with_max_files(mut self, max_files: usize) -> Self {
        self.max_files = max_files;
        self
    }

    /// Keep the first `bytes` of each stored file for `/content`. A run of tens of thousands of
    /// uploads that never reads `/content` keeps its memory (and its page faults) down with less.
    pub fn with_content_bytes(mut self, bytes: usize) -> Self {
        self.content_bytes = bytes;
        self
    }

    /// Accept files up to `bytes` for every purpose the provider knows, instead of the contract's
    /// per-purpose limits: a benchmark that streams a file larger than any provider accepts measures
    /// the client against this receiver (same parsing, hashing and answers) rather than a second one.
    pub fn with_max_file_bytes(mut self, bytes: u64) -> Self {
        self.max_file_bytes = Some(bytes);
        self
    }
}

impl fmt::Debug for StandInConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StandInConfig")
            .field("flavor", &self.flavor)
            .field("addr", &self.addr)
            .field("api_key", &"<redacted>")
            .field("faults", &self.faults.to_string())
            .field("seed", &self.seed)
            .field("max_files", &self.max_files)
            .field("content_bytes", &self.content_bytes)
            .field("max_file_bytes", &self.max_file_bytes)
            .finish()
    }
}

/// What a stand-in recorded about one stored file.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct StoredFile {
    /// The id the upload response carried.
    pub id: String,
    /// The multipart filename.
    pub filename: String,
    /// The purpose field.
    pub purpose: String,
    /// Size of the file part in bytes.
    pub bytes: u64,
    /// SHA-256 of the file part, lowercase hex.
    pub sha256: String,
    /// Unix seconds when it was stored.
    pub created_at: i64,
}

/// Counters of what a stand-in saw.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct StandInStats {
    /// TCP connections accepted (a client that keeps its connections alive opens few).
    pub connections: u64,
    /// Requests received, all routes.
    pub requests: u64,
    /// Requests by route: `upload`, `list`, `retrieve`, `content`, `delete`, `unknown`.
    pub requests_by_route: BTreeMap<String, u64>,
    /// Faults actually injected, by spec kind (`500`, `429-date`, `reset`, ..., `latency`, `bandwidth`).
    pub faults_by_kind: BTreeMap<String, u64>,
    /// Uploads whose file was stored (including `drop` and `malformed` ones).
    pub uploads_accepted: u64,
    /// Uploads refused by a contract rule (auth, size, purpose, missing field, ...).
    pub uploads_rejected: u64,
    /// Uploads stored and then left without a response (the `drop` fault).
    pub uploads_dropped_after_accept: u64,
}

/// A running Kimi or GLM file-API stand-in. Dropping it stops the server; [`StandIn::shutdown`] also
/// waits for it.
///
///
/// # What a stand-in serves
///
/// Under the base path (`/v1` for Kimi, `/api/paas/v4` for GLM): `POST /files` (multipart `file` with a
/// filename, and `purpose`), `GET /files` (GLM: `purpose`, `after`, `order` = `asc`|`desc` (default
/// `desc`), `limit` 1-100 (default 20), answering `has_more`; Kimi, which documents no list parameters:
/// every file in creation order, honouring `after` and `limit` when a client sends them, always
/// answering `has_more`), `GET /files/{id}`, `GET /files/{id}/content`
/// and `DELETE /files/{id}`. Every route needs `Authorization: Bearer <api_key>`.
///
/// Outside the base path, [`FAULTS_CONTROL_PATH`] (`/_standin/faults`) lets another process change the
/// fault plan at run time, as [`StandIn::set_faults`] does in-process: `GET` answers the plan in force,
/// `PUT` with a plan in the `--faults` syntax as the body replaces it (400 with the parse error for a bad
/// one). It needs the same bearer key and draws no fault decision.
///
/// # Limits and choices where the contract is silent or reads two ways
///
/// - Sizes are 1024-based (`100 MB` = 100 MiB), the lenient reading of the docs.
/// - Kimi: purposes `file-extract`, `image`, `video`, `batch`; 100 MB per file; zero-byte files rejected
///   (`File size is zero`); at most [`StandInConfig::max_files`] stored files (1,000 by default, the
///   account cap), all as 400 `invalid_request_error`.
/// - GLM: purposes `batch` (100 MB), `file-extract` (50 MB, 5 MB for `.png`/`.jpg`/`.jpeg`),
///   `code-interpreter` (20 MB), `agent` (100 MB, the larger of the two documented readings),
///   `voice-clone-input` and `retrieval` (100 MB). Over 100 MB is HTTP 435; over a purpose's limit is 400
///   code `1210`; an unknown purpose is 400 code `1210`; missing fields and bad list parameters are 400
///   code `1214`. Per-purpose file counts and file types are not enforced (the docs give no error for them).
/// - Authentication: a missing or non-bearer header gets Kimi `invalid_authentication_error` / GLM `1001`;
///   a wrong key gets Kimi `incorrect_api_key_error` / GLM `1002`; the `401` fault gets Kimi
///   `invalid_authentication_error` / GLM `1000`.
/// - Unknown file ids are 404 (Kimi `resource_not_found_error`, GLM code `"404"`; undocumented).
/// - The declared `Content-Length` is checked against 100 MB (plus 64 KiB of multipart framing) before
///   the body is read, and the limit is enforced again while streaming; such a rejection closes the
///   connection. Other rejections read the rest of the body first so the client sees the answer.
/// - Bodies are streamed through `multer` and never held whole: each stored file keeps its size, SHA-256
///   and first [`StandInConfig::content_bytes`] (64 KiB by default), which is what `/content` returns (Kimi: `text/plain` extracted text; GLM
///   `file-extract`: `{"content","file_type","filename","title","type":"file"}`; other GLM purposes: the
///   bytes as `application/octet-stream`).
/// - `created_at` is the wall clock's Unix seconds; ids are unique and derived from the seed.
pub struct StandIn {
    shared: Arc<Shared>,
    addr: SocketAddr,
    task: Option<JoinHandle<()>>,
}

impl StandIn {
    /// Bind `config.addr` and serve on the current tokio runtime; returns once the socket listens.
    pub async fn start(config: StandInConfig) -> Result<Self, HarnessError> {
        let listener =
            TcpListener::bind(config.addr)
                .await
                .map_err(|source| HarnessError::Bind {
                    addr: config.addr,
                    source,
                })?;
        let addr = listener.local_addr().map_err(|source| HarnessError::Bind {
            addr: config.addr,
            source,
        })?;
        let shared = Arc::new(Shared::new(&config));
        let task = tokio::spawn(server::serve(listener, Arc::clone(&shared)));
        tracing::debug!(flavor = %config.flavor, %addr, "stand-in listening");
        Ok(Self {
            shared,
            addr,
            task: Some(task),
        })
    }

    /// The base URL a client uses: `http://127.0.0.1:PORT/v1` (Kimi) or `.../api/paas/v4` (GLM).
    pub fn base_url(&self) -> String {
        format!("http://{}{}", self.addr, self.shared.flavor.base_path())
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The imitated provider.
    pub fn flavor(&self) -> Flavor {
        self.shared.flavor
    }

    /// The bearer token requests must carry.
    pub fn api_key(&self) -> &str {
        &self.shared.api_key
    }

    /// The fault plan in force.
    pub fn faults(&self) -> FaultPlan {
        lock(&self.shared.faults).clone()
    }

    /// Replace the fault plan; requests arriving from now on use it. The random sequence continues.
    pub fn set_faults(&self, plan: FaultPlan) {
        *lock(&self.shared.faults) = plan;
    }

    /// Files currently stored, oldest first.
    pub fn stored_files(&self) -> Vec<StoredFile> {
        self.stored_files_since(0).0
    }

    /// Files stored since `cursor`, oldest first, and the cursor to pass next time. Start from 0.
    /// A caller that polls sees each file once, without copying the whole store on every poll.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use upramp_harness::{Flavor, StandIn, StandInConfig};
    ///
    /// let stand_in = StandIn::start(StandInConfig::new(Flavor::Kimi)).await.unwrap();
    /// let (fresh, cursor) = stand_in.stored_files_since(0);
    /// assert!(fresh.is_empty());
    /// assert_eq!(stand_in.stored_files_since(cursor).0.len(), 0);
    /// stand_in.shutdown().await;
    /// # });
    /// ```
    pub fn stored_files_since(&self, cursor: u64) -> (Vec<StoredFile>, u64) {
        let store = lock(&self.shared.store);
        // Entries stay in upload order (deletes remove, never reorder), so their sequence numbers
        // are sorted.
        let first = store.files.partition_point(|entry| entry.seq < cursor);
        let fresh = store.files[first..]
            .iter()
            .map(|entry| entry.file.clone())
            .collect();
        (fresh, store.next_seq)
    }

    /// Counters so far.
    pub fn stats(&self) -> StandInStats {
        lock(&self.shared.stats).clone()
    }

    /// Stop accepting, let in-flight requests finish (stalled ones are cut), and wait for the server.
    pub async fn shutdown(mut self) {
        self.shared.shutdown.cancel();
        if let Some(task) = self.task.take() {
            if let Err(err) = task.await {
                tracing::warn!(error = %err, "stand-in server task failed");
            }
        }
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.shared.shutdown.cancel();
    }
}

impl fmt::Debug for StandIn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StandIn")
            .field("flavor", &self.shared.flavor)
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// State every connection of one stand-in shares.
struct Shared {
    flavor: Flavor,
    api_key: String,
    max_files: usize,
    content_bytes: usize,
    max_file_bytes: Option<u64>,
    faults: Mutex<FaultPlan>,
    fault_rng: Mutex<ChaCha8Rng>,
    store: Mutex<Store>,
    stats: Mutex<StandInStats>,
    shutdown: CancellationToken,
}

impl Shared {
    fn new(config: &StandInConfig) -> Self {
        Self {
            flavor: config.flavor,
            api_key: config.api_key.clone(),
            max_files: config.max_files,
            content_bytes: config.content_bytes,
            max_file_bytes: config.max_file_bytes,
            faults: Mutex::new(config.faults.clone()),
            fault_rng: Mutex::new(ChaCha8Rng::seed_from_u64(config.seed)),
            store: Mutex::new(Store {
                next_seq: 0,
                // A separate stream, so ids do not shift when the fault plan changes.
                id_rng: ChaCha8Rng::seed_from_u64(config.seed ^ 0x6964_735f_7365_6564),
                files: Vec::new(),
            }),
            stats: Mutex::new(StandInStats::default()),
            shutdown: CancellationToken::new(),
        }
    }

    /// Count the request and draw its fault decision. Every request takes exactly two draws in
    /// arrival order, so the same seed and plan give the same decisions for the same request sequence.
    fn admit(&self, route: &'static str, path: Option<PathTarget>) -> FaultDecision {
        {
            let mut stats = lock(&self.stats);
            stats.requests += 1;
            *stats.requests_by_route.entry(route.to_owned()).or_default() += 1;
        }
        let (pick, jitter) = {
            let mut rng = lock(&self.fault_rng);
            (rng.gen::<f64>(), rng.gen::<f64>())
        };
        let mut decision = lock(&self.faults).decide(path, pick, jitter);
        if route != "upload" {
            decision.fault = None;
            decision.bandwidth = None;
        }
        decision
    }

    fn count_fault(&self, kind: &str) {
        *lock(&self.stats)
            .faults_by_kind
            .entry(kind.to_owned())
            .or_default() += 1;
    }

    fn count_injected(&self, fault: InjectedFault) {
        self.count_fault(fault.as_str());
    }

    fn update_stats(&self, update: impl FnOnce(&mut StandInStats)) {
        update(&mut lock(&self.stats));
    }
}

struct Store {
    next_seq: u64,
    id_rng: ChaCha8Rng,
    files: Vec<Entry>,
}

struct Entry {
    /// Upload order: the sequence number in the file's id.
    seq: u64,
    file: StoredFile,
    head: bytes::Bytes,
}

impl Store {
    fn new_id(&mut self, flavor: Flavor) -> String {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        let seq = self.next_seq;
        self.next_seq += 1;
        let random: String = (0..14)
            .map(|_| char::from(ALPHABET[self.id_rng.gen_range(0..ALPHABET.len())]))
            .collect();
        // The sequence number makes ids unique; the random tail makes them look like real ones.
        match flavor {
            Flavor::Kimi => format!("cu{seq:06}{random}"),
            Flavor::Glm => format!("file-{seq:06}{random}"),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks cannot leave the data half-updated in a way that
    // matters for a test double, so keep serving.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
