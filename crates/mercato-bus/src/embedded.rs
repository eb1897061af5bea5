//! [`EmbeddedLog`]: the event bus of `mercato up` and of tests, a durable log in one SQLite file.
//!
//! It keeps the promises of the JetStream bus ([`crate::jetstream`]) without a server: messages are
//! stored durably and deduplicated by event id, durable consumers get each message at least once,
//! unacked deliveries come back after `ack_wait`, a nak brings one back after its delay, and dead
//! letters can be listed and redriven. Consumers cannot tell the two buses apart.
//!
//! # Storage layout
//!
//! One SQLite file (`<data-dir>/events.db`, WAL), schema created on open; it is private to this
//! module:
//!
//! - `messages`: the log. `sequence` (autoincrement, never reused) is the stream position;
//!   `event_id` is `UNIQUE`, so `INSERT OR IGNORE` drops a re-send of a stored event (the
//!   `Nats-Msg-Id` of JetStream, with an unbounded window). Redriven dead letters are stored with
//!   `event_id` NULL: they are new messages on purpose, and NULLs never collide.
//! - `consumers`: per durable name, `last_sequence`, the last message the consumer has looked at
//!   (handed out or skipped by its filters), and its filter subjects as JSON (informational: each
//!   subscription filters with the subjects of its own spec). A new durable starts at 0, the
//!   beginning of the log (JetStream's `DeliverPolicy::All`), so a service started after events
//!   were published still gets them.
//! - `pending`: per (consumer, sequence), a delivery that has not been acked: how many times it
//!   was handed out (`attempts`) and when it may be handed out again (`visible_at`, epoch ms).
//! - `dead_letters`: messages a consumer gave up on, with the error and the attempts.
//!
//! # Claims and visibility
//!
//! A fetch claims work inside one `BEGIN IMMEDIATE` transaction (SQLite's single writer lock), so
//! the replicas or tasks sharing a durable name never claim the same message at the same time:
//! first the consumer's pending rows whose `visible_at` has passed (attempts + 1), then messages
//! after `last_sequence` that match the filters (a pending row with attempt 1, and the position
//! moves on). Every claimed row becomes invisible for `ack_wait`. `ack` and `term` delete the
//! pending row; `nak(delay)` makes it visible after `delay`; a delivery dropped without settling
//! (a crash, a cancelled handler, a process restart) simply becomes visible again after
//! `ack_wait`. A fetch cancelled after its claim committed loses nothing either: the rows stay
//! pending.
//!
//! Waiting fetchers are woken by every publish of any clone of the log (a `watch` counter) and
//! poll with a read-only probe at most every 50 ms, which covers naks, expired `ack_wait`s and
//! writers in another process.
//!
//! # Why SQLite
//!
//! It is durable across crashes (WAL, `synchronous = NORMAL`), it is already a dependency of
//! every service, and the log goes through the same [`Database`] code path as the services' own
//! stores: no second storage engine to learn, tune or trust. Its single writer is the claim
//! lock; the throughput of one process is far below what it takes.
//!
//! Messages are never deleted: the log is an audit trail as well as a transport, and a new
//! durable consumer must be able to read it from the start.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use mercato_store::dialect::{placeholders, value_rows};
use mercato_store::sqlx::{self, Row};
use mercato_store::{Database, PoolSettings};
use tokio::sync::{broadcast, watch};

use crate::bus::{
    BusError, ConsumerSpec, DeadLetter, Delivery, EventBus, OutgoingMessage, Settle, Subscription,
    subject_matches,
};

/// The schema, created on open. Idempotent, so every process opening the file may run it.
const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS messages (\
        sequence INTEGER PRIMARY KEY AUTOINCREMENT, \
        event_id TEXT UNIQUE, \
        subject TEXT NOT NULL, \
        payload BLOB NOT NULL, \
        stored_at INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS consumers (\
        name TEXT PRIMARY KEY, \
        last_sequence INTEGER NOT NULL, \
        filter_subjects TEXT NOT NULL, \
        created_at INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS pending (\
        consumer TEXT NOT NULL, \
        sequence INTEGER NOT NULL, \
        attempts INTEGER NOT NULL, \
        visible_at INTEGER NOT NULL, \
        PRIMARY KEY (consumer, sequence))",
    "CREATE INDEX IF NOT EXISTS pending_by_visibility ON pending (consumer, visible_at)",
    "CREATE TABLE IF NOT EXISTS dead_letters (\
        id INTEGER PRIMARY KEY AUTOINCREMENT, \
        consumer TEXT NOT NULL, \
        sequence INTEGER NOT NULL, \
        subject TEXT NOT NULL, \
        payload BLOB NOT NULL, \
        error TEXT NOT NULL, \
        attempts INTEGER NOT NULL, \
        failed_at INTEGER NOT NULL)",
];

/// The longest a waiting fetch goes without looking at the log.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Messages read per query while looking for ones that match a consumer's filters.
const SCAN_BATCH: usize = 256;
/// Messages one claim transaction looks at at most, so that a consumer with narrow filters far
/// behind a long log does not hold the write lock for long; the fetch claims again at once.
const SCAN_LIMIT: usize = 4096;
/// Rows of one multi-row statement of the log (an insert into `messages` or `pending`, a delete
/// from `pending`): 500 rows of at most four placeholders stay far below the 32,766 parameters
/// SQLite binds in one statement.
const ROWS_PER_STATEMENT: usize = 500;
/// Messages a `tail` receiver may fall behind before it skips some.
const TAIL_CAPACITY: usize = 1024;

/// The embedded durable event log. Cheap to clone: every clone shares the pool and the wake-ups.
#[derive(Clone)]
pub struct EmbeddedLog {
    shared: Arc<Shared>,
}

struct Shared {
    db: Database,
    /// Bumped after every commit that may give a waiting fetch something to do.
    wake: watch::Sender<u64>,
    /// Messages just stored, for `tail`.
    live: broadcast::Sender<(String, Bytes)>,
}

impl std::fmt::Debug for EmbeddedLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedLog").field("db", &self.shared.db).finish_non_exhaustive()
    }
}

impl EmbeddedLog {
    /// Opens the log in the SQLite file at `path`, creating the file, its folder and the schema
    /// when missing. Consumers' positions and pending deliveries survive from the last run.
    pub async fn open(path: &Path) -> anyhow::Result<Self> {
        use anyhow::Context as _;

        let url = format!("sqlite://{}", path.display());
        let db = Database::connect(&url, &PoolSettings::default())
            .with_context(|| format!("opening the event log {}", path.display()))?;
        for statement in SCHEMA {
            sqlx::query(db.sql(statement))
                .execute(db.pool())
                .await
                .with_context(|| format!("creating the event log schema in {}", path.display()))?;
        }
        let (wake, _) = watch::channel(0);
        let (live, _) = broadcast::channel(TAIL_CAPACITY);
        Ok(Self { shared: Arc::new(Shared { db, wake, live }) })
    }

    /// Makes every delivery still in flight visible again at once; returns how many. For the one
    /// process that consumes from this file, at start: deliveries a killed run claimed but never
    /// settled would otherwise wait out their `ack_wait` before anyone handles them. (Consumers
    /// are idempotent, so a delivery another live process still held would only be handled twice
    /// to no effect; `mercato events` never calls this.)
    pub async fn release_in_flight(&self) -> anyhow::Result<u64> {
        let db = &self.shared.db;
        let now = crate::outbox::now_millis();
        let released =
            sqlx::query(db.sql("UPDATE pending SET visible_at = $1 WHERE visible_at > $2"))
                .bind(now)
                .bind(now)
                .execute(db.pool())
                .await?
                .rows_affected();
        self.shared.wake.send_modify(|generation| *generation = generation.wrapping_add(1));
        Ok(released)
    }

    /// Messages stored from now on that match `filter_subjects`, by any process using this file
    /// (`mercato events tail` runs beside `mercato up`). Polls the log every 100 ms; [`tail`]
    /// (the trait's) is the in-process, push-based variant.
    ///
    /// [`tail`]: EventBus::tail
    pub async fn follow(
        &self,
        filter_subjects: Vec<String>,
    ) -> anyhow::Result<BoxStream<'static, (String, Bytes)>> {
        let db = self.shared.db.clone();
        let start: Option<(i64,)> =
            sqlx::query_as(db.sql("SELECT sequence FROM messages ORDER BY sequence DESC LIMIT 1"))
                .fetch_optional(db.pool())
                .await?;
        let after = start.map_or(0, |(sequence,)| sequence);
        let stream = futures::stream::unfold(
            (db, after, std::collections::VecDeque::new()),
            move |(db, mut after, mut ready)| {
                let filters = filter_subjects.clone();
                async move {
                    loop {
                        if let Some(next) = ready.pop_front() {
                            return Some((next, (db, after, ready)));
                        }
                        let rows = sqlx::query(db.sql(
                            "SELECT sequence, subject, payload FROM messages WHERE sequence > $1 \
                             ORDER BY sequence LIMIT 256",
                        ))
                        .bind(after)
                        .fetch_all(db.pool())
                        .await;
                        match rows {
                            Ok(rows) if !rows.is_empty() => {
                                for row in rows {
                                    let sequence: i64 = row.try_get("sequence").unwrap_or(after);
                                    after = after.max(sequence);
                                    let subject: String =
                                        row.try_get("subject").unwrap_or_default();
                                    let payload: Vec<u8> =
                                        row.try_get("payload").unwrap_or_default();
                                    if filters.iter().any(|f| subject_matches(f, &subject)) {
                                        ready.push_back((subject, Bytes::from(payload)));
                                    }
                                }
                            }
                            Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                            Err(error) => {
                                tracing::warn!(%error, "cannot read the event log; retrying");
                                tokio::time::sleep(Duration::from_secs(1)).await;
                            }
                        }
                    }
                }
            },
        );
        Ok(stream.boxed())
    }

    /// Closes the log's connections (graceful shutdown). Clones stop working too.
    pub async fn close(&self) {
        self.shared.db.close().await;
    }

    /// Stores the valid messages of `messages` in one transaction; returns the indexes of those
    /// that were new (not duplicates).
    ///
    /// One multi-row `INSERT OR IGNORE ... RETURNING` per 500 messages: a statement is a round
    /// trip to the connection's thread, and this one holds the log's write lock. SQLite returns
    /// only the rows it inserted, in no promised order, so they are matched back by event id;
    /// a message without an id is never a duplicate. Of two copies of one id in a batch, the
    /// first is stored (rows are inserted in the order given).
    async fn store(
        &self,
        messages: &[OutgoingMessage],
        valid: &[bool],
    ) -> Result<Vec<usize>, sqlx::Error> {
        let candidates: Vec<usize> = (0..messages.len()).filter(|&index| valid[index]).collect();
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        let db = &self.shared.db;
        let now = epoch_millis();
        // An empty event id opts out of deduplication, like a JetStream publish without
        // `Nats-Msg-Id`.
        let event_id =
            |index: usize| Some(messages[index].event_id.as_str()).filter(|id| !id.is_empty());
        let mut inserted: std::collections::HashSet<String> = std::collections::HashSet::new();
        let mut tx = db.begin().await?;
        for chunk in candidates.chunks(ROWS_PER_STATEMENT) {
            let text = format!(
                "INSERT OR IGNORE INTO messages (event_id, subject, payload, stored_at) VALUES {} \
                 RETURNING event_id",
                value_rows(chunk.len(), 4)
            );
            let mut insert = sqlx::query(db.sql_owned(text));
            for &index in chunk {
                insert = insert
                    .bind(event_id(index))
                    .bind(messages[index].subject.as_str())
                    .bind(messages[index].payload.to_vec())
                    .bind(now);
            }
            for row in insert.fetch_all(&mut *tx).await? {
                if let Some(id) = row.try_get::<Option<String>, _>("event_id")? {
                    inserted.insert(id);
                }
            }
        }
        tx.commit().await?;
        let mut stored = Vec::with_capacity(candidates.len());
        for index in candidates {
            match event_id(index) {
                None => stored.push(index),
                // `remove`: a second copy of the id in this batch was ignored.
                Some(id) => {
                    if inserted.remove(id) {
                        stored.push(index);
                    }
                }
            }
        }
        Ok(stored)
    }

    /// Tells waiting fetchers and tails that `messages` were stored.
    fn announce(&self, messages: impl IntoIterator<Item = (String, Bytes)>) {
        let mut count = 0_u64;
        for message in messages {
            count += 1;
            // No receiver is not an error: nobody tails right now.
            let _ = self.shared.live.send(message);
        }
        if count > 0 {
            metrics::counter!("bus_published_total").increment(count);
            self.shared.wake.send_modify(|generation| *generation = generation.wrapping_add(1));
        }
    }
}

#[async_trait]
impl EventBus for EmbeddedLog {
    async fn publish(&self, messages: Vec<OutgoingMessage>) -> Vec<Result<(), BusError>> {
        let checks: Vec<Result<(), String>> =
            messages.iter().map(|message| check_subject(&message.subject)).collect();
        let valid: Vec<bool> = checks.iter().map(Result::is_ok).collect();
        match self.store(&messages, &valid).await {
            Ok(stored) => {
                self.announce(
                    stored
                        .iter()
                        .map(|&i| (messages[i].subject.clone(), messages[i].payload.clone())),
                );
                checks.into_iter().map(|check| check.map_err(BusError::Invalid)).collect()
            }
            Err(error) => {
                tracing::warn!(error = %error, "the event log could not store messages");
                let reason = format!("storing messages in the event log: {error}");
                checks
                    .into_iter()
                    .map(|check| match check {
                        Ok(()) => Err(BusError::Unavailable(reason.clone())),
                        Err(invalid) => Err(BusError::Invalid(invalid)),
                    })
                    .collect()
            }
        }
    }

    async fn subscribe(&self, spec: ConsumerSpec) -> Result<Box<dyn Subscription>, BusError> {
        check_consumer(&spec)?;
        let filters = serde_json::to_string(&spec.filter_subjects)
            .map_err(|error| BusError::Other(error.into()))?;
        let db = &self.shared.db;
        // A new durable starts at 0: the beginning of the log. An existing one keeps its
        // position; the latest spec's filters are recorded.
        let upsert = sqlx::query(db.sql(
            "INSERT INTO consumers (name, last_sequence, filter_subjects, created_at) \
             VALUES ($1, 0, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET filter_subjects = excluded.filter_subjects",
        ))
        .bind(spec.durable_name.as_str())
        .bind(filters)
        .bind(epoch_millis());
        db.execute_write(upsert).await.map_err(storage("opening the durable consumer"))?;
        let changes = self.shared.wake.subscribe();
        Ok(Box::new(EmbeddedSubscription {
            shared: self.shared.clone(),
            spec,
            changes,
            skipped_to: 0,
        }))
    }

    async fn dead_letter(
        &self,
        consumer: &str,
        delivery: &Delivery,
        error: &str,
    ) -> Result<(), BusError> {
        let db = &self.shared.db;
        let insert = sqlx::query(db.sql(
            "INSERT INTO dead_letters \
             (consumer, sequence, subject, payload, error, attempts, failed_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        ))
        .bind(consumer)
        .bind(i64::try_from(delivery.sequence).unwrap_or(i64::MAX))
        .bind(delivery.subject.as_str())
        .bind(delivery.payload.to_vec())
        .bind(error)
        .bind(i64::from(delivery.attempt))
        .bind(epoch_millis());
        db.execute_write(insert).await.map_err(storage("storing a dead letter"))?;
        Ok(())
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, BusError> {
        let db = &self.shared.db;
        let rows = sqlx::query(db.sql(
            "SELECT id, consumer, subject, payload, error, attempts, failed_at \
             FROM dead_letters ORDER BY id LIMIT $1",
        ))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(db.pool())
        .await
        .map_err(storage("listing dead letters"))?;
        rows.iter().map(dead_letter_from_row).collect()
    }

    async fn redrive(&self, id: u64) -> Result<(), BusError> {
        let unknown = || BusError::Invalid(format!("there is no dead letter {id}"));
        let key = i64::try_from(id).map_err(|_| unknown())?;
        let db = &self.shared.db;
        let failed = storage("redriving a dead letter");
        let mut tx = db.begin().await.map_err(&failed)?;
        let row = sqlx::query(db.sql("SELECT subject, payload FROM dead_letters WHERE id = $1"))
            .bind(key)
            .fetch_optional(&mut *tx)
            .await
            .map_err(&failed)?;
        let Some(row) = row else {
            return Err(unknown());
        };
        let subject: String = row.try_get("subject").map_err(&failed)?;
        let payload: Vec<u8> = row.try_get("payload").map_err(&failed)?;
        // A new message, not a re-send: no event id, so deduplication does not drop it.
        // Consumers that handled the event already skip it by the event id in the envelope.
        sqlx::query(db.sql(
            "INSERT INTO messages (event_id, subject, payload, stored_at) \
             VALUES (NULL, $1, $2, $3)",
        ))
        .bind(subject.as_str())
        .bind(payload.clone())
        .bind(epoch_millis())
        .execute(&mut *tx)
        .await
        .map_err(&failed)?;
        sqlx::query(db.sql("DELETE FROM dead_letters WHERE id = $1"))
            .bind(key)
            .execute(&mut *tx)
            .await
            .map_err(&failed)?;
        tx.commit().await.map_err(&failed)?;
        tracing::info!(dead_letter = id, subject = %subject, "dead letter redriven");
        self.announce([(subject, Bytes::from(payload))]);
        Ok(())
    }

    async fn signal(&self, subject: String, payload: Bytes) -> Result<(), BusError> {
        check_subject(&subject).map_err(BusError::Invalid)?;
        // Tails only; nothing stored, nothing counted as published.
        let _ = self.shared.live.send((subject, payload));
        Ok(())
    }

    async fn tail(
        &self,
        filter_subjects: Vec<String>,
    ) -> Result<BoxStream<'static, (String, Bytes)>, BusError> {
        for filter in &filter_subjects {
            check_filter(filter)?;
        }
        let receiver = self.shared.live.subscribe();
        let stream = futures::stream::unfold(
            (receiver, filter_subjects),
            |(mut receiver, filters)| async move {
                loop {
                    match receiver.recv().await {
                        Ok((subject, payload)) if matches_any(&filters, &subject) => {
                            return Some(((subject, payload), (receiver, filters)));
                        }
                        Ok(_) => {}
                        Err(broadcast::error::RecvError::Lagged(skipped)) => {
                            tracing::warn!(
                                skipped,
                                "an event tail fell behind and skipped messages"
                            );
                        }
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                }
            },
        );
        Ok(stream.boxed())
    }

    async fn consumer_lag(&self, durable_name: &str) -> Result<u64, BusError> {
        // Counts every message after the position, also those the consumer's filters would skip:
        // an upper bound, cheap to get.
        let db = &self.shared.db;
        let row: Option<(i64,)> = sqlx::query_as(db.sql(
            "SELECT (SELECT COUNT(*) FROM messages WHERE sequence > \
             COALESCE((SELECT last_sequence FROM consumers WHERE name = $1), 0)) \
             + (SELECT COUNT(*) FROM pending WHERE consumer = $2)",
        ))
        .bind(durable_name)
        .bind(durable_name)
        .fetch_optional(db.pool())
        .await
        .map_err(|error| BusError::Unavailable(error.to_string()))?;
        Ok(row.map_or(0, |(lag,)| u64::try_from(lag).unwrap_or(0)))
    }

    async fn check(&self) -> Result<String, String> {
        let db = &self.shared.db;
        let count: i64 = sqlx::query_scalar(db.sql("SELECT COUNT(*) FROM messages"))
            .fetch_one(db.pool())
            .await
            .map_err(|error| format!("the embedded event log does not answer: {error}"))?;
        Ok(format!("embedded log: {count} messages"))
    }
}

/// One subscription to a durable consumer. Several may share a durable name.
struct EmbeddedSubscription {
    shared: Arc<Shared>,
    spec: ConsumerSpec,
    changes: watch::Receiver<u64>,
    /// Messages up to this sequence, past the consumer's stored position, were looked at
    /// read-only and none matches the filters. Kept in memory only: a consumer whose filters
    /// match a few subjects would otherwise take the log's write lock after every publish just
    /// to move its position past messages of others. Lost with the process, it only costs a
    /// second look; a message with a lower sequence can never be committed later (SQLite has
    /// one writer, and sequences only grow).
    skipped_to: i64,
}

/// What one claim transaction handed out.
struct Claim {
    deliveries: Vec<Delivery>,
    /// The scan stopped at [`SCAN_LIMIT`] with messages left to look at.
    more: bool,
}

/// A claimed message before it becomes a [`Delivery`].
struct Claimed {
    sequence: i64,
    attempts: i64,
    subject: String,
    payload: Vec<u8>,
}

impl EmbeddedSubscription {
    /// True when a claim would find something: a visible pending delivery or a matching message
    /// after the consumer's position. Read-only, so idle consumers, and consumers for whom only
    /// other subjects were published, never take the write lock.
    async fn has_work(&mut self) -> Result<bool, BusError> {
        let db = &self.shared.db;
        let row = sqlx::query(db.sql(
            "SELECT EXISTS (SELECT 1 FROM pending WHERE consumer = $1 AND visible_at <= $2) AS due, \
             COALESCE((SELECT MAX(sequence) FROM messages), 0) AS head, \
             COALESCE((SELECT last_sequence FROM consumers WHERE name = $3), 0) AS position",
        ))
        .bind(self.spec.durable_name.as_str())
        .bind(epoch_millis())
        .bind(self.spec.durable_name.as_str())
        .fetch_one(db.pool())
        .await
        .map_err(storage("looking for deliveries"))?;
        let failed = storage("looking for deliveries");
        let due: i64 = row.try_get("due").map_err(&failed)?;
        let head: i64 = row.try_get("head").map_err(&failed)?;
        let position: i64 = row.try_get("position").map_err(&failed)?;
        if due != 0 {
            return Ok(true);
        }
        let mut from = position.max(self.skipped_to);
        while head > from {
            let subjects: Vec<(i64, String)> = sqlx::query_as(db.sql(
                "SELECT sequence, subject FROM messages \
                 WHERE sequence > $1 AND sequence <= $2 ORDER BY sequence LIMIT $3",
            ))
            .bind(from)
            .bind(head)
            .bind(i64::try_from(SCAN_BATCH).unwrap_or(i64::MAX))
            .fetch_all(db.pool())
            .await
            .map_err(&failed)?;
            let Some(last) = subjects.last().map(|(sequence, _)| *sequence) else { break };
            for (sequence, subject) in subjects {
                if matches_any(&self.spec.filter_subjects, &subject) {
                    self.skipped_to = self.skipped_to.max(sequence - 1);
                    return Ok(true);
                }
            }
            from = last;
            self.skipped_to = self.skipped_to.max(last);
        }
        Ok(false)
    }

    /// Claims up to `max` deliveries in one write transaction: due redeliveries first, then new
    /// matching messages.
    #[tracing::instrument(level = "debug", skip_all, fields(consumer = %self.spec.durable_name))]
    async fn claim(&self, max: usize) -> Result<Claim, BusError> {
        let db = &self.shared.db;
        let name = self.spec.durable_name.as_str();
        let failed = storage("claiming deliveries");
        let now = epoch_millis();
        let invisible_until = now.saturating_add(millis(self.spec.ack_wait));
        let mut claimed = Vec::new();
        let mut more = false;

        let mut tx = db.begin().await.map_err(&failed)?;
        let due = sqlx::query(db.sql(
            "SELECT p.sequence, p.attempts, m.subject, m.payload FROM pending p \
             JOIN messages m ON m.sequence = p.sequence \
             WHERE p.consumer = $1 AND p.visible_at <= $2 \
             ORDER BY p.visible_at, p.sequence LIMIT $3",
        ))
        .bind(name)
        .bind(now)
        .bind(i64::try_from(max).unwrap_or(i64::MAX))
        .fetch_all(&mut *tx)
        .await
        .map_err(&failed)?;
        for row in due {
            let sequence: i64 = row.try_get("sequence").map_err(&failed)?;
            let attempts = row.try_get::<i64, _>("attempts").map_err(&failed)?.saturating_add(1);
            sqlx::query(db.sql(
                "UPDATE pending SET attempts = $1, visible_at = $2 \
                 WHERE consumer = $3 AND sequence = $4",
            ))
            .bind(attempts)
            .bind(invisible_until)
            .bind(name)
            .bind(sequence)
            .execute(&mut *tx)
            .await
            .map_err(&failed)?;
            claimed.push(Claimed {
                sequence,
                attempts,
                subject: row.try_get("subject").map_err(&failed)?,
                payload: row.try_get("payload").map_err(&failed)?,
            });
        }

        if claimed.len() < max {
            let start: Option<i64> =
                sqlx::query_scalar(db.sql("SELECT last_sequence FROM consumers WHERE name = $1"))
                    .bind(name)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(&failed)?;
            let Some(start) = start else {
                return Err(BusError::Invalid(format!(
                    "the durable consumer {name} was removed from the event log"
                )));
            };
            // Messages up to `skipped_to` match nothing: the scan starts after them.
            let mut position = start.max(self.skipped_to);
            let mut scanned = 0;
            let mut fresh: Vec<i64> = Vec::new();
            'scan: loop {
                let rows = sqlx::query(db.sql(
                    "SELECT sequence, subject, payload FROM messages \
                     WHERE sequence > $1 ORDER BY sequence LIMIT $2",
                ))
                .bind(position)
                .bind(i64::try_from(SCAN_BATCH).unwrap_or(i64::MAX))
                .fetch_all(&mut *tx)
                .await
                .map_err(&failed)?;
                let exhausted = rows.len() < SCAN_BATCH;
                for row in rows {
                    let sequence: i64 = row.try_get("sequence").map_err(&failed)?;
                    let subject: String = row.try_get("subject").map_err(&failed)?;
                    position = sequence;
                    scanned += 1;
                    if !matches_any(&self.spec.filter_subjects, &subject) {
                        continue;
                    }
                    fresh.push(sequence);
                    claimed.push(Claimed {
                        sequence,
                        attempts: 1,
                        subject,
                        payload: row.try_get("payload").map_err(&failed)?,
                    });
                    if claimed.len() == max {
                        break 'scan;
                    }
                }
                if exhausted {
                    break;
                }
                if scanned >= SCAN_LIMIT {
                    more = true;
                    break;
                }
            }
            // One statement for the batch's new pending rows: every statement is a round trip
            // to the connection's thread, and this one runs under the log's write lock.
            for chunk in fresh.chunks(ROWS_PER_STATEMENT) {
                let text = format!(
                    "INSERT INTO pending (consumer, sequence, attempts, visible_at) VALUES {}",
                    value_rows(chunk.len(), 4)
                );
                let mut insert = sqlx::query(db.sql_owned(text));
                for sequence in chunk {
                    insert = insert.bind(name).bind(*sequence).bind(1_i64).bind(invisible_until);
                }
                insert.execute(&mut *tx).await.map_err(&failed)?;
            }
            if position != start {
                sqlx::query(db.sql("UPDATE consumers SET last_sequence = $1 WHERE name = $2"))
                    .bind(position)
                    .bind(name)
                    .execute(&mut *tx)
                    .await
                    .map_err(&failed)?;
            }
        }
        tx.commit().await.map_err(&failed)?;

        let deliveries = claimed
            .into_iter()
            .map(|claimed| Delivery {
                subject: claimed.subject,
                payload: Bytes::from(claimed.payload),
                attempt: u32::try_from(claimed.attempts).unwrap_or(u32::MAX),
                sequence: u64::try_from(claimed.sequence).unwrap_or_default(),
                settle: Box::new(EmbeddedSettle {
                    shared: self.shared.clone(),
                    consumer: self.spec.durable_name.clone(),
                    sequence: claimed.sequence,
                    attempts: claimed.attempts,
                }),
            })
            .collect();
        Ok(Claim { deliveries, more })
    }
}

#[async_trait]
impl Subscription for EmbeddedSubscription {
    async fn fetch(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, BusError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Marked seen before looking, so a publish committed while we look still wakes us.
            self.changes.borrow_and_update();
            if self.has_work().await? {
                let claim = self.claim(max).await?;
                if !claim.deliveries.is_empty() {
                    return Ok(claim.deliveries);
                }
                if claim.more {
                    continue;
                }
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            let nap = (deadline - now).min(POLL_INTERVAL);
            if let Ok(Err(_closed)) = tokio::time::timeout(nap, self.changes.changed()).await {
                // Cannot happen while we hold the log, but never spin if it does.
                tokio::time::sleep(nap).await;
            }
        }
    }

    /// One gated delete for the whole batch (per 500), instead of one autocommitted delete per
    /// delivery, each of which took SQLite's write lock on its own, outside the queue, and slept
    /// in its busy handler while a claim or publish held it. No transaction: a delete of
    /// settled deliveries is safe to repeat, and a chunk that fails leaves only those
    /// deliveries to come back after `ack_wait`.
    async fn ack_all(&mut self, deliveries: Vec<Delivery>) -> Vec<Result<(), BusError>> {
        let db = &self.shared.db;
        let mut outcomes = Vec::with_capacity(deliveries.len());
        for chunk in deliveries.chunks(ROWS_PER_STATEMENT) {
            let text = format!(
                "DELETE FROM pending WHERE consumer = $1 AND sequence IN ({})",
                placeholders(2, chunk.len())
            );
            let mut delete = sqlx::query(db.sql_owned(text)).bind(self.spec.durable_name.as_str());
            for delivery in chunk {
                delete = delete.bind(i64::try_from(delivery.sequence).unwrap_or(i64::MAX));
            }
            let deleted = db.execute_write(delete).await;
            outcomes.extend(chunk.iter().map(|_| match &deleted {
                Ok(_) => Ok(()),
                Err(error) => Err(BusError::Unavailable(format!("acking deliveries: {error}"))),
            }));
        }
        outcomes
    }
}

/// Settles one delivery of one consumer.
struct EmbeddedSettle {
    shared: Arc<Shared>,
    consumer: String,
    sequence: i64,
    /// The attempt this delivery was; a nak only reschedules the delivery it answers.
    attempts: i64,
}

impl EmbeddedSettle {
    /// Forgets the delivery: whoever holds it now, the message has been handled (or given up).
    async fn forget(&self, context: &'static str) -> Result<(), BusError> {
        let db = &self.shared.db;
        let delete =
            sqlx::query(db.sql("DELETE FROM pending WHERE consumer = $1 AND sequence = $2"))
                .bind(self.consumer.as_str())
                .bind(self.sequence);
        db.execute_write(delete).await.map_err(storage(context))?;
        Ok(())
    }
}

#[async_trait]
impl Settle for EmbeddedSettle {
    async fn ack(self: Box<Self>) -> Result<(), BusError> {
        self.forget("acking a delivery").await
    }

    async fn nak(self: Box<Self>, delay: Duration) -> Result<(), BusError> {
        let db = &self.shared.db;
        // A stale delivery (its ack_wait ran out and someone else holds it now) must not
        // postpone the current one: only the attempt that is pending is rescheduled.
        let reschedule = sqlx::query(db.sql(
            "UPDATE pending SET visible_at = $1 \
             WHERE consumer = $2 AND sequence = $3 AND attempts = $4",
        ))
        .bind(epoch_millis().saturating_add(millis(delay)))
        .bind(self.consumer.as_str())
        .bind(self.sequence)
        .bind(self.attempts);
        db.execute_write(reschedule).await.map_err(storage("naking a delivery"))?;
        self.shared.wake.send_modify(|generation| *generation = generation.wrapping_add(1));
        Ok(())
    }

    async fn term(self: Box<Self>) -> Result<(), BusError> {
        self.forget("terminating a delivery").await
    }
}

fn dead_letter_from_row(row: &sqlx::any::AnyRow) -> Result<DeadLetter, BusError> {
    let failed = storage("reading a dead letter");
    let id: i64 = row.try_get("id").map_err(&failed)?;
    let attempts: i64 = row.try_get("attempts").map_err(&failed)?;
    let payload: Vec<u8> = row.try_get("payload").map_err(&failed)?;
    Ok(DeadLetter {
        id: u64::try_from(id).unwrap_or_default(),
        consumer: row.try_get("consumer").map_err(&failed)?,
        subject: row.try_get("subject").map_err(&failed)?,
        payload: Bytes::from(payload),
        error: row.try_get("error").map_err(&failed)?,
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        failed_at: row.try_get("failed_at").map_err(&failed)?,
    })
}

/// Maps a storage error to the bus's "unavailable, retry later", saying what was being done.
fn storage(context: &'static str) -> impl Fn(sqlx::Error) -> BusError {
    move |error| BusError::Unavailable(format!("{context}: {error}"))
}

/// No filter means every subject (a JetStream consumer without a filter gets the whole stream).
fn matches_any(filters: &[String], subject: &str) -> bool {
    filters.is_empty() || filters.iter().any(|filter| subject_matches(filter, subject))
}

/// A publishable subject: dot-separated non-empty tokens, no wildcards, no whitespace.
fn check_subject(subject: &str) -> Result<(), String> {
    let valid = !subject.is_empty()
        && subject.split('.').all(|token| {
            !token.is_empty() && !token.contains(['*', '>']) && !token.contains(char::is_whitespace)
        });
    if valid { Ok(()) } else { Err(format!("`{subject}` is not a subject one can publish to")) }
}

/// A filter: like a subject, but `*` may stand for a token and a final `>` for the rest.
fn check_filter(filter: &str) -> Result<(), BusError> {
    let tokens: Vec<&str> = filter.split('.').collect();
    let last = tokens.len().saturating_sub(1);
    let valid = !filter.is_empty()
        && tokens.iter().enumerate().all(|(i, token)| match *token {
            "*" => true,
            ">" => i == last,
            token => {
                !token.is_empty()
                    && !token.contains(['*', '>'])
                    && !token.contains(char::is_whitespace)
            }
        });
    if valid {
        Ok(())
    } else {
        Err(BusError::Invalid(format!("`{filter}` is not a valid subject filter")))
    }
}

fn check_consumer(spec: &ConsumerSpec) -> Result<(), BusError> {
    let name = &spec.durable_name;
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err(BusError::Invalid(format!(
            "`{name}` is not a durable consumer name (letters, digits, `-` and `_`)"
        )));
    }
    spec.filter_subjects.iter().try_for_each(|filter| check_filter(filter))
}

fn epoch_millis() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(millis).unwrap_or_default()
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    const LONG_ACK_WAIT: Duration = Duration::from_secs(30);
    const SOON: Duration = Duration::from_secs(5);

    async fn open_log() -> anyhow::Result<(tempfile::TempDir, EmbeddedLog)> {
        let dir = tempfile::tempdir()?;
        let log = EmbeddedLog::open(&dir.path().join("events.db")).await?;
        Ok((dir, log))
    }

    fn message(event_id: &str, subject: &str, payload: &str) -> OutgoingMessage {
        OutgoingMessage {
            event_id: event_id.to_owned(),
            subject: subject.to_owned(),
            payload: Bytes::from(payload.to_owned()),
        }
    }

    fn consumer(name: &str, filter: &str, ack_wait: Duration) -> ConsumerSpec {
        ConsumerSpec {
            durable_name: name.to_owned(),
            filter_subjects: vec![filter.to_owned()],
            ack_wait,
        }
    }

    async fn publish(log: &EmbeddedLog, messages: Vec<OutgoingMessage>) -> anyhow::Result<()> {
        for outcome in log.publish(messages).await {
            outcome?;
        }
        Ok(())
    }

    fn payloads(deliveries: &[Delivery]) -> Vec<&[u8]> {
        deliveries.iter().map(|delivery| delivery.payload.as_ref()).collect()
    }

    /// `count` deliveries, fetched in as many calls as it takes (fails after `SOON` without one).
    async fn fetch_exactly(
        subscription: &mut Box<dyn Subscription>,
        count: usize,
    ) -> anyhow::Result<Vec<Delivery>> {
        let mut deliveries = Vec::with_capacity(count);
        while deliveries.len() < count {
            let more = subscription.fetch(count - deliveries.len(), SOON).await?;
            anyhow::ensure!(!more.is_empty(), "only {} of {count} deliveries", deliveries.len());
            deliveries.extend(more);
        }
        Ok(deliveries)
    }

    async fn ack_all(deliveries: Vec<Delivery>) -> anyhow::Result<()> {
        for delivery in deliveries {
            delivery.settle.ack().await?;
        }
        Ok(())
    }

    #[tokio::test]
    async fn a_new_consumer_gets_every_stored_message_once_in_order() -> anyhow::Result<()> {
        let (_dir, log) = open_log().await?;
        publish(
            &log,
            vec![
                message("e1", "t.user.created", "one"),
                message("e2", "t.user.updated", "two"),
                message("e3", "t.user.deleted", "three"),
            ],
        )
        .await?;
        publish(&log, vec![message("e2", "t.user.updated", "two again")]).await?;

        let mut subscription = log.subscribe(consumer("late", "t.>", LONG_ACK_WAIT)).await?;
        let deliveries = subscription.fetch(10, SOON).await?;
        assert_eq!(payloads(&deliveries), [&b"one"[..], b"two", b"three"]);
        assert!(deliveries.iter().all(|delivery| delivery.attempt == 1));
        let sequences: Vec<u64> = deliveries.iter().map(|delivery| delivery.sequence).collect();
        assert!(sequences.windows(2).all(|pair| pair[0] < pair[1]), "{sequences:?}");
        assert_eq!(deliveries[1].subject, "t.user.updated");
        ack_all(deliveries).await?;
        assert!(subscription.fetch(10, Duration::from_millis(100)).await?.is_empty());
        assert_eq!(log.check().await.ok(), Some("embedded log: 3 messages".to_owned()));
        Ok(())
    }

    #[tokio::test]
    async fn a_batch_stores_the_first_copy_of_an_id_and_every_message_without_one()
    -> anyhow::Result<()> {
        let (_dir, log) = open_log().await?;
        publish(&log, vec![message("old", "t.a.b", "stored before")]).await?;
        let mut tail = log.tail(vec!["t.>".to_owned()]).await?;
        let outcomes = log
            .publish(vec![
                message("e1", "t.a.b", "first e1"),
                message("e1", "t.a.b", "second e1"),
                message("", "t.a.b", "no id 1"),
                message("old", "t.a.b", "old again"),
                message("", "t.a.b", "no id 2"),
                message("e2", "t.a.b", "e2"),
            ])
            .await;
        assert!(outcomes.iter().all(Result::is_ok), "duplicates are not errors");

        let mut subscription = log.subscribe(consumer("all", "t.>", LONG_ACK_WAIT)).await?;
        let deliveries = subscription.fetch(10, SOON).await?;
        let stored = [&b"stored before"[..], b"first e1", b"no id 1", b"no id 2", b"e2"];
        assert_eq!(payloads(&deliveries), stored);
        // Tails hear of exactly the new ones, in order.
        let mut announced = Vec::new();
        while announced.len() < 4 {
            let next = tokio::time::timeout(SOON, tail.next()).await?;
            let Some((_subject, payload)) = next else { anyhow::bail!("the tail ended") };
            announced.push(payload);
        }
        let announced: Vec<&[u8]> = announced.iter().map(|payload| payload.as_ref()).collect();
        assert_eq!(announced, stored[1..]);
        Ok(())
    }

    #[tokio::test]
    async fn acking_a_batch_at_once_settles_exactly_those_deliveries() -> anyhow::Result<()> {
        let (_dir, log) = open_log().await?;
        let mut subscription =
            log.subscribe(consumer("batch", "t.>", Duration::from_millis(300))).await?;
        let mut others =
            log.subscribe(consumer("other", "t.>", Duration::from_millis(300))).await?;
        let batch: Vec<OutgoingMessage> =
            (0..600).map(|n| message(&format!("m{n}"), "t.x.y", &format!("{n}"))).collect();
        publish(&log, batch).await?;

        let mut deliveries = fetch_exactly(&mut subscription, 600).await?;
        drop(fetch_exactly(&mut others, 600).await?);
        let kept = deliveries.remove(17);
        for outcome in subscription.ack_all(deliveries).await {
            outcome?;
        }
        drop(kept);
        // Only the one left unacked comes back after its ack_wait; the other consumer's
        // deliveries of the same messages (unsettled) all come back to it.
        let again = subscription.fetch(600, SOON).await?;
        assert_eq!(payloads(&again), [b"17"]);
        assert_eq!(again[0].attempt, 2);
        let redelivered = fetch_exactly(&mut others, 600).await?;
        assert!(redelivered.iter().all(|delivery| delivery.attempt == 2));
        Ok(())
    }

    #[tokio::test]
    async fn acked_messages_stay_done_and_a_nak_brings_one_back_after_its_delay()
    -> anyhow::Result<()> {
        let (_dir, log) = open_log().await?;
        let mut subscription = log.subscribe(consumer("naks", "t.>", LONG_ACK_WAIT)).await?;
        publish(&log, vec![message("a", "t.x.done", "a"), message("b", "t.x.fails", "b")]).await?;

        let mut deliveries = subscription.fetch(10, SOON).await?;
        assert_eq!(payloads(&deliveries), [b"a", b"b"]);
        let failing = deliveries.remove(1);
        let failing_sequence = failing.sequence;
        ack_all(deliveries).await?;
        failing.settle.nak(Duration::from_millis(500)).await?;

        assert!(subscription.fetch(10, Duration::ZERO).await?.is_empty(), "delay not respected");
        let again = subscription.fetch(10, SOON).await?;
        assert_eq!(payloads(&again), [b"b"]);
        assert_eq!(again[0].attempt, 2);
        assert_eq!(again[0].sequence, failing_sequence);
        ack_all(again).await?;
        assert!(subscription.fetch(10, Duration::from_millis(100)).await?.is_empty());
        Ok(())
    }

    #[tokio::test]
    async fn deliveries_a_killed_run_left_in_flight_are_due_again_after_a_release()
    -> anyhow::Result<()> {
        let (_dir, log) = open_log().await?;
        let spec = consumer("restarted", "t.>", Duration::from_secs(3600));
        let mut subscription = log.subscribe(spec.clone()).await?;
        publish(&log, vec![message("a", "t.x.y", "in flight")]).await?;
        let first = subscription.fetch(10, SOON).await?;
        assert_eq!(payloads(&first), [b"in flight"]);
        drop(first);
        assert!(subscription.fetch(10, SOON).await?.is_empty(), "hidden for its ack_wait");

        assert_eq!(log.release_in_flight().await?, 1);
        let again = log.subscribe(spec).await?.fetch(10, SOON).await?;
        assert_eq!(payloads(&again), [b"in flight"]);
        assert_eq!(again[0].attempt, 2);
        for delivery in again {
            delivery.settle.ack().await?;
        }
        assert_eq!(log.release_in_flight().await?, 0, "nothing is in flight once acked");
        Ok(())
    }

    #[tokio::test]
    async fn a_delivery_dropped_without_settling_comes_back_after_ack_wait() -> anyhow::Result<()> {
        let (_dir, log) = open_log().await?;
        let mut subscription =
            log.subscribe(consumer("crashy", "t.>", Duration::from_millis(200))).await?;
        publish(&log, vec![message("a", "t.x.y", "lost")]).await?;

        let first = subscription.fetch(10, SOON).await?;
        assert_eq!(payloads(&first), [b"lost"]);
        let sequence = first[0].sequence;
        drop(first);

        let again = subscription.fetch(10, SOON).await?;
        assert_eq!(payloads(&again), [b"lost"]);
        assert_eq!((again[0].sequence, again[0].attempt), (sequence, 2));
        Ok(())
    }

    #[tokio::test]
    async fn subscriptions_sharing_a_durable_name_split_the_messages() -> anyhow::Result<()> {
        let (_dir, log) = open_log().await?;
        let messages =
            (0..100).map(|i| message(&format!("e{i}"), "t.order.placed", &i.to_string())).collect();
        publish(&log, messages).await?;

        let mut tasks = Vec::new();
        for _ in 0..2 {
            let mut subscription = log.subscribe(consumer("shared", "t.>", LONG_ACK_WAIT)).await?;
            tasks.push(tokio::spawn(async move {
                let mut seen = Vec::new();
                for _ in 0..200 {
                    let deliveries = subscription.fetch(3, Duration::from_millis(200)).await?;
                    if deliveries.is_empty() {
                        break;
                    }
                    for delivery in deliveries {
                        seen.push(delivery.sequence);
                        delivery.settle.ack().await?;
                    }
                }
                Ok::<_, BusError>(seen)
            }));
        }
        let mut all = Vec::new();
        for task in tasks {
            all.extend(task.await??);
        }
        let distinct: BTreeSet<u64> = all.iter().copied().collect();
        assert_eq!(all.len(), 100, "some messages were delivered twice or never");
        assert_eq!(distinct.len(), 100);
        Ok(())
    }

    #[tokio::test]
    async fn unacked_deliveries_and_positions_survive_reopening_the_file() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("events.db");
        let spec = consumer("durable", "t.>", Duration::from_millis(200));
        let unacked_sequence = {
            let log = EmbeddedLog::open(&path).await?;
            publish(&log, vec![message("a", "t.x.y", "acked"), message("b", "t.x.y", "unacked")])
                .await?;
            let mut subscription = log.subscribe(spec.clone()).await?;
            let mut deliveries = subscription.fetch(10, SOON).await?;
            assert_eq!(payloads(&deliveries), [&b"acked"[..], b"unacked"]);
            let unacked = deliveries.remove(1);
            ack_all(deliveries).await?;
            let sequence = unacked.sequence;
            drop((unacked, subscription));
            log.close().await;
            sequence
        };

        let log = EmbeddedLog::open(&path).await?;
        let mut subscription = log.subscribe(spec).await?;
        let again = subscription.fetch(10, SOON).await?;
        assert_eq!(payloads(&again), [b"unacked"]);
        assert_eq!((again[0].sequence, again[0].attempt), (unacked_sequence, 2));
        ack_all(again).await?;

        publish(&log, vec![message("c", "t.x.y", "new")]).await?;
        let next = subscription.fetch(10, SOON).await?;
        assert_eq!(payloads(&next), [b"new"]);
        assert_eq!(next[0].attempt, 1);
        Ok(())
    }

    #[tokio::test]
    async fn a_consumer_gets_only_the_subjects_it_filters_on() -> anyhow::Result<()> {
        let (_dir, log) = open_log().await?;
        publish(
            &log,
            vec![
                message("o", "p.order.placed", "order"),
                message("u", "p.user.created", "user"),
                message("x", "p.user.created.extra", "too deep"),
            ],
        )
        .await?;
        let mut subscription = log.subscribe(consumer("users", "p.user.*", LONG_ACK_WAIT)).await?;
        let deliveries = subscription.fetch(10, SOON).await?;
        assert_eq!(payloads(&deliveries), [b"user"]);
        assert_eq!(deliveries[0].subject, "p.user.created");
        ack_all(deliveries).await?;
        assert!(subscription.fetch(10, Duration::from_millis(100)).await?.is_empty());
        Ok(())
    }

    #[tokio::test]
    async fn messages_for_other_consumers_are_passed_over_without_moving_the_stored_position()
    -> anyhow::Result<()> {
        let (_dir, log) = open_log().await?;
        let spec = consumer("orders", "p.order.*", LONG_ACK_WAIT);
        let mut subscription = log.subscribe(spec.clone()).await?;
        let stored_position = || async {
            sqlx::query_scalar::<_, i64>(
                log.shared.db.sql("SELECT last_sequence FROM consumers WHERE name = $1"),
            )
            .bind("orders")
            .fetch_one(log.shared.db.pool())
            .await
        };

        let others: Vec<OutgoingMessage> =
            (0..300).map(|n| message(&format!("u{n}"), "p.user.created", "user")).collect();
        publish(&log, others).await?;
        assert!(subscription.fetch(10, Duration::from_millis(100)).await?.is_empty());
        assert_eq!(stored_position().await?, 0, "no write for messages of other subjects");

        publish(
            &log,
            vec![
                message("p1", "p.user.created", "user"),
                message("o1", "p.order.placed", "first order"),
                message("p2", "p.user.created", "user"),
                message("o2", "p.order.placed", "second order"),
            ],
        )
        .await?;
        let deliveries = subscription.fetch(10, SOON).await?;
        assert_eq!(payloads(&deliveries), [&b"first order"[..], b"second order"]);
        assert_eq!(stored_position().await?, 304, "a claim stores the position it reached");
        ack_all(deliveries).await?;

        // Another process (nothing in memory) sharing the durable name finds nothing left.
        let mut replica = log.subscribe(spec).await?;
        assert!(replica.fetch(10, Duration::from_millis(100)).await?.is_empty());
        publish(&log, vec![message("o3", "p.order.placed", "third order")]).await?;
        assert_eq!(payloads(&replica.fetch(10, SOON).await?), [b"third order"]);
        Ok(())
    }

    #[tokio::test]
    async fn a_dead_letter_is_listed_and_redriven_to_the_consumer() -> anyhow::Result<()> {
        let (_dir, log) = open_log().await?;
        let mut subscription = log.subscribe(consumer("poisoned", "t.>", LONG_ACK_WAIT)).await?;
        publish(&log, vec![message("p", "t.order.placed", "poison")]).await?;

        let mut deliveries = subscription.fetch(10, SOON).await?;
        assert_eq!(payloads(&deliveries), [b"poison"]);
        let delivery = deliveries.remove(0);
        log.dead_letter("poisoned", &delivery, "unknown product").await?;
        delivery.settle.term().await?;
        assert!(subscription.fetch(10, Duration::from_millis(100)).await?.is_empty());

        let letters = log.dead_letters(10).await?;
        assert_eq!(letters.len(), 1);
        let letter = &letters[0];
        assert_eq!(
            (letter.consumer.as_str(), letter.subject.as_str(), letter.error.as_str()),
            ("poisoned", "t.order.placed", "unknown product")
        );
        assert_eq!((letter.payload.as_ref(), letter.attempts), (&b"poison"[..], 1));

        log.redrive(letter.id).await?;
        let redriven = subscription.fetch(10, SOON).await?;
        assert_eq!(payloads(&redriven), [b"poison"]);
        assert_eq!(redriven[0].subject, "t.order.placed");
        assert!(log.dead_letters(10).await?.is_empty());
        assert!(matches!(log.redrive(letter.id).await, Err(BusError::Invalid(_))));
        Ok(())
    }

    #[tokio::test]
    async fn a_tail_sees_matching_messages_published_after_it_opened() -> anyhow::Result<()> {
        let (_dir, log) = open_log().await?;
        publish(&log, vec![message("before", "t.user.created", "before")]).await?;
        let mut tail = log.tail(vec!["t.user.*".to_owned()]).await?;
        publish(
            &log,
            vec![message("o", "t.order.placed", "order"), message("u", "t.user.created", "user")],
        )
        .await?;
        let seen = tokio::time::timeout(SOON, tail.next()).await?;
        assert_eq!(seen, Some(("t.user.created".to_owned(), Bytes::from_static(b"user"))));
        Ok(())
    }

    #[tokio::test]
    async fn a_signal_reaches_tails_and_is_stored_nowhere() -> anyhow::Result<()> {
        let (_dir, log) = open_log().await?;
        let mut subscription = log.subscribe(consumer("everything", ">", LONG_ACK_WAIT)).await?;
        let mut tail = log.tail(vec!["signal.t.>".to_owned()]).await?;
        log.signal("signal.t.orders.woken".to_owned(), Bytes::from_static(b"hint")).await?;
        let seen = tokio::time::timeout(SOON, tail.next()).await?;
        assert_eq!(seen, Some(("signal.t.orders.woken".to_owned(), Bytes::from_static(b"hint"))));
        assert!(subscription.fetch(10, Duration::from_millis(200)).await?.is_empty());
        assert!(matches!(
            log.signal("signal.*".to_owned(), Bytes::new()).await,
            Err(BusError::Invalid(_))
        ));
        Ok(())
    }

    #[tokio::test]
    async fn a_waiting_fetch_returns_when_another_task_publishes() -> anyhow::Result<()> {
        let (_dir, log) = open_log().await?;
        let mut subscription = log.subscribe(consumer("waiter", "t.>", LONG_ACK_WAIT)).await?;
        let fetch =
            tokio::spawn(async move { subscription.fetch(10, Duration::from_secs(2)).await });
        let publisher = log.clone();
        tokio::spawn(async move { publisher.publish(vec![message("w", "t.x.y", "woke")]).await });

        let deliveries = tokio::time::timeout(Duration::from_secs(10), fetch).await???;
        assert_eq!(payloads(&deliveries), [b"woke"]);
        Ok(())
    }

    #[tokio::test]
    async fn invalid_subjects_and_consumer_names_are_refused() -> anyhow::Result<()> {
        let (_dir, log) = open_log().await?;
        let outcomes =
            log.publish(vec![message("ok", "t.x.y", "fine"), message("bad", "t.*.y", "no")]).await;
        assert!(outcomes[0].is_ok());
        assert!(matches!(outcomes[1], Err(BusError::Invalid(_))));
        let refused = log.subscribe(consumer("no spaces", "t.>", LONG_ACK_WAIT)).await;
        assert!(matches!(refused, Err(BusError::Invalid(_))));
        let refused = log.subscribe(consumer("fine", "t.>.x", LONG_ACK_WAIT)).await;
        assert!(matches!(refused, Err(BusError::Invalid(_))));
        Ok(())
    }
}
