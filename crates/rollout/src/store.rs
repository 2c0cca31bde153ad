//! The state store: the controller's state as a JSON file, replaced atomically, written only by
//! compare-and-swap on its generation, and owned by at most one running controller.
//!
//! Two advisory locks (`flock`) sit next to the state file:
//! - `<state>.lock` is the **owner lock**, held by `upramp rollout run` for its whole life, with the
//!   holder's pid written inside; a second controller is refused with that pid
//!   ([`StateStore::acquire_owner`]).
//! - `<state>.commit.lock` is the **commit lock**, held only for the few milliseconds of one commit
//!   (load, compare the generation, save, audit, apply), by the controller and by operators' manual
//!   commands alike ([`StateStore::lock_commits`]). A metrics read never holds it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use thiserror::Error;

use crate::state::ControllerState;

/// Prefix of the temporary files a state save creates next to the state file.
pub const STATE_TEMP_PREFIX: &str = ".upramp-state-";

/// The state file could not be read or written. A corrupt file is never replaced by a fresh state.
#[derive(Debug, Error)]
pub enum StateError {
    /// No file at the path.
    #[error(
        "state file {path} does not exist (create it with `upramp rollout init --state {path}`)"
    )]
    Missing {
        /// The file.
        path: PathBuf,
    },
    /// The file exists but could not be read.
    #[error("state file {path}: cannot read: {message}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        message: String,
    },
    /// The file is not a valid controller state; it was left untouched.
    #[error("state file {path} is corrupt and was left untouched: {message}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Writing the new state failed; the previous file is still in place.
    #[error("state file {path}: cannot write: {message}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The OS error.
        message: String,
    },
    /// `create` found a file already there.
    #[error("state file {path} already exists; refusing to overwrite a rollout in progress")]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// Someone committed since this decision's state was loaded; the decision was discarded.
    #[error("state file {path} changed since it was read (generation {expected}, now {found}); the decision was discarded")]
    Conflict {
        /// The file.
        path: PathBuf,
        /// The generation the decision was made from.
        expected: u64,
        /// The generation found.
        found: u64,
    },
    /// Another controller owns the state file.
    #[error(
        "state file {path} is owned by another `upramp rollout run` ({holder}); stop it first"
    )]
    Owned {
        /// The file.
        path: PathBuf,
        /// `pid N`, or what is known of the holder.
        holder: String,
    },
    /// A lock file could not be opened or locked.
    #[error("state file {path}: cannot lock {lock}: {message}")]
    Lock {
        /// The file.
        path: PathBuf,
        /// The lock file.
        lock: PathBuf,
        /// The OS error.
        message: String,
    },
}

/// Loads and saves a [`ControllerState`] at one path.
///
/// Saving goes through [`upramp_flags::replace_file_atomically`], so a crash leaves either the old
/// state or the new one, never a torn file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateStore {
    path: PathBuf,
}

/// The owner lock of a state file, held while this value lives (see [`StateStore::acquire_owner`]).
#[derive(Debug)]
pub struct OwnerLock {
    _lock: Flock<File>,
}

/// The commit lock of a state file, held while this value lives (see [`StateStore::lock_commits`]).
#[derive(Debug)]
pub struct CommitGuard {
    _lock: Flock<File>,
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

impl StateStore {
    /// A store for the file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `<state>.lock`: the owner lock file, holding the owner's pid.
    pub fn owner_lock_path(&self) -> PathBuf {
        sibling(&self.path, ".lock")
    }

    /// `<state>.commit.lock`: the commit lock file.
    pub fn commit_lock_path(&self) -> PathBuf {
        sibling(&self.path, ".commit.lock")
    }

    fn open_lock(&self, lock: &Path) -> Result<File, StateError> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(lock)
            .map_err(|e| StateError::Lock {
                path: self.path.clone(),
                lock: lock.to_owned(),
                message: e.to_string(),
            })
    }

    /// Become the state file's only controller: lock `<state>.lock` without waiting and write this
    /// process's pid into it. Refused with [`StateError::Owned`], naming the holder's pid, when another
    /// process holds it. The lock is released when the [`OwnerLock`] is dropped or the process dies.
    pub fn acquire_owner(&self) -> Result<OwnerLock, StateError> {
        let lock_path = self.owner_lock_path();
        let file = self.open_lock(&lock_path)?;
        let lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                let holder = match text.trim().parse::<u32>() {
                    Ok(pid) => format!("pid {pid}"),
                    Err(_) => "pid unknown".to_owned(),
                };
                return Err(StateError::Owned {
                    path: self.path.clone(),
                    holder,
                });
            }
            Err((_, errno)) => {
                return Err(StateError::Lock {
                    path: self.path.clone(),
                    lock: lock_path,
                    message: errno.desc().to_owned(),
                })
            }
        };
        let write_pid = |mut file: &File| -> std::io::Result<()> {
            file.set_len(0)?;
            file.rewind()?;
            writeln!(file, "{}", std::process::id())?;
            file.sync_data()
        };
        write_pid(&lock).map_err(|e| StateError::Lock {
            path: self.path.clone(),
            lock: lock_path,
            message: e.to_string(),
        })?;
        Ok(OwnerLock { _lock: lock })
    }

    /// Hold the commit lock until the guard drops, waiting for another commit to finish.
    pub fn lock_commits(&self) -> Result<CommitGuard, StateError> {
        let lock_path = self.commit_lock_path();
        let file = self.open_lock(&lock_path)?;
        let lock =
            Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, errno)| StateError::Lock {
                path: self.path.clone(),
                lock: lock_path,
                message: errno.desc().to_owned(),
            })?;
        Ok(CommitGuard { _lock: lock })
    }

    /// Read and check the state: it must parse and its plan and stage must be valid.
    pub fn load(&self) -> Result<ControllerState, StateError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StateError::Missing {
                    path: self.path.clone(),
                })
            }
            Err(e) => {
                return Err(StateError::Read {
                    path: self.path.clone(),
                    message: e.to_string(),
                })
            }
        };
        let corrupt = |message: String| StateError::Corrupt {
            path: self.path.clone(),
            message,
        };
        let state: ControllerState =
            serde_json::from_str(&text).map_err(|e| corrupt(e.to_string()))?;
        state.check().map_err(corrupt)?;
        Ok(state)
    }

    /// Replace the file with `state`, atomically and unconditionally. Commits use
    /// [`save_if`](Self::save_if) under the commit lock instead.
    pub fn save(&self, state: &ControllerState) -> Result<(), StateError> {
        let write_err = |message: String| StateError::Write {
            path: self.path.clone(),
            message,
        };
        let mut json = serde_json::to_string_pretty(state).map_err(|e| write_err(e.to_string()))?;
        json.push('\n');
        upramp_flags::replace_file_atomically(&self.path, json.as_bytes(), STATE_TEMP_PREFIX)
            .map_err(|e| write_err(format!("cannot {}: {}", e.step, e.source)))
    }

    /// Compare-and-swap: replace the file with `state` only if the stored generation is still
    /// `expected`; otherwise [`StateError::Conflict`] and nothing is written. Hold the commit lock
    /// ([`lock_commits`](Self::lock_commits)) around the call so no other commit interleaves.
    pub fn save_if(&self, expected: u64, state: &ControllerState) -> Result<(), StateError> {
        let found = self.load()?.generation;
        if found != expected {
            return Err(StateError::Conflict {
                path: self.path.clone(),
                expected,
                found,
            });
        }
        self.save(state)
    }

    /// Save `state` only if no file exists yet (for `init`).
    pub fn create(&self, state: &ControllerState) -> Result<(), StateError> {
        let _guard = self.lock_commits()?;
        if self.path.exists() {
            return Err(StateError::Exists {
                path: self.path.clone(),
            });
        }
        self.save(state)
    }

    /// Remove the temporary files a killed save left next to the state file; returns their paths.
    /// Only the owner (holding [`acquire_owner`](Self::acquire_owner)) should call it.
    pub fn remove_stale_temp_files(&self) -> Result<Vec<PathBuf>, StateError> {
        upramp_flags::remove_stale_temp_files(&self.path, STATE_TEMP_PREFIX).map_err(|e| {
            StateError::Write {
                path: self.path.clone(),
                message: format!("cannot remove stale temporary files: {e}"),
            }
        })
    }
}
