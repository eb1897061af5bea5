//! Promise 2 when a consumer dies inside its handler: nothing was committed or acked, the bus
//! delivers the event again, and it is applied once.

use std::time::Duration;

use crate::harness::{Broker, EffectHandler, Misbehaviour, SETTLE, TestBed};
use mercato_testkit::wait_until;

drill! {
    async fn a_consumer_killed_inside_its_handler_gets_the_event_again_and_applies_it_once(
        bus, backend
    ) {
        let Some(mut bed) = TestBed::start(bus, backend, Broker::Shared).await else { return };
        let ids = bed.write_users(5).await;
        let victim = ids[2].clone();
        let handler = EffectHandler::new(&bed, "drill");
        handler.misbehave_on(&victim, Misbehaviour::HangOnce);
        let config = mercato_bus::ConsumerConfig {
            ack_wait: Duration::from_secs(1),
            ..bed.consumer_config("drill")
        };
        bed.start_relay();
        let first = bed.start_consumer(config.clone(), handler.clone());

        wait_until("the handler is inside the victim event", SETTLE, || async {
            handler.is_hanging_on(&victim).then_some(())
        })
        .await;
        first.abort();
        wait_until("the killed consumer is gone", SETTLE, || async {
            first.is_finished().then_some(())
        })
        .await;
        let applied = bed.effects("drill").await;
        assert!(!applied.contains(&victim), "the killed handler's transaction was committed");

        bed.start_consumer(config, handler.clone());
        bed.wait_until_applied_once("drill", &ids, SETTLE).await;
        assert!(
            handler.calls_for(&victim) >= 2,
            "the victim was not delivered again: {:?}",
            handler.calls()
        );
        bed.shutdown().await;
    } on [embedded_sqlite, embedded_postgres, jetstream_sqlite, jetstream_postgres]
}
