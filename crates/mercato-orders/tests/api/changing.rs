//! `PATCH` and `PUT /api/orders/:id` (the same partial update): item changes on a confirmed order,
//! shipping and payment details, the admin's `shipped` and `delivered`, and every refusal, which
//! changes nothing.

use std::time::Duration;

use mercato_contracts::{OrderDelivered, OrderShipped, OrderUpdated, RejectionReason};
use mercato_testkit::{backend_tests, wait_until};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::harness::*;

/// Both update methods: `PUT` behaves as `PATCH`.
const METHODS: [Method; 2] = [Method::PATCH, Method::PUT];

async fn change(
    app: &TestApp,
    who: &Account,
    method: &Method,
    id: Uuid,
    body: &Value,
) -> reqwest::Response {
    app.send_as(who, method.clone(), &order_path(id), Some(body), &[]).await
}

/// Sorted names of a `422`'s fields.
async fn sorted_fields(response: reqwest::Response) -> Vec<String> {
    let mut fields = invalid_fields(response).await;
    fields.sort();
    fields
}

fn address() -> Value {
    json!({"street": "1 Main St", "city": "Springfield", "zipCode": "12345", "state": "IL", "country": "US"})
}

backend_tests! {
    async fn changing_the_items_of_a_confirmed_order_makes_it_pending_again(db) {
        let app = spawn_app(db).await;
        let (a, b, c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        for method in METHODS {
            let confirmed = app.place_confirmed(&app.alice, &[(a, 1), (b, 2)]).await;
            let id = id_of(&confirmed);
            assert_eq!((confirmed["version"].clone(), confirmed["total"].clone()), (json!(2), json!("30.00")));

            let changed = json_body(
                change(&app, &app.alice, &method, id, &order_body(&[(a, 3), (c, 1)])).await,
                StatusCode::OK,
            )
            .await;
            assert_order_shape(&changed);
            let expected = json!({
                "id": id,
                "userId": app.alice.id,
                "status": "pending",
                "items": [
                    {"productId": a, "quantity": 3, "unitPrice": null, "name": null},
                    {"productId": c, "quantity": 1, "unitPrice": null, "name": null},
                ],
                "total": null,
                "shippingAddress": null,
                "paymentMethod": null,
                "rejectionReason": null,
                "lastUpdateRejection": null,
                "version": 3,
                "createdAt": confirmed["createdAt"],
                "updatedAt": changed["updatedAt"],
            });
            assert_eq!(changed, expected, "{method}");
            assert_eq!(app.order(&app.alice, id).await, changed);

            let updates: Vec<Value> = app
                .outbox_events::<OrderUpdated>()
                .await
                .into_iter()
                .filter(|event| event["orderId"] == json!(id))
                .collect();
            assert_eq!(
                updates,
                vec![json!({
                    "orderId": id,
                    "userId": app.alice.id,
                    "orderVersion": 3,
                    "items": [{"productId": a, "quantity": 3}, {"productId": c, "quantity": 1}],
                })],
                "{method}"
            );

            // The products service re-reserves: confirmed again with the new prices.
            app.answer(&reserved(id, 3, &[(a, 3, "1.00"), (c, 1, "0.50")])).await.expect("applied");
            let repriced = app.order(&app.alice, id).await;
            assert_eq!(repriced["status"], "confirmed");
            assert_eq!(repriced["version"], 4);
            assert_eq!(repriced["total"], "3.50");
            assert_eq!(repriced["lastUpdateRejection"], Value::Null);
        }
        assert_eq!(app.outbox_events::<OrderUpdated>().await.len(), 2);
    }

    async fn a_refused_item_change_keeps_the_previous_items_and_says_why(db) {
        let app = spawn_app(db).await;
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let confirmed = app.place_confirmed(&app.alice, &[(a, 1)]).await;
        let id = id_of(&confirmed);
        json_body(change(&app, &app.alice, &Method::PATCH, id, &order_body(&[(b, 500)])).await, StatusCode::OK).await;
        app.answer(&rejected(id, 3, RejectionReason::InsufficientStock, Some(b))).await.expect("applied");
        let restored = app.order(&app.alice, id).await;
        assert_eq!(restored["status"], "confirmed");
        assert_eq!(restored["items"], confirmed["items"]);
        assert_eq!(restored["total"], confirmed["total"]);
        assert_eq!(restored["version"], 4);
        let rejection = &restored["lastUpdateRejection"];
        assert_eq!(rejection["reason"], "insufficient_stock");
        assert_eq!(rejection["productId"], json!(b));
        mercato_testkit::http::assert_rfc3339_utc(&text(&rejection["at"]));
        assert_eq!(rejection.as_object().map(|o| o.len()), Some(3), "{{reason, productId, at}}: {rejection}");

        // A later change that goes through clears it.
        json_body(change(&app, &app.alice, &Method::PUT, id, &order_body(&[(b, 1)])).await, StatusCode::OK).await;
        let pending = app.order(&app.alice, id).await;
        assert_eq!((pending["status"].clone(), pending["version"].clone()), (json!("pending"), json!(5)));
        app.answer(&reserved(id, 5, &[(b, 1, "7.00")])).await.expect("applied");
        let changed = app.order(&app.alice, id).await;
        assert_eq!(changed["status"], "confirmed");
        assert_eq!(changed["total"], "7.00");
        assert_eq!(changed["lastUpdateRejection"], Value::Null);
    }

    async fn a_details_change_while_pending_does_not_lose_the_reservation_answer(db) {
        let app = spawn_app(db).await;
        let a = Uuid::now_v7();
        let placed = app.place(&app.alice, &[(a, 2)]).await;
        let id = id_of(&placed);
        let body = json!({"paymentMethod": "card", "shippingAddress": address()});
        let changed = json_body(change(&app, &app.alice, &Method::PATCH, id, &body).await, StatusCode::OK).await;
        assert_eq!((changed["status"].clone(), changed["version"].clone()), (json!("pending"), json!(2)));

        // The products service answers the placement (version 1): it still confirms the order.
        app.answer(&reserved(id, 1, &[(a, 2, "2.00")])).await.expect("applied");
        let confirmed = app.order(&app.alice, id).await;
        assert_eq!(confirmed["status"], "confirmed");
        assert_eq!(confirmed["version"], 3);
        assert_eq!(confirmed["total"], "4.00");
        assert_eq!(confirmed["paymentMethod"], "card");
        assert_eq!(confirmed["shippingAddress"], address());
    }

    async fn changing_items_while_pending_is_update_in_progress(db) {
        let app = spawn_app(db).await;
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let placed = app.place(&app.alice, &[(a, 1)]).await;
        let id = id_of(&placed);
        for method in METHODS {
            problem(
                change(&app, &app.alice, &method, id, &order_body(&[(b, 2)])).await,
                StatusCode::CONFLICT,
                "update_in_progress",
            )
            .await;
        }
        assert_eq!(app.order(&app.alice, id).await, placed);

        // The same while an earlier change is still being reserved.
        let confirmed = app.place_confirmed(&app.alice, &[(a, 1)]).await;
        let other = id_of(&confirmed);
        let changed =
            json_body(change(&app, &app.alice, &Method::PATCH, other, &order_body(&[(b, 2)])).await, StatusCode::OK)
                .await;
        problem(
            change(&app, &app.alice, &Method::PUT, other, &order_body(&[(a, 5)])).await,
            StatusCode::CONFLICT,
            "update_in_progress",
        )
        .await;
        assert_eq!(app.order(&app.alice, other).await, changed);
        assert_eq!(app.outbox_events::<OrderUpdated>().await.len(), 1, "only the accepted change");
    }

    async fn a_status_other_than_shipped_or_delivered_is_a_422(db) {
        let app = spawn_app(db).await;
        let confirmed = app.place_confirmed(&app.alice, &[(Uuid::now_v7(), 1)]).await;
        let id = id_of(&confirmed);
        for who in [&app.admin, &app.alice] {
            for status in [json!("cancelled"), json!("pending"), json!("confirmed"), json!("rejected"), json!("bogus"), json!("Shipped"), json!(null), json!(5)] {
                for method in METHODS {
                    let response = change(&app, who, &method, id, &json!({"status": status})).await;
                    assert_eq!(sorted_fields(response).await, ["status"], "{method} status {status}");
                }
            }
        }
        // `status` cannot ride along with an item change.
        let body = json!({"status": "shipped", "items": [{"productId": Uuid::now_v7(), "quantity": 1}]});
        assert_eq!(sorted_fields(change(&app, &app.admin, &Method::PATCH, id, &body).await).await, ["status"]);
        assert_eq!(app.order(&app.alice, id).await, confirmed);
    }

    async fn a_customer_cannot_ship_or_deliver(db) {
        let app = spawn_app(db).await;
        let confirmed = app.place_confirmed(&app.alice, &[(Uuid::now_v7(), 1)]).await;
        let id = id_of(&confirmed);
        for status in ["shipped", "delivered"] {
            for method in METHODS {
                problem(
                    change(&app, &app.alice, &method, id, &json!({"status": status})).await,
                    StatusCode::FORBIDDEN,
                    "forbidden",
                )
                .await;
            }
        }
        // Not even with a valid change beside it.
        problem(
            change(&app, &app.alice, &Method::PATCH, id, &json!({"status": "shipped", "paymentMethod": "cash"})).await,
            StatusCode::FORBIDDEN,
            "forbidden",
        )
        .await;
        assert_eq!(app.order(&app.alice, id).await, confirmed);
        assert_eq!(app.outbox_events::<OrderShipped>().await, Vec::<Value>::new());
    }

    async fn an_admin_ships_then_delivers_a_confirmed_order(db) {
        let app = spawn_app(db).await;
        let confirmed = app.place_confirmed(&app.alice, &[(Uuid::now_v7(), 2)]).await;
        let id = id_of(&confirmed);

        let shipped = json_body(change(&app, &app.admin, &Method::PATCH, id, &json!({"status": "shipped"})).await, StatusCode::OK)
            .await;
        assert_order_shape(&shipped);
        assert_eq!(shipped["status"], "shipped");
        assert_eq!(shipped["version"], 3);
        assert_eq!(shipped["items"], confirmed["items"]);
        assert_eq!(shipped["total"], "20.00");
        assert_eq!(app.order(&app.alice, id).await, shipped);
        let event = json!({"orderId": id, "userId": app.alice.id, "status": "shipped", "total": "20.00"});
        assert_eq!(app.outbox_events::<OrderShipped>().await, vec![event]);

        let delivered = json_body(change(&app, &app.admin, &Method::PUT, id, &json!({"status": "delivered"})).await, StatusCode::OK)
            .await;
        assert_eq!(delivered["status"], "delivered");
        assert_eq!(delivered["version"], 4);
        assert_eq!(app.order(&app.alice, id).await, delivered);
        let event = json!({"orderId": id, "userId": app.alice.id, "status": "delivered", "total": "20.00"});
        assert_eq!(app.outbox_events::<OrderDelivered>().await, vec![event]);

        // Delivered is final.
        for body in [json!({"status": "delivered"}), json!({"status": "shipped"}), order_body(&[(Uuid::now_v7(), 1)]), json!({"paymentMethod": "cash"})] {
            problem(change(&app, &app.admin, &Method::PATCH, id, &body).await, StatusCode::CONFLICT, "invalid_state")
                .await;
        }
        assert_eq!(app.order(&app.alice, id).await, delivered);
        assert_eq!(app.outbox_events::<OrderShipped>().await.len(), 1);
        assert_eq!(app.outbox_events::<OrderDelivered>().await.len(), 1);
    }

    async fn shipping_or_delivering_out_of_order_is_invalid_state(db) {
        let app = spawn_app(db).await;
        let a = Uuid::now_v7();
        let pending = app.place(&app.alice, &[(a, 1)]).await;
        for status in ["shipped", "delivered"] {
            problem(
                change(&app, &app.admin, &Method::PATCH, id_of(&pending), &json!({"status": status})).await,
                StatusCode::CONFLICT,
                "invalid_state",
            )
            .await;
        }
        assert_eq!(app.order(&app.alice, id_of(&pending)).await, pending);

        let confirmed = app.place_confirmed(&app.alice, &[(a, 1)]).await;
        problem(
            change(&app, &app.admin, &Method::PUT, id_of(&confirmed), &json!({"status": "delivered"})).await,
            StatusCode::CONFLICT,
            "invalid_state",
        )
        .await;
        assert_eq!(app.order(&app.alice, id_of(&confirmed)).await, confirmed);

        let rejected_order = app.place(&app.alice, &[(a, 1)]).await;
        let rejected_id = id_of(&rejected_order);
        app.answer(&rejected(rejected_id, 1, RejectionReason::ProductUnavailable, Some(a))).await.expect("applied");
        let cancelled = app.place_confirmed(&app.alice, &[(a, 1)]).await;
        json_body(app.delete(&order_path(id_of(&cancelled)), Some(&app.alice.token)).await, StatusCode::OK).await;
        for id in [rejected_id, id_of(&cancelled)] {
            let before = app.order(&app.alice, id).await;
            problem(
                change(&app, &app.admin, &Method::PATCH, id, &json!({"status": "shipped"})).await,
                StatusCode::CONFLICT,
                "invalid_state",
            )
            .await;
            problem(
                change(&app, &app.alice, &Method::PATCH, id, &order_body(&[(a, 2)])).await,
                StatusCode::CONFLICT,
                "invalid_state",
            )
            .await;
            assert_eq!(app.order(&app.alice, id).await, before);
        }
        assert_eq!(app.outbox_events::<OrderShipped>().await, Vec::<Value>::new());
        assert_eq!(app.outbox_events::<OrderDelivered>().await, Vec::<Value>::new());
        assert_eq!(app.outbox_events::<OrderUpdated>().await, Vec::<Value>::new());
    }

    async fn the_shipping_address_and_payment_method_change_and_null_clears_them(db) {
        let app = spawn_app(db).await;
        let placed = app.place(&app.alice, &[(Uuid::now_v7(), 1)]).await;
        let id = id_of(&placed);

        let with_address =
            json_body(change(&app, &app.alice, &Method::PATCH, id, &json!({"shippingAddress": address()})).await, StatusCode::OK)
                .await;
        assert_eq!(with_address["shippingAddress"], address());
        assert_eq!(with_address["paymentMethod"], Value::Null);
        assert_eq!(with_address["status"], "pending");
        assert_eq!(with_address["version"], 2);
        assert_eq!(with_address["items"], placed["items"]);

        let with_method =
            json_body(change(&app, &app.alice, &Method::PUT, id, &json!({"paymentMethod": " paypal "})).await, StatusCode::OK)
                .await;
        assert_eq!(with_method["paymentMethod"], "paypal");
        assert_eq!(with_method["shippingAddress"], address(), "a PUT is partial: the address stays");
        assert_eq!(with_method["version"], 3);

        let cleared = json_body(
            change(&app, &app.alice, &Method::PATCH, id, &json!({"shippingAddress": null, "paymentMethod": null})).await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(cleared["shippingAddress"], Value::Null);
        assert_eq!(cleared["paymentMethod"], Value::Null);
        assert_eq!(cleared["version"], 4);
        assert_eq!(app.order(&app.alice, id).await, cleared);
        // Details are not items: the products service hears nothing of them.
        assert_eq!(app.outbox_events::<OrderUpdated>().await, Vec::<Value>::new());

        // A confirmed order's details change too and it stays confirmed; the admin may do it.
        let confirmed = app.place_confirmed(&app.alice, &[(Uuid::now_v7(), 1)]).await;
        let changed = json_body(
            change(&app, &app.admin, &Method::PATCH, id_of(&confirmed), &json!({"paymentMethod": "invoice"})).await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(changed["status"], "confirmed");
        assert_eq!(changed["paymentMethod"], "invoice");
        assert_eq!(changed["total"], confirmed["total"]);
        assert_eq!(changed["version"], 3);

        // An empty body changes nothing.
        let same = json_body(change(&app, &app.alice, &Method::PATCH, id, &json!({})).await, StatusCode::OK).await;
        assert_eq!(same, cleared);
    }

    async fn invalid_changes_are_422_naming_each_field(db) {
        let app = spawn_app(db).await;
        let a = Uuid::now_v7();
        let confirmed = app.place_confirmed(&app.alice, &[(a, 1)]).await;
        let id = id_of(&confirmed);
        let cases: Vec<(Value, Vec<&str>)> = vec![
            (json!({"items": []}), vec!["items"]),
            (json!({"items": null}), vec!["items"]),
            (json!({"items": [{"productId": a, "quantity": 0}]}), vec!["items[0].quantity"]),
            (json!({"items": [{"productId": a, "quantity": 10_001}]}), vec!["items[0].quantity"]),
            (json!({"items": [{"productId": "nope", "quantity": 1}]}), vec!["items[0].productId"]),
            (
                json!({"items": [{"productId": a, "quantity": 1}, {"productId": a, "quantity": 2}]}),
                vec!["items[1].productId"],
            ),
            (json!({"shippingAddress": {"street": "1 Main St"}}), vec!["shippingAddress.city", "shippingAddress.zipCode"]),
            (json!({"shippingAddress": 5}), vec!["shippingAddress"]),
            (json!({"paymentMethod": "x".repeat(51)}), vec!["paymentMethod"]),
            (
                json!({"items": [{"productId": a, "quantity": 1.5}], "paymentMethod": "", "shippingAddress": {}}),
                vec![
                    "items[0].quantity",
                    "paymentMethod",
                    "shippingAddress.city",
                    "shippingAddress.street",
                    "shippingAddress.zipCode",
                ],
            ),
        ];
        for method in METHODS {
            for (body, expected) in &cases {
                let response = change(&app, &app.alice, &method, id, body).await;
                assert_eq!(&sorted_fields(response).await, expected, "{method} {body}");
            }
            let response = app
                .client
                .request(method.clone(), &order_path(id), Some(&app.alice.token))
                .header("content-type", "text/plain")
                .body(json!({"paymentMethod": "cash"}).to_string())
                .send()
                .await
                .expect("answered");
            problem(response, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type").await;
            let response = app
                .client
                .request(method.clone(), &order_path(id), Some(&app.alice.token))
                .header("content-type", "application/json")
                .body("{\"paymentMethod\": ")
                .send()
                .await
                .expect("answered");
            problem(response, StatusCode::BAD_REQUEST, "malformed_json").await;
            assert_eq!(sorted_fields(change(&app, &app.alice, &method, id, &json!(["cash"])).await).await, ["body"]);
        }
        assert_eq!(app.order(&app.alice, id).await, confirmed);
        assert_eq!(app.outbox_events::<OrderUpdated>().await, Vec::<Value>::new());
    }

    async fn other_customers_orders_are_404_and_bad_ids_400(db) {
        let app = spawn_app(db).await;
        let placed = app.place(&app.alice, &[(Uuid::now_v7(), 1)]).await;
        let id = id_of(&placed);
        let body = json!({"paymentMethod": "cash"});
        for method in METHODS {
            problem(change(&app, &app.bob, &method, id, &body).await, StatusCode::NOT_FOUND, "not_found").await;
            problem(change(&app, &app.alice, &method, Uuid::now_v7(), &body).await, StatusCode::NOT_FOUND, "not_found")
                .await;
            problem(
                app.send_as(&app.alice, method.clone(), "/api/orders/not-a-uuid", Some(&body), &[]).await,
                StatusCode::BAD_REQUEST,
                "bad_request",
            )
            .await;
            problem(app.send(method.clone(), &order_path(id), Some(&body), None).await, StatusCode::UNAUTHORIZED, "unauthenticated")
                .await;
            problem(
                app.send(method.clone(), &order_path(id), Some(&body), Some("garbage")).await,
                StatusCode::UNAUTHORIZED,
                "invalid_token",
            )
            .await;
        }
        assert_eq!(app.order(&app.alice, id).await, placed);

        // An admin changes anyone's order.
        let changed = json_body(change(&app, &app.admin, &Method::PUT, id, &body).await, StatusCode::OK).await;
        assert_eq!(changed["paymentMethod"], "cash");
        assert_eq!(changed["userId"], json!(app.alice.id));
        assert_eq!(changed["version"], 2);
    }

    async fn a_refused_change_changes_nothing_not_even_its_valid_part(db) {
        let app = spawn_app(db).await;
        let a = Uuid::now_v7();
        let confirmed = app.place_confirmed(&app.alice, &[(a, 1)]).await;
        let id = id_of(&confirmed);

        // 422: a valid payment method beside invalid items.
        let body = json!({"paymentMethod": "cash", "items": [{"productId": a, "quantity": 0}]});
        invalid_fields(change(&app, &app.alice, &Method::PATCH, id, &body).await).await;
        // 403: a valid address beside a status the customer may not set.
        let body = json!({"shippingAddress": address(), "status": "shipped"});
        problem(change(&app, &app.alice, &Method::PATCH, id, &body).await, StatusCode::FORBIDDEN, "forbidden").await;
        // 409: a valid address beside a transition that is not allowed.
        let body = json!({"shippingAddress": address(), "status": "delivered"});
        problem(change(&app, &app.admin, &Method::PUT, id, &body).await, StatusCode::CONFLICT, "invalid_state").await;
        assert_eq!(app.order(&app.alice, id).await, confirmed);

        // 409 update_in_progress: a valid payment method beside an item change of a pending order.
        let pending = app.place(&app.alice, &[(a, 1)]).await;
        let body = json!({"paymentMethod": "cash", "items": [{"productId": a, "quantity": 2}]});
        problem(
            change(&app, &app.alice, &Method::PATCH, id_of(&pending), &body).await,
            StatusCode::CONFLICT,
            "update_in_progress",
        )
        .await;
        let after = app.order(&app.alice, id_of(&pending)).await;
        assert_eq!(after["version"], 1);
        assert_eq!(after, pending);
        assert_eq!(app.outbox_events::<OrderUpdated>().await, Vec::<Value>::new());
        assert_eq!(app.outbox_events::<OrderShipped>().await, Vec::<Value>::new());
    }

    async fn concurrent_item_changes_of_one_order_accept_exactly_one(db) {
        let app = spawn_app(db).await;
        let confirmed = app.place_confirmed(&app.alice, &[(Uuid::now_v7(), 1)]).await;
        let id = id_of(&confirmed);
        let bodies: Vec<Value> = (1..=8).map(|n| order_body(&[(Uuid::now_v7(), n)])).collect();
        let answers = futures::future::join_all(bodies.iter().map(|body| async {
            parts(change(&app, &app.alice, &Method::PATCH, id, body).await).await
        }))
        .await;
        let mut accepted = Vec::new();
        for (index, (status, _, text)) in answers.iter().enumerate() {
            match *status {
                StatusCode::OK => accepted.push(index),
                StatusCode::CONFLICT => {
                    let problem: Value = serde_json::from_str(text).expect("a JSON problem");
                    assert_eq!(problem["code"], "update_in_progress", "{text}");
                }
                other => panic!("unexpected {other}: {text}"),
            }
        }
        assert_eq!(accepted.len(), 1, "exactly one change wins: {answers:?}");
        let winner = &bodies[accepted[0]];
        let order = app.order(&app.alice, id).await;
        assert_eq!(order["version"], 3);
        assert_eq!(order["items"][0]["productId"], winner["items"][0]["productId"]);
        let updates = app.outbox_events::<OrderUpdated>().await;
        assert_eq!(updates.len(), 1);
        assert_eq!(updates[0]["items"], winner["items"]);
    }

    async fn prefer_wait_holds_an_item_change_until_it_is_re_reserved(db) {
        let app = spawn_app(db).await;
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let confirmed = app.place_confirmed(&app.alice, &[(a, 1)]).await;
        let id = id_of(&confirmed);
        let held = {
            let client = app.client.clone();
            let token = app.alice.token.clone();
            let body = order_body(&[(b, 2)]);
            tokio::spawn(async move {
                let response = client
                    .send_with(Method::PATCH, &order_path(id), Some(&body), Some(&token), &[("prefer", "wait=20")])
                    .await;
                let applied = header_of(&response, "preference-applied");
                (applied, json_body(response, StatusCode::OK).await)
            })
        };
        wait_until("the item change is stored and held", Duration::from_secs(10), || async {
            let order = app.order(&app.alice, id).await;
            (order["version"] == 3 && app.service.waiters().len() == 1).then_some(())
        })
        .await;
        assert!(!held.is_finished(), "the change was answered before the saga did");
        app.answer(&reserved(id, 3, &[(b, 2, "3.00")])).await.expect("applied");
        let (applied, changed) = held.await.expect("the request task");
        assert_eq!(applied.as_deref(), Some("wait=20"));
        assert_eq!(changed["status"], "confirmed");
        assert_eq!(changed["version"], 4);
        assert_eq!(changed["total"], "6.00");
        assert_eq!(changed, app.order(&app.alice, id).await);
        assert!(app.service.waiters().is_empty(), "the held request unregistered");
    }
}
