//! Writing files safely: one atomic-replace helper for every file upramp rewrites (the flags file here,
//! the rollout controller's state file in `upramp-rollout`), and the flags file's rollout writer, which
//! edits the file in place so comments, key order, mode and owner survive.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::config::{parse_table, suggest_flag_name};
use crate::{ConfigError, Percent};

/// Prefix of the temporary files [`write_rollout_to_file`] creates next to the flags file.
pub const FLAGS_TEMP_PREFIX: &str = ".flags-";

/// Suffix of every temporary file [`replace_file_atomically`] creates.
pub const TEMP_SUFFIX: &str = ".tmp";

/// A step of [`replace_file_atomically`] failed; the original file is unchanged unless the step is
/// [`ReplaceStep::SyncDirectory`], where the new content is in place but the rename may not survive a
/// power loss.
#[derive(Debug, thiserror::Error)]
#[error("{path}: cannot {step}: {source}", path = .path.display())]
pub struct ReplaceError {
    /// The file being replaced.
    pub path: PathBuf,
    /// The step that failed.
    pub step: ReplaceStep,
    /// The I/O error.
    #[source]
    pub source: std::io::Error,
}

/// The steps of an atomic replace, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplaceStep {
    /// Creating the temporary file in the target's directory.
    CreateTemp,
    /// Writing and flushing the new content.
    Write,
    /// Renaming the temporary file over the target.
    Rename,
    /// Syncing the directory so the rename is durable.
    SyncDirectory,
}

impl std::fmt::Display for ReplaceStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::CreateTemp => "create a temporary file",
            Self::Write => "write the temporary file",
            Self::Rename => "rename the temporary file over it",
            Self::SyncDirectory => "sync its directory after the rename",
        })
    }
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// Replace the file at `path` with `bytes` so that a crash leaves either the old content or the new,
/// never a torn file: write a temporary file `<temp_prefix>*.tmp` in the same directory, flush it to
/// disk, give it the old file's permissions (and owner, where the process may), rename it over `path`,
/// then sync the directory. A failed directory sync is reported as [`ReplaceStep::SyncDirectory`].
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("state.json");
/// upramp_flags::replace_file_atomically(&path, b"{}\n", ".state-")?;
/// assert_eq!(std::fs::read(&path)?, b"{}\n");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn replace_file_atomically(
    path: &Path,
    bytes: &[u8],
    temp_prefix: &str,
) -> Result<(), ReplaceError> {
    let fail = |step, source| ReplaceError {
        path: path.to_owned(),
        step,
        source,
    };
    let dir = parent_dir(path);
    let mut temp = tempfile::Builder::new()
        .prefix(temp_prefix)
        .suffix(TEMP_SUFFIX)
        .tempfile_in(dir)
        .map_err(|e| fail(ReplaceStep::CreateTemp, e))?;
    keep_metadata(path, temp.as_file()).map_err(|e| fail(ReplaceStep::Write, e))?;
    temp.write_all(bytes)
        .map_err(|e| fail(ReplaceStep::Write, e))?;
    temp.as_file()
        .sync_all()
        .map_err(|e| fail(ReplaceStep::Write, e))?;
    temp.persist(path)
        .map_err(|e| fail(ReplaceStep::Rename, e.error))?;
    sync_dir(dir).map_err(|e| fail(ReplaceStep::SyncDirectory, e))
}

/// Give the replacement the replaced file's mode and, where permitted, its owner: a fleet running as
/// another user must still be able to read what the controller wrote.
#[cfg(unix)]
fn keep_metadata(path: &Path, temp: &File) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    temp.set_permissions(meta.permissions())?;
    let mine = temp.metadata()?;
    if (mine.uid(), mine.gid()) != (meta.uid(), meta.gid()) {
        if let Err(e) = std::os::unix::fs::fchown(temp, Some(meta.uid()), Some(meta.gid())) {
            // Only root may give a file away; the mode is kept, which is what readers need.
            tracing::warn!(
                file = %path.display(),
                error = %e,
                "cannot keep the file's owner on replace; keeping its mode"
            );
        }
    }
    Ok(())
}

#[cfg(not(unix))]
fn keep_metadata(path: &Path, temp: &File) -> std::io::Result<()> {
    match std::fs::metadata(path) {
        Ok(meta) => temp.set_permissions(meta.permissions()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Make the rename itself durable.
#[cfg(unix)]
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> std::io::Result<()> {
    Ok(())
}

/// Remove the temporary files a process killed during [`replace_file_atomically`] left next to `path`
/// (`<temp_prefix>*.tmp` in its directory); returns the names removed. Call it only while no other
/// writer of that directory can be mid-replace (the rollout controller holds its state lock).
pub fn remove_stale_temp_files(path: &Path, temp_prefix: &str) -> std::io::Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    let entries = match std::fs::read_dir(parent_dir(path)) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(removed),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with(temp_prefix) && name.ends_with(TEMP_SUFFIX) {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => removed.push(entry.path()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(removed)
}

/// Set `flag_name.rollout` in the TOML file at `path`, atomically ([`replace_file_atomically`]).
///
/// The file is edited in place: comments, key order, formatting, mode and owner are kept, and only the
/// `rollout` value changes. Content that would not change is not rewritten.
///
/// - A **missing file** is created complete, so the fleet routes by the percent at once: a header
///   comment and `[flag_name]` with `enabled = true` and `rollout`.
/// - A file that exists but has **no `[flag_name]` table** is refused (naming the file and, for a near
///   miss such as `[async_uplaod]`, the table it probably meant): the reader refuses such a file too, and
///   silently adding a second table would leave the operator's misspelled one in place.
/// - A file that is not valid TOML, or whose `flag_name` entry is not a table, is refused.
///
/// Refused files are left untouched.
///
/// ```
/// use upramp_flags::{write_rollout_to_file, EnvSource, FlagSources, Percent};
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("flags.toml");
/// write_rollout_to_file(&path, "async_upload", Percent::parse("12.5")?)?;
/// let resolved = FlagSources::async_upload().with_file(&path).resolve(&EnvSource::empty())?;
/// assert_eq!(resolved.config.rollout.to_string(), "12.5%");
/// assert!(resolved.config.enabled);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn write_rollout_to_file(
    path: &Path,
    flag_name: &str,
    rollout: Percent,
) -> Result<(), ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => Some(text),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
        Err(source) => {
            return Err(ConfigError::FileRead {
                path: path.to_owned(),
                source,
            })
        }
    };
    let new_text = match &text {
        None => format!(
            "# Feature flags; `upramp rollout` sets `{flag_name}.rollout`.\n\n[{flag_name}]\nenabled = true\nrollout = {}\n",
            rollout_value(rollout)
        ),
        Some(text) => edit_rollout(path, text, flag_name, rollout)?,
    };
    if text.as_deref() == Some(new_text.as_str()) {
        return Ok(());
    }
    replace_file_atomically(path, new_text.as_bytes(), FLAGS_TEMP_PREFIX).map_err(|e| {
        ConfigError::FileWrite {
            path: path.to_owned(),
            source: std::io::Error::new(
                e.source.kind(),
                format!("cannot {}: {}", e.step, e.source),
            ),
        }
    })
}

fn edit_rollout(
    path: &Path,
    text: &str,
    flag_name: &str,
    rollout: Percent,
) -> Result<String, ConfigError> {
    // The strict parser first, so the writer refuses exactly what the reader refuses.
    let table = parse_table(path, text)?;
    match table.get(flag_name) {
        Some(toml::Value::Table(_)) => {}
        Some(other) => {
            return Err(ConfigError::FileValue {
                path: path.to_owned(),
                key: flag_name.to_owned(),
                value: other.to_string(),
                problem: "expected a table of flag settings".to_owned(),
            })
        }
        None => {
            return Err(ConfigError::MissingFlag {
                path: path.to_owned(),
                flag: flag_name.to_owned(),
                suggestion: suggest_flag_name(&table, flag_name),
            })
        }
    }
    let mut doc: toml_edit::DocumentMut =
        text.parse()
            .map_err(|err: toml_edit::TomlError| ConfigError::FileSyntax {
                path: path.to_owned(),
                message: err.message().replace('\n', " "),
            })?;
    let section = doc
        .get_mut(flag_name)
        .and_then(toml_edit::Item::as_table_like_mut)
        .ok_or_else(|| ConfigError::FileValue {
            path: path.to_owned(),
            key: flag_name.to_owned(),
            value: String::new(),
            problem: "expected a table of flag settings".to_owned(),
        })?;
    let value: toml_edit::Value = match rollout_value(rollout) {
        RolloutValue::Integer(n) => n.into(),
        RolloutValue::Float(f) => f.into(),
    };
    match section.get_mut("rollout") {
        Some(item) => {
            // Keep the comment and spacing around the old value.
            let decor = item.as_value().map(|v| v.decor().clone());
            let mut value = value;
            if let Some(decor) = decor {
                *value.decor_mut() = decor;
            }
            *item = toml_edit::Item::Value(value);
        }
        None => {
            section.insert("rollout", toml_edit::Item::Value(value));
        }
    }
    Ok(doc.to_string())
}

enum RolloutValue {
    Integer(i64),
    Float(f64),
}

impl std::fmt::Display for RolloutValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Integer(n) => write!(f, "{n}"),
            Self::Float(x) => write!(f, "{}", toml::Value::Float(*x)),
        }
    }
}

/// Whole percentages as TOML integers, others as floats whose shortest form has the exact decimals.
fn rollout_value(rollout: Percent) -> RolloutValue {
    let thousandths = rollout.thousandths();
    if thousandths % 1000 == 0 {
        RolloutValue::Integer(i64::from(thousandths / 1000))
    } else {
        RolloutValue::Float(rollout.as_f64())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const COMMENTED: &str = "# fleet flags, owned by the uploads team\n\n[async_upload]\n# who may change this: see the runbook\nenabled = true   # on for everyone\nrollout = 1      # set by the controller\nfallback = true\n\n[other]\nx = 1\n";

    #[test]
    fn in_place_edit_keeps_comments_order_and_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flags.toml");
        std::fs::write(&path, COMMENTED).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_rollout_to_file(&path, "async_upload", Percent::parse("50").unwrap()).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, COMMENTED.replace("rollout = 1", "rollout = 50"));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        write_rollout_to_file(&path, "async_upload", Percent::parse("12.5").unwrap()).unwrap();
        assert!(std::fs::read_to_string(&path)
            .unwrap()
            .contains("rollout = 12.5"));
    }

    #[test]
    fn a_missing_file_is_created_enabled() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flags.toml");
        write_rollout_to_file(&path, "async_upload", Percent::parse("10").unwrap()).unwrap();
        let table: toml::Table = std::fs::read_to_string(&path).unwrap().parse().unwrap();
        assert_eq!(table["async_upload"]["enabled"].as_bool(), Some(true));
        assert_eq!(table["async_upload"]["rollout"].as_integer(), Some(10));
    }

    #[test]
    fn a_file_without_the_flag_is_refused_with_a_suggestion() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flags.toml");
        std::fs::write(&path, "[async_uplaod]\nenabled = true\n").unwrap();
        let err = write_rollout_to_file(&path, "async_upload", Percent::ZERO).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("flags.toml"), "{text}");
        assert!(text.contains("did you mean [async_uplaod]"), "{text}");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "[async_uplaod]\nenabled = true\n"
        );
    }

    #[test]
    fn stale_temp_files_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flags.toml");
        std::fs::write(dir.path().join(".flags-abc.tmp"), "x").unwrap();
        std::fs::write(dir.path().join("keep.tmp"), "x").unwrap();
        let removed = remove_stale_temp_files(&path, FLAGS_TEMP_PREFIX).unwrap();
        assert_eq!(removed.len(), 1);
        assert!(dir.path().join("keep.tmp").exists());
    }
}
