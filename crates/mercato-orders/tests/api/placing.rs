//! `POST /api/orders`: who may place an order, what a placement answers and stores (the order and
//! its `order.placed`), every field rule, and `Prefer: wait` held until the saga answers.

use std::time::Duration;

use mercato_contracts::OrderPlaced;
use mercato_platform::auth::{Claims, Role};
use mercato_testkit::{backend_tests, wait_until};
use reqwest::header::LOCATION;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::harness::*;

fn address() -> Value {
    json!({
        "street": "1 Main St",
        "city": "Springfield",
        "zipCode": "12345",
        "state": "IL",
        "country": "US",
    })
}

/// The answer's fields, sorted: what a `422` names.
async fn sorted_fields(response: reqwest::Response) -> Vec<String> {
    let mut fields = invalid_fields(response).await;
    fields.sort();
    fields
}

/// Nothing was placed: no order stored, no `order.placed` written.
async fn assert_nothing_placed(app: &TestApp) {
    assert_eq!(app.order_count().await, 0, "a refused placement stores no order");
    assert_eq!(app.outbox_events::<OrderPlaced>().await, Vec::<Value>::new());
}

fn expired_token(app: &TestApp, sub: Uuid) -> String {
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("a clock after 1970")
            .as_secs(),
    )
    .expect("seconds fit");
    app.keys
        .sign(&Claims {
            sub: sub.to_string(),
            role: Role::Customer,
            iat: now - 7_200,
            exp: now - 3_600,
            iss: ISSUER.to_owned(),
            jti: Uuid::now_v7().to_string(),
        })
        .expect("the test key signs a token")
}

/// `POST /api/orders` as `who` with a raw body and content type (`None`: no header).
async fn post_raw(
    app: &TestApp,
    who: &Account,
    content_type: Option<&str>,
    body: &str,
) -> reqwest::Response {
    let mut request = app.client.request(Method::POST, "/api/orders", Some(&who.token));
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    request.body(body.to_owned()).send().await.expect("POST /api/orders is answered")
}

backend_tests! {
    async fn placing_an_order_answers_201_pending_with_location_and_the_order(db) {
        let app = spawn_app(db).await;
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let body = json!({
            "items": [{"productId": a, "quantity": 2}, {"productId": b, "quantity": 1}],
            "shippingAddress": address(),
            "paymentMethod": "card",
        });
        let response = app.post_json("/api/orders", &body, Some(&app.alice.token)).await;
        let location = header_of(&response, LOCATION.as_str());
        let placed = json_body(response, StatusCode::CREATED).await;

        assert_order_shape(&placed);
        let id = id_of(&placed);
        assert_eq!(location, Some(format!("/api/orders/{id}")));
        let expected = json!({
            "id": id,
            "userId": app.alice.id,
            "status": "pending",
            "items": [
                {"productId": a, "quantity": 2, "unitPrice": null, "name": null},
                {"productId": b, "quantity": 1, "unitPrice": null, "name": null},
            ],
            "total": null,
            "shippingAddress": address(),
            "paymentMethod": "card",
            "rejectionReason": null,
            "lastUpdateRejection": null,
            "version": 1,
            "createdAt": placed["createdAt"],
            "updatedAt": placed["createdAt"],
        });
        assert_eq!(placed, expected);

        // The Location names the order as its owner reads it.
        let read = json_body(app.get(&order_path(id), Some(&app.alice.token)).await, StatusCode::OK).await;
        assert_eq!(read, placed);

        // One `order.placed`, at version 1, with the lines, for the products service to reserve.
        assert_eq!(
            app.outbox_events::<OrderPlaced>().await,
            vec![json!({
                "orderId": id,
                "userId": app.alice.id,
                "orderVersion": 1,
                "items": [{"productId": a, "quantity": 2}, {"productId": b, "quantity": 1}],
            })]
        );
        assert_eq!(app.order_count().await, 1);
    }

    async fn optional_fields_default_to_null_and_texts_are_trimmed(db) {
        let app = spawn_app(db).await;
        let a = Uuid::now_v7();
        let placed = app.place(&app.alice, &[(a, 1)]).await;
        assert_eq!(placed["shippingAddress"], Value::Null);
        assert_eq!(placed["paymentMethod"], Value::Null);
        assert_eq!(placed["userId"], json!(app.alice.id));

        let body = json!({
            "items": [{"productId": a, "quantity": 1}],
            "shippingAddress": {"street": " 2 Elm St ", "city": "Shelbyville ", "zipCode": " 54321", "state": null},
            "paymentMethod": "  paypal ",
            "userId": null,
        });
        let placed = json_body(
            app.post_json("/api/orders", &body, Some(&app.alice.token)).await,
            StatusCode::CREATED,
        )
        .await;
        let shipping = &placed["shippingAddress"];
        assert_eq!(
            [&shipping["street"], &shipping["city"], &shipping["zipCode"], &shipping["state"], &shipping["country"]],
            [&json!("2 Elm St"), &json!("Shelbyville"), &json!("54321"), &Value::Null, &Value::Null],
            "{shipping}"
        );
        assert_eq!(placed["paymentMethod"], "paypal");
        assert_eq!(placed["userId"], json!(app.alice.id));
    }

    async fn placing_without_a_valid_token_is_unauthenticated_and_stores_nothing(db) {
        let app = spawn_app(db).await;
        let body = order_body(&[(Uuid::now_v7(), 1)]);
        problem(app.post_json("/api/orders", &body, None).await, StatusCode::UNAUTHORIZED, "unauthenticated")
            .await;
        let foreign = mint(&mercato_users::SigningKeys::generate(), app.alice.id, Role::Customer);
        let expired = expired_token(&app, app.alice.id);
        for token in ["garbage", "a.b.c", foreign.as_str(), expired.as_str()] {
            problem(
                app.post_json("/api/orders", &body, Some(token)).await,
                StatusCode::UNAUTHORIZED,
                "invalid_token",
            )
            .await;
        }
        // A token that is not sent as `Bearer`.
        let basic = app
            .client
            .request(Method::POST, "/api/orders", None)
            .header("authorization", format!("Basic {}", app.alice.token))
            .json(&body)
            .send()
            .await
            .expect("answered");
        problem(basic, StatusCode::UNAUTHORIZED, "invalid_token").await;
        assert_nothing_placed(&app).await;
    }

    async fn a_body_that_is_not_json_is_refused_and_stores_nothing(db) {
        let app = spawn_app(db).await;
        let valid = order_body(&[(Uuid::now_v7(), 1)]).to_string();
        for content_type in [None, Some("text/plain"), Some("application/x-www-form-urlencoded")] {
            problem(
                post_raw(&app, &app.alice, content_type, &valid).await,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
            )
            .await;
        }
        for broken in ["{\"items\": [", "", "items=1", "{'items': []}"] {
            problem(
                post_raw(&app, &app.alice, Some("application/json"), broken).await,
                StatusCode::BAD_REQUEST,
                "malformed_json",
            )
            .await;
        }
        // JSON, but not an object.
        for not_an_object in ["[]", "7", "\"items\"", "null"] {
            let fields = sorted_fields(post_raw(&app, &app.alice, Some("application/json"), not_an_object).await).await;
            assert_eq!(fields, ["body"], "body {not_an_object}");
        }
        assert_nothing_placed(&app).await;
    }

    async fn each_invalid_field_is_named_in_a_422_and_nothing_is_stored(db) {
        let app = spawn_app(db).await;
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let line = |quantity: Value| json!({"items": [{"productId": a, "quantity": quantity}]});
        let many: Vec<Value> =
            (0..101).map(|_| json!({"productId": Uuid::now_v7(), "quantity": 1})).collect();
        let with = |field: &str, value: Value| {
            let mut body = order_body(&[(a, 1)]);
            body[field] = value;
            body
        };
        let cases: Vec<(Value, Vec<&str>)> = vec![
            (json!({}), vec!["items"]),
            (json!({"paymentMethod": "card"}), vec!["items"]),
            (json!({"items": []}), vec!["items"]),
            (json!({"items": null}), vec!["items"]),
            (json!({"items": "two mugs"}), vec!["items"]),
            (json!({"items": {"productId": a, "quantity": 1}}), vec!["items"]),
            (json!({"items": many}), vec!["items"]),
            (line(json!(0)), vec!["items[0].quantity"]),
            (line(json!(-1)), vec!["items[0].quantity"]),
            (line(json!(10_001)), vec!["items[0].quantity"]),
            (line(json!(1.5)), vec!["items[0].quantity"]),
            (line(json!("2")), vec!["items[0].quantity"]),
            (line(json!(null)), vec!["items[0].quantity"]),
            (json!({"items": [{"productId": a}]}), vec!["items[0].quantity"]),
            (json!({"items": [{"productId": "not-a-uuid", "quantity": 1}]}), vec!["items[0].productId"]),
            (json!({"items": [{"productId": 42, "quantity": 1}]}), vec!["items[0].productId"]),
            (json!({"items": [{"quantity": 1}]}), vec!["items[0].productId"]),
            (json!({"items": [7]}), vec!["items[0]"]),
            (
                json!({"items": [
                    {"productId": a, "quantity": 1},
                    {"productId": b, "quantity": 1},
                    {"productId": a, "quantity": 2},
                ]}),
                vec!["items[2].productId"],
            ),
            (
                json!({"items": [{"productId": a, "quantity": 1}, {"productId": a, "quantity": 1}]}),
                vec!["items[1].productId"],
            ),
            (
                with("shippingAddress", json!({})),
                vec!["shippingAddress.city", "shippingAddress.street", "shippingAddress.zipCode"],
            ),
            (
                with("shippingAddress", json!({"street": "1 Main St"})),
                vec!["shippingAddress.city", "shippingAddress.zipCode"],
            ),
            (
                with("shippingAddress", json!({"street": "1 Main St", "city": "Springfield"})),
                vec!["shippingAddress.zipCode"],
            ),
            (
                with("shippingAddress", json!({"street": "  ", "city": "Springfield", "zipCode": "12345"})),
                vec!["shippingAddress.street"],
            ),
            (with("shippingAddress", json!("1 Main St, Springfield")), vec!["shippingAddress"]),
            (with("paymentMethod", json!("x".repeat(51))), vec!["paymentMethod"]),
            (with("paymentMethod", json!("é".repeat(51))), vec!["paymentMethod"]),
            (with("paymentMethod", json!("")), vec!["paymentMethod"]),
            (with("paymentMethod", json!(12)), vec!["paymentMethod"]),
            (with("userId", json!("not-a-uuid")), vec!["userId"]),
        ];
        for (body, expected) in cases {
            let response = app.post_json("/api/orders", &body, Some(&app.alice.token)).await;
            assert_eq!(sorted_fields(response).await, expected, "body {body}");
        }
        assert_nothing_placed(&app).await;
    }

    async fn several_bad_fields_are_listed_together(db) {
        let app = spawn_app(db).await;
        let a = Uuid::now_v7();
        let body = json!({
            "items": [
                {"productId": "nope", "quantity": 0},
                {"productId": a, "quantity": 10_001},
                {"productId": a, "quantity": 1},
            ],
            "shippingAddress": {"street": "1 Main St"},
            "paymentMethod": "p".repeat(51),
            "userId": "somebody",
        });
        let response = app.post_json("/api/orders", &body, Some(&app.alice.token)).await;
        assert_eq!(
            sorted_fields(response).await,
            [
                "items[0].productId",
                "items[0].quantity",
                "items[1].quantity",
                "paymentMethod",
                "shippingAddress.city",
                "shippingAddress.zipCode",
                "userId",
            ]
        );
        assert_nothing_placed(&app).await;
    }

    async fn the_limits_themselves_are_accepted(db) {
        let app = spawn_app(db).await;
        let lines: Vec<(Uuid, i64)> = (0..100).map(|n| (Uuid::now_v7(), n + 1)).collect();
        let mut body = order_body(&lines);
        body["items"][0]["quantity"] = json!(10_000);
        body["paymentMethod"] = json!("é".repeat(50));
        let placed = json_body(
            app.post_json("/api/orders", &body, Some(&app.alice.token)).await,
            StatusCode::CREATED,
        )
        .await;
        let items = placed["items"].as_array().expect("items");
        assert_eq!(items.len(), 100);
        assert_eq!(items[0]["quantity"], 10_000);
        assert_eq!(items[99], json!({"productId": lines[99].0, "quantity": 100, "unitPrice": null, "name": null}));
        assert_eq!(placed["paymentMethod"], json!("é".repeat(50)));
        let events = app.outbox_events::<OrderPlaced>().await;
        assert_eq!(events.len(), 1);
        assert_eq!(events[0]["items"].as_array().map(Vec::len), Some(100));
        assert_eq!(events[0]["items"][0], json!({"productId": lines[0].0, "quantity": 10_000}));
    }

    async fn a_customer_places_only_for_themselves(db) {
        let app = spawn_app(db).await;
        let a = Uuid::now_v7();
        let mut body = order_body(&[(a, 1)]);
        body["userId"] = json!(app.bob.id);
        problem(
            app.post_json("/api/orders", &body, Some(&app.alice.token)).await,
            StatusCode::FORBIDDEN,
            "forbidden",
        )
        .await;
        assert_nothing_placed(&app).await;
        assert_eq!(app.list_as(&app.bob, "").await, json!({"items": [], "nextCursor": null}));

        // Naming themselves is fine.
        body["userId"] = json!(app.alice.id);
        let placed = json_body(
            app.post_json("/api/orders", &body, Some(&app.alice.token)).await,
            StatusCode::CREATED,
        )
        .await;
        assert_eq!(placed["userId"], json!(app.alice.id));
        assert_eq!(app.order_count().await, 1);
    }

    async fn an_admin_places_on_behalf_of_a_customer(db) {
        let app = spawn_app(db).await;
        let a = Uuid::now_v7();
        let mut body = order_body(&[(a, 3)]);
        body["userId"] = json!(app.bob.id);
        let placed = json_body(
            app.post_json("/api/orders", &body, Some(&app.admin.token)).await,
            StatusCode::CREATED,
        )
        .await;
        assert_order_shape(&placed);
        let id = id_of(&placed);
        assert_eq!(placed["userId"], json!(app.bob.id));
        assert_eq!(placed["status"], "pending");

        // It is Bob's: he sees it, Alice does not.
        assert_eq!(app.order(&app.bob, id).await, placed);
        assert_eq!(item_ids(&app.list_as(&app.bob, "").await), vec![id]);
        problem(app.get(&order_path(id), Some(&app.alice.token)).await, StatusCode::NOT_FOUND, "not_found")
            .await;
        assert_eq!(
            app.outbox_events::<OrderPlaced>().await,
            vec![json!({
                "orderId": id,
                "userId": app.bob.id,
                "orderVersion": 1,
                "items": [{"productId": a, "quantity": 3}],
            })]
        );
    }

    async fn a_product_never_seen_is_accepted_and_named_from_the_catalog_replica(db) {
        let app = spawn_app(db).await;
        let (known, unknown) = (Uuid::now_v7(), Uuid::now_v7());

        // Nothing is known of either product: still accepted, no names.
        let early = app.place(&app.alice, &[(known, 1), (unknown, 2)]).await;
        assert_eq!(early["status"], "pending");
        assert_eq!(early["items"][0]["name"], Value::Null);
        assert_eq!(early["items"][1]["name"], Value::Null);

        // Once the replica has heard of a product, pending orders show its name.
        assert!(app.replicate(&product_created(known, "Blue Mug", "9.99")).await.expect("replicated"));
        let early = app.order(&app.alice, id_of(&early)).await;
        assert_eq!(
            early["items"],
            json!([
                {"productId": known, "quantity": 1, "unitPrice": null, "name": "Blue Mug"},
                {"productId": unknown, "quantity": 2, "unitPrice": null, "name": null},
            ])
        );
        let later = app.place(&app.alice, &[(known, 4)]).await;
        assert_eq!(
            later["items"],
            json!([{"productId": known, "quantity": 4, "unitPrice": null, "name": "Blue Mug"}])
        );
        let page = app.list_as(&app.alice, "").await;
        assert_eq!(page["items"][0]["items"][0]["name"], "Blue Mug");
        assert_eq!(page["items"][1]["items"][0]["name"], "Blue Mug");

        // Once priced, the products service's name and price are shown, not the replica's.
        app.answer(&reserved(id_of(&later), 1, &[(known, 4, "2.50")])).await.expect("applied");
        let priced = app.order(&app.alice, id_of(&later)).await;
        assert_eq!(priced["status"], "confirmed");
        assert_eq!(
            priced["items"],
            json!([{"productId": known, "quantity": 4, "unitPrice": "2.50", "name": "Product 0"}])
        );
        assert_eq!(priced["total"], "10.00");
    }

    async fn prefer_wait_holds_the_placement_until_the_saga_answers(db) {
        let app = spawn_app(db).await;
        let a = Uuid::now_v7();
        let held = {
            let client = app.client.clone();
            let token = app.alice.token.clone();
            let body = order_body(&[(a, 2)]);
            tokio::spawn(async move {
                let response = client
                    .send_with(Method::POST, "/api/orders", Some(&body), Some(&token), &[("prefer", "wait=20")])
                    .await;
                let applied = header_of(&response, "preference-applied");
                let location = header_of(&response, LOCATION.as_str());
                (applied, location, json_body(response, StatusCode::CREATED).await)
            })
        };
        let id = wait_until("the held order is stored", Duration::from_secs(10), || async {
            item_ids(&app.list_as(&app.alice, "").await).first().copied()
        })
        .await;
        wait_until("the placement is held", Duration::from_secs(10), || async {
            (app.service.waiters().len() == 1).then_some(())
        })
        .await;
        assert!(!held.is_finished(), "the placement was answered before the saga did");

        app.answer(&reserved(id, 1, &[(a, 2, "4.50")])).await.expect("applied");
        let (applied, location, placed) = held.await.expect("the request task");
        assert_eq!(applied.as_deref(), Some("wait=20"));
        assert_eq!(location, Some(format!("/api/orders/{id}")));
        assert_order_shape(&placed);
        assert_eq!(id_of(&placed), id);
        assert_eq!(placed["status"], "confirmed");
        assert_eq!(placed["version"], 2);
        assert_eq!(placed["total"], "9.00");
        assert_eq!(
            placed["items"],
            json!([{"productId": a, "quantity": 2, "unitPrice": "4.50", "name": "Product 0"}])
        );
        assert_eq!(placed, app.order(&app.alice, id).await);
        assert!(app.service.waiters().is_empty(), "the held request unregistered");
    }

    async fn prefer_wait_answers_a_rejected_order_once_rejected(db) {
        let app = spawn_app(db).await;
        let a = Uuid::now_v7();
        let held = {
            let client = app.client.clone();
            let token = app.alice.token.clone();
            let body = order_body(&[(a, 2)]);
            tokio::spawn(async move {
                let response = client
                    .send_with(Method::POST, "/api/orders", Some(&body), Some(&token), &[("prefer", "wait=20")])
                    .await;
                let applied = header_of(&response, "preference-applied");
                (applied, json_body(response, StatusCode::CREATED).await)
            })
        };
        let id = wait_until("the held order is stored", Duration::from_secs(10), || async {
            item_ids(&app.list_as(&app.alice, "").await).first().copied()
        })
        .await;
        app.answer(&rejected(id, 1, mercato_contracts::RejectionReason::InsufficientStock, Some(a)))
            .await
            .expect("applied");
        let (applied, placed) = held.await.expect("the request task");
        assert_eq!(applied.as_deref(), Some("wait=20"));
        assert_eq!(placed["status"], "rejected");
        assert_eq!(placed["rejectionReason"], "insufficient_stock");
        assert_eq!(placed["total"], Value::Null);
        assert_eq!(placed["items"][0]["unitPrice"], Value::Null);
    }

    async fn prefer_wait_that_runs_out_answers_the_pending_order(db) {
        let app = spawn_app(db).await;
        let a = Uuid::now_v7();
        let response = app
            .send_as(&app.alice, Method::POST, "/api/orders", Some(&order_body(&[(a, 1)])), &[("prefer", "wait=1")])
            .await;
        assert_eq!(header_of(&response, "preference-applied").as_deref(), Some("wait=1"));
        let location = header_of(&response, LOCATION.as_str());
        let placed = json_body(response, StatusCode::CREATED).await;
        assert_eq!(location, Some(format!("/api/orders/{}", id_of(&placed))));
        assert_eq!(placed["status"], "pending");
        assert_eq!(placed["version"], 1);
        assert_eq!(placed, app.order(&app.alice, id_of(&placed)).await);

        // Without the preference, nothing says it was applied.
        let response =
            app.send_as(&app.alice, Method::POST, "/api/orders", Some(&order_body(&[(a, 1)])), &[]).await;
        assert_eq!(header_of(&response, "preference-applied"), None);
        assert_eq!(json_body(response, StatusCode::CREATED).await["status"], "pending");
    }

    async fn a_body_of_exactly_1_mib_is_accepted_and_one_byte_more_is_413(db) {
        let app = spawn_app(db).await;
        let a = Uuid::now_v7();
        let body_of = |size: usize| {
            let head = format!("{{\"items\":[{{\"productId\":\"{a}\",\"quantity\":1}}],\"padding\":\"");
            let tail = "\"}";
            format!("{head}{}{tail}", "x".repeat(size - head.len() - tail.len()))
        };
        let exact = body_of(1 << 20);
        assert_eq!(exact.len(), 1 << 20);
        problem(
            post_raw(&app, &app.alice, Some("application/json"), &body_of((1 << 20) + 1)).await,
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        )
        .await;
        assert_nothing_placed(&app).await;
        let placed = json_body(post_raw(&app, &app.alice, Some("application/json"), &exact).await, StatusCode::CREATED)
            .await;
        assert_eq!(placed["items"], json!([{"productId": a, "quantity": 1, "unitPrice": null, "name": null}]));
        assert_eq!(app.order_count().await, 1);
    }

    async fn prefer_wait_above_30_seconds_is_treated_as_30(db) {
        let app = spawn_app(db).await;
        let a = Uuid::now_v7();
        let held = {
            let client = app.client.clone();
            let token = app.alice.token.clone();
            let body = order_body(&[(a, 1)]);
            tokio::spawn(async move {
                let response = client
                    .send_with(Method::POST, "/api/orders", Some(&body), Some(&token), &[("prefer", "wait=600")])
                    .await;
                let applied = header_of(&response, "preference-applied");
                (applied, json_body(response, StatusCode::CREATED).await)
            })
        };
        let id = wait_until("the held order is stored and held", Duration::from_secs(10), || async {
            let id = item_ids(&app.list_as(&app.alice, "").await).first().copied()?;
            (app.service.waiters().len() == 1).then_some(id)
        })
        .await;
        app.answer(&reserved(id, 1, &[(a, 1, "1.00")])).await.expect("applied");
        let (applied, placed) = held.await.expect("the request task");
        assert_eq!(applied.as_deref(), Some("wait=30"));
        assert_eq!(placed["status"], "confirmed");
    }

    async fn a_refused_placement_stores_nothing_whatever_the_reason(db) {
        let app = spawn_app(db).await;
        let a = Uuid::now_v7();
        let mut foreign = order_body(&[(a, 1)]);
        foreign["userId"] = json!(app.bob.id);
        problem(app.post_json("/api/orders", &foreign, Some(&app.alice.token)).await, StatusCode::FORBIDDEN, "forbidden")
            .await;
        let mut half_valid = order_body(&[(a, 1)]);
        half_valid["paymentMethod"] = json!("m".repeat(51));
        invalid_fields(app.post_json("/api/orders", &half_valid, Some(&app.alice.token)).await).await;
        problem(
            app.post_json("/api/orders", &order_body(&[(a, 1)]), None).await,
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
        )
        .await;
        assert_nothing_placed(&app).await;
        assert_eq!(app.list_as(&app.admin, "").await, json!({"items": [], "nextCursor": null}));
    }
}

/// Placements sent at once, each with its own product and quantity, so that an answer given to
/// the wrong caller shows: `(caller, product, quantity)` per request.
fn concurrent_requests(app: &TestApp, count: i64) -> Vec<(Account, Uuid, i64)> {
    (1..=count)
        .map(|quantity| {
            let who = if quantity % 2 == 0 { app.alice.clone() } else { app.bob.clone() };
            (who, Uuid::now_v7(), quantity)
        })
        .collect()
}

/// Sends every request at once; the answers in the order of `requests`.
async fn place_all(app: &TestApp, requests: &[(Account, Uuid, i64)]) -> Vec<Value> {
    let sends = requests.iter().map(|(who, product, quantity)| async move {
        let response = app
            .post_json("/api/orders", &order_body(&[(*product, *quantity)]), Some(&who.token))
            .await;
        json_body(response, StatusCode::CREATED).await
    });
    futures::future::join_all(sends).await
}

/// Each answer is the caller's own order, stored once with its one `order.placed`.
async fn assert_each_placed_once(
    app: &TestApp,
    requests: &[(Account, Uuid, i64)],
    answers: &[Value],
) {
    let mut ids = Vec::new();
    for ((who, product, quantity), placed) in requests.iter().zip(answers) {
        assert_eq!(placed["userId"], json!(who.id), "{placed}");
        assert_eq!(placed["items"][0]["productId"], json!(product), "{placed}");
        assert_eq!(placed["items"][0]["quantity"], json!(quantity), "{placed}");
        assert_eq!(placed["status"], "pending");
        assert_eq!(app.order(who, id_of(placed)).await["items"], placed["items"]);
        ids.push(id_of(placed));
    }
    let count = i64::try_from(requests.len()).expect("a small count");
    assert_eq!(app.order_count().await, count);
    let events = app.outbox_events::<OrderPlaced>().await;
    assert_eq!(events.len(), requests.len(), "one order.placed per order");
    for event in &events {
        let id: Uuid = serde_json::from_value(event["orderId"].clone()).expect("an order id");
        let index =
            ids.iter().position(|placed| *placed == id).expect("the event of a placed order");
        assert_eq!(event["userId"], answers[index]["userId"]);
        assert_eq!(event["items"][0]["quantity"], json!(requests[index].2));
    }
}

backend_tests! {
    async fn concurrent_placements_each_get_their_own_order(db) {
        let app = spawn_app(db).await;
        let requests = concurrent_requests(&app, 40);
        let answers = place_all(&app, &requests).await;
        assert_each_placed_once(&app, &requests, &answers).await;
    }

    async fn one_transaction_of_placements_decides_each_alone(db) {
        use mercato_orders::order::Order;
        use mercato_orders::placing::{self, OrderToPlace};
        use mercato_platform::time::Timestamp;

        let app = spawn_app(db).await;
        let carol = Uuid::now_v7();
        app.replicate(&user_deleted(carol)).await.expect("applied");
        let product = Uuid::now_v7();
        let to_place = |caller: Uuid, user: Uuid| OrderToPlace {
            order: Order::place(
                user,
                vec![mercato_contracts::OrderLine { product_id: product, quantity: 1 }],
                None,
                None,
                Timestamp::now(),
            ),
            caller,
            traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_owned(),
        };
        let placements = [
            to_place(app.alice.id, app.alice.id),
            to_place(carol, carol),
            to_place(app.admin.id, carol),
            to_place(app.bob.id, app.bob.id),
        ];
        let mut tx = app.database.begin().await.expect("a transaction");
        let placed = placing::write(&app.database, &app.service.outbox(), &mut tx, &placements)
            .await
            .expect("written");
        tx.commit().await.expect("committed");

        let codes: Vec<Result<Uuid, &str>> = placed
            .iter()
            .map(|one| one.as_ref().map(|view| view.id).map_err(|error| error.code()))
            .collect();
        assert_eq!(
            codes,
            vec![
                Ok(placements[0].order.id),
                Err("invalid_token"),
                Err("validation_failed"),
                Ok(placements[3].order.id),
            ]
        );
        assert_eq!(app.order_count().await, 2, "only the accepted orders are stored");
        let events = app.outbox_events::<OrderPlaced>().await;
        let ids: Vec<Value> = events.iter().map(|event| event["orderId"].clone()).collect();
        assert_eq!(ids, vec![json!(placements[0].order.id), json!(placements[3].order.id)]);
        assert_eq!(app.order(&app.alice, placements[0].order.id).await["status"], "pending");
    }
}

/// Placements that wait while the orders file's writer is busy are written together, in one
/// transaction, when it is free: not one transaction each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placements_that_queue_share_one_transaction() {
    let Some(db) = mercato_testkit::TestDatabase::create(mercato_testkit::Backend::Sqlite).await
    else {
        return;
    };
    let app = spawn_app(db).await;
    let placer = app.service.placer();
    let requests = concurrent_requests(&app, 12);
    // Another writer holds the file: the placer's first transaction waits for it.
    let busy = app.database.begin().await.expect("the write turn");
    let answers = place_all(&app, &requests);
    let release = async {
        wait_until("every placement is queued or taken", Duration::from_secs(10), || async {
            (placer.waiting() as u64 + placer.taken() == 12).then_some(())
        })
        .await;
        drop(busy);
    };
    let (answers, ()) = tokio::join!(answers, release);
    assert_each_placed_once(&app, &requests, &answers).await;
    assert_eq!(placer.taken(), 12);
    // The first transaction took what was there when it started; the second took all the rest.
    assert!(placer.transactions() <= 2, "{} transactions for 12 placements", placer.transactions());
}
