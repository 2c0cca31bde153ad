//! Persisting a rollout percentage to the flags file with an atomic replace.

use std::io::Write;
use std::path::Path;

use crate::config::parse_table;
use crate::{ConfigError, Percent};

/// Set `flag_name.rollout` in the TOML file at `path`, atomically: the new content is written to a
/// temporary file in the same directory, flushed to disk, then renamed over the file.
///
/// The file and the flag's table are created when missing; every other key and table is kept (comments
/// and formatting are not: the file is re-serialized). A file that is not valid TOML, or whose
/// `flag_name` entry is not a table, is an error and is left untouched.
///
/// ```
/// use upramp_flags::{write_rollout_to_file, EnvSource, FlagSources, Percent};
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("flags.toml");
/// write_rollout_to_file(&path, "async_upload", Percent::parse("12.5")?)?;
/// let resolved = FlagSources::async_upload().with_file(&path).resolve(&EnvSource::empty())?;
/// assert_eq!(resolved.config.rollout.to_string(), "12.5%");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn write_rollout_to_file(
    path: &Path,
    flag_name: &str,
    rollout: Percent,
) -> Result<(), ConfigError> {
    let mut table = match std::fs::read_to_string(path) {
        Ok(text) => parse_table(path, &text)?,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => toml::Table::new(),
        Err(source) => {
            return Err(ConfigError::FileRead {
                path: path.to_owned(),
                source,
            })
        }
    };
    let entry = table
        .entry(flag_name.to_owned())
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    let toml::Value::Table(section) = entry else {
        return Err(ConfigError::FileValue {
            path: path.to_owned(),
            key: flag_name.to_owned(),
            value: entry.to_string(),
            problem: "expected a table of flag settings".to_owned(),
        });
    };
    section.insert("rollout".to_owned(), rollout_value(rollout));
    let text = toml::to_string(&table).map_err(|err| ConfigError::FileSyntax {
        path: path.to_owned(),
        message: err.to_string(),
    })?;
    write_atomically(path, text.as_bytes())
}

/// Whole percentages as TOML integers, others as floats whose shortest form has the exact decimals.
fn rollout_value(rollout: Percent) -> toml::Value {
    let thousandths = rollout.thousandths();
    if thousandths % 1000 == 0 {
        toml::Value::Integer(i64::from(thousandths / 1000))
    } else {
        toml::Value::Float(rollout.as_f64())
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), ConfigError> {
    let write_error = |source| ConfigError::FileWrite {
        path: path.to_owned(),
        source,
    };
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut temp = tempfile::Builder::new()
        .prefix(".flags-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(write_error)?;
    temp.write_all(bytes).map_err(write_error)?;
    temp.as_file().sync_all().map_err(write_error)?;
    temp.persist(path).map_err(|err| write_error(err.error))?;
    sync_dir(dir).map_err(write_error)
}

/// Make the rename itself durable.
#[cfg(unix)]
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> std::io::Result<()> {
    Ok(())
}
