//! What a successful upload returns.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Serialize, Serializer};
use upramp_providers::FileObject;
use upramp_telemetry::{Outcome, UploadPath};

/// How a request's path was chosen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Routing {
    /// `"async"` or `"sync"`: the path the request started on.
    pub decided: &'static str,
    /// Why: the flag's reason (`disabled`, `out_of_rollout`, `in_rollout`), or `forced` for
    /// [`Uploader::upload_on`](crate::Uploader::upload_on).
    pub reason: &'static str,
    /// The routing key's bucket, when the flag was evaluated.
    pub bucket: Option<u32>,
    /// True when the key was derived from the file (see [`derived_routing_key`](crate::derived_routing_key)).
    pub key_derived: bool,
}

/// Proof of one successful upload: exactly one stored file at the provider.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Receipt {
    /// The local file that was uploaded.
    pub source: PathBuf,
    /// The provider's file object (its `id` names the stored file).
    pub file: FileObject,
    /// The file name the request asked for (its own, or the path's last component).
    pub filename: String,
    /// The name the file was stored under: `filename` with this request's unique marker before
    /// the extension (`report.txt` -> `report.u7f3a9c2d1e4b5a60.txt`), or `filename` itself when
    /// unique stored names are off (see [`UploaderBuilder::unique_stored_names`](crate::UploaderBuilder::unique_stored_names)).
    pub stored_filename: String,
    /// The provider's name (`kimi`, `glm`, `openai`).
    pub provider: String,
    /// The path of the leg that succeeded.
    pub path: UploadPath,
    /// HTTP upload attempts, all legs together (an adopted file counts the attempt that stored it).
    pub attempts: u32,
    /// The file's size.
    pub bytes: u64,
    /// Lower-case hex SHA-256 of the bytes sent, computed while sending.
    pub sha256: String,
    /// Time the request worked: from each leg acquiring its path's concurrency slot to the leg's
    /// end, summed over its legs (retries, backoff and fallback included; waits for a slot not).
    #[serde(rename = "duration_ms", serialize_with = "millis")]
    pub duration: Duration,
    /// Time the request waited for its paths' concurrency slots, summed over its legs.
    #[serde(rename = "queue_ms", serialize_with = "millis")]
    pub queue: Duration,
    /// When the request fell back to the sync path: the async leg's failing outcome.
    pub fallback_reason: Option<Outcome>,
    /// How the path was chosen.
    pub routing: Routing,
    /// True when no answer came for the attempt that stored the file and the uploader found it in
    /// the provider's list (by its unique stored name and size) and adopted it instead of sending
    /// it again.
    pub adopted: bool,
}

impl Receipt {
    /// The provider's id of the stored file.
    pub fn id(&self) -> &str {
        &self.file.id
    }
}

fn millis<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    // Whole microseconds keep the JSON stable and readable (`12.345` ms).
    serializer.serialize_f64(duration.as_micros() as f64 / 1_000.0)
}
