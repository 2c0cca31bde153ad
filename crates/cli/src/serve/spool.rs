//! The spool: request bodies on disk under generated names, bounded in total bytes, each file
//! removed when its request ends, whatever way it ends.
//!
//! One gateway owns a spool directory at a time (an exclusive `flock` on `.lock` in it), so the
//! stale files a crashed gateway left behind can be removed at start without touching a live
//! neighbour's. Without `--spool-dir` the gateway takes the first free numbered directory under
//! `$TMPDIR/upramp-serve/`.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{anyhow, Context};
use nix::fcntl::{Flock, FlockArg};

/// Prefix and suffix of every spool file name; nothing else in the directory is ever removed.
const SPOOL_PREFIX: &str = "upramp-spool-";
const SPOOL_SUFFIX: &str = ".part";
/// Numbered default directories tried before giving up.
const DEFAULT_SLOTS: u32 = 64;

/// A locked spool directory and its byte budget.
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    used: AtomicU64,
    sequence: AtomicU64,
    full_refusals: AtomicU64,
    _lock: Flock<File>,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool")
            .field("dir", &self.dir)
            .field("max_bytes", &self.max_bytes)
            .finish_non_exhaustive()
    }
}

/// The spool has no room for the bytes a request needs.
#[derive(Debug, Clone, Copy)]
pub struct SpoolFull;

impl Spool {
    /// Lock `dir` (or a free default directory), remove stale spool files, and return the spool
    /// with the number of stale files removed.
    pub fn open(dir: Option<&Path>, max_bytes: u64) -> anyhow::Result<(Arc<Self>, usize)> {
        let (dir, lock) = match dir {
            Some(dir) => {
                let lock = try_lock(dir)?.ok_or_else(|| {
                    anyhow!(
                        "--spool-dir {}: in use by another upramp serve (its .lock is held)",
                        dir.display()
                    )
                })?;
                (dir.to_owned(), lock)
            }
            None => default_dir()?,
        };
        let spool = Spool {
            dir,
            max_bytes,
            used: AtomicU64::new(0),
            sequence: AtomicU64::new(0),
            full_refusals: AtomicU64::new(0),
            _lock: lock,
        };
        let removed = spool.sweep();
        Ok((Arc::new(spool), removed))
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The byte budget.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Bytes reserved by requests in progress.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// How many requests were refused because the spool was full.
    pub fn full_refusals(&self) -> u64 {
        self.full_refusals.load(Ordering::Relaxed)
    }

    /// Remove every spool file in the directory (at start: a crashed run's; at exit: anything a
    /// cut request left). Returns how many were removed.
    pub fn sweep(&self) -> usize {
        let Ok(entries) = spool_entries(&self.dir) else {
            return 0;
        };
        entries
            .into_iter()
            .filter(|path| match std::fs::remove_file(path) {
                Ok(()) => true,
                Err(err) if err.kind() == io::ErrorKind::NotFound => false,
                Err(err) => {
                    tracing::warn!(file = %path.display(), error = %err, "cannot remove a spool file");
                    false
                }
            })
            .count()
    }

    /// Create a new, empty spool file under a generated name.
    pub async fn create(self: &Arc<Self>) -> io::Result<(SpoolFile, tokio::fs::File)> {
        let sequence = self.sequence.fetch_add(1, Ordering::Relaxed);
        let name = format!(
            "{SPOOL_PREFIX}{}-{sequence}{SPOOL_SUFFIX}",
            std::process::id()
        );
        let path = self.dir.join(name);
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await?;
        Ok((SpoolFile { path }, file))
    }

    /// An empty reservation against the budget.
    pub fn reservation(self: &Arc<Self>) -> Reservation {
        Reservation {
            spool: Arc::clone(self),
            bytes: 0,
        }
    }
}

fn try_lock(dir: &Path) -> anyhow::Result<Option<Flock<File>>> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("--spool-dir {}: cannot create it", dir.display()))?;
    let lock_path = dir.join(".lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("--spool-dir {}: cannot open its .lock", dir.display()))?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(Some(lock)),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, errno)) => Err(anyhow!(
            "--spool-dir {}: cannot lock its .lock: {errno}",
            dir.display()
        )),
    }
}

fn default_dir() -> anyhow::Result<(PathBuf, Flock<File>)> {
    let root = std::env::temp_dir().join("upramp-serve");
    for slot in 0..DEFAULT_SLOTS {
        let dir = root.join(slot.to_string());
        if let Some(lock) = try_lock(&dir)? {
            return Ok((dir, lock));
        }
    }
    Err(anyhow!(
        "no free spool directory under {} ({DEFAULT_SLOTS} in use); pass --spool-dir",
        root.display()
    ))
}

fn spool_entries(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(SPOOL_PREFIX) && name.ends_with(SPOOL_SUFFIX) {
            found.push(entry.path());
        }
    }
    Ok(found)
}

/// Bytes held against the spool budget; released when dropped.
#[derive(Debug)]
pub struct Reservation {
    spool: Arc<Spool>,
    bytes: u64,
}

impl Reservation {
    /// Hold `total` bytes in all (never less than already held).
    pub fn grow_to(&mut self, total: u64) -> Result<(), SpoolFull> {
        if total <= self.bytes {
            return Ok(());
        }
        let extra = total - self.bytes;
        let grown = self
            .spool
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(extra)
                    .filter(|&next| next <= self.spool.max_bytes)
            });
        match grown {
            Ok(_) => {
                self.bytes = total;
                Ok(())
            }
            Err(_) => {
                self.spool.full_refusals.fetch_add(1, Ordering::Relaxed);
                Err(SpoolFull)
            }
        }
    }

    /// Hold only `total` bytes (release the rest).
    pub fn shrink_to(&mut self, total: u64) {
        if total < self.bytes {
            self.spool
                .used
                .fetch_sub(self.bytes - total, Ordering::AcqRel);
            self.bytes = total;
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.spool.used.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// One spool file; removed from disk when dropped.
#[derive(Debug)]
pub struct SpoolFile {
    path: PathBuf,
}

impl SpoolFile {
    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SpoolFile {
    fn drop(&mut self) {
        match std::fs::remove_file(&self.path) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => {
                tracing::warn!(file = %self.path.display(), error = %err, "cannot remove a spool file");
            }
        }
    }
}
