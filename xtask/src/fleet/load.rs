//! The fleet's clients: a load generator sending multipart uploads at a steady rate with thousands of
//! routing keys, and a monitor reading the percent each gateway applied from its `/metrics`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// What became of one client request.
#[derive(Debug, Clone, Serialize)]
pub struct RequestRecord {
    /// Sequence number (also in the filename).
    pub n: u64,
    /// The multipart filename, unique per request.
    pub filename: String,
    /// The routing key sent.
    pub routing_key: String,
    /// SHA-256 of the bytes sent.
    pub sha256: String,
    /// Bytes sent.
    pub bytes: u64,
    /// Gateways tried, in order (a refused connection moves to the next one).
    pub instances: Vec<usize>,
    /// Seconds since the load started when it was sent.
    pub sent_at: f64,
    /// The HTTP status, if a response came.
    pub status: Option<u16>,
    /// The file id of a success.
    pub file_id: Option<String>,
    /// The name the provider stored it under (the gateway's per-request marker added), on a success.
    pub stored_name: Option<String>,
    /// `X-Upramp-Path` of a success.
    pub path: Option<String>,
    /// `x-upramp-outcome: unknown` on an error: the provider may hold the file.
    pub outcome_unknown: bool,
    /// Why there was no response.
    pub error: Option<String>,
}

/// The shared list of gateway base URLs (`None` while an instance is down).
pub type Targets = Arc<Mutex<Vec<String>>>;

/// A running load generator.
pub struct Load {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<RequestRecord>>,
    /// When it started.
    pub started: Instant,
}

impl Load {
    /// Start sending `rate` uploads a second, spread round-robin over `targets`.
    pub fn start(
        runtime: &tokio::runtime::Runtime,
        targets: Targets,
        rate: f64,
        seed: u64,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let flag = Arc::clone(&stop);
        let task = runtime.spawn(async move { generate(targets, rate, seed, flag, started).await });
        Self {
            stop,
            task,
            started,
        }
    }

    /// Stop sending and wait for every request in flight to end.
    pub fn finish(self, runtime: &tokio::runtime::Runtime) -> anyhow::Result<Vec<RequestRecord>> {
        self.stop.store(true, Ordering::SeqCst);
        Ok(runtime.block_on(self.task)?)
    }
}

/// Routing keys drawn from this many users.
const USERS: u64 = 5_000;

async fn generate(
    targets: Targets,
    rate: f64,
    seed: u64,
    stop: Arc<AtomicBool>,
    started: Instant,
) -> Vec<RequestRecord> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .connect_timeout(Duration::from_secs(2))
        .build()
        .unwrap_or_default();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut tasks = Vec::new();
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        ticker.tick().await;
        let size = rng.gen_range(256..8_192usize);
        let user = rng.gen_range(0..USERS);
        let body = file_body(seed, n, size);
        let record = RequestRecord {
            n,
            filename: format!("fleet-{seed}-{n}.txt"),
            routing_key: format!("user-{user}"),
            sha256: hex::encode(Sha256::digest(&body)),
            bytes: body.len() as u64,
            instances: Vec::new(),
            sent_at: started.elapsed().as_secs_f64(),
            status: None,
            file_id: None,
            stored_name: None,
            path: None,
            outcome_unknown: false,
            error: None,
        };
        let first = (n as usize) % 3;
        tasks.push(tokio::spawn(send(
            client.clone(),
            Arc::clone(&targets),
            first,
            record,
            body,
        )));
        n += 1;
    }
    let mut records = Vec::with_capacity(tasks.len());
    for task in tasks {
        if let Ok(record) = task.await {
            records.push(record);
        }
    }
    records
}

/// Printable ASCII (the Kimi stand-in's `/content` is text), unique per request.
fn file_body(seed: u64, n: u64, size: usize) -> Vec<u8> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut body = format!("fleet request {n}\n").into_bytes();
    body.extend((body.len()..size).map(|_| rng.gen_range(b' '..=b'~')));
    body
}

async fn send(
    client: reqwest::Client,
    targets: Targets,
    first: usize,
    mut record: RequestRecord,
    body: Vec<u8>,
) -> RequestRecord {
    let count = targets.lock().map(|t| t.len()).unwrap_or(0).max(1);
    for attempt in 0..count {
        let index = (first + attempt) % count;
        let Some(url) = targets.lock().ok().and_then(|t| t.get(index).cloned()) else {
            continue;
        };
        record.instances.push(index);
        let part = reqwest::multipart::Part::bytes(body.clone())
            .file_name(record.filename.clone())
            .mime_str("text/plain")
            .unwrap_or_else(|_| reqwest::multipart::Part::bytes(Vec::new()));
        let form = reqwest::multipart::Form::new()
            .text("purpose", "file-extract")
            .part("file", part);
        let result = client
            .post(format!("{url}/v1/files"))
            .header("x-upramp-routing-key", &record.routing_key)
            .multipart(form)
            .send()
            .await;
        match result {
            // Nothing reached a gateway that refused the connection: another one may take it.
            Err(e) if e.is_connect() => {
                record.error = Some(format!("instance {index}: connection refused"));
                continue;
            }
            Err(e) => {
                record.error = Some(format!("instance {index}: {}", e.without_url()));
                return record;
            }
            Ok(response) => {
                record.error = None;
                record.status = Some(response.status().as_u16());
                let header = |name: &str| {
                    response
                        .headers()
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned)
                };
                record.path = header("x-upramp-path");
                record.outcome_unknown = header("x-upramp-outcome").as_deref() == Some("unknown");
                let success = response.status().is_success();
                let text = response.text().await.unwrap_or_default();
                if success {
                    let body = serde_json::from_str::<serde_json::Value>(&text).ok();
                    let field = |name: &str| {
                        body.as_ref()
                            .and_then(|v| v.get(name)?.as_str().map(str::to_owned))
                    };
                    record.file_id = field("id");
                    record.stored_name = field("filename");
                } else {
                    record.error = Some(text.chars().take(200).collect());
                }
                return record;
            }
        }
    }
    record
}

/// The percent each gateway reported, sampled every 100 ms.
#[derive(Debug, Clone, Serialize)]
pub struct PercentSample {
    /// Seconds since the load started.
    pub at: f64,
    /// Percent per instance; `None` while it does not answer.
    pub percents: Vec<Option<f64>>,
}

/// Polls every gateway's `/metrics` for `upramp_gateway_flag_rollout_percent`.
pub struct Monitor {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
    samples: Arc<Mutex<Vec<PercentSample>>>,
}

impl Monitor {
    /// Start polling `targets`; times are measured from `started`.
    pub fn start(targets: Targets, started: Instant) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let samples = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&samples);
        let thread = std::thread::spawn(move || {
            let client = reqwest::blocking::Client::builder()
                .timeout(Duration::from_millis(500))
                .build()
                .unwrap_or_default();
            while !flag.load(Ordering::SeqCst) {
                let urls = targets.lock().map(|t| t.clone()).unwrap_or_default();
                let percents = urls.iter().map(|u| gateway_percent(&client, u)).collect();
                if let Ok(mut samples) = sink.lock() {
                    samples.push(PercentSample {
                        at: started.elapsed().as_secs_f64(),
                        percents,
                    });
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        Self {
            stop,
            thread,
            samples,
        }
    }

    /// Every percent any gateway reported between two load times (seconds).
    pub fn percents_between(&self, from: f64, to: f64) -> Vec<f64> {
        let samples = self.samples.lock().map(|s| s.clone()).unwrap_or_default();
        samples
            .iter()
            .filter(|s| (from..=to).contains(&s.at))
            .flat_map(|s| s.percents.iter().flatten().copied())
            .collect()
    }

    /// Stop and return the samples.
    pub fn finish(self) -> Vec<PercentSample> {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.thread.join();
        self.samples.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// The gauge's value from one scrape.
pub fn gateway_percent(client: &reqwest::blocking::Client, url: &str) -> Option<f64> {
    let text = client
        .get(format!("{url}/metrics"))
        .send()
        .ok()?
        .text()
        .ok()?;
    text.lines()
        .find(|l| l.starts_with("upramp_gateway_flag_rollout_percent"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}
