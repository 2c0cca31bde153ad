//! `PrometheusSource` against a real Prometheus server started by the test, scraping a loopback
//! `/metrics` endpoint every second. Skipped, with a message, only where the `prometheus` binary is
//! absent (Debian package `prometheus`; CI installs it).
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use upramp_rollout::{GateInputs, MetricsSource, PrometheusSource, Selector};

/// Legs per second the fake instance reports.
const ASYNC_OK: f64 = 98.0;
const ASYNC_ERR: f64 = 2.0;
const SYNC_OK: f64 = 200.0;
const FALLBACKS: f64 = 2.0;
const WINDOW: Duration = Duration::from_secs(4);

/// An instance whose counters grow at fixed rates from its (re)start.
struct Instance {
    started: Mutex<Instant>,
    scrapes: AtomicU64,
}

impl Instance {
    fn exposition(&self) -> String {
        let t = self.started.lock().unwrap().elapsed().as_secs_f64();
        let n = |rate: f64| (rate * t).floor();
        let (ok, err, sync) = (n(ASYNC_OK), n(ASYNC_ERR), n(SYNC_OK));
        let mut s = String::from("# TYPE upramp_uploads_total counter\n");
        s += &format!(
            "upramp_uploads_total{{provider=\"kimi\",path=\"async\",outcome=\"success\"}} {ok}\n"
        );
        s += &format!("upramp_uploads_total{{provider=\"kimi\",path=\"async\",outcome=\"server_error\"}} {err}\n");
        s += &format!(
            "upramp_uploads_total{{provider=\"kimi\",path=\"sync\",outcome=\"success\"}} {sync}\n"
        );
        s += &format!("upramp_uploads_total{{provider=\"kimi\",path=\"sync_fallback\",outcome=\"success\"}} {err}\n");
        s += "# TYPE upramp_upload_fallbacks_total counter\n";
        s += &format!(
            "upramp_upload_fallbacks_total{{provider=\"kimi\",reason=\"server_error\"}} {}\n",
            n(FALLBACKS)
        );
        s += "# TYPE upramp_upload_duration_seconds histogram\n";
        // Async legs take 100-250 ms, sync legs 50-100 ms.
        for (le, a, y) in [
            ("0.05", 0.0, 0.0),
            ("0.1", 0.0, sync),
            ("0.25", ok + err, sync),
            ("+Inf", ok + err, sync),
        ] {
            s += &format!("upramp_upload_duration_seconds_bucket{{provider=\"kimi\",path=\"async\",le=\"{le}\"}} {a}\n");
            s += &format!("upramp_upload_duration_seconds_bucket{{provider=\"kimi\",path=\"sync\",le=\"{le}\"}} {y}\n");
        }
        s
    }
}

fn serve_metrics(instance: Arc<Instance>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let instance = Arc::clone(&instance);
            std::thread::spawn(move || answer(&stream, &instance));
        }
    });
    port
}

fn answer(stream: &TcpStream, instance: &Instance) {
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) if line == "\r\n" => break,
            Ok(_) => {}
        }
    }
    let body = instance.exposition();
    instance.scrapes.fetch_add(1, Ordering::SeqCst);
    let mut stream = stream;
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// A Prometheus process, killed on drop.
struct Prometheus {
    child: Child,
    url: String,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Start Prometheus scraping `target` every second on a free port (retried if another process
/// took the port between probing and binding) and wait until `/-/ready` answers 200.
fn start_prometheus(binary: &Path, dir: &Path, target: u16) -> Prometheus {
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: uploads\n    static_configs:\n      - targets: ['127.0.0.1:{target}']\n"
        ),
    )
    .unwrap();
    for attempt in 0..5 {
        let port = free_port();
        let log_path = dir.join(format!("prometheus-{attempt}.log"));
        let log = std::fs::File::create(&log_path).unwrap();
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut prometheus = Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = prometheus.child.try_wait().unwrap() {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                assert!(
                    log.contains("address already in use"),
                    "prometheus exited with {status}:\n{log}"
                );
                break; // another port
            }
            if http_get_status(port, "/-/ready") == Some(200) {
                return prometheus;
            }
            assert!(Instant::now() < deadline, "prometheus not ready within 60s");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    panic!("no free port for prometheus after 5 attempts");
}

fn http_get_status(port: u16, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// Poll the source until `done(inputs)` or 30 s pass; Prometheus scrapes each second.
fn window_until(source: &mut PrometheusSource, done: impl Fn(&GateInputs) -> bool) -> GateInputs {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let last = source.window(SystemTime::now());
        if let Ok(inputs) = &last {
            if done(inputs) {
                return *inputs;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no satisfying window within 30s; last: {last:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn near(value: f64, want: f64, tolerance: f64) -> bool {
    (value - want).abs() <= tolerance * want
}

#[test]
fn gate_inputs_from_a_real_prometheus_survive_an_instance_restart() {
    let Some(binary) = find_on_path("prometheus") else {
        println!(
            "SKIPPED: no `prometheus` binary on PATH (install the Debian package `prometheus`)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let instance = Arc::new(Instance {
        started: Mutex::new(Instant::now()),
        scrapes: AtomicU64::new(0),
    });
    let metrics_port = serve_metrics(Arc::clone(&instance));
    let prometheus = start_prometheus(&binary, dir.path(), metrics_port);

    // A selector matching nothing is "no data": an empty result holds.
    let mut nothing = PrometheusSource::new(
        &prometheus.url,
        &Selector::parse(r#"job="not-scraped""#).unwrap(),
        WINDOW,
    )
    .unwrap();
    let err = nothing.window(SystemTime::now()).unwrap_err().to_string();
    assert!(err.contains("an empty result"), "{err}");

    let mut source = PrometheusSource::new(
        &prometheus.url,
        &Selector::parse(r#"job="uploads""#).unwrap(),
        WINDOW,
    )
    .unwrap();
    let per_window = |rate: f64| rate * WINDOW.as_secs_f64();
    let full = |i: &GateInputs| {
        i.async_.samples as f64 >= 0.8 * per_window(ASYNC_OK + ASYNC_ERR) && i.async_.p99.is_some()
    };
    let inputs = window_until(&mut source, full);
    check(&inputs, per_window(1.0));
    assert_eq!(source.last_queries().len(), 3);
    assert!(source.last_queries().iter().all(|r| r.error.is_none()));

    // The instance restarts: its counters start again from zero. increase() sees the reset, so the
    // window keeps counting what happened before it (the scrape source would lose it).
    let scrapes = instance.scrapes.load(Ordering::SeqCst);
    *instance.started.lock().unwrap() = Instant::now();
    let inputs = window_until(&mut source, |i| {
        instance.scrapes.load(Ordering::SeqCst) >= scrapes + 2 && full(i)
    });
    check(&inputs, per_window(1.0));

    // A selector the parser accepts but PromQL refuses: the server's own error shape.
    let mut bad = PrometheusSource::new(
        &prometheus.url,
        &Selector::parse(r#"job=~"(""#).unwrap(),
        WINDOW,
    )
    .unwrap();
    let err = bad.window(SystemTime::now()).unwrap_err().to_string();
    assert!(err.contains("errorType `bad_data`"), "{err}");

    // The server gone: hold with the cause.
    drop(prometheus);
    let err = source.window(SystemTime::now()).unwrap_err().to_string();
    assert!(err.to_lowercase().contains("connect"), "{err}");
}

/// `unit` is one second's worth of a rate-1 counter over the window. increase() extrapolates to the
/// window's edges, so counts are compared within 30%, ratios more tightly.
fn check(inputs: &GateInputs, unit: f64) {
    let a = &inputs.async_;
    let s = &inputs.sync;
    assert!(
        near(a.samples as f64, unit * (ASYNC_OK + ASYNC_ERR), 0.3),
        "{inputs:?}"
    );
    assert!(near(s.samples as f64, unit * SYNC_OK, 0.3), "{inputs:?}");
    let error_share = a.errors as f64 / a.samples as f64;
    assert!((0.01..=0.03).contains(&error_share), "{inputs:?}");
    assert_eq!(s.errors, 0, "{inputs:?}");
    assert!(
        near(a.fallbacks as f64, unit * FALLBACKS, 0.5),
        "{inputs:?}"
    );
    // All async legs in (0.1, 0.25]: p99 = 0.1 + 0.15 * 0.99; sync in (0.05, 0.1]: 0.05 + 0.05 * 0.99.
    let p99 = |d: Option<Duration>| d.unwrap().as_secs_f64();
    assert!((p99(a.p99) - 0.2485).abs() < 1e-6, "{inputs:?}");
    assert!((p99(s.p99) - 0.0995).abs() < 1e-6, "{inputs:?}");
}
