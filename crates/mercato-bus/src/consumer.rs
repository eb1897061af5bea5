//! Idempotent consumers (promise 2: effects happen once; promise 5: poison does not block).
//!
//! A [`Consumer`] pulls batches from a durable consumer of the bus and applies each event with
//! its [`Handler`] inside a database transaction that **first records the event id in the
//! `inbox`**: a duplicate key means "already done", so a redelivery changes nothing. The bus is
//! acked only after the commit; a crash before it makes the bus deliver again, and the inbox
//! makes that harmless.
//!
//! A batch shares one transaction. When any event of it fails, the batch is rolled back and its
//! events are applied one per transaction, so one failing event cannot hold back the others. A
//! failing event is delivered again with backoff ([`HandlerError::Retry`]) until it has been tried
//! `max_attempts` times, or at once ([`HandlerError::Reject`], or an event that cannot even be
//! read), and is then parked in the dead-letter store with the error text. When the database
//! itself is down, nothing is dead-lettered: the events come back when it is.
//!
//! Order: events of one aggregate may arrive late, twice or out of order (redeliveries, relay
//! retries, several replicas). Handlers must give the same outcome in any order; the saga's
//! handlers do it with the `orderVersion` each event carries. This crate does not reorder.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use mercato_contracts::Envelope;
use mercato_store::sqlx::{self, AnyConnection};
use mercato_store::{Backend, Database};
use serde_json::Value;
use tokio::sync::watch;
use tracing::Instrument;

use crate::bus::{ConsumerSpec, Delivery, EventBus};
use crate::outbox::now_millis;

/// Why a handler did not apply an event.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Worth trying again later (a dependency hiccup, a lock timeout).
    #[error("{0:#}")]
    Retry(anyhow::Error),
    /// Will never succeed (an event this handler cannot apply): dead-letter it now.
    #[error("{0:#}")]
    Reject(anyhow::Error),
}

impl From<sqlx::Error> for HandlerError {
    fn from(error: sqlx::Error) -> Self {
        Self::Retry(error.into())
    }
}

/// Applies events of one purpose inside the consumer's transaction.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    /// Applies `event`. Its inbox row is already written in `conn`'s transaction.
    async fn handle(
        &self,
        conn: &mut AnyConnection,
        event: &Envelope<Value>,
    ) -> Result<(), HandlerError>;
}

/// A consumer's name, subjects and retry policy.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// The durable name, shared by every replica: `<service>-<purpose>`.
    pub name: String,
    /// Full subjects (prefix included), NATS wildcards allowed.
    pub filter_subjects: Vec<String>,
    /// Deliveries of one event before it is dead-lettered.
    pub max_attempts: u32,
    /// Delay before the n-th redelivery (the last entry repeats).
    pub backoff: Vec<Duration>,
    /// Unacked deliveries come back after this long (a crashed consumer's events).
    pub ack_wait: Duration,
    /// Events per fetch and per transaction.
    pub batch: usize,
}

impl ConsumerConfig {
    pub fn new(name: impl Into<String>, filter_subjects: Vec<String>) -> Self {
        Self {
            name: name.into(),
            filter_subjects,
            max_attempts: 5,
            backoff: vec![
                Duration::from_millis(500),
                Duration::from_secs(2),
                Duration::from_secs(10),
                Duration::from_secs(30),
            ],
            ack_wait: Duration::from_secs(30),
            batch: 64,
        }
    }

    fn delay_after(&self, attempt: u32) -> Duration {
        let index = usize::try_from(attempt.saturating_sub(1)).unwrap_or(usize::MAX);
        self.backoff.get(index).or(self.backoff.last()).copied().unwrap_or(Duration::from_secs(1))
    }
}

/// Runs one durable consumer: fetch, apply once, ack; see the module docs.
pub struct Consumer {
    db: Database,
    bus: Arc<dyn EventBus>,
    config: ConsumerConfig,
    handler: Arc<dyn Handler>,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer").field("name", &self.config.name).finish_non_exhaustive()
    }
}

/// What became of one delivery.
enum Outcome {
    Applied,
    Duplicate,
}

impl Consumer {
    pub fn new(
        db: Database,
        bus: Arc<dyn EventBus>,
        config: ConsumerConfig,
        handler: Arc<dyn Handler>,
    ) -> Self {
        Self { db, bus, config, handler }
    }

    /// Runs until `stop` turns true; the batch in hand is finished (acked or returned) first.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let spec = ConsumerSpec {
            durable_name: self.config.name.clone(),
            filter_subjects: self.config.filter_subjects.clone(),
            ack_wait: self.config.ack_wait,
        };
        let mut pause = Duration::from_millis(100);
        let mut subscription = None;
        while !*stop.borrow() {
            let Some(active) = subscription.as_mut() else {
                match self.bus.subscribe(spec.clone()).await {
                    Ok(opened) => {
                        subscription = Some(opened);
                        pause = Duration::from_millis(100);
                    }
                    Err(error) => {
                        tracing::warn!(consumer = %self.config.name, %error, "cannot subscribe; retrying");
                        tokio::select! {
                            () = tokio::time::sleep(pause) => {}
                            _ = stop.changed() => {}
                        }
                        pause = (pause * 2).min(Duration::from_secs(5));
                    }
                }
                continue;
            };
            let fetched = tokio::select! {
                fetched = active.fetch(self.config.batch, Duration::from_secs(1)) => fetched,
                _ = stop.changed() => continue,
            };
            match fetched {
                Ok(deliveries) if deliveries.is_empty() => {}
                Ok(deliveries) => self.process(deliveries).await,
                Err(error) => {
                    tracing::warn!(consumer = %self.config.name, %error, "fetch failed; resubscribing");
                    subscription = None;
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }

    /// Applies a batch: together when possible, one by one when not.
    pub async fn process(&self, deliveries: Vec<Delivery>) {
        let mut ready = Vec::with_capacity(deliveries.len());
        for delivery in deliveries {
            if delivery.attempt > self.config.max_attempts {
                let reason = format!("gave up after {} deliveries", delivery.attempt - 1);
                self.dead_letter(delivery, &reason).await;
                continue;
            }
            match Envelope::parse(&delivery.payload) {
                Ok(event) => ready.push((delivery, event)),
                Err(error) => {
                    self.dead_letter(delivery, &format!("unreadable event: {error}")).await
                }
            }
        }
        if ready.is_empty() {
            return;
        }
        if ready.len() > 1 {
            match self.apply_together(&ready).await {
                Ok(outcomes) => {
                    for ((delivery, event), outcome) in ready.into_iter().zip(outcomes) {
                        self.record(&event, &outcome);
                        settle_ack(delivery).await;
                    }
                    return;
                }
                Err(error) => {
                    tracing::debug!(consumer = %self.config.name, error = %error, "batch failed; applying its events one by one");
                }
            }
        }
        for (delivery, event) in ready {
            match self.apply(std::slice::from_ref(&event)).await {
                Ok(outcomes) => {
                    if let Some(outcome) = outcomes.first() {
                        self.record(&event, outcome);
                    }
                    settle_ack(delivery).await;
                }
                Err(error) => self.failed(delivery, &event, error).await,
            }
        }
    }

    async fn apply_together(
        &self,
        ready: &[(Delivery, Envelope<Value>)],
    ) -> Result<Vec<Outcome>, HandlerError> {
        let events: Vec<Envelope<Value>> = ready.iter().map(|(_, event)| event.clone()).collect();
        self.apply(&events).await
    }

    /// One transaction: inbox row first, effect second, for each event.
    async fn apply(&self, events: &[Envelope<Value>]) -> Result<Vec<Outcome>, HandlerError> {
        let mut tx = self.db.begin().await?;
        let mut outcomes = Vec::with_capacity(events.len());
        for event in events {
            let span = tracing::info_span!(
                "consume",
                consumer = %self.config.name,
                event_type = %event.event_type,
                event_id = %event.id,
                traceparent = event.traceparent.as_deref().unwrap_or(""),
            );
            let outcome = async {
                if !record_in_inbox(&self.db, &mut tx, &self.config.name, &event.id).await? {
                    return Ok(Outcome::Duplicate);
                }
                self.handler.handle(&mut tx, event).await.map(|()| Outcome::Applied)
            }
            .instrument(span)
            .await?;
            outcomes.push(outcome);
        }
        tx.commit().await?;
        Ok(outcomes)
    }

    fn record(&self, event: &Envelope<Value>, outcome: &Outcome) {
        let result = match outcome {
            Outcome::Applied => "applied",
            Outcome::Duplicate => "duplicate",
        };
        tracing::debug!(consumer = %self.config.name, event_id = %event.id, result, "event consumed");
        metrics::counter!("bus_consumed_total", "consumer" => self.config.name.clone(), "result" => result)
            .increment(1);
    }

    async fn failed(&self, delivery: Delivery, event: &Envelope<Value>, error: HandlerError) {
        let database_down = matches!(&error, HandlerError::Retry(cause)
            if cause.downcast_ref::<sqlx::Error>().is_some_and(mercato_store::is_unavailable));
        match error {
            HandlerError::Retry(cause) if database_down => {
                // Not the event's fault: no attempt is spent towards the dead letters.
                tracing::warn!(consumer = %self.config.name, error = %format!("{cause:#}"), "database unavailable; event returned");
                if let Err(error) = delivery.settle.nak(Duration::from_secs(1)).await {
                    tracing::warn!(%error, "cannot return a delivery; it comes back after ack_wait");
                }
            }
            HandlerError::Retry(cause) if delivery.attempt < self.config.max_attempts => {
                let delay = self.config.delay_after(delivery.attempt);
                tracing::warn!(consumer = %self.config.name, event_id = %event.id, attempt = delivery.attempt, retry_in = ?delay, error = %format!("{cause:#}"), "event failed; will retry");
                if let Err(error) = delivery.settle.nak(delay).await {
                    tracing::warn!(%error, "cannot return a delivery; it comes back after ack_wait");
                }
            }
            HandlerError::Retry(cause) => {
                let reason = format!("failed {} times: {cause:#}", delivery.attempt);
                self.dead_letter(delivery, &reason).await;
            }
            HandlerError::Reject(cause) => {
                self.dead_letter(delivery, &format!("rejected: {cause:#}")).await;
            }
        }
    }

    /// Parks a delivery; if even that fails, it is returned to the bus to try again later.
    async fn dead_letter(&self, delivery: Delivery, reason: &str) {
        tracing::error!(consumer = %self.config.name, subject = %delivery.subject, sequence = delivery.sequence, attempt = delivery.attempt, %reason, "event dead-lettered");
        match self.bus.dead_letter(&self.config.name, &delivery, reason).await {
            Ok(()) => {
                if let Err(error) = delivery.settle.term().await {
                    tracing::warn!(%error, "cannot settle a dead-lettered delivery");
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot store a dead letter; the event comes back later");
                let _ = delivery.settle.nak(Duration::from_secs(5)).await;
            }
        }
    }
}

async fn settle_ack(delivery: Delivery) {
    if let Err(error) = delivery.settle.ack().await {
        // The effect is committed; a redelivery is skipped by the inbox.
        tracing::warn!(%error, "cannot ack a handled event; its redelivery will be skipped");
    }
}

/// Records `(consumer, event_id)`; `false` when it was there already (handled before).
pub async fn record_in_inbox(
    db: &Database,
    conn: &mut AnyConnection,
    consumer: &str,
    event_id: &str,
) -> Result<bool, sqlx::Error> {
    // A failed insert would abort a PostgreSQL transaction, so duplicates are ignored by the
    // statement itself rather than caught as errors.
    let text = match db.backend() {
        Backend::MySql => {
            "INSERT IGNORE INTO inbox (consumer, event_id, handled_at) VALUES ($1, $2, $3)"
        }
        _ => {
            "INSERT INTO inbox (consumer, event_id, handled_at) VALUES ($1, $2, $3) \
             ON CONFLICT DO NOTHING"
        }
    };
    let done = sqlx::query(db.sql(text))
        .bind(consumer)
        .bind(event_id)
        .bind(now_millis())
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}
