//! The no-work receiver's view of an upload body: only its first and last few KiB are kept, and
//! the form's fields (file name, purpose, file size) are found there, so receiving costs no
//! per-byte work beyond the socket reads. The bench worker runs the receiver; the library holds it
//! so that its parsing is tested in one place.

/// Bytes kept from each end of a body: room for every part header and the small `purpose`
/// field, before and after the file.
const KEPT: usize = 8 * 1024;

/// The first and last [`KEPT`] bytes of a body and its total length.
#[derive(Debug, Default)]
pub struct BodyEnds {
    head: Vec<u8>,
    tail: Vec<u8>,
    total: u64,
}

/// The fields of a `purpose` + `file` form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Form {
    /// The file part's `filename`.
    pub filename: String,
    /// The `purpose` field's value.
    pub purpose: String,
    /// Bytes of the file part's content.
    pub file_bytes: u64,
}

impl BodyEnds {
    /// Nothing received yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Account for the next piece of the body, keeping only the ends.
    pub fn push(&mut self, bytes: &[u8]) {
        self.total += bytes.len() as u64;
        if self.head.len() < KEPT {
            let take = bytes.len().min(KEPT - self.head.len());
            self.head.extend_from_slice(&bytes[..take]);
        }
        if bytes.len() >= KEPT {
            self.tail.clear();
            self.tail.extend_from_slice(&bytes[bytes.len() - KEPT..]);
        } else {
            let keep = KEPT - bytes.len();
            if self.tail.len() > keep {
                self.tail.drain(..self.tail.len() - keep);
            }
            self.tail.extend_from_slice(bytes);
        }
    }

    /// The form's fields, assuming (as every upload has) that only the file part is too long to
    /// fit in the kept ends and that the random boundary does not occur in the file.
    pub fn form(&self, boundary: &str) -> Result<Form, String> {
        let delimiter = format!("\r\n--{boundary}");
        let tail_start = self.total - self.tail.len() as u64;
        let mut filename = None;
        let mut purpose = None;
        let mut file_bytes = None;
        // Parts start after "--boundary\r\n" at offset 0 and after each delimiter.
        let first = format!("--{boundary}\r\n");
        if !self.head.starts_with(first.as_bytes()) {
            return Err("the body does not start with the boundary".to_owned());
        }
        let mut part_start = first.len() as u64;
        loop {
            let window = self.window_at(part_start, tail_start);
            let Some(header_end) = find(window, b"\r\n\r\n") else {
                return Err("a part header was cut or unterminated".to_owned());
            };
            let header = String::from_utf8_lossy(&window[..header_end]).into_owned();
            let content_start = part_start + header_end as u64 + 4;
            let name = parameter(&header, "name");
            // The content ends at the next delimiter: in this window for a small part, else in
            // the tail (the file's bytes are never looked at).
            let after = &window[header_end + 4..];
            let content_end = match find(after, delimiter.as_bytes()) {
                Some(at) => content_start + at as u64,
                None => {
                    let from = content_start.saturating_sub(tail_start) as usize;
                    let at = find(self.tail.get(from..).unwrap_or(&[]), delimiter.as_bytes())
                        .ok_or("a part does not end with the boundary")?;
                    tail_start + (from + at) as u64
                }
            };
            match name.as_deref() {
                Some("file") => {
                    filename = parameter(&header, "filename");
                    file_bytes = Some(content_end - content_start);
                }
                Some("purpose") => {
                    let text = self.window_at(content_start, tail_start);
                    let len = (content_end - content_start) as usize;
                    purpose = Some(String::from_utf8_lossy(&text[..len]).into_owned());
                }
                _ => {}
            }
            let next = content_end + delimiter.len() as u64;
            let rest = self.window_at(next, tail_start);
            if rest.starts_with(b"--") {
                break;
            }
            if !rest.starts_with(b"\r\n") {
                return Err("a delimiter is not followed by CRLF".to_owned());
            }
            part_start = next + 2;
        }
        match (filename, purpose, file_bytes) {
            (Some(filename), Some(purpose), Some(file_bytes)) => Ok(Form {
                filename,
                purpose,
                file_bytes,
            }),
            _ => Err("file and purpose are required".to_owned()),
        }
    }

    /// The kept bytes from absolute offset `at` on: from the tail when `at` is in it (the tail
    /// runs to the body's end), else from the head, else nothing (`at` is in the dropped middle).
    fn window_at(&self, at: u64, tail_start: u64) -> &[u8] {
        if at >= tail_start {
            return self.tail.get((at - tail_start) as usize..).unwrap_or(&[]);
        }
        self.head.get(at as usize..).unwrap_or(&[])
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// `name="value"` from a Content-Disposition header block.
fn parameter(header: &str, name: &str) -> Option<String> {
    let key = format!("; {name}=\"");
    let start = header.find(&key)? + key.len();
    let end = header[start..].find('"')?;
    Some(header[start..start + end].to_owned())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn body(boundary: &str, file: &[u8], purpose_first: bool) -> Vec<u8> {
        let purpose = format!(
            "Content-Disposition: form-data; name=\"purpose\"\r\n\r\nfile-extract\r\n--{boundary}"
        );
        let file_head = "Content-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\nContent-Type: application/octet-stream\r\n\r\n";
        let mut out = format!("--{boundary}\r\n").into_bytes();
        if purpose_first {
            out.extend_from_slice(purpose.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(file_head.as_bytes());
        out.extend_from_slice(file);
        out.extend_from_slice(format!("\r\n--{boundary}").as_bytes());
        if !purpose_first {
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(purpose.as_bytes());
        }
        out.extend_from_slice(b"--\r\n");
        out
    }

    #[test]
    fn fields_are_found_at_both_ends_whatever_the_order_and_size() {
        for size in [1usize, 100, 8_000, 9_000, 20_000, 300_000] {
            let file: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            for purpose_first in [true, false] {
                let whole = body("b0und", &file, purpose_first);
                for piece in [7usize, 4096, 65_536] {
                    let mut ends = BodyEnds::new();
                    whole.chunks(piece).for_each(|c| ends.push(c));
                    let form = ends.form("b0und").unwrap();
                    assert_eq!(
                        form,
                        Form {
                            filename: "a.txt".to_owned(),
                            purpose: "file-extract".to_owned(),
                            file_bytes: size as u64,
                        },
                        "size {size}, purpose first {purpose_first}, pieces of {piece}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_body_without_the_boundary_or_a_field_is_refused() {
        let mut ends = BodyEnds::new();
        ends.push(b"not a form");
        assert!(ends.form("b0und").is_err());
        let mut ends = BodyEnds::new();
        ends.push(b"--b0und\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\"\r\n\r\nxyz\r\n--b0und--\r\n");
        assert_eq!(
            ends.form("b0und").unwrap_err(),
            "file and purpose are required"
        );
    }
}
