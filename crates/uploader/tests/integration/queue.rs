//! Latency is measured from the moment a leg holds its path's slot: the wait for the slot is
//! reported apart, and the in-flight gauge counts only slot holders.

use std::time::Duration;

use futures::StreamExt;
use upramp_harness::Flavor;
use upramp_telemetry::{EventKind, UploadPath};
use upramp_uploader::{Receipt, UploadError, UploadRequest};

use crate::common::{flag, rig, small_files};

/// Ten small sync uploads at once through one sync slot, each answered after 20 ms: each receipt
/// and each leg event shows about one request's time, the queue wait grows instead, and no more
/// than one sync leg is ever in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_wait_is_not_upload_latency() {
    let dir = tempfile::tempdir().unwrap();
    let files = small_files(dir.path(), 10, 2_000);
    let rig = rig(Flavor::Glm, "latency:20ms", flag(0, 0, false), |b| {
        b.sync_concurrency(1)
    })
    .await;
    let requests = files
        .iter()
        .map(|p| UploadRequest::new(p, "file-extract"))
        .collect();
    let results: Vec<(usize, Result<Receipt, UploadError>)> =
        rig.uploader.upload_many(requests).collect().await;
    let receipts: Vec<&Receipt> = results.iter().map(|(_, r)| r.as_ref().unwrap()).collect();
    let one_request = Duration::from_millis(20);
    // Nine uploads of at least 20 ms each ran before the last one got the slot.
    let longest_wait = receipts.iter().map(|r| r.queue).max().unwrap();
    assert!(
        longest_wait >= one_request * 8,
        "longest queue wait {longest_wait:?}"
    );
    for receipt in &receipts {
        assert_eq!(receipt.path, UploadPath::Sync);
        assert!(
            receipt.duration < one_request * 9,
            "duration {:?} (queue {:?}) includes the wait for the slot",
            receipt.duration,
            receipt.queue
        );
    }
    let legs = rig.events(EventKind::Request);
    assert_eq!(legs.len(), 10);
    for leg in &legs {
        assert!(leg.duration < one_request * 9, "{leg:?}");
    }
    let mut waits: Vec<Duration> = legs.iter().map(|l| l.queue_wait).collect();
    let mut from_receipts: Vec<Duration> = receipts.iter().map(|r| r.queue).collect();
    waits.sort_unstable();
    from_receipts.sort_unstable();
    assert_eq!(waits, from_receipts);
    assert_eq!(
        rig.recorder.max_in_flight(rig.provider, UploadPath::Sync),
        1
    );
    assert_eq!(rig.in_flight(), 0);
    assert_eq!(rig.recorder.queued(rig.provider, UploadPath::Sync), 0);
}
