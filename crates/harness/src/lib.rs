//! upramp-harness: (overview to come).
