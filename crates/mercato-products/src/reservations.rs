//! Stock reservation for the order saga (promise 3: no overselling, stock conserved).
//!
//! Consumes `order.placed`, `order.updated` and `order.cancelled`. Each event is applied in the
//! consumer's transaction (its inbox row is already written there):
//!
//! - A placement or item change moves what the order holds to exactly the new lines, all or
//!   nothing. The products involved are locked in id order (`SELECT ... FOR UPDATE ORDER BY
//!   id`), so concurrent orders over overlapping products queue instead of deadlocking; the
//!   decision is made under those locks, and the stock changes are still guarded: one
//!   conditional update moves them all or none (`stock + delta >= 0` for each). Success writes the
//!   lines and emits one `inventory.updated` per product whose stock moved and then
//!   `inventory.reserved` (with the authoritative unit prices and names), in one outbox insert.
//!   Failure changes no stock and emits `inventory.rejected` naming the reason and product; a
//!   refused item change keeps the previous reservation.
//! - A cancel gives back exactly what the order holds, emits `inventory.released` (with no items
//!   when it held none) and marks the order cancelled for good: a placement or change that arrives
//!   after it (a cancel that overtook its placement) reserves nothing.
//! - An event whose `orderVersion` is not newer than the one applied changes nothing
//!   (duplicates, stale and reordered events).
//!
//! A product that is inactive cannot gain units (`product_unavailable`); one that does not exist
//! is `unknown_product`; too little stock is `insufficient_stock`.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use mercato_bus::Outbox;
use mercato_bus::consumer::{Batch, Handler, HandlerError};
use mercato_bus::outbox::OutboxEvent;
use mercato_contracts::{
    Envelope, Event, InventoryChangeReason, InventoryRejected, InventoryReleased,
    InventoryReserved, InventoryUpdated, MAX_LINE_QUANTITY, MAX_ORDER_LINES, OrderCancelled,
    OrderLine, OrderPlaced, OrderUpdated, PricedLine, RejectionReason,
};
use mercato_platform::time::Timestamp;
use mercato_store::Database;
use mercato_store::sqlx::AnyConnection;
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use crate::db::holds::{self, Hold, HoldState};
use crate::db::products::{self, Product};

/// What applying one order event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every line is reserved (or the reservation moved to the new lines).
    Reserved,
    /// Nothing moved; the order holds what it held before.
    Rejected { reason: RejectionReason, product_id: Option<Uuid> },
    /// The order's units went back to stock (none, if it held none).
    Released { units: i64 },
    /// A duplicate, a stale version, or an event after the cancel: nothing changed.
    Ignored,
}

/// The reservation handler the `products-reservations` consumer runs.
#[derive(Clone)]
pub struct Reservations {
    db: Database,
    outbox: Outbox,
}

impl std::fmt::Debug for Reservations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reservations").finish_non_exhaustive()
    }
}

#[async_trait]
impl Handler for Reservations {
    async fn handle(
        &self,
        conn: &mut AnyConnection,
        event: &Envelope<Value>,
    ) -> Result<(), HandlerError> {
        let outcome = self.apply(conn, event).await?;
        let result = match &outcome {
            Outcome::Reserved => "reserved",
            Outcome::Rejected { .. } => "rejected",
            Outcome::Released { .. } => "released",
            Outcome::Ignored => "ignored",
        };
        metrics::counter!("products_reservations_total", "result" => result).increment(1);
        tracing::debug!(event_id = %event.id, ?outcome, "order event applied");
        Ok(())
    }

    /// New placements are reserved together ([`Reservations::reserve_placements`]); any other
    /// batch is declined and applied one by one.
    async fn handle_many(
        &self,
        conn: &mut AnyConnection,
        events: &[&Envelope<Value>],
    ) -> Result<Batch, HandlerError> {
        let Some(placements) = placements(events) else { return Ok(Batch::Declined) };
        let Some(outcomes) = self.reserve_placements(conn, &placements).await? else {
            return Ok(Batch::Declined);
        };
        for outcome in &outcomes {
            let result = if *outcome == Outcome::Reserved { "reserved" } else { "rejected" };
            metrics::counter!("products_reservations_total", "result" => result).increment(1);
        }
        tracing::debug!(placements = outcomes.len(), "placements applied together");
        Ok(Batch::Applied)
    }
}

/// An `order.placed` as [`Reservations::reserve_placements`] takes it.
#[derive(Debug, Clone)]
pub struct Placement {
    pub order_id: Uuid,
    pub version: i64,
    pub items: Vec<OrderLine>,
    pub trace: Option<String>,
}

/// The batch as placements, when it is only well-formed `order.placed` events of distinct orders.
fn placements(events: &[&Envelope<Value>]) -> Option<Vec<Placement>> {
    let mut orders = BTreeSet::new();
    let mut placements = Vec::with_capacity(events.len());
    for event in events {
        if event.event_type != OrderPlaced::TYPE {
            return None;
        }
        let data = OrderPlaced::deserialize(&event.data).ok()?;
        if !orders.insert(data.order_id) || wanted_units(&data.items).is_err() {
            return None;
        }
        placements.push(Placement {
            order_id: data.order_id,
            version: data.order_version,
            items: data.items,
            trace: event.traceparent.clone(),
        });
    }
    Some(placements)
}

/// An order event as this service reads it.
enum OrderEvent {
    Reserve { order_id: Uuid, version: i64, items: Vec<OrderLine> },
    Cancel { order_id: Uuid, version: i64 },
}

fn read(event: &Envelope<Value>) -> Result<OrderEvent, HandlerError> {
    let reject = |error: serde_json::Error| {
        HandlerError::Reject(anyhow::anyhow!("unreadable {}: {error}", event.event_type))
    };
    let type_ = event.event_type.as_str();
    if type_ == OrderPlaced::TYPE {
        let data = OrderPlaced::deserialize(&event.data).map_err(reject)?;
        Ok(OrderEvent::Reserve {
            order_id: data.order_id,
            version: data.order_version,
            items: data.items,
        })
    } else if type_ == OrderUpdated::TYPE {
        let data = OrderUpdated::deserialize(&event.data).map_err(reject)?;
        Ok(OrderEvent::Reserve {
            order_id: data.order_id,
            version: data.order_version,
            items: data.items,
        })
    } else if type_ == OrderCancelled::TYPE {
        let data = OrderCancelled::deserialize(&event.data).map_err(reject)?;
        Ok(OrderEvent::Cancel { order_id: data.order_id, version: data.order_version })
    } else {
        Err(HandlerError::Reject(anyhow::anyhow!("not an order event: {type_}")))
    }
}

/// The wanted units per product; lines the orders service would never have accepted are
/// refused outright (dead-lettered), not guessed at.
fn wanted_units(items: &[OrderLine]) -> Result<BTreeMap<Uuid, i64>, HandlerError> {
    if items.is_empty() || items.len() > MAX_ORDER_LINES {
        return Err(HandlerError::Reject(anyhow::anyhow!(
            "an order has 1..={MAX_ORDER_LINES} lines"
        )));
    }
    let mut wanted = BTreeMap::new();
    for line in items {
        if !(1..=MAX_LINE_QUANTITY).contains(&line.quantity) {
            return Err(HandlerError::Reject(anyhow::anyhow!(
                "quantity {} of {} is outside 1..={MAX_LINE_QUANTITY}",
                line.quantity,
                line.product_id
            )));
        }
        if wanted.insert(line.product_id, line.quantity).is_some() {
            return Err(HandlerError::Reject(anyhow::anyhow!(
                "product {} appears twice",
                line.product_id
            )));
        }
    }
    Ok(wanted)
}

impl Reservations {
    pub fn new(db: Database, outbox: Outbox) -> Self {
        Self { db, outbox }
    }

    /// Reserves new placements (distinct orders, well-formed lines) together, with exactly the
    /// outcome of reserving them one by one in order, in a handful of statements: the orders'
    /// rows, every product involved locked at once (in id order), the decisions made in memory
    /// against the stock as each order before it left it, then one stock update, one insert of
    /// lines, of order rows and of events. `None`, having written nothing, when any of the
    /// orders was seen before (a cancel that overtook it, a duplicate): those take the one-by-one
    /// path.
    pub async fn reserve_placements(
        &self,
        conn: &mut AnyConnection,
        placements: &[Placement],
    ) -> Result<Option<Vec<Outcome>>, HandlerError> {
        let db = &self.db;
        let order_ids: Vec<Uuid> = placements.iter().map(|one| one.order_id).collect();
        if !holds::find_existing(db, conn, &order_ids).await?.is_empty() {
            return Ok(None);
        }
        let mut wanted = Vec::with_capacity(placements.len());
        for one in placements {
            wanted.push(wanted_units(&one.items)?);
        }
        let involved: Vec<Uuid> = wanted
            .iter()
            .flat_map(BTreeMap::keys)
            .copied()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let locked: BTreeMap<Uuid, Product> = products::find_many(db, conn, &involved, true)
            .await?
            .into_iter()
            .map(|product| (product.id, product))
            .collect();
        let mut stock: BTreeMap<Uuid, i64> =
            locked.values().map(|product| (product.id, product.stock)).collect();
        let now = Timestamp::now();
        let mut outcomes = Vec::with_capacity(placements.len());
        let mut deltas: BTreeMap<Uuid, i64> = BTreeMap::new();
        let mut rows = Vec::with_capacity(placements.len());
        let mut lines = Vec::new();
        let mut events = Vec::new();
        for (one, wanted) in placements.iter().zip(&wanted) {
            // As `reserve` decides for an order that holds nothing, against the stock the
            // orders before it in the batch left.
            let refusal = wanted.iter().find_map(|(product_id, quantity)| {
                let reason = match locked.get(product_id) {
                    None => RejectionReason::UnknownProduct,
                    Some(product) if !product.active => RejectionReason::ProductUnavailable,
                    Some(product) if *quantity > stock[&product.id] => {
                        RejectionReason::InsufficientStock
                    }
                    Some(_) => return None,
                };
                Some((reason, *product_id))
            });
            if let Some((reason, product_id)) = refusal {
                rows.push((
                    one.order_id,
                    Hold { version: one.version, state: HoldState::Rejected },
                ));
                let event = InventoryRejected {
                    order_id: one.order_id,
                    order_version: one.version,
                    reason,
                    product_id: Some(product_id),
                };
                events.push(OutboxEvent::new(event, now.millis(), one.trace.clone())?);
                outcomes.push(Outcome::Rejected { reason, product_id: Some(product_id) });
                continue;
            }
            for (product_id, quantity) in wanted {
                let left = stock.entry(*product_id).or_default();
                *left -= quantity;
                *deltas.entry(*product_id).or_default() -= quantity;
                lines.push((one.order_id, *product_id, *quantity));
                let event = InventoryUpdated {
                    product_id: *product_id,
                    stock: *left,
                    delta: -quantity,
                    reason: InventoryChangeReason::Reservation,
                };
                events.push(OutboxEvent::new(event, now.millis(), one.trace.clone())?);
            }
            rows.push((one.order_id, Hold { version: one.version, state: HoldState::Held }));
            let priced = one
                .items
                .iter()
                .filter_map(|line| {
                    let product = locked.get(&line.product_id)?;
                    Some(PricedLine {
                        product_id: line.product_id,
                        quantity: line.quantity,
                        unit_price: product.price.to_string(),
                        name: product.name.clone(),
                    })
                })
                .collect();
            let event = InventoryReserved {
                order_id: one.order_id,
                order_version: one.version,
                items: priced,
            };
            events.push(OutboxEvent::new(event, now.millis(), one.trace.clone())?);
            outcomes.push(Outcome::Reserved);
        }
        if !products::add_stock_many(db, conn, &deltas, now).await? {
            return Err(HandlerError::Retry(anyhow::anyhow!(
                "the stock of {:?} moved while it was locked",
                deltas.keys().collect::<Vec<_>>()
            )));
        }
        holds::insert_lines_many(db, conn, &lines).await?;
        holds::insert_many(db, conn, &rows, now.millis()).await?;
        self.outbox.write_all(conn, events).await?;
        Ok(Some(outcomes))
    }

    /// Applies one order event inside the caller's transaction.
    pub async fn apply(
        &self,
        conn: &mut AnyConnection,
        event: &Envelope<Value>,
    ) -> Result<Outcome, HandlerError> {
        let trace = event.traceparent.clone();
        match read(event)? {
            OrderEvent::Reserve { order_id, version, items } => {
                self.reserve(conn, order_id, version, &items, trace).await
            }
            OrderEvent::Cancel { order_id, version } => {
                self.cancel(conn, order_id, version, trace).await
            }
        }
    }

    async fn reserve(
        &self,
        conn: &mut AnyConnection,
        order_id: Uuid,
        version: i64,
        items: &[OrderLine],
        trace: Option<String>,
    ) -> Result<Outcome, HandlerError> {
        let wanted = wanted_units(items)?;
        let db = &self.db;
        let hold = holds::find_for_update(db, conn, order_id).await?;
        match hold {
            Some(Hold { state: HoldState::Cancelled, .. }) => return Ok(Outcome::Ignored),
            Some(hold) if hold.version >= version => return Ok(Outcome::Ignored),
            _ => {}
        }
        let held = match hold {
            Some(Hold { state: HoldState::Held, .. }) => holds::lines(db, conn, order_id).await?,
            _ => BTreeMap::new(),
        };
        let involved: Vec<Uuid> = wanted
            .keys()
            .chain(held.keys())
            .copied()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let locked: BTreeMap<Uuid, Product> = products::find_many(db, conn, &involved, true)
            .await?
            .into_iter()
            .map(|product| (product.id, product))
            .collect();
        let now = Timestamp::now();

        // Decide under the locks, before anything is written.
        let mut refusal = None;
        for (product_id, quantity) in &wanted {
            let more = quantity - held.get(product_id).copied().unwrap_or(0);
            let reason = match locked.get(product_id) {
                None => Some(RejectionReason::UnknownProduct),
                Some(product) if more > 0 && !product.active => {
                    Some(RejectionReason::ProductUnavailable)
                }
                Some(product) if more > product.stock => Some(RejectionReason::InsufficientStock),
                Some(_) => None,
            };
            if let Some(reason) = reason {
                refusal = Some((reason, *product_id));
                break;
            }
        }
        if let Some((reason, product_id)) = refusal {
            // A refused change keeps what the order held; a refused placement holds nothing.
            let state = if held.is_empty() { HoldState::Rejected } else { HoldState::Held };
            holds::save(db, conn, order_id, Hold { version, state }, hold.is_some(), now.millis())
                .await?;
            let event = InventoryRejected {
                order_id,
                order_version: version,
                reason,
                product_id: Some(product_id),
            };
            self.outbox.write(conn, event, now.millis(), trace).await?;
            return Ok(Outcome::Rejected { reason, product_id: Some(product_id) });
        }

        // Every stock move in one statement and every event in one insert, in the order they
        // were written one by one before: one `inventory.updated` per product in id order, then
        // `inventory.reserved`.
        let mut deltas = BTreeMap::new();
        let mut events = Vec::with_capacity(involved.len() + 1);
        for product_id in &involved {
            let taken = wanted.get(product_id).copied().unwrap_or(0)
                - held.get(product_id).copied().unwrap_or(0);
            if taken == 0 {
                continue;
            }
            let Some(product) = locked.get(product_id) else {
                // Held units of a product that no longer exists: nothing to give back to.
                continue;
            };
            deltas.insert(*product_id, -taken);
            let event = InventoryUpdated {
                product_id: *product_id,
                stock: product.stock - taken,
                delta: -taken,
                reason: if taken > 0 {
                    InventoryChangeReason::Reservation
                } else {
                    InventoryChangeReason::Release
                },
            };
            events.push(OutboxEvent::new(event, now.millis(), trace.clone())?);
        }
        if !products::add_stock_many(db, conn, &deltas, now).await? {
            return Err(HandlerError::Retry(anyhow::anyhow!(
                "the stock of {:?} moved while it was locked",
                deltas.keys().collect::<Vec<_>>()
            )));
        }
        if !held.is_empty() {
            holds::delete_lines(db, conn, order_id).await?;
        }
        holds::insert_lines(db, conn, order_id, &wanted).await?;
        holds::save(
            db,
            conn,
            order_id,
            Hold { version, state: HoldState::Held },
            hold.is_some(),
            now.millis(),
        )
        .await?;
        let priced = items
            .iter()
            .filter_map(|line| {
                let product = locked.get(&line.product_id)?;
                Some(PricedLine {
                    product_id: line.product_id,
                    quantity: line.quantity,
                    unit_price: product.price.to_string(),
                    name: product.name.clone(),
                })
            })
            .collect();
        let event = InventoryReserved { order_id, order_version: version, items: priced };
        events.push(OutboxEvent::new(event, now.millis(), trace)?);
        self.outbox.write_all(conn, events).await?;
        Ok(Outcome::Reserved)
    }

    async fn cancel(
        &self,
        conn: &mut AnyConnection,
        order_id: Uuid,
        version: i64,
        trace: Option<String>,
    ) -> Result<Outcome, HandlerError> {
        let db = &self.db;
        let hold = holds::find_for_update(db, conn, order_id).await?;
        let now = Timestamp::now();
        let held = match hold {
            Some(Hold { state: HoldState::Cancelled, .. }) => return Ok(Outcome::Ignored),
            Some(Hold { state: HoldState::Held, .. }) => holds::lines(db, conn, order_id).await?,
            _ => BTreeMap::new(),
        };
        let ids: Vec<Uuid> = held.keys().copied().collect();
        let locked: BTreeMap<Uuid, Product> = products::find_many(db, conn, &ids, true)
            .await?
            .into_iter()
            .map(|product| (product.id, product))
            .collect();
        // As in `reserve`: one statement for the stocks, one insert for the events, in the
        // order they were written one by one before.
        let mut units = 0;
        let mut deltas = BTreeMap::new();
        let mut events = Vec::with_capacity(held.len() + 1);
        for (product_id, quantity) in &held {
            let Some(product) = locked.get(product_id) else { continue };
            deltas.insert(*product_id, *quantity);
            units += quantity;
            let event = InventoryUpdated {
                product_id: *product_id,
                stock: product.stock + quantity,
                delta: *quantity,
                reason: InventoryChangeReason::Release,
            };
            events.push(OutboxEvent::new(event, now.millis(), trace.clone())?);
        }
        if !products::add_stock_many(db, conn, &deltas, now).await? {
            return Err(HandlerError::Retry(anyhow::anyhow!(
                "the stocks of {:?} could not take back the units of order {order_id}",
                deltas.keys().collect::<Vec<_>>()
            )));
        }
        if !held.is_empty() {
            holds::delete_lines(db, conn, order_id).await?;
        }
        let version = hold.map_or(version, |hold| hold.version.max(version));
        holds::save(
            db,
            conn,
            order_id,
            Hold { version, state: HoldState::Cancelled },
            hold.is_some(),
            now.millis(),
        )
        .await?;
        let items = held
            .into_iter()
            .map(|(product_id, quantity)| OrderLine { product_id, quantity })
            .collect();
        events.push(OutboxEvent::new(InventoryReleased { order_id, items }, now.millis(), trace)?);
        self.outbox.write_all(conn, events).await?;
        Ok(Outcome::Released { units })
    }
}
