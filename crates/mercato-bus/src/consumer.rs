//! Idempotent consumers (promise 2: effects happen once; promise 5: poison does not block).
//!
//! A [`Consumer`] pulls batches from a durable consumer of the bus and applies each event with
//! its [`Handler`] inside a database transaction that **first records the event id in the
//! `inbox`**: a duplicate key means "already done", so a redelivery changes nothing. The bus is
//! acked only after the commit; a crash before it makes the bus deliver again, and the inbox
//! makes that harmless.
//!
//! A batch shares one transaction, and a handler may apply its new events together with fewer
//! statements ([`Handler::handle_many`]) or decline, and have them applied one by one. When any
//! event of it fails, the batch is rolled back and its
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
use mercato_store::dialect::value_rows;
use mercato_store::sqlx::{self, AnyConnection};
use mercato_store::{Backend, Database};
use serde_json::Value;
use tokio::sync::watch;
use tracing::Instrument;

use crate::bus::{ConsumerSpec, Delivery, EventBus};
use crate::outbox::{Outbox, now_millis};

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

/// What [`Handler::handle_many`] did with a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Batch {
    /// Every event is applied.
    Applied,
    /// Nothing was written: the consumer applies the events one by one with [`Handler::handle`].
    Declined,
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

    /// Applies several new events (two or more, inbox rows written) at once, with fewer
    /// statements than one by one but exactly the outcome of [`Handler::handle`] applied to each
    /// in order; or declines, having written nothing. An error rolls the batch back, as from
    /// `handle`. By default every batch is declined.
    async fn handle_many(
        &self,
        _conn: &mut AnyConnection,
        _events: &[&Envelope<Value>],
    ) -> Result<Batch, HandlerError> {
        Ok(Batch::Declined)
    }
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
    /// The outbox a handler writes to, woken after each commit so its events leave at once.
    outbox: Option<Outbox>,
    /// Told of every event whose effect has just been committed.
    on_commit: Option<CommitHook>,
}

/// A callback run after a handler's effects are committed, once per applied event (never for a
/// duplicate): what a service uses to wake requests waiting for those effects.
pub type CommitHook = Arc<dyn Fn(&Envelope<Value>) + Send + Sync>;

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer").field("name", &self.config.name).finish_non_exhaustive()
    }
}

/// Whether a batch found the database reachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Ok,
    /// The database could not be reached; the batch's events went back to the bus.
    DatabaseDown,
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
        Self { db, bus, config, handler, outbox: None, on_commit: None }
    }

    /// Runs `hook` for each event after the transaction that applied it has committed.
    pub fn on_commit(mut self, hook: CommitHook) -> Self {
        self.on_commit = Some(hook);
        self
    }

    /// Wakes `outbox`'s relay after every commit: for handlers that emit events.
    pub fn waking(mut self, outbox: Outbox) -> Self {
        self.outbox = Some(outbox);
        self
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
        let mut lag_measured = std::time::Instant::now() - Duration::from_secs(60);
        while !*stop.borrow() {
            if lag_measured.elapsed() > Duration::from_secs(10) {
                lag_measured = std::time::Instant::now();
                if let Ok(lag) = self.bus.consumer_lag(&self.config.name).await {
                    metrics::gauge!("bus_consumer_lag", "consumer" => self.config.name.clone())
                        .set(lag as f64);
                }
            }
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
                            () = crate::stopped(&mut stop) => {}
                        }
                        pause = (pause * 2).min(Duration::from_secs(5));
                    }
                }
                continue;
            };
            let fetched = tokio::select! {
                fetched = active.fetch(self.config.batch, Duration::from_secs(1)) => fetched,
                () = crate::stopped(&mut stop) => continue,
            };
            match fetched {
                Ok(deliveries) if deliveries.is_empty() => {}
                Ok(deliveries) => {
                    let (health, handled) = self.apply_all(deliveries).await;
                    if !handled.is_empty() {
                        for outcome in active.ack_all(handled).await {
                            warn_if_unacked(outcome);
                        }
                    }
                    if health == Health::DatabaseDown {
                        self.wait_for_database(&mut stop).await;
                    }
                }
                Err(error) => {
                    tracing::warn!(consumer = %self.config.name, %error, "fetch failed; resubscribing");
                    subscription = None;
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }

    /// While the database is down nothing is fetched: every fetch would only return the events
    /// again and spend their attempts. Resumes when the database answers (or on stop).
    async fn wait_for_database(&self, stop: &mut watch::Receiver<bool>) {
        let mut pause = Duration::from_millis(200);
        loop {
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = crate::stopped(stop) => return,
            }
            if self.db.ping().await.is_ok() {
                tracing::info!(consumer = %self.config.name, "database is back; consuming again");
                return;
            }
            pause = (pause * 2).min(Duration::from_secs(5));
        }
    }

    /// Applies a batch and acks each handled delivery on its own; see [`Consumer::apply_all`].
    pub async fn process(&self, deliveries: Vec<Delivery>) -> Health {
        let (health, handled) = self.apply_all(deliveries).await;
        for delivery in handled {
            warn_if_unacked(delivery.settle.ack().await);
        }
        health
    }

    /// Applies a batch: together when possible, one by one when not. Returns whether the
    /// database was found unavailable (the events were returned to the bus, none dead-lettered)
    /// and the deliveries whose events are handled (applied, or duplicates), for the caller to
    /// ack: the run loop acks them together, one write on the embedded log.
    async fn apply_all(&self, deliveries: Vec<Delivery>) -> (Health, Vec<Delivery>) {
        let mut handled = Vec::with_capacity(deliveries.len());
        let mut ready = Vec::with_capacity(deliveries.len());
        for delivery in deliveries {
            if delivery.attempt > self.config.max_attempts {
                // Attempts may have been spent by outages before this one was noticed: an event
                // is never dead-lettered while the database cannot be reached.
                if self.db.ping().await.is_err() {
                    let _ = delivery.settle.nak(Duration::from_secs(1)).await;
                    return (Health::DatabaseDown, handled);
                }
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
            return (Health::Ok, handled);
        }
        if ready.len() > 1 {
            match self.apply_together(&ready).await {
                Ok(outcomes) => {
                    for ((delivery, event), outcome) in ready.into_iter().zip(outcomes) {
                        self.record(&event, &outcome);
                        handled.push(delivery);
                    }
                    return (Health::Ok, handled);
                }
                Err(error) => {
                    tracing::debug!(consumer = %self.config.name, error = %error, "batch failed; applying its events one by one");
                }
            }
        }
        let mut health = Health::Ok;
        for (delivery, event) in ready {
            if health == Health::DatabaseDown {
                // The rest of the batch goes back untried.
                let _ = delivery.settle.nak(Duration::from_secs(1)).await;
                continue;
            }
            match self.apply(std::slice::from_ref(&event)).await {
                Ok(outcomes) => {
                    if let Some(outcome) = outcomes.first() {
                        self.record(&event, outcome);
                    }
                    handled.push(delivery);
                }
                Err(error) => health = self.failed(delivery, &event, error).await,
            }
        }
        (health, handled)
    }

    async fn apply_together(
        &self,
        ready: &[(Delivery, Envelope<Value>)],
    ) -> Result<Vec<Outcome>, HandlerError> {
        let events: Vec<Envelope<Value>> = ready.iter().map(|(_, event)| event.clone()).collect();
        self.apply(&events).await
    }

    /// One transaction: inbox rows first, effects second. A batch records its inbox rows with
    /// two statements (which are new, then insert those), not two round trips per event.
    async fn apply(&self, events: &[Envelope<Value>]) -> Result<Vec<Outcome>, HandlerError> {
        let mut tx = self.db.begin().await?;
        let fresh = if events.len() == 1 {
            vec![record_in_inbox(&self.db, &mut tx, &self.config.name, &events[0].id).await?]
        } else {
            record_batch_in_inbox(&self.db, &mut tx, &self.config.name, events).await?
        };
        let outcomes: Vec<Outcome> = fresh
            .iter()
            .map(|&fresh| if fresh { Outcome::Applied } else { Outcome::Duplicate })
            .collect();
        let new: Vec<&Envelope<Value>> = events
            .iter()
            .zip(&outcomes)
            .filter(|(_, outcome)| matches!(outcome, Outcome::Applied))
            .map(|(event, _)| event)
            .collect();
        let together = if new.len() > 1 {
            let span =
                tracing::info_span!("consume", consumer = %self.config.name, events = new.len());
            self.handler.handle_many(&mut tx, &new).instrument(span).await?
        } else {
            Batch::Declined
        };
        if together == Batch::Declined {
            for event in new {
                let span = tracing::info_span!(
                    "consume",
                    consumer = %self.config.name,
                    event_type = %event.event_type,
                    event_id = %event.id,
                    traceparent = event.traceparent.as_deref().unwrap_or(""),
                );
                self.handler.handle(&mut tx, event).instrument(span).await?;
            }
        }
        tx.commit().await?;
        if let Some(outbox) = &self.outbox {
            outbox.notify();
        }
        if let Some(hook) = &self.on_commit {
            for (event, outcome) in events.iter().zip(&outcomes) {
                if matches!(outcome, Outcome::Applied) {
                    hook(event);
                }
            }
        }
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

    async fn failed(
        &self,
        delivery: Delivery,
        event: &Envelope<Value>,
        error: HandlerError,
    ) -> Health {
        let database_down = matches!(&error, HandlerError::Retry(cause)
            if cause.downcast_ref::<sqlx::Error>().is_some_and(mercato_store::is_unavailable));
        if database_down {
            tracing::warn!(consumer = %self.config.name, "database unavailable; event returned, consumption paused");
            if let Err(error) = delivery.settle.nak(Duration::from_secs(1)).await {
                tracing::warn!(%error, "cannot return a delivery; it comes back after ack_wait");
            }
            return Health::DatabaseDown;
        }
        match error {
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
        Health::Ok
    }

    /// Parks a delivery; if even that fails, it is returned to the bus to try again later.
    async fn dead_letter(&self, delivery: Delivery, reason: &str) {
        tracing::error!(consumer = %self.config.name, subject = %delivery.subject, sequence = delivery.sequence, attempt = delivery.attempt, %reason, "event dead-lettered");
        match self.bus.dead_letter(&self.config.name, &delivery, reason).await {
            Ok(()) => {
                metrics::counter!("bus_dead_letters_total", "consumer" => self.config.name.clone())
                    .increment(1);
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

fn warn_if_unacked(outcome: Result<(), crate::bus::BusError>) {
    if let Err(error) = outcome {
        // The effect is committed; a redelivery is skipped by the inbox.
        tracing::warn!(%error, "cannot ack a handled event; its redelivery will be skipped");
    }
}

/// Records the events of a batch in the inbox with one multi-row insert; for each, `true` when
/// it is new (a second copy of an id in the batch is not). When the insert stores fewer rows than
/// it was given, some were handled before (a redelivery) and the batch fails, to be applied one
/// event at a time, the exact path. No `SELECT` first: a generic plan made while the inbox was
/// empty turned it into a scan of the whole inbox per batch on PostgreSQL.
async fn record_batch_in_inbox(
    db: &Database,
    conn: &mut AnyConnection,
    consumer: &str,
    events: &[Envelope<Value>],
) -> Result<Vec<bool>, HandlerError> {
    let mut seen = std::collections::HashSet::new();
    let fresh: Vec<bool> = events.iter().map(|e| seen.insert(e.id.as_str())).collect();
    let new_ids: Vec<&str> =
        events.iter().zip(&fresh).filter(|(_, new)| **new).map(|(e, _)| e.id.as_str()).collect();
    let rows = value_rows(new_ids.len(), 3);
    let text = match db.backend() {
        Backend::MySql => {
            format!("INSERT IGNORE INTO inbox (consumer, event_id, handled_at) VALUES {}", rows)
        }
        _ => format!(
            "INSERT INTO inbox (consumer, event_id, handled_at) VALUES {} ON CONFLICT DO NOTHING",
            rows
        ),
    };
    let now = now_millis();
    let mut insert = sqlx::query(db.sql_owned(text));
    for id in &new_ids {
        insert = insert.bind(consumer).bind(*id).bind(now);
    }
    let inserted = insert.execute(&mut *conn).await?.rows_affected();
    if inserted != new_ids.len() as u64 {
        return Err(HandlerError::Retry(anyhow::anyhow!(
            "{} events of this batch were handled before",
            new_ids.len() as u64 - inserted
        )));
    }
    Ok(fresh)
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
