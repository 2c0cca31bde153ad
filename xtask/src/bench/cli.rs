//! Scenario 2b: the shipped `upramp upload` command, not the library, timed as a whole process per
//! path. The flag environment chooses the path (`ASYNC_UPLOAD_ROLLOUT=100` or `0`), so both runs go
//! through the CLI's own routing, runtime, concurrency and receipt printing. Everything here is pure
//! (argument lists, environment, receipt checks), so it is unit tested; the orchestrator runs it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context};
use serde::Deserialize;

use upramp_flags::Route;

use super::process::ChildEnv;
use super::proto::KEY_ENV;

/// `ASYNC_UPLOAD_ROLLOUT` that routes every key of a whole `upramp upload` run to `route`.
fn rollout_for(route: Route) -> &'static str {
    match route {
        Route::Async => "100",
        Route::Sync => "0",
    }
}

/// The command as recorded in the results: everything but the stand-in's URL and the file list.
pub fn command_line(concurrency: usize) -> String {
    format!("upramp upload --provider kimi --key-env {KEY_ENV} --concurrency {concurrency} --json")
}

/// The arguments of `upramp upload` for the files, against the stand-in at `base_url`. The key is
/// read from the environment variable the orchestrator already sets for its workers, so it never
/// appears on a command line.
pub fn upload_args(base_url: &str, concurrency: usize, files: &[PathBuf]) -> Vec<String> {
    let mut args = vec![
        "upload".to_owned(),
        "--provider".to_owned(),
        "kimi".to_owned(),
        "--base-url".to_owned(),
        base_url.to_owned(),
        "--key-env".to_owned(),
        KEY_ENV.to_owned(),
        "--concurrency".to_owned(),
        concurrency.to_string(),
        "--json".to_owned(),
    ];
    args.extend(files.iter().map(|f| f.display().to_string()));
    args
}

/// The flag environment of a run on `path`, given the names of the variables the orchestrator has.
///
/// Every inherited `ASYNC_UPLOAD_*` variable, the flags file variable and `RUST_LOG` are removed, so
/// a caller's shell cannot change what is measured; then the flag is switched on with the rollout
/// at 100% or 0%. Fallback is off, so a failing async leg is an error instead of a receipt from the
/// sync path.
pub fn flag_env(path: Route, inherited: impl IntoIterator<Item = String>) -> ChildEnv {
    let mut remove: Vec<String> = inherited
        .into_iter()
        .filter(|name| name.starts_with("ASYNC_UPLOAD_"))
        .collect();
    remove.push(upramp_flags::FLAGS_FILE_ENV.to_owned());
    remove.push("RUST_LOG".to_owned());
    let set = [
        ("ASYNC_UPLOAD_ENABLED", "true"),
        ("ASYNC_UPLOAD_ROLLOUT", rollout_for(path)),
        ("ASYNC_UPLOAD_FALLBACK", "false"),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value.to_owned()))
    .collect();
    ChildEnv { remove, set }
}

/// A source file as the receipts must describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// Its size in bytes.
    pub bytes: u64,
    /// Lower-case hex SHA-256 of its contents.
    pub sha256: String,
}

/// The fields of a `--json` receipt line the bench checks (the CLI prints more).
#[derive(Debug, Deserialize)]
struct CliReceipt {
    id: String,
    source: PathBuf,
    path: String,
    bytes: u64,
    sha256: String,
    attempts: u64,
}

/// Check the stdout of one run: exactly one receipt line per source file, each on `path`, with the
/// file's size and SHA-256 and a provider id no other receipt has. Returns the HTTP attempts over all
/// receipts.
pub fn check_receipts(
    stdout: &str,
    path: Route,
    sources: &BTreeMap<PathBuf, SourceFile>,
) -> anyhow::Result<u64> {
    let mut seen_sources: BTreeSet<&Path> = BTreeSet::new();
    let mut seen_ids = BTreeSet::new();
    let mut attempts = 0;
    for (index, line) in stdout.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        let number = index + 1;
        let receipt: CliReceipt = serde_json::from_str(line)
            .with_context(|| format!("receipt line {number} is not a receipt: {line:.200}"))?;
        let source = receipt.source.display();
        let Some((known, expected)) = sources.get_key_value(&receipt.source) else {
            bail!("receipt line {number} names {source}, which was not on the command line");
        };
        ensure!(
            seen_sources.insert(known),
            "{source} has more than one receipt"
        );
        ensure!(
            receipt.path == path.as_str(),
            "{source} went the {} path, expected {}",
            receipt.path,
            path.as_str()
        );
        ensure!(
            receipt.bytes == expected.bytes,
            "{source}: receipt says {} bytes, the file has {}",
            receipt.bytes,
            expected.bytes
        );
        ensure!(
            receipt.sha256 == expected.sha256,
            "{source}: receipt SHA-256 {} differs from the file's {}",
            receipt.sha256,
            expected.sha256
        );
        ensure!(
            seen_ids.insert(receipt.id.clone()),
            "{source}: provider id {} is on another receipt too",
            receipt.id
        );
        attempts += receipt.attempts;
    }
    ensure!(
        seen_sources.len() == sources.len(),
        "{} receipts for {} files",
        seen_sources.len(),
        sources.len()
    );
    Ok(attempts)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sources() -> BTreeMap<PathBuf, SourceFile> {
        ["a", "b"]
            .into_iter()
            .map(|name| {
                (
                    PathBuf::from(format!("/w/{name}.txt")),
                    SourceFile {
                        bytes: 10,
                        sha256: format!("{name}{name}"),
                    },
                )
            })
            .collect()
    }

    fn line(id: &str, name: &str, path: &str, bytes: u64, sha: &str) -> String {
        format!(
            r#"{{"id":"{id}","source":"/w/{name}.txt","file":{{"id":"{id}"}},"provider":"kimi","path":"{path}","attempts":1,"bytes":{bytes},"sha256":"{sha}","adopted":false}}"#
        )
    }

    #[test]
    fn one_matching_receipt_per_file_passes() {
        let out = [
            line("f1", "b", "sync", 10, "bb"),
            line("f2", "a", "sync", 10, "aa"),
        ]
        .join("\n");
        assert_eq!(check_receipts(&out, Route::Sync, &sources()).unwrap(), 2);
    }

    #[test]
    fn every_mismatch_is_named() {
        let cases = [
            (
                vec![line("f1", "a", "async", 10, "aa")],
                "1 receipts for 2 files",
            ),
            (
                vec![
                    line("f1", "a", "async", 10, "aa"),
                    line("f2", "a", "async", 10, "aa"),
                ],
                "/w/a.txt has more than one receipt",
            ),
            (
                vec![line("f1", "a", "sync_fallback", 10, "aa")],
                "/w/a.txt went the sync_fallback path, expected async",
            ),
            (
                vec![line("f1", "a", "async", 9, "aa")],
                "/w/a.txt: receipt says 9 bytes, the file has 10",
            ),
            (
                vec![line("f1", "a", "async", 10, "xx")],
                "/w/a.txt: receipt SHA-256 xx differs from the file's aa",
            ),
            (
                vec![
                    line("f1", "a", "async", 10, "aa"),
                    line("f1", "b", "async", 10, "bb"),
                ],
                "/w/b.txt: provider id f1 is on another receipt too",
            ),
            (
                vec![line("f1", "c", "async", 10, "aa")],
                "receipt line 1 names /w/c.txt, which was not on the command line",
            ),
            (
                vec!["upramp: error: refused".to_owned()],
                "receipt line 1 is not a receipt",
            ),
        ];
        for (lines, expected) in cases {
            let err = check_receipts(&lines.join("\n"), Route::Async, &sources()).unwrap_err();
            assert!(
                err.to_string().starts_with(expected),
                "{expected:?} not in {err}"
            );
        }
    }

    #[test]
    fn the_flag_environment_overrides_the_callers() {
        let inherited =
            ["ASYNC_UPLOAD_MAX_RETRIES", "HOME", "ASYNC_UPLOAD_ROLLOUT"].map(str::to_owned);
        let env = flag_env(Route::Sync, inherited);
        assert_eq!(
            env.remove,
            [
                "ASYNC_UPLOAD_MAX_RETRIES",
                "ASYNC_UPLOAD_ROLLOUT",
                "UPRAMP_FLAGS_FILE",
                "RUST_LOG"
            ]
        );
        let set: Vec<(&str, &str)> = env
            .set
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            set,
            [
                ("ASYNC_UPLOAD_ENABLED", "true"),
                ("ASYNC_UPLOAD_ROLLOUT", "0"),
                ("ASYNC_UPLOAD_FALLBACK", "false")
            ]
        );
        assert!(flag_env(Route::Async, [])
            .set
            .contains(&("ASYNC_UPLOAD_ROLLOUT".to_owned(), "100".to_owned())));
    }

    #[test]
    fn arguments_name_the_key_variable_not_the_key() {
        let args = upload_args("http://127.0.0.1:9/v1", 64, &[PathBuf::from("/w/a.txt")]);
        assert_eq!(
            args.join(" "),
            "upload --provider kimi --base-url http://127.0.0.1:9/v1 --key-env UPRAMP_BENCH_API_KEY \
             --concurrency 64 --json /w/a.txt"
        );
    }
}
