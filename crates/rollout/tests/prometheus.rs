//! `PrometheusSource` against a loopback HTTP server answering each query with a canned response:
//! every result shape the query API can return.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use upramp_rollout::{MetricsSource, PrometheusSource, Selector, SourceError};

/// Which of the three queries a request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Query {
    Counts,
    P99,
    Fallbacks,
}

fn which(request_line: &str) -> Query {
    if request_line.contains("histogram_quantile") {
        Query::P99
    } else if request_line.contains("upramp_upload_fallbacks_total") {
        Query::Fallbacks
    } else {
        Query::Counts
    }
}

type Reply = (u16, String);

/// Serve `reply(query)` on loopback; returns the base URL and the request lines seen.
fn serve(reply: impl Fn(Query) -> Reply + Send + 'static) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let line = read_request(&stream);
            let (status, body) = reply(which(&line));
            log.lock().unwrap().push(line);
            let mut stream = stream;
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (url, seen)
}

/// Read the request head; returns its first line.
fn read_request(stream: &TcpStream) -> String {
    let mut reader = BufReader::new(stream);
    let mut first = String::new();
    let _ = reader.read_line(&mut first);
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) if line == "\r\n" => break,
            Ok(_) => {}
        }
    }
    first.trim_end().to_owned()
}

fn vector(series: &[(&[(&str, &str)], &str)]) -> String {
    let result: Vec<String> = series
        .iter()
        .map(|(labels, value)| {
            let labels: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("\"{k}\":\"{v}\""))
                .collect();
            format!(
                "{{\"metric\":{{{}}},\"value\":[1714521600.000,\"{value}\"]}}",
                labels.join(",")
            )
        })
        .collect();
    format!(
        "{{\"status\":\"success\",\"data\":{{\"resultType\":\"vector\",\"result\":[{}]}}}}",
        result.join(",")
    )
}

fn ok(body: String) -> Reply {
    (200, body)
}

fn healthy_counts() -> String {
    vector(&[
        (&[("path", "async"), ("outcome", "success")], "979.6"),
        (&[("path", "async"), ("outcome", "server_error")], "20.2"),
        (&[("path", "sync"), ("outcome", "success")], "9000"),
        (&[("path", "sync"), ("outcome", "timeout")], "5"),
        (&[("path", "sync"), ("outcome", "rate_limited")], "2"),
    ])
}

fn p99(async_: &str, sync: &str) -> String {
    vector(&[(&[("path", "async")], async_), (&[("path", "sync")], sync)])
}

fn at() -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(1_714_521_600_250)
}

fn source(url: &str) -> PrometheusSource {
    PrometheusSource::with_timeout(
        url,
        &Selector::parse(r#"job="uploads""#).unwrap(),
        Duration::from_secs(120),
        Duration::from_secs(5),
    )
    .unwrap()
}

fn window_error(reply: impl Fn(Query) -> Reply + Send + 'static) -> (String, PrometheusSource) {
    let (url, _) = serve(reply);
    let mut source = source(&url);
    let err = source.window(at()).unwrap_err();
    let SourceError::Other(message) = err else {
        panic!("unexpected error kind: {err:?}")
    };
    (message, source)
}

#[test]
fn a_vector_becomes_gate_inputs_and_the_queries_are_recorded() {
    let (url, seen) = serve(|q| match q {
        Query::Counts => ok(healthy_counts()),
        Query::P99 => ok(p99("0.12", "0.1")),
        Query::Fallbacks => ok(vector(&[(&[], "19.8")])),
    });
    let mut source = source(&url);
    let inputs = source.window(at()).unwrap();
    insta::assert_debug_snapshot!("prometheus_vector_inputs", inputs);

    let readings = source.last_queries();
    assert_eq!(readings.len(), 3);
    assert_eq!(readings[0].query, source.queries().counts);
    assert_eq!(readings[1].query, source.queries().fallbacks);
    assert_eq!(readings[2].query, source.queries().p99);
    insta::assert_json_snapshot!("prometheus_readings", readings);

    let requests = seen.lock().unwrap();
    assert_eq!(requests.len(), 3);
    for line in requests.iter() {
        assert!(line.starts_with("GET /api/v1/query?query="), "{line}");
        assert!(line.contains("&time=1714521600.250&"), "{line}");
        assert!(line.contains("&timeout=5s "), "{line}");
    }
}

#[test]
fn an_empty_counts_result_is_no_data_never_a_pass() {
    let (message, source) = window_error(|_| ok(vector(&[])));
    assert!(message.contains("an empty result"), "{message}");
    assert!(message.contains(&source.queries().counts), "{message}");
    assert_eq!(source.last_queries().len(), 1);
    assert!(source.last_queries()[0].values.is_empty());
}

#[test]
fn an_empty_fallbacks_result_is_zero_fallbacks() {
    let (url, _) = serve(|q| match q {
        Query::Counts => ok(healthy_counts()),
        Query::P99 => ok(p99("0.12", "0.1")),
        Query::Fallbacks => ok(vector(&[])),
    });
    let inputs = source(&url).window(at()).unwrap();
    assert_eq!(inputs.async_.fallbacks, 0);
    assert_eq!(inputs.async_.samples, 1000);
}

#[test]
fn nan_and_infinite_counts_hold() {
    for bad in ["NaN", "+Inf", "-Inf"] {
        let (message, _) = window_error(move |q| match q {
            Query::Counts => ok(vector(&[(
                &[("path", "async"), ("outcome", "success")],
                bad,
            )])),
            _ => ok(vector(&[])),
        });
        assert!(
            message.contains(&format!("{bad} for {{outcome=\"success\",path=\"async\"}}")),
            "{message}"
        );
    }
}

#[test]
fn a_nan_p99_holds_only_when_the_path_had_legs() {
    let (message, _) = window_error(|q| match q {
        Query::Counts => ok(healthy_counts()),
        Query::P99 => ok(p99("NaN", "0.1")),
        Query::Fallbacks => ok(vector(&[])),
    });
    assert!(
        message.contains("NaN for {path=\"async\"} with 1000 legs in the window"),
        "{message}"
    );

    // At the 0% baseline the async path has no legs: NaN is histogram_quantile's "no observations".
    let (url, _) = serve(|q| match q {
        Query::Counts => ok(vector(&[(
            &[("path", "sync"), ("outcome", "success")],
            "500",
        )])),
        Query::P99 => ok(p99("NaN", "0.1")),
        Query::Fallbacks => ok(vector(&[])),
    });
    let inputs = source(&url).window(at()).unwrap();
    assert_eq!(inputs.async_.samples, 0);
    assert_eq!(inputs.async_.p99, None);
    assert_eq!(inputs.sync.p99, Some(Duration::from_millis(100)));
}

#[test]
fn an_infinite_p99_holds() {
    let (message, _) = window_error(|q| match q {
        Query::Counts => ok(healthy_counts()),
        Query::P99 => ok(p99("0.12", "+Inf")),
        Query::Fallbacks => ok(vector(&[])),
    });
    assert!(message.contains("+Inf for {path=\"sync\"}"), "{message}");
}

#[test]
fn an_error_status_quotes_its_error_type() {
    let (message, source) = window_error(|_| {
        (
            400,
            r#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\": 1:9: parse error"}"#
                .to_owned(),
        )
    });
    assert!(
        message.contains("status `error` (HTTP 400), errorType `bad_data`: invalid parameter \"query\": 1:9: parse error"),
        "{message}"
    );
    assert!(message.contains(source.url()), "{message}");
    let reading = &source.last_queries()[0];
    assert_eq!(
        reading.error.as_deref().map(|e| e.contains("bad_data")),
        Some(true)
    );
}

#[test]
fn http_errors_hold_with_the_status() {
    let (message, _) = window_error(|_| (500, "upstream exploded".to_owned()));
    assert!(
        message.contains("HTTP 500: `upstream exploded`"),
        "{message}"
    );
    let (message, _) = window_error(|_| (503, String::new()));
    assert!(message.contains("HTTP 503: an empty body"), "{message}");
}

#[test]
fn malformed_bodies_hold() {
    for (body, want) in [
        ("<html>not json</html>", "not the query API's JSON"),
        (r#"{"status":"success"}"#, "without `data`"),
        (
            r#"{"status":"success","data":{"resultType":"scalar","result":[1,"2"]}}"#,
            "result type `scalar`, expected `vector`",
        ),
        (
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":"x"}]}}"#,
            "a malformed vector result",
        ),
        (
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"twelve"]}]}}"#,
            "the sample value `twelve` is not a number",
        ),
    ] {
        let (message, _) = window_error(move |_| ok(body.to_owned()));
        assert!(message.contains(want), "{body}: {message}");
    }
}

#[test]
fn a_server_that_never_answers_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = Arc::clone(&held);
    // Accept and read, never answer; the connections stay open until the test ends.
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            read_request(&stream);
            keep.lock().unwrap().push(stream);
        }
    });
    let mut source = PrometheusSource::with_timeout(
        &url,
        &Selector::default(),
        Duration::from_secs(60),
        Duration::from_millis(300),
    )
    .unwrap();
    let err = source.window(at()).unwrap_err().to_string();
    assert!(err.contains("timed out after 300ms"), "{err}");
    assert!(err.contains("sum by (path, outcome)"), "{err}");
}

#[test]
fn a_refused_connection_holds_with_the_cause() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut source = source(&format!("http://127.0.0.1:{port}"));
    let err = source.window(at()).unwrap_err().to_string();
    assert!(
        err.contains(&format!("prometheus http://127.0.0.1:{port}: query `")),
        "{err}"
    );
    assert!(err.to_lowercase().contains("connect"), "{err}");
}

#[test]
fn the_recording_rules_are_the_sources_queries() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/prometheus/recording.yml"
    );
    let rules = std::fs::read_to_string(path).unwrap();
    let queries = upramp_rollout::GateQueries::new(&Selector::default(), Duration::from_secs(300));
    for query in [&queries.counts, &queries.p99, &queries.fallbacks] {
        assert!(
            rules.lines().any(|l| l.trim() == query),
            "docs/prometheus/recording.yml lacks `{query}`"
        );
    }
}

#[test]
fn each_decision_audits_the_exact_queries_and_the_values_read() {
    let (url, _) = serve(|q| match q {
        Query::Counts => ok(healthy_counts()),
        Query::P99 => ok(p99("0.12", "0.1")),
        Query::Fallbacks => ok(vector(&[(&[], "19.8")])),
    });
    let source = source(&url);
    let expected = source.queries().clone();
    let mut controller = upramp_rollout::Controller::new(
        upramp_rollout::Plan::default_three_week(),
        source,
        upramp_rollout::RecordingSink::default(),
    )
    .unwrap()
    .with_audit(upramp_rollout::AuditLog::in_memory());
    // The first tick starts the baseline's bake without a window; the second judges one.
    let started = controller.tick(at()).unwrap();
    assert!(started.queries.is_empty());
    let record = controller.tick(at() + Duration::from_secs(60)).unwrap();
    let sent: Vec<&str> = record.queries.iter().map(|r| r.query.as_str()).collect();
    assert_eq!(
        sent,
        [expected.counts.as_str(), &expected.fallbacks, &expected.p99]
    );
    assert!(record.queries[0].values.iter().any(|v| v.value == "979.6"));
    let audited = &controller.audit().records()[1];
    assert_eq!(audited.queries, record.queries);
    let json = serde_json::to_string(audited).unwrap();
    assert!(json.contains("histogram_quantile"), "{json}");
}
