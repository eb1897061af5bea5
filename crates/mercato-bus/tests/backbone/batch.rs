//! A batch shares one transaction; one failing event must not hold back the others: they are
//! applied one per transaction and acked, and only the failing one comes back.

use std::time::{Duration, Instant};

use crate::harness::{Broker, EffectHandler, Misbehaviour, SETTLE, TestBed};
use mercato_bus::Consumer;
use mercato_bus::bus::{ConsumerSpec, Delivery};
use mercato_contracts::Envelope;

fn event_id(delivery: &Delivery) -> String {
    Envelope::parse(&delivery.payload).expect("an envelope").id
}

drill! {
    async fn one_failing_event_in_a_batch_of_ten_does_not_hold_back_the_other_nine(bus, backend) {
        let Some(mut bed) = TestBed::start(bus, backend, Broker::Shared).await else { return };
        let ids = bed.write_users(10).await;
        let failing = ids[4].clone();
        let handler = EffectHandler::new(&bed, "drill");
        handler.misbehave_on(&failing, Misbehaviour::Retry);
        bed.start_relay();
        bed.wait_until_backlog_is(0, SETTLE).await;

        let config = mercato_bus::ConsumerConfig {
            ack_wait: Duration::from_secs(1),
            ..bed.consumer_config("drill")
        };
        let mut subscription = bed
            .bus
            .subscribe(ConsumerSpec {
                durable_name: config.name.clone(),
                filter_subjects: config.filter_subjects.clone(),
                ack_wait: config.ack_wait,
            })
            .await
            .expect("the durable consumer");
        let mut batch: Vec<Delivery> = Vec::new();
        let deadline = Instant::now() + SETTLE;
        while batch.len() < 10 && Instant::now() < deadline {
            let more = subscription.fetch(10 - batch.len(), Duration::from_secs(1)).await;
            batch.extend(more.expect("a fetch"));
        }
        let fetched: Vec<String> = batch.iter().map(event_id).collect();
        assert_eq!(fetched, ids, "the ten events, in order, first attempts");
        assert!(batch.iter().all(|delivery| delivery.attempt == 1));

        let consumer = Consumer::new(bed.db.clone(), bed.bus.clone(), config, handler.clone());
        consumer.process(batch).await;
        let others: Vec<String> = ids.iter().filter(|id| **id != failing).cloned().collect();
        crate::harness::assert_applied_once(&bed.effects("drill").await, &others);
        assert!(!bed.effects("drill").await.contains(&failing));

        // Everything that comes back within twice `ack_wait`: unacked events would be back by
        // then, so only the failing one may come (after its 100 ms backoff).
        handler.behave_on(&failing);
        let mut redelivered: Vec<(String, u32)> = Vec::new();
        let window = Instant::now() + Duration::from_secs(2);
        while Instant::now() < window {
            let left = window.saturating_duration_since(Instant::now());
            let again = subscription.fetch(10, left).await.expect("a fetch");
            redelivered.extend(again.iter().map(|delivery| (event_id(delivery), delivery.attempt)));
            // Settled at once, so that it does not come back itself.
            consumer.process(again).await;
        }
        assert_eq!(redelivered, [(failing.clone(), 2)], "only the failing event comes back");
        crate::harness::assert_applied_once(&bed.effects("drill").await, &ids);
        bed.shutdown().await;
    } on [embedded_sqlite, jetstream_sqlite]
}

/// An [`EffectHandler`] that is offered batches: it records each offer (the event ids) and
/// applies the batch with its effects, or declines it.
struct Together {
    inner: std::sync::Arc<EffectHandler>,
    db: mercato_store::Database,
    accept: bool,
    offers: std::sync::Mutex<Vec<Vec<String>>>,
}

#[async_trait::async_trait]
impl mercato_bus::Handler for Together {
    async fn handle(
        &self,
        conn: &mut mercato_store::sqlx::AnyConnection,
        event: &Envelope<serde_json::Value>,
    ) -> Result<(), mercato_bus::HandlerError> {
        self.inner.handle(conn, event).await
    }

    async fn handle_many(
        &self,
        conn: &mut mercato_store::sqlx::AnyConnection,
        events: &[&Envelope<serde_json::Value>],
    ) -> Result<mercato_bus::Batch, mercato_bus::HandlerError> {
        self.offers.lock().expect("offers").push(events.iter().map(|e| e.id.clone()).collect());
        if !self.accept {
            return Ok(mercato_bus::Batch::Declined);
        }
        for event in events {
            mercato_store::sqlx::query(
                self.db.sql("INSERT INTO effects (event_id, consumer) VALUES ($1, $2)"),
            )
            .bind(&event.id)
            .bind("drill")
            .execute(&mut *conn)
            .await?;
        }
        Ok(mercato_bus::Batch::Applied)
    }
}

drill! {
    async fn a_handler_is_offered_a_batch_whole_and_may_decline_it(bus, backend) {
        let Some(mut bed) = TestBed::start(bus, backend, Broker::Shared).await else { return };
        let ids = bed.write_users(6).await;
        bed.start_relay();
        bed.wait_until_backlog_is(0, SETTLE).await;
        let config = bed.consumer_config("drill");
        let mut subscription = bed
            .bus
            .subscribe(ConsumerSpec {
                durable_name: config.name.clone(),
                filter_subjects: config.filter_subjects.clone(),
                ack_wait: Duration::from_secs(30),
            })
            .await
            .expect("the durable consumer");
        let mut batch: Vec<Delivery> = Vec::new();
        let deadline = Instant::now() + SETTLE;
        while batch.len() < 6 && Instant::now() < deadline {
            batch.extend(subscription.fetch(6 - batch.len(), Duration::from_secs(1)).await.expect("a fetch"));
        }
        assert_eq!(batch.iter().map(event_id).collect::<Vec<_>>(), ids);
        let handler = |accept| {
            std::sync::Arc::new(Together {
                inner: EffectHandler::new(&bed, "drill"),
                db: bed.db.clone(),
                accept,
                offers: std::sync::Mutex::default(),
            })
        };

        // The first two, declined: applied one by one instead.
        let declining = handler(false);
        let consumer = Consumer::new(bed.db.clone(), bed.bus.clone(), config.clone(), declining.clone());
        let rest = batch.split_off(2);
        consumer.process(batch).await;
        assert_eq!(*declining.offers.lock().expect("offers"), vec![ids[..2].to_vec()]);
        assert_eq!(declining.inner.calls().len(), 2, "declined: handled one by one");
        crate::harness::assert_applied_once(&bed.effects("drill").await, &ids[..2]);

        // The other four, accepted: one offer, nothing one by one, each applied once.
        let accepting = handler(true);
        let consumer = Consumer::new(bed.db.clone(), bed.bus.clone(), config, accepting.clone());
        consumer.process(rest).await;
        assert_eq!(*accepting.offers.lock().expect("offers"), vec![ids[2..].to_vec()]);
        assert!(accepting.inner.calls().is_empty(), "accepted: nothing one by one");
        crate::harness::assert_applied_once(&bed.effects("drill").await, &ids);
        bed.shutdown().await;
    } on [embedded_sqlite, jetstream_sqlite]
}
