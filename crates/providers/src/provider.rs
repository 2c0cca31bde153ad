//! The traits the uploader programs against; tests substitute doubles for them.

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::ProviderError;
use crate::kind::ProviderKind;
use crate::model::{Deleted, FileList, FileObject, ListQuery, UploadBody, UploadMeta};
use crate::request::RequestOptions;

/// An async file API (the streaming path).
#[async_trait]
pub trait FileProvider: Send + Sync {
    /// Which provider this is.
    fn kind(&self) -> ProviderKind;

    /// A display name (by default the provider kind's name).
    fn name(&self) -> &str;

    /// Checks purpose and size limits without sending anything; errors are `rejected_before_send`.
    fn check_upload(&self, meta: &UploadMeta) -> Result<(), ProviderError>;

    /// Uploads a file with per-call options. Implementations call [`FileProvider::check_upload`]
    /// first, so a limit violation never sends a byte.
    async fn upload_with(
        &self,
        meta: UploadMeta,
        body: UploadBody,
        options: &RequestOptions,
    ) -> Result<FileObject, ProviderError>;

    /// Uploads a file with default options.
    async fn upload(
        &self,
        meta: UploadMeta,
        body: UploadBody,
    ) -> Result<FileObject, ProviderError> {
        self.upload_with(meta, body, &RequestOptions::default())
            .await
    }

    /// Describes one stored file.
    async fn retrieve(&self, id: &str) -> Result<FileObject, ProviderError>;

    /// The file's content as the provider serves it (Kimi: extracted text; GLM: JSON or bytes).
    async fn content(&self, id: &str) -> Result<Bytes, ProviderError>;

    /// Deletes a stored file.
    async fn delete(&self, id: &str) -> Result<Deleted, ProviderError>;

    /// Lists stored files.
    async fn list(&self, query: &ListQuery) -> Result<FileList, ProviderError>;
}

/// A blocking file API (the legacy sync path). Call it from a thread where blocking is allowed
/// (a plain thread or `tokio::task::spawn_blocking`), never from an async task.
pub trait BlockingFileProvider: Send + Sync {
    /// Which provider this is.
    fn kind(&self) -> ProviderKind;

    /// A display name (by default the provider kind's name).
    fn name(&self) -> &str;

    /// Checks purpose and size limits without sending anything; errors are `rejected_before_send`.
    fn check_upload(&self, meta: &UploadMeta) -> Result<(), ProviderError>;

    /// Uploads a file held in memory, with per-call options; checks limits first.
    fn upload_with(
        &self,
        meta: UploadMeta,
        body: Bytes,
        options: &RequestOptions,
    ) -> Result<FileObject, ProviderError>;

    /// Uploads a file held in memory with default options.
    fn upload(&self, meta: UploadMeta, body: Bytes) -> Result<FileObject, ProviderError> {
        self.upload_with(meta, body, &RequestOptions::default())
    }

    /// Describes one stored file.
    fn retrieve(&self, id: &str) -> Result<FileObject, ProviderError>;

    /// The file's content as the provider serves it.
    fn content(&self, id: &str) -> Result<Bytes, ProviderError>;

    /// Deletes a stored file.
    fn delete(&self, id: &str) -> Result<Deleted, ProviderError>;

    /// Lists stored files.
    fn list(&self, query: &ListQuery) -> Result<FileList, ProviderError>;
}
