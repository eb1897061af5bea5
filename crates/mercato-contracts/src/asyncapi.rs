//! The AsyncAPI 3.0 document of the event backbone, generated from the payload types.
//!
//! One channel per event type (its NATS subject), one `send` operation for its producer and one
//! `receive` operation per consumer, one message whose payload is the envelope with `data` pinned
//! to the event's schema. Payload schemas are generated for JSON Schema draft 07, the dialect that
//! AsyncAPI's default schema format extends, into `components.schemas`, so shared types
//! (`OrderLine`) are defined once and every `$ref` resolves inside the document.

use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

use crate::catalog::{Registration, registrations, schema_settings};
use crate::envelope::{CONTENT_TYPE, Envelope, source_of};
use crate::subjects::nats_subject;

/// Where the payload schemas go, as a JSON pointer; `$ref`s point there.
const SCHEMAS_POINTER: &str = "/components/schemas";

/// The AsyncAPI 3.0.0 document for a deployment whose subjects start with `prefix`.
pub fn asyncapi(prefix: &str) -> Value {
    let mut generator = schema_settings(SchemaSettings::draft07())
        .with(|settings| {
            settings.definitions_path = SCHEMAS_POINTER.into();
            settings.meta_schema = None;
        })
        .into_generator();
    let envelope = envelope_template();

    let mut channels = Map::new();
    let mut operations = Map::new();
    let mut messages = Map::new();
    for event in registrations() {
        let channel = format!("{}.{}", event.aggregate, event.action);
        let channel_ref = json!({ "$ref": format!("#/channels/{channel}") });
        let message_ref = json!({ "$ref": format!("#/components/messages/{}", event.name) });
        let message_refs =
            json!([{ "$ref": format!("#/channels/{channel}/messages/{}", event.name) }]);

        let data_schema = (event.subschema)(&mut generator).to_value();
        messages.insert(event.name.clone(), message(&event, &envelope, data_schema));
        channels.insert(
            channel.clone(),
            json!({
                "address": nats_subject(prefix, event.aggregate, event.action),
                "title": channel,
                "description": event.description,
                "messages": {
                    event.name.as_str(): message_ref,
                },
            }),
        );
        operations.insert(
            format!("{}.publish{}", event.producer, event.name),
            json!({
                "action": "send",
                "channel": channel_ref,
                "messages": message_refs,
                "summary": format!("The {} service publishes {}.", event.producer, event.type_name),
            }),
        );
        for consumer in event.consumers {
            operations.insert(
                format!("{consumer}.receive{}", event.name),
                json!({
                    "action": "receive",
                    "channel": channel_ref,
                    "messages": message_refs,
                    "summary": format!("The {consumer} service consumes {}.", event.type_name),
                }),
            );
        }
    }

    json!({
        "asyncapi": "3.0.0",
        "info": {
            "title": "Mercato events",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Every event of the Mercato backend. Each message is a CloudEvents 1.0 \
                document in structured mode (JSON), published on NATS JetStream with its `id` as \
                `Nats-Msg-Id`. Delivery is at least once: consumers are idempotent and use \
                `orderVersion` to ignore stale order events. A breaking change to a payload is a \
                new `.v2` type; `.v1` consumers keep working.",
        },
        "defaultContentType": CONTENT_TYPE,
        "servers": {
            "nats": {
                "host": "localhost:4222",
                "protocol": "nats",
                "description": "NATS with JetStream; the stream is named after the subject prefix.",
            },
        },
        "channels": channels,
        "operations": operations,
        "components": {
            "messages": messages,
            "schemas": generator.take_definitions(true),
        },
    })
}

/// The envelope's draft-07 schema, ready to have `type`, `source` and `data` pinned per event.
fn envelope_template() -> Value {
    let mut schema = schema_settings(SchemaSettings::draft07())
        .with(|settings| settings.meta_schema = None)
        .into_generator()
        .into_root_schema_for::<Envelope<Value>>()
        .to_value();
    if let Some(object) = schema.as_object_mut() {
        object.remove("title");
    }
    schema
}

fn message(event: &Registration, envelope: &Value, data_schema: Value) -> Value {
    let mut payload = envelope.clone();
    if let Some(properties) = payload.get_mut("properties").and_then(Value::as_object_mut) {
        properties.insert("type".to_owned(), json!({ "type": "string", "const": event.type_name }));
        properties.insert(
            "source".to_owned(),
            json!({ "type": "string", "const": source_of(event.producer) }),
        );
        properties.insert(
            "subject".to_owned(),
            json!({
                "type": "string",
                "format": "uuid",
                "description": format!("Id of the {} the event is about.", subject_noun(event)),
            }),
        );
        properties.insert("data".to_owned(), data_schema);
    }

    json!({
        "name": event.name,
        "title": title(event),
        "summary": event.description,
        "contentType": CONTENT_TYPE,
        "headers": {
            "type": "object",
            "properties": {
                "Nats-Msg-Id": {
                    "type": "string",
                    "format": "uuid",
                    "description": "The envelope's `id`; JetStream drops a duplicate publish.",
                },
            },
        },
        "payload": payload,
    })
}

/// `user.created` -> `User created`.
fn title(event: &Registration) -> String {
    let mut chars = event.aggregate.chars();
    let first = chars.next().map(|c| c.to_ascii_uppercase()).into_iter();
    format!("{} {}", first.chain(chars).collect::<String>(), event.action)
}

/// What `subject` identifies: the aggregate, except that inventory events about an order's
/// reservation are keyed by the order.
fn subject_noun(event: &Registration) -> &'static str {
    match (event.aggregate, event.action) {
        ("inventory", "updated") => "product",
        ("inventory", _) => "order",
        (aggregate, _) => aggregate,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::catalog::catalog;

    fn refs_in<'a>(value: &'a Value, found: &mut Vec<&'a str>) {
        match value {
            Value::Object(object) => {
                for (key, child) in object {
                    match (key.as_str(), child) {
                        ("$ref", Value::String(reference)) => found.push(reference),
                        _ => refs_in(child, found),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|item| refs_in(item, found)),
            _ => {}
        }
    }

    #[test]
    fn every_ref_resolves_inside_the_document() {
        let document = asyncapi("mercato");
        let mut references = Vec::new();
        refs_in(&document, &mut references);

        assert!(references.len() > 50, "only {} refs: is the walk broken?", references.len());
        for reference in references {
            let pointer = reference
                .strip_prefix('#')
                .unwrap_or_else(|| panic!("{reference} points outside the document"));
            assert!(document.pointer(pointer).is_some(), "{reference} does not resolve");
        }
    }

    #[test]
    fn no_schema_keeps_its_own_definitions_or_dialect() {
        let text = asyncapi("mercato").to_string();
        for stray in ["\"$defs\"", "\"definitions\"", "\"$schema\"", "#/$defs/", "#/definitions/"] {
            assert!(!text.contains(stray), "the document contains {stray}");
        }
    }

    #[test]
    fn the_document_has_the_asyncapi_3_skeleton() {
        let document = asyncapi("mercato");
        assert_eq!(document["asyncapi"], "3.0.0");
        assert_eq!(document["info"]["title"], "Mercato events");
        assert_eq!(document["info"]["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(document["defaultContentType"], "application/cloudevents+json");
        assert_eq!(document["servers"]["nats"]["protocol"], "nats");
        assert_eq!(document["servers"]["nats"]["host"], "localhost:4222");
    }

    #[test]
    fn each_event_has_a_channel_a_message_and_one_send_operation_by_its_producer() {
        let document = asyncapi("mercato");
        let operations = document["operations"].as_object().expect("operations");

        for info in catalog() {
            let key = format!("{}.{}", info.aggregate, info.action);
            let channel = &document["channels"][&key];
            assert_eq!(channel["address"], format!("mercato.{key}"));
            assert_eq!(
                channel["messages"][&info.name]["$ref"],
                format!("#/components/messages/{}", info.name)
            );

            let channel_ref = format!("#/channels/{key}");
            let senders: Vec<&String> = operations
                .iter()
                .filter(|(_, op)| op["action"] == "send" && op["channel"]["$ref"] == channel_ref)
                .map(|(name, _)| name)
                .collect();
            assert_eq!(senders, [&format!("{}.publish{}", info.producer, info.name)]);

            let receivers: HashSet<String> = operations
                .iter()
                .filter(|(_, op)| op["action"] == "receive" && op["channel"]["$ref"] == channel_ref)
                .map(|(name, _)| name.clone())
                .collect();
            let expected: HashSet<String> = info
                .consumers
                .iter()
                .map(|consumer| format!("{consumer}.receive{}", info.name))
                .collect();
            assert_eq!(receivers, expected, "{key}");
        }
    }

    #[test]
    fn operations_only_use_messages_of_their_own_channel() {
        let document = asyncapi("mercato");
        for (name, operation) in document["operations"].as_object().expect("operations") {
            assert!(matches!(operation["action"].as_str(), Some("send" | "receive")), "{name}");
            let channel = operation["channel"]["$ref"].as_str().expect("a channel ref");
            for message in operation["messages"].as_array().expect("a message list") {
                let reference = message["$ref"].as_str().expect("a message ref");
                assert!(
                    reference.starts_with(&format!("{channel}/messages/")),
                    "{name}: {reference} is not a message of {channel}"
                );
            }
        }
    }

    #[test]
    fn message_payloads_pin_the_envelope_to_the_event() {
        let document = asyncapi("mercato");
        let message = &document["components"]["messages"]["OrderPlaced"];
        let payload = &message["payload"]["properties"];

        assert_eq!(message["contentType"], "application/cloudevents+json");
        assert_eq!(message["title"], "Order placed");
        assert_eq!(payload["type"]["const"], "mercato.order.placed.v1");
        assert_eq!(payload["source"]["const"], "/mercato/orders");
        assert_eq!(payload["data"]["$ref"], "#/components/schemas/OrderPlaced");
        let order_line = &document["components"]["schemas"]["OrderLine"]["properties"];
        assert!(order_line["productId"].is_object() && order_line["quantity"].is_object());
    }

    #[test]
    fn the_prefix_sets_every_address() {
        let document = asyncapi("test-run-7");
        for (key, channel) in document["channels"].as_object().expect("channels") {
            assert_eq!(channel["address"], format!("test-run-7.{key}"));
        }
    }
}
