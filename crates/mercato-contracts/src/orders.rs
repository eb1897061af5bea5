//! Events of the `order` aggregate, emitted by the orders service.
//!
//! `order.placed`, `order.updated` and `order.cancelled` drive the products service's reservations;
//! the status events (`order.confirmed`, `.rejected`, `.shipped`, `.delivered`) tell the gateway
//! what to push to `orderStatusChanged` subscribers. Events of one order may arrive late, twice or
//! out of order: `orderVersion` says which is newest.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::event::impl_event;

/// Lines an order has: 1 to this many (API.md).
pub const MAX_ORDER_LINES: usize = 100;
/// Units one line asks for: 1 to this many (API.md).
pub const MAX_LINE_QUANTITY: i64 = 10_000;

/// One line of an order as the customer asked for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderLine {
    pub product_id: Uuid,
    /// Units asked for, 1..=10000.
    pub quantity: i64,
}

/// An order was accepted as `pending`; the products service reserves all of its lines or none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderPlaced {
    pub order_id: Uuid,
    pub user_id: Uuid,
    /// The order's version after this change; it increases with every change, so consumers
    /// ignore anything older than what they have already applied.
    pub order_version: i64,
    pub items: Vec<OrderLine>,
}

/// An order's items changed; the products service moves the reservation to the new lines, all or
/// nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderUpdated {
    pub order_id: Uuid,
    pub user_id: Uuid,
    /// The order's version after this change.
    pub order_version: i64,
    /// The complete new list of lines, not a diff.
    pub items: Vec<OrderLine>,
}

/// An order was cancelled; the products service releases whatever the order holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderCancelled {
    pub order_id: Uuid,
    pub user_id: Uuid,
    /// The order's version after the cancel.
    pub order_version: i64,
}

/// Declares one order status event: they all carry the same fields, and each needs a type of its
/// own so that it has its own CloudEvents `type`.
macro_rules! order_status_event {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
        #[serde(rename_all = "camelCase")]
        pub struct $name {
            pub order_id: Uuid,
            pub user_id: Uuid,
            /// The order's status after the change: `confirmed`, `rejected`, `shipped` or
            /// `delivered`.
            pub status: String,
            /// Money: the order total as a two-decimal string (`"39.98"`); `null` while the order
            /// has not been priced, and for a rejected order.
            pub total: Option<String>,
            /// Why the order was rejected (`insufficient_stock`, `unknown_product`,
            /// `product_unavailable`); absent when there is nothing to explain.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            #[schemars(extend("type" = "string"))]
            pub reason: Option<String>,
        }
    };
}

order_status_event!(
    /// Stock for every line was reserved and the order was priced.
    OrderConfirmed
);
order_status_event!(
    /// The products service refused the order; `reason` says why.
    OrderRejected
);
order_status_event!(
    /// An admin marked the order shipped.
    OrderShipped
);
order_status_event!(
    /// An admin marked the order delivered.
    OrderDelivered
);

impl_event!(
    OrderPlaced,
    aggregate: "order",
    action: "placed",
    producer: "orders",
    subject: order_id,
    description: "An order was accepted as pending; its stock is to be reserved, all or nothing.",
);

impl_event!(
    OrderUpdated,
    aggregate: "order",
    action: "updated",
    producer: "orders",
    subject: order_id,
    description: "An order's items changed; its reservation moves to the new lines, or stays.",
);

impl_event!(
    OrderCancelled,
    aggregate: "order",
    action: "cancelled",
    producer: "orders",
    subject: order_id,
    description: "An order was cancelled; whatever stock it holds is to be released.",
);

impl_event!(
    OrderConfirmed,
    aggregate: "order",
    action: "confirmed",
    producer: "orders",
    subject: order_id,
    description: "An order's stock was reserved and it was priced.",
);

impl_event!(
    OrderRejected,
    aggregate: "order",
    action: "rejected",
    producer: "orders",
    subject: order_id,
    description: "An order was rejected by the stock reservation.",
);

impl_event!(
    OrderShipped,
    aggregate: "order",
    action: "shipped",
    producer: "orders",
    subject: order_id,
    description: "An order was shipped.",
);

impl_event!(
    OrderDelivered,
    aggregate: "order",
    action: "delivered",
    producer: "orders",
    subject: order_id,
    description: "An order was delivered.",
);

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The example of `API.md` ("Events"), field for field: if a rename slips into the struct,
    /// this fails before any consumer does.
    #[test]
    fn order_placed_has_the_field_names_of_the_api_contract() {
        let order_id = Uuid::now_v7();
        let user_id = Uuid::now_v7();
        let product_id = Uuid::now_v7();
        let wire = json!({
            "orderId": order_id,
            "userId": user_id,
            "orderVersion": 3,
            "items": [{ "productId": product_id, "quantity": 2 }],
        });
        let event = OrderPlaced {
            order_id,
            user_id,
            order_version: 3,
            items: vec![OrderLine { product_id, quantity: 2 }],
        };

        assert_eq!(serde_json::to_value(&event).expect("serializes"), wire);
        assert_eq!(serde_json::from_value::<OrderPlaced>(wire).expect("deserializes"), event);
    }

    #[test]
    fn status_events_leave_out_an_absent_reason_but_keep_a_null_total() {
        let event = OrderShipped {
            order_id: Uuid::now_v7(),
            user_id: Uuid::now_v7(),
            status: "shipped".to_owned(),
            total: None,
            reason: None,
        };
        let wire = serde_json::to_value(&event).expect("serializes");

        assert_eq!(wire["total"], json!(null));
        assert!(wire.get("reason").is_none(), "{wire}");
    }

    #[test]
    fn a_rejection_carries_its_reason() {
        let wire = json!({
            "orderId": Uuid::now_v7(),
            "userId": Uuid::now_v7(),
            "status": "rejected",
            "total": null,
            "reason": "insufficient_stock",
        });
        let event: OrderRejected = serde_json::from_value(wire.clone()).expect("deserializes");
        assert_eq!(event.reason.as_deref(), Some("insufficient_stock"));
        assert_eq!(serde_json::to_value(&event).expect("serializes"), wire);
    }
}
