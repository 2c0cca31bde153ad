//! Peak memory of a 100 MB upload on each path, measured in a separate process (the
//! `upload_one` example) so nothing else in this test binary shares its heap.

use std::path::PathBuf;
use std::process::Command;

use upramp_harness::corpus::{self, FileKind};
use upramp_harness::{Flavor, StandIn, StandInConfig};

const MIB: u64 = 1024 * 1024;
const FILE_SIZE: u64 = 100 * MIB;

/// The example binary, built next to this test binary (`cargo test` builds examples; when a
/// filter skipped it, build it now into the same target directory).
fn upload_one() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .to_path_buf();
    let binary = profile_dir.join("examples").join("upload_one");
    if !binary.exists() {
        let target_dir = profile_dir.parent().unwrap();
        let mut build = Command::new(env!("CARGO"));
        build.args([
            "build",
            "-p",
            "upramp-uploader",
            "--example",
            "upload_one",
            "--target-dir",
        ]);
        build.arg(target_dir);
        if profile_dir
            .file_name()
            .is_some_and(|name| name == "release")
        {
            build.arg("--release");
        }
        let status = build.status().unwrap();
        assert!(status.success(), "building the upload_one example failed");
    }
    binary
}

#[derive(Debug)]
struct Measured {
    idle_kib: u64,
    peak_kib: u64,
    sha256: String,
    id: String,
    seconds: f64,
}

fn measure(base_url: &str, file: &std::path::Path, path: &str) -> Measured {
    let output = Command::new(upload_one())
        .arg(base_url)
        .arg("kimi")
        .arg(file)
        .arg(path)
        .env_remove("UPRAMP_API_KEY")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "upload_one {path} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["path"], path);
    assert_eq!(report["bytes"], FILE_SIZE);
    Measured {
        idle_kib: report["idle_hwm_kib"].as_u64().unwrap(),
        peak_kib: report["peak_hwm_kib"].as_u64().unwrap(),
        sha256: report["sha256"].as_str().unwrap().to_owned(),
        id: report["id"].as_str().unwrap().to_owned(),
        seconds: report["seconds"].as_f64().unwrap(),
    }
}

/// The async path's peak stays within 16 MiB of the idle process for a 100 MB file; the sync
/// path's peak is at least the file size (it holds the whole file).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_memory_is_flat_and_sync_memory_holds_the_file() {
    let stand_in = StandIn::start(StandInConfig::new(Flavor::Kimi))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = corpus::generate(dir.path(), FileKind::Binary, FILE_SIZE, 42).unwrap();
    let base_url = stand_in.base_url();

    let (on_async, on_sync) = tokio::task::spawn_blocking({
        let file = file.clone();
        move || {
            (
                measure(&base_url, &file, "async"),
                measure(&base_url, &file, "sync"),
            )
        }
    })
    .await
    .unwrap();
    eprintln!(
        "100 MiB upload, peak RSS over idle: async {} KiB (idle {} KiB, {:.2} s), sync {} KiB (idle {} KiB, {:.2} s)",
        on_async.peak_kib - on_async.idle_kib,
        on_async.idle_kib,
        on_async.seconds,
        on_sync.peak_kib - on_sync.idle_kib,
        on_sync.idle_kib,
        on_sync.seconds,
    );
    assert!(
        on_async.peak_kib <= on_async.idle_kib + 16 * 1024,
        "async path grew by {} KiB",
        on_async.peak_kib - on_async.idle_kib
    );
    assert!(
        on_sync.peak_kib >= FILE_SIZE / 1024,
        "sync path peaked at {} KiB, below the file size",
        on_sync.peak_kib
    );

    let stored = stand_in.stored_files();
    assert_eq!(stored.len(), 2);
    let expected = crate::common::sha256_file(&file);
    for measured in [&on_async, &on_sync] {
        assert_eq!(measured.sha256, expected);
        let file = stored.iter().find(|f| f.id == measured.id).unwrap();
        assert_eq!(file.sha256, expected);
    }
}
