//! upramp-flags: (overview to come).
