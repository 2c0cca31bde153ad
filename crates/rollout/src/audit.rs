//! The audit log: one JSON line per decision, appended and flushed to disk as it is made.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::controller::DecisionRecord;

/// The audit log could not be written or read.
#[derive(Debug, Error)]
pub enum AuditError {
    /// Opening or appending failed.
    #[error("audit log {path}: cannot write: {message}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The OS error.
        message: String,
    },
    /// Reading failed.
    #[error("audit log {path}: cannot read: {message}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        message: String,
    },
    /// A line is not a decision record.
    #[error("audit log {path}: line {line} is not a decision record: {message}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// The parse error.
        message: String,
    },
}

/// Decision records, kept in memory and, when opened on a file, appended to it as JSON lines.
#[derive(Debug, Default)]
pub struct AuditLog {
    file: Option<(PathBuf, File)>,
    records: Vec<DecisionRecord>,
}

impl AuditLog {
    /// A log kept only in memory.
    pub fn in_memory() -> Self {
        Self::default()
    }

    /// A log appending to the file at `path` (created if missing; earlier lines are kept).
    /// [`records`](Self::records) holds only what this handle appended; use [`AuditLog::read`] for all.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, AuditError> {
        let path = path.into();
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| AuditError::Write {
                path: path.clone(),
                message: e.to_string(),
            })?;
        Ok(Self {
            file: Some((path, file)),
            records: Vec::new(),
        })
    }

    /// The file, if any.
    pub fn path(&self) -> Option<&Path> {
        self.file.as_ref().map(|(p, _)| p.as_path())
    }

    /// Records appended through this handle, oldest first.
    pub fn records(&self) -> &[DecisionRecord] {
        &self.records
    }

    /// Append one record: a JSON line, flushed to disk, then kept in memory.
    pub fn append(&mut self, record: &DecisionRecord) -> Result<(), AuditError> {
        if let Some((path, file)) = &mut self.file {
            let write_err = |message: String| AuditError::Write {
                path: path.clone(),
                message,
            };
            let mut line = serde_json::to_string(record).map_err(|e| write_err(e.to_string()))?;
            line.push('\n');
            file.write_all(line.as_bytes())
                .map_err(|e| write_err(e.to_string()))?;
            file.sync_data().map_err(|e| write_err(e.to_string()))?;
        }
        self.records.push(record.clone());
        Ok(())
    }

    /// Read every record of an audit file, oldest first. A missing file is an empty log.
    pub fn read(path: &Path) -> Result<Vec<DecisionRecord>, AuditError> {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(AuditError::Read {
                    path: path.to_owned(),
                    message: e.to_string(),
                })
            }
        };
        let mut out = Vec::new();
        for (i, line) in BufReader::new(file).lines().enumerate() {
            let line = line.map_err(|e| AuditError::Read {
                path: path.to_owned(),
                message: e.to_string(),
            })?;
            if line.trim().is_empty() {
                continue;
            }
            out.push(
                serde_json::from_str(&line).map_err(|e| AuditError::Corrupt {
                    path: path.to_owned(),
                    line: i + 1,
                    message: e.to_string(),
                })?,
            );
        }
        Ok(out)
    }
}
