//! Events of the `product` aggregate, emitted by the products service. The orders service keeps a
//! catalog replica from them, used for display only: prices and stock are decided by the products
//! service when it reserves (see [`crate::inventory`]).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::event::impl_event;

/// A product was added to the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProductCreated {
    pub product_id: Uuid,
    pub sku: String,
    pub name: String,
    /// Money: a decimal string with exactly two decimals, e.g. `"19.99"`, in the deployment's
    /// currency. A string, not a number, so no consumer rounds it through a float.
    pub price: String,
    /// `null` when the product has no category.
    pub category: Option<String>,
    /// `false` once the product is deleted: old orders keep showing it, new orders for it are
    /// rejected.
    pub active: bool,
}

/// A product changed; carries the whole new state, not a diff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProductUpdated {
    pub product_id: Uuid,
    pub sku: String,
    pub name: String,
    /// Money: a decimal string with exactly two decimals, e.g. `"19.99"`, in the deployment's
    /// currency. A string, not a number, so no consumer rounds it through a float.
    pub price: String,
    /// `null` when the product has no category.
    pub category: Option<String>,
    /// `false` once the product is deleted: old orders keep showing it, new orders for it are
    /// rejected.
    pub active: bool,
}

/// A product was deleted: it became inactive (see `active` above), it is not erased.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProductDeleted {
    pub product_id: Uuid,
}

impl_event!(
    ProductCreated,
    aggregate: "product",
    action: "created",
    producer: "products",
    subject: product_id,
    description: "A product was added to the catalog.",
);

impl_event!(
    ProductUpdated,
    aggregate: "product",
    action: "updated",
    producer: "products",
    subject: product_id,
    description: "A product's details, price or availability changed; carries the whole new state.",
);

impl_event!(
    ProductDeleted,
    aggregate: "product",
    action: "deleted",
    producer: "products",
    subject: product_id,
    description: "A product was removed from the catalog.",
);
