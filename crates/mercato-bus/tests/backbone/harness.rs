//! The test bed every drill runs on: a fresh service database with the bus tables and an
//! `effects` table, an outbox, one bus (the embedded log in a temp dir, or JetStream under a
//! prefix of its own, on the shared server or on a private one the drill may kill), and the
//! relay and consumers as tasks that a drill can stop, or abort like a crash.
//!
//! "Applied once" is always read from the database: [`EffectHandler`] inserts one `effects` row
//! per application, and the table has no unique key, so a second application would show as a
//! second row instead of an error.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use mercato_bus::bus::{DeadLetter, OutgoingMessage};
use mercato_bus::embedded::EmbeddedLog;
use mercato_bus::jetstream::{JetStreamBus, stream_name};
use mercato_bus::{
    Consumer, ConsumerConfig, EventBus, Handler, HandlerError, MIGRATIONS, Outbox, RelaySettings,
};
use mercato_contracts::{Envelope, Event, UserCreated};
use mercato_store::sqlx::{self, AnyConnection};
use mercato_store::{Backend, Database, PoolSettings};
use mercato_testkit::servers::PrivateNats;
use mercato_testkit::{TestDatabase, shared_nats_url, unique_prefix, wait_until};
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinHandle};

/// Runs one drill body against the named (bus, database) cases, one test each:
///
/// ```ignore
/// drill! {
///     async fn nothing_is_lost(bus, backend) { ... } on [embedded_sqlite, jetstream_postgres]
/// }
/// ```
macro_rules! drill {
    ($(#[$meta:meta])* async fn $name:ident($bus:ident, $backend:ident) $body:block
        on [$($case:ident),+ $(,)?]) => {
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn run(
                $bus: $crate::harness::BusChoice,
                $backend: mercato_store::Backend,
            ) $body

            $( drill!(@case $case); )+
        }
    };
    (@case embedded_sqlite) => {
        drill!(@test embedded_sqlite, Embedded, Sqlite);
    };
    (@case embedded_postgres) => {
        drill!(@test embedded_postgres, Embedded, Postgres);
    };
    (@case jetstream_sqlite) => {
        drill!(@test jetstream_sqlite, JetStream, Sqlite);
    };
    (@case jetstream_postgres) => {
        drill!(@test jetstream_postgres, JetStream, Postgres);
    };
    (@test $test:ident, $bus:ident, $backend:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $test() {
            run($crate::harness::BusChoice::$bus, mercato_store::Backend::$backend).await
        }
    };
}

/// Which bus implementation a drill runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusChoice {
    Embedded,
    JetStream,
}

/// For JetStream: the machine's shared server, or a private one the drill may stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Broker {
    Shared,
    Private,
}

/// Generous bounds: they only matter when something is broken, and the machine is shared.
pub const SETTLE: Duration = Duration::from_secs(30);
pub const AFTER_RESTART: Duration = Duration::from_secs(60);

pub struct TestBed {
    pub choice: BusChoice,
    pub prefix: String,
    pub db: Database,
    pub outbox: Outbox,
    pub bus: Arc<dyn EventBus>,
    /// The private server, when the drill asked for one.
    pub broker: Option<PrivateNats>,
    nats_url: Option<String>,
    pub log_path: PathBuf,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    _log_dir: tempfile::TempDir,
    _test_db: TestDatabase,
}

impl TestBed {
    /// A bed on `choice` and `backend`; `None` when a server is unreachable and not required
    /// (the testkit has said so loudly).
    pub async fn start(choice: BusChoice, backend: Backend, broker: Broker) -> Option<Self> {
        let test_db = TestDatabase::create(backend).await?;
        let db = Database::connect(&test_db.url, &PoolSettings::default())
            .expect("a pool for the test database");
        db.migrate(&MIGRATIONS).await.expect("the bus migrations");
        for statement in [
            // No key on purpose: applying an event twice must show as two rows.
            "CREATE TABLE effects (event_id VARCHAR(36) NOT NULL, consumer VARCHAR(100) NOT NULL)",
            "CREATE TABLE order_state (consumer VARCHAR(100) NOT NULL, \
             order_id VARCHAR(36) NOT NULL, version BIGINT NOT NULL, quantity BIGINT NOT NULL, \
             PRIMARY KEY (consumer, order_id))",
        ] {
            sqlx::query(db.sql(statement)).execute(db.pool()).await.expect("the test tables");
        }
        let log_dir = tempfile::tempdir().expect("a temporary directory for the event log");
        let log_path = log_dir.path().join("events.db");
        let prefix = unique_prefix();
        let (bus, broker, nats_url): (Arc<dyn EventBus>, _, _) = match (choice, broker) {
            (BusChoice::Embedded, _) => {
                let log = EmbeddedLog::open(&log_path).await.expect("the embedded log opens");
                (Arc::new(log), None, None)
            }
            (BusChoice::JetStream, Broker::Shared) => {
                let url = shared_nats_url();
                let bus = JetStreamBus::connect(&url, &prefix).await.expect("a NATS client");
                if let Err(reason) = connected(&bus).await {
                    mercato_testkit::skip_or_fail(&format!(
                        "NATS is unreachable at {url} ({reason})"
                    ));
                    return None;
                }
                (Arc::new(bus), None, Some(url))
            }
            (BusChoice::JetStream, Broker::Private) => {
                let server = PrivateNats::start().await?;
                let url = server.url();
                let bus = JetStreamBus::connect(&url, &prefix).await.expect("a NATS client");
                (Arc::new(bus), Some(server), Some(url))
            }
        };
        let outbox = Outbox::new(db.clone());
        let (stop, _) = watch::channel(false);
        Some(Self {
            choice,
            prefix,
            db,
            outbox,
            bus,
            broker,
            nats_url,
            log_path,
            stop,
            tasks: Vec::new(),
            _log_dir: log_dir,
            _test_db: test_db,
        })
    }

    /// Fast retries so that drills finish quickly once the fault is gone.
    pub fn relay_settings() -> RelaySettings {
        RelaySettings {
            interval: Duration::from_millis(50),
            retry_min: Duration::from_millis(50),
            retry_max: Duration::from_millis(500),
            ..Default::default()
        }
    }

    /// A consumer of every subject of this bed: 3 attempts, 100 ms apart, `ack_wait` 5 s.
    pub fn consumer_config(&self, name: &str) -> ConsumerConfig {
        ConsumerConfig {
            max_attempts: 3,
            backoff: vec![Duration::from_millis(100)],
            ack_wait: Duration::from_secs(5),
            ..ConsumerConfig::new(name, vec![format!("{}.>", self.prefix)])
        }
    }

    pub fn start_relay(&mut self) -> AbortHandle {
        let relay = self
            .outbox
            .relay(self.bus.clone(), &self.prefix, "test")
            .with_settings(Self::relay_settings());
        self.spawn(relay.run(self.stop.subscribe()))
    }

    pub fn start_consumer(
        &mut self,
        config: ConsumerConfig,
        handler: Arc<dyn Handler>,
    ) -> AbortHandle {
        let consumer = Consumer::new(self.db.clone(), self.bus.clone(), config, handler);
        self.spawn(consumer.run(self.stop.subscribe()))
    }

    fn spawn(&mut self, task: impl Future<Output = ()> + Send + 'static) -> AbortHandle {
        let handle = tokio::spawn(task);
        let abort = handle.abort_handle();
        self.tasks.push(handle);
        abort
    }

    /// Aborts every task at once, as a crash would: nothing is settled, nothing finishes.
    pub async fn crash_tasks(&mut self) {
        for task in self.tasks.drain(..) {
            task.abort();
            let _ = task.await;
        }
    }

    /// Drops this bed's handle on the embedded log and opens the same file afresh, as a new
    /// process would. Call [`TestBed::crash_tasks`] first, so no task holds the old one.
    pub async fn reopen_embedded_log(&mut self) {
        assert_eq!(self.choice, BusChoice::Embedded);
        let log = EmbeddedLog::open(&self.log_path).await.expect("the embedded log reopens");
        self.bus = Arc::new(log);
    }

    /// The URL of the service database, for a second pool on it.
    pub fn test_database_url(&self) -> &str {
        &self._test_db.url
    }

    pub fn broker(&mut self) -> &mut PrivateNats {
        self.broker.as_mut().expect("this drill started a private nats-server")
    }

    /// Writes `count` `user.created` events, each in its own committed transaction, like a
    /// service would; returns their event ids in order.
    pub async fn write_users(&self, count: usize) -> Vec<String> {
        let mut ids = Vec::with_capacity(count);
        for _ in 0..count {
            let mut tx = self.db.begin().await.expect("a transaction");
            let id = self
                .outbox
                .write(&mut tx, user_created(), now_millis(), None)
                .await
                .expect("an outbox row");
            tx.commit().await.expect("the commit");
            self.outbox.notify();
            ids.push(id);
        }
        ids
    }

    pub async fn backlog(&self) -> i64 {
        self.outbox.backlog().await.expect("the outbox backlog")
    }

    pub async fn wait_until_backlog_is(&self, expected: i64, timeout: Duration) {
        wait_until(&format!("the outbox backlog is {expected}"), timeout, || async {
            (self.outbox.backlog().await.ok()? == expected).then_some(())
        })
        .await;
    }

    /// The unpublished outbox rows as the relay would send them, in sequence order.
    pub async fn unpublished_messages(&self) -> Vec<OutgoingMessage> {
        let rows: Vec<(String, String, String)> = sqlx::query_as(self.db.sql(
            "SELECT event_id, subject, payload FROM outbox \
             WHERE published_at IS NULL ORDER BY sequence",
        ))
        .fetch_all(self.db.pool())
        .await
        .expect("the outbox rows");
        rows.into_iter()
            .map(|(event_id, subject, payload)| OutgoingMessage {
                event_id,
                subject: format!("{}.{subject}", self.prefix),
                payload: Bytes::from(payload),
            })
            .collect()
    }

    /// Publishes through the bus, asserting that every message was stored.
    pub async fn publish(&self, messages: Vec<OutgoingMessage>) {
        for (index, outcome) in self.bus.publish(messages).await.into_iter().enumerate() {
            if let Err(error) = outcome {
                panic!("message {index} was not published: {error}");
            }
        }
    }

    /// A message carrying `event` in a fresh envelope under its usual subject.
    pub fn message_for<E: Event>(&self, event: E) -> (String, OutgoingMessage) {
        let envelope = Envelope::new(event, now_millis(), None);
        let payload = serde_json::to_vec(&envelope).expect("an envelope serializes");
        let message = OutgoingMessage {
            event_id: envelope.id.clone(),
            subject: format!("{}.{}.{}", self.prefix, E::AGGREGATE, E::ACTION),
            payload: Bytes::from(payload),
        };
        (envelope.id, message)
    }

    /// Every `effects` row of `consumer`: one event id per application.
    pub async fn effects(&self, consumer: &str) -> Vec<String> {
        sqlx::query_scalar(self.db.sql("SELECT event_id FROM effects WHERE consumer = $1"))
            .bind(consumer)
            .fetch_all(self.db.pool())
            .await
            .expect("the effects")
    }

    /// Waits until every one of `ids` has been applied by `consumer`, then asserts that each was
    /// applied exactly once.
    pub async fn wait_until_applied_once(&self, consumer: &str, ids: &[String], timeout: Duration) {
        let what = format!("{} events are applied by {consumer}", ids.len());
        let effects = wait_until(&what, timeout, || async {
            let effects = self.effects(consumer).await;
            ids.iter().all(|id| effects.contains(id)).then_some(effects)
        })
        .await;
        assert_applied_once(&effects, ids);
    }

    /// Messages in the bus's event stream (not counting dead letters).
    pub async fn stream_messages(&self) -> u64 {
        match self.choice {
            BusChoice::Embedded => {
                let detail = self.bus.check().await.expect("the embedded log answers");
                detail
                    .strip_prefix("embedded log: ")
                    .and_then(|rest| rest.strip_suffix(" messages"))
                    .and_then(|count| count.parse().ok())
                    .unwrap_or_else(|| panic!("unexpected check detail `{detail}`"))
            }
            BusChoice::JetStream => {
                let url = self.nats_url.as_deref().expect("a NATS URL");
                let client = async_nats::connect(url).await.expect("a NATS connection");
                let jetstream = async_nats::jetstream::new(client);
                let mut stream = jetstream
                    .get_stream(stream_name(&self.prefix))
                    .await
                    .expect("the event stream exists");
                stream.info().await.expect("the stream's info").state.messages
            }
        }
    }

    pub async fn dead_letters(&self) -> Vec<DeadLetter> {
        self.bus.dead_letters(100).await.expect("the dead letters")
    }

    /// Stops the relay and consumers gracefully (they settle what they hold).
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        for task in self.tasks.drain(..) {
            let abort = task.abort_handle();
            if tokio::time::timeout(SETTLE, task).await.is_err() {
                abort.abort();
                panic!("a relay or consumer did not stop within {SETTLE:?} of being asked to");
            }
        }
    }
}

impl Drop for TestBed {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        // Streams on the shared server outlive the test unless deleted; a private server's
        // store is a temp dir.
        let (Some(url), None) = (self.nats_url.clone(), self.broker.as_ref()) else { return };
        let stream = stream_name(&self.prefix);
        // Drop runs inside the test's runtime; a thread with its own runtime can block.
        let deleted = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(async {
                let client = async_nats::connect(url).await?;
                let jetstream = async_nats::jetstream::new(client);
                for name in [stream.clone(), format!("{stream}_DLQ")] {
                    let _ = jetstream.delete_stream(&name).await;
                }
                anyhow::Ok(())
            })
        })
        .join();
        if let Ok(Err(error)) = deleted {
            eprintln!("warning: could not delete the test's streams: {error:#}");
        }
    }
}

/// Waits up to 5 s for the client to connect (it connects in the background).
async fn connected(bus: &JetStreamBus) -> Result<String, String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let check = bus.check().await;
        if check.is_ok() || std::time::Instant::now() >= deadline {
            return check;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Asserts that each of `ids` occurs exactly once in `effects`.
pub fn assert_applied_once(effects: &[String], ids: &[String]) {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for effect in effects {
        *counts.entry(effect.as_str()).or_default() += 1;
    }
    let wrong: Vec<(&str, usize)> = ids
        .iter()
        .map(|id| (id.as_str(), counts.get(id.as_str()).copied().unwrap_or(0)))
        .filter(|(_, count)| *count != 1)
        .collect();
    assert!(wrong.is_empty(), "events not applied exactly once (id, times): {wrong:?}");
}

pub fn user_created() -> UserCreated {
    let user_id = uuid::Uuid::now_v7();
    UserCreated {
        user_id,
        name: format!("User {}", user_id.simple()),
        email: format!("{}@example.test", user_id.simple()),
        role: "customer".to_owned(),
    }
}

pub fn now_millis() -> i64 {
    let since =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

/// What [`EffectHandler`] does with one particular event instead of applying it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misbehaviour {
    /// Fails with [`HandlerError::Retry`] every time.
    Retry,
    /// Fails with [`HandlerError::Reject`].
    Reject,
    /// Never returns, the first time only (a consumer that crashes inside its handler).
    HangOnce,
}

/// One call of the handler, in call order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub event_id: String,
    /// `applied`, `retry`, `reject` or `hang`.
    pub result: &'static str,
}

/// Applies every event by inserting an `effects` row, except the events it was told to
/// misbehave on. Records every call.
pub struct EffectHandler {
    db: Database,
    consumer: String,
    rules: Mutex<HashMap<String, Misbehaviour>>,
    calls: Mutex<Vec<Call>>,
}

impl EffectHandler {
    /// A handler recording its effects under `consumer` (use the consumer's name).
    pub fn new(bed: &TestBed, consumer: &str) -> Arc<Self> {
        Arc::new(Self {
            db: bed.db.clone(),
            consumer: consumer.to_owned(),
            rules: Mutex::default(),
            calls: Mutex::default(),
        })
    }

    pub fn misbehave_on(&self, event_id: &str, how: Misbehaviour) {
        self.rules.lock().expect("rules").insert(event_id.to_owned(), how);
    }

    pub fn behave_on(&self, event_id: &str) {
        self.rules.lock().expect("rules").remove(event_id);
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().expect("calls").clone()
    }

    /// How many times the handler was called for `event_id` (deliveries that reached it).
    pub fn calls_for(&self, event_id: &str) -> usize {
        self.calls().iter().filter(|call| call.event_id == event_id).count()
    }

    pub fn is_hanging_on(&self, event_id: &str) -> bool {
        self.calls().iter().any(|call| call.event_id == event_id && call.result == "hang")
    }

    fn record(&self, event_id: &str, result: &'static str) {
        self.calls.lock().expect("calls").push(Call { event_id: event_id.to_owned(), result });
    }
}

/// The text a misbehaving handler fails with, so drills can find it in dead letters.
pub fn failure_text(event_id: &str) -> String {
    format!("the payment provider timed out for {event_id}")
}

#[async_trait]
impl Handler for EffectHandler {
    async fn handle(
        &self,
        conn: &mut AnyConnection,
        event: &Envelope<Value>,
    ) -> Result<(), HandlerError> {
        let rule = {
            let mut rules = self.rules.lock().expect("rules");
            let rule = rules.get(&event.id).copied();
            if rule == Some(Misbehaviour::HangOnce) {
                rules.remove(&event.id);
            }
            rule
        };
        match rule {
            Some(Misbehaviour::Retry) => {
                self.record(&event.id, "retry");
                return Err(HandlerError::Retry(anyhow::anyhow!(failure_text(&event.id))));
            }
            Some(Misbehaviour::Reject) => {
                self.record(&event.id, "reject");
                return Err(HandlerError::Reject(anyhow::anyhow!(failure_text(&event.id))));
            }
            Some(Misbehaviour::HangOnce) => {
                self.record(&event.id, "hang");
                std::future::pending::<()>().await;
            }
            None => {}
        }
        sqlx::query(self.db.sql("INSERT INTO effects (event_id, consumer) VALUES ($1, $2)"))
            .bind(&event.id)
            .bind(&self.consumer)
            .execute(&mut *conn)
            .await?;
        self.record(&event.id, "applied");
        Ok(())
    }
}
