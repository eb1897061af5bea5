//! The products service's HTTP surface: routes and their OpenAPI description.
//!
//! - [`products`][]: the catalog (`/api/products`, `/api/products/:id`), with `ETag` / `If-Match`.
//! - [`inventory`][]: stock adjustment (`/api/products/:id/inventory`).
//!
//! Reads are public; every write needs an admin token ([`mercato_platform::auth::Admin`]).

pub mod inventory;
pub mod products;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, header};
use mercato_platform::ApiError;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;

#[derive(OpenApi)]
#[openapi(
    info(title = "Mercato products service", description = "The catalog and its inventory."),
    tags((name = "products", description = "Catalog and inventory"))
)]
struct ProductsApi;

/// Every route of the service with its state, and their OpenAPI document.
pub fn routes(state: AppState) -> (Router, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ProductsApi::openapi())
        .routes(routes!(products::create_product, products::list_products))
        .routes(routes!(products::get_product, products::update_product, products::delete_product))
        .routes(routes!(inventory::adjust_inventory))
        .with_state(state)
        .split_for_parts()
}

/// The strong entity tag of a version: `"7"`.
pub(crate) fn etag(version: i64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{version}\"")).unwrap_or(HeaderValue::from_static("\"0\""))
}

/// Checks `If-Match` (when sent) against the current version: `412 version_mismatch` unless one
/// of its tags is `*` or the current strong tag. Weak tags never match (RFC 9110).
pub(crate) fn check_if_match(headers: &HeaderMap, version: i64) -> Result<(), ApiError> {
    let values: Vec<&HeaderValue> = headers.get_all(header::IF_MATCH).iter().collect();
    if values.is_empty() {
        return Ok(());
    }
    let current = format!("\"{version}\"");
    let matches = values
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|value| value.split(',').map(str::trim).any(|tag| tag == "*" || tag == current));
    if matches {
        Ok(())
    } else {
        Err(ApiError::PreconditionFailed(format!(
            "If-Match does not match the current version {current}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(header::IF_MATCH, HeaderValue::from_str(value).expect("ascii"));
        }
        headers
    }

    #[test]
    fn if_match_takes_strong_tags_lists_and_star() {
        assert!(check_if_match(&with(&[]), 3).is_ok());
        assert!(check_if_match(&with(&["\"3\""]), 3).is_ok());
        assert!(check_if_match(&with(&["\"1\", \"3\""]), 3).is_ok());
        assert!(check_if_match(&with(&["\"1\"", "\"3\""]), 3).is_ok());
        assert!(check_if_match(&with(&["*"]), 3).is_ok());
        for refused in ["\"2\"", "W/\"3\"", "3", "\"03\""] {
            assert!(check_if_match(&with(&[refused]), 3).is_err(), "{refused} matched");
        }
    }
}
