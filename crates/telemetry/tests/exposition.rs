//! Pins the Prometheus exposition produced by a fixed sequence of events.
#![allow(clippy::unwrap_used)]

mod support;

use upramp_telemetry::{names, LocalMetrics, PrometheusObserver};

use support::scenario;

#[test]
fn exposition_of_the_fixed_scenario() {
    let metrics = LocalMetrics::new().unwrap();
    let observer = PrometheusObserver::new();
    metrics.scope(|| {
        scenario::emit(&observer);
        scenario::record_flags();
    });
    let text = metrics.render();
    for name in names::ALL {
        assert!(
            text.contains(&format!("# TYPE {name} ")),
            "{name} missing from:\n{text}"
        );
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "{name} has no help text"
        );
    }
    insta::assert_snapshot!(text);
}

#[test]
fn isolated_recorders_do_not_share_metrics() {
    let first = LocalMetrics::new().unwrap();
    let second = LocalMetrics::new().unwrap();
    first.scope(|| scenario::emit(&PrometheusObserver::new()));
    assert!(first.render().contains(names::UPLOADS_TOTAL));
    assert!(!second.render().contains(names::UPLOADS_TOTAL));
}
