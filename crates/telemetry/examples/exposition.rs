//! Installs the global Prometheus recorder, feeds a fixed sequence of upload events through the
//! Prometheus and tracing observers, and prints the exposition to stdout.
//!
//! CI checks it: `cargo run -q -p upramp-telemetry --example exposition | promtool check metrics`.

use std::sync::Arc;

use upramp_telemetry::{
    init_tracing, install, FanOut, LogFormat, PrometheusObserver, TracingObserver,
};

#[path = "../tests/support/scenario.rs"]
mod scenario;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Logs go to stderr (quiet unless RUST_LOG asks), so stdout stays a pure exposition.
    if std::env::var_os("RUST_LOG").is_some() {
        init_tracing(LogFormat::Human)?;
    }
    let metrics = install()?;
    let observers = FanOut::new()
        .with(Arc::new(PrometheusObserver::new()))
        .with(Arc::new(TracingObserver::new()));
    scenario::emit(&observers);
    scenario::record_flags();
    print!("{}", metrics.render_sorted());
    Ok(())
}
