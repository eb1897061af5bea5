//! Out-of-order delivery (consumer.rs, "Order"): the bus does not reorder, so events of one
//! aggregate can reach a handler newest first; a handler that applies only newer versions ends
//! in the same state either way.

use std::sync::Arc;

use async_trait::async_trait;
use mercato_bus::{Handler, HandlerError};
use mercato_contracts::{Envelope, OrderLine, OrderUpdated};
use mercato_store::Database;
use mercato_store::sqlx::{self, AnyConnection};
use serde_json::Value;
use uuid::Uuid;

use crate::harness::{Broker, SETTLE, TestBed};

/// Applies `order.updated` to `order_state`, version-aware (`versioned`) or blindly.
struct OrderStateHandler {
    db: Database,
    consumer: &'static str,
    versioned: bool,
}

#[async_trait]
impl Handler for OrderStateHandler {
    async fn handle(
        &self,
        conn: &mut AnyConnection,
        event: &Envelope<Value>,
    ) -> Result<(), HandlerError> {
        let update = event
            .clone()
            .decode::<OrderUpdated>()
            .map_err(|error| HandlerError::Reject(error.into()))?;
        let quantity: i64 = update.data.items.iter().map(|line| line.quantity).sum();
        let text = if self.versioned {
            "UPDATE order_state SET version = $1, quantity = $2 \
             WHERE consumer = $3 AND order_id = $4 AND version < $1"
        } else {
            "UPDATE order_state SET version = $1, quantity = $2 \
             WHERE consumer = $3 AND order_id = $4"
        };
        sqlx::query(self.db.sql(text))
            .bind(update.data.order_version)
            .bind(quantity)
            .bind(self.consumer)
            .bind(update.data.order_id.to_string())
            .execute(&mut *conn)
            .await?;
        sqlx::query(self.db.sql("INSERT INTO effects (event_id, consumer) VALUES ($1, $2)"))
            .bind(&event.id)
            .bind(self.consumer)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }
}

fn update(order_id: Uuid, user_id: Uuid, version: i64) -> OrderUpdated {
    OrderUpdated {
        order_id,
        user_id,
        order_version: version,
        items: vec![OrderLine { product_id: Uuid::nil(), quantity: version * 10 }],
    }
}

async fn state(bed: &TestBed, consumer: &str, order: Uuid) -> (i64, i64) {
    sqlx::query_as(
        bed.db
            .sql("SELECT version, quantity FROM order_state WHERE consumer = $1 AND order_id = $2"),
    )
    .bind(consumer)
    .bind(order.to_string())
    .fetch_one(bed.db.pool())
    .await
    .expect("the order's state")
}

drill! {
    async fn updates_of_one_order_delivered_newest_first_end_in_the_same_state_as_in_order(
        bus, backend
    ) {
        let Some(mut bed) = TestBed::start(bus, backend, Broker::Shared).await else { return };
        let user = Uuid::now_v7();
        let (in_order, reversed) = (Uuid::now_v7(), Uuid::now_v7());
        for consumer in ["versioned", "blind"] {
            for order in [in_order, reversed] {
                sqlx::query(bed.db.sql(
                    "INSERT INTO order_state (consumer, order_id, version, quantity) \
                     VALUES ($1, $2, 0, 0)",
                ))
                .bind(consumer)
                .bind(order.to_string())
                .execute(bed.db.pool())
                .await
                .expect("an order row");
            }
        }
        // Published straight onto the bus in this order: version 2 of `reversed` is stored, and
        // so delivered, before its version 1.
        let (a1, a1_message) = bed.message_for(update(in_order, user, 1));
        let (a2, a2_message) = bed.message_for(update(in_order, user, 2));
        let (b2, b2_message) = bed.message_for(update(reversed, user, 2));
        let (b1, b1_message) = bed.message_for(update(reversed, user, 1));
        bed.publish(vec![a1_message, a2_message, b2_message, b1_message]).await;

        for (consumer, versioned) in [("versioned", true), ("blind", false)] {
            let handler = OrderStateHandler { db: bed.db.clone(), consumer, versioned };
            bed.start_consumer(bed.consumer_config(consumer), Arc::new(handler));
        }
        let all = [a1, a2, b2, b1];
        bed.wait_until_applied_once("versioned", &all, SETTLE).await;
        bed.wait_until_applied_once("blind", &all, SETTLE).await;

        assert_eq!(state(&bed, "versioned", in_order).await, (2, 20));
        assert_eq!(
            state(&bed, "versioned", reversed).await,
            (2, 20),
            "out of order must end as in order"
        );
        // The control: a handler that ignores versions ends elsewhere, which shows the events
        // really arrived newest first.
        assert_eq!(state(&bed, "blind", in_order).await, (2, 20));
        assert_eq!(state(&bed, "blind", reversed).await, (1, 10));
        bed.shutdown().await;
    } on [embedded_sqlite, jetstream_sqlite]
}
