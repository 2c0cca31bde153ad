//! `upramp serve` routes over real HTTP (reqwest and curl): every route, every error status the
//! gateway answers, pagination that a cursor pager finishes, tokens, and the provider key never
//! leaking.

#![allow(clippy::unwrap_used)]

mod serve_support;

use std::process::Command;

use serve_support::*;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use upramp_harness::Flavor;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_in_the_openai_shape() {
    let stand_in = stand_in(Flavor::Kimi, "none").await;
    let gateway = Options::new(&stand_in, Flavor::Kimi).start();
    let http = reqwest::Client::new();
    let mut said = String::new();

    let body = b"hello gateway\n".to_vec();
    let (status, headers, file) =
        parts(upload(&gateway, form("notes.txt", "file-extract", body.clone())).await).await;
    assert_eq!(status, 200, "{file}");
    said.push_str(&file.to_string());
    assert_eq!(file["object"], "file");
    assert_eq!(file["bytes"], body.len());
    assert_eq!(file["purpose"], "file-extract");
    assert!(file["created_at"].as_i64().unwrap() > 0);
    let id = file["id"].as_str().unwrap().to_owned();
    assert_eq!(headers["x-upramp-path"], "async");
    assert_eq!(headers["x-upramp-attempts"], "1");
    assert!(
        headers["x-upramp-upload-ms"]
            .to_str()
            .unwrap()
            .parse::<f64>()
            .unwrap()
            >= 0.0
    );
    assert_eq!(headers["x-upramp-routing"], "async/in_rollout");
    let stored = stand_in.stored_files();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].id, id);
    assert_eq!(stored[0].sha256, hex(&body));
    assert_eq!(
        headers["x-upramp-sha256"].to_str().unwrap(),
        stored[0].sha256
    );

    let (status, _, listed) = parts(
        http.get(format!("{}/v1/files", gateway.url))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(listed["object"], "list");
    assert_eq!(listed["has_more"], false);
    assert_eq!(listed["data"][0]["id"], id.as_str());

    let (status, _, retrieved) = parts(
        http.get(format!("{}/v1/files/{id}", gateway.url))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, &retrieved), (200, &file));

    let content = http
        .get(format!("{}/v1/files/{id}/content", gateway.url))
        .send()
        .await
        .unwrap();
    assert_eq!(content.status(), 200);
    assert_eq!(content.bytes().await.unwrap().as_ref(), body.as_slice());

    let (status, _, deleted) = parts(
        http.delete(format!("{}/v1/files/{id}", gateway.url))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        deleted,
        serde_json::json!({ "id": id, "object": "file", "deleted": true })
    );
    assert!(stand_in.stored_files().is_empty());

    let (status, _, missing) = parts(
        http.get(format!("{}/v1/files/{id}", gateway.url))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(status, &missing, 404);
    said.push_str(&missing.to_string());
    let (status, _, missing) = parts(
        http.delete(format!("{}/v1/files/{id}", gateway.url))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(status, &missing, 404);

    for probe in ["healthz", "readyz"] {
        let response = http
            .get(format!("{}/{probe}", gateway.url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{probe}");
    }
    let metrics = http
        .get(format!("{}/metrics", gateway.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .contains(r#"upramp_uploads_total{provider="kimi",path="async",outcome="success"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"upramp_gateway_flag_rollout_percent{flag="async_upload"} 100"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"rollout="100",enabled="true",fallback="false",enabled_source="env",rollout_source="env""#), "{metrics}");
    assert!(
        metrics.contains(r#"upramp_gateway_requests_total{route="create",status="200"} 1"#),
        "{metrics}"
    );
    said.push_str(&metrics);
    // Every gateway series the Grafana dashboard queries is one this gateway exposes.
    let dashboard = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/grafana/upramp.json"
    ))
    .unwrap();
    let mut queried = 0;
    for (start, _) in dashboard.match_indices("upramp_gateway_") {
        let name: String = dashboard[start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        assert!(
            metrics.contains(&format!("# TYPE {name} ")),
            "the dashboard queries {name}, which the gateway does not expose"
        );
        queried += 1;
    }
    assert!(queried >= 6, "the dashboard has no gateway panels");

    // curl, as a shell script would call it.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("from-curl.csv");
    std::fs::write(&path, "a,b\n1,2\n").unwrap();
    let output = Command::new("curl")
        .args(["-sS", "-i", "-F", "purpose=file-extract", "-F"])
        .arg(format!("file=@{}", path.display()))
        .arg(format!("{}/v1/files", gateway.url))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    // Stored under a per-request marker so an ambiguous failure can only adopt this request's file.
    assert!(text.contains("\"filename\":\"from-curl.u"), "{text}");
    assert!(text.contains(".csv\""), "{text}");
    assert!(
        text.to_ascii_lowercase().contains("x-upramp-path: async"),
        "{text}"
    );
    said.push_str(&text);

    let stderr = gateway.stderr();
    assert!(!said.contains(PROVIDER_KEY), "the key leaked in a response");
    assert!(
        !stderr.contains(PROVIDER_KEY),
        "the key leaked in the log: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_openai_errors_with_the_right_status() {
    let stand_in = stand_in(Flavor::Glm, "none").await;
    let gateway = Options::new(&stand_in, Flavor::Glm).start();
    let http = reqwest::Client::new();
    let url = format!("{}/v1/files", gateway.url);

    let (status, _, body) = parts(
        upload(
            &gateway,
            reqwest::multipart::Form::new().part(
                "file",
                reqwest::multipart::Part::bytes(b"x".to_vec()).file_name("a.txt"),
            ),
        )
        .await,
    )
    .await;
    assert_error(status, &body, 400);
    assert_eq!(body["error"]["param"], "purpose");
    let (status, _, body) = parts(
        upload(
            &gateway,
            reqwest::multipart::Form::new().text("purpose", "batch"),
        )
        .await,
    )
    .await;
    assert_error(status, &body, 400);
    assert_eq!(body["error"]["param"], "file");
    let (status, _, body) =
        parts(upload(&gateway, form("a.txt", "no-such-purpose", b"x".to_vec())).await).await;
    assert_error(status, &body, 400);
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("no-such-purpose"));
    let (status, _, body) =
        parts(upload(&gateway, form("empty.txt", "batch", Vec::new())).await).await;
    assert_error(status, &body, 400);
    let (status, _, body) = parts(http.post(&url).body("plain").send().await.unwrap()).await;
    assert_error(status, &body, 400);
    let (status, _, body) = parts(http.get(format!("{url}?limit=0")).send().await.unwrap()).await;
    assert_error(status, &body, 400);
    assert_eq!(body["error"]["param"], "limit");
    let (status, _, body) = parts(
        http.get(format!("{}/v2/nothing", gateway.url))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(status, &body, 404);
    let (status, _, body) = parts(http.put(&url).send().await.unwrap()).await;
    assert_error(status, &body, 405);
    // GLM's image cap (5 MB for file-extract .png) is known once both fields are in.
    let (status, _, body) = parts(
        upload(
            &gateway,
            form("big.png", "file-extract", vec![0u8; 5 * 1024 * 1024 + 1]),
        )
        .await,
    )
    .await;
    assert_error(status, &body, 413);
    assert!(stand_in.stored_files().is_empty());
    assert!(gateway.spool_files().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_over_limit_body_is_refused_with_413_before_it_is_all_read() {
    let stand_in = stand_in(Flavor::Glm, "none").await;
    let gateway = Options::new(&stand_in, Flavor::Glm).start();
    let addr = host(&gateway.url).to_owned();

    // Declared too large: refused from the head alone.
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    stream
        .write_all(multipart_head(&addr, "b0", Some(200 * 1024 * 1024)).as_bytes())
        .await
        .unwrap();
    let mut answer = vec![0u8; 4096];
    let n = stream.read(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]).into_owned();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer.contains("\"type\":\"invalid_request_error\""),
        "{answer}"
    );

    // Chunked (no declared length), purpose first: refused once the file passes its cap (GLM
    // code-interpreter: 20 MB), while the client still has 40 MB to send.
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let (mut reader, mut writer) = stream.split();
    writer
        .write_all(multipart_head(&addr, "b1", None).as_bytes())
        .await
        .unwrap();
    let preamble = file_preamble("b1", "code-interpreter", "data.csv");
    writer
        .write_all(format!("{:x}\r\n{preamble}\r\n", preamble.len()).as_bytes())
        .await
        .unwrap();
    let chunk = vec![b'x'; 1024 * 1024];
    let send = async {
        for _ in 0..60 {
            let framed = [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
            if writer.write_all(&framed).await.is_err() {
                return false;
            }
        }
        true
    };
    let receive = async {
        let mut answer = Vec::new();
        let _ = reader.read_to_end(&mut answer).await;
        String::from_utf8_lossy(&answer).into_owned()
    };
    let (sent_all, answer) = tokio::join!(send, receive);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("refused while receiving"), "{answer}");
    assert!(!sent_all, "the gateway read the whole 60 MB body");
    drop(stream);
    assert!(stand_in.stored_files().is_empty());
    assert_eq!(stand_in.stats().requests, 0, "nothing reached the provider");
    let deadline = std::time::Instant::now() + PATIENCE;
    while !gateway.spool_files().is_empty() {
        assert!(std::time::Instant::now() < deadline, "spool not emptied");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_failures_map_to_429_and_502_without_the_key() {
    let stand_in = stand_in(Flavor::Kimi, "429:1").await;
    let gateway = Options::new(&stand_in, Flavor::Kimi).start();
    let (status, headers, body) =
        parts(upload(&gateway, form("a.txt", "file-extract", b"x".to_vec())).await).await;
    assert_error(status, &body, 429);
    assert!(
        headers["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    assert_eq!(body["error"]["type"], "rate_limit_error");

    stand_in.set_faults(upramp_harness::FaultPlan::parse("500:1").unwrap());
    let (status, _, body) =
        parts(upload(&gateway, form("a.txt", "file-extract", b"x".to_vec())).await).await;
    assert_error(status, &body, 502);

    stand_in.set_faults(upramp_harness::FaultPlan::parse("401:1").unwrap());
    let (status, _, body) =
        parts(upload(&gateway, form("a.txt", "file-extract", b"x".to_vec())).await).await;
    // The provider refusing the gateway's key is the gateway's fault, not the client's.
    assert_error(status, &body, 502);
    let text = body.to_string();
    assert!(!text.contains(PROVIDER_KEY), "{text}");
    assert!(!gateway.stderr().contains(PROVIDER_KEY));
    assert!(gateway.spool_files().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_tokens_are_required_on_the_api_but_not_on_probes() {
    let stand_in = stand_in(Flavor::Kimi, "none").await;
    let gateway = Options::new(&stand_in, Flavor::Kimi)
        .arg("--client-token-env")
        .arg("TEST_CLIENT_TOKENS")
        .env("TEST_CLIENT_TOKENS", "tok-alpha-123, tok-beta-456")
        .start();
    let http = reqwest::Client::new();
    let url = format!("{}/v1/files", gateway.url);
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("Bearer tok-alpha-12"),
        Some("tok-alpha-123"),
    ] {
        let mut request = http.get(&url);
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        let (status, _, body) = parts(request.send().await.unwrap()).await;
        assert_error(status, &body, 401);
        assert_eq!(body["error"]["type"], "authentication_error");
    }
    let unauthorised = http
        .post(&url)
        .multipart(form("a.txt", "file-extract", b"x".to_vec()))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorised.status(), 401);
    assert!(stand_in.stored_files().is_empty());
    for token in ["tok-alpha-123", "tok-beta-456"] {
        let response = http
            .post(&url)
            .bearer_auth(token)
            .multipart(form("a.txt", "file-extract", b"x".to_vec()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    for probe in ["healthz", "readyz", "metrics"] {
        assert_eq!(
            http.get(format!("{}/{probe}", gateway.url))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
    assert!(!gateway.stderr().contains("tok-alpha-123"));
}

/// Follow `GET /v1/files` the way the OpenAI SDKs' auto-pagers do: ask again with
/// `after=<last id>` while `has_more` is true, or while it is absent and the page is not empty.
async fn drain_pages(gateway: &Gateway, limit: Option<u32>) -> Vec<String> {
    let http = reqwest::Client::new();
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..50 {
        let mut query = Vec::new();
        if let Some(limit) = limit {
            query.push(format!("limit={limit}"));
        }
        if let Some(after) = &after {
            query.push(format!("after={after}"));
        }
        let (status, _, page) = parts(
            http.get(format!("{}/v1/files?{}", gateway.url, query.join("&")))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 200, "{page}");
        let data = page["data"].as_array().unwrap();
        seen.extend(data.iter().map(|f| f["id"].as_str().unwrap().to_owned()));
        let more = page
            .get("has_more")
            .and_then(|v| v.as_bool())
            .unwrap_or(true);
        if !more || data.is_empty() {
            return seen;
        }
        after = seen.last().cloned();
    }
    panic!("the pager never finished: {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_ends_for_a_cursor_pager_on_both_providers() {
    for flavor in [Flavor::Kimi, Flavor::Glm] {
        let stand_in = stand_in(flavor, "none").await;
        let gateway = Options::new(&stand_in, flavor).start();
        for n in 0..5 {
            let response = upload(
                &gateway,
                form(&format!("f{n}.txt"), "batch", b"{}".to_vec()),
            )
            .await;
            assert_eq!(response.status(), 200);
        }
        let mut stored: Vec<String> = stand_in.stored_files().into_iter().map(|f| f.id).collect();
        stored.sort();
        for limit in [None, Some(1), Some(2), Some(5), Some(200)] {
            let mut seen = drain_pages(&gateway, limit).await;
            seen.sort();
            assert_eq!(seen, stored, "{flavor:?} limit {limit:?}");
        }
    }
}

/// The official OpenAI Python SDK, unchanged but for `base_url`: `files.create` and iterating
/// `files.list()` to its end. Skipped (with a message) where python3 or the `openai` package is
/// absent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_python_sdk_uploads_and_lists_to_the_end() {
    let available = Command::new("python3")
        .args(["-c", "import openai"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !available {
        eprintln!("skipped: python3 with the `openai` package is not installed");
        return;
    }
    let stand_in = stand_in(Flavor::Kimi, "none").await;
    let gateway = Options::new(&stand_in, Flavor::Kimi).start();
    let dir = tempfile::tempdir().unwrap();
    let script = r#"
import sys, openai
client = openai.OpenAI(base_url=sys.argv[1] + "/v1", api_key="unused", max_retries=0)
ids = []
for n in range(3):
    created = client.files.create(file=("doc%d.txt" % n, b"hello sdk %d" % n), purpose="file-extract")
    assert created.object == "file", created
    ids.append(created.id)
seen = [f.id for f in client.files.list()]
paged = [f.id for f in client.files.list(limit=1)]
assert sorted(seen) == sorted(ids), (seen, ids)
assert sorted(paged) == sorted(ids), (paged, ids)
assert client.files.retrieve(ids[0]).id == ids[0]
assert client.files.delete(ids[0]).deleted
print("ok", len(seen))
"#;
    let path = dir.path().join("sdk.py");
    std::fs::write(&path, script).unwrap();
    let url = gateway.url.clone();
    let output = tokio::time::timeout(
        PATIENCE,
        tokio::task::spawn_blocking(move || {
            Command::new("python3")
                .arg(&path)
                .arg(&url)
                .output()
                .unwrap()
        }),
    )
    .await
    .expect("the SDK run did not finish (an endless pager?)")
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(stdout.trim(), "ok 3");
    assert_eq!(stand_in.stored_files().len(), 2);
}

fn hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
