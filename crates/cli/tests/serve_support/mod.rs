//! Shared by the `serve_*` tests: a stand-in in this process, the real `upramp serve` binary in a
//! child process, and small HTTP helpers.

#![allow(clippy::unwrap_used, dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use upramp_harness::{FaultPlan, Flavor, StandIn, StandInConfig};

/// The provider key the stand-ins take; tests grep for it in everything the gateway says.
pub const PROVIDER_KEY: &str = "sk-provider-secret-7d1f0c";

/// Generous bound for a condition that holds within milliseconds when things work.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// A stand-in with the test key.
pub async fn stand_in(flavor: Flavor, faults: &str) -> StandIn {
    StandIn::start(
        StandInConfig::new(flavor)
            .with_api_key(PROVIDER_KEY)
            .with_faults(FaultPlan::parse(faults).unwrap()),
    )
    .await
    .unwrap()
}

/// A running `upramp serve`; killed when dropped.
pub struct Gateway {
    pub child: Child,
    pub url: String,
    pub stderr: Arc<Mutex<String>>,
    pub spool: PathBuf,
    _spool_dir: Option<tempfile::TempDir>,
}

/// How to start one.
pub struct Options {
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub spool: Option<PathBuf>,
}

impl Options {
    /// The gateway in front of `stand_in`, async path for everyone, no fallback, no retries.
    pub fn new(stand_in: &StandIn, flavor: Flavor) -> Self {
        Self::at(&stand_in.base_url(), flavor)
    }

    /// The same in front of any provider root (a stalled listener, a stopped child).
    pub fn at(base_url: &str, flavor: Flavor) -> Self {
        let provider = match flavor {
            Flavor::Kimi => "kimi",
            Flavor::Glm => "glm",
        };
        Self {
            args: vec![
                "serve".into(),
                "--listen".into(),
                "127.0.0.1:0".into(),
                "--provider".into(),
                provider.into(),
                "--base-url".into(),
                base_url.to_owned(),
                "--key-env".into(),
                "TEST_PROVIDER_KEY".into(),
            ],
            env: vec![
                ("TEST_PROVIDER_KEY".into(), PROVIDER_KEY.into()),
                ("ASYNC_UPLOAD_ENABLED".into(), "true".into()),
                ("ASYNC_UPLOAD_ROLLOUT".into(), "100".into()),
                ("ASYNC_UPLOAD_FALLBACK".into(), "false".into()),
                ("ASYNC_UPLOAD_MAX_RETRIES".into(), "0".into()),
            ],
            spool: None,
        }
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn env(mut self, name: &str, value: impl Into<String>) -> Self {
        self.env.retain(|(n, _)| n != name);
        self.env.push((name.into(), value.into()));
        self
    }

    pub fn without_env(mut self, name: &str) -> Self {
        self.env.retain(|(n, _)| n != name);
        self
    }

    pub fn spool(mut self, dir: &Path) -> Self {
        self.spool = Some(dir.to_owned());
        self
    }

    /// Start it and wait for its `listening on` line.
    pub fn start(self) -> Gateway {
        let (spool, spool_dir) = match self.spool {
            Some(dir) => (dir, None),
            None => {
                let dir = tempfile::tempdir().unwrap();
                (dir.path().to_owned(), Some(dir))
            }
        };
        let mut command = command(&self.args, &self.env);
        command.arg("--spool-dir").arg(&spool);
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = capture(child.stderr.take().unwrap());
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        stdout.read_line(&mut first).unwrap();
        std::thread::spawn(move || {
            let mut rest = String::new();
            let _ = stdout.read_to_string(&mut rest);
        });
        let url = first
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "no listening line: {first:?}; stderr: {}",
                    stderr.lock().unwrap()
                )
            })
            .to_owned();
        Gateway {
            child,
            url,
            stderr,
            spool,
            _spool_dir: spool_dir,
        }
    }
}

/// The `upramp` command with exactly these arguments and variables (and a clean flag environment).
pub fn command(args: &[String], env: &[(String, String)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_upramp"));
    command.args(args);
    for var in [
        "ASYNC_UPLOAD_ENABLED",
        "ASYNC_UPLOAD_ROLLOUT",
        "ASYNC_UPLOAD_FALLBACK",
        "ASYNC_UPLOAD_MAX_RETRIES",
        "ASYNC_UPLOAD_TIMEOUT_SECS",
        "UPRAMP_FLAGS_FILE",
        "RUST_LOG",
    ] {
        command.env_remove(var);
    }
    command.env("RUST_LOG", "debug");
    for (name, value) in env {
        command.env(name, value);
    }
    command
}

fn capture(mut pipe: impl Read + Send + 'static) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    let sink = Arc::clone(&text);
    std::thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        while let Ok(n @ 1..) = pipe.read(&mut buffer) {
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buffer[..n]));
        }
    });
    text
}

impl Gateway {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Wait for the process to exit, within `PATIENCE`.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "gateway did not exit");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Spool files present now (the lock file is not one).
    pub fn spool_files(&self) -> Vec<String> {
        std::fs::read_dir(&self.spool)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name != ".lock")
            .collect()
    }

    /// The value of one unlabelled or fully-labelled series in `/metrics`.
    pub async fn metric(&self, series: &str) -> Option<f64> {
        let text = reqwest::get(format!("{}/metrics", self.url))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    /// Wait until `/metrics` shows `series` at `value` or more.
    pub async fn wait_metric(&self, series: &str, value: f64) {
        let deadline = Instant::now() + PATIENCE;
        while self.metric(series).await.unwrap_or(f64::MIN) < value {
            assert!(
                Instant::now() < deadline,
                "{series} never reached {value}; stderr: {}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A provider that accepts connections, reads whatever arrives and never answers (a stopped
/// process behind a live socket); connections stay open until it is dropped.
pub struct StalledProvider {
    pub addr: std::net::SocketAddr,
    pub connections: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl StalledProvider {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = Arc::clone(&connections);
        let task = tokio::spawn(async move {
            let mut held = tokio::task::JoinSet::new();
            while let Ok((mut stream, _)) = listener.accept().await {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                held.spawn(async move {
                    use tokio::io::AsyncReadExt;
                    let mut sink = vec![0u8; 64 * 1024];
                    while let Ok(1..) = stream.read(&mut sink).await {}
                    // Keep the socket open after the peer's EOF too: no answer, ever.
                    std::future::pending::<()>().await;
                });
            }
        });
        Self {
            addr,
            connections,
            task,
        }
    }

    /// A Kimi-shaped API root on it.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }
}

impl Drop for StalledProvider {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A multipart upload form.
pub fn form(filename: &str, purpose: &str, body: Vec<u8>) -> reqwest::multipart::Form {
    reqwest::multipart::Form::new()
        .text("purpose", purpose.to_owned())
        .part(
            "file",
            reqwest::multipart::Part::bytes(body).file_name(filename.to_owned()),
        )
}

/// POST a form to the gateway.
pub async fn upload(gateway: &Gateway, form: reqwest::multipart::Form) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/v1/files", gateway.url))
        .multipart(form)
        .send()
        .await
        .unwrap()
}

/// Status, headers and JSON body.
pub async fn parts(
    response: reqwest::Response,
) -> (u16, reqwest::header::HeaderMap, serde_json::Value) {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    (status, headers, json)
}

/// Assert an OpenAI-shaped error with this status.
pub fn assert_error(status: u16, body: &serde_json::Value, expected: u16) {
    assert_eq!(status, expected, "{body}");
    let error = &body["error"];
    assert!(error["message"].is_string(), "{body}");
    assert!(error["type"].is_string(), "{body}");
    assert!(
        error.get("param").is_some() && error.get("code").is_some(),
        "{body}"
    );
}

/// A request head for `/v1/files` with a multipart body framed by `boundary`.
pub fn multipart_head(addr: &str, boundary: &str, length: Option<u64>) -> String {
    let framing = match length {
        Some(n) => format!("Content-Length: {n}\r\n"),
        None => "Transfer-Encoding: chunked\r\n".to_owned(),
    };
    format!(
        "POST /v1/files HTTP/1.1\r\nHost: {addr}\r\nContent-Type: multipart/form-data; boundary={boundary}\r\n{framing}\r\n"
    )
}

/// The multipart preamble for a file part after a `purpose` part.
pub fn file_preamble(boundary: &str, purpose: &str, filename: &str) -> String {
    format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\n{purpose}\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
    )
}

/// The host:port part of a gateway URL.
pub fn host(url: &str) -> &str {
    url.trim_start_matches("http://")
}
