//! The orders service's side of the saga: [`Saga`] applies the products service's answers.
//!
//! - `inventory.reserved` confirms the order (or its item change) with the products service's
//!   unit prices and names, and emits `order.confirmed` with the total.
//! - `inventory.rejected` rejects a placement (`order.rejected` with the reason), or undoes an item
//!   change: the previous items come back, `lastUpdateRejection` says why, and `order.confirmed`
//!   carries the reason.
//! - `inventory.released` records that a cancelled order's stock is back (what a held cancel
//!   waits for).
//!
//! Each answer names the `orderVersion` it answers; the order takes only the one it awaits, so
//! late, duplicated and reordered answers change nothing. Every change is written with its events
//! in the consumer's transaction (after the inbox row), and requests held by `Prefer: wait` are
//! woken after the commit (see [`crate::waiters`]).

use async_trait::async_trait;
use mercato_bus::Outbox;
use mercato_bus::consumer::{Batch, Handler, HandlerError};
use mercato_bus::outbox::OutboxEvent;
use mercato_contracts::{
    Envelope, Event, InventoryRejected, InventoryReleased, InventoryReserved, OrderConfirmed,
    OrderRejected,
};
use mercato_platform::money::Money;
use mercato_platform::time::Timestamp;
use mercato_store::Database;
use mercato_store::sqlx::{self, AnyConnection};
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use crate::db::orders;
use crate::order::{Order, Settled};

/// What applying one answer did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Settled(Settled),
    /// A cancelled order's stock is back.
    Released,
    /// Not the answer the order waits for, or an order this service does not have.
    Ignored,
}

/// The handler of the `orders-saga` consumer.
#[derive(Clone)]
pub struct Saga {
    db: Database,
    outbox: Outbox,
}

impl std::fmt::Debug for Saga {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Saga").finish_non_exhaustive()
    }
}

#[async_trait]
impl Handler for Saga {
    async fn handle(
        &self,
        conn: &mut AnyConnection,
        event: &Envelope<Value>,
    ) -> Result<(), HandlerError> {
        let outcome = self.apply(conn, event).await?;
        count(&outcome);
        tracing::debug!(event_id = %event.id, ?outcome, "inventory answer applied");
        Ok(())
    }

    /// Reservations and refusals of distinct orders are applied together
    /// ([`Saga::apply_many`]); any other batch is declined and applied one by one.
    async fn handle_many(
        &self,
        conn: &mut AnyConnection,
        events: &[&Envelope<Value>],
    ) -> Result<Batch, HandlerError> {
        let Some(outcomes) = self.apply_many(conn, events).await? else {
            return Ok(Batch::Declined);
        };
        outcomes.iter().for_each(count);
        tracing::debug!(answers = outcomes.len(), "inventory answers applied together");
        Ok(Batch::Applied)
    }
}

fn count(outcome: &Outcome) {
    let result = match outcome {
        Outcome::Settled(Settled::Confirmed) => "confirmed",
        Outcome::Settled(Settled::Rejected { .. }) => "rejected",
        Outcome::Settled(Settled::ChangeRefused { .. }) => "change_refused",
        Outcome::Released => "released",
        Outcome::Ignored => "ignored",
    };
    metrics::counter!("orders_saga_answers_total", "result" => result).increment(1);
}

/// The order an `inventory.*` answer is about, for waking its waiters.
pub fn order_of(event: &Envelope<Value>) -> Option<Uuid> {
    event.data.get("orderId")?.as_str()?.parse().ok()
}

enum Answer {
    Reserved(InventoryReserved),
    Rejected(InventoryRejected),
    Released(InventoryReleased),
}

fn read(event: &Envelope<Value>) -> Result<Answer, HandlerError> {
    let reject = |error: serde_json::Error| {
        HandlerError::Reject(anyhow::anyhow!("unreadable {}: {error}", event.event_type))
    };
    let type_ = event.event_type.as_str();
    if type_ == InventoryReserved::TYPE {
        InventoryReserved::deserialize(&event.data).map(Answer::Reserved).map_err(reject)
    } else if type_ == InventoryRejected::TYPE {
        InventoryRejected::deserialize(&event.data).map(Answer::Rejected).map_err(reject)
    } else if type_ == InventoryReleased::TYPE {
        InventoryReleased::deserialize(&event.data).map(Answer::Released).map_err(reject)
    } else {
        Err(HandlerError::Reject(anyhow::anyhow!("not an inventory answer: {type_}")))
    }
}

impl Saga {
    pub fn new(db: Database, outbox: Outbox) -> Self {
        Self { db, outbox }
    }

    /// Applies one answer inside the caller's transaction.
    pub async fn apply(
        &self,
        conn: &mut AnyConnection,
        event: &Envelope<Value>,
    ) -> Result<Outcome, HandlerError> {
        let answer = read(event)?;
        let order_id = match &answer {
            Answer::Reserved(data) => data.order_id,
            Answer::Rejected(data) => data.order_id,
            Answer::Released(data) => data.order_id,
        };
        let Some(mut order) = orders::find_for_update(&self.db, conn, order_id).await? else {
            tracing::warn!(%order_id, event_id = %event.id, "an answer about an unknown order");
            return Ok(Outcome::Ignored);
        };
        let now = Timestamp::now();
        let settled = match answer {
            Answer::Reserved(data) => order.reserved(data.order_version, &data.items, now),
            Answer::Rejected(data) => {
                order.refused(data.order_version, data.reason, data.product_id, now)
            }
            Answer::Released(_) => {
                if order.released() {
                    orders::update(&self.db, conn, &order).await?;
                    return Ok(Outcome::Released);
                }
                return Ok(Outcome::Ignored);
            }
        };
        let Some(settled) = settled else { return Ok(Outcome::Ignored) };
        orders::update(&self.db, conn, &order).await?;
        let event = settled_event(&order, &settled, now.millis(), event.traceparent.clone())?;
        self.outbox.write_all(conn, vec![event]).await?;
        Ok(Outcome::Settled(settled))
    }

    /// Applies reservations and refusals of distinct orders together, with exactly the outcome
    /// of [`Saga::apply`] on each in order: one read of every order (locked, in id order), the
    /// transitions in memory, one multi-row write of the changed orders and one insert of their
    /// events. `None`, having written nothing, when the batch holds anything else (a `released`, an
    /// unreadable answer, two answers about one order): those take the one-by-one path.
    pub async fn apply_many(
        &self,
        conn: &mut AnyConnection,
        events: &[&Envelope<Value>],
    ) -> Result<Option<Vec<Outcome>>, HandlerError> {
        let mut answers = Vec::with_capacity(events.len());
        let mut ids = std::collections::HashSet::new();
        for event in events {
            let answer = match read(event) {
                Ok(Answer::Released(_)) | Err(_) => return Ok(None),
                Ok(answer) => answer,
            };
            let order_id = match &answer {
                Answer::Reserved(data) => data.order_id,
                Answer::Rejected(data) => data.order_id,
                Answer::Released(data) => data.order_id,
            };
            if !ids.insert(order_id) {
                return Ok(None);
            }
            answers.push((order_id, answer, *event));
        }
        let order_ids: Vec<Uuid> = answers.iter().map(|(id, _, _)| *id).collect();
        let mut found: std::collections::HashMap<Uuid, Order> =
            orders::find_many_for_update(&self.db, conn, &order_ids)
                .await?
                .into_iter()
                .map(|order| (order.id, order))
                .collect();
        let now = Timestamp::now();
        let mut outcomes = Vec::with_capacity(answers.len());
        let mut changed = Vec::new();
        let mut emitted = Vec::new();
        for (order_id, answer, event) in answers {
            let Some(mut order) = found.remove(&order_id) else {
                tracing::warn!(%order_id, event_id = %event.id, "an answer about an unknown order");
                outcomes.push(Outcome::Ignored);
                continue;
            };
            let settled = match answer {
                Answer::Reserved(data) => order.reserved(data.order_version, &data.items, now),
                Answer::Rejected(data) => {
                    order.refused(data.order_version, data.reason, data.product_id, now)
                }
                Answer::Released(_) => None,
            };
            let Some(settled) = settled else {
                outcomes.push(Outcome::Ignored);
                continue;
            };
            emitted.push(settled_event(&order, &settled, now.millis(), event.traceparent.clone())?);
            changed.push(order);
            outcomes.push(Outcome::Settled(settled));
        }
        let changed: Vec<&Order> = changed.iter().collect();
        orders::update_all(&self.db, conn, &changed).await?;
        self.outbox.write_all(conn, emitted).await?;
        Ok(Some(outcomes))
    }
}

/// The event a settled order emits: `order.confirmed` (with the refusal's reason when an item
/// change was refused) or `order.rejected`.
fn settled_event(
    order: &Order,
    settled: &Settled,
    millis: i64,
    trace: Option<String>,
) -> Result<OutboxEvent, sqlx::Error> {
    match settled {
        Settled::Confirmed => OutboxEvent::new(confirmed(order, None), millis, trace),
        Settled::ChangeRefused { reason } => {
            OutboxEvent::new(confirmed(order, Some(reason.clone())), millis, trace)
        }
        Settled::Rejected { reason } => {
            let event = OrderRejected {
                order_id: order.id,
                user_id: order.user_id,
                status: order.status.as_str().to_owned(),
                total: None,
                reason: Some(reason.clone()),
            };
            OutboxEvent::new(event, millis, trace)
        }
    }
}

fn confirmed(order: &Order, reason: Option<String>) -> OrderConfirmed {
    OrderConfirmed {
        order_id: order.id,
        user_id: order.user_id,
        status: order.status.as_str().to_owned(),
        total: order.total.map(|total: Money| total.to_string()),
        reason,
    }
}
