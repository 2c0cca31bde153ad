//! `upramp serve` as a process: usage errors, the spool (stale files, disconnects, a full spool),
//! flag hot reload (plain file and ConfigMap symlink swap), and graceful shutdown.

#![allow(clippy::unwrap_used)]

mod serve_support;

use std::time::{Duration, Instant};

use serve_support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use upramp_harness::Flavor;

fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    let output = command(&args, &env).output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn bad_usage_and_configuration_exit_2_with_one_line() {
    let key = [("MOONSHOT_API_KEY", "sk-x")];
    let (code, stdout, _) = run(&["serve", "--help"], &[]);
    assert_eq!(code, 0);
    assert!(stdout.contains("--client-token-env") && stdout.contains("--max-spool-bytes"));
    let cases: [(&[&str], &str); 6] = [
        (
            &["serve", "--listen", "0.0.0.0:0", "--provider", "kimi"],
            "refusing a non-loopback address without --client-token-env",
        ),
        (
            &["serve", "--listen", "localhost", "--provider", "kimi"],
            "--listen \"localhost\"",
        ),
        (
            &["serve", "--listen", "127.0.0.1:0", "--provider", "nope"],
            "--provider \"nope\"",
        ),
        (
            &[
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--provider",
                "kimi",
                "--grace",
                "soon",
            ],
            "--grace \"soon\"",
        ),
        (
            &[
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--provider",
                "openai",
                "--key-env",
                "MOONSHOT_API_KEY",
            ],
            "needs --base-url",
        ),
        (
            &[
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--provider",
                "kimi",
                "--client-token-env",
                "UNSET_TOKEN_VAR",
            ],
            "UNSET_TOKEN_VAR",
        ),
    ];
    for (args, expected) in cases {
        let (code, stdout, stderr) = run(args, &key);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "{args:?}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    let (code, _, stderr) = run(
        &["serve", "--listen", "127.0.0.1:0", "--provider", "kimi"],
        &[],
    );
    assert_eq!(code, 2);
    assert!(stderr.contains("MOONSHOT_API_KEY"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_spool_files_are_removed_at_start_and_a_spool_dir_has_one_owner() {
    let stand_in = stand_in(Flavor::Kimi, "none").await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("upramp-spool-1-7.part"), b"left by a crash").unwrap();
    std::fs::write(dir.path().join("keep-me.txt"), b"not ours").unwrap();
    let gateway = Options::new(&stand_in, Flavor::Kimi)
        .spool(dir.path())
        .start();
    assert_eq!(gateway.spool_files(), vec!["keep-me.txt".to_owned()]);

    let mut second = Options::new(&stand_in, Flavor::Kimi).spool(dir.path());
    second.args.push("--spool-dir".into());
    second.args.push(dir.path().display().to_string());
    let output = command(&second.args, &second.env).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("in use by another upramp serve"));

    let response = upload(&gateway, form("a.txt", "file-extract", b"abc".to_vec())).await;
    assert_eq!(response.status(), 200);
    assert_eq!(gateway.spool_files(), vec!["keep-me.txt".to_owned()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_gone_mid_body_sends_nothing_to_the_provider() {
    let stand_in = stand_in(Flavor::Kimi, "none").await;
    let gateway = Options::new(&stand_in, Flavor::Kimi).start();
    let addr = host(&gateway.url).to_owned();
    let preamble = file_preamble("bx", "file-extract", "half.bin");
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    stream
        .write_all(
            multipart_head(&addr, "bx", Some(preamble.len() as u64 + 4 * 1024 * 1024)).as_bytes(),
        )
        .await
        .unwrap();
    stream.write_all(preamble.as_bytes()).await.unwrap();
    stream.write_all(&vec![7u8; 1024 * 1024]).await.unwrap();
    // The gateway has a spool file for it now.
    gateway.wait_metric("upramp_gateway_spool_bytes", 1.0).await;
    drop(stream);
    gateway
        .wait_metric("upramp_gateway_client_disconnects_total", 1.0)
        .await;
    assert!(
        gateway.spool_files().is_empty(),
        "{:?}",
        gateway.spool_files()
    );
    assert_eq!(
        gateway.metric("upramp_gateway_spool_bytes").await,
        Some(0.0)
    );
    assert_eq!(stand_in.stats().requests, 0, "nothing reached the provider");
    assert!(stand_in.stored_files().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_answers_503_with_retry_after() {
    let stand_in = stand_in(Flavor::Kimi, "none").await;
    let gateway = Options::new(&stand_in, Flavor::Kimi)
        .arg("--max-spool-bytes")
        .arg("100000")
        .start();
    let addr = host(&gateway.url).to_owned();
    // One upload holds 80 kB of the budget while its client is still sending.
    let preamble = file_preamble("bf", "file-extract", "held.bin");
    let mut held = tokio::net::TcpStream::connect(&addr).await.unwrap();
    held.write_all(multipart_head(&addr, "bf", Some(80_000)).as_bytes())
        .await
        .unwrap();
    held.write_all(preamble.as_bytes()).await.unwrap();
    gateway
        .wait_metric("upramp_gateway_spool_bytes", 80_000.0)
        .await;

    let (status, headers, body) =
        parts(upload(&gateway, form("b.bin", "file-extract", vec![1u8; 30_000])).await).await;
    assert_error(status, &body, 503);
    assert_eq!(body["error"]["code"], "spool_full");
    assert_eq!(headers["retry-after"], "1");
    assert_eq!(
        gateway.metric("upramp_gateway_spool_full_total").await,
        Some(1.0)
    );

    drop(held);
    gateway
        .wait_metric("upramp_gateway_client_disconnects_total", 1.0)
        .await;
    let response = upload(&gateway, form("b.bin", "file-extract", vec![1u8; 30_000])).await;
    assert_eq!(response.status(), 200);
    assert!(gateway.spool_files().is_empty());
}

async fn path_of_next_upload(gateway: &Gateway) -> String {
    let response = upload(gateway, form("r.txt", "file-extract", b"route me".to_vec())).await;
    assert_eq!(response.status(), 200);
    response.headers()["x-upramp-path"]
        .to_str()
        .unwrap()
        .to_owned()
}

const FLAG_0: &str = "[async_upload]\nenabled = true\nrollout = 0\nfallback = false\n";
const FLAG_100: &str = "[async_upload]\nenabled = true\nrollout = 100\nfallback = false\n";
const FLAG_BAD: &str = "[async_upload]\nrollout = \"lots\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flags_hot_reload_from_a_plain_file_and_keep_the_last_good_one() {
    let stand_in = stand_in(Flavor::Kimi, "none").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("flags.toml");
    std::fs::write(&file, FLAG_0).unwrap();
    let gateway = Options::new(&stand_in, Flavor::Kimi)
        .without_env("ASYNC_UPLOAD_ENABLED")
        .without_env("ASYNC_UPLOAD_ROLLOUT")
        .without_env("ASYNC_UPLOAD_FALLBACK")
        .arg("--flags-file")
        .arg(file.display().to_string())
        .start();
    assert_eq!(path_of_next_upload(&gateway).await, "sync");
    let percent = r#"upramp_gateway_flag_rollout_percent{flag="async_upload"}"#;
    assert_eq!(gateway.metric(percent).await, Some(0.0));

    std::fs::write(&file, FLAG_100).unwrap();
    gateway.wait_metric(percent, 100.0).await;
    assert_eq!(path_of_next_upload(&gateway).await, "async");
    let metrics = reqwest::get(format!("{}/metrics", gateway.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains(r#"rollout="100",enabled="true",fallback="false",enabled_source="file",rollout_source="file""#), "{metrics}");

    std::fs::write(&file, FLAG_BAD).unwrap();
    gateway
        .wait_metric("upramp_gateway_flag_reload_errors_total", 1.0)
        .await;
    assert_eq!(gateway.metric(percent).await, Some(100.0));
    assert_eq!(path_of_next_upload(&gateway).await, "async");
    assert!(
        gateway.stderr().contains("flags reload failed"),
        "{}",
        gateway.stderr()
    );
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flags_hot_reload_through_a_configmap_symlink_swap() {
    use std::os::unix::fs::symlink;
    let stand_in = stand_in(Flavor::Kimi, "none").await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_owned();
    let version = |name: &str, body: &str| {
        std::fs::create_dir(root.join(name)).unwrap();
        std::fs::write(root.join(name).join("flags.toml"), body).unwrap();
    };
    let swap = |name: &str, body: &str| {
        version(name, body);
        symlink(name, root.join("..data_tmp")).unwrap();
        std::fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
    };
    version("..v1", FLAG_0);
    symlink("..v1", root.join("..data")).unwrap();
    symlink("..data/flags.toml", root.join("flags.toml")).unwrap();
    let gateway = Options::new(&stand_in, Flavor::Kimi)
        .without_env("ASYNC_UPLOAD_ENABLED")
        .without_env("ASYNC_UPLOAD_ROLLOUT")
        .without_env("ASYNC_UPLOAD_FALLBACK")
        .arg("--flags-file")
        .arg(root.join("flags.toml").display().to_string())
        .start();
    assert_eq!(path_of_next_upload(&gateway).await, "sync");
    let percent = r#"upramp_gateway_flag_rollout_percent{flag="async_upload"}"#;
    swap("..v2", FLAG_100);
    gateway.wait_metric(percent, 100.0).await;
    assert_eq!(path_of_next_upload(&gateway).await, "async");
    swap("..v3", FLAG_BAD);
    gateway
        .wait_metric("upramp_gateway_flag_reload_errors_total", 1.0)
        .await;
    assert_eq!(gateway.metric(percent).await, Some(100.0));
}

/// Start an upload the stand-in holds for `latency`, and wait until the gateway is serving it.
async fn upload_in_flight(
    gateway: &Gateway,
) -> tokio::task::JoinHandle<reqwest::Result<reqwest::Response>> {
    let url = format!("{}/v1/files", gateway.url);
    let task = tokio::spawn(async move {
        reqwest::Client::new()
            .post(url)
            .multipart(form("slow.txt", "file-extract", vec![b's'; 200_000]))
            .send()
            .await
    });
    // The scrape itself is one request in flight; the upload is the other.
    gateway
        .wait_metric("upramp_gateway_requests_in_flight", 2.0)
        .await;
    task
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_turns_readiness_off_finishes_the_upload_in_flight_and_exits_0() {
    let stand_in = stand_in(Flavor::Kimi, "latency:1500ms").await;
    let mut gateway = Options::new(&stand_in, Flavor::Kimi).start();
    let in_flight = upload_in_flight(&gateway).await;
    gateway.signal("TERM");
    // Readiness goes false (or the socket is closed already) while the upload is still running.
    let deadline = Instant::now() + PATIENCE;
    loop {
        match reqwest::get(format!("{}/readyz", gateway.url)).await {
            Ok(response) if response.status() == 200 => {}
            _ => break,
        }
        assert!(Instant::now() < deadline, "readiness never went false");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        !in_flight.is_finished(),
        "the upload ended before draining was seen"
    );
    let response = in_flight.await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    let status = gateway.wait_exit();
    assert_eq!(status.code(), Some(0), "{}", gateway.stderr());
    assert_eq!(stand_in.stored_files().len(), 1);
    assert!(gateway.spool_files().is_empty());
    assert!(tokio::net::TcpStream::connect(host(&gateway.url))
        .await
        .is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_exits_at_once_and_the_spool_is_emptied() {
    let stand_in = stand_in(Flavor::Kimi, "latency:60s").await;
    let mut gateway = Options::new(&stand_in, Flavor::Kimi).start();
    let in_flight = upload_in_flight(&gateway).await;
    gateway.signal("TERM");
    let deadline = Instant::now() + PATIENCE;
    while reqwest::get(format!("{}/readyz", gateway.url))
        .await
        .is_ok_and(|r| r.status() == 200)
    {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let signalled = Instant::now();
    gateway.signal("INT");
    let status = gateway.wait_exit();
    assert!(
        signalled.elapsed() < Duration::from_secs(10),
        "{:?}",
        signalled.elapsed()
    );
    assert_eq!(status.code(), Some(1), "{}", gateway.stderr());
    assert!(gateway.stderr().contains("second signal"));
    assert!(gateway.spool_files().is_empty());
    assert!(
        in_flight.await.unwrap().is_err(),
        "the cut upload got no answer"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grace_period_bounds_the_drain() {
    let stand_in = stand_in(Flavor::Kimi, "latency:60s").await;
    let mut gateway = Options::new(&stand_in, Flavor::Kimi)
        .arg("--grace")
        .arg("300ms")
        .start();
    let _in_flight = upload_in_flight(&gateway).await;
    let signalled = Instant::now();
    gateway.signal("TERM");
    let status = gateway.wait_exit();
    assert!(signalled.elapsed() < Duration::from_secs(10));
    assert_eq!(status.code(), Some(1));
    assert!(
        gateway.stderr().contains("grace period"),
        "{}",
        gateway.stderr()
    );
    assert!(gateway.spool_files().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_limits_are_enforced() {
    let stand_in = stand_in(Flavor::Kimi, "none").await;
    let gateway = Options::new(&stand_in, Flavor::Kimi).start();
    let addr = host(&gateway.url).to_owned();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let huge = "a".repeat(100 * 1024);
    let request = format!("GET /v1/files HTTP/1.1\r\nHost: {addr}\r\nX-Big: {huge}\r\n\r\n");
    let _ = stream.write_all(request.as_bytes()).await;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "{answer}"
    );
    let (status, _, body) = parts(
        reqwest::Client::new()
            .post(format!("{}/v1/files", gateway.url))
            .header("x-upramp-routing-key", "k".repeat(300))
            .multipart(form("a.txt", "file-extract", b"x".to_vec()))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(status, &body, 400);
}
