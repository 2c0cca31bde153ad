//! Upload one file on a chosen path and report the process's memory high-water mark.
//!
//! ```text
//! upload_one <BASE_URL> <kimi|glm|openai> <FILE> <async|sync> [PURPOSE] [API_KEY_ENV]
//! ```
//!
//! Prints one JSON line: `{"path", "bytes", "id", "sha256", "seconds", "idle_hwm_kib",
//! "peak_hwm_kib"}`. `idle_hwm_kib` is the peak resident set (Linux `VmHWM`) once the runtime,
//! clients and uploader exist, before the upload; `peak_hwm_kib` is the peak after it. Their
//! difference is what the upload itself cost. The memory test and `cargo xtask bench` run this
//! as a child process so nothing else shares its heap. The key comes from the variable named by
//! `API_KEY_ENV` (default `UPRAMP_API_KEY`), falling back to the stand-ins' `sk-upramp-mock`.

use std::error::Error;
use std::sync::Arc;
use std::time::Instant;

use upramp_flags::{FlagConfig, FlagStore};
use upramp_providers::{ApiKey, ProviderClient, ProviderKind};
use upramp_uploader::{Route, UploadRequest, Uploader};

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [base_url, provider, file, path, rest @ ..] = args.as_slice() else {
        return Err("usage: upload_one <BASE_URL> <kimi|glm|openai> <FILE> <async|sync> [PURPOSE] [API_KEY_ENV]".into());
    };
    let kind: ProviderKind = provider.parse()?;
    let forced = match path.as_str() {
        "async" => Route::Async,
        "sync" => Route::Sync,
        other => return Err(format!("path {other:?}: expected async or sync").into()),
    };
    let purpose = rest.first().map_or("file-extract", String::as_str);
    let key_env = rest.get(1).map_or("UPRAMP_API_KEY", String::as_str);
    let key = ApiKey::from_env(key_env).unwrap_or_else(|_| ApiKey::new("sk-upramp-mock"));

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let client = ProviderClient::with_base_url(kind, base_url, key)?;
    let blocking = client.blocking();
    // The path is forced; the flag only supplies retries (none: one clean measurement) and no
    // fallback, so the figure belongs to the path asked for.
    let mut flag = FlagConfig::new(upramp_flags::ASYNC_UPLOAD);
    flag.max_retries = 0;
    flag.fallback = false;
    let uploader = Uploader::builder(Arc::new(client), Arc::new(blocking))
        .flags(FlagStore::new(flag))
        .build()?;

    let idle = high_water_mark_kib()?;
    let started = Instant::now();
    let receipt =
        runtime.block_on(uploader.upload_on(UploadRequest::new(file, purpose), forced))?;
    let seconds = started.elapsed().as_secs_f64();
    let peak = high_water_mark_kib()?;
    let report = serde_json::json!({
        "path": receipt.path,
        "bytes": receipt.bytes,
        "id": receipt.id(),
        "sha256": receipt.sha256,
        "seconds": seconds,
        "idle_hwm_kib": idle,
        "peak_hwm_kib": peak,
    });
    println!("{report}");
    Ok(())
}

/// `VmHWM` (peak resident set size) of this process, in KiB.
fn high_water_mark_kib() -> Result<u64, Box<dyn Error>> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| "no VmHWM in /proc/self/status (Linux only)".into())
}
