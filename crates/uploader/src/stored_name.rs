//! The unique stored name that lets a request recognise its own file in the provider's list.
//!
//! Neither provider takes an idempotency key or reports a content hash, so after an ambiguous
//! failure the file list is the only evidence of what arrived, and a name and a size are all it
//! shows. Two requests (in one process, or on two hosts) uploading different `report.txt` files
//! of the same size look identical there. So each request stores its file under its own name:
//! the requested name with a marker of 64 random bits before the extension
//! (`report.txt` -> `report.u7f3a9c2d1e4b5a60.txt`), the extension kept so the provider's type
//! checks see what the caller sent. A listed file with that exact name can only come from one of
//! this request's own attempts.
//!
//! The bits come from the operating system's CSPRNG on every request, never from the builder's
//! `seed` (which keeps backoff jitter reproducible): two uploaders with the same seed, two
//! processes forked from one, or two hosts started at the same instant still draw independent
//! markers. For two requests to collide they must share name, size, purpose and marker: with
//! `k` such requests in one adoption window the chance is about `k^2 / 2^65`.

use rand::rngs::OsRng;
use rand::RngCore;

/// A fresh marker: 64 bits from the OS CSPRNG.
pub(crate) fn new_marker() -> u64 {
    OsRng.next_u64()
}

/// `filename` with `marker` inserted before its extension: `report.txt` -> `report.u<16 hex>.txt`,
/// `README` -> `README.u<16 hex>`, `.env` -> `.env.u<16 hex>` (a leading dot is not an extension).
pub(crate) fn marked(filename: &str, marker: u64) -> String {
    let tag = format!("u{marker:016x}");
    match filename.rfind('.') {
        Some(dot) if dot > 0 => format!("{}.{tag}{}", &filename[..dot], &filename[dot..]),
        _ => format!("{filename}.{tag}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_marker_goes_before_the_extension() {
        assert_eq!(marked("report.txt", 0xab), "report.u00000000000000ab.txt");
        assert_eq!(
            marked("archive.tar.gz", 1),
            "archive.tar.u0000000000000001.gz"
        );
        assert_eq!(marked("README", 2), "README.u0000000000000002");
        assert_eq!(marked(".env", 3), ".env.u0000000000000003");
        assert_eq!(marked("photo.PNG", 4), "photo.u0000000000000004.PNG");
    }

    #[test]
    fn markers_differ_between_draws() {
        let drawn: std::collections::HashSet<u64> = (0..1_000).map(|_| new_marker()).collect();
        assert_eq!(drawn.len(), 1_000);
    }

    proptest! {
        #[test]
        fn the_extension_and_stem_survive(stem in "[a-z]{1,12}", ext in "[a-z]{1,5}", marker in any::<u64>()) {
            let name = format!("{stem}.{ext}");
            let stored = marked(&name, marker);
            let expected_prefix = format!("{stem}.u");
            let expected_suffix = format!(".{ext}");
            prop_assert!(stored.starts_with(&expected_prefix));
            prop_assert!(stored.ends_with(&expected_suffix));
            prop_assert_ne!(marked(&name, marker ^ 1), stored);
        }
    }
}
