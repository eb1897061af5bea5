//! `Idempotency-Key` on `POST /api/orders` and on cancel: a retry replays the first answer and
//! creates nothing, a reused key with another request is refused, keys are per user and route.

use std::time::Duration;

use mercato_contracts::{OrderCancelled, OrderPlaced};
use mercato_testkit::{backend_tests, wait_until};
use reqwest::header::LOCATION;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::harness::*;

/// What one answer carried.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    replayed: Option<String>,
    location: Option<String>,
    content_type: Option<String>,
    body: Value,
}

async fn send(
    app: &TestApp,
    who: &Account,
    method: Method,
    path: &str,
    body: Option<&Value>,
    headers: &[(&str, &str)],
) -> Answer {
    let response = app.send_as(who, method, path, body, headers).await;
    let replayed = header_of(&response, "idempotent-replayed");
    let location = header_of(&response, LOCATION.as_str());
    let content_type = header_of(&response, "content-type");
    let (status, _, text) = parts(response).await;
    let body =
        serde_json::from_str(&text).unwrap_or_else(|error| panic!("a JSON body ({error}): {text}"));
    Answer { status, replayed, location, content_type, body }
}

async fn place_with_key(app: &TestApp, who: &Account, body: &Value, key: &str) -> Answer {
    send(app, who, Method::POST, "/api/orders", Some(body), &[("idempotency-key", key)]).await
}

async fn cancel_with_key(app: &TestApp, who: &Account, id: Uuid, key: &str) -> Answer {
    let path = format!("/api/orders/{id}/cancel");
    send(app, who, Method::POST, &path, None, &[("idempotency-key", key)]).await
}

backend_tests! {
    async fn a_retry_with_the_same_key_replays_the_first_answer_and_places_nothing(db) {
        let app = spawn_app(db).await;
        let a = Uuid::now_v7();
        let body = json!({"items": [{"productId": a, "quantity": 2}], "paymentMethod": "card"});
        let first = place_with_key(&app, &app.alice, &body, "order-42").await;
        assert_eq!(first.status, StatusCode::CREATED);
        assert_eq!(first.replayed, None, "a first answer is not a replay");
        let id = id_of(&first.body);
        assert_eq!(first.location, Some(format!("/api/orders/{id}")));

        // The same body, with its keys in another order, is the same request.
        let reordered = json!({"paymentMethod": "card", "items": [{"quantity": 2, "productId": a}]});
        for retry in [&body, &reordered, &body] {
            let again = place_with_key(&app, &app.alice, retry, "order-42").await;
            assert_eq!(again.status, StatusCode::CREATED);
            assert_eq!(again.replayed.as_deref(), Some("true"));
            assert_eq!(again.location, first.location);
            assert_eq!(again.content_type.as_deref(), Some("application/json"));
            assert_eq!(again.body, first.body);
        }
        assert_eq!(app.order_count().await, 1);
        assert_eq!(app.outbox_events::<OrderPlaced>().await.len(), 1);
        assert_eq!(item_ids(&app.list_as(&app.alice, "").await), vec![id]);

        // Another key places another order.
        let other = place_with_key(&app, &app.alice, &body, "order-43").await;
        assert_eq!((other.status, other.replayed), (StatusCode::CREATED, None));
        assert_ne!(id_of(&other.body), id);
        assert_eq!(app.order_count().await, 2);
    }

    async fn the_same_key_with_another_body_is_refused_and_places_nothing(db) {
        let app = spawn_app(db).await;
        let a = Uuid::now_v7();
        let first = place_with_key(&app, &app.alice, &order_body(&[(a, 1)]), "k-1").await;
        assert_eq!(first.status, StatusCode::CREATED);
        for other in [order_body(&[(a, 2)]), order_body(&[(Uuid::now_v7(), 1)]), json!({"items": [{"productId": a, "quantity": 1}], "paymentMethod": "card"})] {
            let response = app
                .send_as(&app.alice, Method::POST, "/api/orders", Some(&other), &[("idempotency-key", "k-1")])
                .await;
            let refusal = problem(response, StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused").await;
            assert_eq!(refusal["errors"], Value::Null, "not a field validation: {refusal}");
        }
        assert_eq!(app.order_count().await, 1);
        assert_eq!(app.outbox_events::<OrderPlaced>().await.len(), 1);
        // The first request is still replayed.
        let again = place_with_key(&app, &app.alice, &order_body(&[(a, 1)]), "k-1").await;
        assert_eq!((again.replayed.as_deref(), again.body), (Some("true"), first.body));
    }

    async fn keys_are_scoped_per_user(db) {
        let app = spawn_app(db).await;
        let body = order_body(&[(Uuid::now_v7(), 1)]);
        let alices = place_with_key(&app, &app.alice, &body, "shared-key").await;
        let bobs = place_with_key(&app, &app.bob, &body, "shared-key").await;
        assert_eq!((alices.status, bobs.status), (StatusCode::CREATED, StatusCode::CREATED));
        assert_eq!(bobs.replayed, None);
        assert_ne!(id_of(&bobs.body), id_of(&alices.body));
        assert_eq!(bobs.body["userId"], json!(app.bob.id));
        assert_eq!(app.order_count().await, 2);
        assert_eq!(app.outbox_events::<OrderPlaced>().await.len(), 2);
        // Each user's retry replays their own.
        let again = place_with_key(&app, &app.bob, &body, "shared-key").await;
        assert_eq!(again.body, bobs.body);
    }

    async fn a_key_must_be_1_to_255_visible_characters(db) {
        let app = spawn_app(db).await;
        let body = order_body(&[(Uuid::now_v7(), 1)]);
        let too_long = "k".repeat(256);
        for bad in [too_long.as_str(), "  ", ""] {
            let response =
                app.send_as(&app.alice, Method::POST, "/api/orders", Some(&body), &[("idempotency-key", bad)]).await;
            problem(response, StatusCode::BAD_REQUEST, "bad_request").await;
        }
        assert_eq!(app.order_count().await, 0);
        assert_eq!(app.outbox_events::<OrderPlaced>().await, Vec::<Value>::new());

        let longest = "k".repeat(255);
        let first = place_with_key(&app, &app.alice, &body, &longest).await;
        assert_eq!((first.status, first.replayed), (StatusCode::CREATED, None));
        let again = place_with_key(&app, &app.alice, &body, &longest).await;
        assert_eq!((again.replayed.as_deref(), &again.body), (Some("true"), &first.body));
        assert_eq!(app.order_count().await, 1);
    }

    async fn concurrent_requests_with_one_key_place_exactly_one_order(db) {
        let app = spawn_app(db).await;
        let body = order_body(&[(Uuid::now_v7(), 3)]);
        let answers = futures::future::join_all(
            (0..10).map(|_| place_with_key(&app, &app.alice, &body, "burst")),
        )
        .await;
        for answer in &answers {
            assert_eq!(answer.status, StatusCode::CREATED, "{answer:?}");
        }
        let ids: std::collections::HashSet<Uuid> = answers.iter().map(|answer| id_of(&answer.body)).collect();
        assert_eq!(ids.len(), 1, "every answer names the one order: {ids:?}");
        let firsts = answers.iter().filter(|answer| answer.replayed.is_none()).count();
        assert_eq!(firsts, 1, "exactly one answer is not a replay");
        for answer in &answers {
            assert_eq!(answer.body, answers[0].body);
        }
        assert_eq!(app.order_count().await, 1);
        assert_eq!(app.outbox_events::<OrderPlaced>().await.len(), 1);
    }

    async fn a_retried_cancel_is_replayed_and_cancels_once(db) {
        let app = spawn_app(db).await;
        let confirmed = app.place_confirmed(&app.alice, &[(Uuid::now_v7(), 1)]).await;
        let id = id_of(&confirmed);
        let first = cancel_with_key(&app, &app.alice, id, "cancel-1").await;
        assert_eq!((first.status, first.replayed.as_deref()), (StatusCode::OK, None));
        assert_eq!(first.body["status"], "cancelled");
        assert_eq!(first.body["version"], 3);

        for _ in 0..2 {
            let again = cancel_with_key(&app, &app.alice, id, "cancel-1").await;
            assert_eq!(again.status, StatusCode::OK);
            assert_eq!(again.replayed.as_deref(), Some("true"));
            assert_eq!(again.body, first.body);
        }
        assert_eq!(app.outbox_events::<OrderCancelled>().await.len(), 1);

        // `DELETE` takes a key too.
        let pending = app.place(&app.alice, &[(Uuid::now_v7(), 1)]).await;
        let path = order_path(id_of(&pending));
        let deleted = send(&app, &app.alice, Method::DELETE, &path, None, &[("idempotency-key", "delete-1")]).await;
        assert_eq!((deleted.status, deleted.replayed.as_deref()), (StatusCode::OK, None));
        let again = send(&app, &app.alice, Method::DELETE, &path, None, &[("idempotency-key", "delete-1")]).await;
        assert_eq!((again.replayed.as_deref(), &again.body), (Some("true"), &deleted.body));
        assert_eq!(app.outbox_events::<OrderCancelled>().await.len(), 2);

        // The key for another order's cancel is a reuse.
        let other = app.place(&app.alice, &[(Uuid::now_v7(), 1)]).await;
        let response = app
            .send_as(&app.alice, Method::POST, &format!("/api/orders/{}/cancel", id_of(&other)), None, &[("idempotency-key", "cancel-1")])
            .await;
        problem(response, StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused").await;
        assert_eq!(app.order(&app.alice, id_of(&other)).await, other);
        assert_eq!(app.outbox_events::<OrderCancelled>().await.len(), 2);

        // Keys are per route: the cancel's key places an order.
        let placed = place_with_key(&app, &app.alice, &order_body(&[(Uuid::now_v7(), 1)]), "cancel-1").await;
        assert_eq!((placed.status, placed.replayed), (StatusCode::CREATED, None));

        // Too long a key is refused before anything is cancelled.
        let response = app
            .send_as(&app.alice, Method::DELETE, &order_path(id_of(&other)), None, &[("idempotency-key", &"c".repeat(256))])
            .await;
        problem(response, StatusCode::BAD_REQUEST, "bad_request").await;
        assert_eq!(app.order(&app.alice, id_of(&other)).await["status"], "pending");
    }

    async fn concurrent_cancels_with_one_key_cancel_once(db) {
        let app = spawn_app(db).await;
        let placed = app.place(&app.alice, &[(Uuid::now_v7(), 1)]).await;
        let id = id_of(&placed);
        let answers =
            futures::future::join_all((0..10).map(|_| cancel_with_key(&app, &app.alice, id, "cancel-burst"))).await;
        for answer in &answers {
            assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
            assert_eq!(answer.body, answers[0].body);
        }
        assert_eq!(answers[0].body["status"], "cancelled");
        assert_eq!(answers[0].body["version"], 2);
        assert_eq!(answers.iter().filter(|answer| answer.replayed.is_none()).count(), 1);
        assert_eq!(app.outbox_events::<OrderCancelled>().await.len(), 1);
    }

    async fn a_retry_of_a_held_placement_replays_what_the_first_request_answered(db) {
        let app = spawn_app(db).await;
        let a = Uuid::now_v7();
        let body = order_body(&[(a, 1)]);
        let held = {
            let client = app.client.clone();
            let token = app.alice.token.clone();
            let body = body.clone();
            tokio::spawn(async move {
                let response = client
                    .send_with(
                        Method::POST,
                        "/api/orders",
                        Some(&body),
                        Some(&token),
                        &[("prefer", "wait=20"), ("idempotency-key", "held")],
                    )
                    .await;
                json_body(response, StatusCode::CREATED).await
            })
        };
        let id = wait_until("the held order is stored and held", Duration::from_secs(10), || async {
            let id = item_ids(&app.list_as(&app.alice, "").await).first().copied()?;
            (app.service.waiters().len() == 1).then_some(id)
        })
        .await;
        app.answer(&reserved(id, 1, &[(a, 1, "5.00")])).await.expect("applied");
        let first = held.await.expect("the request task");
        assert_eq!(first["status"], "confirmed");

        let again = place_with_key(&app, &app.alice, &body, "held").await;
        assert_eq!(again.replayed.as_deref(), Some("true"));
        assert_eq!(again.body, first, "the replay is the first answer");
        assert_eq!(app.order_count().await, 1);
    }
}
