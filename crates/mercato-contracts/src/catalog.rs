//! The list of every event: who emits it, who consumes it, and the JSON Schema of its `data`.
//!
//! It is the one place that enumerates the event types, so the AsyncAPI document, the committed
//! schemas and the tests cannot miss one. The consumer lists mirror the "consumed by" column of
//! `API.md`; each service's own subscription list lives in that service.

use schemars::generate::{SchemaGenerator, SchemaSettings};
use schemars::{JsonSchema, Schema};
use serde_json::Value;

use crate::envelope::Envelope;
use crate::event::Event;
use crate::inventory::{InventoryRejected, InventoryReleased, InventoryReserved, InventoryUpdated};
use crate::orders::{
    OrderCancelled, OrderConfirmed, OrderDelivered, OrderPlaced, OrderRejected, OrderShipped,
    OrderUpdated,
};
use crate::products::{ProductCreated, ProductDeleted, ProductUpdated};
use crate::users::{UserCreated, UserDeleted, UserUpdated};

/// Everything known about one event type.
#[derive(Debug, Clone, PartialEq)]
pub struct EventInfo {
    /// The payload's name, e.g. `OrderPlaced`; also its message name in the AsyncAPI document.
    pub name: String,
    /// The full CloudEvents `type`, e.g. `mercato.order.placed.v1`.
    pub type_name: &'static str,
    pub aggregate: &'static str,
    pub action: &'static str,
    /// The service that emits it.
    pub producer: &'static str,
    /// The services that subscribe to it.
    pub consumers: &'static [&'static str],
    pub description: &'static str,
    /// JSON Schema (2020-12) of the event's `data` as producers write it, with its sub-schemas
    /// under `$defs`.
    pub schema: Value,
}

/// Every event type, in the order of `API.md`'s table.
pub fn catalog() -> Vec<EventInfo> {
    registrations()
        .into_iter()
        .map(|registration| EventInfo {
            name: registration.name,
            type_name: registration.type_name,
            aggregate: registration.aggregate,
            action: registration.action,
            producer: registration.producer,
            consumers: registration.consumers,
            description: registration.description,
            schema: (registration.root_schema)().to_value(),
        })
        .collect()
}

/// JSON Schema (2020-12) of the envelope, with `data` left open: each event type fixes it.
pub fn envelope_schema() -> Value {
    schema_settings(SchemaSettings::draft2020_12())
        .into_generator()
        .into_root_schema_for::<Envelope<Value>>()
        .to_value()
}

/// The schemas describe what producers write (serde's serialize side), which is the contract:
/// a field that is `null` on the wire is required and nullable (`category`, `total`), only a field
/// left out when empty is optional (`reason`, `traceparent`). The deserialize side would mark
/// every `Option` optional, which is more lenient than what `API.md` promises consumers.
pub(crate) fn schema_settings(dialect: SchemaSettings) -> SchemaSettings {
    dialect.for_serialize()
}

/// One event type, with its schema left to be generated: the AsyncAPI document needs the schemas
/// from one shared generator (so shared types like `OrderLine` are defined once), the catalog
/// needs each one standalone.
pub(crate) struct Registration {
    pub name: String,
    pub type_name: &'static str,
    pub aggregate: &'static str,
    pub action: &'static str,
    pub producer: &'static str,
    pub consumers: &'static [&'static str],
    pub description: &'static str,
    pub root_schema: fn() -> Schema,
    pub subschema: fn(&mut SchemaGenerator) -> Schema,
}

fn register<E: Event>(consumers: &'static [&'static str]) -> Registration {
    fn root_schema<E: JsonSchema>() -> Schema {
        schema_settings(SchemaSettings::draft2020_12()).into_generator().into_root_schema_for::<E>()
    }
    fn subschema<E: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
        generator.subschema_for::<E>()
    }

    Registration {
        name: E::schema_name().into_owned(),
        type_name: E::TYPE,
        aggregate: E::AGGREGATE,
        action: E::ACTION,
        producer: E::PRODUCER,
        consumers,
        description: E::DESCRIPTION,
        root_schema: root_schema::<E>,
        subschema: subschema::<E>,
    }
}

pub(crate) fn registrations() -> Vec<Registration> {
    const ORDERS: &[&str] = &["orders"];
    const PRODUCTS: &[&str] = &["products"];
    const GATEWAY: &[&str] = &["gateway"];

    vec![
        register::<UserCreated>(ORDERS),
        register::<UserUpdated>(ORDERS),
        register::<UserDeleted>(ORDERS),
        register::<ProductCreated>(ORDERS),
        register::<ProductUpdated>(ORDERS),
        register::<ProductDeleted>(ORDERS),
        register::<InventoryUpdated>(GATEWAY),
        register::<OrderPlaced>(PRODUCTS),
        register::<OrderUpdated>(PRODUCTS),
        register::<OrderCancelled>(PRODUCTS),
        register::<InventoryReserved>(ORDERS),
        register::<InventoryRejected>(ORDERS),
        register::<InventoryReleased>(ORDERS),
        register::<OrderConfirmed>(GATEWAY),
        register::<OrderRejected>(GATEWAY),
        register::<OrderShipped>(GATEWAY),
        register::<OrderDelivered>(GATEWAY),
    ]
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn the_catalog_lists_every_event_type_once() {
        let catalog = catalog();
        let types: HashSet<&str> = catalog.iter().map(|info| info.type_name).collect();
        let names: HashSet<&str> = catalog.iter().map(|info| info.name.as_str()).collect();

        // API.md's table: 3 user, 3 product, 4 inventory and 7 order events.
        assert_eq!(catalog.len(), 17);
        assert_eq!(types.len(), catalog.len(), "duplicate types");
        assert_eq!(names.len(), catalog.len(), "duplicate payload names");
    }

    #[test]
    fn every_type_is_spelled_from_its_aggregate_and_action() {
        for info in catalog() {
            assert_eq!(
                info.type_name,
                format!("mercato.{}.{}.v1", info.aggregate, info.action),
                "{}",
                info.name
            );
        }
    }

    #[test]
    fn each_aggregate_is_emitted_by_the_service_that_owns_it() {
        for info in catalog() {
            let owner = match info.aggregate {
                "user" => "users",
                "product" | "inventory" => "products",
                "order" => "orders",
                other => panic!("unknown aggregate {other}"),
            };
            assert_eq!(info.producer, owner, "{}", info.type_name);
            assert!(!info.consumers.contains(&info.producer), "{} consumes itself", info.name);
            assert!(!info.consumers.is_empty(), "{} has no consumer", info.name);
        }
    }

    #[test]
    fn consumers_follow_the_api_contract() {
        let consumers_of = |type_name: &str| {
            catalog()
                .into_iter()
                .find(|info| info.type_name == type_name)
                .map(|info| info.consumers)
                .unwrap_or_else(|| panic!("{type_name} is not in the catalog"))
        };
        assert_eq!(consumers_of("mercato.user.created.v1"), ["orders"]);
        assert_eq!(consumers_of("mercato.user.deleted.v1"), ["orders"]);
        assert_eq!(consumers_of("mercato.product.updated.v1"), ["orders"]);
        assert_eq!(consumers_of("mercato.inventory.updated.v1"), ["gateway"]);
        assert_eq!(consumers_of("mercato.order.placed.v1"), ["products"]);
        assert_eq!(consumers_of("mercato.order.cancelled.v1"), ["products"]);
        assert_eq!(consumers_of("mercato.inventory.reserved.v1"), ["orders"]);
        assert_eq!(consumers_of("mercato.inventory.rejected.v1"), ["orders"]);
        assert_eq!(consumers_of("mercato.order.confirmed.v1"), ["gateway"]);
        assert_eq!(consumers_of("mercato.order.delivered.v1"), ["gateway"]);
    }

    #[test]
    fn every_schema_describes_a_camel_case_object() {
        for info in catalog() {
            let properties = info.schema["properties"]
                .as_object()
                .unwrap_or_else(|| panic!("{} has no properties", info.name));
            for field in properties.keys() {
                assert!(
                    field.chars().all(|c| c.is_ascii_alphanumeric())
                        && field.starts_with(|c: char| c.is_ascii_lowercase()),
                    "{}.{field} is not camelCase",
                    info.name
                );
            }
            assert_eq!(info.schema["type"], "object", "{}", info.name);
            assert_eq!(info.schema["title"], info.name);
        }
    }

    #[test]
    fn the_envelope_schema_requires_the_cloudevents_attributes() {
        let schema = envelope_schema();
        let required: HashSet<&str> = schema["required"]
            .as_array()
            .expect("a required list")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let expected: HashSet<&str> =
            ["specversion", "id", "source", "type", "subject", "time", "datacontenttype", "data"]
                .into();
        assert_eq!(required, expected);
        assert!(schema["properties"]["traceparent"].is_object());
    }
}
