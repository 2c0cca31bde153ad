//! [`FlagStore`]: lock-free live snapshots of one flag, updated in code or reloaded from its file.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::cache::Cache;
use arc_swap::ArcSwap;
use notify::{EventKind, RecursiveMode, Watcher};

use crate::{
    ConfigError, EnvSource, FieldOrigins, FlagConfig, FlagSources, Percent, PreparedFlag,
    ResolvedFlag, RouteDecision,
};

/// How long the watcher waits for a burst of file events to settle before reloading.
pub const WATCH_DEBOUNCE: Duration = Duration::from_millis(50);

/// A cheap-to-clone handle on one flag's current configuration.
///
/// Reads ([`snapshot`](Self::snapshot), [`evaluate`](Self::evaluate)) are lock-free; writers swap a whole
/// new [`FlagConfig`] in. A store built [`from_sources`](Self::from_sources) can re-resolve them
/// ([`reload_now`](Self::reload_now)) and [`watch_file`](Self::watch_file) its file: a reload that fails keeps the last
/// good snapshot, logs a warning and counts the error in [`reload_errors`](Self::reload_errors).
///
/// ```
/// use upramp_flags::{Route, FlagConfig, FlagStore, Percent};
///
/// let mut flag = FlagConfig::new("async_upload");
/// flag.enabled = true;
/// let store = FlagStore::new(flag);
/// assert_eq!(store.evaluate("tenant-7").route, Route::Sync);
/// store.set_rollout(Percent::HUNDRED);
/// assert_eq!(store.evaluate("tenant-7").route, Route::Async);
/// ```
#[derive(Debug, Clone)]
pub struct FlagStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The configuration, prepared so each evaluation hashes only the key.
    current: ArcSwap<PreparedFlag>,
    origins: ArcSwap<FieldOrigins>,
    /// Held while resolving and swapping, so a reload and a code update never interleave.
    sources: Mutex<Option<Reloadable>>,
    reload_errors: AtomicU64,
    reload_attempts: Mutex<u64>,
    reload_attempted: Condvar,
}

/// A [`FlagStore`] reader that keeps its last snapshot: see [`FlagStore::reader`].
pub struct FlagReader {
    cache: Cache<Current, Arc<PreparedFlag>>,
}

impl FlagReader {
    /// Evaluate `key` against the store's current configuration (lock-free, no allocation).
    #[inline]
    pub fn evaluate(&mut self, key: &str) -> RouteDecision {
        self.cache.load().evaluate(key)
    }

    /// The current configuration.
    pub fn snapshot(&mut self) -> Arc<FlagConfig> {
        Arc::clone(self.cache.load().config())
    }
}

impl std::fmt::Debug for FlagReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlagReader").finish_non_exhaustive()
    }
}

/// The store's live snapshot slot, owned, as [`Cache`] wants it.
struct Current(Arc<Inner>);

impl std::ops::Deref for Current {
    type Target = ArcSwap<PreparedFlag>;

    fn deref(&self) -> &Self::Target {
        &self.0.current
    }
}

#[derive(Debug)]
struct Reloadable {
    sources: FlagSources,
    env: EnvSource,
}

impl FlagStore {
    /// A store holding `config`, with no sources to reload from.
    pub fn new(config: FlagConfig) -> Self {
        Self::build(config, FieldOrigins::default(), None)
    }

    /// Resolve `sources` (file, `env`, overrides) into a store that can reload and watch them.
    pub fn from_sources(sources: FlagSources, env: EnvSource) -> Result<Self, ConfigError> {
        let ResolvedFlag { config, origins } = sources.resolve(&env)?;
        Ok(Self::build(
            config,
            origins,
            Some(Reloadable { sources, env }),
        ))
    }

    fn build(config: FlagConfig, origins: FieldOrigins, sources: Option<Reloadable>) -> Self {
        Self {
            inner: Arc::new(Inner {
                current: ArcSwap::from_pointee(PreparedFlag::new(config)),
                origins: ArcSwap::from_pointee(origins),
                sources: Mutex::new(sources),
                reload_errors: AtomicU64::new(0),
                reload_attempts: Mutex::new(0),
                reload_attempted: Condvar::new(),
            }),
        }
    }

    /// The current configuration (lock-free).
    pub fn snapshot(&self) -> Arc<FlagConfig> {
        Arc::clone(self.inner.current.load().config())
    }

    /// Where each field of the current configuration came from.
    pub fn origins(&self) -> Arc<FieldOrigins> {
        self.inner.origins.load_full()
    }

    /// Evaluate `key` against the current configuration (lock-free, no allocation).
    #[inline]
    pub fn evaluate(&self, key: &str) -> RouteDecision {
        self.inner.current.load().evaluate(key)
    }

    /// A reader for one thread or task that evaluates many keys: it keeps the snapshot it last saw
    /// and only checks, with one atomic load, that no newer one was swapped in. Cheaper per
    /// evaluation than [`evaluate`](Self::evaluate), which takes a fresh guard on the snapshot each time.
    ///
    /// ```
    /// use upramp_flags::{Route, FlagConfig, FlagStore, Percent};
    ///
    /// let mut flag = FlagConfig::new("async_upload");
    /// flag.enabled = true;
    /// let store = FlagStore::new(flag);
    /// let mut reader = store.reader();
    /// assert_eq!(reader.evaluate("tenant-7").route, Route::Sync);
    /// store.set_rollout(Percent::HUNDRED);
    /// // The reader sees the change on its next evaluation.
    /// assert_eq!(reader.evaluate("tenant-7").route, Route::Async);
    /// ```
    pub fn reader(&self) -> FlagReader {
        FlagReader {
            cache: Cache::new(Current(Arc::clone(&self.inner))),
        }
    }

    /// Set the rollout percentage. It is recorded as a code override, so it survives file reloads.
    pub fn set_rollout(&self, rollout: Percent) {
        let mut sources = self.lock_sources();
        if let Some(reloadable) = sources.as_mut() {
            reloadable.sources.overrides.rollout = Some(rollout);
        }
        let mut config = FlagConfig::clone(self.inner.current.load().config());
        config.rollout = rollout;
        self.inner
            .current
            .store(Arc::new(PreparedFlag::new(config)));
        let mut origins = FieldOrigins::clone(&self.inner.origins.load());
        origins.rollout = crate::Origin::Override;
        self.inner.origins.store(Arc::new(origins));
    }

    /// Swap in a whole configuration as is. A later reload re-resolves the sources and replaces it; use
    /// [`set_rollout`](Self::set_rollout) for a change that must survive reloads.
    pub fn replace(&self, config: FlagConfig) {
        let _sources = self.lock_sources();
        self.inner
            .current
            .store(Arc::new(PreparedFlag::new(config)));
        self.inner.origins.store(Arc::new(FieldOrigins {
            enabled: crate::Origin::Override,
            rollout: crate::Origin::Override,
            fallback: crate::Origin::Override,
            salt: crate::Origin::Override,
            max_retries: crate::Origin::Override,
            timeout: crate::Origin::Override,
            strategy: crate::Origin::Override,
        }));
    }

    /// Re-resolve the sources now and swap the result in. On error the last good snapshot stays, the
    /// error is logged and counted, and returned.
    pub fn reload_now(&self) -> Result<Arc<FlagConfig>, ConfigError> {
        let sources = self.lock_sources();
        let Some(reloadable) = sources.as_ref() else {
            return Err(ConfigError::NoFile {
                flag: self.inner.current.load().config().name.clone(),
            });
        };
        let result = reloadable.sources.resolve(&reloadable.env);
        let outcome = match result {
            Ok(ResolvedFlag { config, origins }) => {
                let config = Arc::new(config);
                self.inner
                    .current
                    .store(Arc::new(PreparedFlag::new(Arc::clone(&config))));
                self.inner.origins.store(Arc::new(origins));
                tracing::info!(flag = %config.name, rollout = %config.rollout, enabled = config.enabled, "flags reloaded");
                Ok(config)
            }
            Err(err) => {
                self.inner.reload_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %err, "flags reload failed; keeping the last good configuration");
                Err(err)
            }
        };
        drop(sources);
        let mut attempts = self
            .inner
            .reload_attempts
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *attempts += 1;
        self.inner.reload_attempted.notify_all();
        outcome
    }

    /// How many reloads failed since the store was created.
    pub fn reload_errors(&self) -> u64 {
        self.inner.reload_errors.load(Ordering::Relaxed)
    }

    /// How many reloads (successful or not) ran since the store was created.
    pub fn reload_attempts(&self) -> u64 {
        *self
            .inner
            .reload_attempts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Block until at least `count` reloads have run in total, or `timeout` passes; returns whether they
    /// did. Lets callers (and tests) wait for the watcher without sleeping.
    pub fn wait_for_reload_attempts(&self, count: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut attempts = self
            .inner
            .reload_attempts
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        while *attempts < count {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            attempts = self
                .inner
                .reload_attempted
                .wait_timeout(attempts, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }

    /// Watch the sources' file and reload whenever it changes, until the returned guard is dropped.
    ///
    /// The file's directory is watched (not the file itself), so editors and atomic writers that replace
    /// the file by a rename are seen too, and so is the Kubernetes ConfigMap update (the file is a
    /// symlink into `..data`, itself a symlink swapped by a rename).
    pub fn watch_file(&self) -> Result<WatchGuard, ConfigError> {
        let path = {
            let sources = self.lock_sources();
            sources.as_ref().and_then(|r| r.sources.file.clone())
        };
        let Some(path) = path else {
            return Err(ConfigError::NoFile {
                flag: self.inner.current.load().config().name.clone(),
            });
        };
        let watch_error = |err: notify::Error| ConfigError::Watch {
            path: path.clone(),
            message: err.to_string(),
        };
        // The file itself, and, when it is a symlink into a sibling directory (the Kubernetes
        // ConfigMap mount: `flags.toml -> ..data/flags.toml`, `..data` swapped by a rename), that
        // sibling's name: the swap's events name only `..data`, never the file.
        let mut names: Vec<std::ffi::OsString> = path
            .file_name()
            .map(ToOwned::to_owned)
            .into_iter()
            .collect();
        if let Ok(target) = std::fs::read_link(&path) {
            let mut components = target.components();
            if let (Some(std::path::Component::Normal(first)), Some(_)) =
                (components.next(), components.next())
            {
                names.push(first.to_owned());
            }
        }
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
            _ => PathBuf::from("."),
        };
        let (changed_tx, changed_rx) = std::sync::mpsc::channel::<()>();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
                Ok(event) => {
                    let relevant =
                        matches!(event.kind, EventKind::Create(_) | EventKind::Modify(_))
                            && event.paths.iter().any(|p| {
                                p.file_name().is_some_and(|n| names.iter().any(|w| w == n))
                            });
                    if relevant {
                        // The worker is gone only while the guard is being dropped.
                        let _ = changed_tx.send(());
                    }
                }
                Err(err) => tracing::warn!(error = %err, "flags file watcher error"),
            })
            .map_err(watch_error)?;
        watcher
            .watch(&dir, RecursiveMode::NonRecursive)
            .map_err(watch_error)?;
        let store = self.clone();
        let worker = std::thread::Builder::new()
            .name("upramp-flags-watch".to_owned())
            .spawn(move || {
                while changed_rx.recv().is_ok() {
                    // An in-place write is a truncate then a write: coalesce the burst so the reload reads
                    // the final content rather than an empty file.
                    while changed_rx.recv_timeout(WATCH_DEBOUNCE).is_ok() {}
                    // Errors are already logged and counted by reload_now.
                    let _ = store.reload_now();
                }
            })
            .map_err(|err| ConfigError::Watch {
                path: path.clone(),
                message: err.to_string(),
            })?;
        Ok(WatchGuard {
            watcher: Some(Box::new(watcher)),
            worker: Some(worker),
            path,
        })
    }

    fn lock_sources(&self) -> MutexGuard<'_, Option<Reloadable>> {
        self.inner
            .sources
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Keeps a [`FlagStore::watch_file`] running; dropping it stops watching.
pub struct WatchGuard {
    watcher: Option<Box<dyn Watcher + Send>>,
    worker: Option<std::thread::JoinHandle<()>>,
    path: PathBuf,
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        // Dropping the watcher closes the channel, which ends the worker after any reload in progress.
        drop(self.watcher.take());
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

impl WatchGuard {
    /// The watched file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl std::fmt::Debug for WatchGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchGuard")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}
