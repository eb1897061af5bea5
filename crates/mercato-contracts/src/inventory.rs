//! Events of the `inventory` aggregate, emitted by the products service, whose answer on
//! existence, price and stock is authoritative.
//!
//! `inventory.updated` is about one product (its subject is the product id) and feeds the
//! gateway's `inventoryChanged`; `inventory.reserved`, `.rejected` and `.released` answer the
//! orders service about one order (their subject is the order id).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::event::impl_event;
use crate::orders::OrderLine;

/// What moved a product's stock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum InventoryChangeReason {
    /// An admin set or adjusted the stock.
    Adjustment,
    /// An order took units.
    Reservation,
    /// A cancelled or changed order gave units back.
    Release,
}

/// Why the products service refused to reserve an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RejectionReason {
    /// A line asks for more units than are available.
    InsufficientStock,
    /// A line names a product that does not exist.
    UnknownProduct,
    /// A line names a product that was deleted (inactive).
    ProductUnavailable,
}

impl RejectionReason {
    /// The wire form (`insufficient_stock`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InsufficientStock => "insufficient_stock",
            Self::UnknownProduct => "unknown_product",
            Self::ProductUnavailable => "product_unavailable",
        }
    }
}

/// A reserved order line, priced by the products service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PricedLine {
    pub product_id: Uuid,
    pub quantity: i64,
    /// Money: the authoritative unit price at reservation time, a two-decimal string (`"19.99"`).
    pub unit_price: String,
    /// The product's name at reservation time.
    pub name: String,
}

/// A product's available stock changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InventoryUpdated {
    pub product_id: Uuid,
    /// Units available to order after the change (reserved units are already taken off).
    pub stock: i64,
    /// The change that led there: negative when units were taken.
    pub delta: i64,
    pub reason: InventoryChangeReason,
}

/// Every line of an order (at `orderVersion`) was reserved, and priced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InventoryReserved {
    pub order_id: Uuid,
    /// The version of the order this reservation answers.
    pub order_version: i64,
    pub items: Vec<PricedLine>,
}

/// An order (at `orderVersion`) could not be reserved; nothing was taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InventoryRejected {
    pub order_id: Uuid,
    /// The version of the order this rejection answers: a rejected placement rejects the order, a
    /// rejected item change keeps the previous items.
    pub order_version: i64,
    pub reason: RejectionReason,
    /// The first product that could not be reserved; `null` when no single product is to blame.
    pub product_id: Option<Uuid>,
}

/// The stock an order held went back to the shelves (after a cancel).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InventoryReleased {
    pub order_id: Uuid,
    /// The lines whose units were released; empty when the order held nothing.
    pub items: Vec<OrderLine>,
}

impl_event!(
    InventoryUpdated,
    aggregate: "inventory",
    action: "updated",
    producer: "products",
    subject: product_id,
    description: "A product's available stock changed (adjustment, reservation or release).",
);

impl_event!(
    InventoryReserved,
    aggregate: "inventory",
    action: "reserved",
    producer: "products",
    subject: order_id,
    description: "Every line of an order was reserved, with authoritative unit prices and names.",
);

impl_event!(
    InventoryRejected,
    aggregate: "inventory",
    action: "rejected",
    producer: "products",
    subject: order_id,
    description: "An order's lines could not all be reserved; nothing was taken.",
);

impl_event!(
    InventoryReleased,
    aggregate: "inventory",
    action: "released",
    producer: "products",
    subject: order_id,
    description: "The stock an order held was released.",
);

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::event::Event;

    #[test]
    fn stock_changes_are_keyed_by_product_and_reservations_by_order() {
        let product_id = Uuid::now_v7();
        let order_id = Uuid::now_v7();
        let updated = InventoryUpdated {
            product_id,
            stock: 3,
            delta: -2,
            reason: InventoryChangeReason::Reservation,
        };
        let released =
            InventoryReleased { order_id, items: vec![OrderLine { product_id, quantity: 2 }] };
        let rejected = InventoryRejected {
            order_id,
            order_version: 1,
            reason: RejectionReason::UnknownProduct,
            product_id: Some(product_id),
        };

        assert_eq!(updated.subject(), product_id.to_string());
        assert_eq!(released.subject(), order_id.to_string());
        assert_eq!(rejected.subject(), order_id.to_string());
    }

    #[test]
    fn reasons_use_the_spelling_of_the_api_contract() {
        let reasons = [
            InventoryChangeReason::Adjustment,
            InventoryChangeReason::Reservation,
            InventoryChangeReason::Release,
        ];
        assert_eq!(
            serde_json::to_value(reasons).expect("serializes"),
            json!(["adjustment", "reservation", "release"])
        );
        let rejections = [
            RejectionReason::InsufficientStock,
            RejectionReason::UnknownProduct,
            RejectionReason::ProductUnavailable,
        ];
        assert_eq!(
            serde_json::to_value(rejections).expect("serializes"),
            json!(["insufficient_stock", "unknown_product", "product_unavailable"])
        );
    }

    #[test]
    fn a_rejection_without_a_product_still_names_the_field() {
        let event = InventoryRejected {
            order_id: Uuid::now_v7(),
            order_version: 1,
            reason: RejectionReason::InsufficientStock,
            product_id: None,
        };
        let wire = serde_json::to_value(&event).expect("serializes");
        assert_eq!(wire["productId"], json!(null));
        assert_eq!(wire["reason"], json!("insufficient_stock"));
    }

    #[test]
    fn a_reservation_has_the_field_names_of_the_api_contract() {
        let product_id = Uuid::now_v7();
        let event = InventoryReserved {
            order_id: Uuid::now_v7(),
            order_version: 2,
            items: vec![PricedLine {
                product_id,
                quantity: 2,
                unit_price: "19.99".to_owned(),
                name: "Mug".to_owned(),
            }],
        };
        let wire = serde_json::to_value(&event).expect("serializes");
        assert_eq!(
            wire["items"],
            json!([{ "productId": product_id, "quantity": 2, "unitPrice": "19.99", "name": "Mug" }])
        );
        assert_eq!(wire["orderVersion"], json!(2));
    }
}
