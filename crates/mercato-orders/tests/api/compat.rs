//! The original Node service's routes: `POST /api/create` (also with the single-item body, whose
//! client-set price, status, id and date are ignored) and `POST /api/orders/cancel/:id`, with the
//! same rules and answers as the routes they stand for.

use mercato_contracts::{OrderCancelled, OrderPlaced};
use mercato_testkit::backend_tests;
use reqwest::header::LOCATION;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::harness::*;

fn address() -> Value {
    json!({"street": "1 Main St", "city": "Springfield", "zipCode": "12345", "state": "IL", "country": "US"})
}

async fn compat_cancel(app: &TestApp, who: Option<&Account>, id: &str) -> reqwest::Response {
    let path = format!("/api/orders/cancel/{id}");
    app.client.send_with(Method::POST, &path, None, who.map(|who| who.token.as_str()), &[]).await
}

backend_tests! {
    async fn the_single_item_form_places_a_pending_order_ignoring_client_set_fields(db) {
        let app = spawn_app(db).await;
        let product = Uuid::now_v7();
        let client_id = Uuid::now_v7();
        let body = json!({
            "productId": product,
            "quantity": 2,
            "shippingAddress": address(),
            "paymentMethod": "card",
            "totalPrice": 0.01,
            "status": "delivered",
            "id": client_id,
            "orderDate": "2020-01-01T00:00:00.000Z",
        });
        let response = app.post_json("/api/create", &body, Some(&app.alice.token)).await;
        let location = header_of(&response, LOCATION.as_str());
        let placed = json_body(response, StatusCode::CREATED).await;
        assert_order_shape(&placed);
        let id = id_of(&placed);
        assert_ne!(id, client_id, "the server chooses the id");
        assert_eq!(location, Some(format!("/api/orders/{id}")));
        let expected = json!({
            "id": id,
            "userId": app.alice.id,
            "status": "pending",
            "items": [{"productId": product, "quantity": 2, "unitPrice": null, "name": null}],
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
        assert!(!text(&placed["createdAt"]).starts_with("2020-"), "the server dates the order");

        // It is an order like any other: readable, listed, in the outbox.
        assert_eq!(app.order(&app.alice, id).await, placed);
        problem(app.get(&order_path(client_id), Some(&app.alice.token)).await, StatusCode::NOT_FOUND, "not_found").await;
        assert_eq!(
            app.outbox_events::<OrderPlaced>().await,
            vec![json!({
                "orderId": id,
                "userId": app.alice.id,
                "orderVersion": 1,
                "items": [{"productId": product, "quantity": 2}],
            })]
        );
    }

    async fn the_old_create_route_takes_the_new_body_too(db) {
        let app = spawn_app(db).await;
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let mut body = order_body(&[(a, 1), (b, 4)]);
        body["status"] = json!("confirmed");
        body["totalPrice"] = json!("999.00");
        let placed = json_body(app.post_json("/api/create", &body, Some(&app.alice.token)).await, StatusCode::CREATED)
            .await;
        assert_eq!(placed["status"], "pending");
        assert_eq!(placed["total"], Value::Null);
        assert_eq!(
            placed["items"],
            json!([
                {"productId": a, "quantity": 1, "unitPrice": null, "name": null},
                {"productId": b, "quantity": 4, "unitPrice": null, "name": null},
            ])
        );
    }

    async fn the_old_create_route_validates_like_the_new_one(db) {
        let app = spawn_app(db).await;
        let product = Uuid::now_v7();
        let cases: Vec<(Value, Vec<&str>)> = vec![
            (json!({}), vec!["items"]),
            (json!({"status": "pending", "totalPrice": 5}), vec!["items"]),
            (json!({"productId": product, "quantity": 0}), vec!["items[0].quantity"]),
            (json!({"productId": product, "quantity": 10_001}), vec!["items[0].quantity"]),
            (json!({"productId": product, "quantity": "2"}), vec!["items[0].quantity"]),
            (json!({"productId": product}), vec!["items[0].quantity"]),
            (json!({"quantity": 1}), vec!["items[0].productId"]),
            (json!({"productId": "nope", "quantity": 1}), vec!["items[0].productId"]),
            (
                json!({"productId": product, "quantity": 1, "paymentMethod": "x".repeat(51), "shippingAddress": {"city": "Springfield"}}),
                vec!["paymentMethod", "shippingAddress.street", "shippingAddress.zipCode"],
            ),
        ];
        for (body, expected) in cases {
            let mut fields = invalid_fields(app.post_json("/api/create", &body, Some(&app.alice.token)).await).await;
            fields.sort();
            assert_eq!(fields, expected, "body {body}");
        }
        let raw = app
            .client
            .request(Method::POST, "/api/create", Some(&app.alice.token))
            .header("content-type", "text/plain")
            .body(json!({"productId": product, "quantity": 1}).to_string())
            .send()
            .await
            .expect("answered");
        problem(raw, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type").await;
        let raw = app
            .client
            .request(Method::POST, "/api/create", Some(&app.alice.token))
            .header("content-type", "application/json")
            .body("{\"productId\":")
            .send()
            .await
            .expect("answered");
        problem(raw, StatusCode::BAD_REQUEST, "malformed_json").await;
        assert_eq!(app.order_count().await, 0);
        assert_eq!(app.outbox_events::<OrderPlaced>().await, Vec::<Value>::new());
    }

    async fn the_old_create_route_follows_the_same_auth_rules(db) {
        let app = spawn_app(db).await;
        let product = Uuid::now_v7();
        let body = json!({"productId": product, "quantity": 1});
        problem(app.post_json("/api/create", &body, None).await, StatusCode::UNAUTHORIZED, "unauthenticated").await;
        problem(app.post_json("/api/create", &body, Some("garbage")).await, StatusCode::UNAUTHORIZED, "invalid_token")
            .await;
        let mut for_bob = body.clone();
        for_bob["userId"] = json!(app.bob.id);
        problem(app.post_json("/api/create", &for_bob, Some(&app.alice.token)).await, StatusCode::FORBIDDEN, "forbidden")
            .await;
        assert_eq!(app.order_count().await, 0);

        let placed = json_body(app.post_json("/api/create", &for_bob, Some(&app.admin.token)).await, StatusCode::CREATED)
            .await;
        assert_eq!(placed["userId"], json!(app.bob.id));
        assert_eq!(app.order(&app.bob, id_of(&placed)).await, placed);
    }

    async fn the_old_cancel_route_cancels_like_the_new_one(db) {
        let app = spawn_app(db).await;
        let confirmed = app.place_confirmed(&app.alice, &[(Uuid::now_v7(), 1)]).await;
        let id = id_of(&confirmed);
        let done = json_body(compat_cancel(&app, Some(&app.alice), &id.to_string()).await, StatusCode::OK).await;
        assert_order_shape(&done);
        let mut expected = confirmed.clone();
        expected["status"] = json!("cancelled");
        expected["version"] = json!(3);
        expected["updatedAt"] = done["updatedAt"].clone();
        assert_eq!(done, expected);
        assert_eq!(app.order(&app.alice, id).await, done);
        assert_eq!(
            app.outbox_events::<OrderCancelled>().await,
            vec![json!({"orderId": id, "userId": app.alice.id, "orderVersion": 3})]
        );

        // Again: unchanged, no second event.
        let again = json_body(compat_cancel(&app, Some(&app.alice), &id.to_string()).await, StatusCode::OK).await;
        assert_eq!(again, done);
        assert_eq!(app.outbox_events::<OrderCancelled>().await.len(), 1);

        // A shipped order is not cancelled here either.
        let shipped = app.place_confirmed(&app.alice, &[(Uuid::now_v7(), 1)]).await;
        let shipped_id = id_of(&shipped);
        let response = app
            .send_as(&app.admin, Method::PATCH, &order_path(shipped_id), Some(&json!({"status": "shipped"})), &[])
            .await;
        json_body(response, StatusCode::OK).await;
        problem(compat_cancel(&app, Some(&app.alice), &shipped_id.to_string()).await, StatusCode::CONFLICT, "invalid_state")
            .await;
    }

    async fn the_old_cancel_route_follows_the_same_auth_rules(db) {
        let app = spawn_app(db).await;
        let placed = app.place(&app.alice, &[(Uuid::now_v7(), 1)]).await;
        let id = id_of(&placed).to_string();
        problem(compat_cancel(&app, None, &id).await, StatusCode::UNAUTHORIZED, "unauthenticated").await;
        problem(compat_cancel(&app, Some(&app.bob), &id).await, StatusCode::NOT_FOUND, "not_found").await;
        problem(compat_cancel(&app, Some(&app.alice), &Uuid::now_v7().to_string()).await, StatusCode::NOT_FOUND, "not_found")
            .await;
        problem(compat_cancel(&app, Some(&app.alice), "nope").await, StatusCode::BAD_REQUEST, "bad_request").await;
        assert_eq!(app.order(&app.alice, id_of(&placed)).await, placed);
        assert_eq!(app.outbox_events::<OrderCancelled>().await, Vec::<Value>::new());

        let done = json_body(compat_cancel(&app, Some(&app.admin), &id).await, StatusCode::OK).await;
        assert_eq!(done["status"], "cancelled");
        assert_eq!(done["userId"], json!(app.alice.id));
        assert_eq!(app.outbox_events::<OrderCancelled>().await.len(), 1);
    }
}
