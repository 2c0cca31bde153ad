//! The files a validation run leaves behind: `report.md`, `report.json`, `timeline.svg` and
//! `metrics.prom`, under `<target dir>/upramp/validate/`.

use std::path::{Path, PathBuf};

use crate::report::{markdown, Report};
use crate::timeline::svg;

/// A file that could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// Creating the directory or writing a file failed.
    #[error("writing {path}: {source}")]
    Write {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The report could not be serialised.
    #[error("serialising the report: {0}")]
    Json(#[from] serde_json::Error),
}

/// Where the four files went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifacts {
    /// `report.md`.
    pub report_md: PathBuf,
    /// `report.json`.
    pub report_json: PathBuf,
    /// `timeline.svg`.
    pub timeline_svg: PathBuf,
    /// `metrics.prom`.
    pub metrics_prom: PathBuf,
}

/// `<target>/upramp/validate`, where `<target>` is `target_override` (the value of `CARGO_TARGET_DIR`)
/// when given and `<workspace>/target` otherwise.
///
/// ```
/// use std::path::Path;
/// let dir = upramp_validate::artifacts::output_dir(Path::new("/ws"), None);
/// assert_eq!(dir, Path::new("/ws/target/upramp/validate"));
/// let dir = upramp_validate::artifacts::output_dir(Path::new("/ws"), Some(Path::new("/t")));
/// assert_eq!(dir, Path::new("/t/upramp/validate"));
/// ```
pub fn output_dir(workspace: &Path, target_override: Option<&Path>) -> PathBuf {
    let target = match target_override {
        Some(dir) if dir.is_absolute() => dir.to_owned(),
        Some(dir) => workspace.join(dir),
        None => workspace.join("target"),
    };
    target.join("upramp").join("validate")
}

fn write(path: PathBuf, contents: &str) -> Result<PathBuf, ArtifactError> {
    std::fs::write(&path, contents).map_err(|source| ArtifactError::Write {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

/// Writes the four files into `dir` (created if missing); `metrics` is the run's final Prometheus
/// exposition.
pub fn write_all(dir: &Path, report: &Report, metrics: &str) -> Result<Artifacts, ArtifactError> {
    std::fs::create_dir_all(dir).map_err(|source| ArtifactError::Write {
        path: dir.to_owned(),
        source,
    })?;
    let json = serde_json::to_string_pretty(report)? + "\n";
    Ok(Artifacts {
        report_md: write(dir.join("report.md"), &markdown(report))?,
        report_json: write(dir.join("report.json"), &json)?,
        timeline_svg: write(dir.join("timeline.svg"), &svg(&report.timeline))?,
        metrics_prom: write(dir.join("metrics.prom"), metrics)?,
    })
}
