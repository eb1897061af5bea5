//! Relay connections over the services' cursor pages: `first` (default 20, at most 100) and
//! `after` map to `limit` and `cursor`; every edge gets the cursor the service pages by.

use async_graphql::{Result, SimpleObject};

use crate::errors::bad_field;
use crate::schema::types::{Order, Page, Product, User};

pub const DEFAULT_FIRST: i32 = 20;
pub const MAX_FIRST: i32 = 100;

#[derive(Debug, Clone, SimpleObject)]
pub struct PageInfo {
    pub has_next_page: bool,
    pub end_cursor: Option<String>,
}

/// A connection and its edge type for one node type.
macro_rules! connection {
    ($connection:ident, $edge:ident, $node:ty) => {
        #[derive(Debug, Clone, SimpleObject)]
        pub struct $edge {
            pub cursor: String,
            pub node: $node,
        }

        #[derive(Debug, Clone, SimpleObject)]
        pub struct $connection {
            pub edges: Vec<$edge>,
            pub page_info: PageInfo,
        }

        impl $connection {
            pub fn from_page(page: Page<$node>, cursor: impl Fn(&$node) -> String) -> Self {
                let edges: Vec<$edge> = page
                    .items
                    .into_iter()
                    .map(|node| $edge { cursor: cursor(&node), node })
                    .collect();
                let has_next_page = page.next_cursor.is_some();
                let end_cursor =
                    page.next_cursor.or_else(|| edges.last().map(|edge| edge.cursor.clone()));
                Self { edges, page_info: PageInfo { has_next_page, end_cursor } }
            }
        }
    };
}

connection!(UserConnection, UserEdge, User);
connection!(ProductConnection, ProductEdge, Product);
connection!(OrderConnection, OrderEdge, Order);

/// `limit` and `cursor` for a service from `first` and `after`; `first` outside 1..100 is
/// `BAD_USER_INPUT`, never clamped (as the REST `limit`).
pub fn page_query(
    first: Option<i32>,
    after: Option<String>,
) -> Result<Vec<(&'static str, String)>> {
    let first = first.unwrap_or(DEFAULT_FIRST);
    if !(1..=MAX_FIRST).contains(&first) {
        return Err(bad_field("first", format!("must be from 1 to {MAX_FIRST}")));
    }
    let mut query = vec![("limit", first.to_string())];
    if let Some(after) = after {
        query.push(("cursor", after));
    }
    Ok(query)
}

/// The complexity of a connection field: its page size times what each node costs.
pub fn cost(first: Option<i32>, child_complexity: usize) -> usize {
    let first = usize::try_from(first.unwrap_or(DEFAULT_FIRST).clamp(1, MAX_FIRST)).unwrap_or(1);
    first.saturating_mul(child_complexity.max(1))
}
