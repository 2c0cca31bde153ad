//! `GET /v1/files`, `GET /v1/files/{id}`, `GET /v1/files/{id}/content`, `DELETE /v1/files/{id}`,
//! forwarded to the provider.
//!
//! The list always ends for a cursor-following client (the OpenAI SDKs' auto-pagers ask again with
//! `after=<last id>` while `has_more` is true, or while it is absent and the page is not empty):
//! the gateway sends `has_more` itself, computed from what the provider returned. Kimi documents
//! no pagination, so its whole list is fetched and paged here; a provider that ignores `after`
//! (its page still holds the cursor) is paged here too; and a page is never longer than `limit`.

use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, StatusCode};
use http_body_util::Full;
use hyper::Response;
use percent_encoding::percent_decode_str;
use upramp_providers::{FileList, FileObject, FileProvider, ListQuery, ProviderKind};

use super::errors::ApiError;
use super::response::{json_response, Body};
use super::upload::file_json;
use super::Gateway;

/// The largest `limit` a client may ask for (OpenAI's documented maximum).
const MAX_LIMIT: u32 = 10_000;
/// GLM's documented page-size maximum.
const GLM_MAX_LIMIT: u32 = 100;

/// A client's list query.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ClientQuery {
    /// Only this purpose.
    pub purpose: Option<String>,
    /// Start after this id.
    pub after: Option<String>,
    /// At most this many.
    pub limit: Option<u32>,
    /// `asc` or `desc`.
    pub order: Option<String>,
}

/// Parse `purpose`, `after`, `limit` (1-10000) and `order` (`asc`|`desc`); others are ignored.
pub fn parse_query(query: Option<&str>) -> Result<ClientQuery, ApiError> {
    let mut parsed = ClientQuery::default();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (name, raw) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode_str(&raw.replace('+', " "))
            .decode_utf8()
            .map_err(|_| ApiError::bad_request(None, format!("query {name}: not UTF-8")))?
            .into_owned();
        match name {
            "purpose" if !value.is_empty() => parsed.purpose = Some(value),
            "after" if !value.is_empty() => parsed.after = Some(value),
            "limit" => match value.parse::<u32>() {
                Ok(limit @ 1..=MAX_LIMIT) => parsed.limit = Some(limit),
                _ => {
                    return Err(ApiError::bad_request(
                        Some("limit"),
                        format!("limit {value:?}: expected a whole number from 1 to {MAX_LIMIT}"),
                    ))
                }
            },
            "order" => match value.as_str() {
                "asc" | "desc" => parsed.order = Some(value),
                _ => {
                    return Err(ApiError::bad_request(
                        Some("order"),
                        format!("order {value:?}: expected asc or desc"),
                    ))
                }
            },
            _ => {}
        }
    }
    Ok(parsed)
}

/// What to ask the provider for this client query.
pub fn provider_query(kind: ProviderKind, query: &ClientQuery) -> ListQuery {
    match kind {
        // Kimi documents no list parameters: fetch everything and page here.
        ProviderKind::Kimi => ListQuery::default(),
        ProviderKind::Glm => ListQuery {
            purpose: query.purpose.clone(),
            after: query.after.clone(),
            order: query.order.clone(),
            limit: query.limit.map(|l| l.min(GLM_MAX_LIMIT)),
        },
        ProviderKind::OpenAi => ListQuery {
            purpose: query.purpose.clone(),
            after: query.after.clone(),
            order: query.order.clone(),
            limit: query.limit,
        },
    }
}

/// The page to answer from the provider's answer, with an honest `has_more`.
///
/// `provider_pages` says whether the provider was asked to apply the cursor and limit itself.
pub fn page(
    list: FileList,
    query: &ClientQuery,
    provider_pages: bool,
) -> Result<(Vec<FileObject>, bool), ApiError> {
    let FileList { mut data, has_more } = list;
    let cursor_in_page = query
        .after
        .as_deref()
        .and_then(|after| data.iter().position(|file| file.id == after));
    let local = !provider_pages || cursor_in_page.is_some();
    if !local {
        // The provider applied the cursor; trust its has_more, but never a longer page than asked.
        let limit = query.limit.map_or(usize::MAX, |l| l as usize);
        let more = has_more || data.len() > limit;
        data.truncate(limit);
        // An empty page ends every pager; saying "more" with nothing in it would spin some.
        let more = more && !data.is_empty();
        return Ok((data, more));
    }
    if let Some(purpose) = &query.purpose {
        data.retain(|file| file.purpose.as_deref() == Some(purpose.as_str()));
    }
    if !provider_pages {
        if let Some(order) = &query.order {
            data.sort_by_key(|file| file.created_at);
            if order == "desc" {
                data.reverse();
            }
        }
    }
    if let Some(after) = &query.after {
        let position = data
            .iter()
            .position(|file| &file.id == after)
            .ok_or_else(|| {
                ApiError::bad_request(Some("after"), format!("after {after:?}: no such file"))
            })?;
        data.drain(..=position);
    }
    let limit = query.limit.map_or(usize::MAX, |l| l as usize);
    // A provider that ignores the cursor cannot be asked for what lies past its page: only what
    // is left of this page can follow.
    let more = data.len() > limit;
    data.truncate(limit);
    Ok((data, more))
}

/// `GET /v1/files`.
pub async fn list(gateway: &Arc<Gateway>, query: Option<&str>) -> Result<Response<Body>, ApiError> {
    let query = parse_query(query)?;
    let kind = gateway.provider.kind();
    let asked = provider_query(kind, &query);
    let list = gateway
        .provider
        .list(&asked)
        .await
        .map_err(|err| ApiError::from_provider(&err))?;
    let provider_pages = kind != ProviderKind::Kimi;
    let (data, has_more) = page(list, &query, provider_pages)?;
    let first_id = data.first().map(|f| f.id.clone());
    let last_id = data.last().map(|f| f.id.clone());
    let body = serde_json::json!({
        "object": "list",
        "data": data.iter().map(file_json).collect::<Vec<_>>(),
        "has_more": has_more,
        "first_id": first_id,
        "last_id": last_id,
    });
    Ok(json_response(StatusCode::OK, &body))
}

fn decode_id(id: &str) -> Result<String, ApiError> {
    let decoded = percent_decode_str(id)
        .decode_utf8()
        .map_err(|_| ApiError::bad_request(Some("file_id"), "file id is not UTF-8"))?;
    if decoded.is_empty() || decoded.len() > 256 {
        return Err(ApiError::bad_request(
            Some("file_id"),
            "file id must be 1 to 256 bytes",
        ));
    }
    Ok(decoded.into_owned())
}

/// `GET /v1/files/{id}`.
pub async fn retrieve(gateway: &Arc<Gateway>, id: &str) -> Result<Response<Body>, ApiError> {
    let id = decode_id(id)?;
    let file = gateway
        .provider
        .retrieve(&id)
        .await
        .map_err(|err| ApiError::from_provider(&err))?;
    Ok(json_response(StatusCode::OK, &file_json(&file)))
}

/// `GET /v1/files/{id}/content`: the bytes as the provider serves them.
pub async fn content(gateway: &Arc<Gateway>, id: &str) -> Result<Response<Body>, ApiError> {
    let id = decode_id(id)?;
    let bytes: Bytes = gateway
        .provider
        .content(&id)
        .await
        .map_err(|err| ApiError::from_provider(&err))?;
    let mut response = Response::new(Full::new(bytes));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    Ok(response)
}

/// `DELETE /v1/files/{id}`.
pub async fn delete(gateway: &Arc<Gateway>, id: &str) -> Result<Response<Body>, ApiError> {
    let id = decode_id(id)?;
    let deleted = gateway
        .provider
        .delete(&id)
        .await
        .map_err(|err| ApiError::from_provider(&err))?;
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({ "id": deleted.id, "object": "file", "deleted": deleted.deleted }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(id: &str, created_at: i64) -> FileObject {
        FileObject {
            id: id.into(),
            object: "file".into(),
            bytes: 1,
            created_at,
            filename: format!("{id}.txt"),
            purpose: Some("file-extract".into()),
            status: None,
            status_details: None,
        }
    }

    fn list(ids: &[&str], has_more: bool) -> FileList {
        FileList {
            data: ids
                .iter()
                .enumerate()
                .map(|(i, id)| file(id, i as i64))
                .collect(),
            has_more,
        }
    }

    fn ids(page: &(Vec<FileObject>, bool)) -> (Vec<&str>, bool) {
        (page.0.iter().map(|f| f.id.as_str()).collect(), page.1)
    }

    /// Follow the pager the way the OpenAI SDKs do; returns every id seen, or panics after
    /// too many pages.
    fn drain(
        all: &[&str],
        provider: impl Fn(&ListQuery) -> FileList,
        pages_itself: bool,
        limit: Option<u32>,
    ) -> Vec<String> {
        let mut seen = Vec::new();
        let mut query = ClientQuery {
            limit,
            ..ClientQuery::default()
        };
        for _ in 0..=all.len() + 1 {
            let answer = provider(&provider_query(
                if pages_itself {
                    ProviderKind::Glm
                } else {
                    ProviderKind::Kimi
                },
                &query,
            ));
            let (data, has_more) = page(answer, &query, pages_itself).expect("page");
            seen.extend(data.iter().map(|f| f.id.clone()));
            if !has_more || data.is_empty() {
                return seen;
            }
            query.after = data.last().map(|f| f.id.clone());
        }
        panic!("the pager did not finish: {seen:?}");
    }

    #[test]
    fn a_provider_without_pagination_is_paged_here_and_ends() {
        let all = ["a", "b", "c", "d", "e"];
        let kimi = |_: &ListQuery| list(&all, false);
        for limit in [None, Some(1), Some(2), Some(5), Some(7)] {
            assert_eq!(drain(&all, kimi, false, limit), all, "limit {limit:?}");
        }
    }

    #[test]
    fn a_provider_ignoring_the_cursor_still_ends() {
        let all = ["a", "b", "c"];
        // Claims to page but ignores `after` and `limit`, and says has_more forever.
        let broken = |_: &ListQuery| list(&all, true);
        assert_eq!(drain(&all, broken, true, Some(2)), all);
        assert_eq!(drain(&all, broken, true, None), all);
    }

    #[test]
    fn an_honest_paginating_provider_is_followed() {
        let all = ["a", "b", "c", "d", "e"];
        let glm = |q: &ListQuery| {
            let start = q.after.as_ref().map_or(0, |after| {
                all.iter().position(|id| id == after).map_or(0, |p| p + 1)
            });
            let limit = q.limit.unwrap_or(20) as usize;
            let rest = &all[start..];
            list(&rest[..rest.len().min(limit)], rest.len() > limit)
        };
        assert_eq!(drain(&all, glm, true, Some(2)), all);
        assert_eq!(drain(&all, glm, true, None), all);
    }

    #[test]
    fn local_paging_filters_orders_and_rejects_an_unknown_cursor() {
        let query = ClientQuery {
            order: Some("desc".into()),
            limit: Some(2),
            ..ClientQuery::default()
        };
        let answer = page(list(&["a", "b", "c"], false), &query, false).expect("page");
        assert_eq!(ids(&answer), (vec!["c", "b"], true));
        let query = ClientQuery {
            after: Some("zz".into()),
            ..ClientQuery::default()
        };
        let err = page(list(&["a"], false), &query, false).expect_err("unknown cursor");
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        let query = ClientQuery {
            purpose: Some("batch".into()),
            ..ClientQuery::default()
        };
        assert_eq!(
            ids(&page(list(&["a"], false), &query, false).expect("page")),
            (vec![], false)
        );
    }

    #[test]
    fn query_parsing_is_strict_about_limit_and_order() {
        let parsed = parse_query(Some("limit=5&after=file%2D1&order=asc&x=y")).expect("query");
        assert_eq!(parsed.limit, Some(5));
        assert_eq!(parsed.after.as_deref(), Some("file-1"));
        assert!(parse_query(Some("limit=0")).is_err());
        assert!(parse_query(Some("limit=10001")).is_err());
        assert!(parse_query(Some("order=up")).is_err());
        assert_eq!(
            provider_query(
                ProviderKind::Glm,
                &ClientQuery {
                    limit: Some(500),
                    ..ClientQuery::default()
                }
            )
            .limit,
            Some(100)
        );
        assert_eq!(
            provider_query(ProviderKind::Kimi, &parsed),
            ListQuery::default()
        );
    }
}
