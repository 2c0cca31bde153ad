//! The state store: the controller's state as a JSON file, replaced atomically after every transition.

use std::io::Write;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::controller::ControllerState;

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
}

/// Loads and saves a [`ControllerState`] at one path.
///
/// Saving writes a temporary file in the same directory, flushes it to disk, and renames it over the
/// old file, so a crash leaves either the old state or the new one, never a torn file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateStore {
    path: PathBuf,
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

    /// Replace the file with `state`, atomically.
    pub fn save(&self, state: &ControllerState) -> Result<(), StateError> {
        let write_err = |message: String| StateError::Write {
            path: self.path.clone(),
            message,
        };
        let mut json = serde_json::to_string_pretty(state).map_err(|e| write_err(e.to_string()))?;
        json.push('\n');
        let dir = match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let mut tmp = tempfile::Builder::new()
            .prefix(".upramp-state-")
            .suffix(".tmp")
            .tempfile_in(&dir)
            .map_err(|e| write_err(e.to_string()))?;
        tmp.write_all(json.as_bytes())
            .map_err(|e| write_err(e.to_string()))?;
        tmp.as_file()
            .sync_all()
            .map_err(|e| write_err(e.to_string()))?;
        tmp.persist(&self.path)
            .map_err(|e| write_err(e.error.to_string()))?;
        // Make the rename itself durable where directories can be synced; elsewhere this is best effort.
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// Save `state` only if no file exists yet (for `init`).
    pub fn create(&self, state: &ControllerState) -> Result<(), StateError> {
        if self.path.exists() {
            return Err(StateError::Exists {
                path: self.path.clone(),
            });
        }
        self.save(state)
    }
}
