//! `POST /api/products/:id/inventory`: an admin moves stock by `{delta}` or sets `{stock}`;
//! every change is an `inventory.updated` adjustment and a new version.

use mercato_contracts::{InventoryUpdated, ProductUpdated};
use mercato_testkit::backend_tests;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::harness::*;

const LONG_AGO: i64 = 1_700_000_000_000;
const LONG_AGO_TEXT: &str = "2023-11-14T22:13:20.000Z";

fn inventory(id: Uuid) -> String {
    format!("/api/products/{id}/inventory")
}

/// The `inventory.updated` events of one product, oldest first.
async fn changes(app: &TestApp, id: Uuid) -> Vec<Value> {
    app.outbox_events::<InventoryUpdated>()
        .await
        .into_iter()
        .filter(|event| event["productId"] == id.to_string())
        .collect()
}

fn adjustment(id: Uuid, stock: i64, delta: i64) -> Value {
    json!({"productId": id, "stock": stock, "delta": delta, "reason": "adjustment"})
}

/// `POST .../inventory` as admin: the `ETag` and the product, `200` expected.
async fn adjust(app: &TestApp, id: Uuid, body: Value) -> (Option<String>, Value) {
    tagged_body(app.post_json(&inventory(id), &body, Some(&app.admin)).await, StatusCode::OK).await
}

backend_tests! {
    async fn a_delta_moves_stock_and_a_stock_sets_it(db) {
        let app = spawn_app(db).await;
        let id = app.product_with_stock("Mug", 10).await;
        app.backdate(id, LONG_AGO).await;
        let before = app.product(id).await;

        let (etag, added) = adjust(&app, id, json!({"delta": 5})).await;
        assert_product_shape(&added);
        assert_eq!(etag.as_deref(), Some("\"2\""));
        let mut expected = before.clone();
        expected["stock"] = json!(15);
        expected["version"] = json!(2);
        expected["updatedAt"] = added["updatedAt"].clone();
        assert_eq!(added, expected);
        assert!(text(&added["updatedAt"]).as_str() > LONG_AGO_TEXT, "updatedAt moved on: {added}");
        assert_eq!(added["createdAt"], LONG_AGO_TEXT);

        let (etag, removed) = adjust(&app, id, json!({"delta": -3})).await;
        assert_eq!((etag.as_deref(), &removed["stock"], &removed["version"]), (Some("\"3\""), &json!(12), &json!(3)));

        let (etag, set) = adjust(&app, id, json!({"stock": 7})).await;
        assert_eq!((etag.as_deref(), &set["stock"], &set["version"]), (Some("\"4\""), &json!(7), &json!(4)));

        let (etag, raised) = adjust(&app, id, json!({"stock": 20})).await;
        assert_eq!((etag.as_deref(), &raised["stock"], &raised["version"]), (Some("\"5\""), &json!(20), &json!(5)));

        // What the answers said is what is stored and shown.
        assert_eq!(app.stock(id).await, 20);
        let (etag, read) = tagged_body(app.get(&format!("/api/products/{id}"), None).await, StatusCode::OK).await;
        assert_eq!(etag.as_deref(), Some("\"5\""));
        assert_eq!(read, raised);
        // Only stock moved.
        for member in ["id", "sku", "name", "description", "category", "price", "active", "createdAt"] {
            assert_eq!(read[member], before[member], "{member}");
        }

        assert_eq!(
            changes(&app, id).await,
            vec![
                adjustment(id, 10, 10),
                adjustment(id, 15, 5),
                adjustment(id, 12, -3),
                adjustment(id, 7, -5),
                adjustment(id, 20, 13),
            ]
        );
        assert!(app.outbox_events::<ProductUpdated>().await.is_empty());
    }

    async fn stock_may_be_set_from_zero_and_to_zero(db) {
        let app = spawn_app(db).await;
        let id = app.product_with_stock("Empty", 0).await;
        let (_, set) = adjust(&app, id, json!({"stock": 4})).await;
        assert_eq!((&set["stock"], &set["version"]), (&json!(4), &json!(2)));
        let (_, emptied) = adjust(&app, id, json!({"delta": -4})).await;
        assert_eq!((&emptied["stock"], &emptied["version"]), (&json!(0), &json!(3)));
        let (_, max) = adjust(&app, id, json!({"stock": 1_000_000_000})).await;
        assert_eq!((&max["stock"], &max["version"]), (&json!(1_000_000_000), &json!(4)));
        let (_, zero) = adjust(&app, id, json!({"stock": 0})).await;
        assert_eq!((&zero["stock"], &zero["version"]), (&json!(0), &json!(5)));
        assert_eq!(
            changes(&app, id).await,
            vec![
                adjustment(id, 4, 4),
                adjustment(id, 0, -4),
                adjustment(id, 1_000_000_000, 1_000_000_000),
                adjustment(id, 0, -1_000_000_000),
            ]
        );
    }

    async fn a_change_of_nothing_keeps_the_version(db) {
        let app = spawn_app(db).await;
        let id = app.product_with_stock("Mug", 6).await;
        app.backdate(id, LONG_AGO).await;
        let before = app.product(id).await;
        for body in [json!({"delta": 0}), json!({"stock": 6})] {
            let (etag, answer) = adjust(&app, id, body.clone()).await;
            assert_eq!(etag.as_deref(), Some("\"1\""), "{body}");
            assert_eq!(answer, before, "{body}");
        }
        assert_eq!(app.product(id).await, before);
        assert_eq!(app.product(id).await["updatedAt"], LONG_AGO_TEXT);
        assert_eq!(changes(&app, id).await, vec![adjustment(id, 6, 6)]);
    }

    async fn stock_never_goes_below_zero(db) {
        let app = spawn_app(db).await;
        let id = app.product_with_stock("Scarce", 2).await;
        let before = app.product(id).await;
        for delta in [-3, -1_000_000_000] {
            let answer = app.post_json(&inventory(id), &json!({"delta": delta}), Some(&app.admin)).await;
            problem(answer, StatusCode::CONFLICT, "insufficient_stock").await;
        }
        assert_eq!(app.product(id).await, before);
        assert_eq!(app.stock(id).await, 2);
        assert_eq!(changes(&app, id).await, vec![adjustment(id, 2, 2)]);

        // Down to exactly zero is fine; one more is not.
        let (_, emptied) = adjust(&app, id, json!({"delta": -2})).await;
        assert_eq!((&emptied["stock"], &emptied["version"]), (&json!(0), &json!(2)));
        let answer = app.post_json(&inventory(id), &json!({"delta": -1}), Some(&app.admin)).await;
        problem(answer, StatusCode::CONFLICT, "insufficient_stock").await;
        assert_eq!(app.product(id).await, emptied);
        assert_eq!(changes(&app, id).await, vec![adjustment(id, 2, 2), adjustment(id, 0, -2)]);
    }

    async fn exactly_one_whole_delta_or_stock_in_range_is_accepted(db) {
        let app = spawn_app(db).await;
        let id = app.product_with_stock("Mug", 10).await;
        let before = app.product(id).await;

        // Both or neither: refused, naming one of the two.
        for body in [json!({}), json!({"delta": 1, "stock": 1}), json!({"delta": null, "stock": null}), json!({"other": 1})] {
            let fields = invalid_fields(app.post_json(&inventory(id), &body, Some(&app.admin)).await).await;
            assert!(
                !fields.is_empty() && fields.iter().all(|field| field == "delta" || field == "stock"),
                "{body}: {fields:?}"
            );
        }
        let cases: Vec<(Value, Vec<&str>)> = vec![
            (json!({"delta": 1.5}), vec!["delta"]),
            (json!({"delta": -0.5}), vec!["delta"]),
            (json!({"delta": "5"}), vec!["delta"]),
            (json!({"delta": true}), vec!["delta"]),
            (json!({"delta": [1]}), vec!["delta"]),
            (json!({"stock": -1}), vec!["stock"]),
            (json!({"stock": 2.5}), vec!["stock"]),
            (json!({"stock": "7"}), vec!["stock"]),
            (json!({"stock": 1_000_000_001}), vec!["stock"]),
        ];
        for (body, expected) in cases {
            let fields = invalid_fields(app.post_json(&inventory(id), &body, Some(&app.admin)).await).await;
            assert_eq!(fields, expected, "{body}");
        }
        // A delta that would take stock over the most a product may have.
        let answer = app.post_json(&inventory(id), &json!({"delta": 999_999_991}), Some(&app.admin)).await;
        problem(answer, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;

        assert_eq!(app.product(id).await, before);
        assert_eq!(changes(&app, id).await, vec![adjustment(id, 10, 10)]);

        // Up to exactly the most is fine.
        let (_, max) = adjust(&app, id, json!({"delta": 999_999_990})).await;
        assert_eq!(max["stock"], 1_000_000_000);
    }

    async fn inventory_needs_an_admin_a_known_product_and_the_current_version(db) {
        let app = spawn_app(db).await;
        let id = app.product_with_stock("Mug", 10).await;
        let before = app.product(id).await;
        let body = json!({"delta": 5});

        let answer = app.post_json(&inventory(id), &body, Some(&app.customer)).await;
        problem(answer, StatusCode::FORBIDDEN, "forbidden").await;
        let answer = app.post_json(&inventory(id), &json!({"delta": "x"}), Some(&app.customer)).await;
        problem(answer, StatusCode::FORBIDDEN, "forbidden").await;
        let answer = app.post_json(&inventory(id), &body, None).await;
        problem(answer, StatusCode::UNAUTHORIZED, "unauthenticated").await;
        let answer = app.post_json(&inventory(Uuid::now_v7()), &body, Some(&app.admin)).await;
        problem(answer, StatusCode::NOT_FOUND, "not_found").await;
        let answer = app.post_json("/api/products/nope/inventory", &body, Some(&app.admin)).await;
        problem(answer, StatusCode::BAD_REQUEST, "bad_request").await;
        for stale in ["\"2\"", "\"0\"", "W/\"1\""] {
            let answer = app.send_if_match(Method::POST, &inventory(id), Some(&body), stale).await;
            problem(answer, StatusCode::PRECONDITION_FAILED, "version_mismatch").await;
        }
        assert_eq!(app.product(id).await, before);
        assert_eq!(changes(&app, id).await, vec![adjustment(id, 10, 10)]);

        // The current version, or `*`, is accepted.
        let answer = app.send_if_match(Method::POST, &inventory(id), Some(&body), "\"1\"").await;
        let (etag, added) = tagged_body(answer, StatusCode::OK).await;
        assert_eq!((etag.as_deref(), &added["stock"], &added["version"]), (Some("\"2\""), &json!(15), &json!(2)));
        let answer = app.send_if_match(Method::POST, &inventory(id), Some(&json!({"stock": 1})), "\"1\"").await;
        problem(answer, StatusCode::PRECONDITION_FAILED, "version_mismatch").await;
        let answer = app.send_if_match(Method::POST, &inventory(id), Some(&json!({"stock": 1})), "*").await;
        let (etag, set) = tagged_body(answer, StatusCode::OK).await;
        assert_eq!((etag.as_deref(), &set["stock"], &set["version"]), (Some("\"3\""), &json!(1), &json!(3)));
        assert_eq!(changes(&app, id).await, vec![adjustment(id, 10, 10), adjustment(id, 15, 5), adjustment(id, 1, -14)]);
    }

    async fn a_stock_change_and_a_detail_change_share_one_version_sequence(db) {
        let app = spawn_app(db).await;
        let id = app.product_with_stock("Mug", 3).await;
        let (_, added) = adjust(&app, id, json!({"delta": 2})).await;
        assert_eq!(added["version"], 2);
        let path = format!("/api/products/{id}");
        let renamed = json_body(app.patch_json(&path, &json!({"name": "Cup"}), Some(&app.admin)).await, StatusCode::OK).await;
        assert_eq!((&renamed["version"], &renamed["stock"], &renamed["name"]), (&json!(3), &json!(5), &json!("Cup")));
        // The tag a stock change answered is stale once the name changed.
        let answer = app.send_if_match(Method::POST, &inventory(id), Some(&json!({"delta": 1})), "\"2\"").await;
        problem(answer, StatusCode::PRECONDITION_FAILED, "version_mismatch").await;
        let (etag, again) = adjust(&app, id, json!({"delta": 1})).await;
        assert_eq!((etag.as_deref(), &again["version"], &again["stock"], &again["name"]), (Some("\"4\""), &json!(4), &json!(6), &json!("Cup")));
    }

    async fn concurrent_adjustments_lose_no_unit_and_no_version(db) {
        let app = spawn_app(db).await;
        let id = app.product_with_stock("Busy", 100).await;
        let path = inventory(id);
        let deltas: Vec<i64> = (0..16).map(|n| if n % 2 == 0 { 3 } else { -1 }).collect();
        let bodies: Vec<Value> = deltas.iter().map(|delta| json!({"delta": delta})).collect();
        let answers = futures::future::join_all(
            bodies.iter().map(|body| app.post_json(&path, body, Some(&app.admin))),
        )
        .await;
        let mut versions = Vec::new();
        for answer in answers {
            let (etag, product) = tagged_body(answer, StatusCode::OK).await;
            let version = product["version"].as_i64().expect("a version");
            assert_eq!(etag, Some(format!("\"{version}\"")));
            versions.push(version);
        }
        versions.sort_unstable();
        assert_eq!(versions, (2..=17).collect::<Vec<i64>>(), "every change got its own version");
        let expected = 100 + deltas.iter().sum::<i64>();
        assert_eq!(app.stock(id).await, expected);
        let product = app.product(id).await;
        assert_eq!((&product["stock"], &product["version"]), (&json!(expected), &json!(17)));

        // The events, in the order recorded, chain from one stock to the next.
        let events = changes(&app, id).await;
        assert_eq!(events.len(), 17);
        let mut stock = 0;
        for event in &events {
            stock += event["delta"].as_i64().expect("a delta");
            assert_eq!(event["stock"], stock, "{events:?}");
            assert_eq!(event["reason"], "adjustment");
        }
        assert_eq!(stock, expected);
    }

    async fn concurrent_removals_never_oversell(db) {
        let app = spawn_app(db).await;
        let id = app.product_with_stock("Scarce", 5).await;
        let path = inventory(id);
        let body = json!({"delta": -2});
        let answers =
            futures::future::join_all((0..6).map(|_| app.post_json(&path, &body, Some(&app.admin)))).await;
        let mut ok = 0;
        for answer in answers {
            if answer.status() == StatusCode::OK {
                ok += 1;
                json_body(answer, StatusCode::OK).await;
            } else {
                problem(answer, StatusCode::CONFLICT, "insufficient_stock").await;
            }
        }
        assert_eq!(ok, 2, "two removals of 2 fit in 5");
        assert_eq!(app.stock(id).await, 1);
        assert_eq!(app.product(id).await["version"], 3);
    }
}
