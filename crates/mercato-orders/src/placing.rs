//! Group commit of placements: orders placed at the same moment share one transaction.
//!
//! A placement writes its order and its `order.placed` (outbox) in one transaction, after one
//! read of the replicas (is the account deleted; the products' names). On SQLite every write
//! transaction waits for the file's one writer, and every statement is a hand-off to the
//! connection's own thread and back; under load the orders file's writer was the bottleneck of
//! placement, held five statements long per order while the other orders queued behind it.
//!
//! [`Placer`] queues placements. Its writer takes every placement waiting (up to
//! [`MAX_BATCH`]) and writes them with [`write`]: one read of the replicas for all of them, one
//! multi-row insert of their orders and one of their events, one commit. An idle service
//! writes a lone placement at once, as before; a busy one writes more orders per transaction
//! the busier it is, instead of queueing them one transaction each.
//!
//! What each caller sees is what it saw with a transaction of its own:
//! - each placement is decided alone: a deleted account refuses its own order, never another's;
//! - a failed statement or commit fails every placement of the batch, and none of them is
//!   stored (one transaction): each caller gets the error it would have got alone (`503` when
//!   the database is down), and a retry places again;
//! - an order is committed before its caller is answered, and its event leaves through the
//!   outbox as any other.
//!
//! A placement with an `Idempotency-Key` is written with [`write`] in a transaction of its own
//! (see `http::orders::place`): the loser of a race for a key finds out from a unique violation,
//! which on PostgreSQL spoils the whole transaction it happens in.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use mercato_bus::Outbox;
use mercato_bus::outbox::OutboxEvent;
use mercato_contracts::OrderPlaced;
use mercato_platform::ApiError;
use mercato_store::sqlx::{self, AnyConnection};
use mercato_store::{Backend, Database};
use tokio::sync::{Mutex, mpsc, oneshot};
use uuid::Uuid;

use crate::db::{orders, replicas};
use crate::http::orders::{OrderResponse, view};
use crate::order::Order;

/// The most placements one transaction takes.
pub const MAX_BATCH: usize = 64;

/// Placements waiting for a writer, at most; a caller beyond waits for room.
const QUEUE: usize = 1024;

/// One order to place, built and checked by the route.
#[derive(Debug, Clone)]
pub struct OrderToPlace {
    pub order: Order,
    /// The account whose token placed it (an admin may place for another user).
    pub caller: Uuid,
    /// The request's trace context, carried by the event.
    pub traceparent: String,
}

/// The answer to one placement: the order as placed, or why it was refused.
pub type Placed = Result<OrderResponse, ApiError>;

struct Job {
    placement: OrderToPlace,
    answer: oneshot::Sender<Placed>,
}

/// The queue of placements and its writers; see the module docs.
#[derive(Clone)]
pub struct Placer {
    queue: mpsc::Sender<Job>,
    counts: Arc<Counts>,
}

/// What the writers did so far.
#[derive(Debug, Default)]
struct Counts {
    /// Placements taken off the queue by a writer.
    taken: AtomicU64,
    /// Transactions written (committed or not).
    transactions: AtomicU64,
}

impl std::fmt::Debug for Placer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Placer").finish_non_exhaustive()
    }
}

impl Placer {
    /// Starts the writers (they stop when the last `Placer` is dropped). SQLite has one writer
    /// per file anyway, so one; the servers take a few transactions at once.
    pub fn start(db: Database, outbox: Outbox) -> Self {
        let writers = if db.backend() == Backend::Sqlite { 1 } else { 4 };
        let (queue, jobs) = mpsc::channel(QUEUE);
        let jobs = Arc::new(Mutex::new(jobs));
        let counts = Arc::new(Counts::default());
        for _ in 0..writers {
            tokio::spawn(writer(db.clone(), outbox.clone(), jobs.clone(), counts.clone()));
        }
        Self { queue, counts }
    }

    /// Placements waiting in the queue for a writer.
    pub fn waiting(&self) -> usize {
        self.queue.max_capacity() - self.queue.capacity()
    }

    /// Placements a writer has taken off the queue so far.
    pub fn taken(&self) -> u64 {
        self.counts.taken.load(Ordering::Relaxed)
    }

    /// Transactions the writers have written so far (each with one or more placements).
    pub fn transactions(&self) -> u64 {
        self.counts.transactions.load(Ordering::Relaxed)
    }

    /// Places `placement` with the others waiting; answers once it is committed or refused.
    pub async fn place(&self, placement: OrderToPlace) -> Placed {
        let (answer, answered) = oneshot::channel();
        self.queue
            .send(Job { placement, answer })
            .await
            .map_err(|_| ApiError::Unavailable(anyhow::anyhow!("the placement writer stopped")))?;
        answered.await.map_err(|_| {
            ApiError::Unexpected(anyhow::anyhow!("the placement writer dropped a placement"))
        })?
    }
}

/// Takes the placements waiting, writes them in one transaction, answers each; until the queue
/// closes.
async fn writer(
    db: Database,
    outbox: Outbox,
    jobs: Arc<Mutex<mpsc::Receiver<Job>>>,
    counts: Arc<Counts>,
) {
    loop {
        let mut batch = Vec::new();
        {
            let mut jobs = jobs.lock().await;
            if jobs.recv_many(&mut batch, MAX_BATCH).await == 0 {
                return;
            }
        }
        counts.taken.fetch_add(batch.len() as u64, Ordering::Relaxed);
        counts.transactions.fetch_add(1, Ordering::Relaxed);
        let (placements, answers): (Vec<_>, Vec<_>) =
            batch.into_iter().map(|job| (job.placement, job.answer)).unzip();
        metrics::histogram!("orders_placement_batch_size").record(placements.len() as f64);
        match commit(&db, &outbox, &placements).await {
            Ok(placed) => {
                for (answer, placed) in answers.into_iter().zip(placed) {
                    // A caller that went away (client disconnected) is not waiting any more.
                    let _ = answer.send(placed);
                }
            }
            Err(error) => {
                let unavailable = mercato_store::is_unavailable(&error);
                let cause = error.to_string();
                for answer in answers {
                    let cause = anyhow::anyhow!("{cause}");
                    let _ = answer.send(Err(if unavailable {
                        ApiError::Unavailable(cause.context("the database is unavailable"))
                    } else {
                        ApiError::Unexpected(cause.context("placing orders failed"))
                    }));
                }
            }
        }
    }
}

async fn commit(
    db: &Database,
    outbox: &Outbox,
    placements: &[OrderToPlace],
) -> Result<Vec<Placed>, sqlx::Error> {
    let mut tx = db.begin().await?;
    let placed = write(db, outbox, &mut tx, placements).await?;
    tx.commit().await?;
    outbox.notify();
    Ok(placed)
}

/// Decides and writes `placements` in `conn`'s transaction (the caller commits): one read of
/// the replicas, then one multi-row insert of the accepted orders and one of their events.
/// Answers in the order given; a database error fails them all (roll back).
pub async fn write(
    db: &Database,
    outbox: &Outbox,
    conn: &mut AnyConnection,
    placements: &[OrderToPlace],
) -> Result<Vec<Placed>, sqlx::Error> {
    let mut users: Vec<Uuid> =
        placements.iter().flat_map(|one| [one.caller, one.order.user_id]).collect();
    users.sort_unstable();
    users.dedup();
    let mut products: Vec<Uuid> = placements
        .iter()
        .flat_map(|one| one.order.items.iter().map(|line| line.product_id))
        .collect();
    products.sort_unstable();
    products.dedup();
    let (deleted, names) = replicas::deleted_and_names(db, conn, &users, &products).await?;
    let mut placed = Vec::with_capacity(placements.len());
    let mut accepted = Vec::with_capacity(placements.len());
    let mut events = Vec::with_capacity(placements.len());
    for one in placements {
        if deleted.contains(&one.caller) {
            placed.push(Err(ApiError::invalid_token("the account of this token was deleted")));
        } else if deleted.contains(&one.order.user_id) {
            placed.push(Err(ApiError::invalid_field("userId", "names a deleted account")));
        } else {
            events.push(placed_event(&one.order, &one.traceparent)?);
            accepted.push(&one.order);
            placed.push(Ok(view(one.order.clone(), &names)));
        }
    }
    if !accepted.is_empty() {
        orders::insert_all(db, conn, &accepted).await?;
        outbox.write_all(conn, events).await?;
    }
    Ok(placed)
}

fn placed_event(order: &Order, traceparent: &str) -> Result<OutboxEvent, sqlx::Error> {
    let event = OrderPlaced {
        order_id: order.id,
        user_id: order.user_id,
        order_version: order.version,
        items: order.order_lines(),
    };
    OutboxEvent::new(event, order.created_at.millis(), Some(traceparent.to_owned()))
}
