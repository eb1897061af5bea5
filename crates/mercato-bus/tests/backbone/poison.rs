//! Promise 5: an event that keeps failing is parked after `max_attempts`, the events behind it
//! flow on, and a redrive applies it once; rejected and unreadable events are parked at once.

use bytes::Bytes;
use mercato_bus::bus::OutgoingMessage;
use mercato_contracts::Envelope;
use mercato_testkit::wait_until;

use crate::harness::{Broker, EffectHandler, Misbehaviour, SETTLE, TestBed, failure_text};

drill! {
    async fn an_event_that_keeps_failing_is_dead_lettered_without_holding_back_the_rest_and_redriven_once(
        bus, backend
    ) {
        let Some(mut bed) = TestBed::start(bus, backend, Broker::Shared).await else { return };
        let handler = EffectHandler::new(&bed, "drill");
        let poison = bed.write_users(1).await.remove(0);
        handler.misbehave_on(&poison, Misbehaviour::Retry);
        let later = bed.write_users(5).await;
        let config = mercato_bus::ConsumerConfig {
            max_attempts: 3,
            backoff: vec![std::time::Duration::from_millis(300)],
            ..bed.consumer_config("drill")
        };
        bed.start_relay();
        bed.start_consumer(config, handler.clone());

        let letter = wait_until("the poison is dead-lettered", SETTLE, || async {
            bed.dead_letters().await.into_iter().next()
        })
        .await;
        assert_eq!(letter.consumer, "drill");
        assert_eq!(letter.subject, format!("{}.user.created", bed.prefix));
        assert_eq!(letter.attempts, 3);
        assert!(letter.error.contains("failed 3 times"), "{}", letter.error);
        assert!(letter.error.contains(&failure_text(&poison)), "{}", letter.error);
        let parked = Envelope::parse(&letter.payload).expect("the dead letter keeps the envelope");
        assert_eq!(parked.id, poison);
        assert_eq!(bed.dead_letters().await.len(), 1);

        // The events behind the poison were applied while it was still being retried.
        bed.wait_until_applied_once("drill", &later, SETTLE).await;
        let calls = handler.calls();
        let last_poison_call = calls
            .iter()
            .rposition(|call| call.event_id == poison)
            .expect("the poison reached the handler");
        for id in &later {
            let applied = calls
                .iter()
                .position(|call| &call.event_id == id && call.result == "applied")
                .expect("applied");
            assert!(applied < last_poison_call, "{id} waited for the poison: {calls:?}");
        }
        assert!(!bed.effects("drill").await.contains(&poison));

        handler.behave_on(&poison);
        bed.bus.redrive(letter.id).await.expect("the redrive");
        assert!(bed.dead_letters().await.is_empty(), "a redriven letter stays parked");
        bed.wait_until_applied_once("drill", std::slice::from_ref(&poison), SETTLE).await;
        bed.shutdown().await;
    } on [embedded_sqlite, jetstream_sqlite]
}

drill! {
    async fn a_rejected_event_and_an_unreadable_message_are_dead_lettered_at_the_first_attempt(
        bus, backend
    ) {
        let Some(mut bed) = TestBed::start(bus, backend, Broker::Shared).await else { return };
        let handler = EffectHandler::new(&bed, "drill");
        let ids = bed.write_users(3).await;
        handler.misbehave_on(&ids[1], Misbehaviour::Reject);
        let garbage = Bytes::from_static(b"this is not an envelope");
        bed.publish(vec![OutgoingMessage {
            event_id: uuid::Uuid::now_v7().to_string(),
            subject: format!("{}.user.created", bed.prefix),
            payload: garbage.clone(),
        }])
        .await;
        bed.start_relay();
        bed.start_consumer(bed.consumer_config("drill"), handler.clone());

        let letters = wait_until("two letters are parked", SETTLE, || async {
            Some(bed.dead_letters().await).filter(|letters| letters.len() >= 2)
        })
        .await;
        assert_eq!(letters.len(), 2, "{letters:?}");
        let unreadable = letters
            .iter()
            .find(|letter| letter.payload == garbage)
            .expect("the unreadable message is parked");
        assert_eq!(unreadable.attempts, 1);
        assert!(unreadable.error.starts_with("unreadable event"), "{}", unreadable.error);
        let rejected = letters
            .iter()
            .find(|letter| letter.payload != garbage)
            .expect("the rejected event is parked");
        assert_eq!(rejected.attempts, 1, "a rejected event must not be retried");
        assert!(rejected.error.starts_with("rejected: "), "{}", rejected.error);
        assert!(rejected.error.contains(&failure_text(&ids[1])), "{}", rejected.error);

        bed.wait_until_applied_once("drill", &[ids[0].clone(), ids[2].clone()], SETTLE).await;
        assert!(!bed.effects("drill").await.contains(&ids[1]));
        bed.shutdown().await;
    } on [embedded_sqlite, jetstream_sqlite]
}
