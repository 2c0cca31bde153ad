//! Contract tests: each client against its harness stand-in, through every endpoint on both
//! transports, and every fault kind the stand-ins inject, classified.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use upramp_harness::{FaultPlan, Flavor, StandIn, StandInConfig};
use upramp_providers::{
    ApiKey, BlockingFileProvider, ClientConfig, ErrorKind, FileProvider, ListQuery, ProviderClient,
    ProviderError, ProviderKind, RequestOptions, UploadBody, UploadMeta, MB,
};

const FLAVORS: [(Flavor, ProviderKind, &str); 2] = [
    (Flavor::Kimi, ProviderKind::Kimi, "file-extract"),
    (Flavor::Glm, ProviderKind::Glm, "batch"),
];

/// Deterministic, non-repeating-looking bytes.
fn payload(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8)
        .collect::<Vec<u8>>()
        .into()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn streamed(bytes: &Bytes, chunk: usize) -> UploadBody {
    let chunks: Vec<Result<Bytes, std::io::Error>> = bytes
        .chunks(chunk)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    UploadBody::Stream {
        stream: futures::stream::iter(chunks).boxed(),
        length: bytes.len() as u64,
    }
}

fn meta(name: &str, purpose: &str, len: usize) -> UploadMeta {
    UploadMeta {
        filename: name.into(),
        purpose: purpose.into(),
        length: len as u64,
    }
}

async fn start(flavor: Flavor) -> StandIn {
    StandIn::start(StandInConfig::new(flavor).with_seed(7))
        .await
        .unwrap()
}

fn client(stand_in: &StandIn, kind: ProviderKind) -> ProviderClient {
    let config = ClientConfig::new(kind, stand_in.base_url(), ApiKey::new(stand_in.api_key()))
        .with_request_timeout(Some(Duration::from_secs(30)));
    ProviderClient::new(config).unwrap()
}

#[tokio::test]
async fn async_client_round_trip() {
    for (flavor, kind, purpose) in FLAVORS {
        let stand_in = start(flavor).await;
        let client = client(&stand_in, kind);
        let data = payload(300_000, 1);
        let stored = client
            .upload(
                meta("notes.txt", purpose, data.len()),
                streamed(&data, 64 * 1024),
            )
            .await
            .unwrap();
        assert_eq!(stored.bytes, data.len() as u64);
        assert_eq!(stored.filename, "notes.txt");
        let on_server = stand_in.stored_files();
        assert_eq!(on_server.len(), 1);
        assert_eq!(on_server[0].sha256, sha256_hex(&data));
        assert_eq!(on_server[0].id, stored.id);

        let listed = client.list(&ListQuery::default()).await.unwrap();
        assert_eq!(
            listed
                .data
                .iter()
                .map(|f| f.id.as_str())
                .collect::<Vec<_>>(),
            vec![stored.id.as_str()]
        );
        assert!(!listed.has_more);
        let retrieved = client.retrieve(&stored.id).await.unwrap();
        assert_eq!(
            (retrieved.id.as_str(), retrieved.bytes),
            (stored.id.as_str(), stored.bytes)
        );
        let content = client.content(&stored.id).await.unwrap();
        assert!(!content.is_empty(), "{flavor}: empty content");
        let deleted = client.delete(&stored.id).await.unwrap();
        assert!(deleted.deleted);
        assert_eq!(deleted.id, stored.id);
        let gone = client.retrieve(&stored.id).await.unwrap_err();
        assert_eq!(
            (gone.kind, gone.status, gone.is_retryable()),
            (ErrorKind::NotFound, Some(404), false),
            "{gone}"
        );
        assert!(stand_in.stored_files().is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_client_round_trip_from_spawn_blocking() {
    for (flavor, kind, purpose) in FLAVORS {
        let stand_in = start(flavor).await;
        // Created inside the runtime, used on a blocking thread, dropped inside the runtime.
        let blocking = client(&stand_in, kind).blocking();
        let data = payload(200_000, 2);
        let expected_sha = sha256_hex(&data);
        let worker = blocking.clone();
        let stored = tokio::task::spawn_blocking(move || {
            worker.upload(meta("data.jsonl", purpose, data.len()), data)
        })
        .await
        .unwrap()
        .unwrap();
        assert_eq!(stored.bytes, 200_000);
        let on_server = stand_in.stored_files();
        assert_eq!(
            (on_server.len(), on_server[0].sha256.as_str()),
            (1, expected_sha.as_str())
        );

        let worker = blocking.clone();
        let id = stored.id.clone();
        let (listed, retrieved, content, deleted, gone) = tokio::task::spawn_blocking(move || {
            let listed = worker.list(&ListQuery::default()).unwrap();
            let retrieved = worker.retrieve(&id).unwrap();
            let content = worker.content(&id).unwrap();
            let deleted = worker.delete(&id).unwrap();
            let gone = worker.retrieve(&id).unwrap_err();
            (listed, retrieved, content, deleted, gone)
        })
        .await
        .unwrap();
        assert_eq!(listed.data.len(), 1);
        assert_eq!(retrieved.id, stored.id);
        assert!(!content.is_empty());
        assert!(deleted.deleted);
        assert_eq!(gone.kind, ErrorKind::NotFound);
        assert!(stand_in.stored_files().is_empty());
        drop(blocking);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_transports_store_identical_bytes() {
    for (flavor, kind, purpose) in FLAVORS {
        let stand_in = start(flavor).await;
        let client = client(&stand_in, kind);
        let data = payload(123_457, 3);
        client
            .upload(
                meta("same.bin", purpose, data.len()),
                UploadBody::Bytes(data.clone()),
            )
            .await
            .unwrap();
        let blocking = client.blocking();
        let copy = data.clone();
        tokio::task::spawn_blocking(move || {
            blocking.upload(meta("same.bin", purpose, copy.len()), copy)
        })
        .await
        .unwrap()
        .unwrap();
        let stored = stand_in.stored_files();
        assert_eq!(stored.len(), 2);
        for file in &stored {
            assert_eq!(
                (file.bytes, file.sha256.as_str()),
                (123_457, sha256_hex(&data).as_str())
            );
            assert_eq!(file.filename, "same.bin");
        }
    }
}

/// Uploads once on the async transport under `spec` and returns the error.
async fn async_failure(
    stand_in: &StandIn,
    kind: ProviderKind,
    purpose: &str,
    spec: &str,
    options: RequestOptions,
) -> ProviderError {
    stand_in.set_faults(FaultPlan::parse(spec).unwrap());
    let client = client(stand_in, kind);
    let data = payload(512 * 1024, 4);
    let result = client
        .upload_with(
            meta("f.txt", purpose, data.len()),
            streamed(&data, 32 * 1024),
            &options,
        )
        .await;
    stand_in.set_faults(FaultPlan::none());
    match result {
        Ok(file) => panic!("{spec}: expected an error, got {file:?}"),
        Err(err) => err,
    }
}

#[tokio::test]
async fn every_response_fault_is_classified() {
    // (spec, kind, status, retryable)
    let cases = [
        ("500:1.0", ErrorKind::Server, Some(500), true),
        ("502:1.0", ErrorKind::Server, Some(502), true),
        ("503:1.0", ErrorKind::Server, Some(503), true),
        ("429:1.0", ErrorKind::RateLimited, Some(429), true),
        ("429-date:1.0", ErrorKind::RateLimited, Some(429), true),
        ("quota:1.0", ErrorKind::QuotaExhausted, Some(429), false),
        ("401:1.0", ErrorKind::Authentication, Some(401), false),
        (
            "malformed:1.0",
            ErrorKind::MalformedResponse,
            Some(200),
            false,
        ),
    ];
    for (flavor, kind, purpose) in FLAVORS {
        let stand_in = start(flavor).await;
        for (spec, expected, status, retryable) in cases {
            let err =
                async_failure(&stand_in, kind, purpose, spec, RequestOptions::default()).await;
            assert_eq!(
                (err.kind, err.status, err.is_retryable()),
                (expected, status, retryable),
                "{flavor} {spec}: {err}"
            );
            assert!(!err.is_local());
            match spec {
                "429:1.0" => assert_eq!(err.retry_after, Some(Duration::from_secs(1)), "{err}"),
                // An HTTP-date two seconds ahead of the response's Date, at one-second resolution.
                "429-date:1.0" => {
                    let wait = err.retry_after.unwrap();
                    assert!(
                        (Duration::from_secs(1)..=Duration::from_secs(3)).contains(&wait),
                        "{wait:?}"
                    );
                }
                _ => {}
            }
            assert!(!err.to_string().contains(stand_in.api_key()));
        }
        // The malformed answer came after the file was stored: the ambiguous case.
        assert_eq!(stand_in.stored_files().len(), 1);
    }
}

#[tokio::test]
async fn connection_faults_are_classified() {
    for (flavor, kind, purpose) in FLAVORS {
        let stand_in = start(flavor).await;

        let dropped = async_failure(
            &stand_in,
            kind,
            purpose,
            "drop:1.0",
            RequestOptions::default(),
        )
        .await;
        assert_eq!(
            (dropped.kind, dropped.status, dropped.is_retryable()),
            (ErrorKind::Transport, None, true),
            "{dropped}"
        );
        assert_eq!(
            dropped.body_fully_sent,
            Some(true),
            "{flavor}: the whole body went out before the drop"
        );
        assert_eq!(
            stand_in.stored_files().len(),
            1,
            "{flavor}: drop stores the file"
        );

        let reset = async_failure(
            &stand_in,
            kind,
            purpose,
            "reset:1.0",
            RequestOptions::default(),
        )
        .await;
        assert_eq!(
            (reset.kind, reset.is_retryable()),
            (ErrorKind::Transport, true),
            "{flavor}: {reset}"
        );

        let stalled = async_failure(
            &stand_in,
            kind,
            purpose,
            "stall:1.0",
            RequestOptions::with_timeout(Duration::from_millis(300)),
        )
        .await;
        assert_eq!(
            (stalled.kind, stalled.is_retryable()),
            (ErrorKind::Timeout, true),
            "{flavor}: {stalled}"
        );
    }
}

#[tokio::test]
async fn slow_faults_still_succeed() {
    for (flavor, kind, purpose) in FLAVORS {
        let stand_in = start(flavor).await;
        stand_in.set_faults(FaultPlan::parse("latency:20ms,jitter:10ms,bandwidth:4mb").unwrap());
        let client = client(&stand_in, kind);
        let data = payload(256 * 1024, 5);
        let stored = client
            .upload(meta("slow.txt", purpose, data.len()), streamed(&data, 8192))
            .await
            .unwrap();
        assert_eq!(stored.bytes, data.len() as u64);
        let stats = stand_in.stats();
        for fault in ["latency", "bandwidth"] {
            assert!(
                stats.faults_by_kind.get(fault).copied().unwrap_or(0) >= 1,
                "{flavor}: {fault} not injected: {stats:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_can_target_one_path_by_user_agent() {
    for (flavor, kind, purpose) in FLAVORS {
        let stand_in = start(flavor).await;
        stand_in.set_faults(FaultPlan::parse("500:1.0@async").unwrap());
        let client = client(&stand_in, kind);
        let data = payload(10_000, 6);
        let err = client
            .upload(
                meta("a.txt", purpose, data.len()),
                UploadBody::Bytes(data.clone()),
            )
            .await
            .unwrap_err();
        assert_eq!(err.status, Some(500));

        let blocking = client.blocking();
        let copy = data.clone();
        let synced = tokio::task::spawn_blocking(move || {
            blocking.upload(meta("a.txt", purpose, copy.len()), copy)
        })
        .await
        .unwrap()
        .unwrap();
        assert_eq!(synced.bytes, 10_000);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_transport_classifies_faults() {
    for (flavor, kind, purpose) in FLAVORS {
        let stand_in = start(flavor).await;
        let blocking = client(&stand_in, kind).blocking();
        for (spec, expected, retryable) in [
            ("429:1.0@sync", ErrorKind::RateLimited, true),
            ("quota:1.0@sync", ErrorKind::QuotaExhausted, false),
            ("503:1.0@sync", ErrorKind::Server, true),
            ("drop:1.0@sync", ErrorKind::Transport, true),
            ("malformed:1.0@sync", ErrorKind::MalformedResponse, false),
        ] {
            stand_in.set_faults(FaultPlan::parse(spec).unwrap());
            let worker = blocking.clone();
            let data = payload(100_000, 7);
            let err = tokio::task::spawn_blocking(move || {
                worker.upload(meta("s.txt", purpose, data.len()), data)
            })
            .await
            .unwrap()
            .unwrap_err();
            assert_eq!(
                (err.kind, err.is_retryable()),
                (expected, retryable),
                "{flavor} {spec}: {err}"
            );
            if spec.starts_with("drop") {
                // The buffered body went out in one piece before the drop: the provider may have
                // stored it, so the error must not claim it was never sent.
                assert_ne!(err.body_fully_sent, Some(false), "{flavor} {spec}");
            }
        }
        stand_in.set_faults(FaultPlan::parse("stall:1.0@sync").unwrap());
        let worker = blocking.clone();
        let data = payload(100_000, 8);
        let options = RequestOptions::with_timeout(Duration::from_millis(300));
        let err = tokio::task::spawn_blocking(move || {
            worker.upload_with(meta("s.txt", purpose, data.len()), data, &options)
        })
        .await
        .unwrap()
        .unwrap_err();
        assert_eq!(
            (err.kind, err.is_retryable()),
            (ErrorKind::Timeout, true),
            "{flavor}: {err}"
        );
    }
}

#[tokio::test]
async fn wrong_key_and_local_rejections() {
    for (flavor, kind, purpose) in FLAVORS {
        let stand_in = start(flavor).await;
        let config = ClientConfig::new(kind, stand_in.base_url(), ApiKey::new("sk-wrong-key-123"));
        let wrong = ProviderClient::new(config).unwrap();
        let err = wrong.list(&ListQuery::default()).await.unwrap_err();
        assert_eq!(
            (err.kind, err.status, err.is_retryable()),
            (ErrorKind::Authentication, Some(401), false)
        );
        assert!(!format!("{err} {err:?} {wrong:?}").contains("sk-wrong-key-123"));

        let client = client(&stand_in, kind);
        // 300 MB declared, nothing behind it: refused before a byte is sent.
        let big = UploadBody::Stream {
            stream: futures::stream::empty().boxed(),
            length: 300 * MB,
        };
        let err = client
            .upload(meta("big.bin", purpose, (300 * MB) as usize), big)
            .await
            .unwrap_err();
        assert_eq!(
            (err.kind, err.is_local(), err.body_fully_sent),
            (ErrorKind::TooLarge, true, Some(false))
        );
        let err = client
            .upload(
                meta("empty.txt", purpose, 0),
                UploadBody::Bytes(Bytes::new()),
            )
            .await
            .unwrap_err();
        assert_eq!(
            (err.kind, err.is_local()),
            (ErrorKind::InvalidRequest, true)
        );
        let err = client
            .upload(
                meta("x.txt", "not-a-purpose", 3),
                UploadBody::Bytes(Bytes::from_static(b"abc")),
            )
            .await
            .unwrap_err();
        assert_eq!(
            (err.kind, err.is_local()),
            (ErrorKind::InvalidRequest, true)
        );
        assert_eq!(
            stand_in.stats().requests_by_route.get("upload"),
            None,
            "{flavor}: a refused upload reached the server"
        );
    }
}

#[tokio::test]
async fn body_shorter_than_declared_fails_as_a_body_error() {
    let stand_in = start(Flavor::Kimi).await;
    let client = client(&stand_in, ProviderKind::Kimi);
    let data = payload(10_000, 9);
    let short = UploadBody::Stream {
        stream: futures::stream::iter(vec![Ok::<_, std::io::Error>(data.slice(..4_000))]).boxed(),
        length: 10_000,
    };
    let err = client
        .upload(meta("short.txt", "file-extract", 10_000), short)
        .await
        .unwrap_err();
    assert_eq!(
        (err.kind, err.is_retryable(), err.body_fully_sent),
        (ErrorKind::Body, false, Some(false)),
        "{err}"
    );
    assert!(stand_in.stored_files().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_transport_resolves_host_names_as_well_as_ip_literals() {
    let stand_in = start(Flavor::Kimi).await;
    let by_name = stand_in.base_url().replace("127.0.0.1", "localhost");
    assert_ne!(by_name, stand_in.base_url());
    let config = ClientConfig::new(ProviderKind::Kimi, by_name, ApiKey::new(stand_in.api_key()))
        .with_request_timeout(Some(Duration::from_secs(30)));
    let blocking = ProviderClient::new(config).unwrap().blocking();
    let data = payload(5_000, 3);
    let stored = tokio::task::spawn_blocking(move || {
        blocking.upload(meta("named.txt", "file-extract", data.len()), data)
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(stored.bytes, 5_000);
    assert_eq!(stand_in.stored_files().len(), 1);
}

/// A fleet of sync threads sharing one blocking client keeps a connection per thread alive, rather
/// than reconnecting whenever more than a few were busy at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_fleet_reuses_one_connection_per_thread() {
    const THREADS: usize = 8;
    let stand_in = StandIn::start(StandInConfig::new(Flavor::Glm))
        .await
        .unwrap();
    let blocking = client(&stand_in, ProviderKind::Glm).blocking();
    let rounds = tokio::task::spawn_blocking(move || {
        let barrier = std::sync::Barrier::new(THREADS);
        std::thread::scope(|scope| {
            for thread in 0..THREADS {
                let (blocking, barrier) = (blocking.clone(), &barrier);
                scope.spawn(move || {
                    for round in 0..3 {
                        // Every thread sends at the same moment, so all of them hold a connection.
                        barrier.wait();
                        let data = payload(4_096, (thread * 3 + round) as u8);
                        let name = format!("t{thread}-r{round}.jsonl");
                        blocking
                            .upload(meta(&name, "batch", data.len()), data)
                            .unwrap();
                        barrier.wait();
                    }
                });
            }
        });
    });
    rounds.await.unwrap();
    let stats = stand_in.stats();
    assert_eq!(stats.uploads_accepted, 3 * THREADS as u64);
    assert!(
        stats.connections <= THREADS as u64,
        "{} connections for {THREADS} threads",
        stats.connections
    );
}
