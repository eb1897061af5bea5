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
