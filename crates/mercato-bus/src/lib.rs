//! Mercato's event backbone: how a state change becomes an event that every interested service
//! applies exactly once, whatever fails in between (DESIGN.md promises 1, 2 and 5).
//!
//! - [`outbox`]: [`Outbox::write`] (or [`Outbox::write_all`], several in one statement) puts an
//!   event in the service's own database in the caller's transaction; the [`Relay`] publishes
//!   those rows with many acks in flight, retries with backoff while the bus is down, and marks
//!   exactly what was acknowledged. [`MIGRATIONS`] are the `outbox` and `inbox` tables every
//!   service adds to its database.
//! - [`consumer`]: [`Consumer`] runs a durable consumer: inbox row and effect in one transaction,
//!   ack after commit, retries with backoff, dead letters after `max_attempts`. Handlers must cope
//!   with events of one aggregate in any order (the module docs say how the saga does).
//! - [`tail`]: [`tail::follow`] reads every event from now on in *this* instance (no durable
//!   consumer), reopening the tail after broker outages: live subscriptions, held requests.
//! - [`bus`]: the [`EventBus`] trait, the one abstraction with two implementations:
//!   - [`jetstream`]: NATS JetStream (`mercato serve`);
//!   - [`embedded`]: a durable log in a SQLite file in the data dir (`mercato up`, tests).
//!
//! It must not know any service's tables or events beyond the envelope.

pub mod bus;
pub mod consumer;
pub mod embedded;
pub mod jetstream;
pub mod outbox;
pub mod tail;

/// Resolves when `stop` turns true. A dropped sender never stops anything: the task then runs
/// until the process ends (waiting on `changed()` alone would return at once, forever).
pub(crate) async fn stopped(stop: &mut tokio::sync::watch::Receiver<bool>) {
    if stop.wait_for(|stopped| *stopped).await.is_err() {
        std::future::pending::<()>().await;
    }
}

pub use bus::{BusError, EventBus};
pub use consumer::{Batch, Consumer, ConsumerConfig, Handler, HandlerError};
pub use outbox::{MIGRATIONS, Outbox, OutboxEvent, Relay, RelaySettings};
