//! The routing key of a request that did not bring one.

use std::path::Path;

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
