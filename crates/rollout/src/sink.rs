//! Flag sinks: where the controller applies a rollout percent.

use std::path::PathBuf;

use thiserror::Error;
use upramp_flags::{FlagStore, Percent};

/// A percent could not be applied. The controller does not advance on it; a rollback stays decided and
/// is re-applied on the next tick.
#[derive(Debug, Error)]
#[error("cannot apply rollout {percent}: {message}")]
pub struct SinkError {
    /// The percent that was being applied.
    pub percent: Percent,
    /// Why it failed, naming the file or target.
    pub message: String,
}

/// Applies a rollout percent to the flag that routes uploads.
pub trait FlagSink {
    /// Set the rollout to `percent`. Must be idempotent: the controller re-applies on every tick.
    fn apply(&mut self, percent: Percent) -> Result<(), SinkError>;
}

impl<S: FlagSink + ?Sized> FlagSink for Box<S> {
    fn apply(&mut self, percent: Percent) -> Result<(), SinkError> {
        (**self).apply(percent)
    }
}

/// Sets the percent on an in-process [`FlagStore`]: the uploaders sharing the store see it at once.
#[derive(Debug, Clone)]
pub struct StoreSink(pub FlagStore);

impl FlagSink for StoreSink {
    fn apply(&mut self, percent: Percent) -> Result<(), SinkError> {
        self.0.set_rollout(percent);
        Ok(())
    }
}

/// Writes the percent into a flags TOML file (atomic replace) that other processes hot-reload.
#[derive(Debug, Clone)]
pub struct FileSink {
    /// The flags file.
    pub path: PathBuf,
    /// The flag's table in it (usually [`upramp_flags::ASYNC_UPLOAD`]).
    pub flag: String,
}

impl FileSink {
    /// A sink writing `flag`'s rollout in the file at `path`.
    pub fn new(path: impl Into<PathBuf>, flag: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            flag: flag.into(),
        }
    }
}

impl FlagSink for FileSink {
    fn apply(&mut self, percent: Percent) -> Result<(), SinkError> {
        upramp_flags::write_rollout_to_file(&self.path, &self.flag, percent).map_err(|e| {
            SinkError {
                percent,
                message: e.to_string(),
            }
        })
    }
}

/// Applies nothing and confirms every percent: for a controller whose percent nobody reads (a dry
/// run, or a decision audited and applied elsewhere).
///
/// ```
/// use upramp_flags::Percent;
/// use upramp_rollout::{FlagSink, NullSink};
///
/// assert!(NullSink.apply(Percent::from_thousandths(10_000)?).is_ok());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct NullSink;

impl FlagSink for NullSink {
    fn apply(&mut self, _percent: Percent) -> Result<(), SinkError> {
        Ok(())
    }
}

/// A test double that remembers every applied percent (feature `test-util`).
#[cfg(feature = "test-util")]
#[derive(Debug, Clone, Default)]
pub struct RecordingSink {
    /// Every percent applied, in order.
    pub applied: Vec<Percent>,
}

#[cfg(feature = "test-util")]
impl RecordingSink {
    /// The last applied percent.
    pub fn current(&self) -> Option<Percent> {
        self.applied.last().copied()
    }
}

#[cfg(feature = "test-util")]
impl FlagSink for RecordingSink {
    fn apply(&mut self, percent: Percent) -> Result<(), SinkError> {
        self.applied.push(percent);
        Ok(())
    }
}
