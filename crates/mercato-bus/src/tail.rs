//! [`follow`]: an ephemeral tail of the bus that outlives broker outages.
//!
//! Some work needs every event *from now on* in every instance, not once per deployment: the
//! gateway's subscriptions, and the orders service waking the requests held by `Prefer: wait`
//! whichever replica applied the answer. Such a reader is a plain subscription (no durable
//! consumer, no acks, nothing kept for it while it is away); [`follow`] keeps it open until the
//! process stops, subscribing again with backoff when it fails or ends.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::watch;

use crate::bus::EventBus;

/// Calls `handle(subject, payload)` for every message on `filters` until `stop` turns true.
/// `purpose` names the reader in the log ("subscriptions", "held requests").
pub async fn follow(
    bus: Arc<dyn EventBus>,
    filters: Vec<String>,
    purpose: &'static str,
    mut stop: watch::Receiver<bool>,
    mut handle: impl FnMut(&str, Bytes) + Send,
) {
    const FIRST_BACKOFF: Duration = Duration::from_millis(200);
    let mut backoff = FIRST_BACKOFF;
    loop {
        match bus.tail(filters.clone()).await {
            Ok(mut events) => {
                backoff = FIRST_BACKOFF;
                loop {
                    tokio::select! {
                        next = events.next() => match next {
                            Some((subject, payload)) => handle(&subject, payload),
                            None => break,
                        },
                        () = crate::stopped(&mut stop) => return,
                    }
                }
                tracing::warn!(purpose, "the event tail ended; tailing again");
            }
            Err(error) => tracing::warn!(purpose, %error, "cannot tail the bus; retrying"),
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = crate::stopped(&mut stop) => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}
