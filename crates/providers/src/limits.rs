//! Per-provider, per-purpose upload limits, checked before a byte is sent.
//!
//! Sizes are in binary megabytes (1 MB = 1,048,576 bytes): the providers write "100MB" without
//! saying which unit. If a provider counts in decimal megabytes, a file between the two readings
//! is refused by the provider itself (HTTP 435 or a 400 "too large"), which [`crate::parse_error`]
//! classifies as [`ErrorKind::TooLarge`] as well.

use crate::error::{ErrorKind, ProviderError};
use crate::kind::ProviderKind;
use crate::model::UploadMeta;

/// One binary megabyte.
pub const MB: u64 = 1024 * 1024;

/// The limit for one purpose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurposeLimit {
    /// The purpose name as sent in the `purpose` form field.
    pub purpose: String,
    /// Largest accepted file, in bytes.
    pub max_bytes: u64,
    /// A smaller cap for image files (by extension), when the provider documents one.
    pub image_max_bytes: Option<u64>,
    /// Where the documentation disagrees with itself or is silent, and which reading is used.
    pub note: Option<&'static str>,
}

impl PurposeLimit {
    /// A purpose with a single size cap.
    pub fn new(purpose: impl Into<String>, max_bytes: u64) -> Self {
        PurposeLimit {
            purpose: purpose.into(),
            max_bytes,
            image_max_bytes: None,
            note: None,
        }
    }
}

/// The allowed purposes of one client and their limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    purposes: Vec<PurposeLimit>,
}

/// File extensions GLM counts as images for its 5 MB file-extract image cap.
const IMAGE_EXTENSIONS: [&str; 6] = ["png", "jpg", "jpeg", "gif", "webp", "bmp"];

/// OpenAI documents 512 MB per file; used for OpenAI-compatible clients unless overridden.
pub const OPENAI_DEFAULT_MAX_BYTES: u64 = 512 * MB;

impl Limits {
    /// A table from explicit per-purpose limits.
    pub fn new(purposes: Vec<PurposeLimit>) -> Self {
        Limits { purposes }
    }

    /// The documented table for a provider. Kimi: 100 MB for `file-extract`, `image`, `video`
    /// and `batch` (the last listed by one mirror only). GLM: `batch` 100 MB; `file-extract` 50 MB,
    /// images 5 MB; `code-interpreter` 20 MB; `agent` 100 MB (the purpose table says 20 MB, one
    /// agent page 100 MB: the contract says to accept either reading, so the client refuses only what
    /// both readings refuse and leaves the rest to the provider); `voice-clone-input` and `retrieval` have no documented per-purpose
    /// size, so the general GLM cap behind HTTP 435 (100 MB) applies. OpenAI-compatible clients
    /// start with `file-extract`, `batch`, `assistants` and `user_data` at 512 MB; callers
    /// normally pass their own purposes.
    pub fn for_provider(kind: ProviderKind) -> Self {
        let purposes = match kind {
            ProviderKind::Kimi => ["file-extract", "image", "video", "batch"]
                .into_iter()
                .map(|p| PurposeLimit::new(p, 100 * MB))
                .collect(),
            ProviderKind::Glm => vec![
                PurposeLimit::new("batch", 100 * MB),
                PurposeLimit {
                    purpose: "file-extract".into(),
                    max_bytes: 50 * MB,
                    image_max_bytes: Some(5 * MB),
                    note: None,
                },
                PurposeLimit::new("code-interpreter", 20 * MB),
                PurposeLimit {
                    purpose: "agent".into(),
                    max_bytes: 100 * MB,
                    image_max_bytes: None,
                    note: Some(
                        "the purpose table says 20 MB, one agent page says 100 MB; both readings are accepted",
                    ),
                },
                PurposeLimit {
                    purpose: "voice-clone-input".into(),
                    max_bytes: 100 * MB,
                    image_max_bytes: None,
                    note: Some("no documented size; the general 100 MB cap (HTTP 435) is used"),
                },
                PurposeLimit {
                    purpose: "retrieval".into(),
                    max_bytes: 100 * MB,
                    image_max_bytes: None,
                    note: Some(
                        "appears only in SDK examples; the general 100 MB cap (HTTP 435) is used",
                    ),
                },
            ],
            ProviderKind::OpenAi => ["file-extract", "batch", "assistants", "user_data"]
                .into_iter()
                .map(|p| PurposeLimit::new(p, OPENAI_DEFAULT_MAX_BYTES))
                .collect(),
        };
        Limits { purposes }
    }

    /// The allowed purposes, in table order.
    pub fn purposes(&self) -> impl Iterator<Item = &str> {
        self.purposes.iter().map(|p| p.purpose.as_str())
    }

    /// The limit for `purpose`, if it is allowed.
    pub fn get(&self, purpose: &str) -> Option<&PurposeLimit> {
        self.purposes.iter().find(|p| p.purpose == purpose)
    }

    /// The effective byte cap for a file of this name and purpose, if the purpose is allowed.
    pub fn max_bytes(&self, purpose: &str, filename: &str) -> Option<u64> {
        let limit = self.get(purpose)?;
        Some(match limit.image_max_bytes {
            Some(image_cap) if is_image(filename) => image_cap.min(limit.max_bytes),
            _ => limit.max_bytes,
        })
    }

    /// Checks an upload against the table: the purpose must be allowed, the file non-empty and
    /// within the cap, the filename non-empty. Errors are marked `rejected_before_send`.
    pub fn check(&self, provider: ProviderKind, meta: &UploadMeta) -> Result<(), ProviderError> {
        let reject = |kind, message: String| Err(ProviderError::rejected(provider, kind, message));
        if meta.filename.trim().is_empty() {
            return reject(ErrorKind::InvalidRequest, "file name is empty".to_owned());
        }
        let Some(max) = self.max_bytes(&meta.purpose, &meta.filename) else {
            let allowed: Vec<&str> = self.purposes().collect();
            return reject(
                ErrorKind::InvalidRequest,
                format!(
                    "purpose {:?} is not accepted (allowed: {})",
                    meta.purpose,
                    allowed.join(", ")
                ),
            );
        };
        if meta.length == 0 {
            return reject(
                ErrorKind::InvalidRequest,
                format!(
                    "file {:?} is empty (zero-byte files are rejected)",
                    meta.filename
                ),
            );
        }
        if meta.length > max {
            return reject(
                ErrorKind::TooLarge,
                format!(
                    "file {:?} is {} bytes, over the {} byte ({}) limit for purpose {}",
                    meta.filename,
                    meta.length,
                    max,
                    human(max),
                    meta.purpose
                ),
            );
        }
        Ok(())
    }
}

fn is_image(filename: &str) -> bool {
    filename
        .rsplit_once('.')
        .map(|(_, ext)| IMAGE_EXTENSIONS.iter().any(|i| i.eq_ignore_ascii_case(ext)))
        .unwrap_or(false)
}

fn human(bytes: u64) -> String {
    if bytes % MB == 0 {
        format!("{} MB", bytes / MB)
    } else {
        format!("{bytes} B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(purpose: &str, filename: &str, length: u64) -> UploadMeta {
        UploadMeta {
            filename: filename.into(),
            purpose: purpose.into(),
            length,
        }
    }

    #[test]
    fn kimi_caps_every_purpose_at_100_mb() {
        let limits = Limits::for_provider(ProviderKind::Kimi);
        for purpose in ["file-extract", "image", "video", "batch"] {
            assert!(limits
                .check(ProviderKind::Kimi, &meta(purpose, "a.pdf", 100 * MB))
                .is_ok());
            let err = limits.check(ProviderKind::Kimi, &meta(purpose, "a.pdf", 100 * MB + 1));
            assert_eq!(
                err.map_err(|e| (e.kind, e.rejected_before_send)),
                Err((ErrorKind::TooLarge, true))
            );
        }
        let err = limits.check(ProviderKind::Kimi, &meta("agent", "a.pdf", 1));
        assert_eq!(err.map_err(|e| e.kind), Err(ErrorKind::InvalidRequest));
    }

    #[test]
    fn glm_caps_per_purpose_and_images_by_extension() {
        let limits = Limits::for_provider(ProviderKind::Glm);
        let cases = [
            ("batch", "a.jsonl", 100 * MB),
            ("file-extract", "a.pdf", 50 * MB),
            ("file-extract", "a.PNG", 5 * MB),
            ("file-extract", "a.jpg", 5 * MB),
            ("code-interpreter", "a.csv", 20 * MB),
            ("agent", "a.txt", 100 * MB),
            ("voice-clone-input", "a.mp3", 100 * MB),
            ("retrieval", "a.txt", 100 * MB),
        ];
        for (purpose, name, cap) in cases {
            assert_eq!(
                limits.max_bytes(purpose, name),
                Some(cap),
                "{purpose} {name}"
            );
            assert!(limits
                .check(ProviderKind::Glm, &meta(purpose, name, cap))
                .is_ok());
            assert!(limits
                .check(ProviderKind::Glm, &meta(purpose, name, cap + 1))
                .is_err());
        }
        assert!(limits.get("image").is_none());
    }

    #[test]
    fn zero_bytes_and_empty_names_are_rejected_locally() {
        let limits = Limits::for_provider(ProviderKind::Glm);
        let zero = limits.check(ProviderKind::Glm, &meta("batch", "a.jsonl", 0));
        assert!(zero
            .as_ref()
            .is_err_and(|e| e.is_local() && e.kind == ErrorKind::InvalidRequest));
        let unnamed = limits.check(ProviderKind::Glm, &meta("batch", " ", 10));
        assert!(unnamed.is_err_and(|e| e.is_local()));
    }

    #[test]
    fn too_large_message_names_file_size_and_limit() {
        let limits = Limits::for_provider(ProviderKind::Kimi);
        let err = limits.check(
            ProviderKind::Kimi,
            &meta("file-extract", "big.bin", 300 * MB),
        );
        let text = err.err().map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(
            text,
            "kimi: rejected before send: too_large: file \"big.bin\" is 314572800 bytes, over the \
             104857600 byte (100 MB) limit for purpose file-extract"
        );
    }
}
