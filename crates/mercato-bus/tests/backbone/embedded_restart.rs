//! The embedded log across a process restart: every handle is dropped without settling (what a
//! killed process leaves behind), the file is opened afresh, and the unacked events are
//! delivered and applied once.

use mercato_testkit::wait_until;

use crate::harness::{Broker, BusChoice, EffectHandler, Misbehaviour, SETTLE, TestBed};

drill! {
    async fn unacked_events_survive_dropping_every_handle_of_the_embedded_log_and_are_applied_once(
        bus, backend
    ) {
        assert_eq!(bus, BusChoice::Embedded);
        let Some(mut bed) = TestBed::start(bus, backend, Broker::Shared).await else { return };
        let ids = bed.write_users(10).await;
        let handler = EffectHandler::new(&bed, "drill");
        handler.misbehave_on(&ids[5], Misbehaviour::HangOnce);
        let config = mercato_bus::ConsumerConfig {
            batch: 1,
            ack_wait: std::time::Duration::from_secs(1),
            ..bed.consumer_config("drill")
        };
        bed.start_relay();
        bed.start_consumer(config.clone(), handler.clone());
        wait_until("the consumer is inside the sixth event", SETTLE, || async {
            handler.is_hanging_on(&ids[5]).then_some(())
        })
        .await;
        bed.wait_until_backlog_is(0, SETTLE).await;
        let applied = bed.effects("drill").await;
        assert_eq!(applied.len(), 5, "one event per batch, the first five applied: {applied:?}");

        // The crash: no task finishes, nothing is settled, every handle on the log is dropped.
        bed.crash_tasks().await;
        bed.reopen_embedded_log().await;
        bed.start_consumer(config, handler.clone());
        bed.wait_until_applied_once("drill", &ids, SETTLE).await;
        bed.shutdown().await;
    } on [embedded_sqlite, embedded_postgres]
}
