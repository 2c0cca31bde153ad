//! No request hangs: the dedupe lookup has a time limit, and every request an overall deadline.

use std::time::{Duration, Instant};

use upramp_harness::Flavor;
use upramp_providers::{ApiKey, ProviderClient};
use upramp_uploader::{Route, Timeouts, UnknownCause, UploadError, UploadRequest, Uploader};

use crate::common::{fast_retry, fast_timeouts, flag, provider_kind, rig, small_files};
use crate::proxy::SilentListProxy;

/// Every upload is stored and then the connection is dropped without an answer, and the provider's
/// list never answers (a proxy swallows `GET /files`): the request must end, with an error saying
/// the file may be stored, within its limits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_list_ends_the_request_in_outcome_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let files = small_files(dir.path(), 1, 5_000);
    let rig = rig(Flavor::Kimi, "drop:1.0", flag(0, 2, true), |b| b).await;
    let proxy = SilentListProxy::start(rig.stand_in.addr()).await;
    let kind = provider_kind(Flavor::Kimi);
    let base_url = proxy.base_url(&rig.stand_in.base_url());
    let client =
        ProviderClient::with_base_url(kind, &base_url, ApiKey::new(rig.stand_in.api_key()))
            .unwrap();
    let blocking = client.blocking();
    for (label, timeouts, limit) in [
        // A short lookup limit: each lookup gives up, the request ends after its lookups.
        (
            "list timeout",
            Timeouts {
                list: Duration::from_millis(300),
                ..fast_timeouts()
            },
            Duration::from_secs(10),
        ),
        // A lookup limit longer than the deadline: the deadline ends the request.
        (
            "deadline",
            Timeouts {
                list: Duration::from_secs(600),
                deadline: Some(Duration::from_secs(2)),
                ..fast_timeouts()
            },
            Duration::from_secs(2),
        ),
    ] {
        for path in [Route::Async, Route::Sync] {
            let uploader = Uploader::builder(
                std::sync::Arc::new(client.clone()),
                std::sync::Arc::new(blocking.clone()),
            )
            .flags(upramp_flags::FlagStore::new(flag(0, 2, true)))
            .retry_policy(fast_retry())
            .timeouts(timeouts)
            .seed(3)
            .build()
            .unwrap();
            let started = Instant::now();
            let result = tokio::time::timeout(
                Duration::from_secs(60),
                uploader.upload_on(UploadRequest::new(&files[0], "file-extract"), path),
            )
            .await
            .unwrap_or_else(|_| panic!("{label} {path:?}: the request hung for 60 s"));
            let took = started.elapsed();
            let err = result.unwrap_err();
            assert!(
                took < limit + Duration::from_secs(3),
                "{label} {path:?}: took {took:?}"
            );
            match (&err, label) {
                (
                    UploadError::OutcomeUnknown {
                        cause: UnknownCause::ListFailed(_),
                        ..
                    },
                    "list timeout",
                )
                | (
                    UploadError::OutcomeUnknown {
                        cause: UnknownCause::Deadline(_),
                        ..
                    },
                    "deadline",
                ) => {}
                _ => panic!("{label} {path:?}: unexpected {err}"),
            }
            let line = err.to_string();
            assert!(line.contains("may have been stored"), "{line}");
        }
    }
}

/// A deadline shorter than one stalled attempt ends the request with a deadline timeout when
/// nothing can have been stored (the body never finished).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deadline_cuts_a_request_that_cannot_have_stored_anything() {
    let dir = tempfile::tempdir().unwrap();
    // Larger than the socket buffers, so a stalled server keeps the body from finishing.
    let files = small_files(dir.path(), 1, 32 * 1024 * 1024);
    let rig = rig(Flavor::Glm, "stall:1.0", flag(100, 3, true), |b| {
        b.timeouts(Timeouts {
            stall: Duration::from_secs(30),
            deadline: Some(Duration::from_millis(1_500)),
            ..fast_timeouts()
        })
    })
    .await;
    let started = Instant::now();
    let err = tokio::time::timeout(
        Duration::from_secs(60),
        rig.uploader
            .upload(UploadRequest::new(&files[0], "file-extract")),
    )
    .await
    .expect("the request hung")
    .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(
        matches!(
            err,
            UploadError::Timeout {
                kind: upramp_uploader::TimeoutKind::Deadline,
                ..
            }
        ),
        "{err}"
    );
    assert!(rig.stand_in.stored_files().is_empty());
    assert_eq!(rig.in_flight(), 0);
}
