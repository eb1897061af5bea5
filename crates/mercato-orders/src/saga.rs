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
use mercato_bus::consumer::{Handler, HandlerError};
use mercato_contracts::{
    Envelope, Event, InventoryRejected, InventoryReleased, InventoryReserved, OrderConfirmed,
    OrderRejected,
};
use mercato_platform::money::Money;
use mercato_platform::time::Timestamp;
use mercato_store::Database;
use mercato_store::sqlx::AnyConnection;
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
        let result = match &outcome {
            Outcome::Settled(Settled::Confirmed) => "confirmed",
            Outcome::Settled(Settled::Rejected { .. }) => "rejected",
            Outcome::Settled(Settled::ChangeRefused { .. }) => "change_refused",
            Outcome::Released => "released",
            Outcome::Ignored => "ignored",
        };
        metrics::counter!("orders_saga_answers_total", "result" => result).increment(1);
        tracing::debug!(event_id = %event.id, ?outcome, "inventory answer applied");
        Ok(())
    }
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
        let trace = event.traceparent.clone();
        let millis = now.millis();
        match &settled {
            Settled::Confirmed => {
                self.outbox.write(conn, confirmed(&order, None), millis, trace).await?;
            }
            Settled::ChangeRefused { reason } => {
                let event = confirmed(&order, Some(reason.clone()));
                self.outbox.write(conn, event, millis, trace).await?;
            }
            Settled::Rejected { reason } => {
                let event = OrderRejected {
                    order_id: order.id,
                    user_id: order.user_id,
                    status: order.status.as_str().to_owned(),
                    total: None,
                    reason: Some(reason.clone()),
                };
                self.outbox.write(conn, event, millis, trace).await?;
            }
        }
        Ok(Outcome::Settled(settled))
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
