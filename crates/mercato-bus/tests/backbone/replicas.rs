//! Promises 1 and 2 with two instances of one service (`mercato serve` replicas): two relays
//! over the same outbox may publish the same row, and two runners of the same durable consumer
//! share its deliveries; each event is still stored once and applied once.

use crate::harness::{Broker, EffectHandler, SETTLE, TestBed};

drill! {
    async fn two_replicas_share_the_outbox_and_the_consumer_and_apply_each_event_once(
        bus, backend
    ) {
        let Some(mut bed) = TestBed::start(bus, backend, Broker::Shared).await else { return };
        let handler = EffectHandler::new(&bed, "drill");
        for _replica in 0..2 {
            bed.start_relay();
            bed.start_consumer(bed.consumer_config("drill"), handler.clone());
        }
        // Written in several commits while both relays run, as two replicas' requests would.
        let mut ids = Vec::new();
        for _ in 0..10 {
            ids.extend(bed.write_users(20).await);
        }
        bed.wait_until_backlog_is(0, SETTLE).await;
        bed.wait_until_applied_once("drill", &ids, SETTLE).await;
        assert_eq!(bed.stream_messages().await, 200, "a row published by both relays was stored twice");
        bed.shutdown().await;
    } on [embedded_sqlite, jetstream_sqlite, jetstream_postgres]
}
