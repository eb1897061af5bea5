//! Cursor pagination: `?limit=` (1..100, default 20) and an opaque `?cursor=`, answered with
//! `{"items": [...], "nextCursor": "..." | null}`.
//!
//! A cursor is the sort key of the last item shown, base64url-encoded so that clients treat it as
//! opaque. Out-of-range limits and unreadable cursors are `400 bad_request`, never clamped.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;

pub const DEFAULT_LIMIT: u32 = 20;
pub const MAX_LIMIT: u32 = 100;

/// The raw `limit` and `cursor` query parameters.
///
/// `limit` is read as text so that `limit=abc` and `limit=0` get the same clear `400`.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Items per page, 1..100 (default 20).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
    /// The `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

impl PageQuery {
    pub fn limit(&self) -> Result<u32, ApiError> {
        parse_limit(self.limit.as_deref())
    }

    /// The sort key the cursor carries, if any.
    pub fn after(&self) -> Result<Option<String>, ApiError> {
        self.cursor.as_deref().map(decode_cursor).transpose()
    }
}

pub fn parse_limit(raw: Option<&str>) -> Result<u32, ApiError> {
    let Some(raw) = raw else { return Ok(DEFAULT_LIMIT) };
    match raw.trim().parse::<u32>() {
        Ok(limit) if (1..=MAX_LIMIT).contains(&limit) => Ok(limit),
        _ => Err(ApiError::bad_request(format!(
            "limit must be a whole number from 1 to {MAX_LIMIT}, got `{raw}`"
        ))),
    }
}

pub fn encode_cursor(key: &str) -> String {
    URL_SAFE_NO_PAD.encode(key)
}

pub fn decode_cursor(cursor: &str) -> Result<String, ApiError> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .filter(|key| !key.is_empty())
        .ok_or_else(|| ApiError::bad_request("the cursor is not one this service gave out"))
}

/// The sort key of an order in a newest-first order list: its creation time and id. Shared by
/// the orders service, which pages by it, and the gateway, which gives every edge its cursor.
pub fn order_key(created_millis: i64, id: &str) -> String {
    format!("{created_millis}:{id}")
}

/// The `ids=` query parameter of a batch read: comma-separated UUIDs, at most [`MAX_LIMIT`],
/// duplicates dropped, in the order given. `what` names the items in the error (`products`).
pub fn parse_ids(raw: &str, what: &str) -> Result<Vec<uuid::Uuid>, ApiError> {
    let ids: Vec<&str> = raw.split(',').map(str::trim).collect();
    if ids.len() > MAX_LIMIT as usize {
        return Err(ApiError::bad_request(format!("ids lists at most {MAX_LIMIT} {what}")));
    }
    let mut parsed = Vec::with_capacity(ids.len());
    for id in ids {
        let id = uuid::Uuid::parse_str(id)
            .map_err(|_| ApiError::bad_request(format!("ids: `{id}` is not a UUID")))?;
        if !parsed.contains(&id) {
            parsed.push(id);
        }
    }
    Ok(parsed)
}

/// One page of a list.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// Builds a page from up to `limit + 1` rows fetched in order: the extra row only tells that
    /// there is a next page, whose cursor is the key of the last row shown.
    pub fn from_rows(mut rows: Vec<T>, limit: u32, key: impl Fn(&T) -> String) -> Self {
        let limit = limit as usize;
        let next_cursor = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().map(|last| encode_cursor(&key(last)))
        } else {
            None
        };
        Self { items: rows, next_cursor }
    }

    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page { items: self.items.into_iter().map(f).collect(), next_cursor: self.next_cursor }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_outside_the_range_are_refused_not_clamped() {
        assert_eq!(parse_limit(None).ok(), Some(20));
        assert_eq!(parse_limit(Some("1")).ok(), Some(1));
        assert_eq!(parse_limit(Some("100")).ok(), Some(100));
        for bad in ["0", "101", "-1", "abc", "", "1.5"] {
            assert!(parse_limit(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let cursor = encode_cursor("0193a0c4-7b5e-7cc2-9f3e-2f1d7f0c9a11");
        assert_eq!(
            decode_cursor(&cursor).ok().as_deref(),
            Some("0193a0c4-7b5e-7cc2-9f3e-2f1d7f0c9a11")
        );
        assert!(decode_cursor("!!!").is_err());
        assert!(decode_cursor("").is_err());
    }

    #[test]
    fn ids_are_uuids_at_most_a_hundred_without_duplicates() {
        let a = "0193a0c4-7b5e-7cc2-9f3e-2f1d7f0c9a11";
        let b = "0193a0c4-7b5e-7cc2-9f3e-2f1d7f0c9a12";
        let parsed = parse_ids(&format!("{a}, {b},{a}"), "users").ok().unwrap_or_default();
        assert_eq!(parsed.iter().map(ToString::to_string).collect::<Vec<_>>(), vec![a, b]);
        assert!(parse_ids("x", "users").is_err());
        assert!(parse_ids(&vec![a; 101].join(","), "users").is_err());
    }

    #[test]
    fn a_page_knows_whether_more_rows_follow() {
        let page = Page::from_rows(vec![1, 2, 3], 2, |n| n.to_string());
        assert_eq!(page.items, vec![1, 2]);
        assert_eq!(page.next_cursor, Some(encode_cursor("2")));
        let last = Page::from_rows(vec![1, 2], 2, |n| n.to_string());
        assert_eq!(last.next_cursor, None);
    }
}
