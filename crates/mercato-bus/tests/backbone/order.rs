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
             WHERE consumer = $3 AND order_id = $4 AND version < $5"
        } else {
            "UPDATE order_state SET version = $1, quantity = $2 \
             WHERE consumer = $3 AND order_id = $4"
        };
        let mut update_query = sqlx::query(self.db.sql(text))
            .bind(update.data.order_version)
            .bind(quantity)
            .bind(self.consumer)
            .bind(update.data.order_id.to_string());
        if self.versioned {
            // Placeholders are used once each (see mercato_store::dialect): the version again.
            update_query = update_query.bind(update.data.order_version);
        }
        update_query.execute(&mut *conn).await?;
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

/// The other side of order: events a service records together with `Outbox::write_all` (of
/// several types, and more than one insert statement's worth) get sequences in the order given,
/// so the relay publishes them in that order, on every database backend.
mod events_written_together_are_stored_and_published_in_the_order_given {
    use std::collections::HashSet;
    use std::time::{Duration, Instant};

    use mercato_bus::bus::ConsumerSpec;
    use mercato_bus::outbox::{OutboxEvent, ROWS_PER_INSERT};
    use mercato_contracts::{Event, UserCreated};
    use mercato_store::Backend;

    use super::*;
    use crate::harness::{BusChoice, now_millis, user_created};

    async fn run(backend: Backend) {
        let Some(mut bed) = TestBed::start(BusChoice::Embedded, backend, Broker::Shared).await
        else {
            return;
        };
        let order = Uuid::now_v7();
        let count = 2 * ROWS_PER_INSERT + 5;
        let now = now_millis();
        let events: Vec<OutboxEvent> = (0..count)
            .map(|i| match i % 3 {
                2 => OutboxEvent::new(update(order, Uuid::nil(), i as i64), now, None),
                _ => OutboxEvent::new(user_created(), now, None),
            })
            .collect::<Result<_, _>>()
            .expect("the events serialize");
        let given: Vec<String> = events.iter().map(|event| event.id().to_owned()).collect();
        let subject = |i: usize| match i % 3 {
            2 => format!("{}.{}.{}", bed.prefix, OrderUpdated::AGGREGATE, OrderUpdated::ACTION),
            _ => format!("{}.{}.{}", bed.prefix, UserCreated::AGGREGATE, UserCreated::ACTION),
        };

        let mut tx = bed.db.begin().await.expect("a transaction");
        let ids = bed.outbox.write_all(&mut tx, events).await.expect("the outbox rows");
        tx.commit().await.expect("the commit");
        bed.outbox.notify();
        assert_eq!(ids, given, "the ids come back in the order given");
        assert_eq!(ids.iter().collect::<HashSet<_>>().len(), count, "every event has its own id");

        let stored = bed.unpublished_messages().await;
        let stored_ids: Vec<&str> =
            stored.iter().map(|message| message.event_id.as_str()).collect();
        assert_eq!(stored_ids, ids, "sequence order is the order given");
        for (i, message) in stored.iter().enumerate() {
            assert_eq!(message.subject, subject(i), "the subject of event {i}");
            let envelope = Envelope::parse(&message.payload).expect("an envelope");
            assert_eq!(envelope.id, message.event_id, "the payload of event {i} is its own");
        }

        bed.start_relay();
        bed.wait_until_backlog_is(0, SETTLE).await;
        let mut subscription = bed
            .bus
            .subscribe(ConsumerSpec {
                durable_name: "order-check".to_owned(),
                filter_subjects: vec![format!("{}.>", bed.prefix)],
                ack_wait: Duration::from_secs(30),
            })
            .await
            .expect("a durable consumer");
        let mut published = Vec::with_capacity(count);
        let deadline = Instant::now() + SETTLE;
        while published.len() < count && Instant::now() < deadline {
            let batch = subscription
                .fetch(count - published.len(), Duration::from_secs(1))
                .await
                .expect("a fetch");
            published.extend(
                batch
                    .iter()
                    .map(|delivery| Envelope::parse(&delivery.payload).expect("an envelope").id),
            );
        }
        assert_eq!(published, ids, "the relay publishes them in the order given");
        bed.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        run(Backend::Sqlite).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        run(Backend::Postgres).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mysql() {
        run(Backend::MySql).await
    }
}
