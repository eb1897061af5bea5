//! Answers that arrive twice, late or out of order (DESIGN.md promises 2 and 4): redeliveries
//! and republished copies change nothing, answers for versions the order does not await are
//! ignored, a late reservation does not revive a cancelled order, and of two answers for one
//! version the first wins. A property test checks that any interleaving, with duplicates, of a
//! fixed set of answers ends where applying them once in order ends.

use std::collections::BTreeMap;

use mercato_contracts::{Envelope, OrderCancelled, OrderConfirmed, OrderRejected, RejectionReason};
use mercato_orders::order::Settled;
use mercato_orders::saga::Outcome;
use mercato_store::Backend;
use mercato_testkit::{TestDatabase, backend_tests};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::answers::{
    applied, change_items, change_refused, confirmed_order, of_order, priced_items, republished,
    settled_confirmed, settled_rejected,
};
use crate::harness::*;

fn address() -> Value {
    json!({"shippingAddress": {"street": "1 Main St", "city": "Springfield", "zipCode": "12345"}})
}

backend_tests! {
    async fn a_redelivered_or_republished_answer_changes_nothing(db) {
        let app = spawn_app(db).await;
        let product = Uuid::now_v7();

        let confirmed = id_of(&app.place(&app.alice, &[(product, 2)]).await);
        let reservation = reserved(confirmed, 1, &[(product, 2, "3.50")]);
        assert_eq!(applied(&app, &reservation).await, settled_confirmed());
        let once = app.order(&app.alice, confirmed).await;
        assert_eq!(app.answer(&reservation).await.expect("handled"), None, "a redelivery is a duplicate");
        assert_eq!(app.answer(&republished(&reservation)).await.expect("handled"), Some(Outcome::Ignored));
        assert_eq!(app.order(&app.alice, confirmed).await, once);
        assert_eq!((once["status"].clone(), once["version"].clone(), once["total"].clone()), (json!("confirmed"), json!(2), json!("7.00")));

        let refused = id_of(&app.place(&app.alice, &[(product, 9)]).await);
        let refusal = rejected(refused, 1, RejectionReason::InsufficientStock, Some(product));
        assert_eq!(applied(&app, &refusal).await, settled_rejected("insufficient_stock"));
        let once = app.order(&app.alice, refused).await;
        assert_eq!(app.answer(&refusal).await.expect("handled"), None);
        assert_eq!(app.answer(&republished(&refusal)).await.expect("handled"), Some(Outcome::Ignored));
        assert_eq!(app.order(&app.alice, refused).await, once);

        let cancelled = id_of(&app.place(&app.alice, &[(product, 1)]).await);
        app.delete(&format!("/api/orders/{cancelled}"), Some(&app.alice.token)).await;
        let release = released(cancelled, &[]);
        assert_eq!(applied(&app, &release).await, Outcome::Released);
        assert_eq!(app.answer(&release).await.expect("handled"), None);
        assert_eq!(app.answer(&republished(&release)).await.expect("handled"), Some(Outcome::Ignored));

        // A copy of the first reservation still about after the order moved on to an item change.
        change_items(&app, &app.alice, confirmed, &[(product, 5)]).await;
        assert_eq!(app.answer(&republished(&reservation)).await.expect("handled"), Some(Outcome::Ignored));
        let pending = app.order(&app.alice, confirmed).await;
        assert_eq!((pending["status"].clone(), pending["version"].clone(), pending["total"].clone()), (json!("pending"), json!(3), Value::Null));

        // Each effect happened once.
        assert_eq!(of_order(app.outbox_events::<OrderConfirmed>().await, confirmed).len(), 1);
        assert_eq!(
            app.outbox_events::<OrderRejected>().await,
            vec![json!({"orderId": refused, "userId": app.alice.id, "status": "rejected", "total": null, "reason": "insufficient_stock"})]
        );
    }

    async fn answers_for_versions_the_order_does_not_await_are_ignored(db) {
        let app = spawn_app(db).await;
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let order = id_of(&app.place(&app.bob, &[(a, 1)]).await);
        // A details change raises the version but does not move the saga: version 1 is still
        // what the order awaits, and version 2 (its current version) was never reserved.
        let response = app.patch_json(&format!("/api/orders/{order}"), &address(), Some(&app.bob.token)).await;
        let changed = json_body(response, StatusCode::OK).await;
        assert_eq!((changed["status"].clone(), changed["version"].clone()), (json!("pending"), json!(2)));
        let ignored = [
            reserved(order, 2, &[(a, 1, "1.00")]),
            rejected(order, 2, RejectionReason::UnknownProduct, Some(a)),
            reserved(order, 0, &[(a, 1, "1.00")]),
            rejected(order, 3, RejectionReason::InsufficientStock, Some(a)),
        ];
        for answer in &ignored {
            assert_eq!(applied(&app, answer).await, Outcome::Ignored, "{:?}", answer.data);
        }
        assert_eq!(app.order(&app.bob, order).await, changed);
        assert_eq!(applied(&app, &reserved(order, 1, &[(a, 1, "4.00")])).await, settled_confirmed());
        assert_eq!(app.order(&app.bob, order).await["version"], 3);

        // An item change awaits version 4; answers for 1, 2, 3 and 5 are not it.
        change_items(&app, &app.bob, order, &[(a, 2), (b, 1)]).await;
        let pending = app.order(&app.bob, order).await;
        assert_eq!((pending["status"].clone(), pending["version"].clone()), (json!("pending"), json!(4)));
        let ignored = [
            reserved(order, 1, &[(a, 1, "4.00")]),
            rejected(order, 1, RejectionReason::InsufficientStock, Some(a)),
            reserved(order, 2, &[(a, 2, "4.00"), (b, 1, "1.00")]),
            rejected(order, 3, RejectionReason::ProductUnavailable, Some(b)),
            reserved(order, 3, &[(a, 2, "4.00"), (b, 1, "1.00")]),
            reserved(order, 5, &[(a, 2, "4.00"), (b, 1, "1.00")]),
            rejected(order, 5, RejectionReason::ProductUnavailable, Some(b)),
        ];
        for answer in &ignored {
            assert_eq!(applied(&app, answer).await, Outcome::Ignored, "{:?}", answer.data);
        }
        assert_eq!(app.order(&app.bob, order).await, pending);

        let refusal = rejected(order, 4, RejectionReason::ProductUnavailable, Some(b));
        assert_eq!(applied(&app, &refusal).await, change_refused("product_unavailable"));
        let view = app.order(&app.bob, order).await;
        assert_eq!(view["status"], "confirmed");
        assert_eq!(view["items"], priced_items(&[(a, 1, "4.00")]));
        assert_eq!(view["total"], "4.00");
        assert_eq!(view["version"], 5);
        assert_eq!(view["lastUpdateRejection"]["reason"], "product_unavailable");
        assert_eq!(view["shippingAddress"]["city"], "Springfield");
        assert_eq!(of_order(app.outbox_events::<OrderConfirmed>().await, order).len(), 2);
        assert!(app.outbox_events::<OrderRejected>().await.is_empty());
    }

    async fn a_late_reservation_does_not_revive_a_cancelled_order(db) {
        let app = spawn_app(db).await;
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());

        // Cancelled while pending: the reservation (or refusal) arrives after the cancel.
        let order = id_of(&app.place(&app.alice, &[(a, 2)]).await);
        let response = app.post_json(&format!("/api/orders/{order}/cancel"), &json!({}), Some(&app.alice.token)).await;
        let cancelled = json_body(response, StatusCode::OK).await;
        assert_eq!((cancelled["status"].clone(), cancelled["version"].clone()), (json!("cancelled"), json!(2)));
        assert_eq!(applied(&app, &reserved(order, 1, &[(a, 2, "5.00")])).await, Outcome::Ignored);
        assert_eq!(applied(&app, &rejected(order, 1, RejectionReason::InsufficientStock, Some(a))).await, Outcome::Ignored);
        let view = app.order(&app.alice, order).await;
        assert_eq!(view, cancelled);
        assert_eq!(view["total"], Value::Null);
        assert_eq!(view["items"], json!([{"productId": a, "quantity": 2, "unitPrice": null, "name": null}]));
        assert_eq!(view["rejectionReason"], Value::Null);

        // Cancelled while an item change was pending: its answer arrives after the cancel.
        let changed = confirmed_order(&app, &app.alice, &[(a, 1, "5.00")]).await;
        change_items(&app, &app.alice, changed, &[(a, 1), (b, 3)]).await;
        let response = app.delete(&format!("/api/orders/{changed}"), Some(&app.alice.token)).await;
        let cancelled_change = json_body(response, StatusCode::OK).await;
        assert_eq!((cancelled_change["status"].clone(), cancelled_change["version"].clone()), (json!("cancelled"), json!(4)));
        assert_eq!(applied(&app, &reserved(changed, 3, &[(a, 1, "5.00"), (b, 3, "1.00")])).await, Outcome::Ignored);
        assert_eq!(applied(&app, &rejected(changed, 3, RejectionReason::InsufficientStock, Some(b))).await, Outcome::Ignored);
        let view = app.order(&app.alice, changed).await;
        assert_eq!(view, cancelled_change);
        assert_eq!(view["lastUpdateRejection"], Value::Null);

        assert!(of_order(app.outbox_events::<OrderConfirmed>().await, order).is_empty());
        assert_eq!(of_order(app.outbox_events::<OrderConfirmed>().await, changed).len(), 1, "the placement's only");
        assert!(app.outbox_events::<OrderRejected>().await.is_empty());
        assert_eq!(
            app.outbox_events::<OrderCancelled>().await,
            vec![
                json!({"orderId": order, "userId": app.alice.id, "orderVersion": 2}),
                json!({"orderId": changed, "userId": app.alice.id, "orderVersion": 4}),
            ]
        );
    }

    async fn of_a_reservation_and_a_refusal_for_one_version_the_first_wins(db) {
        let app = spawn_app(db).await;
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());

        // A placement: reserved first, then refused.
        let first = id_of(&app.place(&app.alice, &[(a, 2)]).await);
        assert_eq!(applied(&app, &reserved(first, 1, &[(a, 2, "1.50")])).await, settled_confirmed());
        assert_eq!(applied(&app, &rejected(first, 1, RejectionReason::InsufficientStock, Some(a))).await, Outcome::Ignored);
        let view = app.order(&app.alice, first).await;
        assert_eq!((view["status"].clone(), view["total"].clone(), view["version"].clone()), (json!("confirmed"), json!("3.00"), json!(2)));
        assert_eq!(view["rejectionReason"], Value::Null);

        // A placement: refused first, then reserved.
        let second = id_of(&app.place(&app.alice, &[(a, 2)]).await);
        assert_eq!(applied(&app, &rejected(second, 1, RejectionReason::UnknownProduct, Some(a))).await, settled_rejected("unknown_product"));
        assert_eq!(applied(&app, &reserved(second, 1, &[(a, 2, "1.50")])).await, Outcome::Ignored);
        let view = app.order(&app.alice, second).await;
        assert_eq!((view["status"].clone(), view["total"].clone(), view["version"].clone()), (json!("rejected"), Value::Null, json!(2)));
        assert_eq!(view["rejectionReason"], "unknown_product");
        assert_eq!(view["items"][0]["unitPrice"], Value::Null);

        // An item change: reserved first, then refused.
        let third = confirmed_order(&app, &app.alice, &[(a, 1, "1.50")]).await;
        change_items(&app, &app.alice, third, &[(a, 1), (b, 2)]).await;
        assert_eq!(applied(&app, &reserved(third, 3, &[(a, 1, "1.50"), (b, 2, "2.00")])).await, settled_confirmed());
        assert_eq!(applied(&app, &rejected(third, 3, RejectionReason::InsufficientStock, Some(b))).await, Outcome::Ignored);
        let view = app.order(&app.alice, third).await;
        assert_eq!(view["items"], priced_items(&[(a, 1, "1.50"), (b, 2, "2.00")]));
        assert_eq!((view["status"].clone(), view["total"].clone(), view["version"].clone()), (json!("confirmed"), json!("5.50"), json!(4)));
        assert_eq!(view["lastUpdateRejection"], Value::Null);

        // An item change: refused first, then reserved.
        let fourth = confirmed_order(&app, &app.alice, &[(a, 1, "1.50")]).await;
        change_items(&app, &app.alice, fourth, &[(a, 1), (b, 2)]).await;
        assert_eq!(applied(&app, &rejected(fourth, 3, RejectionReason::InsufficientStock, Some(b))).await, change_refused("insufficient_stock"));
        assert_eq!(applied(&app, &reserved(fourth, 3, &[(a, 1, "1.50"), (b, 2, "2.00")])).await, Outcome::Ignored);
        let view = app.order(&app.alice, fourth).await;
        assert_eq!(view["items"], priced_items(&[(a, 1, "1.50")]));
        assert_eq!((view["status"].clone(), view["total"].clone(), view["version"].clone()), (json!("confirmed"), json!("1.50"), json!(4)));
        assert_eq!(view["lastUpdateRejection"]["productId"], b.to_string());

        // One status event per settled answer, none for the losers.
        let confirmations = app.outbox_events::<OrderConfirmed>().await;
        let count = |order| of_order(confirmations.clone(), order).len();
        assert_eq!((count(first), count(second), count(third), count(fourth)), (1, 0, 2, 2));
        assert_eq!(app.outbox_events::<OrderRejected>().await.len(), 1);
    }
}

// The property: any interleaving, with redeliveries and republished copies, of a fixed set of
// answers for several orders ends where applying each answer once, in order, ends.

const PRODUCTS: usize = 3;
const PRICES: [&str; PRODUCTS] = ["1.25", "10.00", "0.99"];
const REASONS: [RejectionReason; 3] = [
    RejectionReason::InsufficientStock,
    RejectionReason::UnknownProduct,
    RejectionReason::ProductUnavailable,
];

/// What the products service decides for the version an order awaits.
#[derive(Debug, Clone, Copy)]
enum Verdict {
    Reserve,
    Refuse(usize),
}

/// Where an order stands when the answers start arriving.
#[derive(Debug, Clone, Copy)]
enum Shape {
    /// Placed: awaits version 1.
    Placed,
    /// Placed, then its payment method changed: version 2, still awaiting 1.
    DetailsChanged,
    /// Placed, confirmed, then its items changed: awaits version 3.
    ItemsChanged,
    /// Placed and cancelled before any answer.
    CancelledPending,
    /// Placed, confirmed and cancelled.
    CancelledConfirmed,
}

#[derive(Debug, Clone)]
struct Plan {
    shape: Shape,
    verdict: Verdict,
    placed: BTreeMap<usize, i64>,
    changed: BTreeMap<usize, i64>,
}

/// What reaches the orders service, in delivery order.
#[derive(Debug, Clone)]
enum Step {
    /// The `n`-th answer of the case.
    Deliver(usize),
    /// The `n`-th answer again, under the same id (a redelivery).
    Redeliver(usize),
    /// The `n`-th answer again, under a new id (published twice).
    Republish(usize),
}

#[derive(Debug, Clone)]
struct Case {
    plans: Vec<Plan>,
    steps: Vec<Step>,
}

fn lines() -> impl Strategy<Value = BTreeMap<usize, i64>> {
    proptest::collection::btree_map(0..PRODUCTS, 1..5i64, 1..=PRODUCTS)
}

fn plan() -> impl Strategy<Value = Plan> {
    let shape = prop::sample::select(vec![
        Shape::Placed,
        Shape::DetailsChanged,
        Shape::ItemsChanged,
        Shape::CancelledPending,
        Shape::CancelledConfirmed,
    ]);
    let verdict = prop_oneof![Just(Verdict::Reserve), (0..REASONS.len()).prop_map(Verdict::Refuse)];
    (shape, verdict, lines(), lines()).prop_map(|(shape, verdict, placed, changed)| Plan {
        shape,
        verdict,
        placed,
        changed,
    })
}

/// How many answers [`answers`] makes for a plan.
fn answer_count(plan: &Plan) -> usize {
    match plan.shape {
        Shape::Placed | Shape::DetailsChanged => 3,
        Shape::ItemsChanged => 4,
        Shape::CancelledPending | Shape::CancelledConfirmed => 3,
    }
}

fn case() -> impl Strategy<Value = Case> {
    (
        proptest::collection::vec(plan(), 1..5),
        proptest::collection::vec((any::<prop::sample::Index>(), any::<bool>()), 0..8),
    )
        .prop_flat_map(|(plans, repeats)| {
            // The answers of every plan, and one about an order nobody placed.
            let count = plans.iter().map(answer_count).sum::<usize>() + 1;
            let mut steps: Vec<Step> = (0..count).map(Step::Deliver).collect();
            steps.extend(repeats.into_iter().map(|(index, same_id)| {
                let n = index.index(count);
                if same_id { Step::Redeliver(n) } else { Step::Republish(n) }
            }));
            Just(steps).prop_shuffle().prop_map(move |steps| Case { plans: plans.clone(), steps })
        })
}

fn order_lines(lines: &BTreeMap<usize, i64>, products: &[Uuid]) -> Vec<(Uuid, i64)> {
    lines.iter().map(|(product, quantity)| (products[*product], *quantity)).collect()
}

fn priced(lines: &BTreeMap<usize, i64>, products: &[Uuid]) -> Vec<(Uuid, i64, &'static str)> {
    lines
        .iter()
        .map(|(product, quantity)| (products[*product], *quantity, PRICES[*product]))
        .collect()
}

/// The decision for `version` of `order` on these lines.
fn decision(
    verdict: Verdict,
    order: Uuid,
    version: i64,
    lines: &BTreeMap<usize, i64>,
    products: &[Uuid],
) -> Envelope<Value> {
    match verdict {
        Verdict::Reserve => reserved(order, version, &priced(lines, products)),
        Verdict::Refuse(reason) => {
            let blamed = lines.keys().next().map(|product| products[*product]);
            rejected(order, version, REASONS[reason], blamed)
        }
    }
}

/// The opposite decision, for a version the order does not await.
fn other_decision(
    verdict: Verdict,
    order: Uuid,
    version: i64,
    lines: &BTreeMap<usize, i64>,
    products: &[Uuid],
) -> Envelope<Value> {
    let opposite = match verdict {
        Verdict::Reserve => Verdict::Refuse(0),
        Verdict::Refuse(_) => Verdict::Reserve,
    };
    decision(opposite, order, version, lines, products)
}

/// Puts an order where `plan` says, through the API (and the setup's own answers).
async fn set_up(app: &TestApp, plan: &Plan, products: &[Uuid]) -> Result<Uuid, TestCaseError> {
    let order = id_of(&app.place(&app.alice, &order_lines(&plan.placed, products)).await);
    let confirm = || async {
        let answer = reserved(order, 1, &priced(&plan.placed, products));
        let outcome = app.answer(&answer).await.map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(outcome, Some(Outcome::Settled(Settled::Confirmed)));
        Ok::<(), TestCaseError>(())
    };
    let cancel = || async {
        let response = app.delete(&format!("/api/orders/{order}"), Some(&app.alice.token)).await;
        prop_assert_eq!(response.status(), StatusCode::OK);
        Ok::<(), TestCaseError>(())
    };
    match plan.shape {
        Shape::Placed => {}
        Shape::DetailsChanged => {
            let body = json!({"paymentMethod": "card"});
            let response = app
                .patch_json(&format!("/api/orders/{order}"), &body, Some(&app.alice.token))
                .await;
            prop_assert_eq!(response.status(), StatusCode::OK);
        }
        Shape::ItemsChanged => {
            confirm().await?;
            change_items(app, &app.alice, order, &order_lines(&plan.changed, products)).await;
        }
        Shape::CancelledPending => cancel().await?,
        Shape::CancelledConfirmed => {
            confirm().await?;
            cancel().await?;
        }
    }
    Ok(order)
}

/// The plan's answers in their canonical order: the decision for the awaited version first,
/// then answers for versions it does not await (and releases).
fn answers(plan: &Plan, order: Uuid, products: &[Uuid]) -> Vec<Envelope<Value>> {
    let (placed, changed, verdict) = (&plan.placed, &plan.changed, plan.verdict);
    let release = || released(order, &order_lines(placed, products));
    let list = match plan.shape {
        Shape::Placed => vec![
            decision(verdict, order, 1, placed, products),
            other_decision(verdict, order, 2, placed, products),
            decision(verdict, order, 0, placed, products),
        ],
        Shape::DetailsChanged => vec![
            decision(verdict, order, 1, placed, products),
            // Version 2 is the order's version, but no reservation was asked for it.
            other_decision(verdict, order, 2, placed, products),
            decision(verdict, order, 2, placed, products),
        ],
        Shape::ItemsChanged => vec![
            decision(verdict, order, 3, changed, products),
            // Version 2 is the confirmation's: nothing was asked for it.
            other_decision(verdict, order, 2, changed, products),
            // The placement's answer again, and a refusal of the placement.
            reserved(order, 1, &priced(placed, products)),
            rejected(order, 1, RejectionReason::InsufficientStock, None),
        ],
        Shape::CancelledPending => {
            vec![release(), decision(verdict, order, 1, placed, products), release()]
        }
        Shape::CancelledConfirmed => vec![
            release(),
            decision(verdict, order, 1, placed, products),
            other_decision(verdict, order, 1, placed, products),
        ],
    };
    debug_assert_eq!(list.len(), answer_count(plan));
    list
}

/// Everything about an order that answers can change, without its id and clock readings.
async fn state(app: &TestApp, order: Uuid) -> Value {
    let mut view = app.order(&app.alice, order).await;
    let object = view.as_object_mut().expect("an order is an object");
    for member in ["id", "createdAt", "updatedAt"] {
        object.remove(member);
    }
    if let Some(rejection) = object.get_mut("lastUpdateRejection").and_then(Value::as_object_mut) {
        assert!(rejection.remove("at").is_some_and(|at| at.is_string()), "{rejection:?}");
    }
    let row: (Option<i64>, Option<String>, Option<i64>, i16) =
        mercato_store::sqlx::query_as(app.database.sql(
            "SELECT awaiting_version, previous_items, previous_total_cents, stock_released \
             FROM orders WHERE id = $1",
        ))
        .bind(order.to_string())
        .fetch_one(app.database.pool())
        .await
        .expect("the order is stored");
    let mut events = Vec::new();
    for (kind, list) in [
        ("confirmed", app.outbox_events::<OrderConfirmed>().await),
        ("rejected", app.outbox_events::<OrderRejected>().await),
        ("cancelled", app.outbox_events::<OrderCancelled>().await),
    ] {
        for mut event in of_order(list, order) {
            event.as_object_mut().expect("an event's data").remove("orderId");
            events.push(json!({"kind": kind, "data": event}));
        }
    }
    json!({"view": view, "row": [row.0, row.1, row.2, row.3], "events": events})
}

/// What an outcome counts as, per order: a settlement or a release is an effect.
fn effect(outcome: &Option<Outcome>) -> Option<&'static str> {
    match outcome {
        Some(Outcome::Settled(_)) => Some("settled"),
        Some(Outcome::Released) => Some("released"),
        Some(Outcome::Ignored) | None => None,
    }
}

async fn check(app: &TestApp, case: Case) -> Result<(), TestCaseError> {
    let products: Vec<Uuid> = (0..PRODUCTS).map(|_| Uuid::now_v7()).collect();
    let fail = |error: mercato_bus::consumer::HandlerError| TestCaseError::fail(error.to_string());

    // Twice the same orders: one copy answered in the canonical order, one as the case says.
    let mut canonical = Vec::new();
    let mut shuffled = Vec::new();
    let (mut canonical_answers, mut shuffled_answers) = (Vec::new(), Vec::new());
    for plan in &case.plans {
        let order = set_up(app, plan, &products).await?;
        canonical_answers.extend(answers(plan, order, &products).into_iter().map(|a| (order, a)));
        canonical.push(order);
        let order = set_up(app, plan, &products).await?;
        shuffled_answers.extend(answers(plan, order, &products).into_iter().map(|a| (order, a)));
        shuffled.push(order);
    }
    let nobody = (Uuid::now_v7(), Uuid::now_v7());
    canonical_answers
        .push((nobody.0, reserved(nobody.0, 1, &priced(&case.plans[0].placed, &products))));
    shuffled_answers
        .push((nobody.1, reserved(nobody.1, 1, &priced(&case.plans[0].placed, &products))));

    let mut canonical_effects = Effects::new();
    for (order, answer) in &canonical_answers {
        let outcome = app.answer(answer).await.map_err(fail)?;
        prop_assert!(outcome.is_some(), "a new id is never a duplicate");
        canonical_effects.entry(*order).or_default().extend(effect(&outcome));
    }
    let mut shuffled_effects = Effects::new();
    for step in &case.steps {
        let (order, answer) = match step {
            Step::Deliver(n) | Step::Redeliver(n) => shuffled_answers[*n].clone(),
            Step::Republish(n) => {
                let (order, answer) = &shuffled_answers[*n];
                (*order, republished(answer))
            }
        };
        let outcome = app.answer(&answer).await.map_err(fail)?;
        shuffled_effects.entry(order).or_default().extend(effect(&outcome));
    }

    for ((plan, canonical), shuffled) in case.plans.iter().zip(&canonical).zip(&shuffled) {
        let expected = state(app, *canonical).await;
        let actual = state(app, *shuffled).await;
        prop_assert_eq!(&actual, &expected, "{:?}", plan);
        prop_assert_eq!(
            effects_of(&shuffled_effects, *shuffled),
            effects_of(&canonical_effects, *canonical),
            "effects happen once: {:?}",
            plan
        );
        // Every awaited answer arrived: nothing is left pending.
        prop_assert_ne!(&actual["view"]["status"], "pending", "{:?}", plan);
    }
    prop_assert!(
        effects_of(&shuffled_effects, nobody.1).is_empty(),
        "an unknown order has no effects"
    );
    Ok(())
}

type Effects = BTreeMap<Uuid, Vec<&'static str>>;

fn effects_of(effects: &Effects, order: Uuid) -> Vec<&'static str> {
    effects.get(&order).cloned().unwrap_or_default()
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
fn any_interleaving_of_answers_ends_as_the_canonical_order_on_sqlite() {
    run_property(Backend::Sqlite, 64);
}

#[test]
fn any_interleaving_of_answers_ends_as_the_canonical_order_on_postgres() {
    run_property(Backend::Postgres, 24);
}

#[test]
fn any_interleaving_of_answers_ends_as_the_canonical_order_on_mysql() {
    run_property(Backend::MySql, 24);
}
