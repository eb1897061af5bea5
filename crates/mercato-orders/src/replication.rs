//! [`Replication`]: this service's views of the users and products services, from their events.
//!
//! - `user.created` / `user.updated` keep `known_users`; `user.deleted` marks the user deleted for
//!   good (their tokens are refused from then on) and cancels their `pending` and `confirmed`
//!   orders, each with its `order.cancelled`, so the products service releases their stock.
//! - `product.created` / `product.updated` / `product.deleted` keep `catalog`, whose names a
//!   pending order shows.
//!
//! Neither view ever refuses an order: a user or product the replica has not heard of yet is
//! simply unknown. Events carry no version, so each row keeps the time of the newest event applied
//! (UUIDv7 ids sort by creation) and older events arriving late change nothing.

use async_trait::async_trait;
use mercato_bus::Outbox;
use mercato_bus::consumer::{Handler, HandlerError};
use mercato_contracts::{
    Envelope, Event, OrderCancelled, ProductCreated, ProductDeleted, ProductUpdated, UserCreated,
    UserDeleted, UserUpdated,
};
use mercato_platform::money::Money;
use mercato_platform::time::Timestamp;
use mercato_store::Database;
use mercato_store::sqlx::AnyConnection;
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use crate::db::orders;
use crate::db::replicas::{self, CatalogEntry};

/// The handler of the `orders-replicas` consumer.
#[derive(Clone)]
pub struct Replication {
    db: Database,
    outbox: Outbox,
}

impl std::fmt::Debug for Replication {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replication").finish_non_exhaustive()
    }
}

#[async_trait]
impl Handler for Replication {
    async fn handle(
        &self,
        conn: &mut AnyConnection,
        event: &Envelope<Value>,
    ) -> Result<(), HandlerError> {
        let reject = |error: serde_json::Error| {
            HandlerError::Reject(anyhow::anyhow!("unreadable {}: {error}", event.event_type))
        };
        let at = event.id.to_ascii_lowercase();
        let at = at.as_str();
        let db = &self.db;
        let type_ = event.event_type.as_str();
        if type_ == UserCreated::TYPE {
            let data = UserCreated::deserialize(&event.data).map_err(reject)?;
            replicas::apply_user(db, conn, data.user_id, Some(&data.role), false, at).await?;
        } else if type_ == UserUpdated::TYPE {
            let data = UserUpdated::deserialize(&event.data).map_err(reject)?;
            replicas::apply_user(db, conn, data.user_id, Some(&data.role), false, at).await?;
        } else if type_ == UserDeleted::TYPE {
            let data = UserDeleted::deserialize(&event.data).map_err(reject)?;
            if replicas::apply_user(db, conn, data.user_id, None, true, at).await? {
                self.cancel_orders_of(conn, data.user_id, event.traceparent.clone()).await?;
            }
        } else if type_ == ProductCreated::TYPE {
            let data = ProductCreated::deserialize(&event.data).map_err(reject)?;
            let entry = entry(data.product_id, data.name, &data.price, data.active)?;
            replicas::apply_product(db, conn, data.product_id, Some(&entry), at).await?;
        } else if type_ == ProductUpdated::TYPE {
            let data = ProductUpdated::deserialize(&event.data).map_err(reject)?;
            let entry = entry(data.product_id, data.name, &data.price, data.active)?;
            replicas::apply_product(db, conn, data.product_id, Some(&entry), at).await?;
        } else if type_ == ProductDeleted::TYPE {
            let data = ProductDeleted::deserialize(&event.data).map_err(reject)?;
            replicas::apply_product(db, conn, data.product_id, None, at).await?;
        }
        // Other events on the subjects this consumer reads are not its business.
        Ok(())
    }
}

fn entry(
    product_id: Uuid,
    name: String,
    price: &str,
    active: bool,
) -> Result<CatalogEntry, HandlerError> {
    let price = Money::parse(price)
        .map_err(|error| HandlerError::Reject(anyhow::anyhow!("price `{price}` {error}")))?;
    Ok(CatalogEntry { product_id, name, price_cents: price.cents(), active })
}

impl Replication {
    pub fn new(db: Database, outbox: Outbox) -> Self {
        Self { db, outbox }
    }

    /// Cancels a deleted user's open orders; returns how many.
    async fn cancel_orders_of(
        &self,
        conn: &mut AnyConnection,
        user_id: Uuid,
        trace: Option<String>,
    ) -> Result<usize, HandlerError> {
        let open = orders::open_of_user_for_update(&self.db, conn, user_id).await?;
        let now = Timestamp::now();
        let mut cancelled = 0;
        for mut order in open {
            if order.cancel(now) != Ok(true) {
                continue;
            }
            orders::update(&self.db, conn, &order).await?;
            let event =
                OrderCancelled { order_id: order.id, user_id, order_version: order.version };
            self.outbox.write(conn, event, now.millis(), trace.clone()).await?;
            cancelled += 1;
        }
        if cancelled > 0 {
            tracing::info!(%user_id, cancelled, "a deleted user's open orders were cancelled");
            metrics::counter!("orders_cancelled_total", "by" => "user_deleted")
                .increment(cancelled as u64);
        }
        Ok(cancelled)
    }
}
