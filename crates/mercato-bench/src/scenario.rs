//! The scenarios ([`Scenario`]), the requests they are made of ([`Operation`]), and one request
//! sent and judged ([`perform`]): what counts as a success for each operation is decided here.

use std::sync::Arc;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::client::{Account, Answer, Api, Failure};
use crate::fixtures::Fixtures;

/// What a run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// `GET /api/products/:id`.
    Read,
    /// `GET /api/products?limit=20` (a page of products).
    List,
    /// `POST /api/auth/login` (Argon2id-bound).
    Login,
    /// `POST /api/orders` with three lines, answered at once (`201 pending`).
    Place,
    /// `POST /api/orders` with `Prefer: wait=30`: placed → confirmed, the whole saga.
    Settle,
    /// GraphQL `product(id)`.
    GraphqlProduct,
    /// GraphQL `orders(first: 20)` with each order's user and items' products (as the admin).
    GraphqlOrders,
    /// Mostly reads and pages, some held placements, item changes and cancels of own orders.
    Mixed,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::List => "list",
            Self::Login => "login",
            Self::Place => "place",
            Self::Settle => "settle",
            Self::GraphqlProduct => "graphql-product",
            Self::GraphqlOrders => "graphql-orders",
            Self::Mixed => "mixed",
        }
    }

    /// Scenarios that move stock and settle orders are followed by the invariant checks.
    pub fn checks_invariants(self) -> bool {
        matches!(self, Self::Settle | Self::Mixed)
    }

    /// The GraphQL order page needs orders to show.
    pub fn needs_orders(self) -> bool {
        matches!(self, Self::GraphqlOrders)
    }
}

/// One kind of request; the report has a row for each kind a run sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operation {
    Read,
    List,
    Login,
    Place,
    /// A placement held with `Prefer: wait=30` until the order has left `pending`.
    PlaceHeld,
    /// `PATCH /api/orders/:id {items}` held until re-reserved.
    UpdateItems,
    /// `DELETE /api/orders/:id`.
    Cancel,
    GraphqlProduct,
    GraphqlOrders,
}

impl Operation {
    pub fn name(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::List => "list",
            Self::Login => "login",
            Self::Place => "place",
            Self::PlaceHeld => "place-held",
            Self::UpdateItems => "update-items",
            Self::Cancel => "cancel",
            Self::GraphqlProduct => "graphql-product",
            Self::GraphqlOrders => "graphql-orders",
        }
    }

    /// What to change on the server when this operation is rate limited.
    pub fn rate_limit_hint(self) -> &'static str {
        match self {
            Self::Login => {
                "logins are limited per client address: raise \
                 MERCATO_USERS__RATE_LIMIT__PER_ADDRESS_PER_MINUTE on the server"
            }
            Self::GraphqlProduct | Self::GraphqlOrders => {
                "GraphQL requests are limited per client: raise \
                 MERCATO_GATEWAY__RATE_LIMIT_PER_MINUTE on the server (0 turns the limit off)"
            }
            _ => "the server's rate limit refused these requests",
        }
    }
}

/// The document of `graphql-product`.
pub const PRODUCT_QUERY: &str =
    "query Product($id: ID!) { product(id: $id) { id sku name price stock active } }";
/// The document of `graphql-orders`: a page of orders with, per order, its user (batched) and
/// per line its product (batched).
pub const ORDERS_QUERY: &str = "query Orders { orders(first: 20) { edges { node { id status \
     user { name } items { quantity product { name } } } } } }";

/// How long placements, item changes (and the `settle` scenario) ask the server to hold the answer.
pub const HOLD: &str = "wait=30";

/// The share (in percent) of each operation in `mixed`: a shop is mostly browsed.
pub const MIXED_BLEND: [(Operation, u64); 5] = [
    (Operation::Read, 60),
    (Operation::List, 20),
    (Operation::PlaceHeld, 10),
    (Operation::UpdateItems, 5),
    (Operation::Cancel, 5),
];

/// A worker keeps at most this many of its confirmed orders to change or cancel later.
const KEPT_ORDERS: usize = 64;

/// A small, fast generator (xorshift64*): the load is random, not cryptographic, and a crate
/// for it would be the only one that needs it.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..bound` (`bound` > 0).
    pub fn below(&mut self, bound: usize) -> usize {
        (self.next_u64() % bound.max(1) as u64) as usize
    }

    /// `count` distinct numbers in `0..bound` (`count <= bound`).
    pub fn distinct(&mut self, count: usize, bound: usize) -> Vec<usize> {
        let mut picked = Vec::with_capacity(count);
        while picked.len() < count.min(bound) {
            let candidate = self.below(bound);
            if !picked.contains(&candidate) {
                picked.push(candidate);
            }
        }
        picked
    }
}

/// What every worker shares.
#[derive(Debug)]
pub struct Context {
    pub api: Api,
    pub fixtures: Arc<Fixtures>,
    pub scenario: Scenario,
}

/// One worker's own state: its customer, and the orders it placed and knows to be confirmed.
#[derive(Debug)]
pub struct Worker {
    pub rng: Rng,
    pub customer: Arc<Account>,
    pub orders: Vec<String>,
}

impl Worker {
    pub fn new(index: usize, fixtures: &Fixtures) -> Self {
        let customer = fixtures.customers[index % fixtures.customers.len()].clone();
        Self { rng: Rng::new(fixtures.seed ^ (index as u64 + 1)), customer, orders: Vec::new() }
    }

    fn keep(&mut self, order: String) {
        if self.orders.len() >= KEPT_ORDERS {
            self.orders.remove(0);
        }
        self.orders.push(order);
    }

    fn take_order(&mut self) -> Option<String> {
        if self.orders.is_empty() {
            return None;
        }
        let index = self.rng.below(self.orders.len());
        Some(self.orders.swap_remove(index))
    }
}

/// Picks the operation the worker sends next.
pub fn choose(scenario: Scenario, worker: &mut Worker) -> Operation {
    match scenario {
        Scenario::Read => Operation::Read,
        Scenario::List => Operation::List,
        Scenario::Login => Operation::Login,
        Scenario::Place => Operation::Place,
        Scenario::Settle => Operation::PlaceHeld,
        Scenario::GraphqlProduct => Operation::GraphqlProduct,
        Scenario::GraphqlOrders => Operation::GraphqlOrders,
        Scenario::Mixed => {
            let mut roll = worker.rng.below(100) as u64;
            let mut chosen = Operation::Read;
            for (operation, share) in MIXED_BLEND {
                if roll < share {
                    chosen = operation;
                    break;
                }
                roll -= share;
            }
            // Changing or cancelling needs an order of one's own: place one first.
            match chosen {
                Operation::UpdateItems | Operation::Cancel if worker.orders.is_empty() => {
                    Operation::PlaceHeld
                }
                other => other,
            }
        }
    }
}

/// Sends the worker's next request and judges the answer.
pub async fn perform(context: &Context, worker: &mut Worker) -> (Operation, Result<(), Failure>) {
    let operation = choose(context.scenario, worker);
    let result = match operation {
        Operation::Read => read(context, worker).await,
        Operation::List => list(context).await,
        Operation::Login => login(context, worker).await,
        Operation::Place => place(context, worker, false).await,
        Operation::PlaceHeld => place(context, worker, true).await,
        Operation::UpdateItems => update_items(context, worker).await,
        Operation::Cancel => cancel(context, worker).await,
        Operation::GraphqlProduct => graphql_product(context, worker).await,
        Operation::GraphqlOrders => graphql_orders(context).await,
    };
    (operation, result)
}

fn random_product<'a>(context: &'a Context, worker: &mut Worker) -> &'a str {
    let products = &context.fixtures.products;
    &products[worker.rng.below(products.len())].id
}

async fn read(context: &Context, worker: &mut Worker) -> Result<(), Failure> {
    let id = random_product(context, worker);
    let request = context.api.request(Method::GET, &format!("/api/products/{id}"));
    let product = Answer::of(request).await?.expect(StatusCode::OK)?;
    if product.get("id").and_then(Value::as_str) != Some(id) {
        return Err(Failure::new(Some(200), "wrong_product"));
    }
    Ok(())
}

async fn list(context: &Context) -> Result<(), Failure> {
    let request = context.api.request(Method::GET, "/api/products?limit=20");
    let page = Answer::of(request).await?.expect(StatusCode::OK)?;
    if !page.get("items").is_some_and(Value::is_array) {
        return Err(Failure::new(Some(200), "not_a_page"));
    }
    Ok(())
}

async fn login(context: &Context, worker: &mut Worker) -> Result<(), Failure> {
    let customer = &worker.customer;
    let request = context
        .api
        .request(Method::POST, "/api/auth/login")
        .json(&json!({"email": customer.email, "password": customer.password}));
    let session = Answer::of(request).await?.expect(StatusCode::OK)?;
    if !session.get("token").is_some_and(Value::is_string) {
        return Err(Failure::new(Some(200), "no_token"));
    }
    Ok(())
}

/// Three distinct products, one unit each (or 1..=3 lines of 1..=3 units for an item change).
fn lines(context: &Context, worker: &mut Worker, count: usize, max_quantity: usize) -> Value {
    let products = &context.fixtures.products;
    let picked = worker.rng.distinct(count, products.len());
    Value::Array(
        picked
            .into_iter()
            .map(|index| {
                let quantity = 1 + worker.rng.below(max_quantity);
                json!({"productId": products[index].id, "quantity": quantity})
            })
            .collect(),
    )
}

/// The body of every placement: three lines, an address and a payment method.
fn order_body(items: Value) -> Value {
    json!({
        "items": items,
        "shippingAddress": {"street": "1 Load Street", "city": "Benchville", "zipCode": "1234 AB",
                            "country": "NL"},
        "paymentMethod": "card",
    })
}

/// A held answer must have left `pending`; anything but `confirmed` is a failure worth seeing.
fn settled(order: &Value, status: u16) -> Result<String, Failure> {
    let id = order.get("id").and_then(Value::as_str).unwrap_or_default().to_owned();
    match order.get("status").and_then(Value::as_str) {
        Some("confirmed") => Ok(id),
        Some("pending") => Err(Failure::new(Some(status), "still_pending")),
        Some("rejected") => {
            let reason = order.get("rejectionReason").and_then(Value::as_str).unwrap_or("unknown");
            Err(Failure::new(Some(status), format!("rejected_{reason}")))
        }
        Some(other) => Err(Failure::new(Some(status), format!("status_{other}"))),
        None => Err(Failure::new(Some(status), "not_an_order")),
    }
}

async fn place(context: &Context, worker: &mut Worker, held: bool) -> Result<(), Failure> {
    let body = order_body(lines(context, worker, 3, 1));
    let token = worker.customer.token(&context.api).await?;
    let mut request =
        context.api.request(Method::POST, "/api/orders").bearer_auth(token).json(&body);
    if held {
        request = request.header("Prefer", HOLD);
    }
    let order = Answer::of(request).await?.expect(StatusCode::CREATED)?;
    if !held {
        return match order.get("status").and_then(Value::as_str) {
            Some(_) => Ok(()),
            None => Err(Failure::new(Some(201), "not_an_order")),
        };
    }
    let id = settled(&order, 201)?;
    if context.scenario == Scenario::Mixed {
        worker.keep(id);
    }
    Ok(())
}

async fn update_items(context: &Context, worker: &mut Worker) -> Result<(), Failure> {
    let Some(id) = worker.take_order() else {
        return Err(Failure::new(None, "no_order_to_change"));
    };
    let count = 1 + worker.rng.below(3);
    let body = json!({"items": lines(context, worker, count, 3)});
    let token = worker.customer.token(&context.api).await?;
    let request = context
        .api
        .request(Method::PATCH, &format!("/api/orders/{id}"))
        .bearer_auth(token)
        .header("Prefer", HOLD)
        .json(&body);
    let order = Answer::of(request).await?.expect(StatusCode::OK)?;
    // Confirmed again (with the new lines, or with the old ones and a `lastUpdateRejection`):
    // it may be changed or cancelled later. An order still pending is not touched again.
    worker.keep(settled(&order, 200)?);
    Ok(())
}

async fn cancel(context: &Context, worker: &mut Worker) -> Result<(), Failure> {
    let Some(id) = worker.take_order() else {
        return Err(Failure::new(None, "no_order_to_cancel"));
    };
    let token = worker.customer.token(&context.api).await?;
    let request =
        context.api.request(Method::DELETE, &format!("/api/orders/{id}")).bearer_auth(token);
    let order = Answer::of(request).await?.expect(StatusCode::OK)?;
    match order.get("status").and_then(Value::as_str) {
        Some("cancelled") => Ok(()),
        Some(other) => Err(Failure::new(Some(200), format!("status_{other}"))),
        None => Err(Failure::new(Some(200), "not_an_order")),
    }
}

async fn graphql_product(context: &Context, worker: &mut Worker) -> Result<(), Failure> {
    let id = random_product(context, worker);
    let request = context.api.graphql(PRODUCT_QUERY, json!({"id": id}));
    let data = Answer::of(request).await?.graphql_data()?;
    if data.pointer("/product/id").and_then(Value::as_str) != Some(id) {
        return Err(Failure::new(Some(200), "null_product"));
    }
    Ok(())
}

async fn graphql_orders(context: &Context) -> Result<(), Failure> {
    let token = context.fixtures.admin.token(&context.api).await?;
    let request = context.api.graphql(ORDERS_QUERY, json!({})).bearer_auth(token);
    let data = Answer::of(request).await?.graphql_data()?;
    match data.pointer("/orders/edges").and_then(Value::as_array) {
        Some(edges) if !edges.is_empty() => Ok(()),
        _ => Err(Failure::new(Some(200), "empty_page")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mixed_blend_adds_up_to_all_requests() {
        assert_eq!(MIXED_BLEND.iter().map(|(_, share)| share).sum::<u64>(), 100);
    }

    #[test]
    fn distinct_picks_never_repeat_and_stay_in_range() {
        let mut rng = Rng::new(7);
        for _ in 0..1000 {
            let picked = rng.distinct(3, 5);
            assert_eq!(picked.len(), 3);
            assert!(picked.iter().all(|&index| index < 5));
            assert!(picked[0] != picked[1] && picked[1] != picked[2] && picked[0] != picked[2]);
        }
    }

    #[test]
    fn a_held_answer_counts_only_when_confirmed() {
        let order = json!({"id": "o1", "status": "confirmed"});
        assert_eq!(settled(&order, 201), Ok("o1".to_owned()));
        let order = json!({"id": "o1", "status": "pending"});
        assert_eq!(settled(&order, 201), Err(Failure::new(Some(201), "still_pending")));
        let order =
            json!({"id": "o1", "status": "rejected", "rejectionReason": "insufficient_stock"});
        assert_eq!(
            settled(&order, 201),
            Err(Failure::new(Some(201), "rejected_insufficient_stock"))
        );
    }

    #[test]
    fn rate_limit_hints_name_the_setting_to_raise() {
        assert!(Operation::Login.rate_limit_hint().contains("PER_ADDRESS_PER_MINUTE"));
        assert!(Operation::GraphqlOrders.rate_limit_hint().contains("MERCATO_GATEWAY__RATE_LIMIT"));
        assert!(Operation::GraphqlProduct.rate_limit_hint().contains("0 turns"));
    }
}
