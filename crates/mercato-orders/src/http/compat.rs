//! Routes of the original Node orders service, kept for its clients: the same handlers and rules
//! as the routes they stand for, documented as deprecated.
//!
//! `POST /api/create` also takes the old single-item body `{productId, quantity,
//! shippingAddress, paymentMethod}`, and ignores the `totalPrice`, `orderDate`, `status` and `id`
//! the old clients set: prices and status are the saga's to decide.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use mercato_platform::ApiError;
use mercato_platform::auth::Caller;
use mercato_platform::extract::{Json, Path};
use mercato_platform::trace::TraceContext;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::app::AppState;
use crate::http::orders::{self, OrderResponse, PlaceOrderRequest};
use crate::http::{Signed, deleted_first};

/// Fields the old clients set that the server decides.
const IGNORED: [&str; 4] = ["totalPrice", "orderDate", "status", "id"];

/// The old single-item form as the new body: `items: [{productId, quantity}]`.
fn normalize(mut body: Map<String, Value>) -> Map<String, Value> {
    for field in IGNORED {
        body.remove(field);
    }
    if !body.contains_key("items")
        && (body.contains_key("productId") || body.contains_key("quantity"))
    {
        let product_id = body.remove("productId").unwrap_or(Value::Null);
        let quantity = body.remove("quantity").unwrap_or(Value::Null);
        body.insert("items".to_owned(), json!([{"productId": product_id, "quantity": quantity}]));
    }
    body
}

/// `= POST /api/orders`, also with the single-item body.
#[utoipa::path(
    post,
    path = "/api/create",
    tag = "orders",
    request_body = PlaceOrderRequest,
    security(("bearer" = [])),
    responses((status = 201, body = OrderResponse)),
)]
#[deprecated(note = "use POST /api/orders")]
pub async fn create(
    State(state): State<AppState>,
    trace: TraceContext,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Json<Value>, ApiError>,
) -> Result<Response, ApiError> {
    let validated = body.and_then(|Json(body)| {
        let Value::Object(body) = body else {
            return Err(ApiError::invalid_field("body", "must be a JSON object"));
        };
        let request = normalize(body);
        let placement = orders::placement(&caller, &request)?;
        Ok((request, placement))
    });
    let (request, placement) = deleted_first(&state, &caller, validated).await?;
    orders::place(&state, trace, &caller, &headers, Value::Object(request), placement).await
}

/// `= POST /api/orders/{id}/cancel`.
#[utoipa::path(
    post,
    path = "/api/orders/cancel/{id}",
    tag = "orders",
    params(("id" = Uuid, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = OrderResponse)),
)]
#[deprecated(note = "use POST /api/orders/{id}/cancel or DELETE /api/orders/{id}")]
pub async fn cancel(
    State(state): State<AppState>,
    trace: TraceContext,
    Signed(caller): Signed,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    orders::cancel(&state, trace, &caller, id, &headers).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_single_item_form_becomes_one_line_and_client_prices_are_dropped() {
        let Value::Object(body) = json!({
            "productId": "p", "quantity": 2, "paymentMethod": "card",
            "totalPrice": 1, "status": "delivered", "id": "x", "orderDate": "today"
        }) else {
            unreachable!()
        };
        assert_eq!(
            Value::Object(normalize(body)),
            json!({"items": [{"productId": "p", "quantity": 2}], "paymentMethod": "card"})
        );
    }
}
