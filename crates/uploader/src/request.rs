//! What a caller asks for: one file to upload, and an optional forced path.

use std::path::{Path, PathBuf};

/// One file to upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadRequest {
    /// The local file.
    pub path: PathBuf,
    /// The provider purpose (`file-extract`, `batch`, ...).
    pub purpose: String,
    /// The stickiness key the flag buckets (tenant, user or request id). `None` uses
    /// [`derived_routing_key`](crate::derived_routing_key) of the file's path and size.
    pub routing_key: Option<String>,
    /// The file name asked for at the provider; `None` uses the path's last component. It is
    /// stored with this request's unique marker unless unique stored names are off
    /// ([`UploaderBuilder::unique_stored_names`](crate::UploaderBuilder::unique_stored_names)).
    pub filename: Option<String>,
}

impl UploadRequest {
    /// A request for `path` with `purpose`, no routing key and the path's own file name.
    pub fn new(path: impl Into<PathBuf>, purpose: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            purpose: purpose.into(),
            routing_key: None,
            filename: None,
        }
    }

    /// Set the routing key.
    #[must_use]
    pub fn routing_key(mut self, key: impl Into<String>) -> Self {
        self.routing_key = Some(key.into());
        self
    }

    /// Set the file name asked for at the provider.
    #[must_use]
    pub fn filename(mut self, filename: impl Into<String>) -> Self {
        self.filename = Some(filename.into());
        self
    }

    /// The file name asked for: [`UploadRequest::filename`] or the path's last component.
    pub(crate) fn requested_name(&self) -> String {
        match &self.filename {
            Some(name) => name.clone(),
            None => file_name_of(&self.path),
        }
    }
}

fn file_name_of(path: &Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}
