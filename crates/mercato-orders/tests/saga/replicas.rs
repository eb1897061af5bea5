//! The users and catalog replicas, fed as the `orders-replicas` consumer feeds them: pending
//! orders show the replica's product names (newest event wins, whatever the arrival order), a
//! deleted user's tokens are refused on every route and their open orders cancelled once, and a
//! replica that lags never refuses anyone.

use mercato_contracts::{Envelope, OrderCancelled, OrderConfirmed, OrderPlaced};
use mercato_platform::auth::Role;
use mercato_testkit::{backend_tests, wait_until};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::answers::{answered, confirmed_order, of_order, send_in_background, until_held};
use crate::harness::*;

/// Applies a user or product event that must be new.
async fn replicated(app: &TestApp, event: &Envelope<Value>) {
    let new = app
        .replicate(event)
        .await
        .unwrap_or_else(|error| panic!("{} failed: {error}", event.event_type));
    assert!(new, "{} was taken for a duplicate", event.event_type);
}

/// The millisecond of a UUIDv7 event id (what the replicas order events by).
fn millisecond(event: &Envelope<Value>) -> u64 {
    millisecond_of(Uuid::parse_str(&event.id).expect("a UUID event id"))
}

/// The millisecond of a UUIDv7.
fn millisecond_of(id: Uuid) -> u64 {
    let (seconds, nanos) = id.get_timestamp().expect("a UUIDv7").to_unix();
    seconds * 1000 + u64::from(nanos / 1_000_000)
}

/// Returns once a new UUIDv7 carries a later millisecond than `event`'s id, so that an event
/// built next is newer by the replicas' measure.
async fn after_millisecond_of(event: &Envelope<Value>) {
    let millis = millisecond(event);
    wait_until(
        "the clock passes the event's millisecond",
        std::time::Duration::from_secs(5),
        || {
            let later = millisecond_of(Uuid::now_v7()) > millis;
            async move { later.then_some(()) }
        },
    )
    .await;
}

/// An admin moves an order to `shipped` or `delivered`.
async fn advance(app: &TestApp, order: Uuid, status: &str) {
    let path = format!("/api/orders/{order}");
    let response = app.patch_json(&path, &json!({"status": status}), Some(&app.admin.token)).await;
    assert_eq!(json_body(response, StatusCode::OK).await["status"], status);
}

/// The names an order's lines show, in order.
async fn names(app: &TestApp, who: &Account, order: Uuid) -> Vec<Value> {
    let view = app.order(who, order).await;
    view["items"]
        .as_array()
        .unwrap_or_else(|| panic!("an order has items: {view}"))
        .iter()
        .map(|line| line["name"].clone())
        .collect()
}

backend_tests! {
    async fn pending_orders_show_the_catalog_replicas_newest_names(db) {
        let app = spawn_app(db).await;
        let (teapot, cup) = (Uuid::now_v7(), Uuid::now_v7());
        let created = product_created(teapot, "Teapot", "12.00");
        replicated(&app, &created).await;
        assert!(!app.replicate(&created).await.expect("handled"), "a redelivery is a duplicate");

        let order = id_of(&app.place(&app.alice, &[(teapot, 1), (cup, 2)]).await);
        let view = app.order(&app.alice, order).await;
        assert_eq!(view["status"], "pending");
        assert_eq!(
            view["items"],
            json!([
                {"productId": teapot, "quantity": 1, "unitPrice": null, "name": "Teapot"},
                {"productId": cup, "quantity": 2, "unitPrice": null, "name": null},
            ])
        );
        let page = json_body(app.get("/api/orders", Some(&app.alice.token)).await, StatusCode::OK).await;
        assert_eq!(page["items"], json!([view]));

        // Renamed: the new name shows. The older rename, built first, arrives second and loses.
        let older = product_updated(teapot, "Old Teapot", "11.00", true);
        after_millisecond_of(&older).await;
        let newer = product_updated(teapot, "Blue Teapot", "13.00", true);
        replicated(&app, &newer).await;
        assert_eq!(names(&app, &app.alice, order).await, [json!("Blue Teapot"), Value::Null]);
        replicated(&app, &older).await;
        assert_eq!(names(&app, &app.alice, order).await, [json!("Blue Teapot"), Value::Null]);

        // The cup becomes known after the order was placed.
        replicated(&app, &product_created(cup, "Cup", "2.00")).await;
        assert_eq!(names(&app, &app.alice, order).await, [json!("Blue Teapot"), json!("Cup")]);

        // A deleted product keeps its name for the orders that show it, and an older rename
        // arriving after the deletion does not change it.
        let stale = product_updated(teapot, "Stale Teapot", "9.00", true);
        after_millisecond_of(&stale).await;
        replicated(&app, &product_deleted(teapot)).await;
        assert_eq!(names(&app, &app.alice, order).await, [json!("Blue Teapot"), json!("Cup")]);
        replicated(&app, &stale).await;
        assert_eq!(names(&app, &app.alice, order).await, [json!("Blue Teapot"), json!("Cup")]);
        // A deletion of a product the replica never saw is harmless.
        replicated(&app, &product_deleted(Uuid::now_v7())).await;

        // Once priced, the order shows the products service's names, whatever the replica says.
        let answer = reserved(order, 1, &[(teapot, 1, "13.00"), (cup, 2, "2.00")]);
        assert!(app.answer(&answer).await.expect("applied").is_some());
        replicated(&app, &product_updated(cup, "Renamed Cup", "2.00", true)).await;
        assert_eq!(names(&app, &app.alice, order).await, [json!("Product 0"), json!("Product 1")]);
        // Other pending orders do show the replica's newest name.
        let other = id_of(&app.place(&app.bob, &[(cup, 1)]).await);
        assert_eq!(names(&app, &app.bob, other).await, [json!("Renamed Cup")]);
    }

    async fn a_deleted_users_tokens_are_refused_and_their_open_orders_cancelled_once(db) {
        let app = spawn_app(db).await;
        let (alice, bob, admin) = (&app.alice, &app.bob, &app.admin);
        let product = Uuid::now_v7();
        replicated(&app, &user_created(alice.id, "customer")).await;

        let pending = id_of(&app.place(alice, &[(product, 1)]).await);
        let confirmed = confirmed_order(&app, alice, &[(product, 2, "3.00")]).await;
        let shipped = confirmed_order(&app, alice, &[(product, 1, "3.00")]).await;
        advance(&app, shipped, "shipped").await;
        let delivered = confirmed_order(&app, alice, &[(product, 1, "3.00")]).await;
        advance(&app, delivered, "shipped").await;
        advance(&app, delivered, "delivered").await;
        let rejected_order = id_of(&app.place(alice, &[(product, 100)]).await);
        let refusal = rejected(rejected_order, 1, mercato_contracts::RejectionReason::InsufficientStock, Some(product));
        assert!(app.answer(&refusal).await.expect("applied").is_some());
        let cancelled = id_of(&app.place(alice, &[(product, 1)]).await);
        json_body(app.delete(&format!("/api/orders/{cancelled}"), Some(&alice.token)).await, StatusCode::OK).await;
        let bobs_pending = id_of(&app.place(bob, &[(product, 1)]).await);
        let bobs_confirmed = confirmed_order(&app, bob, &[(product, 1, "3.00")]).await;

        let all = [pending, confirmed, shipped, delivered, rejected_order, cancelled, bobs_pending, bobs_confirmed];
        let mut before = Vec::new();
        for order in all {
            before.push(app.order(admin, order).await);
        }
        // An older `user.created`, built before the deletion, to arrive after it.
        let late_creation = user_created(alice.id, "customer");
        after_millisecond_of(&late_creation).await;

        let deletion = user_deleted(alice.id);
        replicated(&app, &deletion).await;
        assert!(!app.replicate(&deletion).await.expect("handled"), "a redelivery is a duplicate");

        // Exactly her pending and confirmed orders are cancelled, each at a new version.
        for (order, was) in all.iter().zip(&before) {
            let now = app.order(admin, *order).await;
            let mut expected = was.clone();
            if *order == pending || *order == confirmed {
                expected["status"] = json!("cancelled");
                expected["version"] = json!(was["version"].as_i64().expect("a version") + 1);
                expected["updatedAt"] = now["updatedAt"].clone();
            }
            assert_eq!(now, expected, "order {order}");
        }
        assert_eq!(app.order(admin, pending).await["version"], 2);
        assert_eq!(app.order(admin, confirmed).await["version"], 3);
        assert_eq!(app.order(admin, confirmed).await["total"], "6.00");
        let cancellations = app.outbox_events::<OrderCancelled>().await;
        assert_eq!(
            of_order(cancellations.clone(), pending),
            vec![json!({"orderId": pending, "userId": alice.id, "orderVersion": 2})]
        );
        assert_eq!(
            of_order(cancellations.clone(), confirmed),
            vec![json!({"orderId": confirmed, "userId": alice.id, "orderVersion": 3})]
        );
        assert_eq!(cancellations.len(), 3, "the two above and her own earlier cancel: {cancellations:?}");

        // Her token is refused on every route, and nothing changes.
        let confirmed_path = format!("/api/orders/{confirmed}");
        let routes: Vec<(Method, String, Option<Value>)> = vec![
            (Method::GET, "/api/orders".to_owned(), None),
            (Method::GET, format!("/api/orders?userId={}", alice.id), None),
            (Method::GET, confirmed_path.clone(), None),
            (Method::POST, "/api/orders".to_owned(), Some(order_body(&[(product, 1)]))),
            (Method::PATCH, confirmed_path.clone(), Some(json!({"paymentMethod": "card"}))),
            (Method::PUT, confirmed_path.clone(), Some(json!({"paymentMethod": "card"}))),
            (Method::DELETE, confirmed_path.clone(), None),
            (Method::POST, format!("{confirmed_path}/cancel"), None),
            (Method::POST, "/api/create".to_owned(), Some(json!({"productId": product, "quantity": 1}))),
            (Method::POST, format!("/api/orders/cancel/{confirmed}"), None),
        ];
        let count = app.order_count().await;
        for (method, path, body) in &routes {
            let response = app.send_as(alice, method.clone(), path, body.as_ref(), &[]).await;
            problem(response, StatusCode::UNAUTHORIZED, "invalid_token").await;
        }
        // A token minted after the deletion is refused as well.
        let fresh = Account { id: alice.id, token: mint(&app.keys, alice.id, Role::Customer) };
        problem(app.send_as(&fresh, Method::GET, "/api/orders", None, &[]).await, StatusCode::UNAUTHORIZED, "invalid_token").await;
        assert_eq!(app.order_count().await, count);

        // Others are not affected: Bob and the admin carry on.
        let page = json_body(app.get("/api/orders", Some(&bob.token)).await, StatusCode::OK).await;
        assert_eq!(item_ids(&page), [bobs_confirmed, bobs_pending]);
        let page = json_body(app.get(&format!("/api/orders?userId={}", alice.id), Some(&admin.token)).await, StatusCode::OK).await;
        assert_eq!(page["items"].as_array().map(Vec::len), Some(6));

        // No later event brings her back: an older creation arriving late, a newer creation or
        // update (the users service would not send them, but the replica must not care).
        replicated(&app, &late_creation).await;
        replicated(&app, &user_created(alice.id, "customer")).await;
        replicated(&app, &user_updated(alice.id, "admin")).await;
        problem(app.send_as(alice, Method::GET, "/api/orders", None, &[]).await, StatusCode::UNAUTHORIZED, "invalid_token").await;

        // The deletion published again under a new id cancels nothing more.
        let states = {
            let mut states = Vec::new();
            for order in all {
                states.push(app.order(admin, order).await);
            }
            states
        };
        replicated(&app, &user_deleted(alice.id)).await;
        for (order, was) in all.iter().zip(&states) {
            assert_eq!(&app.order(admin, *order).await, was, "order {order}");
        }
        assert_eq!(app.outbox_events::<OrderCancelled>().await, cancellations);
        assert_eq!(of_order(app.outbox_events::<OrderConfirmed>().await, pending), Vec::<Value>::new());
    }

    async fn users_the_replica_has_not_seen_can_order_and_only_deleted_ones_are_refused(db) {
        let app = spawn_app(db).await;
        let product = Uuid::now_v7();
        // Never heard of: accepted (no replica lag rejects anyone).
        let carol = account(&app.keys, Role::Customer);
        let placed = app.place(&carol, &[(product, 1)]).await;
        assert_eq!((placed["status"].clone(), placed["userId"].clone()), (json!("pending"), json!(carol.id)));
        // Known from its events: accepted.
        let dave = account(&app.keys, Role::Customer);
        replicated(&app, &user_created(dave.id, "customer")).await;
        replicated(&app, &user_updated(dave.id, "customer")).await;
        app.place(&dave, &[(product, 1)]).await;
        // An admin the replica has not seen may place for a customer it has not seen either.
        let erin = Uuid::now_v7();
        let response = app
            .post_json("/api/orders", &json!({"items": [{"productId": product, "quantity": 1}], "userId": erin}), Some(&app.admin.token))
            .await;
        let for_erin = json_body(response, StatusCode::CREATED).await;
        assert_eq!(for_erin["userId"], erin.to_string());

        // The deletion of a user it has never seen is final too, and cancels their orders.
        let keyed = json!({"items": [{"productId": product, "quantity": 3}]});
        let first = app.send_as(&carol, Method::POST, "/api/orders", Some(&keyed), &[("idempotency-key", "carol-1")]).await;
        assert_eq!(first.status(), StatusCode::CREATED);
        replicated(&app, &user_deleted(carol.id)).await;
        problem(app.get("/api/orders", Some(&carol.token)).await, StatusCode::UNAUTHORIZED, "invalid_token").await;
        // Placement checks the account inside its transaction; every way in is still a 401,
        // whatever else is wrong with the request, and nothing is placed or replayed.
        let orders_before = app.outbox_events::<OrderPlaced>().await.len();
        let good = json!({"items": [{"productId": product, "quantity": 1}]});
        problem(app.post_json("/api/orders", &good, Some(&carol.token)).await, StatusCode::UNAUTHORIZED, "invalid_token").await;
        problem(app.post_json("/api/orders", &json!({"items": []}), Some(&carol.token)).await, StatusCode::UNAUTHORIZED, "invalid_token").await;
        problem(app.post_json("/api/create", &good, Some(&carol.token)).await, StatusCode::UNAUTHORIZED, "invalid_token").await;
        problem(app.post_json("/api/create", &json!([1]), Some(&carol.token)).await, StatusCode::UNAUTHORIZED, "invalid_token").await;
        let replay = app.send_as(&carol, Method::POST, "/api/orders", Some(&keyed), &[("idempotency-key", "carol-1")]).await;
        problem(replay, StatusCode::UNAUTHORIZED, "invalid_token").await;
        let bad_key = app.send_as(&carol, Method::POST, "/api/orders", Some(&good), &[("idempotency-key", "")]).await;
        problem(bad_key, StatusCode::UNAUTHORIZED, "invalid_token").await;
        // An admin may not place for the deleted account.
        let for_carol = json!({"items": [{"productId": product, "quantity": 1}], "userId": carol.id});
        problem(app.post_json("/api/orders", &for_carol, Some(&app.admin.token)).await, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        assert_eq!(app.outbox_events::<OrderPlaced>().await.len(), orders_before, "nothing was placed");
        assert_eq!(app.order(&app.admin, id_of(&placed)).await["status"], "cancelled");
        replicated(&app, &user_created(carol.id, "customer")).await;
        problem(app.get("/api/orders", Some(&carol.token)).await, StatusCode::UNAUTHORIZED, "invalid_token").await;
        // Dave is untouched.
        let page = json_body(app.get("/api/orders", Some(&dave.token)).await, StatusCode::OK).await;
        assert_eq!(page["items"][0]["status"], "pending");
    }
}

mercato_testkit::backend_tests! {
    async fn a_held_placement_is_answered_when_its_users_deletion_cancels_it(db) {
        let app = spawn_app(db).await;
        let product = Uuid::now_v7();
        // An admin places for Alice and waits for the order to leave `pending`.
        let request = send_in_background(
            &app,
            &app.admin,
            Method::POST,
            "/api/orders".to_owned(),
            Some(json!({"items": [{"productId": product, "quantity": 1}], "userId": app.alice.id})),
            vec![("Prefer", "wait=30")],
        );
        until_held(&app).await;
        replicated(&app, &user_deleted(app.alice.id)).await;
        let (status, _, body) = answered(request, "a placement held while its user was deleted").await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["status"], "cancelled");
    }
}

mercato_testkit::backend_tests! {
    async fn an_older_rename_from_the_same_millisecond_arriving_late_changes_nothing(db) {
        let app = spawn_app(db).await;
        let product = Uuid::now_v7();
        replicated(&app, &product_created(product, "Lamp", "5.00")).await;
        let order = id_of(&app.place(&app.alice, &[(product, 1)]).await);
        // Two renames one right after the other, as one products service instance emits them
        // (UUIDv7 ids from one generator increase within a millisecond too).
        let (older, newer) = loop {
            let older = product_updated(product, "Old Lamp", "5.00", true);
            let newer = product_updated(product, "New Lamp", "5.00", true);
            if millisecond(&older) == millisecond(&newer) {
                break (older, newer);
            }
        };
        assert!(older.id < newer.id, "ids increase: {} {}", older.id, newer.id);
        replicated(&app, &newer).await;
        replicated(&app, &older).await;
        assert_eq!(names(&app, &app.alice, order).await, [json!("New Lamp")]);
    }
}
