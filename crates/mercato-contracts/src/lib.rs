//! The wire contract of every Mercato event.
//!
//! Services meet only through HTTP and events (`DESIGN.md`, "Event backbone"); this crate
//! owns the event half of that contract, so that a producer and its consumers cannot disagree on a
//! field name without a test noticing:
//!
//! - [`envelope`]: [`Envelope`], the CloudEvents 1.0 structured-mode document every event travels
//!   in, built from a typed payload with [`Envelope::new`] and turned back into one with
//!   [`Envelope::decode`], which checks the `type`.
//! - [`event`]: the [`Event`] trait that ties a payload type to its CloudEvents `type`, aggregate,
//!   action and producing service.
//! - [`subjects`]: NATS subject and JetStream stream names derived from the deployment prefix.
//! - [`users`], [`products`], [`inventory`], [`orders`]: one struct per event `data`, named as a
//!   past-tense fact (`OrderPlaced`), with the field names of `API.md` ("Events").
//! - [`catalog`](mod@catalog): every event with its producer, consumers and the JSON Schema of its
//!   `data`.
//! - [`asyncapi`](mod@asyncapi): the AsyncAPI 3.0 document of the whole event backbone, generated
//!   from the types.
//! - [`timestamp`]: RFC 3339 rendering of the envelope's `time`.
//!
//! It must not do IO (no bus, no database, no files) and holds no service logic: publishing, the
//! outbox and consuming live in the bus crate and the services. Everything here is plain data and
//! pure functions, so any crate can depend on it.
//!
//! # Versioning
//!
//! Every type ends in its version (`.v1` today). Adding a field that consumers may ignore is
//! compatible (the payload types never deny unknown fields). A breaking change to a payload
//! (removing or renaming a field, changing its type or meaning, adding an enum variant that old
//! consumers cannot read) is a new type ending in `.v2` with its own struct: the producer emits
//! both until every consumer reads `.v2`, and old consumers keep reading `.v1` meanwhile.
//!
//! # Where the schemas live
//!
//! The JSON Schema of every payload is committed as
//! `crates/mercato-contracts/schemas/<type>.json` (and the envelope's as `schemas/envelope.json`),
//! the AsyncAPI document as `crates/mercato-contracts/asyncapi.json` (prefix `mercato`). The
//! `snapshots` test regenerates both and fails when a payload changed; after a deliberate change
//! run `UPDATE_SNAPSHOTS=1 cargo test -p mercato-contracts --test snapshots` and review the diff.

pub mod asyncapi;
pub mod catalog;
pub mod envelope;
pub mod event;
pub mod inventory;
pub mod orders;
pub mod products;
pub mod subjects;
pub mod timestamp;
pub mod users;

pub use asyncapi::asyncapi;
pub use catalog::{EventInfo, catalog, envelope_schema};
pub use envelope::{ContractError, Envelope};
pub use event::Event;
pub use inventory::{
    InventoryChangeReason, InventoryRejected, InventoryReleased, InventoryReserved,
    InventoryUpdated, PricedLine, RejectionReason,
};
pub use orders::{
    MAX_LINE_QUANTITY, MAX_ORDER_LINES, OrderCancelled, OrderConfirmed, OrderDelivered, OrderLine,
    OrderPlaced, OrderRejected, OrderShipped, OrderUpdated,
};
pub use products::{ProductCreated, ProductDeleted, ProductUpdated};
pub use subjects::{dead_letter_stream_name, nats_subject, stream_name, stream_subjects};
pub use timestamp::format_rfc3339_millis;
pub use users::{UserCreated, UserDeleted, UserUpdated};
