//! The order aggregate: its [`Status`] state machine and every change an order can go through,
//! as plain methods with checked transitions. Each change raises `version` (the `orderVersion`
//! of the events) and says which event, if any, it causes; nothing here touches a database.
//!
//! ```text
//!             ┌──── item change (re-reserve) ───┐
//!             ▼                                 │
//!  place ─► pending ─► confirmed ─► shipped ─► delivered
//!             │   └──► rejected       │
//!             └──────────┴─► cancelled ◄┘ (from pending or confirmed)
//! ```
//!
//! While an item change is being re-reserved the order is `pending` again and remembers what it
//! had (`previous`): a refusal restores it and records [`UpdateRejection`]; a reservation replaces
//! it. Answers from the products service are taken only for the version the order awaits, so
//! late, duplicated and reordered answers change nothing.

use std::collections::HashMap;

use mercato_contracts::{OrderLine, PricedLine, RejectionReason};
use mercato_platform::money::Money;
use mercato_platform::time::Timestamp;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Where an order is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Waiting for the products service to reserve its stock (after placement or an item change).
    Pending,
    /// Stock reserved, order priced.
    Confirmed,
    /// The products service refused it (`rejectionReason` says why). Final.
    Rejected,
    /// Cancelled by its owner, an admin, or the deletion of its owner. Final.
    Cancelled,
    Shipped,
    /// Final.
    Delivered,
}

impl Status {
    pub const ALL: [Status; 6] = [
        Status::Pending,
        Status::Confirmed,
        Status::Rejected,
        Status::Cancelled,
        Status::Shipped,
        Status::Delivered,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Confirmed => "confirmed",
            Self::Rejected => "rejected",
            Self::Cancelled => "cancelled",
            Self::Shipped => "shipped",
            Self::Delivered => "delivered",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == text)
    }

    /// Whether the state machine has an edge from `self` to `next`.
    pub fn can_become(self, next: Status) -> bool {
        use Status::*;
        matches!(
            (self, next),
            (Pending, Confirmed | Rejected | Cancelled)
                | (Confirmed, Pending | Cancelled | Shipped)
                | (Shipped, Delivered)
        )
    }

    /// Open orders hold (or are about to hold) stock; a deleted user's open orders are cancelled.
    pub fn is_open(self) -> bool {
        matches!(self, Self::Pending | Self::Confirmed)
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One line of an order. `unit_price` and `name` are the products service's, set when the line is
/// priced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    #[serde(rename = "p")]
    pub product_id: Uuid,
    #[serde(rename = "q")]
    pub quantity: i64,
    #[serde(rename = "c", default, skip_serializing_if = "Option::is_none")]
    pub unit_price: Option<i64>,
    #[serde(rename = "n", default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl Line {
    pub fn unpriced(product_id: Uuid, quantity: i64) -> Self {
        Self { product_id, quantity, unit_price: None, name: None }
    }

    pub fn unit_price(&self) -> Option<Money> {
        self.unit_price.map(Money::from_cents)
    }
}

/// Where to ship an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Address {
    pub street: String,
    pub city: String,
    pub zip_code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
}

/// Why the last item change was refused, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateRejection {
    /// `insufficient_stock`, `unknown_product` or `product_unavailable`.
    pub reason: String,
    pub product_id: Option<Uuid>,
    pub at: Timestamp,
}

/// What an item change replaced, kept until the products service answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Previous {
    pub items: Vec<Line>,
    pub total: Option<Money>,
}

/// An order and its saga bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub id: Uuid,
    pub user_id: Uuid,
    pub status: Status,
    pub items: Vec<Line>,
    pub total: Option<Money>,
    pub shipping_address: Option<Address>,
    pub payment_method: Option<String>,
    pub rejection_reason: Option<String>,
    pub last_update_rejection: Option<UpdateRejection>,
    pub version: i64,
    /// The version whose reservation answer the order waits for (only while `pending`).
    pub awaiting_version: Option<i64>,
    /// What a pending item change replaced.
    pub previous: Option<Previous>,
    /// The products service has released what this cancelled order held.
    pub stock_released: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// Why a change was refused (each maps to a `409`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The change is not allowed from the current status.
    InvalidState { from: Status, wanted: &'static str },
    /// The placement or an earlier change is still being reserved.
    UpdateInProgress,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::InvalidState { from, wanted } => {
                write!(f, "a {from} order cannot {wanted}")
            }
            Self::UpdateInProgress => f.write_str(
                "the order's items are still being reserved; change them again once it has \
                 left pending",
            ),
        }
    }
}

/// What a products-service answer did to an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// The order is confirmed (placed, or its item change reserved).
    Confirmed,
    /// The placement was refused: the order is rejected.
    Rejected { reason: String },
    /// An item change was refused: the previous items are back, the order is confirmed.
    ChangeRefused { reason: String },
}

impl Order {
    /// A new `pending` order at version 1, waiting for its reservation.
    pub fn place(
        user_id: Uuid,
        items: Vec<OrderLine>,
        shipping_address: Option<Address>,
        payment_method: Option<String>,
        now: Timestamp,
    ) -> Self {
        Self {
            id: Uuid::now_v7(),
            user_id,
            status: Status::Pending,
            items: items
                .iter()
                .map(|line| Line::unpriced(line.product_id, line.quantity))
                .collect(),
            total: None,
            shipping_address,
            payment_method,
            rejection_reason: None,
            last_update_rejection: None,
            version: 1,
            awaiting_version: Some(1),
            previous: None,
            stock_released: false,
            created_at: now,
            updated_at: now,
        }
    }

    /// The lines as the products service reads them.
    pub fn order_lines(&self) -> Vec<OrderLine> {
        self.items
            .iter()
            .map(|line| OrderLine { product_id: line.product_id, quantity: line.quantity })
            .collect()
    }

    fn touch(&mut self, now: Timestamp) {
        self.version += 1;
        self.updated_at = now;
    }

    fn moving_to(&self, next: Status, wanted: &'static str) -> Result<(), Refusal> {
        if self.status.can_become(next) {
            Ok(())
        } else {
            Err(Refusal::InvalidState { from: self.status, wanted })
        }
    }

    /// Replaces the items of a `confirmed` order: it goes back to `pending` until the products
    /// service has moved the reservation (`order.updated`).
    pub fn change_items(&mut self, items: &[OrderLine], now: Timestamp) -> Result<(), Refusal> {
        if self.status == Status::Pending {
            return Err(Refusal::UpdateInProgress);
        }
        self.moving_to(Status::Pending, "change its items")?;
        self.previous =
            Some(Previous { items: std::mem::take(&mut self.items), total: self.total.take() });
        self.items =
            items.iter().map(|line| Line::unpriced(line.product_id, line.quantity)).collect();
        self.status = Status::Pending;
        self.touch(now);
        self.awaiting_version = Some(self.version);
        Ok(())
    }

    /// Changes where it ships or how it is paid: allowed until it ships.
    pub fn change_details(
        &mut self,
        shipping_address: Option<Option<Address>>,
        payment_method: Option<Option<String>>,
        now: Timestamp,
    ) -> Result<(), Refusal> {
        if !self.status.is_open() {
            return Err(Refusal::InvalidState {
                from: self.status,
                wanted: "change its shipping address or payment method",
            });
        }
        if let Some(address) = shipping_address {
            self.shipping_address = address;
        }
        if let Some(method) = payment_method {
            self.payment_method = method;
        }
        self.touch(now);
        Ok(())
    }

    /// `confirmed` → `shipped` → `delivered` (admin only; checked by the caller).
    pub fn advance(&mut self, to: Status, now: Timestamp) -> Result<(), Refusal> {
        let wanted = match to {
            Status::Shipped => "be shipped",
            Status::Delivered => "be delivered",
            _ => "take that status",
        };
        if !matches!(to, Status::Shipped | Status::Delivered) {
            return Err(Refusal::InvalidState { from: self.status, wanted });
        }
        self.moving_to(to, wanted)?;
        self.status = to;
        self.touch(now);
        Ok(())
    }

    /// Cancels a `pending` or `confirmed` order (`order.cancelled`). `Ok(false)`: it was cancelled
    /// already, nothing changed.
    pub fn cancel(&mut self, now: Timestamp) -> Result<bool, Refusal> {
        if self.status == Status::Cancelled {
            return Ok(false);
        }
        self.moving_to(Status::Cancelled, "be cancelled")?;
        self.status = Status::Cancelled;
        self.awaiting_version = None;
        self.previous = None;
        self.touch(now);
        Ok(true)
    }

    /// `inventory.reserved` for `version`: confirmed and priced with the products service's prices
    /// and names. `None`: not the answer this order waits for (late, duplicated, stale).
    pub fn reserved(
        &mut self,
        version: i64,
        priced: &[PricedLine],
        now: Timestamp,
    ) -> Option<Settled> {
        if self.status != Status::Pending || self.awaiting_version != Some(version) {
            return None;
        }
        let by_product: HashMap<Uuid, &PricedLine> =
            priced.iter().map(|line| (line.product_id, line)).collect();
        let mut total: i64 = 0;
        for line in &mut self.items {
            let answer = by_product.get(&line.product_id);
            let price = answer.and_then(|answer| Money::parse(&answer.unit_price).ok());
            line.unit_price = price.map(Money::cents);
            line.name = answer.map(|answer| answer.name.clone());
            total = total.saturating_add(
                price.map_or(0, |price| price.cents()).saturating_mul(line.quantity),
            );
        }
        self.total = Some(Money::from_cents(total));
        self.status = Status::Confirmed;
        self.awaiting_version = None;
        if self.previous.take().is_some() {
            self.last_update_rejection = None;
        }
        self.touch(now);
        Some(Settled::Confirmed)
    }

    /// `inventory.rejected` for `version`: a refused placement rejects the order; a refused item
    /// change restores the previous items and records why. `None`: not awaited.
    pub fn refused(
        &mut self,
        version: i64,
        reason: RejectionReason,
        product_id: Option<Uuid>,
        now: Timestamp,
    ) -> Option<Settled> {
        if self.status != Status::Pending || self.awaiting_version != Some(version) {
            return None;
        }
        let reason = reason.as_str().to_owned();
        self.awaiting_version = None;
        let settled = match self.previous.take() {
            Some(previous) => {
                self.items = previous.items;
                self.total = previous.total;
                self.status = Status::Confirmed;
                self.last_update_rejection =
                    Some(UpdateRejection { reason: reason.clone(), product_id, at: now });
                Settled::ChangeRefused { reason }
            }
            None => {
                self.status = Status::Rejected;
                self.rejection_reason = Some(reason.clone());
                Settled::Rejected { reason }
            }
        };
        self.touch(now);
        Some(settled)
    }

    /// `inventory.released`: the products service gave back what this cancelled order held.
    /// `true` when that is news.
    pub fn released(&mut self) -> bool {
        if self.status == Status::Cancelled && !self.stock_released {
            self.stock_released = true;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        Timestamp::from_millis(1_700_000_000_000)
    }

    fn line(product_id: Uuid, quantity: i64) -> OrderLine {
        OrderLine { product_id, quantity }
    }

    fn priced(product_id: Uuid, quantity: i64, price: &str) -> PricedLine {
        PricedLine {
            product_id,
            quantity,
            unit_price: price.to_owned(),
            name: format!("product {quantity}"),
        }
    }

    fn placed() -> (Order, Uuid, Uuid) {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let order = Order::place(Uuid::now_v7(), vec![line(a, 2), line(b, 1)], None, None, now());
        (order, a, b)
    }

    fn confirmed() -> (Order, Uuid, Uuid) {
        let (mut order, a, b) = placed();
        let answer = [priced(a, 2, "10.00"), priced(b, 1, "0.99")];
        assert_eq!(order.reserved(1, &answer, now()), Some(Settled::Confirmed));
        (order, a, b)
    }

    #[test]
    fn the_state_machine_has_exactly_the_documented_edges() {
        use Status::*;
        let allowed = [
            (Pending, Confirmed),
            (Pending, Rejected),
            (Pending, Cancelled),
            (Confirmed, Pending),
            (Confirmed, Cancelled),
            (Confirmed, Shipped),
            (Shipped, Delivered),
        ];
        for from in Status::ALL {
            for to in Status::ALL {
                assert_eq!(from.can_become(to), allowed.contains(&(from, to)), "{from} -> {to}");
            }
        }
        for status in Status::ALL {
            assert_eq!(Status::parse(status.as_str()), Some(status));
        }
        assert_eq!(Status::parse("Pending"), None);
    }

    #[test]
    fn a_placed_order_is_pending_unpriced_and_awaits_version_one() {
        let (order, a, _) = placed();
        assert_eq!(order.status, Status::Pending);
        assert_eq!(order.version, 1);
        assert_eq!(order.awaiting_version, Some(1));
        assert_eq!(order.total, None);
        assert_eq!(order.items[0], Line::unpriced(a, 2));
    }

    #[test]
    fn a_reservation_confirms_and_prices_the_order() {
        let (order, _, _) = confirmed();
        assert_eq!(order.status, Status::Confirmed);
        assert_eq!(order.total, Some(Money::from_cents(2_099)));
        assert_eq!(order.items[0].unit_price, Some(1_000));
        assert_eq!(order.items[1].name.as_deref(), Some("product 1"));
        assert_eq!(order.version, 2);
        assert_eq!(order.awaiting_version, None);
    }

    #[test]
    fn answers_for_other_versions_and_repeated_answers_change_nothing() {
        let (mut order, a, b) = placed();
        let answer = [priced(a, 2, "10.00"), priced(b, 1, "0.99")];
        assert_eq!(order.reserved(7, &answer, now()), None);
        assert_eq!(order.refused(0, RejectionReason::InsufficientStock, Some(a), now()), None);
        assert_eq!(order.status, Status::Pending);
        assert!(order.reserved(1, &answer, now()).is_some());
        let settled = order.clone();
        assert_eq!(order.reserved(1, &answer, now()), None);
        assert_eq!(order.refused(1, RejectionReason::UnknownProduct, Some(a), now()), None);
        assert_eq!(order, settled);
    }

    #[test]
    fn a_refused_placement_rejects_with_the_reason_and_no_prices() {
        let (mut order, a, _) = placed();
        let settled = order.refused(1, RejectionReason::InsufficientStock, Some(a), now());
        assert_eq!(settled, Some(Settled::Rejected { reason: "insufficient_stock".into() }));
        assert_eq!(order.status, Status::Rejected);
        assert_eq!(order.rejection_reason.as_deref(), Some("insufficient_stock"));
        assert_eq!(order.total, None);
        assert_eq!(
            order.cancel(now()),
            Err(Refusal::InvalidState { from: Status::Rejected, wanted: "be cancelled" })
        );
    }

    #[test]
    fn an_item_change_goes_back_to_pending_and_a_reservation_reprices_it() {
        let (mut order, a, _) = confirmed();
        let c = Uuid::now_v7();
        order.change_items(&[line(a, 5), line(c, 1)], now()).expect("confirmed orders change");
        assert_eq!(order.status, Status::Pending);
        assert_eq!(order.version, 3);
        assert_eq!(order.awaiting_version, Some(3));
        assert_eq!(order.total, None);
        assert_eq!(order.change_items(&[line(a, 1)], now()), Err(Refusal::UpdateInProgress));
        let answer = [priced(a, 5, "10.00"), priced(c, 1, "1.00")];
        assert_eq!(order.reserved(3, &answer, now()), Some(Settled::Confirmed));
        assert_eq!(order.total, Some(Money::from_cents(5_100)));
        assert_eq!(order.previous, None);
        assert_eq!(order.last_update_rejection, None);
    }

    #[test]
    fn a_refused_item_change_restores_the_previous_items_and_says_why() {
        let (mut order, a, _) = confirmed();
        let before = order.items.clone();
        order.change_items(&[line(a, 500)], now()).expect("confirmed orders change");
        let settled = order.refused(3, RejectionReason::InsufficientStock, Some(a), now());
        assert_eq!(settled, Some(Settled::ChangeRefused { reason: "insufficient_stock".into() }));
        assert_eq!(order.status, Status::Confirmed);
        assert_eq!(order.items, before);
        assert_eq!(order.total, Some(Money::from_cents(2_099)));
        let rejection = order.last_update_rejection.clone().expect("recorded");
        assert_eq!(
            (rejection.reason.as_str(), rejection.product_id),
            ("insufficient_stock", Some(a))
        );
        assert_eq!(order.version, 4);
    }

    #[test]
    fn cancelling_is_allowed_while_open_and_repeats_harmlessly() {
        let (mut order, _, _) = placed();
        assert_eq!(order.cancel(now()), Ok(true));
        assert_eq!(order.status, Status::Cancelled);
        assert_eq!(order.awaiting_version, None);
        let version = order.version;
        assert_eq!(order.cancel(now()), Ok(false));
        assert_eq!(order.version, version);
        assert!(order.released());
        assert!(!order.released());
        let (mut order, _, _) = confirmed();
        assert_eq!(order.cancel(now()), Ok(true));
    }

    #[test]
    fn a_late_reservation_of_a_cancelled_order_changes_nothing() {
        let (mut order, a, _) = placed();
        order.cancel(now()).expect("pending orders cancel");
        let cancelled = order.clone();
        assert_eq!(order.reserved(1, &[priced(a, 2, "1.00")], now()), None);
        assert_eq!(order, cancelled);
    }

    #[test]
    fn only_admins_path_of_shipping_and_delivery_is_confirmed_shipped_delivered() {
        let (mut order, _, _) = placed();
        assert!(order.advance(Status::Shipped, now()).is_err());
        let (mut order, _, _) = confirmed();
        assert!(order.advance(Status::Delivered, now()).is_err());
        assert!(order.advance(Status::Cancelled, now()).is_err());
        order.advance(Status::Shipped, now()).expect("confirmed ships");
        assert!(order.cancel(now()).is_err());
        assert!(order.change_items(&[], now()).is_err());
        assert!(order.change_details(Some(None), None, now()).is_err());
        order.advance(Status::Delivered, now()).expect("shipped is delivered");
        assert_eq!(order.status, Status::Delivered);
        assert!(order.advance(Status::Delivered, now()).is_err());
    }

    #[test]
    fn details_change_while_open_and_raise_the_version() {
        let (mut order, _, _) = placed();
        let address = Address {
            street: "1 Main St".into(),
            city: "Springfield".into(),
            zip_code: "12345".into(),
            state: None,
            country: None,
        };
        order
            .change_details(Some(Some(address.clone())), Some(Some("card".into())), now())
            .expect("pending orders change details");
        assert_eq!(order.shipping_address, Some(address));
        assert_eq!(order.payment_method.as_deref(), Some("card"));
        assert_eq!(order.version, 2);
        assert_eq!(order.awaiting_version, Some(1), "a details change does not move the saga");
    }
}
