//! The gateway's one window on the bus: [`EventHub::run`] tails every event of the deployment
//! (an ephemeral, non-durable subscription per gateway instance, never a database poll) and fans
//! them out to the live subscriptions through a broadcast channel.
//!
//! A subscription takes its [`Listener`] when the `subscribe` message is handled (see
//! [`crate::ws`]), so every event published after that is seen, even before the subscription's
//! resolver first runs.

use std::sync::{Arc, Mutex};

use mercato_bus::EventBus;
use tokio::sync::{broadcast, watch};

/// One event off the bus: its CloudEvents type and the whole envelope.
#[derive(Debug, Clone)]
pub struct Event {
    pub kind: String,
    pub envelope: serde_json::Value,
}

impl Event {
    /// A string field of the event's `data`.
    pub fn data_str(&self, field: &str) -> Option<&str> {
        self.envelope.get("data")?.get(field)?.as_str()
    }
}

/// How many events a slow subscriber may fall behind before it skips some (and is told in the
/// log).
const CAPACITY: usize = 4096;

#[derive(Debug, Clone)]
pub struct EventHub {
    sender: broadcast::Sender<Arc<Event>>,
}

impl Default for EventHub {
    fn default() -> Self {
        Self::new()
    }
}

impl EventHub {
    pub fn new() -> Self {
        Self { sender: broadcast::channel(CAPACITY).0 }
    }

    /// Every event from now on.
    pub fn listen(&self) -> Listener {
        Listener(Arc::new(Mutex::new(Some(self.sender.subscribe()))))
    }

    /// Hands `payload` (an event envelope) to the listeners; anything unreadable is dropped.
    pub fn deliver(&self, payload: &[u8]) {
        let Ok(envelope) = serde_json::from_slice::<serde_json::Value>(payload) else {
            tracing::warn!("an unreadable message on the bus was not passed to subscribers");
            return;
        };
        let kind = envelope.get("type").and_then(|kind| kind.as_str()).unwrap_or_default();
        let event = Event { kind: kind.to_owned(), envelope };
        // No listener is not an error.
        let _ = self.sender.send(Arc::new(event));
    }

    /// Tails `<prefix>.>` on `bus` until `stop`, tailing again after a failure.
    pub async fn run(self, bus: Arc<dyn EventBus>, prefix: String, stop: watch::Receiver<bool>) {
        let filters = vec![format!("{prefix}.>")];
        mercato_bus::tail::follow(bus, filters, "subscriptions", stop, |_subject, payload| {
            self.deliver(&payload)
        })
        .await;
    }
}

/// A place in the hub's stream, taken once by the subscription it was made for.
#[derive(Debug, Clone)]
pub struct Listener(Arc<Mutex<Option<broadcast::Receiver<Arc<Event>>>>>);

impl Listener {
    pub fn take(&self) -> Option<broadcast::Receiver<Arc<Event>>> {
        self.0.lock().ok()?.take()
    }
}

/// The next event, skipping (and logging) what a slow subscriber missed; `None` once the hub
/// is gone.
pub async fn next_event(events: &mut broadcast::Receiver<Arc<Event>>) -> Option<Arc<Event>> {
    loop {
        match events.recv().await {
            Ok(event) => return Some(event),
            Err(broadcast::error::RecvError::Lagged(skipped)) => {
                tracing::warn!(skipped, "a subscriber fell behind and skipped events");
            }
            Err(broadcast::error::RecvError::Closed) => return None,
        }
    }
}
