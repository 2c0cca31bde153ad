//! Deterministic test files of an exact size, valid for their type, written in bounded memory.
//!
//! Each kind writes exactly the requested number of bytes, derives every byte from the seed (same seed,
//! kind and size give the same file) and stays valid at any size:
//!
//! - `Text` and `Markdown`: ASCII lines of words (Markdown adds headings, lists and code spans) ending in
//!   a newline.
//! - `Json`: `{"records":[...],"padding":"..."}`; the padding string takes up the slack. Below 28 bytes
//!   the document is a single string (or `0` for one byte); a zero-byte JSON file is an error.
//! - `Csv`: a header and rows with the same five columns; the last row's `name` is padded. Below the
//!   smallest header-plus-row size it is a one-column file.
//! - `Python`: small functions; a final comment line takes up the slack. It compiles.
//! - `Binary`: uniform random bytes.
//!
//! ```
//! use upramp_harness::corpus::{generate, FileKind};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let path = generate(dir.path(), FileKind::Json, 4096, 7).unwrap();
//! let text = std::fs::read_to_string(&path).unwrap();
//! assert_eq!(text.len(), 4096);
//! assert!(serde_json::from_str::<serde_json::Value>(&text).is_ok());
//! ```

use std::fmt;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Lower-case hex SHA-256 of the file at `path`, read in 256 KiB pieces so a large file is never
/// held whole: the digest a stand-in records for a stored file ([`crate::StoredFile::sha256`]),
/// computed on the source, so a receipt can be checked against what arrived.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("abc.txt");
/// std::fs::write(&path, b"abc").unwrap();
/// assert_eq!(
///     upramp_harness::corpus::sha256_file(&path).unwrap(),
///     "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
/// );
/// ```
pub fn sha256_file(path: &Path) -> io::Result<String> {
    use sha2::{Digest, Sha256};
    use std::io::Read;

    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 256 * 1024];
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            return Ok(hex::encode(hasher.finalize()));
        }
        hasher.update(&buffer[..read]);
    }
}

/// The kinds of file the generator writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FileKind {
    /// Plain ASCII text (`.txt`).
    Text,
    /// A JSON document (`.json`).
    Json,
    /// Comma-separated values with a header (`.csv`).
    Csv,
    /// Markdown (`.md`).
    Markdown,
    /// Python source that compiles (`.py`).
    Python,
    /// Random bytes (`.bin`).
    Binary,
}

impl FileKind {
    /// Every kind.
    pub const ALL: [Self; 6] = [
        Self::Text,
        Self::Json,
        Self::Csv,
        Self::Markdown,
        Self::Python,
        Self::Binary,
    ];

    /// The file extension, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Text => "txt",
            Self::Json => "json",
            Self::Csv => "csv",
            Self::Markdown => "md",
            Self::Python => "py",
            Self::Binary => "bin",
        }
    }

    /// The lowercase name: `text`, `json`, `csv`, `markdown`, `python`, `binary`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Json => "json",
            Self::Csv => "csv",
            Self::Markdown => "markdown",
            Self::Python => "python",
            Self::Binary => "binary",
        }
    }
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A file kind name the generator does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown file kind {0:?} (expected text, json, csv, markdown, python or binary)")]
pub struct UnknownFileKind(pub String);

impl FromStr for FileKind {
    type Err = UnknownFileKind;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str() == name || kind.extension() == name)
            .ok_or_else(|| UnknownFileKind(name.to_owned()))
    }
}

/// Write a `kind` file of exactly `size` bytes into `dir`, named `<kind>-<seed>-<size>.<ext>`, and return
/// its path. Memory use does not depend on `size`.
pub fn generate(dir: &Path, kind: FileKind, size: u64, seed: u64) -> io::Result<PathBuf> {
    if kind == FileKind::Json && size == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a JSON file cannot be 0 bytes",
        ));
    }
    let path = dir.join(format!(
        "{}-{seed}-{size}.{}",
        kind.as_str(),
        kind.extension()
    ));
    let mut out = Budget {
        out: BufWriter::with_capacity(64 * 1024, File::create(&path)?),
        left: size,
    };
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ kind_salt(kind));
    match kind {
        FileKind::Text => write_lines(&mut out, &mut rng, text_line)?,
        FileKind::Markdown => write_lines(&mut out, &mut rng, markdown_line)?,
        FileKind::Json => write_json(&mut out, &mut rng)?,
        FileKind::Csv => write_csv(&mut out, &mut rng)?,
        FileKind::Python => write_python(&mut out, &mut rng)?,
        FileKind::Binary => write_binary(&mut out, &mut rng)?,
    }
    out.out
        .into_inner()
        .map_err(io::IntoInnerError::into_error)?
        .sync_all()?;
    Ok(path)
}

/// A writer that knows how many bytes are still owed.
struct Budget {
    out: BufWriter<File>,
    left: u64,
}

impl Budget {
    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        debug_assert!(bytes.len() as u64 <= self.left);
        self.out.write_all(bytes)?;
        self.left -= bytes.len() as u64;
        Ok(())
    }

    fn put_repeated(&mut self, byte: u8, count: u64) -> io::Result<()> {
        let block = [byte; 4096];
        let mut remaining = count;
        while remaining > 0 {
            let step = remaining.min(block.len() as u64) as usize;
            self.put(&block[..step])?;
            remaining -= step as u64;
        }
        Ok(())
    }
}

fn kind_salt(kind: FileKind) -> u64 {
    // Different kinds with the same seed should not share a random stream.
    (kind as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

const WORDS: [&str; 32] = [
    "upload", "stream", "provider", "rollout", "flag", "bucket", "gate", "latency", "retry",
    "fallback", "chunk", "file", "async", "sync", "window", "metric", "kimi", "glm", "tenant",
    "request", "receipt", "policy", "budget", "signal", "stage", "cohort", "sample", "quota",
    "buffer", "socket", "header", "digest",
];

fn word(rng: &mut ChaCha8Rng) -> &'static str {
    WORDS[rng.gen_range(0..WORDS.len())]
}

fn words(rng: &mut ChaCha8Rng, count: usize) -> String {
    (0..count).map(|_| word(rng)).collect::<Vec<_>>().join(" ")
}

fn text_line(rng: &mut ChaCha8Rng) -> String {
    let count = rng.gen_range(4..16);
    let mut line = words(rng, count);
    line.push_str(".\n");
    line
}

fn markdown_line(rng: &mut ChaCha8Rng) -> String {
    match rng.gen_range(0..6) {
        0 => format!("\n## {}\n\n", words(rng, 3)),
        1 => format!("- {} `{}`\n", words(rng, 5), word(rng)),
        2 => format!("1. **{}** {}\n", word(rng), words(rng, 6)),
        _ => format!("{} *{}* {}.\n", words(rng, 6), word(rng), words(rng, 5)),
    }
}

/// Lines cut to the exact size; every line is ASCII, so a cut never splits a character, and the last
/// byte is forced to a newline.
fn write_lines(
    out: &mut Budget,
    rng: &mut ChaCha8Rng,
    line: fn(&mut ChaCha8Rng) -> String,
) -> io::Result<()> {
    while out.left > 1 {
        let text = line(rng);
        let take = (text.len() as u64).min(out.left - 1) as usize;
        out.put(&text.as_bytes()[..take])?;
    }
    if out.left == 1 {
        out.put(b"\n")?;
    }
    Ok(())
}

fn json_record(rng: &mut ChaCha8Rng, id: u64) -> String {
    format!(
        "{{\"id\":{id},\"name\":\"{}\",\"score\":{}.{:02},\"active\":{},\"tags\":[\"{}\",\"{}\"]}}",
        words(rng, 2),
        rng.gen_range(0..1000),
        rng.gen_range(0..100),
        rng.gen_bool(0.5),
        word(rng),
        word(rng),
    )
}

fn write_json(out: &mut Budget, rng: &mut ChaCha8Rng) -> io::Result<()> {
    const PREFIX: &[u8] = b"{\"records\":[";
    const PADDING_OPEN: &[u8] = b"],\"padding\":\"";
    const CLOSE: &[u8] = b"\"}\n";
    let minimum = (PREFIX.len() + PADDING_OPEN.len() + CLOSE.len()) as u64;
    if out.left < minimum {
        // Too small for the record layout: a bare number or string is still a JSON document.
        if out.left == 1 {
            return out.put(b"0");
        }
        out.put(b"\"")?;
        out.put_repeated(b'x', out.left - 1)?;
        return out.put(b"\"");
    }
    out.put(PREFIX)?;
    let tail = (PADDING_OPEN.len() + CLOSE.len()) as u64;
    let mut id = 0u64;
    loop {
        let record = json_record(rng, id);
        let separator = u64::from(id > 0);
        if out.left < record.len() as u64 + separator + tail {
            break;
        }
        if id > 0 {
            out.put(b",")?;
        }
        out.put(record.as_bytes())?;
        id += 1;
    }
    out.put(PADDING_OPEN)?;
    out.put_repeated(b'x', out.left - CLOSE.len() as u64)?;
    out.put(CLOSE)
}

const CSV_HEADER: &str = "id,name,city,score,active\n";
/// Shortest padded row: `0,x,c,0.00,true\n`.
const CSV_MIN_ROW: u64 = 16;

fn write_csv(out: &mut Budget, rng: &mut ChaCha8Rng) -> io::Result<()> {
    if out.left < CSV_HEADER.len() as u64 + CSV_MIN_ROW {
        // One column, one row: consistent by construction.
        if out.left > 0 {
            out.put_repeated(b'x', out.left - 1)?;
            out.put(b"\n")?;
        }
        return Ok(());
    }
    out.put(CSV_HEADER.as_bytes())?;
    let mut id = 0u64;
    loop {
        let city = word(rng);
        let score = format!("{}.{:02}", rng.gen_range(0..100), rng.gen_range(0..100));
        let active = if rng.gen_bool(0.5) { "true" } else { "false" };
        let name = words(rng, 2);
        let row = format!("{id},{name},{city},{score},{active}\n");
        let last = format!("{id},,{city},{score},{active}\n");
        // Write a full row only if a padded final row still fits after it.
        if out.left >= row.len() as u64 + CSV_MIN_ROW + 8 {
            out.put(row.as_bytes())?;
            id += 1;
            continue;
        }
        if out.left < last.len() as u64 + 1 {
            // The random fields are too long for what is left: use the shortest row shape.
            let fixed = format!("{id},");
            let rest = ",c,0.00,true\n";
            out.put(fixed.as_bytes())?;
            out.put_repeated(b'x', out.left - rest.len() as u64)?;
            return out.put(rest.as_bytes());
        }
        let (head, rest) = last.split_at(last.find(',').map_or(0, |comma| comma + 1));
        out.put(head.as_bytes())?;
        out.put_repeated(b'x', out.left - rest.len() as u64)?;
        return out.put(rest.as_bytes());
    }
}

fn python_block(rng: &mut ChaCha8Rng, index: u64) -> String {
    let factor = rng.gen_range(1..100);
    let offset = rng.gen_range(0..1000);
    format!(
        "def {}_{index}(value):\n    \"\"\"{}.\"\"\"\n    return value * {factor} + {offset}\n\n\n",
        word(rng),
        words(rng, 6),
    )
}

fn write_python(out: &mut Budget, rng: &mut ChaCha8Rng) -> io::Result<()> {
    let mut index = 0u64;
    loop {
        let block = python_block(rng, index);
        if out.left < block.len() as u64 + 2 {
            break;
        }
        out.put(block.as_bytes())?;
        index += 1;
    }
    // The slack becomes one comment line, which any Python accepts.
    match out.left {
        0 => Ok(()),
        1 => out.put(b"\n"),
        left => {
            out.put(b"#")?;
            out.put_repeated(b'x', left - 2)?;
            out.put(b"\n")
        }
    }
}

fn write_binary(out: &mut Budget, rng: &mut ChaCha8Rng) -> io::Result<()> {
    let mut block = [0u8; 8192];
    while out.left > 0 {
        let step = out.left.min(block.len() as u64) as usize;
        rng.fill_bytes(&mut block[..step]);
        out.put(&block[..step])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;

    fn read(path: &Path) -> Vec<u8> {
        std::fs::read(path).unwrap()
    }

    fn check_valid(kind: FileKind, bytes: &[u8]) {
        match kind {
            FileKind::Json => {
                serde_json::from_slice::<serde_json::Value>(bytes).unwrap();
            }
            FileKind::Csv => {
                let text = std::str::from_utf8(bytes).unwrap();
                let columns: Vec<usize> =
                    text.lines().map(|line| line.split(',').count()).collect();
                assert!(
                    columns.windows(2).all(|pair| pair[0] == pair[1]),
                    "ragged CSV"
                );
                if bytes.len() > 100 {
                    assert_eq!(columns[0], 5);
                }
            }
            FileKind::Text | FileKind::Markdown | FileKind::Python => {
                let text = std::str::from_utf8(bytes).unwrap();
                assert!(text.is_empty() || text.ends_with('\n'));
            }
            FileKind::Binary => {}
        }
    }

    #[test]
    fn every_kind_has_the_exact_size_and_is_valid() {
        let dir = tempfile::tempdir().unwrap();
        for kind in FileKind::ALL {
            for size in [
                1u64,
                2,
                17,
                27,
                28,
                41,
                42,
                43,
                1_000,
                1_024,
                65_537,
                1 << 20,
            ] {
                let path = generate(dir.path(), kind, size, 3).unwrap();
                let bytes = read(&path);
                assert_eq!(bytes.len() as u64, size, "{kind} {size}");
                check_valid(kind, &bytes);
            }
        }
    }

    #[test]
    fn same_seed_same_file_other_seed_other_file() {
        let dir = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        for kind in FileKind::ALL {
            let first = read(&generate(dir.path(), kind, 10_000, 11).unwrap());
            let again = read(&generate(other.path(), kind, 10_000, 11).unwrap());
            let different = read(&generate(dir.path(), kind, 10_000, 12).unwrap());
            assert_eq!(first, again, "{kind}");
            assert_ne!(first, different, "{kind}");
        }
    }

    #[test]
    fn ten_megabyte_json_parses() {
        let dir = tempfile::tempdir().unwrap();
        let path = generate(dir.path(), FileKind::Json, 10 << 20, 5).unwrap();
        let bytes = read(&path);
        assert_eq!(bytes.len(), 10 << 20);
        let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert!(value["records"].as_array().unwrap().len() > 50_000);
    }

    #[test]
    fn python_compiles_when_python3_exists() {
        let dir = tempfile::tempdir().unwrap();
        let mut paths = Vec::new();
        for size in [0u64, 1, 2, 90, 1_000, 100_000] {
            paths.push(generate(dir.path(), FileKind::Python, size, 9).unwrap());
        }
        let status = std::process::Command::new("python3")
            .arg("-m")
            .arg("py_compile")
            .args(&paths)
            .status();
        match status {
            Ok(status) => assert!(status.success(), "py_compile rejected a generated file"),
            // No interpreter on this machine: the size and text checks above still ran.
            Err(err) => assert_eq!(err.kind(), io::ErrorKind::NotFound),
        }
    }

    #[test]
    fn zero_byte_json_is_an_error_and_kinds_parse() {
        let dir = tempfile::tempdir().unwrap();
        let err = generate(dir.path(), FileKind::Json, 0, 1).unwrap_err();
        assert_eq!(err.to_string(), "a JSON file cannot be 0 bytes");
        assert_eq!("py".parse::<FileKind>().unwrap(), FileKind::Python);
        assert_eq!(
            "pdf".parse::<FileKind>().unwrap_err().to_string(),
            "unknown file kind \"pdf\" (expected text, json, csv, markdown, python or binary)"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn any_size_is_exact_and_valid(kind_index in 0usize..6, size in 1u64..5_000, seed in any::<u64>()) {
            let kind = FileKind::ALL[kind_index];
            let dir = tempfile::tempdir().unwrap();
            let bytes = read(&generate(dir.path(), kind, size, seed).unwrap());
            prop_assert_eq!(bytes.len() as u64, size);
            check_valid(kind, &bytes);
        }
    }
}
