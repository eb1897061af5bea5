//! The one small trait with two implementations: [`EventBus`].
//!
//! A bus stores published messages durably, dropping re-sends of an event id it already has, and
//! delivers them to durable consumers at least once: a delivery that is not acked comes back
//! after `ack_wait`; a nak brings it back after the given delay. Several replicas of a service
//! share one durable consumer (each message goes to one of them). Dead letters are the runner's
//! decision ([`crate::consumer`]); the bus only stores them and can redrive them.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

/// Why a bus operation failed. Every variant is worth retrying later except `Invalid`.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The broker (or the log's storage) cannot be reached right now.
    #[error("the event bus is unavailable: {0}")]
    Unavailable(String),
    /// The request itself is wrong (bad subject, unknown dead letter).
    #[error("invalid bus request: {0}")]
    Invalid(String),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// One message for the bus: an event's envelope as JSON, under its full subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    /// The event id: the broker drops a second message with the same id (`Nats-Msg-Id`).
    pub event_id: String,
    /// The full subject, prefix included (`mercato.user.created`).
    pub subject: String,
    pub payload: Bytes,
}

/// A durable consumer: who consumes, which subjects, and how redelivery behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerSpec {
    /// Durable name shared by every replica of the consuming service and purpose
    /// (`orders-user-replica`). Letters, digits, `-` and `_`.
    pub durable_name: String,
    /// Subject filters, NATS wildcards allowed (`mercato.order.*`, `mercato.>`).
    pub filter_subjects: Vec<String>,
    /// How long a delivery may stay unacked before it is delivered again.
    pub ack_wait: Duration,
}

/// How a delivery is settled. Exactly one call per delivery; dropping it without settling is
/// the same as a crash: the message comes back after `ack_wait`.
#[async_trait]
pub trait Settle: Send + Sync {
    /// Done: never deliver again.
    async fn ack(self: Box<Self>) -> Result<(), BusError>;
    /// Failed: deliver again after `delay`.
    async fn nak(self: Box<Self>, delay: Duration) -> Result<(), BusError>;
    /// Never deliver again (it has been dead-lettered).
    async fn term(self: Box<Self>) -> Result<(), BusError>;
}

/// One message handed to a consumer.
pub struct Delivery {
    pub subject: String,
    pub payload: Bytes,
    /// 1 on the first delivery, then 2, 3, ...
    pub attempt: u32,
    /// The bus's position of the message (stream sequence), for logs and dead letters.
    pub sequence: u64,
    pub settle: Box<dyn Settle>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("subject", &self.subject)
            .field("attempt", &self.attempt)
            .field("sequence", &self.sequence)
            .finish_non_exhaustive()
    }
}

/// A durable consumer's stream of deliveries.
#[async_trait]
pub trait Subscription: Send {
    /// Up to `max` deliveries: returns as soon as at least one is available, or empty after
    /// `wait`.
    async fn fetch(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, BusError>;

    /// Acks deliveries of this subscription whose events have been handled: one outcome per
    /// delivery, in order. By default each is acked on its own (a JetStream ack is a publish
    /// that nobody waits for); the embedded log acks a batch in one write.
    async fn ack_all(&mut self, deliveries: Vec<Delivery>) -> Vec<Result<(), BusError>> {
        let mut outcomes = Vec::with_capacity(deliveries.len());
        for delivery in deliveries {
            outcomes.push(delivery.settle.ack().await);
        }
        outcomes
    }
}

/// A message parked after it kept failing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The dead letter's own id (its position in the dead-letter store).
    pub id: u64,
    pub consumer: String,
    pub subject: String,
    pub payload: Bytes,
    pub error: String,
    pub attempts: u32,
    /// Epoch milliseconds.
    pub failed_at: i64,
}

/// An event bus: JetStream ([`crate::jetstream`]) or the embedded log ([`crate::embedded`]).
#[async_trait]
pub trait EventBus: Send + Sync + 'static {
    /// Publishes `messages` in order, with acknowledgements pipelined (never one awaited round
    /// trip per message). One outcome per message, in order: `Ok` once stored durably (or
    /// dropped as a duplicate of an id already stored).
    async fn publish(&self, messages: Vec<OutgoingMessage>) -> Vec<Result<(), BusError>>;

    /// Opens (creating when missing) the durable consumer `spec`.
    async fn subscribe(&self, spec: ConsumerSpec) -> Result<Box<dyn Subscription>, BusError>;

    /// Stores a message that a consumer gave up on, with the reason.
    async fn dead_letter(
        &self,
        consumer: &str,
        delivery: &Delivery,
        error: &str,
    ) -> Result<(), BusError>;

    /// The stored dead letters, oldest first, at most `limit`.
    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, BusError>;

    /// Publishes the dead letter `id` again under its subject (a new delivery for every
    /// consumer of that subject; consumers that handled it already skip it by event id) and
    /// removes it from the dead letters.
    async fn redrive(&self, id: u64) -> Result<(), BusError>;

    /// Messages published from now on that match `filter_subjects`, not durable (for
    /// `mercato events tail` and the gateway's subscriptions).
    async fn tail(
        &self,
        filter_subjects: Vec<String>,
    ) -> Result<futures::stream::BoxStream<'static, (String, Bytes)>, BusError>;

    /// Sends `payload` on `subject` to whoever tails it right now, storing nothing: a hint
    /// between instances (such as "wake the requests held for this order"), never something a
    /// result depends on. It is lost when nobody listens or the broker is unreachable.
    /// `subject` must lie outside the event stream: see [`signal_subject`].
    async fn signal(&self, subject: String, payload: Bytes) -> Result<(), BusError>;

    /// Readiness: `Ok(detail)` when the bus can take messages.
    async fn check(&self) -> Result<String, String>;

    /// How far the durable consumer `durable_name` is behind: messages not yet delivered plus
    /// deliveries not yet acked (for the `bus_consumer_lag` gauge).
    async fn consumer_lag(&self, durable_name: &str) -> Result<u64, BusError>;
}

/// True when `subject` matches the NATS-style `filter` (`*` one token, `>` the rest).
pub fn subject_matches(filter: &str, subject: &str) -> bool {
    let mut filter_tokens = filter.split('.');
    let mut subject_tokens = subject.split('.');
    loop {
        match (filter_tokens.next(), subject_tokens.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(f), Some(s)) if f == s => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// The subject of signal `name` between the instances of one deployment: `signal.<prefix>.<name>`,
/// outside the event stream (`<prefix>.>`) so that nothing stores it.
pub fn signal_subject(prefix: &str, name: &str) -> String {
    format!("signal.{prefix}.{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_match_nats_wildcards() {
        assert!(subject_matches("mercato.>", "mercato.user.created"));
        assert!(subject_matches("mercato.user.*", "mercato.user.created"));
        assert!(subject_matches("mercato.user.created", "mercato.user.created"));
        assert!(!subject_matches("mercato.user.*", "mercato.order.placed"));
        assert!(!subject_matches("mercato.user.*", "mercato.user.created.extra"));
        assert!(!subject_matches("mercato.>", "mercato"));
        assert!(!subject_matches("other.>", "mercato.user.created"));
        assert!(subject_matches("mercato.*.created", "mercato.product.created"));
    }
}
