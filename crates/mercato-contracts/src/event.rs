//! The [`Event`] trait: what ties a payload type to its place on the bus.

use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The `data` of one event type.
///
/// The constants are the single source of the CloudEvents `type`, the NATS subject
/// (`<prefix>.<AGGREGATE>.<ACTION>`) and the envelope's `source` (`/mercato/<PRODUCER>`), so a
/// producer cannot publish a payload under the wrong name.
pub trait Event: Serialize + DeserializeOwned + JsonSchema + Send + Sync + 'static {
    /// The full CloudEvents `type`: `mercato.<aggregate>.<action>.v<N>`.
    const TYPE: &'static str;
    /// The aggregate the event is about: `user`, `product`, `inventory` or `order`.
    const AGGREGATE: &'static str;
    /// What happened, in the past tense: `created`, `placed`, `reserved`...
    const ACTION: &'static str;
    /// The only service allowed to emit it: `users`, `products` or `orders`.
    const PRODUCER: &'static str;
    /// One sentence for the catalog and the AsyncAPI document.
    const DESCRIPTION: &'static str;

    /// The envelope's `subject`: the id of the aggregate instance the event is about.
    fn subject(&self) -> String;
}

/// Implements [`Event`] for a payload struct; the `type` is built from the aggregate and action
/// literals so the three can never disagree.
macro_rules! impl_event {
    (
        $payload:ty,
        aggregate: $aggregate:literal,
        action: $action:literal,
        producer: $producer:literal,
        subject: $field:ident,
        description: $description:literal $(,)?
    ) => {
        impl $crate::event::Event for $payload {
            const TYPE: &'static str = concat!("mercato.", $aggregate, ".", $action, ".v1");
            const AGGREGATE: &'static str = $aggregate;
            const ACTION: &'static str = $action;
            const PRODUCER: &'static str = $producer;
            const DESCRIPTION: &'static str = $description;

            fn subject(&self) -> String {
                self.$field.to_string()
            }
        }
    };
}

pub(crate) use impl_event;
