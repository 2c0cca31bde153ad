//! The Prometheus exposition parser and the scrape source against loopback `/metrics` servers.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use upramp_rollout::{parse_exposition, MetricsSource, ScrapeSource, SourceError, UploadTotals};

/// An exposition as `metrics-exporter-prometheus` renders upramp's metrics, two providers.
fn exposition(
    async_ok: u64,
    async_err: u64,
    sync_ok: u64,
    fallbacks: u64,
    slow_async: u64,
) -> String {
    let mut s = String::from("# HELP upramp_uploads_total Request legs by outcome.\n# TYPE upramp_uploads_total counter\n");
    let half = |v: u64| (v / 2, v - v / 2);
    let (ak, ag) = half(async_ok);
    s += &format!(
        "upramp_uploads_total{{provider=\"kimi\",path=\"async\",outcome=\"success\"}} {ak}\n"
    );
    s += &format!(
        "upramp_uploads_total{{provider=\"glm\",path=\"async\",outcome=\"success\"}} {ag}\n"
    );
    s += &format!("upramp_uploads_total{{provider=\"kimi\",path=\"async\",outcome=\"server_error\"}} {async_err}\n");
    s += &format!(
        "upramp_uploads_total{{provider=\"kimi\",path=\"sync\",outcome=\"success\"}} {sync_ok}\n"
    );
    s += "upramp_uploads_total{provider=\"kimi\",path=\"sync_fallback\",outcome=\"success\"} 7\n";
    s += &format!(
        "upramp_upload_fallbacks_total{{provider=\"kimi\",reason=\"server_error\"}} {fallbacks}\n"
    );
    s += "# TYPE upramp_upload_duration_seconds histogram\n";
    let async_total = async_ok + async_err;
    for (le, a, sy) in [
        ("0.05", 0, 0),
        ("0.1", async_total - slow_async, sync_ok),
        ("0.5", async_total, sync_ok),
        ("+Inf", async_total, sync_ok),
    ] {
        s += &format!("upramp_upload_duration_seconds_bucket{{provider=\"kimi\",path=\"async\",le=\"{le}\"}} {a}\n");
        s += &format!("upramp_upload_duration_seconds_bucket{{provider=\"kimi\",path=\"sync\",le=\"{le}\"}} {sy}\n");
    }
    s += "upramp_upload_duration_seconds_sum{provider=\"kimi\",path=\"async\"} 1.5\n";
    s += &format!(
        "upramp_upload_duration_seconds_count{{provider=\"kimi\",path=\"async\"}} {async_total}\n"
    );
    s += "upramp_rollout_percent{flag=\"async_upload\"} 10\n";
    s
}

#[test]
fn parser_reads_labels_escapes_and_special_values() {
    let text = "# comment\n\nm{a=\"x\\\"y\\\\z\\n\",b=\"\"} +Inf 1700000000000\nplain 3.5e2\nn{le=\"+Inf\"} NaN\n";
    let samples = parse_exposition(text).unwrap();
    insta::assert_debug_snapshot!("parsed_special_values", samples);
    for bad in [
        "m{a=x} 1",
        "m{a=\"x\" 1",
        "m 1 2 3",
        "{a=\"b\"} 1",
        "m notanumber",
        "m{a=\"\\q\"} 1",
    ] {
        let err = parse_exposition(bad).unwrap_err();
        assert_eq!(err.line, 1, "{bad}");
    }
}

#[test]
fn totals_pick_the_upload_series_and_estimate_p99() {
    let samples = parse_exposition(&exposition(980, 20, 9_000, 20, 15)).unwrap();
    let inputs = UploadTotals::from_samples(&samples).to_inputs();
    insta::assert_debug_snapshot!("inputs_from_exposition", inputs);
}

/// Serve the bodies in order, one per connection, on a loopback port.
fn serve(bodies: Vec<String>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/metrics", listener.local_addr().unwrap());
    let bodies = Arc::new(Mutex::new(bodies.into_iter()));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            let mut buf = [0u8; 4096];
            let mut request = Vec::new();
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let next = bodies.lock().unwrap().next();
            let response = match next {
                Some(body) => format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                ),
                None => "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_owned(),
            };
            let _ = stream.write_all(response.as_bytes());
        }
    });
    url
}

#[test]
fn scrape_source_sums_instances_and_returns_windowed_deltas() {
    let a = serve(vec![
        exposition(1_000, 0, 10_000, 0, 0),
        exposition(2_000, 50, 19_000, 40, 0),
        exposition(2_500, 60, 25_000, 45, 0),
        // A restarted instance: its counters start over.
        exposition(100, 0, 900, 0, 0),
    ]);
    let b = serve(vec![
        exposition(500, 0, 5_000, 0, 0),
        exposition(1_000, 10, 9_000, 10, 0),
        exposition(1_200, 10, 11_000, 10, 0),
        exposition(1_300, 10, 12_000, 10, 0),
    ]);
    let t0: SystemTime = UNIX_EPOCH + Duration::from_secs(1_714_521_600);
    let mut source = ScrapeSource::new(vec![a, b], Duration::from_secs(3_600)).unwrap();

    // First scrape: nothing to compare with yet.
    let first = source.window(t0).unwrap();
    assert_eq!(first.async_.samples, 0);
    assert_eq!(first.sync.samples, 0);

    let second = source.window(t0 + Duration::from_secs(1_800)).unwrap();
    assert_eq!(second.async_.samples, (2_050 - 1_000) + (1_010 - 500));
    assert_eq!(second.async_.errors, 60);
    assert_eq!(second.async_.fallbacks, 50);
    assert_eq!(second.sync.samples, 9_000 + 4_000);
    assert!(second.sync.p99.is_some());

    // One hour after the first scrape the base moves forward to it... still t0 (exactly a window old).
    let third = source.window(t0 + Duration::from_secs(3_600)).unwrap();
    assert_eq!(third.async_.samples, (2_560 - 1_000) + (1_210 - 500));

    // 1.5 h: the base is the 30-minute scrape; instance a restarted and counts from zero.
    let fourth = source.window(t0 + Duration::from_secs(5_400)).unwrap();
    assert_eq!(fourth.async_.samples, 100 + (1_310 - 1_010));
    assert_eq!(fourth.sync.samples, 900 + (12_000 - 9_000));

    // The servers have nothing more: HTTP 503 is a fetch error naming the URL.
    let err = source.window(t0 + Duration::from_secs(7_200)).unwrap_err();
    assert!(matches!(err, SourceError::Fetch { .. }), "{err}");
    assert!(err.to_string().contains("503"), "{err}");
}

#[test]
fn unreachable_scrape_target_is_a_source_error() {
    // Bind then drop to get a loopback port with nothing listening.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut source = ScrapeSource::new(
        vec![format!("http://127.0.0.1:{port}/metrics")],
        Duration::from_secs(60),
    )
    .unwrap();
    let err = source.window(UNIX_EPOCH).unwrap_err();
    assert!(
        err.to_string()
            .starts_with(&format!("scrape http://127.0.0.1:{port}/metrics: ")),
        "{err}"
    );
}
