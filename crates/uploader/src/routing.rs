//! Which path a request starts on: the flag's decision for its routing key (or the key derived
//! from the file), or the caller's forced path.

use std::path::Path;

use upramp_flags::{FlagConfig, Route};
use upramp_telemetry::{record_flag_evaluation, UploadPath};

use crate::receipt::Routing;
use crate::request::UploadRequest;

/// The path `request` starts on and how it was chosen. A flag evaluation is recorded; a forced
/// path records none.
pub(crate) fn route(
    request: &UploadRequest,
    flag: &FlagConfig,
    size: u64,
    forced: Option<Route>,
) -> (UploadPath, Routing) {
    let key_derived = request.routing_key.is_none();
    if let Some(forced) = forced {
        let path = match forced {
            Route::Async => UploadPath::Async,
            Route::Sync => UploadPath::Sync,
        };
        let decided = forced.as_str();
        let routing = Routing {
            decided,
            reason: "forced",
            bucket: None,
            key_derived,
        };
        return (path, routing);
    }
    let key = match &request.routing_key {
        Some(key) => key.clone(),
        None => derived_routing_key(&request.path, size),
    };
    let decision = upramp_flags::evaluate(flag, &key);
    record_flag_evaluation(&flag.name, decision.route.as_str());
    let path = match decision.route {
        Route::Async => UploadPath::Async,
        Route::Sync => UploadPath::Sync,
    };
    let routing = Routing {
        decided: decision.route.as_str(),
        reason: decision.reason.as_str(),
        bucket: Some(decision.bucket),
        key_derived,
    };
    (path, routing)
}

/// The routing key used when an [`UploadRequest`](crate::UploadRequest) has none:
/// `"file:<absolute path>:<size in bytes>"`.
///
/// The path is made absolute against the current directory (without resolving symlinks, so no
/// file-system access), so `./a.pdf` and `/srv/a.pdf` from `/srv` share a key. Including the size
/// means a file replaced by a different one may land in another cohort, while re-uploading the same
/// file stays sticky. Callers with a tenant or user id should pass it instead: stickiness by user is
/// what a staged rollout wants.
///
/// ```
/// let key = upramp_uploader::derived_routing_key(std::path::Path::new("/data/report.pdf"), 1024);
/// assert_eq!(key, "file:/data/report.pdf:1024");
/// ```
pub fn derived_routing_key(path: &Path, size: u64) -> String {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    format!("file:{}:{size}", absolute.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_are_made_absolute() {
        let key = derived_routing_key(Path::new("some/file.txt"), 7);
        assert!(key.starts_with("file:/"), "{key}");
        assert!(key.ends_with("some/file.txt:7"), "{key}");
    }

    #[test]
    fn size_is_part_of_the_key() {
        let path = Path::new("/x/y.pdf");
        assert_ne!(derived_routing_key(path, 1), derived_routing_key(path, 2));
    }
}
