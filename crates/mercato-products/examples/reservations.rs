//! Reservations per second through the products service's consumer: bus → consumer →
//! all-or-nothing reservation → outbox.
//!
//! ```text
//! cargo run --release -p mercato-products --example reservations -- \
//!     --backend sqlite|postgres|mysql --bus embedded|jetstream --orders 20000 [--lines 3]
//! ```
//!
//! Creates 100 products with plenty of stock in a fresh database (dropped after the run),
//! publishes `--orders` `order.placed` events of `--lines` lines each onto the bus (not timed),
//! then starts the reservation consumer and the products outbox relay at t0 and reports
//! reservations per second until every order has been reserved. Then checks conservation.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use mercato_bus::EventBus;
use mercato_bus::bus::OutgoingMessage;
use mercato_bus::embedded::EmbeddedLog;
use mercato_bus::jetstream::{JetStreamBus, stream_name};
use mercato_contracts::{Envelope, Event, OrderLine, OrderPlaced, nats_subject};
use mercato_platform::auth::TokenVerifier;
use mercato_platform::money::Money;
use mercato_platform::time::Timestamp;
use mercato_products::ProductsService;
use mercato_products::db::{holds, products};
use mercato_store::{Backend, Database, PoolSettings, sqlx};
use mercato_testkit::TestDatabase;
use tokio::sync::watch;
use uuid::Uuid;

const PRODUCTS: usize = 100;
const STOCK: i64 = 1_000_000_000;

struct Args {
    backend: Backend,
    bus: String,
    orders: usize,
    lines: usize,
    nats_url: String,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        backend: Backend::Sqlite,
        bus: "embedded".to_owned(),
        orders: 20_000,
        lines: 3,
        nats_url: "nats://127.0.0.1:4222".to_owned(),
    };
    let mut words = std::env::args().skip(1);
    while let Some(word) = words.next() {
        let mut value = || words.next().with_context(|| format!("{word} needs a value"));
        match word.as_str() {
            "--backend" => {
                args.backend = match value()?.as_str() {
                    "sqlite" => Backend::Sqlite,
                    "postgres" => Backend::Postgres,
                    "mysql" => Backend::MySql,
                    other => bail!("--backend is sqlite, postgres or mysql, not `{other}`"),
                }
            }
            "--bus" => args.bus = value()?,
            "--orders" => args.orders = value()?.parse().context("--orders is a number")?,
            "--lines" => args.lines = value()?.parse().context("--lines is a number")?,
            "--nats-url" => args.nats_url = value()?,
            other => bail!("unknown argument `{other}`"),
        }
    }
    if !["embedded", "jetstream"].contains(&args.bus.as_str()) {
        bail!("--bus is embedded or jetstream");
    }
    if !(1..=PRODUCTS).contains(&args.lines) {
        bail!("--lines is 1..={PRODUCTS}");
    }
    Ok(args)
}

async fn count(db: &Database, query: &'static str) -> anyhow::Result<i64> {
    let (count,): (i64,) = sqlx::query_as(db.sql(query)).fetch_one(db.pool()).await?;
    Ok(count)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let test_db = TestDatabase::create(args.backend).await.context("the database server")?;
    let db = Database::connect(&test_db.url, &PoolSettings::default())?;
    let keys = mercato_users::SigningKeys::generate();
    let service =
        ProductsService::start(db.clone(), TokenVerifier::with_keys("bench", &keys.jwks())?)
            .await?;

    let now = Timestamp::now();
    let mut ids = Vec::with_capacity(PRODUCTS);
    let mut tx = db.begin().await?;
    for n in 0..PRODUCTS {
        let id = Uuid::now_v7();
        let product = products::Product {
            id,
            sku: format!("BENCH-{n}"),
            name: format!("Bench product {n}"),
            description: None,
            category: None,
            price: Money::from_cents(999),
            stock: STOCK,
            active: true,
            version: 1,
            created_at: now,
            updated_at: now,
        };
        products::insert(&db, &mut tx, &product).await?;
        ids.push(id);
    }
    tx.commit().await?;

    let prefix = format!("bench{}", &Uuid::now_v7().simple().to_string()[20..]);
    let log_dir = tempfile::tempdir()?;
    let bus: Arc<dyn EventBus> = match args.bus.as_str() {
        "jetstream" => Arc::new(JetStreamBus::connect(&args.nats_url, &prefix).await?),
        _ => Arc::new(EmbeddedLog::open(&log_dir.path().join("events.db")).await?),
    };
    let subject = nats_subject(&prefix, OrderPlaced::AGGREGATE, OrderPlaced::ACTION);
    let mut batch = Vec::new();
    for n in 0..args.orders {
        let items = (0..args.lines)
            .map(|k| OrderLine { product_id: ids[(n * 7 + k * 13) % PRODUCTS], quantity: 1 })
            .collect();
        let placed = OrderPlaced {
            order_id: Uuid::now_v7(),
            user_id: Uuid::now_v7(),
            order_version: 1,
            items,
        };
        let envelope = Envelope::new(placed, now.millis(), None);
        batch.push(OutgoingMessage {
            event_id: envelope.id.clone(),
            subject: subject.clone(),
            payload: serde_json::to_vec(&envelope)?.into(),
        });
        if batch.len() == 512 || n + 1 == args.orders {
            for result in bus.publish(std::mem::take(&mut batch)).await {
                result?;
            }
        }
    }
    println!(
        "{} orders of {} lines on the {} bus, {} database",
        args.orders,
        args.lines,
        args.bus,
        args.backend.name()
    );

    let (stop, stopped) = watch::channel(false);
    let t0 = Instant::now();
    let relay =
        tokio::spawn(service.outbox().relay(bus.clone(), &prefix, "products").run(stopped.clone()));
    let consumer =
        tokio::spawn(service.reservation_consumer(bus.clone(), &prefix).run(stopped.clone()));
    let target = i64::try_from(args.orders)?;
    let deadline = t0 + Duration::from_secs(900);
    while count(&db, "SELECT COUNT(*) FROM order_holds").await? < target {
        if Instant::now() > deadline {
            bail!("the reservations did not finish within 15 minutes");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = t0.elapsed();
    println!(
        "reserved:  {:>7.0} orders/s ({} orders in {:.2} s)",
        args.orders as f64 / elapsed.as_secs_f64(),
        args.orders,
        elapsed.as_secs_f64()
    );
    let _ = stop.send(true);
    let _ = tokio::join!(relay, consumer);

    // Conservation: every unit is either in stock or held.
    let mut conn = db.pool().acquire().await?;
    let held = holds::held_per_product(&db, &mut conn).await?;
    for id in &ids {
        let stock = products::find(&db, &mut conn, *id).await?.context("a product")?.stock;
        if stock + held.get(id).copied().unwrap_or(0) != STOCK {
            bail!("stock of {id} is not conserved");
        }
    }
    println!("conservation: ok ({} units held)", held.values().sum::<i64>());
    drop(conn);
    db.close().await;
    if args.bus == "jetstream" {
        let client = async_nats::connect(&args.nats_url).await?;
        let jetstream = async_nats::jetstream::new(client);
        let stream = stream_name(&prefix);
        for name in [stream.clone(), format!("{stream}_DLQ")] {
            let _ = jetstream.delete_stream(&name).await;
        }
    }
    Ok(())
}
