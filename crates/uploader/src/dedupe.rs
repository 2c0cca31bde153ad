//! Finding a file that did arrive after an ambiguous failure, so it is adopted instead of sent again.
//!
//! Neither provider offers idempotency keys, so after a failure where the whole body may have
//! reached the provider (a timeout or reset after the last byte, a 2xx with a garbled body), the
//! only evidence is the provider's file list. With unique stored names (the default, see
//! `stored_name`) a listed file with this request's stored name and byte count is one of its own
//! attempts' files and is adopted; without them, any file with the name and size created since
//! the ambiguous attempt began may be someone else's, so it can only be counted, never adopted.
//! This module reads the list, within a time limit, and claims the adopted file.

use std::collections::{HashSet, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use upramp_providers::{ErrorKind, FileObject, FileProvider, ListQuery, ProviderError};

/// Pages read at most when looking for an arrived file: providers cap an account at 1,000 files
/// and a page at 100, so this reads every file a real account can hold.
const MAX_PAGES: usize = 20;

/// Page size asked for (GLM accepts 1-100; Kimi ignores it).
const PAGE_SIZE: u32 = 100;

/// File ids this uploader has already reported in a receipt (uploaded or adopted), so two
/// requests never claim the same stored file. Bounded: the oldest ids are forgotten first, and by
/// then their creation time is far outside any adoption window.
#[derive(Debug)]
pub(crate) struct ClaimedIds {
    capacity: usize,
    state: Mutex<(VecDeque<String>, HashSet<String>)>,
}

impl ClaimedIds {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            state: Mutex::new((VecDeque::new(), HashSet::new())),
        }
    }

    /// Record `id` as reported; returns false if it already was.
    pub(crate) fn claim(&self, id: &str) -> bool {
        let mut guard = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let (order, set) = &mut *guard;
        if !set.insert(id.to_owned()) {
            return false;
        }
        order.push_back(id.to_owned());
        while order.len() > self.capacity {
            if let Some(oldest) = order.pop_front() {
                set.remove(&oldest);
            }
        }
        true
    }

    /// Whether `id` was already reported in a receipt.
    pub(crate) fn contains(&self, id: &str) -> bool {
        let guard = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        guard.1.contains(id)
    }
}

/// What identifies the file an ambiguous attempt may have stored.
#[derive(Debug, Clone)]
pub(crate) struct Wanted<'a> {
    pub(crate) filename: &'a str,
    pub(crate) purpose: &'a str,
    pub(crate) bytes: u64,
    /// When the earliest ambiguous attempt began, by the provider-facing clock; `None` when the
    /// name alone proves identity (a unique stored name), so no clock needs trusting.
    pub(crate) since: Option<SystemTime>,
    /// Tolerated clock difference between us and the provider.
    pub(crate) skew: Duration,
}

impl Wanted<'_> {
    /// Whether `file` may be the one our attempt stored. `created_at` has one-second resolution,
    /// so the window start is rounded down as well as widened by the skew.
    pub(crate) fn matches(&self, file: &FileObject) -> bool {
        let in_window = self.since.is_none_or(|since| {
            let earliest = since
                .checked_sub(self.skew)
                .unwrap_or(UNIX_EPOCH)
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
            file.created_at >= earliest
        });
        file.filename == self.filename
            && file.bytes == self.bytes
            && in_window
            && file.purpose.as_deref().is_none_or(|p| p == self.purpose)
    }
}

/// List the provider's files (every page, all within `limit`) and return those matching
/// `wanted` that no receipt of this uploader names yet, earliest created first (the first
/// ambiguous attempt's file).
pub(crate) async fn find_candidates(
    provider: &dyn FileProvider,
    wanted: &Wanted<'_>,
    claimed: &ClaimedIds,
    limit: Duration,
) -> Result<Vec<FileObject>, ProviderError> {
    let listing = async {
        let mut candidates = Vec::new();
        let mut query = ListQuery {
            purpose: Some(wanted.purpose.to_owned()),
            limit: Some(PAGE_SIZE),
            ..ListQuery::default()
        };
        for _ in 0..MAX_PAGES {
            let page = provider.list(&query).await?;
            let last_id = page.data.last().map(|f| f.id.clone());
            candidates.extend(
                page.data
                    .into_iter()
                    .filter(|f| wanted.matches(f) && !claimed.contains(&f.id)),
            );
            match (page.has_more, last_id) {
                (true, Some(last)) => query.after = Some(last),
                _ => break,
            }
        }
        Ok(candidates)
    };
    // Dropping the listing future closes its connection: nothing is left waiting on the provider.
    let mut candidates = tokio::time::timeout(limit, listing).await.map_err(|_| {
        ProviderError::without_response(
            provider.kind(),
            ErrorKind::Timeout,
            format!("listing the provider's files took longer than {limit:?}"),
        )
    })??;
    candidates.sort_by(|a, b| {
        a.created_at
            .cmp(&b.created_at)
            .then_with(|| a.id.cmp(&b.id))
    });
    Ok(candidates)
}

/// Claim the first of `candidates` no other request claimed meanwhile.
pub(crate) fn claim_first(candidates: Vec<FileObject>, claimed: &ClaimedIds) -> Option<FileObject> {
    candidates.into_iter().find(|file| claimed.claim(&file.id))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn file(id: &str, name: &str, bytes: u64, created_at: i64) -> FileObject {
        FileObject {
            id: id.into(),
            object: "file".into(),
            bytes,
            created_at,
            filename: name.into(),
            purpose: Some("file-extract".into()),
            status: Some("ok".into()),
            status_details: None,
        }
    }

    fn wanted(since_secs: u64) -> Wanted<'static> {
        Wanted {
            filename: "a.pdf",
            purpose: "file-extract",
            bytes: 10,
            since: Some(UNIX_EPOCH + Duration::from_millis(since_secs * 1_000 + 700)),
            skew: Duration::from_secs(2),
        }
    }

    #[test]
    fn matches_name_size_and_window() {
        let w = wanted(1_000);
        assert!(w.matches(&file("f1", "a.pdf", 10, 1_000)));
        assert!(w.matches(&file("f1", "a.pdf", 10, 998)), "skew tolerated");
        assert!(
            !w.matches(&file("f1", "a.pdf", 10, 997)),
            "older than the window"
        );
        assert!(!w.matches(&file("f1", "b.pdf", 10, 1_000)));
        assert!(!w.matches(&file("f1", "a.pdf", 11, 1_000)));
        let mut other_purpose = file("f1", "a.pdf", 10, 1_000);
        other_purpose.purpose = Some("batch".into());
        assert!(!w.matches(&other_purpose));
        other_purpose.purpose = None;
        assert!(w.matches(&other_purpose), "purpose may be omitted by Kimi");
        let by_name = Wanted { since: None, ..w };
        assert!(
            by_name.matches(&file("f1", "a.pdf", 10, 1)),
            "a unique name needs no window"
        );
    }

    #[test]
    fn an_id_is_claimed_once_and_memory_is_bounded() {
        let claimed = ClaimedIds::new(2);
        assert!(claimed.claim("a"));
        assert!(claimed.contains("a"));
        assert!(!claimed.claim("a"));
        assert!(claimed.claim("b"));
        assert!(claimed.claim("c"));
        assert!(claimed.claim("a"), "the oldest id was forgotten");
    }
}
