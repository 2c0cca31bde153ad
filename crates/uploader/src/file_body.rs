//! Reading the file to upload: the pre-flight check, the hashing chunked stream of the async path,
//! the whole-file read of the sync path, and the change detection both share.

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use bytes::Bytes;
use futures::Stream;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::error::UploadError;

/// What a file looked like before the upload began; any difference later means it changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fingerprint {
    pub(crate) len: u64,
    pub(crate) modified: Option<SystemTime>,
}

impl Fingerprint {
    fn of(meta: &std::fs::Metadata) -> Self {
        Self {
            len: meta.len(),
            modified: meta.modified().ok(),
        }
    }

    /// Why `now` differs from `self`, if it does.
    pub(crate) fn change_to(&self, now: &Fingerprint) -> Option<String> {
        if now.len != self.len {
            return Some(format!("size went from {} to {} bytes", self.len, now.len));
        }
        if now.modified != self.modified {
            return Some("modification time moved".to_owned());
        }
        None
    }
}

/// Check that `path` names a non-empty regular file we can open, without reading its contents.
pub(crate) async fn preflight(path: &Path) -> Result<Fingerprint, UploadError> {
    let owned = path.to_path_buf();
    tokio::task::spawn_blocking(move || preflight_blocking(&owned))
        .await
        .map_err(|join| UploadError::Unreadable {
            path: path.to_path_buf(),
            source: io::Error::other(format!("the file check did not finish: {join}")),
        })?
}

// The file-system calls of one step run together in one blocking-pool task: `tokio::fs` would make a
// separate pool hop (two thread switches) for each of them.
fn preflight_blocking(path: &Path) -> Result<Fingerprint, UploadError> {
    let owned = || path.to_path_buf();
    let meta = std::fs::metadata(path).map_err(|err| classify_open_error(path, err))?;
    if meta.is_dir() {
        return Err(UploadError::Directory { path: owned() });
    }
    if !meta.is_file() {
        return Err(UploadError::Unreadable {
            path: owned(),
            source: io::Error::other("not a regular file"),
        });
    }
    // Metadata is readable without read permission; opening proves we can read before anything
    // is sent.
    std::fs::File::open(path).map_err(|err| classify_open_error(path, err))?;
    let fingerprint = Fingerprint::of(&meta);
    if fingerprint.len == 0 {
        return Err(UploadError::Empty { path: owned() });
    }
    Ok(fingerprint)
}

fn classify_open_error(path: &Path, err: io::Error) -> UploadError {
    match err.kind() {
        io::ErrorKind::NotFound => UploadError::NotFound {
            path: path.to_path_buf(),
        },
        _ => UploadError::Unreadable {
            path: path.to_path_buf(),
            source: err,
        },
    }
}

/// An I/O failure while re-reading the file for an attempt, or a detected change.
#[derive(Debug)]
pub(crate) enum ReadFailure {
    /// The file could not be opened or read.
    Io(io::Error),
    /// The file is no longer what the fingerprint describes.
    Changed(String),
}

/// The sync path's read: the whole file in memory, checked against the fingerprint after reading.
/// Blocking; call it on a blocking thread.
pub(crate) fn read_whole(
    path: &Path,
    expected: &Fingerprint,
) -> Result<(Bytes, String), ReadFailure> {
    let mut file = std::fs::File::open(path).map_err(ReadFailure::Io)?;
    let before = Fingerprint::of(&file.metadata().map_err(ReadFailure::Io)?);
    if let Some(change) = expected.change_to(&before) {
        return Err(ReadFailure::Changed(change));
    }
    let capacity = usize::try_from(expected.len).unwrap_or(usize::MAX);
    let mut contents = Vec::with_capacity(capacity);
    io::Read::read_to_end(&mut file, &mut contents).map_err(ReadFailure::Io)?;
    let after = Fingerprint::of(&file.metadata().map_err(ReadFailure::Io)?);
    if let Some(change) = expected.change_to(&after) {
        return Err(ReadFailure::Changed(change));
    }
    if contents.len() as u64 != expected.len {
        return Err(ReadFailure::Changed(format!(
            "read {} bytes of a {}-byte file",
            contents.len(),
            expected.len
        )));
    }
    let sha256 = hex::encode(Sha256::digest(&contents));
    Ok((Bytes::from(contents), sha256))
}

/// Progress of one attempt's body, shared between the stream the transport pulls and the
/// watchdog that enforces the connect and stall timeouts.
#[derive(Debug)]
pub(crate) struct Progress {
    origin: Instant,
    pulled: AtomicU64,
    last_pull_ms: AtomicU64,
    change: Mutex<Option<String>>,
    sha256: Mutex<Option<String>>,
}

impl Progress {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            origin: Instant::now(),
            pulled: AtomicU64::new(0),
            last_pull_ms: AtomicU64::new(0),
            change: Mutex::new(None),
            sha256: Mutex::new(None),
        })
    }

    /// Bytes handed to the transport so far.
    pub(crate) fn pulled(&self) -> u64 {
        self.pulled.load(Ordering::Acquire)
    }

    /// When the transport last took a chunk (the attempt's start until it takes one).
    pub(crate) fn last_pull(&self) -> Instant {
        self.origin + std::time::Duration::from_millis(self.last_pull_ms.load(Ordering::Acquire))
    }

    /// The change the stream detected, if any.
    pub(crate) fn change(&self) -> Option<String> {
        self.change
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The SHA-256 of the whole file, once the stream has read it all and found it unchanged.
    pub(crate) fn sha256(&self) -> Option<String> {
        self.sha256
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn record_pull(&self, len: usize) {
        let elapsed_ms = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.pulled.fetch_add(len as u64, Ordering::AcqRel);
        self.last_pull_ms.store(elapsed_ms, Ordering::Release);
    }

    fn record_change(&self, why: String) -> io::Error {
        let err = io::Error::other(format!("file changed during upload: {why}"));
        *self.change.lock().unwrap_or_else(PoisonError::into_inner) = Some(why);
        err
    }
}

/// The async path's body: the file read in chunks of at most `chunk_size` bytes, hashed as it
/// goes. It yields exactly `expected.len` bytes or an error; before handing over the last chunk it
/// checks that the file has not grown, shrunk or been modified, and that the SHA-256 of every byte
/// is done, so a changed file never completes a request body (the provider sees a broken upload,
/// not a mixed one). Memory: at most [`READ_AHEAD`] chunks waiting for the transport and
/// [`HASH_LAG`] waiting for the hash, whatever the file size.
///
/// One task on tokio's blocking pool reads the file, running up to [`READ_AHEAD`] chunks ahead of
/// the transport, so the runtime's workers never block on the disk or spend time hashing. A file
/// of more than [`READ_AHEAD`] chunks is hashed by a second blocking task beside the reader: each
/// chunk goes to the transport as soon as it is read and, shared, to the hasher, which may lag by
/// up to [`HASH_LAG`] chunks. The hash is the one step that cannot be split over cores (one
/// stream's SHA-256 is sequential), so it gets a thread that does nothing else, and the upload
/// takes about as long as the hash alone. A smaller file is hashed by the reader itself: there is
/// little to overlap, and a second thread per file would double the blocking threads of a batch.
pub(crate) struct HashingFileStream {
    reader: ChunkReader,
    progress: Arc<Progress>,
}

/// Chunks read and hashed ahead of the transport, at most. Four keep the hashing thread busy
/// through the transport's bursts (hyper takes several chunks per socket write).
pub(crate) const READ_AHEAD: usize = 4;

/// Chunks the hasher may fall behind the reader before the reader waits for it. Eight let the
/// transport run ahead through its bursts while the hasher stays busy.
pub(crate) const HASH_LAG: usize = 8;

/// How far a waiting reader lets the hasher catch up before it reads again: it then reads
/// `HASH_LAG - HASH_RESUME` chunks in one go instead of waking for every chunk hashed.
const HASH_RESUME: usize = HASH_LAG / 2;

/// The chunks queued for the hasher, counted so the reader can wait with hysteresis.
#[derive(Default)]
struct Backlog {
    queued: Mutex<usize>,
    drained: std::sync::Condvar,
}

impl Backlog {
    /// The reader's side: wait while the hasher lags by [`HASH_LAG`] chunks, until it is down to
    /// [`HASH_RESUME`]; then count one more.
    fn reserve(&self) {
        let mut queued = self.queued.lock().unwrap_or_else(PoisonError::into_inner);
        if *queued >= HASH_LAG {
            while *queued > HASH_RESUME {
                queued = self
                    .drained
                    .wait(queued)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        }
        *queued += 1;
    }

    /// The hasher's side: one chunk done; wake the reader when the backlog reaches the mark.
    /// Returns whether it signalled.
    fn release(&self) -> bool {
        let mut queued = self.queued.lock().unwrap_or_else(PoisonError::into_inner);
        *queued = queued.saturating_sub(1);
        let at_mark = *queued == HASH_RESUME;
        if at_mark {
            self.drained.notify_one();
        }
        at_mark
    }
}

/// The SHA-256 state of one stream, and who feeds it.
enum Hashing {
    /// The reader hashes each chunk before handing it over.
    Inline(Sha256),
    /// A hasher task of its own takes each chunk after the reader hands it over.
    Beside {
        chunks: std::sync::mpsc::Sender<Bytes>,
        backlog: Arc<Backlog>,
        digest: std::sync::mpsc::Receiver<String>,
    },
}

impl Hashing {
    /// Start the hashing of a file of `len` bytes read in chunks of `chunk_size`: on its own
    /// blocking task when the file has more than [`READ_AHEAD`] chunks. Call it inside the runtime.
    fn start(len: u64, chunk_size: usize) -> Self {
        if len <= (chunk_size as u64).saturating_mul(READ_AHEAD as u64) {
            return Self::Inline(Sha256::new());
        }
        // Unbounded as a channel, bounded by the backlog count the reader waits on.
        let (chunks, to_hash) = std::sync::mpsc::channel::<Bytes>();
        let (finished, digest) = std::sync::mpsc::sync_channel(1);
        let backlog = Arc::new(Backlog::default());
        let hashed = Arc::clone(&backlog);
        tokio::task::spawn_blocking(move || {
            let mut hasher = Sha256::new();
            for chunk in to_hash {
                hasher.update(&chunk);
                // The buffer goes back to the pool before the reader is woken to take one.
                drop(chunk);
                let _ = hashed.release();
            }
            // The reader is gone: after its last chunk, or early (then nobody waits for this).
            let _ = finished.send(hex::encode(hasher.finalize()));
        });
        Self::Beside {
            chunks,
            backlog,
            digest,
        }
    }

    /// Hash `chunk` (inline), or queue it for the hasher, waiting while it lags by [`HASH_LAG`].
    fn feed(&mut self, chunk: &Bytes) -> Result<(), ChunkProblem> {
        match self {
            Self::Inline(hasher) => {
                hasher.update(chunk);
                Ok(())
            }
            Self::Beside {
                chunks, backlog, ..
            } => {
                backlog.reserve();
                chunks.send(chunk.clone()).map_err(|_| hasher_gone())
            }
        }
    }

    /// The digest in lower-case hex, once every chunk has been fed.
    fn finish(self) -> Result<String, ChunkProblem> {
        match self {
            Self::Inline(hasher) => Ok(hex::encode(hasher.finalize())),
            Self::Beside { chunks, digest, .. } => {
                // Closing the queue is what tells the hasher the file is complete.
                drop(chunks);
                digest.recv().map_err(|_| hasher_gone())
            }
        }
    }
}

fn hasher_gone() -> ChunkProblem {
    ChunkProblem::Io(io::Error::other("the hashing task stopped early"))
}

/// The state the reading task owns.
struct ChunkReader {
    file: std::fs::File,
    expected: Fingerprint,
    chunk_size: usize,
    pool: BufferPool,
}

/// The reading task's chunk buffers: each goes back to `spare` when the transport drops the last
/// handle to its chunk, and is reused for a later chunk: in steady state no allocation, page
/// fault or zero-fill per chunk.
struct BufferPool {
    home: std::sync::mpsc::Sender<Vec<u8>>,
    spare: std::sync::mpsc::Receiver<Vec<u8>>,
}

impl BufferPool {
    fn new() -> Self {
        let (home, spare) = std::sync::mpsc::channel();
        Self { home, spare }
    }

    /// A buffer of at least `size` bytes: a returned one, else a new one. It never waits for a
    /// buffer to come back: a consumer may keep its chunks (a test collecting the body), and the
    /// chunk channel's capacity, not the pool, is what bounds the read-ahead.
    fn take(&mut self, size: usize) -> Vec<u8> {
        let mut buffer = match self.spare.try_recv() {
            Ok(buffer) => buffer,
            // `vec!` of zeroes asks the allocator for zeroed memory: no separate fill.
            Err(_) => return vec![0u8; size],
        };
        if buffer.len() < size {
            buffer.resize(size, 0);
        }
        buffer
    }

    /// `buffer[..len]` as a chunk whose buffer returns here once sent.
    fn chunk(&self, buffer: Vec<u8>, len: usize) -> Bytes {
        Bytes::from_owner(PooledBuffer {
            data: buffer,
            len,
            home: self.home.clone(),
        })
    }
}

/// A chunk's buffer, back to its pool when dropped (or freed, if the reading task has ended).
struct PooledBuffer {
    data: Vec<u8>,
    len: usize,
    home: std::sync::mpsc::Sender<Vec<u8>>,
}

impl AsRef<[u8]> for PooledBuffer {
    fn as_ref(&self) -> &[u8] {
        &self.data[..self.len]
    }
}

impl Drop for PooledBuffer {
    fn drop(&mut self) {
        let _ = self.home.send(std::mem::take(&mut self.data));
    }
}

/// Why a chunk could not be produced.
enum ChunkProblem {
    Io(io::Error),
    Changed(String),
}

/// What the reading task hands to the stream, in file order.
enum Piece {
    /// A chunk that is not the last.
    Chunk(Bytes),
    /// The last chunk, held back until [`FinalCheck::run`] proves the file unchanged.
    Last(Bytes, FinalCheck),
}

/// The end-of-file and metadata check, run when the transport asks for the last chunk (not when
/// it was read ahead), so a file changed while its earlier chunks were being sent still fails.
struct FinalCheck {
    file: std::fs::File,
    expected: Fingerprint,
    hashing: Hashing,
}

impl FinalCheck {
    /// Proves the file still ends where it did and is unchanged; returns its SHA-256 in hex.
    fn run(mut self) -> Result<String, ChunkProblem> {
        let mut probe = [0u8; 1];
        if io::Read::read(&mut self.file, &mut probe).map_err(ChunkProblem::Io)? != 0 {
            return Err(ChunkProblem::Changed(format!(
                "it grew past its {} bytes",
                self.expected.len
            )));
        }
        let now = Fingerprint::of(&self.file.metadata().map_err(ChunkProblem::Io)?);
        if let Some(why) = self.expected.change_to(&now) {
            return Err(ChunkProblem::Changed(why));
        }
        self.hashing.finish()
    }
}

impl ChunkReader {
    /// Reads the next `want` bytes into `buffer` (one `read` call when the disk keeps up).
    fn read(&mut self, buffer: &mut [u8], offset: u64) -> Result<(), ChunkProblem> {
        let mut filled = 0;
        while filled < buffer.len() {
            match io::Read::read(&mut self.file, &mut buffer[filled..]) {
                Ok(0) => {
                    return Err(ChunkProblem::Changed(format!(
                        "it ended after {} of {} bytes",
                        offset + filled as u64,
                        self.expected.len
                    )))
                }
                Ok(read) => filled += read,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(ChunkProblem::Io(err)),
            }
        }
        Ok(())
    }

    /// Reads the whole file into `pieces` and `hashing`, stopping at the first problem or when the
    /// stream has gone (the upload was dropped). Runs on a blocking-pool thread.
    fn run(
        mut self,
        mut hashing: Hashing,
        pieces: &tokio::sync::mpsc::Sender<Result<Piece, ChunkProblem>>,
    ) {
        let mut remaining = self.expected.len;
        loop {
            let want = remaining.min(self.chunk_size as u64) as usize;
            let offset = self.expected.len - remaining;
            let mut buffer = self.pool.take(want);
            let chunk = self
                .read(&mut buffer[..want], offset)
                .map(|()| self.pool.chunk(buffer, want))
                .and_then(|chunk| hashing.feed(&chunk).map(|()| chunk));
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(problem) => {
                    let _ = pieces.blocking_send(Err(problem));
                    return;
                }
            };
            remaining -= want as u64;
            if remaining == 0 {
                let check = FinalCheck {
                    file: self.file,
                    expected: self.expected,
                    hashing,
                };
                let _ = pieces.blocking_send(Ok(Piece::Last(chunk, check)));
                return;
            }
            if pieces.blocking_send(Ok(Piece::Chunk(chunk))).is_err() {
                return;
            }
        }
    }
}

impl HashingFileStream {
    /// Open `path` again for a fresh attempt and check it still matches `expected`.
    pub(crate) async fn open(
        path: &Path,
        expected: Fingerprint,
        chunk_size: usize,
        progress: Arc<Progress>,
    ) -> Result<Self, ReadFailure> {
        let path = path.to_path_buf();
        let file = tokio::task::spawn_blocking(move || {
            let file = std::fs::File::open(&path).map_err(ReadFailure::Io)?;
            let now = Fingerprint::of(&file.metadata().map_err(ReadFailure::Io)?);
            match expected.change_to(&now) {
                Some(change) => Err(ReadFailure::Changed(change)),
                None => Ok(file),
            }
        })
        .await
        .map_err(|join| ReadFailure::Io(io::Error::other(join)))??;
        Ok(Self {
            reader: ChunkReader {
                file,
                expected,
                chunk_size: chunk_size.max(1),
                pool: BufferPool::new(),
            },
            progress,
        })
    }

    /// Turn the reader into the chunk stream the provider's body takes. Reading starts when the
    /// transport first polls the body (a request that never gets to send reads nothing);
    /// dropping the stream stops the reading task at its next chunk.
    pub(crate) fn into_stream(self) -> impl Stream<Item = io::Result<Bytes>> + Send + 'static {
        let Self { reader, progress } = self;
        let (sender, receiver) = tokio::sync::mpsc::channel(READ_AHEAD);
        let mut unstarted = Some((reader, sender));
        futures::stream::try_unfold(
            (receiver, progress, false),
            move |(mut receiver, progress, done)| {
                if let Some((reader, sender)) = unstarted.take() {
                    let hashing = Hashing::start(reader.expected.len, reader.chunk_size);
                    tokio::task::spawn_blocking(move || reader.run(hashing, &sender));
                }
                async move {
                    if done {
                        return Ok(None);
                    }
                    let piece = receiver
                        .recv()
                        .await
                        .ok_or_else(|| io::Error::other("the file reader stopped early"))?;
                    let problem = |problem| match problem {
                        ChunkProblem::Io(err) => err,
                        ChunkProblem::Changed(why) => progress.record_change(why),
                    };
                    let (chunk, last) = match piece.map_err(problem)? {
                        Piece::Chunk(chunk) => (chunk, false),
                        Piece::Last(chunk, check) => {
                            let digest = tokio::task::spawn_blocking(move || check.run())
                                .await
                                .map_err(io::Error::other)?
                                .map_err(problem)?;
                            *progress
                                .sha256
                                .lock()
                                .unwrap_or_else(PoisonError::into_inner) = Some(digest);
                            (chunk, true)
                        }
                    };
                    progress.record_pull(chunk.len());
                    Ok(Some((chunk, (receiver, progress, last))))
                }
            },
        )
    }
}

/// The SHA-256 of `bytes` as lower-case hex, for checking the stream in tests.
#[cfg(test)]
pub(crate) fn sha256_of(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use futures::TryStreamExt;
    use proptest::prelude::*;

    async fn collect(path: &Path, chunk: usize) -> (Result<Vec<Bytes>, io::Error>, Arc<Progress>) {
        let fp = preflight(path).await.unwrap();
        let progress = Progress::new();
        let stream = HashingFileStream::open(path, fp, chunk, progress.clone())
            .await
            .unwrap()
            .into_stream();
        (stream.try_collect().await, progress)
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        #[test]
        fn stream_yields_the_file_in_bounded_chunks_with_its_hash(
            contents in proptest::collection::vec(any::<u8>(), 1..20_000),
            chunk in 1usize..5_000,
        ) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("f.bin");
            std::fs::write(&path, &contents).unwrap();
            let (chunks, progress) = runtime().block_on(collect(&path, chunk));
            let chunks = chunks.unwrap();
            prop_assert!(chunks.iter().all(|c| !c.is_empty() && c.len() <= chunk));
            let joined: Vec<u8> = chunks.concat();
            prop_assert_eq!(&joined, &contents);
            prop_assert_eq!(progress.pulled(), contents.len() as u64);
            prop_assert_eq!(progress.sha256(), Some(sha256_of(&contents)));
            prop_assert_eq!(progress.change(), None);
        }
    }

    // 10,000 bytes in chunks of 4,096 are 3 chunks, hashed by the reader; in chunks of 1,024 they
    // are 10, more than READ_AHEAD, hashed beside it.
    #[tokio::test]
    async fn a_file_that_grows_mid_stream_fails_before_its_last_chunk() {
        for chunk in [4_096, 1_024] {
            a_file_that_grows_fails_before_its_last_chunk(chunk).await;
        }
    }

    async fn a_file_that_grows_fails_before_its_last_chunk(chunk: usize) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("grows.txt");
        std::fs::write(&path, vec![b'a'; 10_000]).unwrap();
        let fp = preflight(&path).await.unwrap();
        let progress = Progress::new();
        let mut stream = Box::pin(
            HashingFileStream::open(&path, fp, chunk, progress.clone())
                .await
                .unwrap()
                .into_stream(),
        );
        let first = stream.try_next().await.unwrap().unwrap();
        assert_eq!(first.len(), chunk);
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        io::Write::write_all(&mut file, b"more").unwrap();
        let mut delivered = first.len();
        let err = loop {
            match stream.try_next().await {
                Ok(Some(chunk)) => delivered += chunk.len(),
                Ok(None) => panic!("a changed file must not complete"),
                Err(err) => break err,
            }
        };
        assert!(delivered < 10_000, "the last chunk was handed over");
        assert!(err.to_string().contains("changed"), "{err}");
        assert!(progress.change().is_some());
        assert_eq!(progress.sha256(), None);
    }

    #[test]
    fn both_ways_of_hashing_give_the_digest_of_the_file() {
        let contents: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.bin");
        std::fs::write(&path, &contents).unwrap();
        // 50,000 bytes: one chunk of 65,536 (the reader hashes), 49 of 1,024 (a hasher beside).
        for chunk in [65_536, 1_024] {
            assert_eq!(
                matches!(
                    runtime().block_on(async { Hashing::start(50_000, chunk) }),
                    Hashing::Beside { .. }
                ),
                chunk == 1_024
            );
            let (chunks, progress) = runtime().block_on(collect(&path, chunk));
            assert_eq!(chunks.unwrap().concat(), contents);
            assert_eq!(progress.sha256(), Some(sha256_of(&contents)));
        }
    }

    #[test]
    fn the_hasher_wakes_a_waiting_reader_once_per_half_backlog() {
        let backlog = Arc::new(Backlog::default());
        for _ in 0..HASH_LAG {
            backlog.reserve();
        }
        let (reserved, returned) = std::sync::mpsc::channel();
        let reader = {
            let backlog = Arc::clone(&backlog);
            std::thread::spawn(move || {
                backlog.reserve();
                let _ = reserved.send(());
            })
        };
        let signals: Vec<bool> = (0..HASH_LAG - HASH_RESUME)
            .map(|_| backlog.release())
            .collect();
        let mut expected = vec![false; HASH_LAG - HASH_RESUME - 1];
        expected.push(true);
        assert_eq!(signals, expected, "one signal, at the resume mark");
        returned
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("the waiting reader was not woken at the resume mark");
        reader.join().unwrap();
        assert_eq!(*backlog.queued.lock().unwrap(), HASH_RESUME + 1);
    }

    // Dropping the body mid-file (the upload was cancelled or timed out) must end the reader and
    // the hasher, else every cancelled upload would keep two blocking threads and a file open.
    // A runtime's shutdown waits for its blocking tasks, so a stuck one would stall it forever.
    #[test]
    fn dropping_the_stream_mid_file_ends_the_reader_and_the_hasher() {
        let contents = vec![7u8; 200_000];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.bin");
        std::fs::write(&path, &contents).unwrap();
        let (shut_down, finished) = std::sync::mpsc::channel();
        let rt = runtime();
        rt.block_on(async {
            let fp = preflight(&path).await.unwrap();
            let mut stream = Box::pin(
                HashingFileStream::open(&path, fp, 1_024, Progress::new())
                    .await
                    .unwrap()
                    .into_stream(),
            );
            // Let the reader fill both queues, so each thread is blocked on a full one.
            for _ in 0..3 {
                stream.try_next().await.unwrap().unwrap();
            }
        });
        std::thread::spawn(move || {
            drop(rt);
            let _ = shut_down.send(());
        });
        finished
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("the runtime's blocking tasks did not end after the stream was dropped");
    }

    #[tokio::test]
    async fn a_file_that_shrinks_is_a_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shrinks.txt");
        std::fs::write(&path, vec![b'a'; 10_000]).unwrap();
        let fp = preflight(&path).await.unwrap();
        let progress = Progress::new();
        let stream = HashingFileStream::open(&path, fp, 4_096, progress.clone())
            .await
            .unwrap()
            .into_stream();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(5_000)
            .unwrap();
        let result: Result<Vec<Bytes>, _> = stream.try_collect().await;
        assert!(result.is_err());
        assert!(progress.change().unwrap().contains("ended after"));
    }

    #[tokio::test]
    async fn preflight_names_each_bad_input() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pdf");
        assert!(matches!(
            preflight(&missing).await,
            Err(UploadError::NotFound { .. })
        ));
        assert!(matches!(
            preflight(dir.path()).await,
            Err(UploadError::Directory { .. })
        ));
        let empty = dir.path().join("empty.txt");
        std::fs::write(&empty, b"").unwrap();
        assert!(matches!(
            preflight(&empty).await,
            Err(UploadError::Empty { .. })
        ));
    }

    #[test]
    fn read_whole_detects_a_different_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.txt");
        std::fs::write(&path, b"hello").unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        let fp = Fingerprint::of(&meta);
        let (bytes, sha) = read_whole(&path, &fp).unwrap();
        assert_eq!(&bytes[..], b"hello");
        assert_eq!(sha, sha256_of(b"hello"));
        std::fs::write(&path, b"hello, world").unwrap();
        assert!(matches!(
            read_whole(&path, &fp),
            Err(ReadFailure::Changed(_))
        ));
    }
}
