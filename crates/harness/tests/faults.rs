//! Every fault kind, observed from the client side, plus determinism and `User-Agent` targeting.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{ErrorKind, Read, Write};
use std::time::Duration;

use common::{client, status_and_json, upload, upload_as, ASYNC_UA, SYNC_UA};
use upramp_harness::{FaultPlan, Flavor, StandIn, StandInConfig, FAULTS_CONTROL_PATH};

async fn start_with(flavor: Flavor, spec: &str, seed: u64) -> StandIn {
    let plan = FaultPlan::parse(spec).unwrap();
    StandIn::start(StandInConfig::new(flavor).with_faults(plan).with_seed(seed))
        .await
        .unwrap()
}

#[tokio::test]
async fn status_faults_carry_the_providers_bodies_and_headers() {
    for flavor in [Flavor::Kimi, Flavor::Glm] {
        let mut observed = Vec::new();
        for kind in ["500", "502", "503", "429", "429-date", "quota", "401"] {
            let stand_in = start_with(flavor, &format!("{kind}:1"), 1).await;
            let response = upload(&stand_in, "a.txt", "file-extract", b"hello".to_vec()).await;
            let retry_after = response
                .headers()
                .get("retry-after")
                .map(|value| value.to_str().unwrap().to_owned());
            match kind {
                "429" => assert_eq!(retry_after.as_deref(), Some("1")),
                "429-date" => {
                    let date = httpdate::parse_http_date(retry_after.as_deref().unwrap()).unwrap();
                    assert!(date > std::time::SystemTime::now() - Duration::from_secs(60));
                }
                _ => assert_eq!(retry_after, None),
            }
            let (status, body) = status_and_json(response).await;
            observed.push((kind, status, body));
            assert!(
                stand_in.stored_files().is_empty(),
                "{flavor} {kind} stored a file"
            );
            assert_eq!(stand_in.stats().faults_by_kind[kind], 1);
        }
        insta::assert_json_snapshot!(format!("{flavor}_status_faults"), observed);
    }
}

#[tokio::test]
async fn faults_hit_uploads_only_and_follow_runtime_changes() {
    let stand_in = start_with(Flavor::Kimi, "none", 1).await;
    assert_eq!(
        upload(&stand_in, "a.txt", "file-extract", b"a".to_vec())
            .await
            .status(),
        200
    );
    stand_in.set_faults(FaultPlan::parse("500:1").unwrap());
    assert_eq!(stand_in.faults().to_string(), "500:1");
    assert_eq!(
        upload(&stand_in, "b.txt", "file-extract", b"b".to_vec())
            .await
            .status(),
        500
    );
    let listed = client()
        .get(format!("{}/files", stand_in.base_url()))
        .bearer_auth(stand_in.api_key())
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200);
    stand_in.set_faults(FaultPlan::none());
    assert_eq!(
        upload(&stand_in, "c.txt", "file-extract", b"c".to_vec())
            .await
            .status(),
        200
    );
    assert_eq!(stand_in.stored_files().len(), 2);
}

#[tokio::test]
async fn the_control_route_replaces_the_plan_from_another_process() {
    for flavor in [Flavor::Kimi, Flavor::Glm] {
        let stand_in = start_with(flavor, "none", 1).await;
        let control = format!("http://{}{}", stand_in.addr(), FAULTS_CONTROL_PATH);
        let put = |spec: &'static str, key: &'static str| {
            client().put(&control).bearer_auth(key).body(spec).send()
        };
        let key: &'static str = upramp_harness::DEFAULT_API_KEY;
        assert_eq!(put("503:1", "wrong-key").await.unwrap().status(), 401);
        assert_eq!(stand_in.faults().to_string(), "none");
        let set = put("503:1", key).await.unwrap();
        assert_eq!(set.status(), 200);
        assert_eq!(set.text().await.unwrap(), "503:1");
        assert_eq!(stand_in.faults().to_string(), "503:1");
        let read = client()
            .get(&control)
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        assert_eq!(read.text().await.unwrap(), "503:1");
        for ua in [ASYNC_UA, SYNC_UA] {
            let response = upload_as(&stand_in, ua, "a.jsonl", "batch", b"{}".to_vec())
                .await
                .unwrap();
            assert_eq!(response.status(), 503, "{flavor} {ua}");
        }
        let bad = put("503:2", key).await.unwrap();
        assert_eq!(bad.status(), 400);
        assert!(bad
            .text()
            .await
            .unwrap()
            .starts_with("fault plan `503:2`: "));
        assert_eq!(
            stand_in.faults().to_string(),
            "503:1",
            "a bad plan changes nothing"
        );
        assert_eq!(put("none", key).await.unwrap().status(), 200);
        let response = upload_as(&stand_in, ASYNC_UA, "b.jsonl", "batch", b"{}".to_vec())
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let stats = stand_in.stats();
        assert_eq!(stats.requests_by_route.get("upload"), Some(&3));
        assert_eq!(
            stats.requests_by_route.get("unknown"),
            None,
            "control is not a client route"
        );
    }
}

#[tokio::test]
async fn user_agent_targets_one_upload_path() {
    let stand_in = start_with(Flavor::Glm, "500:1@async,429:1@sync", 1).await;
    let statuses = [
        upload_as(&stand_in, ASYNC_UA, "a.jsonl", "batch", b"{}".to_vec())
            .await
            .unwrap()
            .status(),
        upload_as(&stand_in, SYNC_UA, "b.jsonl", "batch", b"{}".to_vec())
            .await
            .unwrap()
            .status(),
        upload_as(&stand_in, "curl/8.0", "c.jsonl", "batch", b"{}".to_vec())
            .await
            .unwrap()
            .status(),
    ];
    assert_eq!(statuses.map(|status| status.as_u16()), [500, 429, 200]);
}

async fn outcomes(seed: u64) -> Vec<String> {
    let stand_in = start_with(Flavor::Kimi, "500:0.2,503:0.2,429:0.1,malformed:0.1", seed).await;
    let mut seen = Vec::new();
    for index in 0..40 {
        let response = upload(
            &stand_in,
            &format!("{index}.txt"),
            "file-extract",
            b"x".to_vec(),
        )
        .await;
        let status = response.status().as_u16();
        let parses =
            serde_json::from_slice::<serde_json::Value>(&response.bytes().await.unwrap()).is_ok();
        seen.push(format!(
            "{status}{}",
            if parses { "" } else { "-malformed" }
        ));
    }
    seen
}

#[tokio::test]
async fn fault_decisions_follow_the_seed() {
    let first = outcomes(7).await;
    assert_eq!(first, outcomes(7).await);
    assert_ne!(first, outcomes(8).await);
    for expected in ["200", "500", "503", "429", "200-malformed"] {
        assert!(
            first.iter().any(|outcome| outcome == expected),
            "{expected} never drawn: {first:?}"
        );
    }
}

#[tokio::test]
async fn malformed_answers_200_with_broken_json_and_stores_the_file() {
    let stand_in = start_with(Flavor::Glm, "malformed:1", 1).await;
    let response = upload(&stand_in, "a.jsonl", "batch", b"{}".to_vec()).await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert!(
        serde_json::from_str::<serde_json::Value>(&text).is_err(),
        "{text}"
    );
    assert!(text.starts_with('{'));
    assert_eq!(stand_in.stored_files().len(), 1);
    assert_eq!(stand_in.stats().faults_by_kind["malformed"], 1);
}

#[tokio::test]
async fn stall_leaves_the_client_waiting_until_its_timeout() {
    let stand_in = start_with(Flavor::Kimi, "stall:1", 1).await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let err = http
        .post(format!("{}/files", stand_in.base_url()))
        .bearer_auth(stand_in.api_key())
        .multipart(common::form(
            "a.txt",
            "file-extract",
            vec![b'a'; 256 * 1024],
        ))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert!(stand_in.stored_files().is_empty());
    assert_eq!(stand_in.stats().faults_by_kind["stall"], 1);
    // Shutting down cuts the stalled request instead of waiting for it.
    stand_in.shutdown().await;
}

#[tokio::test]
async fn latency_and_bandwidth_slow_responses_past_a_short_timeout() {
    let stand_in = start_with(Flavor::Kimi, "latency:5s@async,bandwidth:1kb@sync", 1).await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    for user_agent in [ASYNC_UA, SYNC_UA] {
        let err = http
            .post(format!("{}/files", stand_in.base_url()))
            .bearer_auth(stand_in.api_key())
            .header("User-Agent", user_agent)
            .multipart(common::form("a.txt", "file-extract", vec![b'a'; 8 * 1024]))
            .send()
            .await
            .unwrap_err();
        assert!(err.is_timeout(), "{user_agent}: {err:?}");
    }
    // Untargeted requests are untouched.
    assert_eq!(
        upload(&stand_in, "b.txt", "file-extract", b"b".to_vec())
            .await
            .status(),
        200
    );
    let stats = stand_in.stats();
    assert_eq!(stats.faults_by_kind["bandwidth"], 1);
    assert!(stats
        .faults_by_kind
        .get("latency")
        .is_none_or(|count| *count <= 1));
}

/// Send a real upload over a raw socket, so the test sees exactly what the server did to the
/// connection: `Ok(bytes)` is what it answered before closing, `Err` how the connection failed.
fn raw_upload(
    stand_in_addr: std::net::SocketAddr,
    path: &str,
    key: &str,
    body_len: usize,
) -> std::io::Result<Vec<u8>> {
    let mut stream = std::net::TcpStream::connect(stand_in_addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let boundary = "upramp-boundary";
    let head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.jsonl\"\r\nContent-Type: application/octet-stream\r\n\r\n"
    );
    let tail = format!("\r\n--{boundary}--\r\n");
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {key}\r\nContent-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {}\r\n\r\n{head}",
        head.len() + body_len + tail.len()
    );
    stream.write_all(request.as_bytes())?;
    stream.write_all(&vec![b'x'; body_len])?;
    stream.write_all(tail.as_bytes())?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    Ok(answer)
}

#[tokio::test]
async fn reset_cuts_the_connection_mid_body_with_a_tcp_reset() {
    let stand_in = start_with(Flavor::Glm, "reset:1", 1).await;
    let (addr, key) = (stand_in.addr(), stand_in.api_key().to_owned());
    let result = tokio::task::spawn_blocking(move || {
        raw_upload(addr, "/api/paas/v4/files", &key, 64 * 1024)
    })
    .await
    .unwrap();
    let err = result.unwrap_err();
    assert!(
        matches!(
            err.kind(),
            ErrorKind::ConnectionReset | ErrorKind::BrokenPipe
        ),
        "{err:?}"
    );
    assert!(stand_in.stored_files().is_empty());
    assert_eq!(stand_in.stats().faults_by_kind["reset"], 1);

    // A reqwest client sees a transport error, not a status and not a timeout.
    let err = upload_as(
        &stand_in,
        "plain-reqwest",
        "b.jsonl",
        "batch",
        vec![b'x'; 64 * 1024],
    )
    .await
    .unwrap_err();
    assert!(!err.is_timeout() && err.status().is_none(), "{err:?}");
}

#[tokio::test]
async fn drop_stores_the_file_then_closes_without_an_answer() {
    let stand_in = start_with(Flavor::Kimi, "drop:1", 1).await;
    let (addr, key) = (stand_in.addr(), stand_in.api_key().to_owned());
    let answer = tokio::task::spawn_blocking(move || raw_upload(addr, "/v1/files", &key, 1000))
        .await
        .unwrap()
        .unwrap();
    assert!(
        answer.is_empty(),
        "got an answer: {}",
        String::from_utf8_lossy(&answer)
    );
    let stored = stand_in.stored_files();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].bytes, 1000);
    assert_eq!(stored[0].filename, "a.jsonl");

    let err = upload_as(&stand_in, ASYNC_UA, "c.txt", "file-extract", b"c".to_vec())
        .await
        .unwrap_err();
    assert!(!err.is_timeout() && err.status().is_none(), "{err:?}");
    let stats = stand_in.stats();
    assert_eq!(stats.uploads_dropped_after_accept, 2);
    assert_eq!(stats.uploads_accepted, 2);
    assert_eq!(stand_in.stored_files().len(), 2);
}

#[tokio::test]
async fn list_and_content_stay_healthy_under_every_upload_fault() {
    let stand_in = start_with(Flavor::Glm, "none", 1).await;
    upload(&stand_in, "a.jsonl", "batch", b"{}".to_vec()).await;
    stand_in.set_faults(FaultPlan::parse("reset:0.5,drop:0.5").unwrap());
    let http = client();
    for _ in 0..5 {
        let (status, listed) = status_and_json(
            http.get(format!("{}/files", stand_in.base_url()))
                .bearer_auth(stand_in.api_key())
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(listed["data"].as_array().unwrap().len(), 1);
    }
}
