//! Bad inputs, files that change under the uploader, and cancellation.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use upramp_harness::Flavor;
use upramp_telemetry::{
    EventKind, FanOut, RecordingObserver, UploadEvent, UploadObserver, UploadPath,
};
use upramp_uploader::{Route, UploadError, UploadRequest};

use crate::common::{flag, rig};

/// Whether an error is the expected variant.
type ErrorCheck = fn(&UploadError) -> bool;

/// Each bad input gives its own one-line error naming the file, before any byte is sent.
#[tokio::test]
async fn bad_inputs_each_give_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let empty = root.join("empty.txt");
    std::fs::write(&empty, b"").unwrap();
    // Sparse: 60 MiB of size without 60 MiB of disk or reading.
    let huge = root.join("huge.pdf");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(60 * 1024 * 1024)
        .unwrap();
    let small = root.join("small.txt");
    std::fs::write(&small, b"fine").unwrap();
    let rig = rig(Flavor::Glm, "", flag(100, 3, true), |b| b).await;

    let cases: Vec<(UploadRequest, ErrorCheck)> = vec![
        (
            UploadRequest::new(root.join("missing.pdf"), "file-extract"),
            |e| matches!(e, UploadError::NotFound { .. }),
        ),
        (UploadRequest::new(root, "file-extract"), |e| {
            matches!(e, UploadError::Directory { .. })
        }),
        (UploadRequest::new(&empty, "file-extract"), |e| {
            matches!(e, UploadError::Empty { .. })
        }),
        (UploadRequest::new("/dev/null", "file-extract"), |e| {
            matches!(e, UploadError::Unreadable { .. })
        }),
        (UploadRequest::new(&huge, "file-extract"), |e| {
            matches!(e, UploadError::TooLarge { .. })
        }),
        (UploadRequest::new(&small, "no-such-purpose"), |e| {
            matches!(e, UploadError::Rejected { .. })
        }),
    ];
    let mut lines = Vec::new();
    for (request, is_expected) in cases {
        let err = rig.uploader.upload(request).await.unwrap_err();
        assert!(is_expected(&err), "{err:?}");
        assert!(err.is_bad_input());
        assert_eq!(err.attempts(), 0);
        assert_eq!(err.path_taken(), None);
        let line = err.to_string();
        assert!(!line.contains('\n'));
        lines.push(line.replace(&root.display().to_string(), "<dir>"));
    }
    insta::assert_snapshot!(lines.join("\n"));
    assert!(rig.stand_in.stored_files().is_empty());
    assert_eq!(
        rig.stand_in.stats().requests_by_route.get("upload"),
        None,
        "nothing was sent"
    );
    assert_eq!(rig.in_flight(), 0);
}

/// A file that grows while it is streamed never completes its upload: an error, nothing stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_changing_mid_stream_is_an_error_not_a_mixed_upload() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("growing.log");
    std::fs::write(&path, vec![b'x'; 16 * 1024 * 1024]).unwrap();
    // The stand-in reads at 8 MiB/s, so the body takes about two seconds to send.
    let rig = rig(Flavor::Kimi, "bandwidth:8mb", flag(100, 2, true), |b| b).await;
    let uploader = rig.uploader.clone();
    let request = UploadRequest::new(&path, "file-extract");
    let upload = tokio::spawn(async move { uploader.upload(request).await });
    // Wait for the async leg to start, then append.
    let recorder = rig.recorder.clone();
    while recorder.in_flight(rig.provider, UploadPath::Async) == 0 {
        tokio::task::yield_now().await;
    }
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    std::io::Write::write_all(&mut file, b"late line\n").unwrap();
    let err = upload.await.unwrap().unwrap_err();
    assert!(matches!(err, UploadError::Changed { .. }), "{err}");
    assert_eq!(err.path_taken(), Some(UploadPath::Async));
    assert!(err.to_string().contains("growing.log"));
    assert!(rig.stand_in.stored_files().is_empty());
    assert_eq!(rig.in_flight(), 0);
}

/// Rewrites the file (same size, same modification time: only the checksum can tell) when the
/// first attempt ends, as a concurrent writer might between attempts.
struct RewriteAfterFirstAttempt {
    path: std::path::PathBuf,
    done: AtomicBool,
}

impl UploadObserver for RewriteAfterFirstAttempt {
    fn on_event(&self, event: &UploadEvent) {
        if event.kind == EventKind::Attempt && !self.done.swap(true, Ordering::SeqCst) {
            let modified = std::fs::metadata(&self.path).unwrap().modified().unwrap();
            let len = std::fs::metadata(&self.path).unwrap().len() as usize;
            std::fs::write(&self.path, vec![b'B'; len]).unwrap();
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(&self.path)
                .unwrap();
            file.set_modified(modified).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checksum_that_differs_between_attempts_is_an_error() {
    for forced in [Route::Async, Route::Sync] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.csv");
        std::fs::write(&path, vec![b'A'; 50_000]).unwrap();
        let rewriter = Arc::new(RewriteAfterFirstAttempt {
            path: path.clone(),
            done: AtomicBool::new(false),
        });
        let recorder = Arc::new(RecordingObserver::new());
        let observers = FanOut::new().with(recorder.clone()).with(rewriter);
        let rig = rig(Flavor::Kimi, "500:1", flag(0, 2, false), |b| {
            b.observer(Arc::new(observers))
        })
        .await;
        let err = rig
            .uploader
            .upload_on(UploadRequest::new(&path, "file-extract"), forced)
            .await
            .unwrap_err();
        assert!(
            matches!(err, UploadError::Changed { .. }),
            "{forced:?}: {err}"
        );
        assert!(err.to_string().contains("checksum differs"), "{err}");
        assert_eq!(err.attempts(), 2);
        assert!(rig.stand_in.stored_files().is_empty());
    }
}

/// Dropping an upload mid-stream ends it: the in-flight gauge returns to zero, the stand-in keeps
/// nothing, and the runtime that ran it has no task left.
#[test]
fn dropping_an_async_upload_cancels_it_and_leaves_no_task() {
    // The stand-in runs on its own runtime, so the upload's runtime holds only what the upload
    // itself spawned.
    let server_runtime = tokio::runtime::Runtime::new().unwrap();
    let rig = server_runtime.block_on(rig(
        Flavor::Kimi,
        "bandwidth:1mb",
        flag(100, 3, true),
        |b| b,
    ));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.bin");
    std::fs::write(&path, vec![7u8; 8 * 1024 * 1024]).unwrap();

    let upload_runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let recorder = rig.recorder.clone();
    let provider = rig.provider;
    upload_runtime.block_on(async {
        let upload = rig
            .uploader
            .upload(UploadRequest::new(&path, "file-extract"));
        tokio::pin!(upload);
        // Run the upload until its async leg is in flight and the body is moving, then drop it.
        let started = async {
            while recorder.in_flight(provider, UploadPath::Async) == 0 {
                tokio::task::yield_now().await;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        };
        tokio::select! {
            result = &mut upload => panic!("the upload should still be running: {result:?}"),
            () = started => {}
        }
    });
    assert_eq!(
        rig.in_flight(),
        0,
        "the gauge is back to zero once the future is gone"
    );
    upload_runtime.block_on(async {
        // Connection tasks the HTTP client spawned wind down once the request is dropped.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let metrics = tokio::runtime::Handle::current().metrics();
        while metrics.num_alive_tasks() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            metrics.num_alive_tasks(),
            0,
            "a task outlived the cancelled upload"
        );
    });
    assert!(rig.stand_in.stored_files().is_empty());
    assert!(
        rig.events(EventKind::Request).is_empty(),
        "a cancelled request reports no outcome"
    );
    drop(upload_runtime);
    server_runtime.block_on(rig.stand_in.shutdown());
}

/// A sync-path upload dropped while its blocking thread runs: the gauge returns to zero at once;
/// the thread finishes in the background and its result is discarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_sync_upload_releases_the_gauge() {
    let rig = rig(Flavor::Glm, "bandwidth:2mb", flag(0, 0, true), |b| b).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("slow.bin");
    std::fs::write(&path, vec![1u8; 4 * 1024 * 1024]).unwrap();
    // Boxed, so `drop` below really drops the future (a stack-pinned one lives to the scope's end).
    let mut upload = Box::pin(
        rig.uploader
            .upload(UploadRequest::new(&path, "file-extract")),
    );
    let recorder = rig.recorder.clone();
    tokio::select! {
        result = &mut upload => panic!("the upload should still be running: {result:?}"),
        () = async {
            while recorder.in_flight(rig.provider, UploadPath::Sync) == 0 {
                tokio::task::yield_now().await;
            }
        } => {}
    }
    drop(upload);
    assert_eq!(rig.in_flight(), 0);
}
