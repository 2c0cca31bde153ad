//! upramp-uploader: (overview to come).
