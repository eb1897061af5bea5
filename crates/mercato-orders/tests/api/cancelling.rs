//! `DELETE /api/orders/:id` and `POST /api/orders/:id/cancel`: what may be cancelled and by whom,
//! the `order.cancelled` it writes (once), and `Prefer: wait` held until the stock is released.

use std::time::Duration;

use mercato_contracts::{OrderCancelled, RejectionReason};
use mercato_testkit::{backend_tests, wait_until};
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::harness::*;

/// The two cancel routes.
#[derive(Debug, Clone, Copy)]
enum Route {
    Delete,
    Post,
}

const ROUTES: [Route; 2] = [Route::Delete, Route::Post];

async fn cancel(
    app: &TestApp,
    who: Option<&Account>,
    route: Route,
    id: &str,
    headers: &[(&str, &str)],
) -> Response {
    let (method, path) = match route {
        Route::Delete => (Method::DELETE, format!("/api/orders/{id}")),
        Route::Post => (Method::POST, format!("/api/orders/{id}/cancel")),
    };
    app.client.send_with(method, &path, None, who.map(|who| who.token.as_str()), headers).await
}

async fn cancelled(app: &TestApp, who: &Account, route: Route, id: Uuid) -> Value {
    json_body(cancel(app, Some(who), route, &id.to_string(), &[]).await, StatusCode::OK).await
}

/// The `order.cancelled` events of one order.
async fn cancellations(app: &TestApp, id: Uuid) -> Vec<Value> {
    app.outbox_events::<OrderCancelled>()
        .await
        .into_iter()
        .filter(|event| event["orderId"] == json!(id))
        .collect()
}

/// `before` with the members a cancel changes set as expected.
fn as_cancelled(before: &Value, after: &Value, version: i64) -> Value {
    let mut expected = before.clone();
    expected["status"] = json!("cancelled");
    expected["version"] = json!(version);
    expected["updatedAt"] = after["updatedAt"].clone();
    expected
}

backend_tests! {
    async fn cancelling_a_pending_order_answers_it_cancelled(db) {
        let app = spawn_app(db).await;
        for route in ROUTES {
            let placed = app.place(&app.alice, &[(Uuid::now_v7(), 2)]).await;
            let id = id_of(&placed);
            let done = cancelled(&app, &app.alice, route, id).await;
            assert_order_shape(&done);
            assert_eq!(done, as_cancelled(&placed, &done, 2), "{route:?}");
            assert_eq!(app.order(&app.alice, id).await, done);
            assert_eq!(
                cancellations(&app, id).await,
                vec![json!({"orderId": id, "userId": app.alice.id, "orderVersion": 2})],
                "{route:?}"
            );
        }
    }

    async fn cancelling_a_confirmed_order_answers_it_cancelled(db) {
        let app = spawn_app(db).await;
        for route in ROUTES {
            let confirmed = app.place_confirmed(&app.alice, &[(Uuid::now_v7(), 2)]).await;
            let id = id_of(&confirmed);
            let done = cancelled(&app, &app.alice, route, id).await;
            assert_eq!(done, as_cancelled(&confirmed, &done, 3), "{route:?}");
            assert_eq!(done["total"], "20.00", "a cancelled order keeps its prices");
            assert_eq!(
                cancellations(&app, id).await,
                vec![json!({"orderId": id, "userId": app.alice.id, "orderVersion": 3})],
                "{route:?}"
            );
        }
    }

    async fn cancelling_again_returns_the_order_unchanged_without_a_second_event(db) {
        let app = spawn_app(db).await;
        let placed = app.place(&app.alice, &[(Uuid::now_v7(), 1)]).await;
        let id = id_of(&placed);
        let first = cancelled(&app, &app.alice, Route::Delete, id).await;
        for route in [Route::Delete, Route::Post, Route::Post, Route::Delete] {
            assert_eq!(cancelled(&app, &app.alice, route, id).await, first, "{route:?}");
        }
        // The admin too sees it unchanged.
        assert_eq!(cancelled(&app, &app.admin, Route::Post, id).await, first);
        assert_eq!(first["version"], 2);
        assert_eq!(cancellations(&app, id).await.len(), 1);
    }

    async fn rejected_shipped_and_delivered_orders_cannot_be_cancelled(db) {
        let app = spawn_app(db).await;
        let a = Uuid::now_v7();
        let rejected_order = app.place(&app.alice, &[(a, 1)]).await;
        let rejected_id = id_of(&rejected_order);
        app.answer(&rejected(rejected_id, 1, RejectionReason::InsufficientStock, Some(a))).await.expect("applied");
        let shipped = app.place_confirmed(&app.alice, &[(a, 1)]).await;
        let shipped_id = id_of(&shipped);
        let delivered = app.place_confirmed(&app.alice, &[(a, 1)]).await;
        let delivered_id = id_of(&delivered);
        for (id, statuses) in [(shipped_id, &["shipped"][..]), (delivered_id, &["shipped", "delivered"][..])] {
            for status in statuses {
                let response = app
                    .send_as(&app.admin, Method::PATCH, &order_path(id), Some(&json!({"status": status})), &[])
                    .await;
                json_body(response, StatusCode::OK).await;
            }
        }
        for id in [rejected_id, shipped_id, delivered_id] {
            let before = app.order(&app.alice, id).await;
            for route in ROUTES {
                for who in [&app.alice, &app.admin] {
                    problem(
                        cancel(&app, Some(who), route, &id.to_string(), &[]).await,
                        StatusCode::CONFLICT,
                        "invalid_state",
                    )
                    .await;
                }
            }
            assert_eq!(app.order(&app.alice, id).await, before);
        }
        assert_eq!(app.outbox_events::<OrderCancelled>().await, Vec::<Value>::new());
    }

    async fn another_customers_order_is_404_and_an_admin_cancels_anyones(db) {
        let app = spawn_app(db).await;
        let placed = app.place(&app.alice, &[(Uuid::now_v7(), 1)]).await;
        let id = id_of(&placed);
        for route in ROUTES {
            problem(cancel(&app, Some(&app.bob), route, &id.to_string(), &[]).await, StatusCode::NOT_FOUND, "not_found")
                .await;
        }
        assert_eq!(app.order(&app.alice, id).await, placed);
        assert_eq!(app.outbox_events::<OrderCancelled>().await, Vec::<Value>::new());

        let done = cancelled(&app, &app.admin, Route::Delete, id).await;
        assert_eq!(done, as_cancelled(&placed, &done, 2));
        assert_eq!(
            cancellations(&app, id).await,
            vec![json!({"orderId": id, "userId": app.alice.id, "orderVersion": 2})]
        );
        let confirmed = app.place_confirmed(&app.bob, &[(Uuid::now_v7(), 1)]).await;
        let done = cancelled(&app, &app.admin, Route::Post, id_of(&confirmed)).await;
        assert_eq!(done, as_cancelled(&confirmed, &done, 3));
    }

    async fn unknown_and_malformed_ids_and_missing_tokens_are_refused(db) {
        let app = spawn_app(db).await;
        let placed = app.place(&app.alice, &[(Uuid::now_v7(), 1)]).await;
        let id = id_of(&placed).to_string();
        for route in ROUTES {
            problem(
                cancel(&app, Some(&app.alice), route, &Uuid::now_v7().to_string(), &[]).await,
                StatusCode::NOT_FOUND,
                "not_found",
            )
            .await;
            problem(cancel(&app, Some(&app.alice), route, "nope", &[]).await, StatusCode::BAD_REQUEST, "bad_request")
                .await;
            problem(cancel(&app, None, route, &id, &[]).await, StatusCode::UNAUTHORIZED, "unauthenticated").await;
            let response = app
                .client
                .send_with(
                    match route {
                        Route::Delete => Method::DELETE,
                        Route::Post => Method::POST,
                    },
                    &match route {
                        Route::Delete => format!("/api/orders/{id}"),
                        Route::Post => format!("/api/orders/{id}/cancel"),
                    },
                    None,
                    Some("garbage"),
                    &[],
                )
                .await;
            problem(response, StatusCode::UNAUTHORIZED, "invalid_token").await;
        }
        assert_eq!(app.order(&app.alice, id_of(&placed)).await, placed);
    }

    async fn concurrent_cancels_cancel_once(db) {
        let app = spawn_app(db).await;
        let confirmed = app.place_confirmed(&app.alice, &[(Uuid::now_v7(), 1)]).await;
        let id = id_of(&confirmed);
        let answers = futures::future::join_all((0..8).map(|n| {
            let route = ROUTES[n % 2];
            let app = &app;
            async move { json_body(cancel(app, Some(&app.alice), route, &id.to_string(), &[]).await, StatusCode::OK).await }
        }))
        .await;
        for answer in &answers {
            assert_eq!(answer, &answers[0]);
        }
        assert_eq!(answers[0], as_cancelled(&confirmed, &answers[0], 3));
        assert_eq!(
            cancellations(&app, id).await,
            vec![json!({"orderId": id, "userId": app.alice.id, "orderVersion": 3})]
        );
    }

    async fn prefer_wait_holds_a_cancel_until_the_stock_is_released(db) {
        let app = spawn_app(db).await;
        let a = Uuid::now_v7();
        for route in ROUTES {
            let confirmed = app.place_confirmed(&app.alice, &[(a, 2)]).await;
            let id = id_of(&confirmed);
            let held = {
                let client = app.client.clone();
                let token = app.alice.token.clone();
                let (method, path) = match route {
                    Route::Delete => (Method::DELETE, order_path(id)),
                    Route::Post => (Method::POST, format!("/api/orders/{id}/cancel")),
                };
                tokio::spawn(async move {
                    let response = client.send_with(method, &path, None, Some(&token), &[("prefer", "wait=20")]).await;
                    let applied = header_of(&response, "preference-applied");
                    (applied, json_body(response, StatusCode::OK).await)
                })
            };
            wait_until("the cancel is stored and held", Duration::from_secs(10), || async {
                let order = app.order(&app.alice, id).await;
                (order["status"] == "cancelled" && app.service.waiters().len() == 1).then_some(())
            })
            .await;
            assert!(!held.is_finished(), "the cancel was answered before the stock was released");

            app.answer(&released(id, &[(a, 2)])).await.expect("applied");
            let (applied, done) = held.await.expect("the request task");
            assert_eq!(applied.as_deref(), Some("wait=20"), "{route:?}");
            assert_eq!(done, as_cancelled(&confirmed, &done, 3), "{route:?}");
            assert_eq!(done, app.order(&app.alice, id).await);
            assert!(app.service.waiters().is_empty(), "the held request unregistered");
        }
    }

    async fn prefer_wait_on_a_cancel_that_runs_out_answers_the_cancelled_order(db) {
        let app = spawn_app(db).await;
        let placed = app.place(&app.alice, &[(Uuid::now_v7(), 1)]).await;
        let id = id_of(&placed);
        let response = cancel(&app, Some(&app.alice), Route::Post, &id.to_string(), &[("prefer", "wait=1")]).await;
        assert_eq!(header_of(&response, "preference-applied").as_deref(), Some("wait=1"));
        let done = json_body(response, StatusCode::OK).await;
        assert_eq!(done, as_cancelled(&placed, &done, 2));

        // Once released, a held cancel of the (already cancelled) order answers at once.
        app.answer(&released(id, &[])).await.expect("applied");
        let response = cancel(&app, Some(&app.alice), Route::Delete, &id.to_string(), &[("prefer", "wait=20")]).await;
        assert_eq!(header_of(&response, "preference-applied").as_deref(), Some("wait=20"));
        assert_eq!(json_body(response, StatusCode::OK).await, done);
        assert_eq!(cancellations(&app, id).await.len(), 1);
    }
}
