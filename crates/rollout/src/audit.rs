//! The audit log: one JSON line per decision, appended and flushed to disk under the commit lock, so
//! lines are in commit order.
//!
//! A process killed mid-append can leave a torn last line (no newline). [`AuditLog::open`] detects it,
//! reports it (a warning, and [`AuditLog::torn_tail`]), moves the fragment to `<audit>.torn` and cuts
//! it off, so the next record starts on its own line; the decision it belonged to is re-appended from
//! the state file by the next commit (see [`crate::commit`]).

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::state::DecisionRecord;

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
    torn_tail: Option<u64>,
}

impl AuditLog {
    /// A log kept only in memory.
    pub fn in_memory() -> Self {
        Self::default()
    }

    /// A log appending to the file at `path` (created if missing; earlier lines are kept).
    /// [`records`](Self::records) holds only what this handle appended; use [`AuditLog::read`] for all.
    /// A torn last line is cut off and kept in `<path>.torn` (see the module documentation).
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, AuditError> {
        let path = path.into();
        let write_err = |message: String| AuditError::Write {
            path: path.clone(),
            message,
        };
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(|e| write_err(e.to_string()))?;
        let torn_tail = cut_torn_tail(&path, &mut file).map_err(|e| write_err(e.to_string()))?;
        if let Some(bytes) = torn_tail {
            tracing::warn!(
                audit = %path.display(),
                bytes,
                "audit log ended in a torn line (a process was killed mid-append); moved it to the .torn file"
            );
        }
        Ok(Self {
            file: Some((path, file)),
            records: Vec::new(),
            torn_tail,
        })
    }

    /// The size in bytes of a torn last line [`open`](Self::open) found and cut off, if any.
    pub fn torn_tail(&self) -> Option<u64> {
        self.torn_tail
    }

    /// The generation of the last record in the file (or appended in memory); `None` when empty or
    /// when records predate generations.
    pub fn last_generation(&self) -> Result<Option<u64>, AuditError> {
        match &self.file {
            None => Ok(self.records.last().map(|r| r.generation)),
            Some((path, _)) => last_record(path).map(|r| r.map(|r| r.generation)),
        }
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

/// Cut a last line that has no newline off `file`, saving it to `<path>.torn`; returns its length.
fn cut_torn_tail(path: &Path, file: &mut File) -> std::io::Result<Option<u64>> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(None);
    }
    let mut last = [0u8; 1];
    file.seek(SeekFrom::Start(len - 1))?;
    file.read_exact(&mut last)?;
    if last[0] == b'\n' {
        return Ok(None);
    }
    // Find the start of the torn line: just after the last newline.
    let window = len.min(1 << 20);
    let mut tail = vec![0u8; window as usize];
    file.seek(SeekFrom::Start(len - window))?;
    file.read_exact(&mut tail)?;
    let start = match tail.iter().rposition(|b| *b == b'\n') {
        Some(i) => len - window + i as u64 + 1,
        None if window == len => 0,
        None => len - window,
    };
    let fragment = &tail[(start - (len - window)) as usize..];
    let mut torn_path = path.as_os_str().to_owned();
    torn_path.push(".torn");
    let mut torn = OpenOptions::new()
        .create(true)
        .append(true)
        .open(PathBuf::from(torn_path))?;
    torn.write_all(fragment)?;
    torn.write_all(b"\n")?;
    torn.sync_data()?;
    file.set_len(start)?;
    file.sync_data()?;
    Ok(Some(len - start))
}

/// The last record of the file, read from its tail only (commits call this every time).
fn last_record(path: &Path) -> Result<Option<DecisionRecord>, AuditError> {
    let read_err = |e: std::io::Error| AuditError::Read {
        path: path.to_owned(),
        message: e.to_string(),
    };
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(read_err(e)),
    };
    let len = file.metadata().map_err(read_err)?.len();
    let mut window = len.min(1 << 16);
    loop {
        file.seek(SeekFrom::Start(len - window)).map_err(read_err)?;
        let mut tail = vec![0u8; window as usize];
        file.read_exact(&mut tail).map_err(read_err)?;
        let text = String::from_utf8_lossy(&tail);
        let mut lines = text.lines().filter(|l| !l.trim().is_empty()).rev();
        let Some(last) = lines.next() else {
            return Ok(None);
        };
        // The whole line is in the window if a newline precedes it (or the window is the file).
        if window == len || lines.next().is_some() {
            return serde_json::from_str(last)
                .map(Some)
                .map_err(|e| AuditError::Corrupt {
                    path: path.to_owned(),
                    line: 0,
                    message: format!("last line: {e}"),
                });
        }
        window = len.min(window * 4);
    }
}
