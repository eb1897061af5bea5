//! End-to-end throughput of the event backbone: outbox → relay → bus → consumer.
//!
//! ```text
//! cargo run --release -p mercato-bus --example throughput -- \
//!     --bus jetstream|embedded --events 100000 \
//!     [--database-url postgres://postgres@127.0.0.1:5432/postgres] \
//!     [--nats-url nats://127.0.0.1:4222] [--separate]
//! ```
//!
//! Writes `--events` small `user.created` events into the outbox of a fresh database (500 per
//! transaction; not timed), then starts the relay and one consumer at t0 and reports:
//! - relay: events/s until the outbox backlog is 0;
//! - end to end: events/s until the consumer has applied every event (one `effects` row each,
//!   written in the consumer's transaction next to its inbox row).
//!
//! `--separate` runs the relay alone first, then the consumer alone on the full stream, to tell
//! which side the time goes to.
//!
//! With a `postgres://` URL a database is created for the run and dropped after it; the default
//! is a SQLite file in a temp dir. On NATS the run uses a prefix of its own and deletes its
//! streams after it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use async_trait::async_trait;
use mercato_bus::embedded::EmbeddedLog;
use mercato_bus::jetstream::{JetStreamBus, stream_name};
use mercato_bus::{
    Consumer, ConsumerConfig, EventBus, Handler, HandlerError, MIGRATIONS, Outbox, RelaySettings,
};
use mercato_contracts::{Envelope, UserCreated};
use mercato_store::sqlx::{self, AnyConnection, Connection};
use mercato_store::{Database, PoolSettings};
use serde_json::Value;
use tokio::sync::watch;

const LOAD_TRANSACTION: usize = 500;
const TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Debug)]
struct Args {
    bus: String,
    events: usize,
    database_url: Option<String>,
    nats_url: String,
    separate: bool,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        bus: "embedded".to_owned(),
        events: 100_000,
        database_url: None,
        nats_url: "nats://127.0.0.1:4222".to_owned(),
        separate: false,
    };
    let mut words = std::env::args().skip(1);
    while let Some(word) = words.next() {
        let mut value = || words.next().with_context(|| format!("{word} needs a value"));
        match word.as_str() {
            "--bus" => args.bus = value()?,
            "--events" => args.events = value()?.parse().context("--events is a number")?,
            "--database-url" => args.database_url = Some(value()?),
            "--nats-url" => args.nats_url = value()?,
            "--separate" => args.separate = true,
            "--help" | "-h" => {
                println!(
                    "throughput --bus jetstream|embedded --events N [--database-url URL] \
                     [--nats-url URL] [--separate]"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument `{other}` (try --help)"),
        }
    }
    if !["jetstream", "embedded"].contains(&args.bus.as_str()) {
        bail!("--bus is `jetstream` or `embedded`, not `{}`", args.bus);
    }
    Ok(args)
}

/// Inserts one `effects` row per event, in the consumer's transaction.
struct CountingHandler {
    db: Database,
}

#[async_trait]
impl Handler for CountingHandler {
    async fn handle(
        &self,
        conn: &mut AnyConnection,
        event: &Envelope<Value>,
    ) -> Result<(), HandlerError> {
        sqlx::query(self.db.sql("INSERT INTO effects (event_id) VALUES ($1)"))
            .bind(&event.id)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }
}

/// A database for this run; dropped (PostgreSQL) or deleted with its temp dir (SQLite) after.
struct RunDatabase {
    url: String,
    admin: Option<(String, String)>,
    _dir: Option<tempfile::TempDir>,
}

impl RunDatabase {
    async fn create(admin_url: Option<&str>) -> anyhow::Result<Self> {
        let name = format!("mercato_bench_{}", uuid::Uuid::now_v7().simple());
        match admin_url {
            None => {
                let dir = tempfile::tempdir()?;
                let url = format!("sqlite://{}/service.db", dir.path().display());
                Ok(Self { url, admin: None, _dir: Some(dir) })
            }
            Some(admin) if admin.starts_with("postgres") => {
                let mut connection = sqlx::PgConnection::connect(admin).await?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut connection)
                    .await?;
                connection.close().await?;
                let base = admin.rsplit_once('/').map_or(admin, |(base, _)| base);
                Ok(Self {
                    url: format!("{base}/{name}"),
                    admin: Some((admin.to_owned(), name)),
                    _dir: None,
                })
            }
            Some(other) if other.starts_with("sqlite") => {
                Ok(Self { url: other.to_owned(), admin: None, _dir: None })
            }
            Some(other) => bail!("--database-url must be postgres:// or sqlite://, not {other}"),
        }
    }

    async fn drop_database(&self) -> anyhow::Result<()> {
        if let Some((admin, name)) = &self.admin {
            let mut connection = sqlx::PgConnection::connect(admin).await?;
            let statement = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
            sqlx::raw_sql(sqlx::AssertSqlSafe(statement)).execute(&mut connection).await?;
            connection.close().await?;
        }
        Ok(())
    }
}

async fn count(db: &Database, query: &'static str) -> anyhow::Result<i64> {
    let (count,): (i64,) = sqlx::query_as(db.sql(query)).fetch_one(db.pool()).await?;
    Ok(count)
}

/// Polls until `query` counts `target`, every 20 ms; returns when it did.
async fn wait_for_count(
    db: &Database,
    query: &'static str,
    target: i64,
    what: &str,
) -> anyhow::Result<Instant> {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if count(db, query).await? == target {
            return Ok(Instant::now());
        }
        if Instant::now() > deadline {
            bail!("{what} did not finish within {TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn rate(events: usize, elapsed: Duration) -> String {
    format!(
        "{:>9.0} events/s ({:.2} s)",
        events as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64()
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let run_db = RunDatabase::create(args.database_url.as_deref()).await?;
    let outcome = run(&args, &run_db).await;
    run_db.drop_database().await?;
    outcome
}

async fn run(args: &Args, run_db: &RunDatabase) -> anyhow::Result<()> {
    let db = Database::connect(&run_db.url, &PoolSettings::default())?;
    db.migrate(&MIGRATIONS).await?;
    sqlx::query(db.sql("CREATE TABLE effects (event_id VARCHAR(36) NOT NULL)"))
        .execute(db.pool())
        .await?;

    let outbox = Outbox::new(db.clone());
    let loading = Instant::now();
    let mut written = 0;
    while written < args.events {
        let mut tx = db.begin().await?;
        for _ in 0..LOAD_TRANSACTION.min(args.events - written) {
            let user_id = uuid::Uuid::now_v7();
            let event = UserCreated {
                user_id,
                name: "Bench User".to_owned(),
                email: format!("{}@example.test", user_id.simple()),
                role: "customer".to_owned(),
            };
            outbox.write(&mut tx, event, mercato_now(), None).await?;
            written += 1;
        }
        tx.commit().await?;
    }
    let events = i64::try_from(args.events)?;
    println!(
        "loaded {} events into the {} outbox in {:.1} s (not timed)",
        args.events,
        db.backend().name(),
        loading.elapsed().as_secs_f64()
    );

    let prefix = format!("bench{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
    let log_dir = tempfile::tempdir()?;
    let bus: Arc<dyn EventBus> = match args.bus.as_str() {
        "jetstream" => Arc::new(JetStreamBus::connect(&args.nats_url, &prefix).await?),
        _ => Arc::new(EmbeddedLog::open(&log_dir.path().join("events.db")).await?),
    };
    let (stop, stopped) = watch::channel(false);
    let relay = outbox
        .relay(bus.clone(), &prefix, "bench")
        .with_settings(RelaySettings { interval: Duration::from_millis(50), ..Default::default() });
    let consumer = Consumer::new(
        db.clone(),
        bus.clone(),
        ConsumerConfig::new("bench", vec![format!("{prefix}.>")]),
        Arc::new(CountingHandler { db: db.clone() }),
    );
    let backlog = "SELECT COUNT(*) FROM outbox WHERE published_at IS NULL";
    let applied = "SELECT COUNT(*) FROM effects";

    println!("bus {}, database {}, {} events", args.bus, db.backend().name(), args.events);
    let measured = async {
        let mut tasks = Vec::new();
        let t0 = Instant::now();
        tasks.push(tokio::spawn(relay.run(stopped.clone())));
        if args.separate {
            let relayed = wait_for_count(&db, backlog, 0, "the relay").await?;
            println!("relay alone:      {}", rate(args.events, relayed - t0));
            let t1 = Instant::now();
            tasks.push(tokio::spawn(consumer.run(stopped.clone())));
            let done = wait_for_count(&db, applied, events, "the consumer").await?;
            println!("consumer alone:   {}", rate(args.events, done - t1));
        } else {
            tasks.push(tokio::spawn(consumer.run(stopped.clone())));
            let relayed = wait_for_count(&db, backlog, 0, "the relay").await?;
            println!("relay:            {}", rate(args.events, relayed - t0));
            let done = wait_for_count(&db, applied, events, "the consumer").await?;
            println!("end to end:       {}", rate(args.events, done - t0));
        }
        anyhow::Ok(tasks)
    }
    .await;
    let _ = stop.send(true);
    if let Ok(tasks) = &measured {
        for task in tasks {
            task.abort();
        }
    }
    if args.bus == "jetstream" {
        let client = async_nats::connect(&args.nats_url).await?;
        let jetstream = async_nats::jetstream::new(client);
        let stream = stream_name(&prefix);
        for name in [stream.clone(), format!("{stream}_DLQ")] {
            let _ = jetstream.delete_stream(&name).await;
        }
    }
    db.close().await;
    measured.map(|_| ())
}

fn mercato_now() -> i64 {
    let since =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}
