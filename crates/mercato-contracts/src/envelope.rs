//! The CloudEvents 1.0 envelope (structured mode, JSON) every event travels in.
//!
//! The whole document is the NATS message body, so the bus needs no header mapping and the outbox
//! can store it as one JSON value. Consumers read it as `Envelope<serde_json::Value>` first, route
//! on `type`, then [`Envelope::decode`] into the payload they handle.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::event::Event;
use crate::timestamp::format_rfc3339_millis;

/// The CloudEvents spec version this contract speaks.
pub const SPEC_VERSION: &str = "1.0";

/// The content type of `data`.
pub const DATA_CONTENT_TYPE: &str = "application/json";

/// The content type of a whole envelope on the wire.
pub const CONTENT_TYPE: &str = "application/cloudevents+json";

/// Why an envelope could not be turned into, or read from, JSON or a typed event.
#[derive(Debug, thiserror::Error)]
pub enum ContractError {
    /// The envelope carries another event type than the one asked for.
    #[error("expected event type {expected}, found {found}")]
    WrongType { expected: &'static str, found: String },
    /// The JSON is not an envelope, or its `data` does not match the payload type.
    #[error("malformed event: {0}")]
    Malformed(#[from] serde_json::Error),
}

/// A CloudEvents 1.0 document carrying one event's `data`.
///
/// `T` is the typed payload on the producing side and after [`Envelope::decode`]; it is
/// [`serde_json::Value`] when the type is not known yet (routing, the outbox, dead letters).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(
    rename = "Envelope",
    description = "A Mercato event: CloudEvents 1.0, structured mode, JSON."
)]
pub struct Envelope<T = Value> {
    /// CloudEvents spec version, always `1.0`.
    #[schemars(extend("const" = "1.0"))]
    pub specversion: String,
    /// UUIDv7 of this event; also the `Nats-Msg-Id`, so the bus drops duplicate publishes and
    /// consumers deduplicate redeliveries on it.
    #[schemars(extend("format" = "uuid"))]
    pub id: String,
    /// The producing service: `/mercato/<service>`.
    pub source: String,
    /// `mercato.<aggregate>.<action>.v<N>`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Id of the aggregate instance (user, product or order) the event is about.
    pub subject: String,
    /// When the fact happened: RFC 3339, UTC, milliseconds (`2026-11-21T10:00:00.123Z`).
    #[schemars(extend("format" = "date-time"))]
    pub time: String,
    /// Content type of `data`, always `application/json`.
    #[schemars(extend("const" = "application/json"))]
    pub datacontenttype: String,
    /// W3C trace context of the request that caused the event, so one trace follows it through
    /// the bus into every consumer. Absent when there was none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("type" = "string"))]
    pub traceparent: Option<String>,
    /// The event's payload; its shape is fixed by `type`.
    pub data: T,
}

impl<E: Event> Envelope<E> {
    /// Wraps a payload, stamping a fresh UUIDv7 id and the `type`, `source` and `subject` that the
    /// payload's [`Event`] impl dictates.
    ///
    /// `time_millis` is when the fact happened (epoch milliseconds), usually the commit time of
    /// the transaction that wrote it to the outbox, not the publish time.
    pub fn new(event: E, time_millis: i64, traceparent: Option<String>) -> Envelope<E> {
        Envelope {
            specversion: SPEC_VERSION.to_owned(),
            id: Uuid::now_v7().to_string(),
            source: source_of(E::PRODUCER),
            event_type: E::TYPE.to_owned(),
            subject: event.subject(),
            time: format_rfc3339_millis(time_millis),
            datacontenttype: DATA_CONTENT_TYPE.to_owned(),
            traceparent,
            data: event,
        }
    }

    /// Forgets the payload's type, e.g. to store the envelope in the outbox.
    ///
    /// Fails only if the payload's `Serialize` impl does; the payloads of this crate never do.
    pub fn into_raw(self) -> Result<Envelope<Value>, ContractError> {
        let data = serde_json::to_value(&self.data)?;
        Ok(self.with_data(data))
    }
}

impl Envelope<Value> {
    /// Reads an envelope from a message body without looking at its `data`.
    pub fn parse(bytes: &[u8]) -> Result<Envelope<Value>, ContractError> {
        Ok(serde_json::from_slice(bytes)?)
    }

    /// Reads the payload as `E`, refusing an envelope of another `type`.
    ///
    /// The type check comes first so that a payload that happens to fit `E`'s fields is never
    /// mistaken for it.
    pub fn decode<E: Event>(mut self) -> Result<Envelope<E>, ContractError> {
        if self.event_type != E::TYPE {
            return Err(ContractError::WrongType { expected: E::TYPE, found: self.event_type });
        }
        let data = serde_json::from_value(std::mem::take(&mut self.data))?;
        Ok(self.with_data(data))
    }
}

impl<T> Envelope<T> {
    fn with_data<U>(self, data: U) -> Envelope<U> {
        Envelope {
            specversion: self.specversion,
            id: self.id,
            source: self.source,
            event_type: self.event_type,
            subject: self.subject,
            time: self.time,
            datacontenttype: self.datacontenttype,
            traceparent: self.traceparent,
            data,
        }
    }
}

/// The CloudEvents `source` of a producing service: `/mercato/<service>`.
pub fn source_of(service: &str) -> String {
    format!("/mercato/{service}")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::orders::{OrderLine, OrderPlaced};
    use crate::users::UserDeleted;

    fn order_placed() -> OrderPlaced {
        OrderPlaced {
            order_id: Uuid::now_v7(),
            user_id: Uuid::now_v7(),
            order_version: 1,
            items: vec![OrderLine { product_id: Uuid::now_v7(), quantity: 2 }],
        }
    }

    #[test]
    fn a_new_envelope_takes_its_names_from_the_event() {
        let event = order_placed();
        let envelope = Envelope::new(event.clone(), 1_795_255_200_123, None);

        assert_eq!(envelope.specversion, "1.0");
        assert_eq!(envelope.source, "/mercato/orders");
        assert_eq!(envelope.event_type, "mercato.order.placed.v1");
        assert_eq!(envelope.subject, event.order_id.to_string());
        assert_eq!(envelope.time, "2026-11-21T10:00:00.123Z");
        assert_eq!(envelope.datacontenttype, "application/json");
        let id = Uuid::parse_str(&envelope.id).expect("the id is a UUID");
        assert_eq!(id.get_version_num(), 7);
    }

    #[test]
    fn every_envelope_gets_its_own_id() {
        let first = Envelope::new(order_placed(), 0, None);
        let second = Envelope::new(order_placed(), 0, None);
        assert_ne!(first.id, second.id);
    }

    #[test]
    fn an_envelope_survives_the_wire_and_decodes_to_the_typed_event() {
        let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned();
        let sent = Envelope::new(order_placed(), 1_795_255_200_123, Some(traceparent));

        let bytes = serde_json::to_vec(&sent).expect("serializes");
        let received = Envelope::parse(&bytes).expect("parses").decode::<OrderPlaced>();

        assert_eq!(received.expect("decodes"), sent);
    }

    #[test]
    fn into_raw_keeps_every_field() {
        let sent = Envelope::new(order_placed(), 0, None);
        let raw = sent.clone().into_raw().expect("serializes");
        assert_eq!(raw.id, sent.id);
        assert_eq!(raw.data["orderId"], json!(sent.data.order_id));
        assert_eq!(raw.decode::<OrderPlaced>().expect("decodes"), sent);
    }

    #[test]
    fn the_wire_format_uses_the_cloudevents_attribute_names() {
        let sent = Envelope::new(order_placed(), 0, None);
        let json = serde_json::to_value(&sent).expect("serializes");
        let mut keys: Vec<&str> =
            json.as_object().expect("an object").keys().map(String::as_str).collect();
        keys.sort_unstable();
        // `traceparent` is left out when there is none, as CloudEvents extensions are.
        assert_eq!(
            keys,
            ["data", "datacontenttype", "id", "source", "specversion", "subject", "time", "type"]
        );
    }

    #[test]
    fn decoding_as_another_event_type_fails_with_wrong_type() {
        let raw = Envelope::new(order_placed(), 0, None).into_raw().expect("serializes");

        let error = raw.decode::<UserDeleted>().expect_err("types differ");

        assert!(
            matches!(
                &error,
                ContractError::WrongType { expected: "mercato.user.deleted.v1", found }
                    if found == "mercato.order.placed.v1"
            ),
            "{error:?}"
        );
    }

    #[test]
    fn data_that_does_not_fit_the_type_is_malformed() {
        let mut raw = Envelope::new(order_placed(), 0, None).into_raw().expect("serializes");
        raw.data = json!({ "orderId": "not a uuid" });

        let error = raw.decode::<OrderPlaced>().expect_err("data is wrong");

        assert!(matches!(error, ContractError::Malformed(_)), "{error:?}");
    }

    #[test]
    fn a_body_that_is_not_an_envelope_is_malformed() {
        let error = Envelope::parse(br#"{"hello": "world"}"#).expect_err("not an envelope");
        assert!(matches!(error, ContractError::Malformed(_)), "{error:?}");
    }
}
