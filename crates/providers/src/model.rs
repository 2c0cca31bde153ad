//! Request inputs and response objects, and the pure parsers for success bodies.

use std::fmt;

use bytes::Bytes;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{ErrorKind, ProviderError};
use crate::kind::ProviderKind;

/// What the provider needs to know about a file before its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadMeta {
    /// The file name sent in the multipart `filename` parameter (encoded safely there).
    pub filename: String,
    /// The purpose form field (`file-extract`, `batch`, ...).
    pub purpose: String,
    /// The exact file length in bytes; the body must yield exactly this many.
    pub length: u64,
}

/// An upload body: a stream of chunks with a known total length (the async path), or bytes
/// already in memory (the legacy sync path).
pub enum UploadBody {
    /// Chunks read lazily; `length` must equal the sum of the chunk lengths.
    Stream {
        /// The chunks.
        stream: BoxStream<'static, Result<Bytes, std::io::Error>>,
        /// Their total length.
        length: u64,
    },
    /// The whole file in memory.
    Bytes(Bytes),
}

impl UploadBody {
    /// The declared body length in bytes.
    pub fn len(&self) -> u64 {
        match self {
            UploadBody::Stream { length, .. } => *length,
            UploadBody::Bytes(bytes) => bytes.len() as u64,
        }
    }

    /// True for a zero-length body.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Debug for UploadBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UploadBody::Stream { length, .. } => {
                f.debug_struct("Stream").field("length", length).finish()
            }
            UploadBody::Bytes(bytes) => f
                .debug_struct("Bytes")
                .field("length", &bytes.len())
                .finish(),
        }
    }
}

impl From<Bytes> for UploadBody {
    fn from(bytes: Bytes) -> Self {
        UploadBody::Bytes(bytes)
    }
}

/// A stored file as the provider describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileObject {
    /// The provider's file id.
    pub id: String,
    /// The object type, normally `"file"`.
    pub object: String,
    /// The stored size in bytes.
    pub bytes: u64,
    /// Creation time, Unix seconds (0 when the provider omitted it).
    pub created_at: i64,
    /// The stored file name.
    pub filename: String,
    /// The purpose; one Kimi variant omits it.
    pub purpose: Option<String>,
    /// Processing status as an open string (Kimi says `"ok"` in one doc, `"ready"` in another).
    pub status: Option<String>,
    /// Provider-specific status details, kept verbatim.
    pub status_details: Option<Value>,
}

/// One page of stored files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileList {
    /// The files on this page.
    pub data: Vec<FileObject>,
    /// Whether more pages follow (GLM); Kimi does not paginate, so `false` there.
    pub has_more: bool,
}

/// Filters for listing files; GLM honours all of them, Kimi ignores them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListQuery {
    /// Only files with this purpose.
    pub purpose: Option<String>,
    /// Cursor: the id after which to start.
    pub after: Option<String>,
    /// `asc` or `desc` by creation time.
    pub order: Option<String>,
    /// Page size, 1-100 (GLM).
    pub limit: Option<u32>,
}

impl ListQuery {
    /// The query pairs to send, in a stable order, skipping unset fields.
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = Vec::new();
        if let Some(purpose) = &self.purpose {
            pairs.push(("purpose", purpose.clone()));
        }
        if let Some(after) = &self.after {
            pairs.push(("after", after.clone()));
        }
        if let Some(order) = &self.order {
            pairs.push(("order", order.clone()));
        }
        if let Some(limit) = self.limit {
            pairs.push(("limit", limit.to_string()));
        }
        pairs
    }
}

/// The answer to a delete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deleted {
    /// The deleted file's id.
    pub id: String,
    /// Whether the provider says it deleted the file.
    pub deleted: bool,
}

fn malformed(provider: ProviderKind, status: u16, what: &str) -> ProviderError {
    ProviderError {
        status: Some(status),
        ..ProviderError::without_response(provider, ErrorKind::MalformedResponse, what.to_owned())
    }
}

fn json_object(provider: ProviderKind, status: u16, body: &[u8]) -> Result<Value, ProviderError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        malformed(
            provider,
            status,
            &format!("response body is not JSON ({e})"),
        )
    })?;
    if !value.is_object() {
        return Err(malformed(
            provider,
            status,
            "response body is not a JSON object",
        ));
    }
    Ok(value)
}

/// Reads a file object, accepting both documented readings: fields at the top level, or (GLM
/// client code) nested under `data`. Top-level fields win; missing ones are taken from `data`.
fn file_from_value(
    provider: ProviderKind,
    status: u16,
    value: &Value,
) -> Result<FileObject, ProviderError> {
    let nested = value.get("data").filter(|d| d.is_object());
    let field = |name: &str| -> Option<&Value> {
        value
            .get(name)
            .filter(|v| !v.is_null())
            .or_else(|| nested.and_then(|d| d.get(name)).filter(|v| !v.is_null()))
    };
    let text = |name: &str| field(name).and_then(Value::as_str).map(str::to_owned);
    let id = text("id").filter(|id| !id.is_empty()).ok_or_else(|| {
        malformed(
            provider,
            status,
            "file object has no \"id\" (nor \"data.id\")",
        )
    })?;
    let bytes = field("bytes")
        .and_then(|v| {
            v.as_u64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        })
        .ok_or_else(|| malformed(provider, status, "file object has no numeric \"bytes\""))?;
    let created_at = field("created_at")
        .and_then(|v| v.as_i64().or_else(|| v.as_f64().map(|f| f as i64)))
        .unwrap_or(0);
    Ok(FileObject {
        id,
        object: text("object").unwrap_or_else(|| "file".to_owned()),
        bytes,
        created_at,
        filename: text("filename").unwrap_or_default(),
        purpose: text("purpose"),
        status: text("status"),
        status_details: field("status_details").cloned(),
    })
}

/// Parses an upload or retrieve answer (`status` is the 2xx status, kept on errors).
pub fn parse_file_object(
    provider: ProviderKind,
    status: u16,
    body: &[u8],
) -> Result<FileObject, ProviderError> {
    let value = json_object(provider, status, body)?;
    file_from_value(provider, status, &value)
}

/// Parses a list answer: `{"object":"list","data":[...]}` with an optional `has_more`.
pub fn parse_file_list(
    provider: ProviderKind,
    status: u16,
    body: &[u8],
) -> Result<FileList, ProviderError> {
    let value = json_object(provider, status, body)?;
    let items = value
        .get("data")
        .and_then(Value::as_array)
        .ok_or_else(|| malformed(provider, status, "list answer has no \"data\" array"))?;
    let data = items
        .iter()
        .map(|item| file_from_value(provider, status, item))
        .collect::<Result<Vec<_>, _>>()?;
    let has_more = value
        .get("has_more")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    Ok(FileList { data, has_more })
}

/// Parses a delete answer; an answer without an id is taken to be about `requested_id`.
pub fn parse_deleted(
    provider: ProviderKind,
    status: u16,
    body: &[u8],
    requested_id: &str,
) -> Result<Deleted, ProviderError> {
    let value = json_object(provider, status, body)?;
    let deleted = value
        .get("deleted")
        .and_then(Value::as_bool)
        .ok_or_else(|| malformed(provider, status, "delete answer has no boolean \"deleted\""))?;
    let id = value
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or(requested_id)
        .to_owned();
    Ok(Deleted { id, deleted })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn upload_body_reports_its_length() {
        assert_eq!(UploadBody::Bytes(Bytes::from_static(b"abc")).len(), 3);
        let stream = UploadBody::Stream {
            stream: Box::pin(futures::stream::empty()),
            length: 7,
        };
        assert_eq!(stream.len(), 7);
        assert_eq!(format!("{stream:?}"), "Stream { length: 7 }");
    }

    #[test]
    fn list_query_pairs_skip_unset_fields() {
        let q = ListQuery {
            purpose: Some("batch".into()),
            limit: Some(5),
            ..ListQuery::default()
        };
        assert_eq!(
            q.pairs(),
            vec![("purpose", "batch".to_owned()), ("limit", "5".to_owned())]
        );
    }

    #[test]
    fn delete_without_id_uses_requested_id() {
        let d = parse_deleted(ProviderKind::Glm, 200, br#"{"deleted":true}"#, "file-1").unwrap();
        assert_eq!(
            d,
            Deleted {
                id: "file-1".into(),
                deleted: true
            }
        );
        assert!(parse_deleted(ProviderKind::Glm, 200, br#"{"id":"x"}"#, "x").is_err());
    }
}
