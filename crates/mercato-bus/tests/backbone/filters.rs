//! A consumer with several filter subjects gets exactly the subjects it names, whatever else is
//! published around them (JetStream on nats-server 2.9 filters part of it in the client).

use std::time::{Duration, Instant};

use crate::harness::{Broker, SETTLE, TestBed};
use mercato_bus::bus::{ConsumerSpec, OutgoingMessage};

drill! {
    async fn a_consumer_of_several_subjects_gets_exactly_those(bus, backend) {
        let Some(bed) = TestBed::start(bus, backend, Broker::Shared).await else { return };
        let subject = |tail: &str| format!("{}.{tail}", bed.prefix);
        let mut subscription = bed
            .bus
            .subscribe(ConsumerSpec {
                durable_name: "filters".to_owned(),
                filter_subjects: vec![subject("order.placed"), subject("order.cancelled")],
                ack_wait: Duration::from_secs(30),
            })
            .await
            .expect("the durable consumer");
        let published = [
            "order.placed", "order.confirmed", "user.created", "order.cancelled",
            "order.placed.late", "inventory.reserved", "order.placed",
        ];
        let messages = published
            .iter()
            .enumerate()
            .map(|(n, tail)| OutgoingMessage {
                event_id: uuid::Uuid::now_v7().to_string(),
                subject: subject(tail),
                payload: bytes::Bytes::from(format!("{n}")),
            })
            .collect();
        for outcome in bed.bus.publish(messages).await {
            outcome.expect("published");
        }

        let mut received = Vec::new();
        let deadline = Instant::now() + SETTLE;
        while received.len() < 3 && Instant::now() < deadline {
            let deliveries = subscription.fetch(10, Duration::from_millis(500)).await.expect("a fetch");
            received.extend(deliveries.iter().map(|d| (d.subject.clone(), d.payload.clone())));
            subscription.ack_all(deliveries).await;
        }
        // Nothing else comes, even after a while.
        let more = subscription.fetch(10, Duration::from_millis(500)).await.expect("a fetch");
        assert!(more.is_empty(), "unexpected: {:?}", more.iter().map(|d| &d.subject).collect::<Vec<_>>());
        let expected = [(subject("order.placed"), "0"), (subject("order.cancelled"), "3"), (subject("order.placed"), "6")];
        let received: Vec<(String, String)> = received
            .into_iter()
            .map(|(subject, payload)| (subject, String::from_utf8_lossy(&payload).into_owned()))
            .collect();
        let expected: Vec<(String, String)> =
            expected.into_iter().map(|(subject, payload)| (subject, payload.to_owned())).collect();
        assert_eq!(received, expected);
        bed.shutdown().await;
    } on [embedded_sqlite, jetstream_sqlite]
}
