//! A property test of the reservation rules (DESIGN.md promise 3): any sequence of placements,
//! item changes, cancels and stock adjustments, delivered in any order and with duplicates,
//! keeps every stock at or above zero and conserves stock:
//! initial + adjustments = stock + units held by orders.
//!
//! It runs on every backend; each case uses fresh products and orders in one database.

use std::collections::BTreeMap;

use mercato_contracts::Envelope;
use mercato_products::reservations::Outcome;
use mercato_store::Backend;
use mercato_testkit::TestDatabase;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::harness::*;

const PRODUCTS: usize = 3;

/// One order's life as the orders service would publish it.
#[derive(Debug, Clone)]
struct OrderPlan {
    placed: BTreeMap<usize, i64>,
    changes: Vec<BTreeMap<usize, i64>>,
    cancelled: bool,
}

/// What reaches the products service, in delivery order.
#[derive(Debug, Clone)]
enum Step {
    /// The `n`-th event of the case's event list.
    Deliver(usize),
    /// The `n`-th event again, under the same id (a redelivery).
    Redeliver(usize),
    /// The `n`-th event again, under a new id (published twice).
    Republish(usize),
    /// An admin moves a product's stock.
    Adjust(usize, i64),
}

#[derive(Debug, Clone)]
struct Case {
    stocks: Vec<i64>,
    orders: Vec<OrderPlan>,
    steps: Vec<Step>,
}

fn items() -> impl Strategy<Value = BTreeMap<usize, i64>> {
    proptest::collection::btree_map(0..PRODUCTS, 1..4i64, 1..=PRODUCTS)
}

fn plan() -> impl Strategy<Value = OrderPlan> {
    (items(), proptest::collection::vec(items(), 0..3), any::<bool>())
        .prop_map(|(placed, changes, cancelled)| OrderPlan { placed, changes, cancelled })
}

fn case() -> impl Strategy<Value = Case> {
    (
        proptest::collection::vec(0..8i64, PRODUCTS),
        proptest::collection::vec(plan(), 1..5),
        proptest::collection::vec((0..PRODUCTS, -4..5i64), 0..4),
        proptest::collection::vec((any::<prop::sample::Index>(), any::<bool>()), 0..4),
    )
        .prop_flat_map(|(stocks, orders, adjustments, repeats)| {
            let events: usize =
                orders.iter().map(|o| 1 + o.changes.len() + usize::from(o.cancelled)).sum();
            let mut steps: Vec<Step> = (0..events).map(Step::Deliver).collect();
            steps.extend(
                adjustments.into_iter().map(|(product, delta)| Step::Adjust(product, delta)),
            );
            steps.extend(repeats.into_iter().map(|(index, same_id)| {
                let n = index.index(events);
                if same_id { Step::Redeliver(n) } else { Step::Republish(n) }
            }));
            Just(steps).prop_shuffle().prop_map(move |steps| Case {
                stocks: stocks.clone(),
                orders: orders.clone(),
                steps,
            })
        })
}

/// The case's events: per order, placement v1, changes v2.., cancel last.
fn events(case: &Case, products: &[Uuid]) -> Vec<Envelope<Value>> {
    let line = |items: &BTreeMap<usize, i64>| -> Vec<(Uuid, i64)> {
        items.iter().map(|(product, quantity)| (products[*product], *quantity)).collect()
    };
    let mut events = Vec::new();
    for plan in &case.orders {
        let order = Uuid::now_v7();
        events.push(placed(order, 1, &line(&plan.placed)));
        let mut version = 1;
        for change in &plan.changes {
            version += 1;
            events.push(updated(order, version, &line(change)));
        }
        if plan.cancelled {
            events.push(cancelled(order, version + 1));
        }
    }
    events
}

async fn check(app: &TestApp, case: Case) -> Result<(), TestCaseError> {
    let mut products = Vec::new();
    for stock in &case.stocks {
        products.push(app.product_with_stock("Prop", *stock).await);
    }
    let mut expected_total: Vec<i64> = case.stocks.clone();
    let events = events(&case, &products);
    for step in &case.steps {
        match step {
            Step::Deliver(n) | Step::Redeliver(n) => {
                app.apply(&events[*n]).await.map_err(|e| TestCaseError::fail(e.to_string()))?;
            }
            Step::Republish(n) => {
                let mut again = events[*n].clone();
                again.id = Uuid::now_v7().to_string();
                app.apply(&again).await.map_err(|e| TestCaseError::fail(e.to_string()))?;
            }
            Step::Adjust(product, delta) => {
                let path = format!("/api/products/{}/inventory", products[*product]);
                let response =
                    app.post_json(&path, &json!({"delta": delta}), Some(&app.admin)).await;
                match response.status() {
                    StatusCode::OK => expected_total[*product] += delta,
                    StatusCode::CONFLICT => {}
                    other => {
                        return Err(TestCaseError::fail(format!("adjusting answered {other}")));
                    }
                }
            }
        }
        let held = app.held().await;
        for (index, product) in products.iter().enumerate() {
            let stock = app.stock(*product).await;
            prop_assert!(stock >= 0, "stock went below zero: {stock}");
            let holding = held.get(product).copied().unwrap_or(0);
            prop_assert_eq!(
                stock + holding,
                expected_total[index],
                "stock {} + held {} after {:?}",
                stock,
                holding,
                step
            );
        }
    }
    // Every order whose cancel arrived holds nothing.
    for event in events.iter().filter(|e| e.event_type.ends_with("order.cancelled.v1")) {
        let again = app
            .apply(&{
                let mut e = event.clone();
                e.id = Uuid::now_v7().to_string();
                e
            })
            .await
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(again, Some(Outcome::Ignored), "a delivered cancel is final");
    }
    Ok(())
}

fn run_property(backend: Backend, cases: u32) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let Some(db) = runtime.block_on(TestDatabase::create(backend)) else { return };
    let app = runtime.block_on(spawn_app(db));
    let mut runner =
        TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() });
    let result = runner.run(&case(), |case| runtime.block_on(check(&app, case)));
    runtime.block_on(async move { drop(app) });
    if let Err(error) = result {
        panic!("{error}");
    }
}

#[test]
fn reservations_conserve_stock_on_sqlite() {
    run_property(Backend::Sqlite, 64);
}

#[test]
fn reservations_conserve_stock_on_postgres() {
    run_property(Backend::Postgres, 24);
}

#[test]
fn reservations_conserve_stock_on_mysql() {
    run_property(Backend::MySql, 24);
}
