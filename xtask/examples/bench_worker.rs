//! The process `cargo xtask bench` measures: one subcommand per measured piece of work, each printing
//! one JSON report line (see `xtask/src/bench/proto.rs`). Built in release for a full run, so every
//! figure is of optimized code; run by the orchestrator, not by hand.
//!
//! - `serve`: a Kimi stand-in (with optional added latency) until standard input closes.
//! - `sink`: a contract-free streaming receiver for uploads above the stand-ins' 100 MB cap.
//! - `discard`: a receiver that does no per-byte work (reads and drops the body, answers a file
//!   object). Both receivers also take raw TCP on a second port, doing the same per-byte work.
//! - `upload` / `idle`: one upload on a forced path, or the same setup without uploading.
//! - `batch`: many files on one path, closed loop. `open-loop`: arrivals at a fixed rate with a deadline.
//! - `tcp-copy`: the file over a plain loopback socket into a receiver's raw TCP port.
//! - `hash`: the SHA-256 of a file alone, read as the async path reads it.
//! - `generate`: seeded incompressible files. `rusage -- CMD...`: run one child, report its usage.

use xtask::worker::proto;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure, Context};
use clap::{Parser, Subcommand, ValueEnum};
use futures::StreamExt;
use rand::{RngCore, SeedableRng};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use xtask::worker::receiver;

use proto::{
    BatchReport, GenerateReport, HashReport, OpenLoopReport, ReceiverReady, RequestEnd,
    RusageReport, ServeReady, ServeSummary, TcpCopyReport, UploadReport, KEY_ENV,
};
use upramp_flags::{FlagConfig, FlagStore, Percent};
use upramp_harness::{FaultPlan, Flavor, StandIn, StandInConfig};
use upramp_providers::{
    ApiKey, BlockingProviderClient, ClientConfig, Limits, ProviderClient, ProviderKind,
    PurposeLimit,
};
use upramp_uploader::{Route, UploadRequest, Uploader};

const PURPOSE: &str = "file-extract";

#[derive(Parser)]
#[command(name = "bench_worker", about = "measured work for `cargo xtask bench`")]
struct Args {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a Kimi stand-in until standard input closes.
    Serve {
        /// Latency the stand-in adds to every request, in milliseconds.
        #[arg(long, default_value_t = 0)]
        latency_ms: u64,
    },
    /// Run a streaming upload receiver without a size cap until standard input closes.
    Sink,
    /// Run a receiver that reads and discards each body (no per-byte work) until standard input
    /// closes.
    Discard,
    /// Hash one file alone (SHA-256), reading it in chunks as the async path does.
    Hash {
        #[arg(long)]
        file: PathBuf,
    },
    /// Upload one file on a forced path.
    Upload {
        #[arg(long)]
        base_url: String,
        #[arg(long, value_enum)]
        path: PathArg,
        #[arg(long)]
        file: PathBuf,
    },
    /// Build the uploader as `upload` does, then exit without uploading.
    Idle {
        #[arg(long)]
        base_url: String,
    },
    /// Upload every file on one path, at most `concurrency` at once.
    Batch {
        #[arg(long)]
        base_url: String,
        #[arg(long, value_enum)]
        path: PathArg,
        #[arg(long)]
        concurrency: usize,
        files: Vec<PathBuf>,
    },
    /// Submit uploads of one file at a fixed rate, each with a deadline.
    OpenLoop {
        #[arg(long)]
        base_url: String,
        #[arg(long, value_enum)]
        path: PathArg,
        #[arg(long)]
        file: PathBuf,
        #[arg(long)]
        rate: u64,
        #[arg(long)]
        duration_secs: u64,
        #[arg(long)]
        timeout_ms: u64,
    },
    /// Send the file over loopback TCP to a receiver's raw port (`host:port`).
    TcpCopy {
        #[arg(long)]
        file: PathBuf,
        #[arg(long)]
        addr: String,
    },
    /// Write seeded incompressible files.
    Generate {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        prefix: String,
        #[arg(long)]
        count: u64,
        #[arg(long)]
        bytes: u64,
    },
    /// Run one command and report its peak RSS and CPU from `getrusage(RUSAGE_CHILDREN)`.
    Rusage {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        command: Vec<String>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum PathArg {
    Async,
    Sync,
}

impl From<PathArg> for Route {
    fn from(path: PathArg) -> Self {
        match path {
            PathArg::Async => Route::Async,
            PathArg::Sync => Route::Sync,
        }
    }
}

fn main() -> std::process::ExitCode {
    match run(Args::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!(
                "bench_worker: error: {}",
                format!("{err:#}").replace('\n', " ")
            );
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Cmd::Rusage { command } => print(&rusage(&command)?),
        Cmd::Generate {
            dir,
            prefix,
            count,
            bytes,
        } => print(&generate(&dir, &prefix, count, bytes)?),
        Cmd::Hash { file } => print(&hash_alone(&file)?),
        Cmd::TcpCopy { file, addr } => print(&tcp_copy(&file, &addr)?),
        command => {
            let runtime =
                tokio::runtime::Runtime::new().context("cannot start the tokio runtime")?;
            runtime.block_on(run_async(command))
        }
    }
}

async fn run_async(command: Cmd) -> anyhow::Result<()> {
    match command {
        Cmd::Serve { latency_ms } => serve(latency_ms).await,
        Cmd::Sink => sink(ReceiverWork::Sha256).await,
        Cmd::Discard => sink(ReceiverWork::Nothing).await,
        Cmd::Upload {
            base_url,
            path,
            file,
        } => {
            let uploader = uploader(&base_url, 1)?;
            let started = Instant::now();
            let receipt = uploader
                .upload_on(UploadRequest::new(&file, PURPOSE), path.into())
                .await
                .with_context(|| format!("upload of {}", file.display()))?;
            let elapsed_secs = started.elapsed().as_secs_f64();
            print(&UploadReport {
                bytes: receipt.bytes,
                elapsed_secs,
                vmhwm_kib: own_vmhwm_kib(),
            })
        }
        Cmd::Idle { base_url } => {
            let _uploader = uploader(&base_url, 1)?;
            print(&UploadReport {
                bytes: 0,
                elapsed_secs: 0.0,
                vmhwm_kib: own_vmhwm_kib(),
            })
        }
        Cmd::Batch {
            base_url,
            path,
            concurrency,
            files,
        } => print(&batch(&base_url, path, concurrency, files).await?),
        Cmd::OpenLoop {
            base_url,
            path,
            file,
            rate,
            duration_secs,
            timeout_ms,
        } => print(&open_loop(&base_url, path, &file, rate, duration_secs, timeout_ms).await?),
        Cmd::Rusage { .. } | Cmd::Generate { .. } | Cmd::Hash { .. } | Cmd::TcpCopy { .. } => {
            bail!("not an async subcommand")
        }
    }
}

fn print<T: serde::Serialize>(report: &T) -> anyhow::Result<()> {
    let line = serde_json::to_string(report).context("cannot serialize the report")?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}").context("cannot write the report")?;
    stdout.flush().context("cannot write the report")
}

fn api_key() -> anyhow::Result<String> {
    std::env::var(KEY_ENV).with_context(|| format!("{KEY_ENV} is not set"))
}

fn own_vmhwm_kib() -> Option<u64> {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| proto::parse_vmhwm_kib(&status))
}

/// The uploader every measured upload uses: Kimi clients at `base_url`, the flag on at 100% with
/// fallback off (so a forced async upload measures the async path alone), async concurrency 64 and the
/// legacy sync concurrency `sync_concurrency`. The size cap is raised to 1 GiB: the sink takes what the
/// stand-ins (100 MB) would refuse, and a stand-in still enforces its own cap.
fn uploader(base_url: &str, sync_concurrency: usize) -> anyhow::Result<Uploader> {
    let key = ApiKey::new(api_key()?);
    let config = ClientConfig::new(ProviderKind::Kimi, base_url, key)
        .with_limits(Limits::new(vec![PurposeLimit::new(PURPOSE, 1 << 30)]));
    let client = ProviderClient::new(config.clone()).context("cannot build the async client")?;
    let blocking =
        BlockingProviderClient::new(config).context("cannot build the blocking client")?;
    let mut flag = FlagConfig::new("async_upload");
    flag.enabled = true;
    flag.rollout = Percent::HUNDRED;
    flag.fallback = false;
    Uploader::builder(Arc::new(client), Arc::new(blocking))
        .flags(FlagStore::new(flag))
        .concurrency(64)
        .sync_concurrency(sync_concurrency)
        .build()
        .context("cannot build the uploader")
}

async fn wait_for_stdin_close() -> anyhow::Result<()> {
    let mut stdin = tokio::io::stdin();
    let mut sink = Vec::new();
    stdin
        .read_to_end(&mut sink)
        .await
        .context("cannot read standard input")?;
    Ok(())
}

async fn serve(latency_ms: u64) -> anyhow::Result<()> {
    let faults = if latency_ms == 0 {
        FaultPlan::none()
    } else {
        FaultPlan::parse(&format!("latency:{latency_ms}ms")).context("latency fault")?
    };
    let config = StandInConfig::new(Flavor::Kimi)
        .with_api_key(api_key()?)
        .with_faults(faults)
        // Bench runs never delete; the account cap is not what is measured.
        .with_max_files(1_000_000);
    let stand_in = StandIn::start(config)
        .await
        .context("cannot start the stand-in")?;
    print(&ServeReady {
        base_url: stand_in.base_url(),
        pid: std::process::id(),
    })?;
    wait_for_stdin_close().await?;
    let stored = stand_in.stored_files();
    let summary = ServeSummary {
        stored_files: stored.len() as u64,
        stored_bytes: stored.iter().map(|f| f.bytes).sum(),
    };
    stand_in.shutdown().await;
    print(&summary)
}

/// What the sink stored, shared by its handlers.
#[derive(Default)]
struct SinkState {
    files: AtomicU64,
    bytes: AtomicU64,
}

/// The per-byte work a receiver does, on HTTP and on its raw TCP port alike.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ReceiverWork {
    /// Multipart parse and SHA-256 over HTTP, SHA-256 over raw TCP: what the stand-ins do.
    Sha256,
    /// None: read and drop.
    Nothing,
}

async fn sink(work: ReceiverWork) -> anyhow::Result<()> {
    match work {
        ReceiverWork::Sha256 => hashing_sink().await,
        ReceiverWork::Nothing => discarding_sink().await,
    }
}

/// The receiver that does the stand-ins' per-byte work is a stand-in: Kimi's, with its size cap
/// raised past the large upload and nothing kept for `/content`, plus a raw TCP port that hashes.
async fn hashing_sink() -> anyhow::Result<()> {
    let key = api_key()?;
    let config = StandInConfig::new(Flavor::Kimi)
        .with_api_key(key)
        .with_max_file_bytes(1 << 30)
        .with_max_files(usize::MAX)
        .with_content_bytes(0);
    let stand_in = StandIn::start(config)
        .await
        .context("cannot start the sink stand-in")?;
    let (raw_addr, raw_server) = start_raw_tcp_receiver(ReceiverWork::Sha256).await?;
    print(&ReceiverReady {
        base_url: stand_in.base_url(),
        pid: std::process::id(),
        tcp_addr: Some(raw_addr.to_string()),
    })?;
    wait_for_stdin_close().await?;
    raw_server.abort();
    let stored = stand_in.stored_files();
    stand_in.shutdown().await;
    print(&ServeSummary {
        stored_files: stored.len() as u64,
        stored_bytes: stored.iter().map(|file| file.bytes).sum(),
    })
}

/// The receiver that does no per-byte work: reads and drops each body (see [`discard_upload`]).
async fn discarding_sink() -> anyhow::Result<()> {
    let key = api_key()?;
    let state = Arc::new(SinkState::default());
    let handler_state = Arc::clone(&state);
    let app = axum::Router::new()
        .route(
            "/v1/files",
            axum::routing::post(move |request: axum::extract::Request| {
                let state = Arc::clone(&handler_state);
                let expected = format!("Bearer {key}");
                async move { discard_upload(&state, &expected, request).await }
            }),
        )
        // The receiver exists to take bodies larger than any default cap.
        .layer(axum::extract::DefaultBodyLimit::disable());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("cannot bind the no-work receiver")?;
    let addr = listener.local_addr().context("receiver address")?;
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let (raw_addr, raw_server) = start_raw_tcp_receiver(ReceiverWork::Nothing).await?;
    print(&ReceiverReady {
        base_url: format!("http://{addr}/v1"),
        pid: std::process::id(),
        tcp_addr: Some(raw_addr.to_string()),
    })?;
    wait_for_stdin_close().await?;
    server.abort();
    raw_server.abort();
    print(&ServeSummary {
        stored_files: state.files.load(Ordering::Relaxed),
        stored_bytes: state.bytes.load(Ordering::Relaxed),
    })
}

/// Read and drop one upload's body, keeping only its first and last few KiB to find the form's
/// fields, and answer with a Kimi file object: no parse, copy or hash of the file's bytes.
async fn discard_upload(
    state: &SinkState,
    expected_auth: &str,
    request: axum::extract::Request,
) -> (axum::http::StatusCode, axum::Json<serde_json::Value>) {
    use axum::http::{header, StatusCode};
    let headers = request.headers();
    if headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        != Some(expected_auth)
    {
        return error_reply(
            StatusCode::UNAUTHORIZED,
            "invalid_authentication_error",
            "bad key",
        );
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let boundary = match multer::parse_boundary(content_type) {
        Ok(boundary) => boundary,
        Err(err) => {
            return error_reply(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                &err.to_string(),
            )
        }
    };
    let mut ends = receiver::BodyEnds::new();
    let mut body = request.into_body().into_data_stream();
    while let Some(frame) = body.next().await {
        match frame {
            Ok(bytes) => ends.push(&bytes),
            Err(err) => {
                return error_reply(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    &err.to_string(),
                )
            }
        }
    }
    let form = match ends.form(&boundary) {
        Ok(form) => form,
        Err(why) => return error_reply(StatusCode::BAD_REQUEST, "invalid_request_error", &why),
    };
    let number = state.files.fetch_add(1, Ordering::Relaxed) + 1;
    state.bytes.fetch_add(form.file_bytes, Ordering::Relaxed);
    let created_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let body = serde_json::json!({
        "id": format!("file-discard-{number}"),
        "object": "file",
        "bytes": form.file_bytes,
        "created_at": created_at,
        "filename": form.filename,
        "purpose": form.purpose,
        "status": "ok",
    });
    (StatusCode::OK, axum::Json(body))
}

/// The raw TCP port of a receiver: each connection is read to its end (256 KiB reads) with the
/// receiver's per-byte work, then answered with the byte count (8 bytes, little-endian), so the
/// sender's time covers the receiver seeing every byte.
/// Binds a loopback port for the raw TCP copy and serves it with `work` per byte.
async fn start_raw_tcp_receiver(
    work: ReceiverWork,
) -> anyhow::Result<(std::net::SocketAddr, tokio::task::JoinHandle<()>)> {
    let raw = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("cannot bind the raw TCP port")?;
    let raw_addr = raw.local_addr().context("raw TCP address")?;
    Ok((raw_addr, tokio::spawn(raw_tcp_receiver(raw, work))))
}

async fn raw_tcp_receiver(listener: tokio::net::TcpListener, work: ReceiverWork) {
    while let Ok((mut socket, _)) = listener.accept().await {
        tokio::spawn(async move {
            let mut buffer = vec![0u8; 256 * 1024];
            let mut hasher = Sha256::new();
            let mut total = 0u64;
            loop {
                match socket.read(&mut buffer).await {
                    Ok(0) => break,
                    Ok(read) => {
                        total += read as u64;
                        if work == ReceiverWork::Sha256 {
                            hasher.update(&buffer[..read]);
                        }
                    }
                    Err(_) => return,
                }
            }
            let _digest = hasher.finalize();
            let _ = socket.write_all(&total.to_le_bytes()).await;
        });
    }
}

/// The SHA-256 of `file` alone, read in 256 KiB chunks into one buffer (the async path's read
/// size at most, without its transport): the hashing cost the async path cannot avoid.
fn hash_alone(file: &Path) -> anyhow::Result<HashReport> {
    let started = Instant::now();
    let mut source =
        std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
    let mut buffer = vec![0u8; 256 * 1024];
    let mut hasher = Sha256::new();
    let mut bytes = 0u64;
    loop {
        let read = source
            .read(&mut buffer)
            .with_context(|| format!("cannot read {}", file.display()))?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
        bytes += read as u64;
    }
    Ok(HashReport {
        bytes,
        sha256: hex::encode(hasher.finalize()),
        elapsed_secs: started.elapsed().as_secs_f64(),
    })
}

fn error_reply(
    status: axum::http::StatusCode,
    kind: &str,
    message: &str,
) -> (axum::http::StatusCode, axum::Json<serde_json::Value>) {
    (
        status,
        axum::Json(serde_json::json!({ "error": { "type": kind, "message": message } })),
    )
}

async fn batch(
    base_url: &str,
    path: PathArg,
    concurrency: usize,
    files: Vec<PathBuf>,
) -> anyhow::Result<BatchReport> {
    ensure!(
        concurrency >= 1,
        "concurrency must be at least 1, got {concurrency}"
    );
    // The legacy path runs one upload at a time, whatever the caller submits.
    let uploader = uploader(base_url, 1)?;
    let started = Instant::now();
    let results: Vec<_> = futures::stream::iter(files)
        .map(|file| {
            let uploader = uploader.clone();
            async move {
                uploader
                    .upload_on(UploadRequest::new(file, PURPOSE), path.into())
                    .await
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let elapsed_secs = started.elapsed().as_secs_f64();
    let ok = results.iter().filter(|r| r.is_ok()).count() as u64;
    let first_error = results
        .iter()
        .find_map(|r| r.as_ref().err().map(|e| e.to_string()));
    Ok(BatchReport {
        ok,
        failed: results.len() as u64 - ok,
        first_error,
        elapsed_secs,
    })
}

async fn open_loop(
    base_url: &str,
    path: PathArg,
    file: &Path,
    rate: u64,
    duration_secs: u64,
    timeout_ms: u64,
) -> anyhow::Result<OpenLoopReport> {
    ensure!(rate >= 1, "rate must be at least 1 per second, got {rate}");
    let uploader = uploader(base_url, 1)?;
    let deadline = Duration::from_millis(timeout_ms);
    let spacing = Duration::from_secs_f64(1.0 / rate as f64);
    let started = tokio::time::Instant::now();
    let mut tasks = Vec::new();
    for index in 0..rate * duration_secs {
        // Arrivals follow the schedule, not the previous request's completion: that is what makes the
        // load open-loop, so a slow path queues instead of slowing the arrivals down.
        let arrival = started + spacing * index as u32;
        tokio::time::sleep_until(arrival).await;
        let uploader = uploader.clone();
        let request = UploadRequest::new(file, PURPOSE).routing_key(format!("bench-{index}"));
        tasks.push(tokio::spawn(async move {
            let result =
                tokio::time::timeout(deadline, uploader.upload_on(request, path.into())).await;
            let latency_ms = arrival.elapsed().as_secs_f64() * 1000.0;
            match result {
                Ok(Ok(_)) => (latency_ms, RequestEnd::Ok, None),
                Ok(Err(err)) => (latency_ms, RequestEnd::Error, Some(err.to_string())),
                Err(_) => (latency_ms, RequestEnd::Timeout, None),
            }
        }));
    }
    let mut requests = Vec::with_capacity(tasks.len());
    let mut first_error = None;
    for task in tasks {
        let (latency_ms, end, error) = task.await.context("an open-loop request task panicked")?;
        requests.push((latency_ms, end));
        first_error = first_error.or(error);
    }
    Ok(OpenLoopReport {
        requests,
        first_error,
        elapsed_secs: started.elapsed().as_secs_f64(),
    })
}

/// The bytes of `file` through a loopback socket into a receiver's raw TCP port: the most any
/// HTTP upload to that receiver could do. Plain blocking reads and writes of 256 KiB (the async
/// path's largest chunk) on one thread, as `cat FILE > socket` would.
fn tcp_copy(file: &Path, addr: &str) -> anyhow::Result<TcpCopyReport> {
    const CHUNK: usize = 256 * 1024;
    let started = Instant::now();
    let mut source =
        std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
    let mut socket =
        std::net::TcpStream::connect(addr).with_context(|| format!("cannot connect to {addr}"))?;
    let mut buffer = vec![0u8; CHUNK];
    loop {
        let read = source
            .read(&mut buffer)
            .with_context(|| format!("cannot read {}", file.display()))?;
        if read == 0 {
            break;
        }
        socket.write_all(&buffer[..read]).context("cannot send")?;
    }
    socket
        .shutdown(std::net::Shutdown::Write)
        .context("cannot close the socket")?;
    let mut count = [0u8; 8];
    socket
        .read_exact(&mut count)
        .context("the receiver did not report its byte count")?;
    Ok(TcpCopyReport {
        bytes: u64::from_le_bytes(count),
        elapsed_secs: started.elapsed().as_secs_f64(),
    })
}

fn generate(dir: &Path, prefix: &str, count: u64, bytes: u64) -> anyhow::Result<GenerateReport> {
    const BLOCK: usize = 1 << 20;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0x5eed_b0a7);
    let mut block = vec![0u8; BLOCK];
    let mut files = Vec::new();
    for index in 0..count {
        let path = dir.join(format!("{prefix}-{index:04}.txt"));
        let mut out = std::io::BufWriter::new(
            std::fs::File::create(&path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        );
        let mut left = bytes;
        while left > 0 {
            let take = left.min(BLOCK as u64) as usize;
            rng.fill_bytes(&mut block[..take]);
            out.write_all(&block[..take])
                .with_context(|| format!("cannot write {}", path.display()))?;
            left -= take as u64;
        }
        out.flush()
            .with_context(|| format!("cannot write {}", path.display()))?;
        files.push(path);
    }
    Ok(GenerateReport { files })
}

fn rusage(command: &[String]) -> anyhow::Result<RusageReport> {
    let (program, args) = command.split_first().context("rusage needs a command")?;
    let started = Instant::now();
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {program}"))?;
    // Drain stderr on a thread so a chatty child cannot block on a full pipe.
    let mut stderr = child.stderr.take().context("no stderr pipe")?;
    let stderr_thread = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .context("no stdout pipe")?
        .read_to_string(&mut stdout)
        .with_context(|| format!("cannot read the output of {program}"))?;
    let status = child
        .wait()
        .with_context(|| format!("cannot wait for {program}"))?;
    let wall_secs = started.elapsed().as_secs_f64();
    let stderr = stderr_thread.join().unwrap_or_default();
    // This process has exactly one child, now reaped, so the children's maximum is that child's peak.
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)
        .context("getrusage(RUSAGE_CHILDREN)")?;
    let secs = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
    Ok(RusageReport {
        exit_code: status.code(),
        max_rss_kib: u64::try_from(usage.max_rss()).unwrap_or(0),
        user_secs: secs(usage.user_time()),
        sys_secs: secs(usage.system_time()),
        wall_secs,
        stdout,
        stderr_tail: stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .to_owned(),
    })
}
