//! upramp-providers: (overview to come).
