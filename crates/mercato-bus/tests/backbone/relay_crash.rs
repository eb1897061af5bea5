//! Promises 1 and 2 when the relay dies between publishing and marking: it sends the rows again,
//! the bus drops the copies by event id, and a copy that gets through anyway (a different
//! message id, or after the duplicate window) is dropped by the consumer's inbox.

use crate::harness::{Broker, EffectHandler, SETTLE, TestBed, user_created};

drill! {
    async fn a_relay_that_died_before_marking_sends_again_and_the_bus_keeps_one_copy(
        bus, backend
    ) {
        let Some(mut bed) = TestBed::start(bus, backend, Broker::Shared).await else { return };
        let ids = bed.write_users(20).await;
        // What a relay that crashed right after its publish was acked had done: every row is on
        // the bus, none is marked.
        let sent = bed.unpublished_messages().await;
        assert_eq!(sent.len(), 20);
        bed.publish(sent).await;
        assert_eq!(bed.backlog().await, 20);

        let handler = EffectHandler::new(&bed, "drill");
        bed.start_relay();
        bed.start_consumer(bed.consumer_config("drill"), handler.clone());
        bed.wait_until_backlog_is(0, SETTLE).await;
        bed.wait_until_applied_once("drill", &ids, SETTLE).await;
        assert_eq!(bed.stream_messages().await, 20, "the bus stored a re-sent event twice");
        bed.shutdown().await;
    } on [embedded_sqlite, embedded_postgres, jetstream_sqlite, jetstream_postgres]
}

drill! {
    async fn the_same_event_delivered_twice_is_applied_once(bus, backend) {
        let Some(mut bed) = TestBed::start(bus, backend, Broker::Shared).await else { return };
        let handler = EffectHandler::new(&bed, "drill");
        bed.start_consumer(bed.consumer_config("drill"), handler.clone());

        let (event_id, message) = bed.message_for(user_created());
        // The same envelope under another message id gets past the bus's deduplication, as a
        // re-send after the duplicate window would.
        let copy = mercato_bus::bus::OutgoingMessage {
            event_id: uuid::Uuid::now_v7().to_string(),
            ..message.clone()
        };
        // Sent after both copies, so once it is applied both copies have been handled
        // (one consumer handles a durable's messages in stream order).
        let (sentinel, last) = bed.message_for(user_created());
        bed.publish(vec![message, copy, last]).await;
        assert_eq!(bed.stream_messages().await, 3, "both copies must reach the consumer");

        bed.wait_until_applied_once("drill", &[event_id.clone(), sentinel], SETTLE).await;
        assert_eq!(handler.calls_for(&event_id), 1, "the inbox let the copy reach the handler");
        bed.shutdown().await;
    } on [embedded_sqlite, jetstream_sqlite]
}
