//! upramp-telemetry: (overview to come).
