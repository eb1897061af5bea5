//! After a run that moved stock, what the system promises is checked through the API with the
//! admin's token (DESIGN.md promises 3 and 4):
//!
//! - no order of the run's customers is left `pending` (waiting up to [`PATIENCE`] for
//!   stragglers);
//! - for every product of the run, initial stock − the units of its orders that still hold
//!   stock (`confirmed`, `shipped`, `delivered`) = current stock. A cancelled order gives its
//!   units back asynchronously, so the books are read again until they balance or the
//!   patience is spent.
//!
//! Only the run's own customers' orders are read (`?userId=`), so a server with a long history
//! costs no more to check.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde_json::Value;

use crate::client::{Api, require};
use crate::fixtures::{Fixtures, Product};

/// How long stragglers may take to settle and cancelled stock to come back.
pub const PATIENCE: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(500);
/// Statuses whose orders hold their units (API.md, DESIGN.md promise 3).
pub const HOLDING: [&str; 3] = ["confirmed", "shipped", "delivered"];
/// At most this many pending order ids are listed in a report.
const LISTED: usize = 20;

/// One product's books.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Ledger {
    pub product_id: String,
    pub initial_stock: i64,
    /// Units held by the product's confirmed, shipped and delivered orders.
    pub held: i64,
    /// `initial_stock - held`.
    pub expected_stock: i64,
    pub stock: i64,
    pub holds: bool,
}

/// The outcome of the checks.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Invariants {
    pub holds: bool,
    /// No order of the run is still `pending`.
    pub no_pending: bool,
    /// Every product's books balance.
    pub stock_conserved: bool,
    pub orders: u64,
    /// Orders per status.
    pub statuses: Vec<(String, u64)>,
    pub pending: u64,
    /// Some of the pending orders' ids.
    pub pending_ids: Vec<String>,
    pub products: Vec<Ledger>,
    /// How long the check waited for the system to settle.
    pub waited_seconds: f64,
}

/// The books of `products` given every order that could hold their units.
pub fn ledgers(
    products: &[Product],
    orders: &[Value],
    stocks: &HashMap<String, i64>,
) -> Vec<Ledger> {
    let mut held: HashMap<&str, i64> = HashMap::new();
    for order in orders {
        let status = order.get("status").and_then(Value::as_str).unwrap_or_default();
        if !HOLDING.contains(&status) {
            continue;
        }
        for line in order.get("items").and_then(Value::as_array).into_iter().flatten() {
            let product = line.get("productId").and_then(Value::as_str).unwrap_or_default();
            let quantity = line.get("quantity").and_then(Value::as_i64).unwrap_or_default();
            *held.entry(product).or_insert(0) += quantity;
        }
    }
    products
        .iter()
        .map(|product| {
            let held = held.get(product.id.as_str()).copied().unwrap_or(0);
            let expected_stock = product.initial_stock - held;
            // A product missing from the answer has no stock to compare: it does not balance.
            let stock = stocks.get(&product.id).copied().unwrap_or(i64::MIN);
            Ledger {
                product_id: product.id.clone(),
                initial_stock: product.initial_stock,
                held,
                expected_stock,
                stock,
                holds: stock == expected_stock,
            }
        })
        .collect()
}

/// The outcome, given every order of the run and the products' current stocks.
pub fn judge(
    products: &[Product],
    orders: &[Value],
    stocks: &HashMap<String, i64>,
    waited: Duration,
) -> Invariants {
    let products = ledgers(products, orders, stocks);
    let mut statuses: HashMap<String, u64> = HashMap::new();
    let mut pending_ids = Vec::new();
    for order in orders {
        let status = order.get("status").and_then(Value::as_str).unwrap_or("unknown");
        *statuses.entry(status.to_owned()).or_insert(0) += 1;
        if status == "pending" && pending_ids.len() < LISTED {
            pending_ids.push(order.get("id").and_then(Value::as_str).unwrap_or("?").to_owned());
        }
    }
    let pending = statuses.get("pending").copied().unwrap_or(0);
    let mut statuses: Vec<(String, u64)> = statuses.into_iter().collect();
    statuses.sort();
    let stock_conserved = products.iter().all(|ledger| ledger.holds);
    Invariants {
        holds: pending == 0 && stock_conserved,
        no_pending: pending == 0,
        stock_conserved,
        orders: orders.len() as u64,
        statuses,
        pending,
        pending_ids,
        products,
        waited_seconds: waited.as_secs_f64(),
    }
}

/// Waits (at most `patience`) for the run's orders to settle and its books to balance, then
/// says whether they did.
pub async fn check(
    api: &Api,
    fixtures: &Fixtures,
    patience: Duration,
) -> anyhow::Result<Invariants> {
    let started = Instant::now();
    let deadline = started + patience;
    let token = fixtures.admin.token(api).await.map_err(|f| anyhow!("admin token: {f}"))?;
    // Cheap first: one small page per customer until none has a pending order.
    loop {
        let mut any_pending = false;
        for customer in &fixtures.customers {
            let path = format!("/api/orders?userId={}&status=pending&limit=1", customer.id);
            let page = require(
                api.request(Method::GET, &path).bearer_auth(&token),
                StatusCode::OK,
                "listing pending orders",
            )
            .await?;
            if page.get("items").and_then(Value::as_array).is_some_and(|items| !items.is_empty()) {
                any_pending = true;
                break;
            }
        }
        if !any_pending || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    loop {
        let orders = all_orders(api, fixtures, &token).await?;
        let stocks = stocks(api, &fixtures.products).await?;
        let invariants = judge(&fixtures.products, &orders, &stocks, started.elapsed());
        if invariants.holds || Instant::now() >= deadline {
            return Ok(invariants);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Every order of the run's customers, following `nextCursor`.
async fn all_orders(api: &Api, fixtures: &Fixtures, token: &str) -> anyhow::Result<Vec<Value>> {
    let mut orders = Vec::new();
    for customer in &fixtures.customers {
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/api/orders?userId={}&limit=100", customer.id);
            if let Some(cursor) = &cursor {
                path.push_str("&cursor=");
                path.push_str(cursor);
            }
            let request = api.request(Method::GET, &path).bearer_auth(token);
            let page = require(request, StatusCode::OK, "listing orders").await?;
            let items = page
                .get("items")
                .and_then(Value::as_array)
                .ok_or_else(|| anyhow!("listing orders: not a page: {page}"))?;
            orders.extend(items.iter().cloned());
            match page.get("nextCursor").and_then(Value::as_str) {
                Some(next) => cursor = Some(next.to_owned()),
                None => break,
            }
        }
    }
    Ok(orders)
}

/// The products' current stocks, in one call (`?ids=`, at most 100).
async fn stocks(api: &Api, products: &[Product]) -> anyhow::Result<HashMap<String, i64>> {
    let ids: Vec<&str> = products.iter().map(|product| product.id.as_str()).collect();
    let path = format!("/api/products?ids={}&limit=100", ids.join(","));
    let page =
        require(api.request(Method::GET, &path), StatusCode::OK, "reading the products").await?;
    let mut stocks = HashMap::new();
    for product in page.get("items").and_then(Value::as_array).into_iter().flatten() {
        if let (Some(id), Some(stock)) = (
            product.get("id").and_then(Value::as_str),
            product.get("stock").and_then(Value::as_i64),
        ) {
            stocks.insert(id.to_owned(), stock);
        }
    }
    Ok(stocks)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn product(id: &str) -> Product {
        Product { id: id.to_owned(), initial_stock: 100 }
    }

    fn order(id: &str, status: &str, lines: &[(&str, i64)]) -> Value {
        let items: Vec<Value> =
            lines.iter().map(|(p, q)| json!({"productId": p, "quantity": q})).collect();
        json!({"id": id, "status": status, "items": items})
    }

    #[test]
    fn only_orders_that_hold_stock_count_against_it() {
        let products = [product("a"), product("b")];
        let orders = [
            order("1", "confirmed", &[("a", 2), ("b", 1)]),
            order("2", "shipped", &[("a", 1)]),
            order("3", "delivered", &[("b", 4)]),
            order("4", "cancelled", &[("a", 50)]),
            order("5", "rejected", &[("b", 50)]),
        ];
        let stocks = HashMap::from([("a".to_owned(), 97), ("b".to_owned(), 95)]);
        let invariants = judge(&products, &orders, &stocks, Duration::from_secs(1));
        assert!(invariants.holds, "{invariants:?}");
        assert_eq!(invariants.products[0].held, 3);
        assert_eq!(invariants.products[1].expected_stock, 95);
        assert_eq!(invariants.orders, 5);
        assert_eq!(invariants.statuses.len(), 5);
    }

    #[test]
    fn a_pending_order_or_a_missing_unit_breaks_them() {
        let products = [product("a")];
        let orders = [order("1", "confirmed", &[("a", 2)]), order("2", "pending", &[("a", 1)])];
        let stocks = HashMap::from([("a".to_owned(), 97)]);
        let invariants = judge(&products, &orders, &stocks, Duration::ZERO);
        assert!(!invariants.holds);
        assert!(!invariants.no_pending);
        assert_eq!(invariants.pending_ids, ["2"]);
        // 100 - 2 held = 98 expected, 97 in stock: a unit went missing.
        assert!(!invariants.stock_conserved);
        assert_eq!(invariants.products[0].expected_stock, 98);
        let invariants = judge(&products, &orders[..1], &HashMap::new(), Duration::ZERO);
        assert!(!invariants.stock_conserved, "a product the server did not list cannot balance");
    }
}
