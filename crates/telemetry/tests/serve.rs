//! The `/metrics` endpoint over loopback, and the global install.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;

use upramp_telemetry::{
    install, record_rollout_percent, LocalMetrics, TelemetryError, EXPOSITION_CONTENT_TYPE,
};

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

#[tokio::test]
async fn serves_metrics_over_loopback() {
    let metrics = LocalMetrics::new().unwrap();
    metrics.scope(|| record_rollout_percent("async_upload", 1.0));
    // `serve` returns once the listener is bound, so requests can follow at once.
    let server = metrics.handle().serve(loopback()).await.unwrap();
    let base = format!("http://{}", server.local_addr());
    assert!(server.local_addr().ip().is_loopback());
    assert_ne!(server.local_addr().port(), 0);

    let response = reqwest::get(format!("{base}/metrics")).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], EXPOSITION_CONTENT_TYPE);
    let body = response.text().await.unwrap();
    assert!(
        body.contains("upramp_rollout_percent{flag=\"async_upload\"} 1"),
        "{body}"
    );

    assert_eq!(
        reqwest::get(format!("{base}/health"))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        reqwest::get(format!("{base}/nope")).await.unwrap().status(),
        404
    );
    let post = reqwest::Client::new()
        .post(format!("{base}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 405);
    assert_eq!(post.headers()["allow"], "GET");

    // A second listener on the same port fails with an error naming the address.
    let taken = server.local_addr();
    let err = metrics.handle().serve(taken).await.unwrap_err();
    assert!(matches!(err, TelemetryError::Bind { addr, .. } if addr == taken));
    assert!(
        err.to_string()
            .starts_with(&format!("cannot serve /metrics on {taken}: ")),
        "{err}"
    );
    server.shutdown();
}

#[tokio::test]
async fn global_install_records_outside_any_scope_and_only_once() {
    let handle = install().unwrap();
    record_rollout_percent("async_upload", 50.0);
    let rendered = handle.render_sorted();
    assert!(
        rendered.contains("# HELP upramp_rollout_percent "),
        "{rendered}"
    );
    assert!(
        rendered.contains("upramp_rollout_percent{flag=\"async_upload\"} 50"),
        "{rendered}"
    );
    let second = install().unwrap_err();
    assert!(matches!(second, TelemetryError::Exporter(_)), "{second}");

    let server = handle.serve(loopback()).await.unwrap();
    let body = reqwest::get(format!("http://{}/metrics", server.local_addr()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(body.contains("upramp_rollout_percent{flag=\"async_upload\"} 50"));
}
