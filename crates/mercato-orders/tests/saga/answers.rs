//! The products service's answers as the `orders-saga` consumer applies them: a reservation
//! confirms and prices, a refusal rejects a placement or undoes an item change, a release is
//! recorded for a held cancel, and requests held by `Prefer: wait` are answered when the answer
//! arrives.

use std::time::{Duration, Instant};

use mercato_contracts::{
    Envelope, OrderCancelled, OrderConfirmed, OrderPlaced, OrderRejected, OrderUpdated,
    RejectionReason,
};
use mercato_orders::order::Settled;
use mercato_orders::saga::Outcome;
use mercato_testkit::{backend_tests, wait_until};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::harness::*;

/// How long a test lets a held request take once what it waits for has happened: far below the
/// `Prefer: wait=30` it asked for, so an unwoken request fails the test instead of passing late.
pub(crate) const PROMPTLY: Duration = Duration::from_secs(10);

/// Applies a products-service answer that must be new (not a duplicate id) and returns what it
/// did.
pub(crate) async fn applied(app: &TestApp, event: &Envelope<Value>) -> Outcome {
    app.answer(event)
        .await
        .unwrap_or_else(|error| panic!("{} failed: {error}", event.event_type))
        .unwrap_or_else(|| panic!("{} was taken for a duplicate", event.event_type))
}

/// The same event published again under a new id (the bus deduplicates on ids only).
pub(crate) fn republished(event: &Envelope<Value>) -> Envelope<Value> {
    let mut again = event.clone();
    again.id = Uuid::now_v7().to_string();
    again
}

pub(crate) fn settled_confirmed() -> Outcome {
    Outcome::Settled(Settled::Confirmed)
}

pub(crate) fn settled_rejected(reason: &str) -> Outcome {
    Outcome::Settled(Settled::Rejected { reason: reason.to_owned() })
}

pub(crate) fn change_refused(reason: &str) -> Outcome {
    Outcome::Settled(Settled::ChangeRefused { reason: reason.to_owned() })
}

/// The order's lines as `reserved(..)` prices them: `(product, quantity, price)` named
/// `"Product N"` by position.
pub(crate) fn priced_items(items: &[(Uuid, i64, &str)]) -> Value {
    Value::Array(
        items
            .iter()
            .enumerate()
            .map(|(index, (product, quantity, price))| {
                json!({
                    "productId": product,
                    "quantity": quantity,
                    "unitPrice": price,
                    "name": format!("Product {index}"),
                })
            })
            .collect(),
    )
}

/// Places an order as `who` and confirms it with `reserved` for version 1 at these prices.
pub(crate) async fn confirmed_order(
    app: &TestApp,
    who: &Account,
    items: &[(Uuid, i64, &str)],
) -> Uuid {
    let lines: Vec<(Uuid, i64)> = items.iter().map(|(id, quantity, _)| (*id, *quantity)).collect();
    let order = id_of(&app.place(who, &lines).await);
    assert_eq!(applied(app, &reserved(order, 1, items)).await, settled_confirmed());
    order
}

/// `PATCH /api/orders/:id` with new items as `who`; `200` expected.
pub(crate) async fn change_items(
    app: &TestApp,
    who: &Account,
    order: Uuid,
    items: &[(Uuid, i64)],
) -> Value {
    let response =
        app.patch_json(&format!("/api/orders/{order}"), &order_body(items), Some(&who.token)).await;
    json_body(response, StatusCode::OK).await
}

/// Whether the orders service has recorded that a cancelled order's stock is back.
pub(crate) async fn stock_released(app: &TestApp, order: Uuid) -> bool {
    let (released,): (i16,) = mercato_store::sqlx::query_as(
        app.database.sql("SELECT stock_released FROM orders WHERE id = $1"),
    )
    .bind(order.to_string())
    .fetch_one(app.database.pool())
    .await
    .expect("the order is stored");
    released != 0
}

/// The outbox events of one order, by its id.
pub(crate) fn of_order(events: Vec<Value>, order: Uuid) -> Vec<Value> {
    events.into_iter().filter(|event| event["orderId"] == order.to_string()).collect()
}

/// Sends a request in the background (for one held by `Prefer: wait`).
pub(crate) fn send_in_background(
    app: &TestApp,
    who: &Account,
    method: Method,
    path: String,
    body: Option<Value>,
    headers: Vec<(&'static str, &'static str)>,
) -> tokio::task::JoinHandle<(StatusCode, reqwest::header::HeaderMap, Value, Duration)> {
    let client = app.client.clone();
    let token = who.token.clone();
    tokio::spawn(async move {
        let started = Instant::now();
        let response = client.send_with(method, &path, body.as_ref(), Some(&token), &headers).await;
        let (status, headers, body) = parts(response).await;
        let json = serde_json::from_str(&body).unwrap_or(Value::String(body));
        (status, headers, json, started.elapsed())
    })
}

/// Waits until a request of this app is held for an order.
pub(crate) async fn until_held(app: &TestApp) {
    let waiters = app.service.waiters();
    wait_until("a request is held by Prefer: wait", Duration::from_secs(10), || {
        let held = !waiters.is_empty();
        async move { held.then_some(()) }
    })
    .await;
}

/// Until a placement sent with `Prefer: wait` is held and its order committed (the request
/// listens for the saga before its order is written); the `order.placed` events.
pub(crate) async fn until_placed_and_held(app: &TestApp) -> Vec<Value> {
    until_held(app).await;
    wait_until("the held placement is committed", Duration::from_secs(10), || async {
        let placed = app.outbox_events::<OrderPlaced>().await;
        (!placed.is_empty()).then_some(placed)
    })
    .await
}

/// The answer of a request sent with [`send_in_background`], which must come within
/// [`PROMPTLY`].
pub(crate) async fn answered(
    request: tokio::task::JoinHandle<(StatusCode, reqwest::header::HeaderMap, Value, Duration)>,
    what: &str,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let (status, headers, body, took) = tokio::time::timeout(PROMPTLY, request)
        .await
        .unwrap_or_else(|_| panic!("{what}: still held {PROMPTLY:?} after it had its answer"))
        .expect("the request task finishes");
    assert!(took < PROMPTLY, "{what}: answered only after {took:?}");
    (status, headers, body)
}

backend_tests! {
    async fn a_reservation_confirms_the_order_with_the_answers_prices_and_names(db) {
        let app = spawn_app(db).await;
        let (mug, tea) = (Uuid::now_v7(), Uuid::now_v7());
        // The replica knows the mug by another name and price: the answer is authoritative.
        assert!(app.replicate(&product_created(mug, "Replica Mug", "1.00")).await.expect("applied"));
        let placed = app.place(&app.alice, &[(mug, 3), (tea, 1)]).await;
        let order = id_of(&placed);
        assert_eq!(placed["status"], "pending");
        assert_eq!(placed["total"], Value::Null);
        assert_eq!(placed["items"][0]["name"], "Replica Mug");
        assert_eq!(placed["items"][0]["unitPrice"], Value::Null);

        let outcome = applied(&app, &reserved(order, 1, &[(mug, 3, "19.99"), (tea, 1, "0.01")])).await;
        assert_eq!(outcome, settled_confirmed());

        let confirmed = app.order(&app.alice, order).await;
        assert_order_shape(&confirmed);
        assert_eq!(confirmed["status"], "confirmed");
        assert_eq!(confirmed["items"], priced_items(&[(mug, 3, "19.99"), (tea, 1, "0.01")]));
        assert_eq!(confirmed["total"], "59.98");
        assert_eq!(confirmed["version"], 2);
        assert_eq!(confirmed["rejectionReason"], Value::Null);
        assert_eq!(confirmed["lastUpdateRejection"], Value::Null);
        assert_eq!(confirmed["userId"], app.alice.id.to_string());
        // The list shows the same.
        let page = json_body(app.get("/api/orders", Some(&app.alice.token)).await, StatusCode::OK).await;
        assert_eq!(page["items"], json!([confirmed]));

        assert_eq!(
            app.outbox_events::<OrderConfirmed>().await,
            vec![json!({
                "orderId": order,
                "userId": app.alice.id,
                "status": "confirmed",
                "total": "59.98",
            })]
        );
        assert!(app.outbox_events::<OrderRejected>().await.is_empty());
    }

    async fn only_the_products_service_confirms_or_prices_an_order(db) {
        let app = spawn_app(db).await;
        let product = Uuid::now_v7();
        let order = id_of(&app.place(&app.alice, &[(product, 1)]).await);
        let before = app.order(&app.alice, order).await;
        for status in ["confirmed", "rejected", "pending"] {
            let response = app
                .patch_json(&format!("/api/orders/{order}"), &json!({"status": status}), Some(&app.admin.token))
                .await;
            assert_eq!(invalid_fields(response).await, ["status"]);
        }
        assert_eq!(app.order(&app.alice, order).await, before);
        assert!(app.outbox_events::<OrderConfirmed>().await.is_empty());
    }

    async fn a_refusal_rejects_the_order_with_its_reason_and_no_prices(db) {
        let app = spawn_app(db).await;
        let reasons = [
            (RejectionReason::InsufficientStock, "insufficient_stock"),
            (RejectionReason::UnknownProduct, "unknown_product"),
            (RejectionReason::ProductUnavailable, "product_unavailable"),
        ];
        let mut expected_events = Vec::new();
        for (reason, wire) in reasons {
            let (kept, blamed) = (Uuid::now_v7(), Uuid::now_v7());
            let order = id_of(&app.place(&app.bob, &[(kept, 1), (blamed, 2)]).await);
            assert_eq!(
                applied(&app, &rejected(order, 1, reason, Some(blamed))).await,
                settled_rejected(wire)
            );
            let view = app.order(&app.bob, order).await;
            assert_order_shape(&view);
            assert_eq!(view["status"], "rejected");
            assert_eq!(view["rejectionReason"], wire);
            assert_eq!(view["total"], Value::Null);
            assert_eq!(view["lastUpdateRejection"], Value::Null);
            assert_eq!(view["version"], 2);
            assert_eq!(
                view["items"],
                json!([
                    {"productId": kept, "quantity": 1, "unitPrice": null, "name": null},
                    {"productId": blamed, "quantity": 2, "unitPrice": null, "name": null},
                ])
            );
            expected_events.push(json!({
                "orderId": order,
                "userId": app.bob.id,
                "status": "rejected",
                "total": null,
                "reason": wire,
            }));
            // A rejected order is final: it cannot be cancelled.
            let response = app.delete(&format!("/api/orders/{order}"), Some(&app.bob.token)).await;
            problem(response, StatusCode::CONFLICT, "invalid_state").await;
        }
        assert_eq!(app.outbox_events::<OrderRejected>().await, expected_events);
        assert!(app.outbox_events::<OrderConfirmed>().await.is_empty());
    }

    async fn a_reserved_item_change_reprices_the_order_and_clears_an_earlier_refusal(db) {
        let app = spawn_app(db).await;
        let (a, b, c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let order = confirmed_order(&app, &app.alice, &[(a, 2, "5.00"), (b, 1, "1.00")]).await;

        // A first change is refused, so that there is a refusal for the next one to clear.
        change_items(&app, &app.alice, order, &[(a, 99)]).await;
        let refusal = rejected(order, 3, RejectionReason::InsufficientStock, None);
        assert_eq!(applied(&app, &refusal).await, change_refused("insufficient_stock"));
        let refused = app.order(&app.alice, order).await;
        assert_eq!(
            refused["lastUpdateRejection"],
            json!({"reason": "insufficient_stock", "productId": null, "at": refused["updatedAt"]})
        );
        assert_eq!(refused["version"], 4);

        // The second change: pending, unpriced, and `order.updated` for version 5.
        let pending = change_items(&app, &app.alice, order, &[(a, 1), (c, 4)]).await;
        assert_eq!(pending["status"], "pending");
        assert_eq!(pending["version"], 5);
        assert_eq!(pending["total"], Value::Null);
        assert_eq!(
            pending["items"],
            json!([
                {"productId": a, "quantity": 1, "unitPrice": null, "name": null},
                {"productId": c, "quantity": 4, "unitPrice": null, "name": null},
            ])
        );
        let updates = app.outbox_events::<OrderUpdated>().await;
        assert_eq!(updates.len(), 2, "one order.updated per change: {updates:?}");
        assert_eq!(
            updates[1],
            json!({
                "orderId": order,
                "userId": app.alice.id,
                "orderVersion": 5,
                "items": [{"productId": a, "quantity": 1}, {"productId": c, "quantity": 4}],
            })
        );

        let answer = reserved(order, 5, &[(a, 1, "6.00"), (c, 4, "2.50")]);
        assert_eq!(applied(&app, &answer).await, settled_confirmed());
        let view = app.order(&app.alice, order).await;
        assert_order_shape(&view);
        assert_eq!(view["status"], "confirmed");
        assert_eq!(view["items"], priced_items(&[(a, 1, "6.00"), (c, 4, "2.50")]));
        assert_eq!(view["total"], "16.00");
        assert_eq!(view["version"], 6);
        assert_eq!(view["lastUpdateRejection"], Value::Null);
        assert_eq!(view["rejectionReason"], Value::Null);

        let confirmations = app.outbox_events::<OrderConfirmed>().await;
        let status = |total: &str| json!({
            "orderId": order, "userId": app.alice.id, "status": "confirmed", "total": total,
        });
        let mut refused_event = status("11.00");
        refused_event["reason"] = json!("insufficient_stock");
        assert_eq!(confirmations, vec![status("11.00"), refused_event, status("16.00")]);
    }

    async fn a_refused_item_change_restores_the_previous_items_and_says_why(db) {
        let app = spawn_app(db).await;
        let (a, b, c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let order = confirmed_order(&app, &app.bob, &[(a, 2, "10.00"), (b, 1, "0.99")]).await;
        let before = app.order(&app.bob, order).await;
        assert_eq!(before["total"], "20.99");

        let pending = change_items(&app, &app.bob, order, &[(a, 500), (c, 1)]).await;
        assert_eq!((pending["status"].clone(), pending["version"].clone()), (json!("pending"), json!(3)));
        // While the change is pending, a second one is refused.
        let again = app.patch_json(
            &format!("/api/orders/{order}"),
            &order_body(&[(a, 1)]),
            Some(&app.bob.token),
        ).await;
        problem(again, StatusCode::CONFLICT, "update_in_progress").await;

        let refusal = rejected(order, 3, RejectionReason::InsufficientStock, Some(a));
        assert_eq!(applied(&app, &refusal).await, change_refused("insufficient_stock"));

        let view = app.order(&app.bob, order).await;
        assert_order_shape(&view);
        assert_eq!(view["status"], "confirmed");
        assert_eq!(view["items"], before["items"]);
        assert_eq!(view["items"], priced_items(&[(a, 2, "10.00"), (b, 1, "0.99")]));
        assert_eq!(view["total"], "20.99");
        assert_eq!(view["version"], 4);
        assert_eq!(view["rejectionReason"], Value::Null);
        assert_eq!(
            view["lastUpdateRejection"],
            json!({"reason": "insufficient_stock", "productId": a, "at": view["updatedAt"]})
        );

        let confirmations = of_order(app.outbox_events::<OrderConfirmed>().await, order);
        assert_eq!(
            confirmations,
            vec![
                json!({"orderId": order, "userId": app.bob.id, "status": "confirmed", "total": "20.99"}),
                json!({
                    "orderId": order,
                    "userId": app.bob.id,
                    "status": "confirmed",
                    "total": "20.99",
                    "reason": "insufficient_stock",
                }),
            ]
        );
        assert!(app.outbox_events::<OrderRejected>().await.is_empty());

        // The restored order is confirmed for good: it can change again, ship and deliver.
        let response = app
            .patch_json(&format!("/api/orders/{order}"), &json!({"status": "shipped"}), Some(&app.admin.token))
            .await;
        let shipped = json_body(response, StatusCode::OK).await;
        assert_eq!(shipped["status"], "shipped");
        assert_eq!(shipped["total"], "20.99");
    }

    async fn a_release_of_a_cancelled_order_is_recorded_and_a_held_cancel_answers_at_once(db) {
        let app = spawn_app(db).await;
        let product = Uuid::now_v7();
        let order = confirmed_order(&app, &app.alice, &[(product, 2, "3.00")]).await;
        let response = app.delete(&format!("/api/orders/{order}"), Some(&app.alice.token)).await;
        let cancelled = json_body(response, StatusCode::OK).await;
        assert_eq!((cancelled["status"].clone(), cancelled["version"].clone()), (json!("cancelled"), json!(3)));
        assert!(!stock_released(&app, order).await);

        assert_eq!(applied(&app, &released(order, &[(product, 2)])).await, Outcome::Released);
        assert!(stock_released(&app, order).await);
        // A release is news once: the same release published again changes nothing.
        let view = app.order(&app.alice, order).await;
        assert_eq!(applied(&app, &released(order, &[(product, 2)])).await, Outcome::Ignored);
        assert_eq!(app.order(&app.alice, order).await, view);
        assert_eq!(view["status"], "cancelled");
        assert_eq!(view["version"], 3, "a release does not change the order itself");

        // A cancel held until the stock is back answers at once: it is back already.
        let started = Instant::now();
        let response = app
            .send_as(&app.alice, Method::POST, &format!("/api/orders/{order}/cancel"), None, &[("Prefer", "wait=30")])
            .await;
        let took = started.elapsed();
        let (status, headers, body) = parts(response).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(took < PROMPTLY, "a held cancel of a released order took {took:?}");
        assert_eq!(headers.get("preference-applied").and_then(|v| v.to_str().ok()), Some("wait=30"));
        let body: Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(body, view);
        // Only the first cancel caused an event.
        assert_eq!(
            of_order(app.outbox_events::<OrderCancelled>().await, order),
            vec![json!({"orderId": order, "userId": app.alice.id, "orderVersion": 3})]
        );
    }

    async fn a_release_of_an_order_that_is_not_cancelled_is_ignored(db) {
        let app = spawn_app(db).await;
        let product = Uuid::now_v7();
        let pending = id_of(&app.place(&app.alice, &[(product, 1)]).await);
        let confirmed = confirmed_order(&app, &app.alice, &[(product, 1, "1.00")]).await;
        for order in [pending, confirmed] {
            let before = app.order(&app.alice, order).await;
            assert_eq!(applied(&app, &released(order, &[(product, 1)])).await, Outcome::Ignored);
            assert_eq!(app.order(&app.alice, order).await, before);
            assert!(!stock_released(&app, order).await);
        }
        // Cancelled later, the order's stock is not "back" until a release for it arrives.
        app.delete(&format!("/api/orders/{pending}"), Some(&app.alice.token)).await;
        assert!(!stock_released(&app, pending).await);
        assert_eq!(applied(&app, &released(pending, &[(product, 1)])).await, Outcome::Released);
        assert!(stock_released(&app, pending).await);
    }

    async fn a_held_cancel_is_answered_when_the_release_arrives(db) {
        let app = spawn_app(db).await;
        let product = Uuid::now_v7();
        let order = confirmed_order(&app, &app.bob, &[(product, 1, "2.00")]).await;
        let request = send_in_background(
            &app,
            &app.bob,
            Method::DELETE,
            format!("/api/orders/{order}"),
            None,
            vec![("Prefer", "wait=30")],
        );
        until_held(&app).await;
        assert_eq!(app.order(&app.bob, order).await["status"], "cancelled");
        assert_eq!(applied(&app, &released(order, &[(product, 1)])).await, Outcome::Released);
        let (status, headers, body) = answered(request, "a cancel held for its release").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(headers.get("preference-applied").and_then(|v| v.to_str().ok()), Some("wait=30"));
        assert_eq!(body["status"], "cancelled");
        assert_eq!(body["version"], 3);
    }

    async fn a_held_placement_is_answered_when_the_reservation_arrives(db) {
        let app = spawn_app(db).await;
        let product = Uuid::now_v7();
        let request = send_in_background(
            &app,
            &app.alice,
            Method::POST,
            "/api/orders".to_owned(),
            Some(order_body(&[(product, 2)])),
            vec![("Prefer", "wait=30")],
        );
        let placed = until_placed_and_held(&app).await;
        assert_eq!(placed.len(), 1);
        let order = Uuid::parse_str(&text(&placed[0]["orderId"])).expect("an order id");
        assert_eq!(applied(&app, &reserved(order, 1, &[(product, 2, "4.25")])).await, settled_confirmed());

        let (status, headers, body) = answered(request, "a placement held for its reservation").await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(headers.get("preference-applied").and_then(|v| v.to_str().ok()), Some("wait=30"));
        assert_eq!(headers.get("location").and_then(|v| v.to_str().ok()), Some(format!("/api/orders/{order}").as_str()));
        assert_eq!(body, app.order(&app.alice, order).await);
        assert_eq!(body["status"], "confirmed");
        assert_eq!(body["total"], "8.50");
        assert!(app.service.waiters().is_empty(), "the held request unregistered");
    }

    async fn a_held_item_change_is_answered_when_the_refusal_arrives(db) {
        let app = spawn_app(db).await;
        let product = Uuid::now_v7();
        let order = confirmed_order(&app, &app.alice, &[(product, 1, "7.00")]).await;
        let request = send_in_background(
            &app,
            &app.alice,
            Method::PATCH,
            format!("/api/orders/{order}"),
            Some(order_body(&[(product, 9)])),
            vec![("Prefer", "wait=30")],
        );
        until_held(&app).await;
        let refusal = rejected(order, 3, RejectionReason::InsufficientStock, Some(product));
        assert_eq!(applied(&app, &refusal).await, change_refused("insufficient_stock"));
        let (status, _, body) = answered(request, "an item change held for its answer").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["status"], "confirmed");
        assert_eq!(body["items"], priced_items(&[(product, 1, "7.00")]));
        assert_eq!(body["lastUpdateRejection"]["productId"], product.to_string());
        assert_eq!(body["version"], 4);
    }

    async fn an_answer_about_an_unknown_order_is_ignored_and_changes_nothing(db) {
        let app = spawn_app(db).await;
        let product = Uuid::now_v7();
        let order = id_of(&app.place(&app.alice, &[(product, 1)]).await);
        let before = app.order(&app.alice, order).await;
        let unknown = Uuid::now_v7();
        let answers = [
            reserved(unknown, 1, &[(product, 1, "1.00")]),
            rejected(unknown, 1, RejectionReason::UnknownProduct, Some(product)),
            released(unknown, &[(product, 1)]),
        ];
        for answer in &answers {
            assert_eq!(applied(&app, answer).await, Outcome::Ignored, "{}", answer.event_type);
        }
        assert_eq!(app.order_count().await, 1);
        assert_eq!(app.order(&app.alice, order).await, before);
        assert!(app.outbox_events::<OrderConfirmed>().await.is_empty());
        assert!(app.outbox_events::<OrderRejected>().await.is_empty());
        let status = app.get(&format!("/api/orders/{unknown}"), Some(&app.admin.token)).await.status();
        assert_eq!(status, StatusCode::NOT_FOUND);
        // The order that does exist still takes its own answer.
        assert_eq!(applied(&app, &reserved(order, 1, &[(product, 1, "1.00")])).await, settled_confirmed());
    }
}

mercato_testkit::backend_tests! {
    async fn a_held_placement_is_answered_when_the_order_is_cancelled_meanwhile(db) {
        let app = spawn_app(db).await;
        let product = Uuid::now_v7();
        let request = send_in_background(
            &app,
            &app.alice,
            Method::POST,
            "/api/orders".to_owned(),
            Some(order_body(&[(product, 1)])),
            vec![("Prefer", "wait=30")],
        );
        let placed = until_placed_and_held(&app).await;
        let order = Uuid::parse_str(&text(&placed[0]["orderId"])).expect("an order id");
        // The owner cancels from another request: the order has left `pending`.
        let response = app.delete(&format!("/api/orders/{order}"), Some(&app.alice.token)).await;
        assert_eq!(json_body(response, StatusCode::OK).await["status"], "cancelled");

        let (status, _, body) = answered(request, "a placement held while it was cancelled").await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["status"], "cancelled");
    }
}

backend_tests! {
    async fn a_held_placement_is_answered_when_another_instance_applies_the_answer(db) {
        // Several instances of the service share the `orders-saga` consumer: the one that
        // applies an answer is not always the one holding the request. The holding instance
        // hears of it through the wake-ups the instances share on the bus.
        let app = spawn_app(db).await;
        let dir = tempfile::tempdir().expect("a temp dir");
        let log = mercato_bus::embedded::EmbeddedLog::open(&dir.path().join("events.db"))
            .await
            .expect("the event log opens");
        let bus: std::sync::Arc<dyn mercato_bus::EventBus> = std::sync::Arc::new(log);
        let (stop, stopping) = tokio::sync::watch::channel(false);
        let prefix = "waking";
        let verifier = mercato_platform::auth::TokenVerifier::with_keys(ISSUER, &app.keys.jwks())
            .expect("a verifier");
        let other = mercato_orders::OrdersService::start(app.database.clone(), verifier)
            .await
            .expect("a second instance starts");
        for instance in [app.service.clone(), other.clone()] {
            tokio::spawn(instance.share_wake_ups(bus.clone(), prefix.to_owned(), stopping.clone()));
        }
        let product = Uuid::now_v7();
        let request = send_in_background(
            &app,
            &app.bob,
            Method::POST,
            "/api/orders".to_owned(),
            Some(order_body(&[(product, 1)])),
            vec![("Prefer", "wait=30")],
        );
        let placed = until_placed_and_held(&app).await;
        let order = Uuid::parse_str(&text(&placed[0]["orderId"])).expect("an order id");

        // The second instance's consumer applies the answer, as `TestApp::answer` does, and
        // wakes the requests held for the order: its own, and through the bus, the first's.
        let answer = reserved(order, 1, &[(product, 1, "2.00")]);
        let mut tx = app.database.begin().await.expect("a transaction");
        let new = mercato_bus::consumer::record_in_inbox(&app.database, &mut tx, "orders-saga", &answer.id)
            .await
            .expect("the inbox takes the id");
        assert!(new);
        let outcome = other.saga().apply(&mut tx, &answer).await.expect("applied");
        tx.commit().await.expect("committed");
        assert_eq!(outcome, settled_confirmed());
        other.saga_committed(&answer);
        // A signal reaches only the instances tailing at that moment (the first one's tail
        // starts in a task of its own): wake-ups are hints, so sending it again is harmless.
        while !request.is_finished() {
            tokio::time::sleep(Duration::from_millis(100)).await;
            other.saga_committed(&answer);
        }

        let (status, _, body) = answered(request, "a placement held on another instance").await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["status"], "confirmed");
        let _ = stop.send(true);
    }
}

backend_tests! {
    async fn answers_applied_together_end_as_if_applied_one_by_one(db) {
        let app = spawn_app(db).await;
        let (mug, tea) = (Uuid::now_v7(), Uuid::now_v7());
        let placed_first = app.place(&app.alice, &[(mug, 2)]).await;
        let first = id_of(&placed_first);
        let second = id_of(&app.place(&app.bob, &[(tea, 1)]).await);
        let stale = id_of(&app.place(&app.alice, &[(tea, 3)]).await);
        let last = id_of(&app.place(&app.bob, &[(mug, 1), (tea, 1)]).await);
        let unknown = Uuid::now_v7();
        let batch = [
            reserved(first, 1, &[(mug, 2, "4.25")]),
            rejected(second, 1, RejectionReason::InsufficientStock, Some(tea)),
            reserved(stale, 2, &[(tea, 3, "1.00")]),
            reserved(unknown, 1, &[(tea, 1, "1.00")]),
            reserved(last, 1, &[(mug, 1, "4.25"), (tea, 1, "1.00")]),
        ];

        let outcomes = app.answer_together(&batch).await.expect("not declined");
        assert_eq!(
            outcomes,
            vec![
                settled_confirmed(),
                settled_rejected("insufficient_stock"),
                Outcome::Ignored,
                Outcome::Ignored,
                settled_confirmed(),
            ]
        );
        let first = app.order(&app.alice, first).await;
        assert_eq!((first["status"].clone(), first["total"].clone()), (json!("confirmed"), json!("8.50")));
        // What the change does not touch is kept; what it does is all written.
        for kept in ["id", "userId", "createdAt", "shippingAddress", "paymentMethod"] {
            assert_eq!(first[kept], placed_first[kept], "{kept}");
        }
        assert_eq!(first["version"], 2);
        assert_eq!(first["items"], json!([{"productId": mug, "quantity": 2, "unitPrice": "4.25", "name": "Product 0"}]));
        assert_eq!(app.order(&app.bob, second).await["status"], "rejected");
        assert_eq!(app.order(&app.alice, stale).await["status"], "pending");
        let last = app.order(&app.bob, last).await;
        assert_eq!((last["status"].clone(), last["total"].clone()), (json!("confirmed"), json!("5.25")));
        // The events one by one would have written, in the same order.
        let confirmed: Vec<Value> = app
            .outbox_events::<OrderConfirmed>()
            .await
            .iter()
            .map(|event| json!([event["orderId"], event["total"]]))
            .collect();
        assert_eq!(confirmed, vec![json!([first["id"], "8.50"]), json!([last["id"], "5.25"])]);
        let refused = app.outbox_events::<OrderRejected>().await;
        assert_eq!(refused.len(), 1);
        assert_eq!(refused[0]["reason"], "insufficient_stock");
        // The same answers again change nothing (each order has left the version it awaited).
        let again: Vec<Envelope<Value>> = batch.iter().map(republished).collect();
        let outcomes = app.answer_together(&again).await.expect("not declined");
        assert!(outcomes.iter().all(|outcome| *outcome == Outcome::Ignored), "{outcomes:?}");
        assert_eq!(app.outbox_events::<OrderConfirmed>().await.len(), 2);
    }

    async fn a_batch_with_a_release_or_two_answers_for_one_order_is_declined(db) {
        let app = spawn_app(db).await;
        let mug = Uuid::now_v7();
        let order = id_of(&app.place(&app.alice, &[(mug, 1)]).await);
        let twice = [reserved(order, 1, &[(mug, 1, "1.00")]), reserved(order, 1, &[(mug, 1, "1.00")])];
        assert_eq!(app.answer_together(&twice).await, None);
        let with_release = [reserved(order, 1, &[(mug, 1, "1.00")]), released(order, &[])];
        assert_eq!(app.answer_together(&with_release).await, None);
        assert_eq!(app.order(&app.alice, order).await["status"], "pending", "nothing was written");
        assert!(app.outbox_events::<OrderConfirmed>().await.is_empty());
    }
}
