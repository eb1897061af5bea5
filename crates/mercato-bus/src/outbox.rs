//! The transactional outbox and its relay (promise 1: no lost event).
//!
//! A service writes each event into its own database's `outbox` table **in the same
//! transaction** as the change the event describes ([`Outbox::write`], or [`Outbox::write_all`]
//! for several events in one statement): either both commit or neither does. The [`Relay`]
//! publishes unpublished rows in sequence order, many at a time with acknowledgements pipelined,
//! and marks exactly the rows the bus acknowledged. While the bus is down it retries with
//! backoff; the rows wait in the database. A crash between publishing and marking re-sends them
//! later: the broker drops the re-send by event id inside its duplicate window, and consumers'
//! inboxes drop it after.
//!
//! Order: rows are published in the order their sequence numbers were assigned, which is the
//! commit order for changes to one aggregate (they lock the same rows), and the order given for
//! the events of one `write_all`. Across a failed publish the order can break; consumers cope
//! with any order (see [`crate::consumer`]).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use mercato_contracts::{Envelope, Event};
use mercato_store::dialect::{placeholders, power_of_two_chunks, value_rows};
use mercato_store::sqlx::{self, AnyConnection};
use mercato_store::{Database, Migrations};
use tokio::sync::{Notify, watch};

use crate::bus::{EventBus, OutgoingMessage};

/// The bus tables (`outbox`, `inbox`) that live in every service's database, migrated with their
/// own history table so that they never mix with the service's own migrations.
pub static MIGRATIONS: Migrations = Migrations {
    sqlite: sqlx::migrate::Migrator {
        table_name: std::borrow::Cow::Borrowed("_mercato_bus_migrations"),
        ..sqlx::migrate!("./migrations/sqlite")
    },
    postgres: sqlx::migrate::Migrator {
        table_name: std::borrow::Cow::Borrowed("_mercato_bus_migrations"),
        ..sqlx::migrate!("./migrations/postgres")
    },
    mysql: sqlx::migrate::Migrator {
        table_name: std::borrow::Cow::Borrowed("_mercato_bus_migrations"),
        ..sqlx::migrate!("./migrations/mysql")
    },
};

/// Rows per statement of [`Outbox::write_all`]: 5 placeholders each, so a chunk stays far below
/// every backend's limit on bound parameters (SQLite's is the smallest, 32 766).
pub const ROWS_PER_INSERT: usize = 64;

/// An event wrapped in its envelope and serialised, ready for [`Outbox::write_all`]; events of
/// different types can go into one call.
#[derive(Debug, Clone)]
pub struct OutboxEvent {
    id: String,
    /// `<aggregate>.<action>`: the relay publishes under `<prefix>.<subject>`.
    subject: String,
    aggregate_id: String,
    payload: String,
    created_at: i64,
}

impl OutboxEvent {
    /// Wraps `event` as [`Outbox::write`] does: a fresh envelope (and event id) dated
    /// `now_millis`, carrying `traceparent`.
    pub fn new<E: Event>(
        event: E,
        now_millis: i64,
        traceparent: Option<String>,
    ) -> Result<Self, sqlx::Error> {
        let envelope = Envelope::new(event, now_millis, traceparent);
        let payload = serde_json::to_string(&envelope)
            .map_err(|error| sqlx::Error::Encode(Box::new(error)))?;
        Ok(Self {
            id: envelope.id,
            subject: format!("{}.{}", E::AGGREGATE, E::ACTION),
            aggregate_id: envelope.subject,
            payload,
            created_at: now_millis,
        })
    }

    /// The event id (the envelope's `id`).
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// Writes events into a service's outbox and wakes its relay.
#[derive(Clone)]
pub struct Outbox {
    db: Database,
    wake: Arc<Notify>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox").field("db", &self.db).finish_non_exhaustive()
    }
}

impl Outbox {
    /// The outbox of `db` (whose migrations must include [`MIGRATIONS`]).
    pub fn new(db: Database) -> Self {
        Self { db, wake: Arc::new(Notify::new()) }
    }

    /// Records `event` inside the caller's transaction; returns its event id.
    #[tracing::instrument(skip_all, fields(event_type = E::TYPE))]
    pub async fn write<E: Event>(
        &self,
        conn: &mut AnyConnection,
        event: E,
        now_millis: i64,
        traceparent: Option<String>,
    ) -> Result<String, sqlx::Error> {
        let event = OutboxEvent::new(event, now_millis, traceparent)?;
        sqlx::query(self.db.sql(
            "INSERT INTO outbox (event_id, subject, aggregate_id, payload, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        ))
        .bind(&event.id)
        .bind(&event.subject)
        .bind(&event.aggregate_id)
        .bind(&event.payload)
        .bind(event.created_at)
        .execute(conn)
        .await?;
        Ok(event.id)
    }

    /// Records `events` inside the caller's transaction with multi-row inserts of at most
    /// [`ROWS_PER_INSERT`] rows (of power-of-two sizes: see [`power_of_two_chunks`]); returns
    /// their event ids in the order given.
    ///
    /// The rows get increasing sequence numbers in the order given (PostgreSQL, SQLite and
    /// MariaDB assign identity and auto-increment values in `VALUES` order, which the backbone
    /// tests check on each), so the relay publishes them in that order, exactly as if each had
    /// been written with [`Outbox::write`] one after the other.
    #[tracing::instrument(skip_all, fields(events = events.len()))]
    pub async fn write_all(
        &self,
        conn: &mut AnyConnection,
        events: Vec<OutboxEvent>,
    ) -> Result<Vec<String>, sqlx::Error> {
        for chunk in power_of_two_chunks(&events, ROWS_PER_INSERT) {
            let text = format!(
                "INSERT INTO outbox (event_id, subject, aggregate_id, payload, created_at) \
                 VALUES {}",
                value_rows(chunk.len(), 5)
            );
            let mut insert = sqlx::query(self.db.sql_owned(text));
            for event in chunk {
                insert = insert
                    .bind(event.id.as_str())
                    .bind(event.subject.as_str())
                    .bind(event.aggregate_id.as_str())
                    .bind(event.payload.as_str())
                    .bind(event.created_at);
            }
            insert.execute(&mut *conn).await?;
        }
        Ok(events.into_iter().map(|event| event.id).collect())
    }

    /// Tells the relay that rows were committed (call after `commit`). Without it the relay
    /// still finds them on its next timer tick.
    pub fn notify(&self) {
        self.wake.notify_one();
    }

    /// Unpublished rows (for metrics and readiness details).
    pub async fn backlog(&self) -> Result<i64, sqlx::Error> {
        let (count,): (i64,) =
            sqlx::query_as(self.db.sql("SELECT COUNT(*) FROM outbox WHERE published_at IS NULL"))
                .fetch_one(self.db.pool())
                .await?;
        Ok(count)
    }

    /// A readiness check that reports the backlog (and fails when the database cannot count
    /// it), for `Readiness::add`.
    pub fn backlog_check(
        &self,
    ) -> impl Fn() -> futures::future::BoxFuture<'static, Result<String, String>> + Send + Sync + 'static
    {
        let outbox = self.clone();
        move || {
            let outbox = outbox.clone();
            Box::pin(async move {
                let backlog = outbox.backlog().await.map_err(|error| error.to_string())?;
                Ok(format!("{backlog} events waiting to be published"))
            })
        }
    }

    /// A relay for this outbox onto `bus`, under subject prefix `prefix`.
    pub fn relay(&self, bus: Arc<dyn EventBus>, prefix: &str, service: &str) -> Relay {
        Relay {
            db: self.db.clone(),
            wake: self.wake.clone(),
            bus,
            prefix: prefix.to_owned(),
            service: service.to_owned(),
            settings: RelaySettings::default(),
        }
    }
}

/// How the relay batches and retries.
#[derive(Debug, Clone)]
pub struct RelaySettings {
    /// Rows per publish call (acks in flight at once).
    pub batch: u32,
    /// How often the relay looks without being woken.
    pub interval: Duration,
    /// Backoff while the bus is down: doubles from `retry_min` to `retry_max`.
    pub retry_min: Duration,
    pub retry_max: Duration,
    /// Published rows are deleted after this long.
    pub keep_published: Duration,
}

impl Default for RelaySettings {
    fn default() -> Self {
        Self {
            batch: 512,
            interval: Duration::from_secs(1),
            retry_min: Duration::from_millis(100),
            retry_max: Duration::from_secs(10),
            keep_published: Duration::from_secs(24 * 3600),
        }
    }
}

/// Publishes a service's outbox. One per service instance; see the module docs.
pub struct Relay {
    db: Database,
    wake: Arc<Notify>,
    bus: Arc<dyn EventBus>,
    prefix: String,
    service: String,
    settings: RelaySettings,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay").field("service", &self.service).finish_non_exhaustive()
    }
}

#[derive(sqlx::FromRow)]
struct Row {
    sequence: i64,
    event_id: String,
    subject: String,
    payload: String,
}

impl Relay {
    pub fn with_settings(mut self, settings: RelaySettings) -> Self {
        self.settings = settings;
        self
    }

    /// Runs until `stop` turns true, then returns after the batch in hand is settled.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut backoff = self.settings.retry_min;
        let mut last_cleanup = std::time::Instant::now();
        loop {
            if *stop.borrow() {
                return;
            }
            match self.publish_once().await {
                Ok(Pass::Drained) => {
                    backoff = self.settings.retry_min;
                    if last_cleanup.elapsed() > Duration::from_secs(600) {
                        self.cleanup().await;
                        last_cleanup = std::time::Instant::now();
                    }
                    tokio::select! {
                        () = self.wake.notified() => {}
                        () = tokio::time::sleep(self.settings.interval) => {}
                        () = crate::stopped(&mut stop) => {}
                    }
                }
                Ok(Pass::More) => backoff = self.settings.retry_min,
                Err(error) => {
                    tracing::warn!(service = %self.service, error = %format!("{error:#}"), retry_in = ?backoff, "outbox relay cannot publish; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = crate::stopped(&mut stop) => {}
                    }
                    backoff = (backoff * 2).min(self.settings.retry_max);
                }
            }
        }
    }

    /// Publishes one batch. `More` when the batch was full (look again at once).
    async fn publish_once(&self) -> anyhow::Result<Pass> {
        let rows: Vec<Row> = sqlx::query_as(self.db.sql(
            "SELECT sequence, event_id, subject, payload FROM outbox \
             WHERE published_at IS NULL ORDER BY sequence LIMIT $1",
        ))
        .bind(i64::from(self.settings.batch))
        .fetch_all(self.db.pool())
        .await?;
        metrics::gauge!("outbox_backlog", "service" => self.service.clone()).set(rows.len() as f64);
        if rows.is_empty() {
            return Ok(Pass::Drained);
        }
        let full = rows.len() == self.settings.batch as usize;
        let messages = rows
            .iter()
            .map(|row| OutgoingMessage {
                event_id: row.event_id.clone(),
                subject: format!("{}.{}", self.prefix, row.subject),
                payload: Bytes::from(row.payload.clone()),
            })
            .collect();
        let outcomes = self.bus.publish(messages).await;
        let published: Vec<i64> = rows
            .iter()
            .zip(&outcomes)
            .filter(|(_, outcome)| outcome.is_ok())
            .map(|(row, _)| row.sequence)
            .collect();
        self.mark_published(&published).await?;
        metrics::counter!("outbox_published_total", "service" => self.service.clone())
            .increment(published.len() as u64);
        if let Some(Err(error)) = outcomes.into_iter().find(Result::is_err) {
            anyhow::bail!(
                "{} of {} events not published: {error}",
                rows.len() - published.len(),
                rows.len()
            );
        }
        Ok(if full { Pass::More } else { Pass::Drained })
    }

    /// Marks exactly these rows (never a range: a row with a sequence in between may commit
    /// later and must still be published).
    async fn mark_published(&self, sequences: &[i64]) -> Result<(), sqlx::Error> {
        let now = now_millis();
        for chunk in sequences.chunks(200) {
            let text = format!(
                "UPDATE outbox SET published_at = $1 WHERE sequence IN ({})",
                placeholders(2, chunk.len())
            );
            let mut query = sqlx::query(self.db.sql_owned(text)).bind(now);
            for sequence in chunk {
                query = query.bind(*sequence);
            }
            self.db.execute_write(query).await?;
        }
        Ok(())
    }

    async fn cleanup(&self) {
        let before = now_millis()
            - i64::try_from(self.settings.keep_published.as_millis()).unwrap_or(i64::MAX);
        let delete = sqlx::query(
            self.db.sql("DELETE FROM outbox WHERE published_at IS NOT NULL AND published_at < $1"),
        )
        .bind(before);
        let deleted = self.db.execute_write(delete).await;
        if let Err(error) = deleted {
            tracing::warn!(service = %self.service, %error, "cannot delete old outbox rows");
        }
    }
}

enum Pass {
    Drained,
    More,
}

pub(crate) fn now_millis() -> i64 {
    let since =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}
