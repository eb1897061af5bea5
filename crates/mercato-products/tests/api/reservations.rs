//! The reservation rules of the order saga, driven through the handler as the consumer drives
//! it: all or nothing, authoritative prices, item changes, cancels, duplicates and reordering,
//! concurrency, and a property test of conservation.

use std::collections::BTreeMap;
use std::sync::Arc;

use mercato_contracts::{
    InventoryRejected, InventoryReleased, InventoryReserved, InventoryUpdated, RejectionReason,
};
use mercato_products::reservations::Outcome;
use mercato_testkit::backend_tests;
use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::harness::*;

async fn applied(app: &TestApp, event: &mercato_contracts::Envelope<serde_json::Value>) -> Outcome {
    app.apply(event)
        .await
        .unwrap_or_else(|error| panic!("{} failed: {error}", event.event_type))
        .unwrap_or_else(|| panic!("{} was taken for a duplicate", event.event_type))
}

fn rejected(reason: RejectionReason, product: Uuid) -> Outcome {
    Outcome::Rejected { reason, product_id: Some(product) }
}

backend_tests! {
    async fn a_placement_reserves_every_line_at_the_authoritative_price(db) {
        let app = spawn_app(db).await;
        let mug = app.create_product(json!({"name": "Mug", "price": "4.50", "stock": 10})).await;
        let mug = Uuid::parse_str(&text(&mug["id"])).expect("an id");
        let tea = app.product_with_stock("Tea", 3).await;
        let order = Uuid::now_v7();

        assert_eq!(applied(&app, &placed(order, 1, &[(mug, 2), (tea, 3)])).await, Outcome::Reserved);
        assert_eq!((app.stock(mug).await, app.stock(tea).await), (8, 0));
        assert_eq!(app.held().await, BTreeMap::from([(mug, 2), (tea, 3)]));

        let reserved = app.outbox_events::<InventoryReserved>().await;
        assert_eq!(reserved.len(), 1);
        assert_eq!(reserved[0]["orderId"], order.to_string());
        assert_eq!(reserved[0]["orderVersion"], 1);
        assert_eq!(
            reserved[0]["items"],
            json!([
                {"productId": mug, "quantity": 2, "unitPrice": "4.50", "name": "Mug"},
                {"productId": tea, "quantity": 3, "unitPrice": "10.00", "name": "Tea"},
            ])
        );
        let changes: Vec<_> = app
            .outbox_events::<InventoryUpdated>()
            .await
            .into_iter()
            .filter(|change| change["reason"] == "reservation")
            .collect();
        assert_eq!(changes.len(), 2, "one stock change per product: {changes:?}");
        assert!(changes.contains(&json!({"productId": mug, "stock": 8, "delta": -2, "reason": "reservation"})));
        assert!(changes.contains(&json!({"productId": tea, "stock": 0, "delta": -3, "reason": "reservation"})));

        // The product's version moved with its stock.
        assert_eq!(app.product(mug).await["version"], 2);
    }

    async fn a_placement_that_one_line_cannot_cover_reserves_nothing(db) {
        let app = spawn_app(db).await;
        let plenty = app.product_with_stock("Plenty", 5).await;
        let scarce = app.product_with_stock("Scarce", 1).await;
        let order = Uuid::now_v7();

        let outcome = applied(&app, &placed(order, 1, &[(plenty, 2), (scarce, 2)])).await;
        assert_eq!(outcome, rejected(RejectionReason::InsufficientStock, scarce));
        assert_eq!((app.stock(plenty).await, app.stock(scarce).await), (5, 1));
        assert!(app.held().await.is_empty());
        let refusals = app.outbox_events::<InventoryRejected>().await;
        assert_eq!(
            refusals,
            vec![json!({"orderId": order, "orderVersion": 1, "reason": "insufficient_stock", "productId": scarce})]
        );
        assert!(app.outbox_events::<InventoryReserved>().await.is_empty());
    }

    async fn unknown_and_inactive_products_are_refused(db) {
        let app = spawn_app(db).await;
        let kept = app.product_with_stock("Kept", 5).await;
        let gone = app.product_with_stock("Gone", 5).await;
        let response = app.delete(&format!("/api/products/{gone}"), Some(&app.admin)).await;
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        let unknown = Uuid::now_v7();

        let outcome = applied(&app, &placed(Uuid::now_v7(), 1, &[(kept, 1), (unknown, 1)])).await;
        assert_eq!(outcome, rejected(RejectionReason::UnknownProduct, unknown));
        let outcome = applied(&app, &placed(Uuid::now_v7(), 1, &[(kept, 1), (gone, 1)])).await;
        assert_eq!(outcome, rejected(RejectionReason::ProductUnavailable, gone));
        assert_eq!((app.stock(kept).await, app.stock(gone).await), (5, 5));
    }

    async fn an_item_change_moves_the_reservation_all_or_nothing(db) {
        let app = spawn_app(db).await;
        let a = app.product_with_stock("A", 5).await;
        let b = app.product_with_stock("B", 5).await;
        let c = app.product_with_stock("C", 5).await;
        let order = Uuid::now_v7();
        assert_eq!(applied(&app, &placed(order, 1, &[(a, 2), (b, 1)])).await, Outcome::Reserved);

        // Down on A, B dropped, C added.
        assert_eq!(applied(&app, &updated(order, 2, &[(a, 1), (c, 3)])).await, Outcome::Reserved);
        assert_eq!((app.stock(a).await, app.stock(b).await, app.stock(c).await), (4, 5, 2));
        assert_eq!(app.held().await, BTreeMap::from([(a, 1), (c, 3)]));

        // Up beyond what C has left (2 more than the 3 held are there, 4 more are not): nothing
        // moves and the previous lines stay held.
        let outcome = applied(&app, &updated(order, 3, &[(a, 5), (c, 7)])).await;
        assert_eq!(outcome, rejected(RejectionReason::InsufficientStock, c));
        assert_eq!((app.stock(a).await, app.stock(b).await, app.stock(c).await), (4, 5, 2));
        assert_eq!(app.held().await, BTreeMap::from([(a, 1), (c, 3)]));

        // Up to exactly what is there: the held units count towards it.
        assert_eq!(applied(&app, &updated(order, 4, &[(a, 5), (c, 5)])).await, Outcome::Reserved);
        assert_eq!((app.stock(a).await, app.stock(c).await), (0, 0));

        let reserved = app.outbox_events::<InventoryReserved>().await;
        let versions: Vec<_> = reserved.iter().map(|event| event["orderVersion"].clone()).collect();
        assert_eq!(versions, [json!(1), json!(2), json!(4)]);
        let refused = app.outbox_events::<InventoryRejected>().await;
        assert_eq!(refused.len(), 1);
        assert_eq!(refused[0]["orderVersion"], 3);
    }

    async fn a_cancel_releases_exactly_what_the_order_holds(db) {
        let app = spawn_app(db).await;
        let a = app.product_with_stock("A", 5).await;
        let b = app.product_with_stock("B", 5).await;
        let order = Uuid::now_v7();
        applied(&app, &placed(order, 1, &[(a, 2), (b, 3)])).await;
        let other = Uuid::now_v7();
        applied(&app, &placed(other, 1, &[(a, 1)])).await;

        assert_eq!(applied(&app, &cancelled(order, 2)).await, Outcome::Released { units: 5 });
        assert_eq!((app.stock(a).await, app.stock(b).await), (4, 5));
        assert_eq!(app.held().await, BTreeMap::from([(a, 1)]), "the other order keeps its unit");
        let released = app.outbox_events::<InventoryReleased>().await;
        assert_eq!(released.len(), 1);
        assert_eq!(released[0]["orderId"], order.to_string());
        let mut items = released[0]["items"].as_array().cloned().unwrap_or_default();
        items.sort_by_key(|item| item["productId"].as_str().map(str::to_owned));
        let mut expected = vec![json!({"productId": a, "quantity": 2}), json!({"productId": b, "quantity": 3})];
        expected.sort_by_key(|item| item["productId"].as_str().map(str::to_owned));
        assert_eq!(items, expected);

        // Cancelled for good: a second cancel and any later change do nothing.
        assert_eq!(applied(&app, &cancelled(order, 3)).await, Outcome::Ignored);
        assert_eq!(applied(&app, &updated(order, 4, &[(a, 1)])).await, Outcome::Ignored);
        assert_eq!(app.stock(a).await, 4);
    }

    async fn a_cancel_that_overtakes_its_placement_leaves_a_mark(db) {
        let app = spawn_app(db).await;
        let a = app.product_with_stock("A", 5).await;
        let order = Uuid::now_v7();
        assert_eq!(applied(&app, &cancelled(order, 2)).await, Outcome::Released { units: 0 });
        let released = app.outbox_events::<InventoryReleased>().await;
        assert_eq!(released, vec![json!({"orderId": order, "items": []})]);

        assert_eq!(applied(&app, &placed(order, 1, &[(a, 2)])).await, Outcome::Ignored);
        assert_eq!(app.stock(a).await, 5);
        assert!(app.held().await.is_empty());
        assert!(app.outbox_events::<InventoryReserved>().await.is_empty());
    }

    async fn duplicates_and_stale_versions_change_nothing(db) {
        let app = spawn_app(db).await;
        let a = app.product_with_stock("A", 10).await;
        let order = Uuid::now_v7();
        let placement = placed(order, 1, &[(a, 2)]);
        assert_eq!(applied(&app, &placement).await, Outcome::Reserved);

        // The same event again (a redelivery): the inbox stops it.
        assert!(app.apply(&placement).await.expect("applies").is_none());
        // The same placement published twice under different ids: the version stops it.
        assert_eq!(applied(&app, &placed(order, 1, &[(a, 2)])).await, Outcome::Ignored);
        // A change, then an older change arriving late.
        assert_eq!(applied(&app, &updated(order, 3, &[(a, 4)])).await, Outcome::Reserved);
        assert_eq!(applied(&app, &updated(order, 2, &[(a, 1)])).await, Outcome::Ignored);
        assert_eq!(app.stock(a).await, 6);
        assert_eq!(app.held().await, BTreeMap::from([(a, 4)]));
        assert_eq!(app.outbox_events::<InventoryReserved>().await.len(), 2);
    }

    async fn an_item_change_that_arrives_before_its_placement_counts_as_the_placement(db) {
        let app = spawn_app(db).await;
        let a = app.product_with_stock("A", 10).await;
        let order = Uuid::now_v7();
        assert_eq!(applied(&app, &updated(order, 2, &[(a, 3)])).await, Outcome::Reserved);
        assert_eq!(applied(&app, &placed(order, 1, &[(a, 1)])).await, Outcome::Ignored);
        assert_eq!(app.stock(a).await, 7);
    }

    async fn malformed_order_events_are_refused_for_the_dead_letter_store(db) {
        let app = spawn_app(db).await;
        let a = app.product_with_stock("A", 10).await;
        for items in [vec![], vec![(a, 0)], vec![(a, 1), (a, 2)], vec![(a, 10_001)]] {
            let error = app.apply(&placed(Uuid::now_v7(), 1, &items)).await.expect_err("refused");
            assert!(
                matches!(error, mercato_bus::consumer::HandlerError::Reject(_)),
                "{items:?}: {error}"
            );
        }
        assert_eq!(app.stock(a).await, 10);
    }

    async fn concurrent_single_unit_orders_never_oversell(db) {
        let app = Arc::new(spawn_app(db).await);
        let product = app.product_with_stock("Hot item", 50).await;
        let attempts = (0..200).map(|_| {
            let app = app.clone();
            tokio::spawn(async move { app.apply(&placed(Uuid::now_v7(), 1, &[(product, 1)])).await })
        });
        let mut reserved = 0;
        let mut refused = 0;
        for outcome in futures::future::join_all(attempts).await {
            match outcome.expect("the task ran") {
                Ok(Some(Outcome::Reserved)) => reserved += 1,
                Ok(Some(Outcome::Rejected { reason: RejectionReason::InsufficientStock, .. })) => refused += 1,
                other => panic!("an attempt ended otherwise (a deadlock must not surface): {other:?}"),
            }
        }
        assert_eq!((reserved, refused), (50, 150));
        assert_eq!(app.stock(product).await, 0);
        assert_eq!(app.held().await.get(&product), Some(&50));
    }

    async fn concurrent_orders_over_overlapping_products_do_not_deadlock(db) {
        let app = Arc::new(spawn_app(db).await);
        let mut products = Vec::new();
        for name in ["P0", "P1", "P2", "P3", "P4"] {
            products.push(app.product_with_stock(name, 30).await);
        }
        // Every order names its lines in a different order; the handler locks in id order.
        let attempts = (0..60).map(|n: usize| {
            let app = app.clone();
            let items: Vec<(Uuid, i64)> = (0..3).map(|k| (products[(n + 4 * k) % 5], 1)).rev().collect();
            tokio::spawn(async move { app.apply(&placed(Uuid::now_v7(), 1, &items)).await })
        });
        for outcome in futures::future::join_all(attempts).await {
            match outcome.expect("the task ran") {
                Ok(Some(Outcome::Reserved | Outcome::Rejected { .. })) => {}
                other => panic!("an attempt ended otherwise: {other:?}"),
            }
        }
        let held = app.held().await;
        for product in &products {
            let left = app.stock(*product).await;
            assert!(left >= 0);
            assert_eq!(left + held.get(product).copied().unwrap_or(0), 30, "stock is conserved");
        }
    }
}

/// Moves the stocks with `products::add_stock_many` in a committed transaction of its own.
async fn move_stocks(app: &TestApp, deltas: &[(Uuid, i64)]) -> bool {
    let deltas: BTreeMap<Uuid, i64> = deltas.iter().copied().collect();
    let mut tx = app.database.begin().await.expect("a transaction");
    let moved = mercato_products::db::products::add_stock_many(
        &app.database,
        &mut tx,
        &deltas,
        mercato_platform::time::Timestamp::now(),
    )
    .await
    .expect("the update runs");
    tx.commit().await.expect("the commit");
    moved
}

async fn stocks_and_versions(app: &TestApp, products: &[Uuid]) -> Vec<(i64, i64)> {
    let mut found = Vec::new();
    for product in products {
        let version = app.product(*product).await["version"].as_i64().expect("a version");
        found.push((app.stock(*product).await, version));
    }
    found
}

/// The last `count` outbox rows, oldest first, as (subject, data).
async fn last_outbox_rows(app: &TestApp, count: usize) -> Vec<(String, serde_json::Value)> {
    let rows: Vec<(String, String)> = mercato_store::sqlx::query_as(
        app.database.sql("SELECT subject, payload FROM outbox ORDER BY sequence"),
    )
    .fetch_all(app.database.pool())
    .await
    .expect("the outbox is readable");
    rows[rows.len().saturating_sub(count)..]
        .iter()
        .map(|(subject, payload)| {
            let envelope: serde_json::Value = serde_json::from_str(payload).expect("an envelope");
            (subject.clone(), envelope["data"].clone())
        })
        .collect()
}

fn stock_change(
    product: Uuid,
    stock: i64,
    delta: i64,
    reason: &str,
) -> (String, serde_json::Value) {
    let data = json!({"productId": product, "stock": stock, "delta": delta, "reason": reason});
    ("inventory.updated".to_owned(), data)
}

backend_tests! {
    async fn moving_several_stocks_at_once_changes_exactly_those_products(db) {
        let app = spawn_app(db).await;
        let a = app.product_with_stock("A", 10).await;
        let b = app.product_with_stock("B", 5).await;
        let c = app.product_with_stock("C", 7).await;
        let untouched = app.product_with_stock("Untouched", 4).await;

        assert!(move_stocks(&app, &[(a, -3), (b, 2), (c, -7)]).await);
        assert_eq!(
            stocks_and_versions(&app, &[a, b, c, untouched]).await,
            [(7, 2), (7, 2), (0, 2), (4, 1)],
            "(stock, version) of each product"
        );
    }

    async fn moving_several_stocks_at_once_refuses_them_all_when_one_would_go_below_zero(db) {
        let app = spawn_app(db).await;
        let a = app.product_with_stock("A", 10).await;
        let b = app.product_with_stock("B", 5).await;
        let c = app.product_with_stock("C", 7).await;

        assert!(!move_stocks(&app, &[(a, -3), (b, -6), (c, 1)]).await, "B would go below zero");
        assert_eq!(stocks_and_versions(&app, &[a, b, c]).await, [(10, 1), (5, 1), (7, 1)]);
        assert!(!move_stocks(&app, &[(a, -1), (Uuid::now_v7(), 1)]).await, "an unknown product");
        assert_eq!(stocks_and_versions(&app, &[a, b, c]).await, [(10, 1), (5, 1), (7, 1)]);

        assert!(move_stocks(&app, &[(a, -10), (b, -5)]).await, "down to zero is allowed");
        assert_eq!(stocks_and_versions(&app, &[a, b, c]).await, [(0, 2), (0, 2), (7, 1)]);
    }

    async fn a_reservation_records_its_stock_changes_in_product_order_then_its_answer(db) {
        let app = spawn_app(db).await;
        // Created in this order, so their UUIDv7 ids (the lock order) are in this order too.
        let a = app.product_with_stock("A", 10).await;
        let b = app.product_with_stock("B", 10).await;
        let c = app.product_with_stock("C", 10).await;
        let order = Uuid::now_v7();

        let placement = placed(order, 1, &[(c, 1), (a, 2), (b, 1)]);
        assert_eq!(applied(&app, &placement).await, Outcome::Reserved);
        let rows = last_outbox_rows(&app, 4).await;
        assert_eq!(
            rows[..3],
            [
                stock_change(a, 8, -2, "reservation"),
                stock_change(b, 9, -1, "reservation"),
                stock_change(c, 9, -1, "reservation"),
            ]
        );
        assert_eq!(rows[3].0, "inventory.reserved");
        assert_eq!(rows[3].1["orderVersion"], 1);

        // Gives back some, takes more of another, in the same statement.
        let change = updated(order, 2, &[(a, 1), (b, 3)]);
        assert_eq!(applied(&app, &change).await, Outcome::Reserved);
        let rows = last_outbox_rows(&app, 4).await;
        assert_eq!(
            rows[..3],
            [
                stock_change(a, 9, 1, "release"),
                stock_change(b, 7, -2, "reservation"),
                stock_change(c, 10, 1, "release"),
            ]
        );
        assert_eq!(rows[3].0, "inventory.reserved");
        assert_eq!(rows[3].1["orderVersion"], 2);

        assert_eq!(applied(&app, &cancelled(order, 3)).await, Outcome::Released { units: 4 });
        let rows = last_outbox_rows(&app, 3).await;
        assert_eq!(
            rows[..2],
            [stock_change(a, 10, 1, "release"), stock_change(b, 10, 3, "release")]
        );
        assert_eq!(rows[2].0, "inventory.released");
        assert_eq!(
            rows[2].1["items"],
            json!([{"productId": a, "quantity": 1}, {"productId": b, "quantity": 3}])
        );
        assert_eq!(stocks_and_versions(&app, &[a, b, c]).await, [(10, 4), (10, 4), (10, 3)]);
    }
}

backend_tests! {
    async fn placements_reserved_together_end_as_if_reserved_one_by_one(db) {
        let app = spawn_app(db).await;
        let mug = app.product_with_stock("Mug", 5).await;
        let tea = app.product_with_stock("Tea", 2).await;
        let gone = app.product_with_stock("Gone", 5).await;
        let response = app.delete(&format!("/api/products/{gone}"), Some(&app.admin)).await;
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        let unknown = Uuid::now_v7();
        let orders: Vec<Uuid> = (0..6).map(|_| Uuid::now_v7()).collect();
        let placements = [
            placement(orders[0], &[(mug, 3)]),
            placement(orders[1], &[(mug, 3)]),
            placement(orders[2], &[(tea, 2), (mug, 2)]),
            placement(orders[3], &[(gone, 1)]),
            placement(orders[4], &[(unknown, 1)]),
            placement(orders[5], &[(tea, 1)]),
        ];

        let outcomes = app.reserve_together(&placements).await.expect("not declined");
        assert_eq!(
            outcomes,
            vec![
                Outcome::Reserved,
                rejected(RejectionReason::InsufficientStock, mug),
                Outcome::Reserved,
                rejected(RejectionReason::ProductUnavailable, gone),
                rejected(RejectionReason::UnknownProduct, unknown),
                rejected(RejectionReason::InsufficientStock, tea),
            ]
        );
        assert_eq!((app.stock(mug).await, app.stock(tea).await, app.stock(gone).await), (0, 0, 5));
        assert_eq!(app.held().await, BTreeMap::from([(mug, 5), (tea, 2)]));
        // The events one by one would have written, in the same order.
        let changes: Vec<_> = app
            .outbox_events::<InventoryUpdated>()
            .await
            .into_iter()
            .filter(|change| change["reason"] == "reservation")
            .collect();
        assert_eq!(
            changes,
            vec![
                json!({"productId": mug, "stock": 2, "delta": -3, "reason": "reservation"}),
                json!({"productId": mug, "stock": 0, "delta": -2, "reason": "reservation"}),
                json!({"productId": tea, "stock": 0, "delta": -2, "reason": "reservation"}),
            ]
        );
        let reserved = app.outbox_events::<InventoryReserved>().await;
        let reserved: Vec<_> = reserved.iter().map(|event| event["orderId"].clone()).collect();
        assert_eq!(reserved, vec![json!(orders[0]), json!(orders[2])]);
        let refused = app.outbox_events::<InventoryRejected>().await;
        let refused: Vec<_> =
            refused.iter().map(|event| (event["orderId"].clone(), event["reason"].clone())).collect();
        assert_eq!(
            refused,
            vec![
                (json!(orders[1]), json!("insufficient_stock")),
                (json!(orders[3]), json!("product_unavailable")),
                (json!(orders[4]), json!("unknown_product")),
                (json!(orders[5]), json!("insufficient_stock")),
            ]
        );
        // Every order has its row: a second placement of any of them changes nothing.
        for order in &orders {
            assert_eq!(applied(&app, &placed(*order, 1, &[(mug, 1)])).await, Outcome::Ignored);
        }
        // A cancel gives back exactly what the batch reserved for the order.
        assert_eq!(applied(&app, &cancelled(orders[2], 2)).await, Outcome::Released { units: 4 });
        assert_eq!((app.stock(mug).await, app.stock(tea).await), (2, 2));
    }

    async fn a_batch_naming_an_order_seen_before_is_declined_and_writes_nothing(db) {
        let app = spawn_app(db).await;
        let mug = app.product_with_stock("Mug", 5).await;
        let (seen, fresh) = (Uuid::now_v7(), Uuid::now_v7());
        // The cancel overtook its placement.
        assert_eq!(applied(&app, &cancelled(seen, 1)).await, Outcome::Released { units: 0 });
        let events_before = app.outbox_events::<InventoryReleased>().await.len();

        let batch = [placement(fresh, &[(mug, 1)]), placement(seen, &[(mug, 1)])];
        assert_eq!(app.reserve_together(&batch).await, None);
        assert_eq!(app.stock(mug).await, 5);
        assert_eq!(app.held().await, BTreeMap::new());
        assert!(app.outbox_events::<InventoryReserved>().await.is_empty());
        assert_eq!(app.outbox_events::<InventoryReleased>().await.len(), events_before);
        // One by one, as the consumer then applies them: the fresh one is reserved, the
        // cancelled one is not.
        assert_eq!(applied(&app, &placed(fresh, 1, &[(mug, 1)])).await, Outcome::Reserved);
        assert_eq!(applied(&app, &placed(seen, 1, &[(mug, 1)])).await, Outcome::Ignored);
        assert_eq!(app.stock(mug).await, 4);
    }
}
