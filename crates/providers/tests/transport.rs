//! What goes on the wire, checked with a raw TCP listener (no HTTP library on the server side to
//! normalise anything away), and the blocking transport's safety inside a tokio runtime.
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use upramp_providers::{
    ApiKey, BlockingFileProvider, ClientConfig, FileProvider, ProviderClient, ProviderKind,
    UploadBody, UploadMeta,
};

const KEY: &str = "sk-transport-secret";

/// A request as received: the header block (lower-cased names) and the body bytes.
struct Captured {
    head: String,
    body: Vec<u8>,
}

impl Captured {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// Accepts one connection, reads one request with a Content-Length body, answers a Kimi file
/// object, and hands the request back.
async fn one_shot_server() -> (String, oneshot::Receiver<Captured>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/v1", listener.local_addr().unwrap());
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut buf = Vec::new();
        let head_end = loop {
            let mut chunk = [0u8; 8192];
            let n = socket.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed before the headers ended");
            buf.extend_from_slice(&chunk[..n]);
            if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break pos + 4;
            }
        };
        let head = String::from_utf8(buf[..head_end].to_vec()).unwrap();
        let mut captured = Captured {
            head,
            body: buf[head_end..].to_vec(),
        };
        let length: usize = captured
            .header("content-length")
            .map(|v| v.parse().unwrap())
            .unwrap_or(0);
        while captured.body.len() < length {
            let mut chunk = [0u8; 65536];
            let n = socket.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed mid-body");
            captured.body.extend_from_slice(&chunk[..n]);
        }
        let answer = br#"{"id":"cn-1","object":"file","bytes":5,"created_at":1,"filename":"a.txt","purpose":"file-extract","status":"ready"}"#;
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            answer.len()
        );
        socket.write_all(response.as_bytes()).await.unwrap();
        socket.write_all(answer).await.unwrap();
        socket.shutdown().await.unwrap();
        let _ = tx.send(captured);
    });
    (base, rx)
}

fn client(base: &str) -> ProviderClient {
    ProviderClient::new(ClientConfig::new(
        ProviderKind::Kimi,
        base,
        ApiKey::new(KEY),
    ))
    .unwrap()
}

fn meta() -> UploadMeta {
    UploadMeta {
        filename: "a.txt".into(),
        purpose: "file-extract".into(),
        length: 5,
    }
}

fn check_request(captured: &Captured, agent: &str) {
    assert!(
        captured.head.starts_with("POST /v1/files HTTP/1.1\r\n"),
        "{}",
        captured.head
    );
    let length: usize = captured.header("content-length").unwrap().parse().unwrap();
    assert_eq!(length, captured.body.len());
    assert_eq!(
        captured.header("transfer-encoding"),
        None,
        "{}",
        captured.head
    );
    assert_eq!(captured.header("user-agent"), Some(agent));
    assert_eq!(
        captured.header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    let content_type = captured.header("content-type").unwrap();
    let boundary = content_type
        .strip_prefix("multipart/form-data; boundary=")
        .unwrap();
    let body = String::from_utf8(captured.body.clone()).unwrap();
    assert!(body.starts_with(&format!("--{boundary}\r\n")), "{body}");
    assert!(
        body.ends_with(&format!("\r\nhello\r\n--{boundary}--\r\n")),
        "{body}"
    );
}

#[tokio::test]
async fn async_stream_upload_sends_content_length_not_chunked() {
    let (base, captured) = one_shot_server().await;
    let chunks = vec![
        Ok::<_, std::io::Error>(Bytes::from_static(b"he")),
        Ok(Bytes::from_static(b"llo")),
    ];
    let body = UploadBody::Stream {
        stream: futures::stream::iter(chunks).boxed(),
        length: 5,
    };
    let stored = client(&base).upload(meta(), body).await.unwrap();
    assert_eq!(stored.status.as_deref(), Some("ready"));
    check_request(
        &captured.await.unwrap(),
        concat!("upramp/", env!("CARGO_PKG_VERSION"), " (async)"),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_upload_sends_content_length_and_is_safe_inside_a_runtime() {
    let (base, captured) = one_shot_server().await;
    // Built, cloned and finally dropped on async worker threads; used only on a blocking thread.
    let client = client(&base);
    let blocking = client.blocking();
    let worker = blocking.clone();
    let stored =
        tokio::task::spawn_blocking(move || worker.upload(meta(), Bytes::from_static(b"hello")))
            .await
            .unwrap()
            .unwrap();
    assert_eq!(stored.id, "cn-1");
    check_request(
        &captured.await.unwrap(),
        concat!("upramp/", env!("CARGO_PKG_VERSION"), " (sync)"),
    );
    // The last handle goes here, on the runtime: this must neither panic nor block the worker.
    drop(client);
    drop(blocking);
}

/// A refused connection names the address it tried, on both transports, and never the key.
#[tokio::test]
async fn connection_refused_is_a_retryable_transport_error_naming_the_address() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let base = format!("http://{address}/v1");
    drop(listener);
    let client = client(&base);
    let async_err = client
        .upload(meta(), UploadBody::Bytes(Bytes::from_static(b"hello")))
        .await
        .unwrap_err();
    let blocking = client.blocking();
    let blocking_err =
        tokio::task::spawn_blocking(move || blocking.upload(meta(), Bytes::from_static(b"hello")))
            .await
            .unwrap()
            .unwrap_err();
    for err in [async_err, blocking_err] {
        assert_eq!(err.kind, upramp_providers::ErrorKind::Transport, "{err}");
        assert!(err.is_retryable());
        assert_eq!(err.body_fully_sent, Some(false), "{err}");
        assert_eq!(
            err.to_string(),
            format!("kimi: transport: connection to {address} refused")
        );
        assert!(!format!("{err:?}").contains(KEY));
    }
}

#[tokio::test]
async fn an_unused_blocking_view_can_live_and_die_in_async_code() {
    // No blocking HTTP client exists until the first request, so this neither panics nor blocks.
    let blocking = client("http://127.0.0.1:9/v1").blocking();
    assert_eq!(BlockingFileProvider::name(&blocking), "kimi");
    drop(blocking);
}
