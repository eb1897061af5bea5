//! Drills that try to break promise 3 (no overselling, stock conserved) and promise 4 (orders
//! settle) through the real binary: a seeded random walk of placements, item changes,
//! cancellations, shipments and stock adjustments, and a `kill -9` of `mercato up` while orders
//! are in flight, followed by a restart on the same data dir.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use mercato_testkit::client::Client;
use mercato_testkit::http::{parts, text};
use mercato_testkit::wait_until;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::orders::{
    Customer, SETTLE, Shop, adjust, all_orders, assert_stock_conserved, items, up_with_admin,
};
use crate::process::Mercato;

/// SplitMix64: a small, seedable generator, so a failing walk can be replayed from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// Uniform in `low..=high`.
    fn between(&mut self, low: i64, high: i64) -> i64 {
        low + (self.next() % (high - low + 1) as u64) as i64
    }
}

/// One step of the walk, chosen before it runs.
#[derive(Debug, Clone)]
enum Op {
    /// `wait`: sent with `Prefer: wait=10`.
    Place {
        customer: usize,
        lines: Vec<(usize, i64)>,
        wait: bool,
    },
    Change {
        customer: usize,
        order: String,
        lines: Vec<(usize, i64)>,
        wait: bool,
    },
    Cancel {
        customer: usize,
        order: String,
    },
    Adjust {
        product: usize,
        delta: i64,
    },
    Advance {
        order: String,
        to: &'static str,
    },
}

/// What a step's answer was, by kind (a tally for the failure message and the log).
#[derive(Debug, Default)]
struct Tally(BTreeMap<String, usize>);

impl Tally {
    fn add(&mut self, what: String) {
        *self.0.entry(what).or_insert(0) += 1;
    }
}

/// 1 or 2 distinct products, each 1..=4 units, now and then far more than any stock.
fn random_lines(rng: &mut Rng, products: usize) -> Vec<(usize, i64)> {
    let first = rng.below(products);
    let mut lines = vec![(first, rng.between(1, 4))];
    if rng.below(3) == 0 {
        let second = (first + 1 + rng.below(products - 1)) % products;
        lines.push((second, rng.between(1, 4)));
    }
    if rng.below(12) == 0 {
        lines[0].1 = 60;
    }
    lines
}

fn prefer(wait: bool) -> &'static [(&'static str, &'static str)] {
    if wait { &[("Prefer", "wait=10")] } else { &[] }
}

/// Runs one step; returns its outcome (`kind status code`) and, for a placement, the order id,
/// and for an adjustment that was applied, the delta.
async fn run(
    api: &Client,
    admin: &str,
    customers: &[Customer],
    products: &[String],
    op: &Op,
) -> (String, Option<String>, Option<(usize, i64)>) {
    let lines_json = |lines: &[(usize, i64)]| {
        let named: Vec<(&str, i64)> = lines
            .iter()
            .map(|(product, quantity)| (products[*product].as_str(), *quantity))
            .collect();
        items(&named)
    };
    let (kind, response) = match op {
        Op::Place { customer, lines, wait } => {
            let body = json!({"items": lines_json(lines)});
            let token = customers[*customer].token.as_str();
            let headers = prefer(*wait);
            (
                "place",
                api.send_with(Method::POST, "/api/orders", Some(&body), Some(token), headers).await,
            )
        }
        Op::Change { customer, order, lines, wait } => {
            let body = json!({"items": lines_json(lines)});
            let token = customers[*customer].token.as_str();
            let path = format!("/api/orders/{order}");
            let headers = prefer(*wait);
            ("change", api.send_with(Method::PATCH, &path, Some(&body), Some(token), headers).await)
        }
        Op::Cancel { customer, order } => {
            let token = customers[*customer].token.as_str();
            ("cancel", api.delete(&format!("/api/orders/{order}"), Some(token)).await)
        }
        Op::Adjust { product, delta } => {
            ("adjust", adjust(api, admin, &products[*product], *delta).await)
        }
        Op::Advance { order, to } => {
            let body = json!({"status": to});
            ("advance", api.patch_json(&format!("/api/orders/{order}"), &body, Some(admin)).await)
        }
    };
    let (status, _, body) = parts(response).await;
    let json: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let code = json["code"].as_str().unwrap_or("").to_owned();
    let allowed = matches!(
        (kind, status.as_u16(), code.as_str()),
        ("place", 201, _)
            | ("change" | "cancel" | "advance" | "adjust", 200, _)
            | ("change", 409, "invalid_state" | "update_in_progress")
            | ("cancel" | "advance", 409, "invalid_state")
            | ("adjust", 409, "insufficient_stock")
    );
    assert!(allowed, "{op:?} was answered {status}: {body}");
    let placed = (kind == "place").then(|| text(&json["id"]));
    match op {
        Op::Place { wait: false, .. } => assert_eq!(json["status"], "pending", "{json}"),
        Op::Place { wait: true, .. } => {
            let status = json["status"].as_str();
            assert!(matches!(status, Some("confirmed" | "rejected")), "{op:?}: {json}");
        }
        Op::Change { wait: true, .. } if status == StatusCode::OK => {
            // A cancel in the same batch may have overtaken the change.
            let status = json["status"].as_str();
            assert!(matches!(status, Some("confirmed" | "cancelled")), "{op:?}: {json}");
        }
        _ => {}
    }
    let adjusted = match op {
        Op::Adjust { product, delta } if status == StatusCode::OK => Some((*product, *delta)),
        _ => None,
    };
    (format!("{kind} {} {code}", status.as_u16()), placed, adjusted)
}

/// A number from the environment (decimal, or hex with `0x`), else `default`.
fn env_or<T: TryFrom<u64>>(name: &str, default: T) -> T {
    let Ok(raw) = std::env::var(name) else { return default };
    let parsed = match raw.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => raw.parse(),
    };
    parsed
        .ok()
        .and_then(|value| T::try_from(value).ok())
        .unwrap_or_else(|| panic!("{name}={raw} is not a number"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seeded_random_walk_of_orders_conserves_stock() {
    // A fixed seed and length; `ORDER_WALK_SEED` / `ORDER_WALK_STEPS` replay or explore others.
    let seed: u64 = env_or("ORDER_WALK_SEED", 0x5eed_2026_0001);
    let steps: usize = env_or("ORDER_WALK_STEPS", 500);
    /// Steps sent at once, so that requests race each other and the saga.
    const BATCH: usize = 4;
    let dir = tempfile::tempdir().expect("a temp dir");
    let shop = Shop::start(dir.path()).await;
    let prices =
        [("Mug", "4.50", 450, 60), ("Lamp", "10.00", 1000, 40), ("Kettle", "32.99", 3299, 25)];
    let mut products = Vec::new();
    let mut expected = BTreeMap::new();
    for (name, price, _, stock) in prices {
        let id = shop.product(name, price, stock).await;
        expected.insert(id.clone(), stock);
        products.push(id);
    }
    let mut customers = Vec::new();
    for name in ["walker0", "walker1", "walker2", "walker3"] {
        customers.push(shop.customer(name).await);
    }

    let mut rng = Rng(seed);
    let mut orders: Vec<(usize, String)> = Vec::new();
    // Orders seen shipped, which the walk may deliver.
    let mut shipped: Vec<String> = Vec::new();
    let mut tally = Tally::default();
    let mut step = 0;
    while step < steps {
        let mut batch = Vec::new();
        for _ in 0..BATCH.min(steps - step) {
            let roll = rng.below(100);
            let known = !orders.is_empty();
            // Changes, cancels and shipments aim at recent orders, which are more often open.
            let recent = |rng: &mut Rng| orders.len() - 1 - rng.below(orders.len().min(30));
            let op = if roll < 35 || !known {
                Op::Place {
                    customer: rng.below(customers.len()),
                    lines: random_lines(&mut rng, products.len()),
                    wait: rng.below(3) == 0,
                }
            } else if roll < 57 {
                let (customer, order) = orders[recent(&mut rng)].clone();
                let lines = random_lines(&mut rng, products.len());
                Op::Change { customer, order, lines, wait: rng.below(3) == 0 }
            } else if roll < 72 {
                let (customer, order) = orders[recent(&mut rng)].clone();
                Op::Cancel { customer, order }
            } else if roll < 88 {
                Op::Adjust { product: rng.below(products.len()), delta: rng.between(-6, 8) }
            } else if !shipped.is_empty() && rng.below(2) == 0 {
                Op::Advance {
                    order: shipped.swap_remove(rng.below(shipped.len())),
                    to: "delivered",
                }
            } else {
                let (_, order) = orders[recent(&mut rng)].clone();
                Op::Advance { order, to: "shipped" }
            };
            batch.push(op);
        }
        step += batch.len();
        let mut running = JoinSet::new();
        for (index, op) in batch.into_iter().enumerate() {
            let api = shop.api.clone();
            let admin = shop.admin.clone();
            let customers = customers.clone();
            let products = products.clone();
            running.spawn(async move {
                let outcome = run(&api, &admin, &customers, &products, &op).await;
                (index, op, outcome)
            });
        }
        let mut done = running.join_all().await;
        done.sort_by_key(|(index, _, _)| *index);
        for (_, op, (outcome, placed, adjusted)) in done {
            tally.add(outcome.clone());
            if let (Op::Place { customer, .. }, Some(id)) = (&op, placed) {
                orders.push((*customer, id));
            }
            if let Op::Advance { order, to: "shipped" } = &op
                && outcome == "advance 200 "
            {
                shipped.push(order.clone());
            }
            if let Some((product, delta)) = adjusted {
                *expected.get_mut(&products[product]).expect("a known product") += delta;
            }
        }
    }

    let settled = assert_stock_conserved(&shop.api, &shop.admin, &expected).await;
    let placed: BTreeSet<&str> = orders.iter().map(|(_, id)| id.as_str()).collect();
    let listed: BTreeSet<&str> =
        settled.iter().map(|order| order["id"].as_str().unwrap_or("")).collect();
    assert_eq!(listed, placed, "the admin list shows exactly the orders placed");
    let mut by_status = Tally::default();
    for order in &settled {
        let status = order["status"].as_str().unwrap_or_default().to_owned();
        if matches!(status.as_str(), "confirmed" | "shipped" | "delivered") {
            let mut cents = 0;
            for line in order["items"].as_array().expect("items") {
                let product = products.iter().position(|id| line["productId"] == id.as_str());
                let price = prices[product.expect("a walk product")].2;
                cents += price * line["quantity"].as_i64().expect("a quantity");
            }
            let total = format!("{}.{:02}", cents / 100, cents % 100);
            assert_eq!(order["total"], total.as_str(), "the total follows the lines: {order}");
        }
        if status == "rejected" {
            assert_eq!(order["rejectionReason"], "insufficient_stock", "{order}");
        }
        if order["lastUpdateRejection"].is_object() {
            by_status.add("lastUpdateRejection".to_owned());
        }
        by_status.add(status);
    }
    eprintln!(
        "random walk (seed {seed:#x}, {steps} steps): answers {:?}; orders {:?}",
        tally.0, by_status.0
    );
    assert!(shop.mercato.terminate().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_growing_at_once_move_stock_all_or_nothing() {
    const ORDERS: usize = 10;
    let dir = tempfile::tempdir().expect("a temp dir");
    let shop = Shop::start(dir.path()).await;
    let mug = shop.product("Mug", "4.50", 20).await;
    let lamp = shop.product("Lamp", "10.00", 100).await;
    let mut placed = Vec::new();
    for index in 0..ORDERS {
        let customer = shop.customer(&format!("grower{index}")).await;
        let order = shop.place_settled(&customer.token, &[(&mug, 1)]).await;
        assert_eq!(order["status"], "confirmed", "{order}");
        placed.push((customer, text(&order["id"])));
    }
    assert_eq!(shop.stock(&mug).await, 10);

    // Every order asks for 2 more mugs (and a lamp) at once: 20 more mugs wanted, 10 left.
    let mut growing = JoinSet::new();
    for (customer, id) in placed.clone() {
        let api = shop.api.clone();
        let (mug, lamp) = (mug.clone(), lamp.clone());
        growing.spawn(async move {
            let body = json!({"items": items(&[(&mug, 3), (&lamp, 1)])});
            let response = api
                .send_with(
                    Method::PATCH,
                    &format!("/api/orders/{id}"),
                    Some(&body),
                    Some(&customer.token),
                    &[("Prefer", "wait=30")],
                )
                .await;
            let (status, _, body) = parts(response).await;
            assert_eq!(status, StatusCode::OK, "{body}");
        });
    }
    growing.join_all().await;
    let orders = crate::orders::settled_orders(&shop.api, &shop.admin).await;
    assert_eq!(orders.len(), ORDERS);
    let grown: Vec<&Value> =
        orders.iter().filter(|order| order["lastUpdateRejection"].is_null()).collect();
    let refused: Vec<&Value> =
        orders.iter().filter(|order| order["lastUpdateRejection"].is_object()).collect();
    assert_eq!(grown.len(), 5, "{orders:?}");
    assert_eq!(refused.len(), 5, "{orders:?}");
    for order in &orders {
        assert_eq!(order["status"], "confirmed", "{order}");
    }
    for order in &grown {
        assert_eq!(order["total"], "23.50", "{order}");
        assert_eq!(order["items"].as_array().map(Vec::len), Some(2), "{order}");
    }
    for order in &refused {
        assert_eq!(order["lastUpdateRejection"]["reason"], "insufficient_stock", "{order}");
        assert_eq!(order["total"], "4.50", "the previous items are back: {order}");
        assert_eq!(order["items"].as_array().map(Vec::len), Some(1), "{order}");
    }
    assert_eq!(shop.stock(&mug).await, 0);
    assert_eq!(shop.stock(&lamp).await, 95, "only the changes that went through took a lamp");
    let mut expected = BTreeMap::new();
    expected.insert(mug.clone(), 20);
    expected.insert(lamp.clone(), 100);
    assert_stock_conserved(&shop.api, &shop.admin, &expected).await;
    assert!(shop.mercato.terminate().await.success());
}

/// What one client of the crash drill saw.
#[derive(Debug, Default)]
struct Seen {
    /// Orders answered `201`.
    created: Vec<String>,
    /// Placements whose answer never came (the process died first).
    lost: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_in_flight_when_mercato_is_killed_settle_once_after_a_restart() {
    const CLIENTS: usize = 6;
    const KILL_AFTER: usize = 40;
    let dir = tempfile::tempdir().expect("a temp dir");
    let mut shop = Shop::start(dir.path()).await;
    let mut products = Vec::new();
    let mut expected = BTreeMap::new();
    for (name, price, stock) in [("Mug", "4.50", 60), ("Lamp", "10.00", 45)] {
        let id = shop.product(name, price, stock).await;
        expected.insert(id.clone(), stock);
        products.push(id);
    }
    let mut customers = Vec::new();
    for name in ["crash0", "crash1", "crash2"] {
        customers.push(shop.customer(name).await);
    }

    let created = Arc::new(AtomicUsize::new(0));
    let mut clients = JoinSet::new();
    for index in 0..CLIENTS {
        let api = shop.api.clone();
        let customer = customers[index % customers.len()].clone();
        let products = products.clone();
        let created = created.clone();
        clients.spawn(async move {
            let mut rng = Rng(0xc4a5_0000 + index as u64);
            let mut seen = Seen::default();
            loop {
                // Now and then a cancel of an order this client placed: its fate is checked
                // through the books, whether or not its answer arrives.
                if !seen.created.is_empty() && rng.below(4) == 0 {
                    let order = &seen.created[rng.below(seen.created.len())];
                    let cancel = api
                        .http
                        .delete(api.url(&format!("/api/orders/{order}")))
                        .bearer_auth(&customer.token)
                        .send()
                        .await;
                    match cancel {
                        Ok(response) => {
                            let status = response.status();
                            assert!(
                                status == StatusCode::OK || status == StatusCode::CONFLICT,
                                "cancel answered {status}"
                            );
                        }
                        Err(_) => return seen,
                    }
                }
                // And now and then an item change, which moves a reservation.
                if !seen.created.is_empty() && rng.below(4) == 0 {
                    let latest = seen.created.len() - 1;
                    let order = &seen.created[latest - rng.below(seen.created.len().min(4))];
                    let line = (products[rng.below(2)].as_str(), rng.between(1, 4));
                    let body = json!({"items": items(&[line])});
                    let change = api
                        .http
                        .patch(api.url(&format!("/api/orders/{order}")))
                        .bearer_auth(&customer.token)
                        .json(&body)
                        .send()
                        .await;
                    match change {
                        Ok(response) => {
                            let status = response.status();
                            assert!(
                                status == StatusCode::OK || status == StatusCode::CONFLICT,
                                "item change answered {status}"
                            );
                        }
                        Err(_) => return seen,
                    }
                }
                let first = rng.below(products.len());
                let mut lines = vec![(products[first].as_str(), rng.between(1, 3))];
                if rng.below(2) == 0 {
                    lines.push((products[1 - first].as_str(), rng.between(1, 3)));
                }
                let body = json!({"items": items(&lines)});
                let sent = api
                    .http
                    .post(api.url("/api/orders"))
                    .bearer_auth(&customer.token)
                    .json(&body)
                    .send()
                    .await;
                let response = match sent {
                    Ok(response) => response,
                    Err(_) => {
                        seen.lost += 1;
                        return seen;
                    }
                };
                let status = response.status();
                match response.text().await {
                    Ok(body) => {
                        assert_eq!(status, StatusCode::CREATED, "{body}");
                        let order: Value = serde_json::from_str(&body).expect("json");
                        seen.created.push(text(&order["id"]));
                        created.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(_) => {
                        seen.lost += 1;
                        return seen;
                    }
                }
            }
        });
    }

    wait_until("orders are in flight", SETTLE, || async {
        (created.load(Ordering::SeqCst) >= KILL_AFTER).then_some(())
    })
    .await;
    shop.mercato.child.start_kill().expect("SIGKILL is sent");
    let status = tokio::time::timeout(Duration::from_secs(15), shop.mercato.child.wait())
        .await
        .expect("the killed process is reaped within 15 s")
        .expect("waiting for mercato");
    assert!(!status.success(), "killed, not exited: {status:?}");
    let seen = tokio::time::timeout(Duration::from_secs(60), clients.join_all())
        .await
        .expect("every client notices the process is gone");
    let created_ids: Vec<String> = seen.iter().flat_map(|seen| seen.created.clone()).collect();
    let lost: usize = seen.iter().map(|seen| seen.lost).sum();
    assert!(created_ids.len() >= KILL_AFTER);

    let restarted = Shop::attach(Mercato::start(up_with_admin(dir.path())).await).await;
    let pending_at_restart =
        all_orders(&restarted.api, &restarted.admin, "&status=pending").await.len();
    let settled = assert_stock_conserved(&restarted.api, &restarted.admin, &expected).await;
    let listed: BTreeSet<String> = settled.iter().map(|order| text(&order["id"])).collect();
    for id in &created_ids {
        assert!(listed.contains(id), "order {id} was answered 201 before the kill but is gone");
    }
    assert!(
        listed.len() >= created_ids.len() && listed.len() <= created_ids.len() + lost,
        "{} orders listed; {} answered 201, {lost} answers lost",
        listed.len(),
        created_ids.len()
    );
    for order in &settled {
        let status = order["status"].as_str().unwrap_or_default();
        assert!(matches!(status, "confirmed" | "rejected" | "cancelled"), "{order}");
        if status == "rejected" {
            assert_eq!(order["rejectionReason"], "insufficient_stock", "{order}");
        }
    }

    // The restarted process keeps taking orders.
    let after = restarted.place_settled(&customers[0].token, &[(&products[0], 1)]).await;
    assert!(matches!(after["status"].as_str(), Some("confirmed" | "rejected")), "{after}");
    eprintln!(
        "crash drill: {} answered 201, {lost} lost, {} listed after the restart, \
         {pending_at_restart} of them pending when it came back",
        created_ids.len(),
        listed.len()
    );
    assert!(restarted.mercato.terminate().await.success());
}
