//! The event bus each shape uses, and the background tasks (outbox relays, later consumers) that
//! run beside the HTTP server and stop after it.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use mercato_bus::EventBus;
use mercato_bus::embedded::EmbeddedLog;
use mercato_bus::jetstream::JetStreamBus;
use mercato_platform::health::Readiness;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::Settings;

/// The NATS URL used when none is configured.
pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";

/// The embedded log of `mercato up`, in the data dir.
pub async fn embedded_log(data_dir: &Path) -> anyhow::Result<EmbeddedLog> {
    EmbeddedLog::open(&data_dir.join("events.db")).await
}

/// NATS JetStream for `mercato serve`. Returns at once when NATS is down (it reconnects).
pub async fn jetstream(settings: &Settings) -> anyhow::Result<JetStreamBus> {
    let url = settings.nats_url.as_deref().unwrap_or(DEFAULT_NATS_URL);
    JetStreamBus::connect(url, &settings.nats_prefix)
        .await
        .with_context(|| format!("connecting to NATS at {url}"))
}

/// Registers the bus's readiness check.
pub fn add_bus_check(readiness: &mut Readiness, bus: Arc<dyn EventBus>) {
    readiness.add("bus", move || {
        let bus = bus.clone();
        async move { bus.check().await }
    });
}

/// The HTTP server's shutdown signal: SIGTERM or Ctrl-C, then `shutdown_drain_secs` with
/// `readiness` red while requests are still served.
pub fn shutdown(
    settings: &Settings,
    readiness: &Readiness,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    mercato_platform::shutdown::drained(
        mercato_platform::shutdown::signal(),
        readiness.clone(),
        Duration::from_secs(settings.shutdown_drain_secs),
    )
}

/// Tasks that run until the process stops, stopped together after the HTTP server.
#[derive(Debug)]
pub struct Background {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Background {
    pub fn new() -> Self {
        Self { stop: watch::channel(false).0, tasks: Vec::new() }
    }

    /// The signal a task watches to know when to finish.
    pub fn stop_signal(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    pub fn spawn(&mut self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        self.tasks.push(tokio::spawn(task));
    }

    /// Asks every task to finish what it has in hand, and waits (at most 8 s) for them.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let all = futures::future::join_all(self.tasks);
        if tokio::time::timeout(Duration::from_secs(8), all).await.is_err() {
            tracing::warn!("background tasks did not finish within 8 s; stopping anyway");
        }
    }
}
