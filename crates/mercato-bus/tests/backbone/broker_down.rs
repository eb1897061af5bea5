//! Promise 1 with the broker down: events written meanwhile wait in the outbox and are all
//! applied once, after it is back.

use std::time::Duration;

use crate::harness::{AFTER_RESTART, Broker, BusChoice, EffectHandler, SETTLE, TestBed};

drill! {
    /// JetStream: a private server is killed while the service writes 50 events, then started
    /// again on the same store. Embedded: the relay only starts after the events are written.
    async fn events_written_while_the_broker_is_down_are_all_applied_once_after_it_returns(
        bus, backend
    ) {
        let Some(mut bed) = TestBed::start(bus, backend, Broker::Private).await else { return };
        let handler = EffectHandler::new(&bed, "drill");
        bed.start_consumer(bed.consumer_config("drill"), handler.clone());
        if bus == BusChoice::JetStream {
            bed.start_relay();
            // The whole path works before the fault: stream, durable consumer, relay.
            let before = bed.write_users(1).await;
            bed.wait_until_applied_once("drill", &before, SETTLE).await;
            bed.wait_until_backlog_is(0, SETTLE).await;
            bed.broker().kill().await;
        }

        let ids = bed.write_users(50).await;
        assert_eq!(bed.backlog().await, 50, "every event waits in the outbox");
        // Lets the relay (50 ms interval and backoff) try, and fail, while the bus is down:
        // nothing may be marked published or applied meanwhile.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(bed.backlog().await, 50, "nothing can be published while the broker is down");
        let applied = bed.effects("drill").await;
        assert!(ids.iter().all(|id| !applied.contains(id)), "applied while the broker was down");

        match bus {
            BusChoice::JetStream => bed.broker().start_again().await,
            BusChoice::Embedded => {
                bed.start_relay();
            }
        }
        bed.wait_until_applied_once("drill", &ids, AFTER_RESTART).await;
        bed.wait_until_backlog_is(0, SETTLE).await;
        bed.shutdown().await;
    } on [embedded_sqlite, embedded_postgres, jetstream_sqlite, jetstream_postgres]
}
