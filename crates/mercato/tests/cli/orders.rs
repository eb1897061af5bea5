//! The order saga through the real binary: `mercato up` runs the users, products and orders
//! services with the embedded event log, and every test talks to it over HTTP only (placement,
//! confirmation and pricing, rejection, cancellation, item changes, idempotent retries, the
//! deletion of a customer, and overselling under concurrency).
//!
//! The helpers here ([`Shop`], [`Customer`], the order-list and stock-ledger functions) are
//! shared with the drills in `order_drills.rs`.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use mercato_testkit::client::Client;
use mercato_testkit::http::{json_body, parts, problem, text};
use mercato_testkit::wait_until;
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};
use tokio::process::Command;
use tokio::task::JoinSet;

use crate::process::{Mercato, up};

pub const ADMIN_EMAIL: &str = "boss@example.com";
pub const ADMIN_PASSWORD: &str = "a long admin secret";
/// How long a condition that the saga brings about may take, at most.
pub const SETTLE: Duration = Duration::from_secs(60);
/// A customer's password (the contract asks for at least 8 characters; these have more).
const PASSWORD: &str = "correct horse battery";

/// `mercato up` on `data`, with a configured admin account.
pub fn up_with_admin(data: &Path) -> Command {
    let mut command = up(data);
    command.env("MERCATO_ADMIN_EMAIL", ADMIN_EMAIL).env("MERCATO_ADMIN_PASSWORD", ADMIN_PASSWORD);
    command
}

/// A signed-in customer.
#[derive(Debug, Clone)]
pub struct Customer {
    pub id: String,
    pub token: String,
}

/// A running `mercato up`, a client for it and an admin token.
pub struct Shop {
    pub mercato: Mercato,
    pub api: Client,
    pub admin: String,
}

impl Shop {
    pub async fn start(data: &Path) -> Self {
        Self::attach(Mercato::start(up_with_admin(data)).await).await
    }

    /// Signs the admin in on an already started process.
    pub async fn attach(mercato: Mercato) -> Self {
        let api = Client::new(mercato.base_url.clone());
        let admin = sign_in(&api, ADMIN_EMAIL, ADMIN_PASSWORD).await;
        Self { mercato, api, admin }
    }

    /// Registers `name@example.com` and signs them in.
    pub async fn customer(&self, name: &str) -> Customer {
        let email = format!("{name}@example.com");
        let body = json!({"name": name, "email": email, "password": PASSWORD});
        let created =
            json_body(self.api.post_json("/api/users", &body, None).await, StatusCode::CREATED)
                .await;
        let token = sign_in(&self.api, &email, PASSWORD).await;
        Customer { id: text(&created["id"]), token }
    }

    /// Creates a product (as the admin) and returns its id.
    pub async fn product(&self, name: &str, price: &str, stock: i64) -> String {
        let body = json!({"name": name, "price": price, "stock": stock});
        let created = json_body(
            self.api.post_json("/api/products", &body, Some(&self.admin)).await,
            StatusCode::CREATED,
        )
        .await;
        assert_eq!(created["stock"], stock, "{created}");
        text(&created["id"])
    }

    pub async fn stock(&self, product: &str) -> i64 {
        stock_of(&self.api, product).await
    }

    /// `POST /api/products/:id/inventory {delta}` as the admin.
    pub async fn adjust(&self, product: &str, delta: i64) -> Response {
        adjust(&self.api, &self.admin, product, delta).await
    }

    /// `POST /api/orders` with these lines and extra headers.
    pub async fn place(
        &self,
        token: &str,
        lines: &[(&str, i64)],
        headers: &[(&str, &str)],
    ) -> Response {
        place(&self.api, token, lines, headers).await
    }

    /// Places and holds the answer until the order has settled; returns the `201`'s body.
    pub async fn place_settled(&self, token: &str, lines: &[(&str, i64)]) -> Value {
        let response = self.place(token, lines, &[("Prefer", "wait=10")]).await;
        let order = json_body(response, StatusCode::CREATED).await;
        assert_ne!(order["status"], "pending", "a held placement answers settled: {order}");
        order
    }

    pub async fn order(&self, token: &str, id: &str) -> Value {
        json_body(self.api.get(&format!("/api/orders/{id}"), Some(token)).await, StatusCode::OK)
            .await
    }

    /// `DELETE /api/orders/:id` with extra headers.
    pub async fn cancel(&self, token: &str, id: &str, headers: &[(&str, &str)]) -> Response {
        self.api
            .send_with(Method::DELETE, &format!("/api/orders/{id}"), None, Some(token), headers)
            .await
    }

    /// `PATCH /api/orders/:id {items}`, held until the order has settled again.
    pub async fn change_settled(&self, token: &str, id: &str, lines: &[(&str, i64)]) -> Value {
        let response = self
            .api
            .send_with(
                Method::PATCH,
                &format!("/api/orders/{id}"),
                Some(&json!({"items": items(lines)})),
                Some(token),
                &[("Prefer", "wait=10")],
            )
            .await;
        let order = json_body(response, StatusCode::OK).await;
        assert_eq!(order["status"], "confirmed", "{order}");
        order
    }

    /// Every order of every customer (as the admin, following `nextCursor`).
    pub async fn all_orders(&self) -> Vec<Value> {
        all_orders(&self.api, &self.admin, "").await
    }
}

/// Signs in and returns the access token.
pub async fn sign_in(api: &Client, email: &str, password: &str) -> String {
    let body = json!({"email": email, "password": password});
    let session =
        json_body(api.post_json("/api/auth/login", &body, None).await, StatusCode::OK).await;
    text(&session["token"])
}

pub fn items(lines: &[(&str, i64)]) -> Value {
    Value::Array(
        lines
            .iter()
            .map(|(product, quantity)| json!({"productId": product, "quantity": quantity}))
            .collect(),
    )
}

pub async fn place(
    api: &Client,
    token: &str,
    lines: &[(&str, i64)],
    headers: &[(&str, &str)],
) -> Response {
    let body = json!({"items": items(lines)});
    api.send_with(Method::POST, "/api/orders", Some(&body), Some(token), headers).await
}

pub async fn stock_of(api: &Client, product: &str) -> i64 {
    let product =
        json_body(api.get(&format!("/api/products/{product}"), None).await, StatusCode::OK).await;
    product["stock"].as_i64().unwrap_or_else(|| panic!("a numeric stock: {product}"))
}

pub async fn adjust(api: &Client, admin: &str, product: &str, delta: i64) -> Response {
    api.post_json(
        &format!("/api/products/{product}/inventory"),
        &json!({"delta": delta}),
        Some(admin),
    )
    .await
}

/// Every order `GET /api/orders?limit=100{query}` shows to `token`, following `nextCursor`.
pub async fn all_orders(api: &Client, token: &str, query: &str) -> Vec<Value> {
    let mut orders = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(cursor) => format!("/api/orders?limit=100{query}&cursor={cursor}"),
            None => format!("/api/orders?limit=100{query}"),
        };
        let page = json_body(api.get(&path, Some(token)).await, StatusCode::OK).await;
        let rows = page["items"].as_array().unwrap_or_else(|| panic!("a page: {page}"));
        assert!(rows.len() <= 100, "a page holds at most `limit` orders");
        orders.extend(rows.iter().cloned());
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return orders,
        }
    }
}

/// Waits until no order is `pending`, and returns every order.
pub async fn settled_orders(api: &Client, admin: &str) -> Vec<Value> {
    wait_until("no order is pending", SETTLE, || async {
        let pending = json_body(
            api.get("/api/orders?status=pending&limit=100", Some(admin)).await,
            StatusCode::OK,
        )
        .await;
        let none = pending["items"].as_array().is_some_and(Vec::is_empty);
        none.then_some(())
    })
    .await;
    let orders = all_orders(api, admin, "").await;
    let pending: Vec<&Value> = orders.iter().filter(|order| order["status"] == "pending").collect();
    assert!(pending.is_empty(), "orders left pending: {pending:?}");
    orders
}

/// Units that confirmed, shipped and delivered orders hold, per product.
pub fn held_units(orders: &[Value]) -> HashMap<String, i64> {
    let mut held = HashMap::new();
    for order in orders {
        let status = order["status"].as_str().unwrap_or_default();
        if !matches!(status, "confirmed" | "shipped" | "delivered") {
            continue;
        }
        for line in order["items"].as_array().unwrap_or_else(|| panic!("items: {order}")) {
            let quantity = line["quantity"].as_i64().unwrap_or_else(|| panic!("{order}"));
            *held.entry(text(&line["productId"])).or_insert(0) += quantity;
        }
    }
    held
}

/// One product's side of promise 3: `initial + adjustments = stock + held`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ledger {
    pub product: String,
    pub initial_plus_adjustments: i64,
    pub stock: i64,
    pub held: i64,
}

impl Ledger {
    pub fn balanced(&self) -> bool {
        self.initial_plus_adjustments == self.stock + self.held
    }
}

/// Waits until no order is pending, then (bounded) until every product's books balance, since a
/// cancelled order's stock comes back asynchronously; asserts that they do, exactly, and
/// returns the settled orders. `expected` maps each product to its initial stock plus the
/// adjustments that succeeded.
pub async fn assert_stock_conserved(
    api: &Client,
    admin: &str,
    expected: &BTreeMap<String, i64>,
) -> Vec<Value> {
    let deadline = Instant::now() + SETTLE;
    let (orders, ledgers) = wait_until("the books can be read", SETTLE * 2, || async {
        let orders = settled_orders(api, admin).await;
        let held = held_units(&orders);
        let mut ledgers = Vec::new();
        for (product, total) in expected {
            ledgers.push(Ledger {
                product: product.clone(),
                initial_plus_adjustments: *total,
                stock: stock_of(api, product).await,
                held: held.get(product).copied().unwrap_or(0),
            });
        }
        let done = ledgers.iter().all(Ledger::balanced) || Instant::now() > deadline;
        done.then_some((orders, ledgers))
    })
    .await;
    for ledger in &ledgers {
        assert!(ledger.stock >= 0, "{ledger:?}");
        assert_eq!(
            ledger.initial_plus_adjustments,
            ledger.stock + ledger.held,
            "initial + adjustments = stock + held must hold: {ledgers:?}"
        );
    }
    orders
}

fn quantities(order: &Value) -> Vec<(String, i64)> {
    let mut lines: Vec<(String, i64)> = order["items"]
        .as_array()
        .unwrap_or_else(|| panic!("items: {order}"))
        .iter()
        .map(|line| (text(&line["productId"]), line["quantity"].as_i64().unwrap_or(-1)))
        .collect();
    lines.sort();
    lines
}

fn expect_lines(order: &Value, lines: &[(&str, i64)]) {
    let mut expected: Vec<(String, i64)> =
        lines.iter().map(|(product, quantity)| ((*product).to_owned(), *quantity)).collect();
    expected.sort();
    assert_eq!(quantities(order), expected, "{order}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_are_confirmed_with_the_right_total_and_take_exactly_their_stock() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let shop = Shop::start(dir.path()).await;
    let ada = shop.customer("ada").await;
    let mug = shop.product("Mug", "4.50", 10).await;
    let lamp = shop.product("Lamp", "10.00", 3).await;

    let response = shop.place(&ada.token, &[(&mug, 2), (&lamp, 1)], &[("Prefer", "wait=10")]).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(
        response.headers().get("preference-applied").and_then(|v| v.to_str().ok()),
        Some("wait=10")
    );
    let location =
        response.headers().get("location").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let order = json_body(response, StatusCode::CREATED).await;
    let id = text(&order["id"]);
    assert_eq!(location, Some(format!("/api/orders/{id}")));
    assert_eq!(order["status"], "confirmed", "{order}");
    assert_eq!(order["total"], "19.00", "{order}");
    assert_eq!(order["userId"], ada.id.as_str());
    assert_eq!(order["rejectionReason"], Value::Null);
    assert_eq!(order["lastUpdateRejection"], Value::Null);
    let lines = order["items"].as_array().expect("items");
    assert_eq!(lines.len(), 2, "{order}");
    let mug_line = lines.iter().find(|line| line["productId"] == mug.as_str()).expect("the mug");
    assert_eq!(mug_line["quantity"], 2);
    assert_eq!(mug_line["unitPrice"], "4.50");
    assert_eq!(mug_line["name"], "Mug");
    let lamp_line = lines.iter().find(|line| line["productId"] == lamp.as_str()).expect("the lamp");
    assert_eq!(lamp_line["quantity"], 1);
    assert_eq!(lamp_line["unitPrice"], "10.00");
    assert_eq!(lamp_line["name"], "Lamp");

    assert_eq!(shop.stock(&mug).await, 8);
    assert_eq!(shop.stock(&lamp).await, 2);
    assert_eq!(shop.order(&ada.token, &id).await, order, "GET shows what the held answer showed");
    let mine = all_orders(&shop.api, &ada.token, "").await;
    assert_eq!(mine, vec![order.clone()]);
    let confirmed = all_orders(&shop.api, &ada.token, "&status=confirmed").await;
    assert_eq!(confirmed.len(), 1);

    // Another customer does not see it, and sees no orders at all.
    let bo = shop.customer("bo").await;
    problem(
        shop.api.get(&format!("/api/orders/{id}"), Some(&bo.token)).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    assert!(all_orders(&shop.api, &bo.token, "").await.is_empty());

    // Without `Prefer`, the answer is `pending` and unpriced; the saga then confirms it.
    let quick =
        json_body(shop.place(&bo.token, &[(&mug, 3)], &[]).await, StatusCode::CREATED).await;
    assert_eq!(quick["status"], "pending", "{quick}");
    assert_eq!(quick["total"], Value::Null);
    assert_eq!(quick["items"][0]["unitPrice"], Value::Null);
    let quick_id = text(&quick["id"]);
    let settled = wait_until("bo's order is confirmed", SETTLE, || async {
        let order = shop.order(&bo.token, &quick_id).await;
        (order["status"] != "pending").then_some(order)
    })
    .await;
    assert_eq!(settled["status"], "confirmed", "{settled}");
    assert_eq!(settled["total"], "13.50");
    assert_eq!(shop.stock(&mug).await, 5);
    assert_eq!(shop.stock(&lamp).await, 2);
    assert!(shop.mercato.terminate().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_beyond_the_stock_are_rejected_and_take_nothing() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let shop = Shop::start(dir.path()).await;
    let ada = shop.customer("ada").await;
    let mug = shop.product("Mug", "4.50", 2).await;
    let lamp = shop.product("Lamp", "10.00", 5).await;

    let order = shop.place_settled(&ada.token, &[(&mug, 3)]).await;
    assert_eq!(order["status"], "rejected", "{order}");
    assert_eq!(order["rejectionReason"], "insufficient_stock", "{order}");
    assert_eq!(order["total"], Value::Null, "a rejected order stays unpriced");
    assert_eq!(shop.stock(&mug).await, 2);

    // All or nothing: the lamp line could be served, but the mug line cannot.
    let order = shop.place_settled(&ada.token, &[(&lamp, 4), (&mug, 3)]).await;
    assert_eq!(order["status"], "rejected", "{order}");
    assert_eq!(order["rejectionReason"], "insufficient_stock", "{order}");
    assert_eq!(shop.stock(&mug).await, 2);
    assert_eq!(shop.stock(&lamp).await, 5, "no line of a rejected order keeps stock");

    // A rejected order cannot be cancelled.
    let id = text(&order["id"]);
    problem(shop.cancel(&ada.token, &id, &[]).await, StatusCode::CONFLICT, "invalid_state").await;

    // Stock cannot be adjusted below zero either; an adjustment up makes room.
    problem(shop.adjust(&mug, -3).await, StatusCode::CONFLICT, "insufficient_stock").await;
    assert_eq!(shop.stock(&mug).await, 2);
    let adjusted = json_body(shop.adjust(&mug, 1).await, StatusCode::OK).await;
    assert_eq!(adjusted["stock"], 3);
    let order = shop.place_settled(&ada.token, &[(&mug, 3)]).await;
    assert_eq!(order["status"], "confirmed", "{order}");
    assert_eq!(shop.stock(&mug).await, 0);
    let order = json_body(
        shop.cancel(&ada.token, &text(&order["id"]), &[("Prefer", "wait=10")]).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(order["status"], "cancelled");
    assert_eq!(shop.stock(&mug).await, 3);

    // Exactly what is left can still be ordered.
    let order = shop.place_settled(&ada.token, &[(&lamp, 5), (&mug, 3)]).await;
    assert_eq!(order["status"], "confirmed", "{order}");
    assert_eq!(order["total"], "63.50");
    assert_eq!(shop.stock(&mug).await, 0);
    assert_eq!(shop.stock(&lamp).await, 0);
    let statuses: Vec<Value> =
        shop.all_orders().await.iter().map(|order| order["status"].clone()).collect();
    assert_eq!(
        statuses,
        vec![json!("confirmed"), json!("cancelled"), json!("rejected"), json!("rejected")]
    );
    assert!(shop.mercato.terminate().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_confirmed_order_gives_its_stock_back() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let shop = Shop::start(dir.path()).await;
    let ada = shop.customer("ada").await;
    let mug = shop.product("Mug", "4.50", 10).await;
    let lamp = shop.product("Lamp", "10.00", 4).await;

    let order = shop.place_settled(&ada.token, &[(&mug, 3), (&lamp, 4)]).await;
    assert_eq!(order["status"], "confirmed", "{order}");
    assert_eq!(shop.stock(&mug).await, 7);
    assert_eq!(shop.stock(&lamp).await, 0);
    let id = text(&order["id"]);

    let response = shop.cancel(&ada.token, &id, &[("Prefer", "wait=10")]).await;
    assert_eq!(
        response.headers().get("preference-applied").and_then(|v| v.to_str().ok()),
        Some("wait=10")
    );
    let cancelled = json_body(response, StatusCode::OK).await;
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    assert_eq!(shop.stock(&mug).await, 10, "the held cancel answers once the stock is back");
    assert_eq!(shop.stock(&lamp).await, 4);

    // Cancelling again changes nothing.
    let again =
        json_body(shop.cancel(&ada.token, &id, &[("Prefer", "wait=10")]).await, StatusCode::OK)
            .await;
    assert_eq!(again["status"], "cancelled");
    assert_eq!(again["version"], cancelled["version"], "{again}");
    assert_eq!(shop.stock(&mug).await, 10);
    assert_eq!(shop.stock(&lamp).await, 4);

    // The stock it gave back can be ordered again, and `POST .../cancel` is the same cancel.
    let order = shop.place_settled(&ada.token, &[(&lamp, 4)]).await;
    assert_eq!(order["status"], "confirmed", "{order}");
    assert_eq!(shop.stock(&lamp).await, 0);
    let cancelled = json_body(
        shop.api
            .send_with(
                Method::POST,
                &format!("/api/orders/{}/cancel", text(&order["id"])),
                None,
                Some(&ada.token),
                &[("Prefer", "wait=10")],
            )
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(shop.stock(&lamp).await, 4);

    // Shipped orders cannot be cancelled, and keep their stock.
    let order = shop.place_settled(&ada.token, &[(&mug, 1)]).await;
    let id = text(&order["id"]);
    let shipped = json_body(
        shop.api
            .patch_json(
                &format!("/api/orders/{id}"),
                &json!({"status": "shipped"}),
                Some(&shop.admin),
            )
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(shipped["status"], "shipped");
    problem(shop.cancel(&ada.token, &id, &[]).await, StatusCode::CONFLICT, "invalid_state").await;
    assert_eq!(shop.stock(&mug).await, 9);
    assert!(shop.mercato.terminate().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_orders_still_being_reserved_gives_back_exactly_what_they_took() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let shop = Shop::start(dir.path()).await;
    let ada = shop.customer("ada").await;
    let mug = shop.product("Mug", "4.50", 30).await;
    let lamp = shop.product("Lamp", "10.00", 12).await;

    // Cancels sent right after the placement: some overtake the reservation, some follow it.
    // Either way a held cancel answers once nothing is held any more.
    for round in 0..8 {
        let placed = json_body(
            shop.place(&ada.token, &[(&mug, 2), (&lamp, 1)], &[]).await,
            StatusCode::CREATED,
        )
        .await;
        let cancelled = json_body(
            shop.cancel(&ada.token, &text(&placed["id"]), &[("Prefer", "wait=10")]).await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(cancelled["status"], "cancelled", "round {round}: {cancelled}");
        assert_eq!(shop.stock(&mug).await, 30, "round {round}");
        assert_eq!(shop.stock(&lamp).await, 12, "round {round}");
    }

    // Cancels sent while an item change is being re-reserved.
    for round in 0..6 {
        let order = shop.place_settled(&ada.token, &[(&mug, 3)]).await;
        assert_eq!(order["status"], "confirmed", "{order}");
        let id = text(&order["id"]);
        let change = json!({"items": items(&[(&mug, 1), (&lamp, 4)])});
        let changed =
            shop.api.patch_json(&format!("/api/orders/{id}"), &change, Some(&ada.token)).await;
        assert_eq!(json_body(changed, StatusCode::OK).await["status"], "pending");
        let cancelled =
            json_body(shop.cancel(&ada.token, &id, &[("Prefer", "wait=10")]).await, StatusCode::OK)
                .await;
        assert_eq!(cancelled["status"], "cancelled", "round {round}: {cancelled}");
        assert_eq!(shop.stock(&mug).await, 30, "round {round}");
        assert_eq!(shop.stock(&lamp).await, 12, "round {round}");
    }

    let mut expected = BTreeMap::new();
    expected.insert(mug.clone(), 30);
    expected.insert(lamp.clone(), 12);
    let orders = assert_stock_conserved(&shop.api, &shop.admin, &expected).await;
    assert_eq!(orders.len(), 14);
    assert!(orders.iter().all(|order| order["status"] == "cancelled"), "{orders:?}");
    // A later order still sees every unit.
    let order = shop.place_settled(&ada.token, &[(&mug, 30), (&lamp, 12)]).await;
    assert_eq!(order["status"], "confirmed", "{order}");
    assert_eq!(shop.stock(&mug).await, 0);
    assert_eq!(shop.stock(&lamp).await, 0);
    assert!(shop.mercato.terminate().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_an_orders_items_moves_its_stock_all_or_nothing() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let shop = Shop::start(dir.path()).await;
    let ada = shop.customer("ada").await;
    let mug = shop.product("Mug", "3.00", 10).await;
    let lamp = shop.product("Lamp", "10.00", 5).await;

    let order = shop.place_settled(&ada.token, &[(&mug, 2)]).await;
    assert_eq!(order["status"], "confirmed", "{order}");
    assert_eq!(shop.stock(&mug).await, 8);
    let id = text(&order["id"]);

    // Up.
    let changed = shop.change_settled(&ada.token, &id, &[(&mug, 5)]).await;
    expect_lines(&changed, &[(&mug, 5)]);
    assert_eq!(changed["total"], "15.00", "{changed}");
    assert_eq!(changed["lastUpdateRejection"], Value::Null, "{changed}");
    assert_eq!(shop.stock(&mug).await, 5);

    // Down.
    let changed = shop.change_settled(&ada.token, &id, &[(&mug, 1)]).await;
    expect_lines(&changed, &[(&mug, 1)]);
    assert_eq!(changed["total"], "3.00");
    assert_eq!(changed["lastUpdateRejection"], Value::Null, "{changed}");
    assert_eq!(shop.stock(&mug).await, 9);

    // Another product added.
    let changed = shop.change_settled(&ada.token, &id, &[(&mug, 1), (&lamp, 2)]).await;
    expect_lines(&changed, &[(&mug, 1), (&lamp, 2)]);
    assert_eq!(changed["total"], "23.00");
    assert_eq!(shop.stock(&mug).await, 9);
    assert_eq!(shop.stock(&lamp).await, 3);

    // Beyond the stock: everything stays as it was, with the reason.
    let version = changed["version"].as_i64().expect("a version");
    let refused = shop.change_settled(&ada.token, &id, &[(&mug, 1), (&lamp, 50)]).await;
    expect_lines(&refused, &[(&mug, 1), (&lamp, 2)]);
    assert_eq!(refused["total"], "23.00", "{refused}");
    assert_eq!(refused["lastUpdateRejection"]["reason"], "insufficient_stock", "{refused}");
    assert_eq!(refused["lastUpdateRejection"]["productId"], lamp.as_str(), "{refused}");
    assert!(refused["lastUpdateRejection"]["at"].is_string(), "{refused}");
    assert!(refused["version"].as_i64().expect("a version") > version);
    assert_eq!(shop.stock(&mug).await, 9);
    assert_eq!(shop.stock(&lamp).await, 3);
    assert_eq!(shop.order(&ada.token, &id).await, refused);

    // A change that is beyond the stock in one line is refused even if the other line would fit,
    // and nothing moves.
    let refused = shop.change_settled(&ada.token, &id, &[(&mug, 9), (&lamp, 6)]).await;
    expect_lines(&refused, &[(&mug, 1), (&lamp, 2)]);
    assert_eq!(refused["lastUpdateRejection"]["reason"], "insufficient_stock", "{refused}");
    assert_eq!(shop.stock(&mug).await, 9);
    assert_eq!(shop.stock(&lamp).await, 3);

    // Exactly everything: what the order holds plus what is left.
    let changed = shop.change_settled(&ada.token, &id, &[(&mug, 10), (&lamp, 5)]).await;
    expect_lines(&changed, &[(&mug, 10), (&lamp, 5)]);
    assert_eq!(changed["total"], "80.00");
    assert_eq!(shop.stock(&mug).await, 0);
    assert_eq!(shop.stock(&lamp).await, 0);

    // Cancelling the changed order gives back what it holds now.
    let cancelled =
        json_body(shop.cancel(&ada.token, &id, &[("Prefer", "wait=10")]).await, StatusCode::OK)
            .await;
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(shop.stock(&mug).await, 10);
    assert_eq!(shop.stock(&lamp).await, 5);
    assert!(shop.mercato.terminate().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_placed_twice_with_one_idempotency_key_are_placed_once() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let shop = Shop::start(dir.path()).await;
    let ada = shop.customer("ada").await;
    let mug = shop.product("Mug", "4.50", 10).await;

    let key = [("Idempotency-Key", "checkout-7f3a")];
    let first = shop.place(&ada.token, &[(&mug, 3)], &key).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first = json_body(first, StatusCode::CREATED).await;
    let id = text(&first["id"]);

    let second = shop.place(&ada.token, &[(&mug, 3)], &key).await;
    let (status, headers, body) = parts(second).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(headers.get("idempotent-replayed").and_then(|v| v.to_str().ok()), Some("true"));
    assert_eq!(
        headers.get("location").and_then(|v| v.to_str().ok()),
        Some(format!("/api/orders/{id}").as_str())
    );
    let second: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(second, first, "the first response, again");

    // The same key with another body is refused and places nothing.
    problem(
        shop.place(&ada.token, &[(&mug, 4)], &key).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency_key_reused",
    )
    .await;
    // Keys belong to one user: another customer's same key is their own first request.
    let bo = shop.customer("bo").await;
    let theirs =
        json_body(shop.place(&bo.token, &[(&mug, 1)], &key).await, StatusCode::CREATED).await;
    assert_ne!(theirs["id"], first["id"]);

    let orders = settled_orders(&shop.api, &shop.admin).await;
    let mine = all_orders(&shop.api, &ada.token, "").await;
    assert_eq!(mine.len(), 1, "{mine:?}");
    assert_eq!(mine[0]["id"], id.as_str());
    assert_eq!(mine[0]["status"], "confirmed");
    assert_eq!(orders.len(), 2);
    assert_eq!(shop.stock(&mug).await, 6, "3 for ada, once, and 1 for bo");

    // Retries racing each other: one placement, every other answer a replay of it.
    let mut racing = JoinSet::new();
    for _ in 0..6 {
        let api = shop.api.clone();
        let token = ada.token.clone();
        let mug = mug.clone();
        racing.spawn(async move {
            let response =
                place(&api, &token, &[(&mug, 1)], &[("Idempotency-Key", "race-1")]).await;
            let replayed = response.headers().get("idempotent-replayed").is_some();
            let order = json_body(response, StatusCode::CREATED).await;
            (text(&order["id"]), replayed)
        });
    }
    let answers = racing.join_all().await;
    let ids: std::collections::BTreeSet<&String> = answers.iter().map(|(id, _)| id).collect();
    assert_eq!(ids.len(), 1, "every retry answers with one order: {answers:?}");
    assert_eq!(answers.iter().filter(|(_, replayed)| !replayed).count(), 1, "{answers:?}");
    settled_orders(&shop.api, &shop.admin).await;
    assert_eq!(all_orders(&shop.api, &ada.token, "").await.len(), 2);
    assert_eq!(shop.stock(&mug).await, 5);

    // A held first answer is what a retry gets again: the settled order, not a pending one.
    let held = [("Idempotency-Key", "held-1"), ("Prefer", "wait=10")];
    let first =
        json_body(shop.place(&ada.token, &[(&mug, 2)], &held).await, StatusCode::CREATED).await;
    assert_eq!(first["status"], "confirmed", "{first}");
    let retry = shop.place(&ada.token, &[(&mug, 2)], &held).await;
    assert_eq!(
        retry.headers().get("idempotent-replayed").and_then(|v| v.to_str().ok()),
        Some("true")
    );
    assert_eq!(json_body(retry, StatusCode::CREATED).await, first);
    assert_eq!(all_orders(&shop.api, &ada.token, "").await.len(), 3);
    assert_eq!(shop.stock(&mug).await, 3);

    // A retried cancel: one cancellation, the second answer replayed.
    let cancel_key = [("Idempotency-Key", "cancel-1"), ("Prefer", "wait=10")];
    let cancelled =
        json_body(shop.cancel(&ada.token, &id, &cancel_key).await, StatusCode::OK).await;
    assert_eq!(cancelled["status"], "cancelled");
    let again = shop.cancel(&ada.token, &id, &cancel_key).await;
    assert_eq!(
        again.headers().get("idempotent-replayed").and_then(|v| v.to_str().ok()),
        Some("true")
    );
    let again = json_body(again, StatusCode::OK).await;
    assert_eq!(again["id"], cancelled["id"]);
    assert_eq!(again["status"], "cancelled");
    assert_eq!(again["version"], cancelled["version"]);
    assert_eq!(shop.stock(&mug).await, 6);
    assert!(shop.mercato.terminate().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_customer_cancels_their_open_orders_and_refuses_their_token() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let shop = Shop::start(dir.path()).await;
    let ada = shop.customer("ada").await;
    let bo = shop.customer("bo").await;
    let mug = shop.product("Mug", "4.50", 10).await;
    let lamp = shop.product("Lamp", "10.00", 5).await;

    let first = shop.place_settled(&ada.token, &[(&mug, 3)]).await;
    let second = shop.place_settled(&ada.token, &[(&mug, 1), (&lamp, 2)]).await;
    let rejected = shop.place_settled(&ada.token, &[(&lamp, 9)]).await;
    let shipped = shop.place_settled(&ada.token, &[(&lamp, 1)]).await;
    let others = shop.place_settled(&bo.token, &[(&mug, 2)]).await;
    for order in [&first, &second, &shipped, &others] {
        assert_eq!(order["status"], "confirmed", "{order}");
    }
    assert_eq!(rejected["status"], "rejected");
    let shipped_id = text(&shipped["id"]);
    let ship = shop
        .api
        .patch_json(
            &format!("/api/orders/{shipped_id}"),
            &json!({"status": "shipped"}),
            Some(&shop.admin),
        )
        .await;
    assert_eq!(json_body(ship, StatusCode::OK).await["status"], "shipped");
    assert_eq!(shop.stock(&mug).await, 4);
    assert_eq!(shop.stock(&lamp).await, 2);
    // Orders still being reserved when the account goes: a placement and an item change.
    let in_flight =
        json_body(shop.place(&ada.token, &[(&mug, 2), (&lamp, 1)], &[]).await, StatusCode::CREATED)
            .await;
    let second_id = text(&second["id"]);
    let change = json!({"items": items(&[(&mug, 2), (&lamp, 2)])});
    let changed =
        shop.api.patch_json(&format!("/api/orders/{second_id}"), &change, Some(&ada.token)).await;
    assert_eq!(json_body(changed, StatusCode::OK).await["status"], "pending");

    let deleted = shop.api.delete(&format!("/api/users/{}", ada.id), Some(&shop.admin)).await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);

    let open = [text(&first["id"]), second_id, text(&in_flight["id"])];
    wait_until("ada's open orders are cancelled", SETTLE, || async {
        let mut cancelled = true;
        for id in &open {
            cancelled &= shop.order(&shop.admin, id).await["status"] == "cancelled";
        }
        cancelled.then_some(())
    })
    .await;
    wait_until("their stock is back", SETTLE, || async {
        (shop.stock(&mug).await == 8 && shop.stock(&lamp).await == 4).then_some(())
    })
    .await;
    assert_eq!(shop.order(&shop.admin, &text(&rejected["id"])).await["status"], "rejected");
    assert_eq!(
        shop.order(&shop.admin, &shipped_id).await["status"],
        "shipped",
        "shipped is not open"
    );
    assert_eq!(shop.order(&shop.admin, &text(&others["id"])).await["status"], "confirmed");
    assert_eq!(shop.stock(&mug).await, 8, "bo's 2 mugs stay taken");
    assert_eq!(shop.stock(&lamp).await, 4, "the shipped lamp stays taken");

    // Their still-unexpired token is refused everywhere.
    problem(
        shop.api.get("/api/orders", Some(&ada.token)).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
    let refused = shop.place(&ada.token, &[(&mug, 1)], &[]).await;
    problem(refused, StatusCode::UNAUTHORIZED, "invalid_token").await;
    problem(
        shop.api.get("/api/users/me", Some(&ada.token)).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
    assert_eq!(shop.stock(&mug).await, 8, "the refused placement took nothing");
    // Bo is unaffected.
    assert_eq!(all_orders(&shop.api, &bo.token, "").await.len(), 1);
    assert_eq!(all_orders(&shop.api, &shop.admin, &format!("&userId={}", ada.id)).await.len(), 5);
    let mut expected = BTreeMap::new();
    expected.insert(mug.clone(), 10);
    expected.insert(lamp.clone(), 5);
    assert_stock_conserved(&shop.api, &shop.admin, &expected).await;

    // Nobody places for the deleted account, not even an admin.
    let for_ada = json!({"items": items(&[(&mug, 1)]), "userId": ada.id});
    let refused = shop.api.post_json("/api/orders", &for_ada, Some(&shop.admin)).await;
    assert_eq!(mercato_testkit::http::invalid_fields(refused).await, vec!["userId".to_owned()]);

    // A customer may delete their own account, with the same effect.
    let gone = shop.api.delete(&format!("/api/users/{}", bo.id), Some(&bo.token)).await;
    assert_eq!(gone.status(), StatusCode::NO_CONTENT);
    let bos = text(&others["id"]);
    wait_until("bo's order is cancelled and its mugs are back", SETTLE, || async {
        let cancelled = shop.order(&shop.admin, &bos).await["status"] == "cancelled";
        (cancelled && shop.stock(&mug).await == 10).then_some(())
    })
    .await;
    problem(
        shop.api.get("/api/orders", Some(&bo.token)).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
    assert_eq!(shop.stock(&lamp).await, 4);
    assert_stock_conserved(&shop.api, &shop.admin, &expected).await;
    assert_eq!(shop.stock(&mug).await, 10);
    assert!(shop.mercato.terminate().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_racing_for_the_last_units_never_oversell() {
    const STOCK: i64 = 20;
    const CUSTOMERS: usize = 6;
    const ORDERS: usize = 60;
    let dir = tempfile::tempdir().expect("a temp dir");
    let shop = Shop::start(dir.path()).await;
    let mug = shop.product("Mug", "4.50", STOCK).await;
    let mut customers = Vec::new();
    for index in 0..CUSTOMERS {
        customers.push(shop.customer(&format!("racer{index}")).await);
    }

    let mut racing = JoinSet::new();
    for index in 0..ORDERS {
        let api = shop.api.clone();
        let customer = customers[index % CUSTOMERS].clone();
        let mug = mug.clone();
        racing.spawn(async move {
            let response =
                place(&api, &customer.token, &[(&mug, 1)], &[("Prefer", "wait=30")]).await;
            (customer, json_body(response, StatusCode::CREATED).await)
        });
    }
    let placed = racing.join_all().await;
    assert_eq!(placed.len(), ORDERS);

    let orders = settled_orders(&shop.api, &shop.admin).await;
    assert_eq!(orders.len(), ORDERS);
    let confirmed: Vec<&Value> = orders.iter().filter(|o| o["status"] == "confirmed").collect();
    let rejected: Vec<&Value> = orders.iter().filter(|o| o["status"] == "rejected").collect();
    assert_eq!(confirmed.len(), 20);
    assert_eq!(rejected.len(), 40);
    for order in &rejected {
        assert_eq!(order["rejectionReason"], "insufficient_stock", "{order}");
    }
    for order in &confirmed {
        assert_eq!(order["total"], "4.50", "{order}");
    }
    assert_eq!(shop.stock(&mug).await, 0);
    // The held answers agree with what the list shows.
    for (_, answer) in &placed {
        let listed = orders.iter().find(|order| order["id"] == answer["id"]).expect("listed");
        if answer["status"] != "pending" {
            assert_eq!(answer["status"], listed["status"], "{answer}");
        }
    }

    // Five cancellations give back exactly five units.
    let owners: HashMap<String, Customer> =
        placed.iter().map(|(customer, order)| (text(&order["id"]), customer.clone())).collect();
    for order in confirmed.iter().take(5) {
        let id = text(&order["id"]);
        let owner = &owners[&id];
        let cancelled = json_body(
            shop.cancel(&owner.token, &id, &[("Prefer", "wait=10")]).await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(cancelled["status"], "cancelled");
    }
    assert_eq!(shop.stock(&mug).await, 5);
    let orders = shop.all_orders().await;
    assert_eq!(orders.iter().filter(|o| o["status"] == "confirmed").count(), 15);
    assert_eq!(orders.iter().filter(|o| o["status"] == "cancelled").count(), 5);
    let mut expected = BTreeMap::new();
    expected.insert(mug.clone(), STOCK);
    assert_stock_conserved(&shop.api, &shop.admin, &expected).await;
    assert!(shop.mercato.terminate().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_through_the_compatibility_routes_follow_the_same_saga() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let shop = Shop::start(dir.path()).await;
    let ada = shop.customer("ada").await;
    let mug = shop.product("Mug", "4.50", 10).await;

    // The original single-item form; client-set status and totals are ignored.
    let body = json!({"productId": mug, "quantity": 2, "totalPrice": 1, "status": "delivered"});
    let response = shop
        .api
        .send_with(
            Method::POST,
            "/api/create",
            Some(&body),
            Some(&ada.token),
            &[("Prefer", "wait=10")],
        )
        .await;
    let order = json_body(response, StatusCode::CREATED).await;
    assert_eq!(order["status"], "confirmed", "{order}");
    assert_eq!(order["total"], "9.00");
    assert_eq!(shop.stock(&mug).await, 8);

    let path = format!("/api/orders/cancel/{}", text(&order["id"]));
    let cancelled = json_body(
        shop.api
            .send_with(Method::POST, &path, None, Some(&ada.token), &[("Prefer", "wait=10")])
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(shop.stock(&mug).await, 10);
    assert!(shop.mercato.terminate().await.success());
}
