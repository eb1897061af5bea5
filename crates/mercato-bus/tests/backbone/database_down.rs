//! consumer.rs: "When the database itself is down, nothing is dead-lettered: the events come
//! back when it is." The consumer's pool is exhausted (every connection held elsewhere, which is
//! what an unreachable server looks like to it: `PoolTimedOut`) for longer than `max_attempts`
//! redeliveries take; once it has connections again, the event must be applied, not parked.

use std::sync::Arc;
use std::time::Duration;

use mercato_store::{Database, PoolSettings};

use crate::harness::{Broker, EffectHandler, SETTLE, TestBed};

drill! {
    async fn events_delivered_while_the_consumers_database_is_down_are_applied_once_it_is_back_not_dead_lettered(
        bus, backend
    ) {
        let Some(mut bed) = TestBed::start(bus, backend, Broker::Shared).await else { return };
        let url = bed.test_database_url().to_owned();
        let consumer_db = Database::connect(
            &url,
            &PoolSettings {
                max_connections: 1,
                acquire_timeout: Duration::from_millis(200),
                ..PoolSettings::default()
            },
        )
        .expect("the consumer's pool");
        // The outage: the consumer's only connection is taken.
        let outage = consumer_db.pool().acquire().await.expect("the consumer's only connection");

        let ids = bed.write_users(1).await;
        bed.start_relay();
        let handler = EffectHandler::new(&bed, "drill");
        let config = bed.consumer_config("drill");
        let max_attempts = config.max_attempts;
        let consumer = mercato_bus::Consumer::new(consumer_db, bed.bus.clone(), config, handler);
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(consumer.run(stopped));

        // The outage lasts long enough for more than `max_attempts` deliveries (each is
        // returned after 1 s): this is the fault's duration, not a wait for a condition.
        tokio::time::sleep(Duration::from_secs(u64::from(max_attempts) + 2)).await;
        drop(outage);

        let outcome = mercato_testkit::wait_until("the event is applied or parked", SETTLE, || async {
            let applied = bed.effects("drill").await.contains(&ids[0]);
            let parked = !bed.dead_letters().await.is_empty();
            (applied || parked).then_some(parked)
        })
        .await;
        let _ = stop.send(true);
        let _ = task.await;
        assert!(
            !outcome,
            "dead-lettered because the database was down: {:?}",
            bed.dead_letters().await
        );
        bed.wait_until_applied_once("drill", &ids, SETTLE).await;
        bed.shutdown().await;
    } on [embedded_sqlite, jetstream_sqlite]
}

drill! {
    async fn a_consumer_whose_stop_sender_was_dropped_keeps_consuming(bus, backend) {
        let Some(mut bed) = TestBed::start(bus, backend, Broker::Shared).await else { return };
        bed.start_relay();
        let handler = EffectHandler::new(&bed, "drill");
        let consumer = mercato_bus::Consumer::new(
            bed.db.clone(),
            bed.bus.clone(),
            bed.consumer_config("drill"),
            Arc::clone(&handler) as Arc<dyn mercato_bus::Handler>,
        );
        // Nobody will ever ask this consumer to stop (a fire-and-forget caller).
        let (stop, stopped) = tokio::sync::watch::channel(false);
        drop(stop);
        let task = tokio::spawn(consumer.run(stopped));
        let ids = bed.write_users(3).await;
        bed.wait_until_applied_once("drill", &ids, Duration::from_secs(10)).await;
        task.abort();
        bed.shutdown().await;
    } on [embedded_sqlite, jetstream_sqlite]
}
