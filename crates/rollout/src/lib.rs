//! upramp-rollout: (overview to come).
