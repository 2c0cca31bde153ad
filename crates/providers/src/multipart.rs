//! The multipart/form-data body of an upload, built as two fixed byte strings (before and after
//! the file) so its total length is known before the file is read and the file itself can stream.
//!
//! Field encoding follows RFC 7578 section 4.2: the part headers stay US-ASCII, and a file name
//! is percent-encoded (as in a `file:` URI) wherever it has a byte that is not printable ASCII or
//! that is `"`, `\` or `%`. A name with quotes or CR/LF therefore can never end the parameter or
//! the header line. `filename*` is not used: RFC 7578 forbids it.

use bytes::{BufMut, Bytes, BytesMut};
use percent_encoding::{AsciiSet, CONTROLS};
use rand::Rng;

use crate::error::ConfigError;

/// Bytes of a file name that are percent-encoded: controls (CR, LF, ...), non-ASCII, and the
/// three characters that could end or confuse a quoted-string or a later decode.
const FILENAME_ESCAPES: &AsciiSet = &CONTROLS.add(b'"').add(b'\\').add(b'%');

/// A multipart boundary: 1-70 RFC 2046 `bchars`, not ending in a space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Boundary(String);

impl Boundary {
    /// Validates a caller-chosen boundary (tests use fixed ones).
    pub fn new(boundary: impl Into<String>) -> Result<Self, ConfigError> {
        let boundary = boundary.into();
        let valid_char = |b: u8| b.is_ascii_alphanumeric() || b"'()+_,-./:=?".contains(&b);
        if boundary.is_empty() || boundary.len() > 70 || !boundary.bytes().all(valid_char) {
            return Err(ConfigError::InvalidBoundary(boundary));
        }
        Ok(Boundary(boundary))
    }

    /// A fresh random boundary: `upramp-` and 32 alphanumerics, so it will not occur in a file.
    pub fn random() -> Self {
        let mut rng = rand::thread_rng();
        let suffix: String = (0..32)
            .map(|_| char::from(rng.sample(rand::distributions::Alphanumeric)))
            .collect();
        Boundary(format!("upramp-{suffix}"))
    }

    /// The boundary text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Encodes a file name for the `filename` parameter (see the module docs).
pub fn encode_filename(filename: &str) -> String {
    percent_encoding::utf8_percent_encode(filename, FILENAME_ESCAPES).to_string()
}

/// The bytes around the file in an upload body: `prefix`, then exactly `file_len` file bytes,
/// then `suffix`. The `purpose` part comes first so a streaming server knows it before the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultipartLayout {
    boundary: Boundary,
    prefix: Bytes,
    suffix: Bytes,
    file_len: u64,
}

impl MultipartLayout {
    /// Lays out a body with fields `purpose` and `file` for a file of `file_len` bytes.
    /// `purpose` must be printable ASCII without spaces (checked; it is a form value).
    pub fn new(
        boundary: Boundary,
        filename: &str,
        purpose: &str,
        file_len: u64,
    ) -> Result<Self, ConfigError> {
        if purpose.is_empty() || !purpose.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ConfigError::InvalidPurpose(purpose.to_owned()));
        }
        let b = boundary.as_str();
        let mut prefix = BytesMut::new();
        prefix.put_slice(format!("--{b}\r\n").as_bytes());
        prefix.put_slice(b"Content-Disposition: form-data; name=\"purpose\"\r\n\r\n");
        prefix.put_slice(purpose.as_bytes());
        prefix.put_slice(format!("\r\n--{b}\r\n").as_bytes());
        prefix.put_slice(
            format!(
                "Content-Disposition: form-data; name=\"file\"; filename=\"{}\"\r\n",
                encode_filename(filename)
            )
            .as_bytes(),
        );
        prefix.put_slice(b"Content-Type: application/octet-stream\r\n\r\n");
        let suffix = Bytes::from(format!("\r\n--{b}--\r\n"));
        Ok(MultipartLayout {
            boundary,
            prefix: prefix.freeze(),
            suffix,
            file_len,
        })
    }

    /// The `Content-Type` header value, naming the boundary.
    pub fn content_type(&self) -> String {
        format!("multipart/form-data; boundary={}", self.boundary.as_str())
    }

    /// The exact total body length: the `Content-Length` to send.
    pub fn content_length(&self) -> u64 {
        self.prefix.len() as u64 + self.file_len + self.suffix.len() as u64
    }

    /// The bytes before the file.
    pub fn prefix(&self) -> &Bytes {
        &self.prefix
    }

    /// The bytes after the file.
    pub fn suffix(&self) -> &Bytes {
        &self.suffix
    }

    /// The file length the layout was built for.
    pub fn file_len(&self) -> u64 {
        self.file_len
    }

    /// The boundary.
    pub fn boundary(&self) -> &Boundary {
        &self.boundary
    }

    /// The whole body for an in-memory file (copies it; for tests and small files).
    pub fn assemble(&self, file: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.prefix.len() + file.len() + self.suffix.len());
        out.extend_from_slice(&self.prefix);
        out.extend_from_slice(file);
        out.extend_from_slice(&self.suffix);
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn boundaries_are_validated() {
        assert!(Boundary::new("abc-123").is_ok());
        assert!(Boundary::new("").is_err());
        assert!(Boundary::new("a\r\nb").is_err());
        assert!(Boundary::new("x".repeat(71)).is_err());
        let random = Boundary::random();
        assert_eq!(random.as_str().len(), 39);
        assert!(Boundary::new(random.as_str()).is_ok());
    }

    #[test]
    fn filenames_cannot_break_out_of_the_header() {
        assert_eq!(encode_filename("report.pdf"), "report.pdf");
        assert_eq!(encode_filename("a\"b.txt"), "a%22b.txt");
        assert_eq!(
            encode_filename("a\r\nX-Evil: 1.txt"),
            "a%0D%0AX-Evil: 1.txt"
        );
        assert_eq!(encode_filename("报告.pdf"), "%E6%8A%A5%E5%91%8A.pdf");
        assert_eq!(encode_filename("100%\\x"), "100%25%5Cx");
    }

    #[test]
    fn bad_purpose_is_refused() {
        let b = Boundary::new("b").unwrap();
        assert!(MultipartLayout::new(b.clone(), "f", "file extract", 1).is_err());
        assert!(MultipartLayout::new(b.clone(), "f", "x\r\n--b", 1).is_err());
        assert!(MultipartLayout::new(b, "f", "", 1).is_err());
    }
}
