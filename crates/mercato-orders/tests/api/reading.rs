//! `GET /api/orders/:id` and `GET /api/orders`: who sees which orders, the filters, and cursor
//! paging newest first.

use std::collections::HashSet;

use mercato_testkit::backend_tests;
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::harness::*;

/// An opaque cursor as the platform encodes one (base64url, no padding), for a forged key.
fn forged_cursor(key: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = key.as_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

/// Places `count` orders as `who`, one after the other; their ids, oldest first.
async fn place_many(app: &TestApp, who: &Account, count: usize) -> Vec<Uuid> {
    let mut ids = Vec::with_capacity(count);
    for _ in 0..count {
        ids.push(id_of(&app.place(who, &[(Uuid::now_v7(), 1)]).await));
    }
    ids
}

fn newest_first(ids: &[Uuid]) -> Vec<Uuid> {
    ids.iter().rev().copied().collect()
}

backend_tests! {
    async fn the_owner_reads_an_order_with_the_contract_shape(db) {
        let app = spawn_app(db).await;
        let a = Uuid::now_v7();
        let body = json!({
            "items": [{"productId": a, "quantity": 2}],
            "shippingAddress": {"street": "1 Main St", "city": "Springfield", "zipCode": "12345"},
            "paymentMethod": "card",
        });
        let placed = json_body(app.post_json("/api/orders", &body, Some(&app.alice.token)).await, StatusCode::CREATED)
            .await;
        let id = id_of(&placed);
        let read = app.order(&app.alice, id).await;
        assert_order_shape(&read);
        assert_eq!(read, placed);
        assert_eq!(read["userId"], json!(app.alice.id));
        assert_eq!(read["items"], json!([{"productId": a, "quantity": 2, "unitPrice": null, "name": null}]));

        // A confirmed order shows its prices and total, in the same shape.
        app.answer(&reserved(id, 1, &[(a, 2, "19.99")])).await.expect("applied");
        let confirmed = app.order(&app.alice, id).await;
        assert_order_shape(&confirmed);
        assert_eq!(confirmed["status"], "confirmed");
        assert_eq!(confirmed["version"], 2);
        assert_eq!(confirmed["total"], "39.98");
        assert_eq!(
            confirmed["items"],
            json!([{"productId": a, "quantity": 2, "unitPrice": "19.99", "name": "Product 0"}])
        );
        assert_eq!(confirmed["createdAt"], placed["createdAt"]);
    }

    async fn another_customer_gets_404_and_an_admin_reads_any_order(db) {
        let app = spawn_app(db).await;
        let placed = app.place(&app.alice, &[(Uuid::now_v7(), 1)]).await;
        let id = id_of(&placed);
        let refusal =
            problem(app.get(&order_path(id), Some(&app.bob.token)).await, StatusCode::NOT_FOUND, "not_found").await;
        assert!(
            !refusal.to_string().contains(&app.alice.id.to_string()),
            "a 404 tells nothing of the owner: {refusal}"
        );
        assert_eq!(app.order(&app.admin, id).await, placed);
    }

    async fn bad_and_unknown_ids_and_missing_tokens_are_refused(db) {
        let app = spawn_app(db).await;
        app.place(&app.alice, &[(Uuid::now_v7(), 1)]).await;
        for bad in ["abc", "123", "0193a0c4-7b5e-7cc2-9f3e-2f1d7f0c9a1"] {
            problem(
                app.get(&format!("/api/orders/{bad}"), Some(&app.alice.token)).await,
                StatusCode::BAD_REQUEST,
                "bad_request",
            )
            .await;
        }
        for who in [&app.alice, &app.admin] {
            problem(app.get(&order_path(Uuid::now_v7()), Some(&who.token)).await, StatusCode::NOT_FOUND, "not_found")
                .await;
        }
        problem(app.get(&order_path(Uuid::now_v7()), None).await, StatusCode::UNAUTHORIZED, "unauthenticated").await;
        problem(app.get("/api/orders", None).await, StatusCode::UNAUTHORIZED, "unauthenticated").await;
        problem(app.get("/api/orders", Some("garbage")).await, StatusCode::UNAUTHORIZED, "invalid_token").await;
    }

    async fn a_customer_lists_only_their_own_orders_newest_first(db) {
        let app = spawn_app(db).await;
        let mut alices = Vec::new();
        let mut bobs = Vec::new();
        for n in 0..3 {
            alices.push(id_of(&app.place(&app.alice, &[(Uuid::now_v7(), n + 1)]).await));
            if n < 2 {
                bobs.push(id_of(&app.place(&app.bob, &[(Uuid::now_v7(), 1)]).await));
            }
        }
        let page = app.list_as(&app.alice, "").await;
        assert_eq!(item_ids(&page), newest_first(&alices));
        assert_eq!(page["nextCursor"], Value::Null);
        for order in page["items"].as_array().expect("items") {
            assert_order_shape(order);
            assert_eq!(order["userId"], json!(app.alice.id));
        }
        // The list shows each order as it reads on its own.
        assert_eq!(page["items"][0], app.order(&app.alice, alices[2]).await);

        assert_eq!(item_ids(&app.list_as(&app.bob, "").await), newest_first(&bobs));
        // Naming themselves is the same list.
        assert_eq!(item_ids(&app.list_as(&app.alice, &format!("userId={}", app.alice.id)).await), newest_first(&alices));
        // Someone with no orders sees an empty page.
        let carol = account(&app.keys, mercato_platform::auth::Role::Customer);
        assert_eq!(app.list_as(&carol, "").await, json!({"items": [], "nextCursor": null}));
    }

    async fn an_admin_lists_everyone_and_may_filter_by_user(db) {
        let app = spawn_app(db).await;
        let mut all = Vec::new();
        let mut bobs = Vec::new();
        for n in 0..4 {
            let who = if n % 2 == 0 { &app.alice } else { &app.bob };
            let id = id_of(&app.place(who, &[(Uuid::now_v7(), 1)]).await);
            all.push(id);
            if n % 2 == 1 {
                bobs.push(id);
            }
        }
        assert_eq!(item_ids(&app.list_as(&app.admin, "").await), newest_first(&all));
        assert_eq!(item_ids(&app.list_as(&app.admin, &format!("userId={}", app.bob.id)).await), newest_first(&bobs));
        let nobody = Uuid::now_v7();
        assert_eq!(
            app.list_as(&app.admin, &format!("userId={nobody}")).await,
            json!({"items": [], "nextCursor": null})
        );
    }

    async fn a_customer_naming_another_user_is_forbidden(db) {
        let app = spawn_app(db).await;
        app.place(&app.bob, &[(Uuid::now_v7(), 1)]).await;
        problem(
            app.get(&format!("/api/orders?userId={}", app.bob.id), Some(&app.alice.token)).await,
            StatusCode::FORBIDDEN,
            "forbidden",
        )
        .await;
        problem(
            app.get(&format!("/api/orders?userId={}&status=pending", app.bob.id), Some(&app.alice.token)).await,
            StatusCode::FORBIDDEN,
            "forbidden",
        )
        .await;
    }

    async fn the_list_filters_by_status(db) {
        let app = spawn_app(db).await;
        let a = Uuid::now_v7();
        let pending = id_of(&app.place(&app.alice, &[(a, 1)]).await);
        let confirmed = id_of(&app.place_confirmed(&app.alice, &[(a, 1)]).await);
        let cancelled = id_of(&app.place(&app.alice, &[(a, 1)]).await);
        json_body(app.delete(&order_path(cancelled), Some(&app.alice.token)).await, StatusCode::OK).await;
        let rejected = id_of(&app.place(&app.alice, &[(a, 1)]).await);
        app.answer(&rejected_event(rejected, a)).await.expect("applied");
        let bobs_pending = id_of(&app.place(&app.bob, &[(a, 1)]).await);

        let cases = [
            ("pending", vec![pending]),
            ("confirmed", vec![confirmed]),
            ("cancelled", vec![cancelled]),
            ("rejected", vec![rejected]),
            ("shipped", vec![]),
            ("delivered", vec![]),
        ];
        for (status, expected) in cases {
            let page = app.list_as(&app.alice, &format!("status={status}")).await;
            assert_eq!(item_ids(&page), expected, "status={status}");
            for order in page["items"].as_array().expect("items") {
                assert_eq!(order["status"], status);
            }
        }
        assert_eq!(item_ids(&app.list_as(&app.admin, "status=pending").await), vec![bobs_pending, pending]);
        assert_eq!(
            item_ids(&app.list_as(&app.admin, &format!("status=pending&userId={}", app.bob.id)).await),
            vec![bobs_pending]
        );
    }

    async fn malformed_list_queries_are_bad_requests(db) {
        let app = spawn_app(db).await;
        app.place(&app.alice, &[(Uuid::now_v7(), 1)]).await;
        let queries = [
            "status=bogus".to_owned(),
            "status=Pending".to_owned(),
            "status=".to_owned(),
            "userId=nope".to_owned(),
            "userId=".to_owned(),
            "limit=0".to_owned(),
            "limit=101".to_owned(),
            "limit=abc".to_owned(),
            "limit=-1".to_owned(),
            "limit=1.5".to_owned(),
            "cursor=!!!".to_owned(),
            "cursor=".to_owned(),
            format!("cursor={}", forged_cursor("garbage")),
            format!("cursor={}", forged_cursor("123:not-a-uuid")),
            format!("cursor={}", forged_cursor(&format!("soon:{}", Uuid::now_v7()))),
        ];
        for who in [&app.alice, &app.admin] {
            for query in &queries {
                problem(
                    app.get(&format!("/api/orders?{query}"), Some(&who.token)).await,
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                )
                .await;
            }
        }
        // The limits themselves are fine.
        for limit in [1, 100] {
            let page = app.list_as(&app.alice, &format!("limit={limit}")).await;
            assert_eq!(page["items"].as_array().map(Vec::len), Some(1), "limit={limit}");
        }
    }

    async fn paging_with_a_cursor_visits_each_order_once_newest_first(db) {
        let app = spawn_app(db).await;
        let ids = place_many(&app, &app.alice, 5).await;
        // Bob's order is in none of Alice's pages.
        app.place(&app.bob, &[(Uuid::now_v7(), 1)]).await;

        let mut seen = Vec::new();
        let mut sizes = Vec::new();
        let mut query = "limit=2".to_owned();
        loop {
            let page = app.list_as(&app.alice, &query).await;
            let page_ids = item_ids(&page);
            sizes.push(page_ids.len());
            seen.extend(page_ids);
            match page["nextCursor"].as_str() {
                Some(cursor) => query = format!("limit=2&cursor={cursor}"),
                None => break,
            }
            assert!(sizes.len() < 10, "paging does not end: {sizes:?}");
        }
        assert_eq!(sizes, [2, 2, 1]);
        assert_eq!(seen, newest_first(&ids));
        assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 5, "each order once");

        // A page that ends exactly at the last order has no next cursor.
        let page = app.list_as(&app.alice, "limit=5").await;
        assert_eq!(item_ids(&page), newest_first(&ids));
        assert_eq!(page["nextCursor"], Value::Null);

        // The admin pages through everyone's with the same cursor rules.
        let mut everyone = Vec::new();
        let mut query = "limit=4".to_owned();
        loop {
            let page = app.list_as(&app.admin, &query).await;
            everyone.extend(item_ids(&page));
            match page["nextCursor"].as_str() {
                Some(cursor) => query = format!("limit=4&cursor={cursor}"),
                None => break,
            }
        }
        assert_eq!(everyone.len(), 6);
        assert_eq!(everyone[1..].to_vec(), newest_first(&ids));
    }

    async fn paging_with_a_status_filter_keeps_the_filter(db) {
        let app = spawn_app(db).await;
        let ids = place_many(&app, &app.alice, 5).await;
        for id in [ids[1], ids[3]] {
            json_body(app.delete(&order_path(id), Some(&app.alice.token)).await, StatusCode::OK).await;
        }
        let first = app.list_as(&app.alice, "status=pending&limit=2").await;
        assert_eq!(item_ids(&first), vec![ids[4], ids[2]]);
        let cursor = text(&first["nextCursor"]);
        let second = app.list_as(&app.alice, &format!("status=pending&limit=2&cursor={cursor}")).await;
        assert_eq!(item_ids(&second), vec![ids[0]]);
        assert_eq!(second["nextCursor"], Value::Null);
    }
}

/// `inventory.rejected` for a placement at version 1.
fn rejected_event(order: Uuid, product: Uuid) -> mercato_contracts::Envelope<Value> {
    rejected(order, 1, mercato_contracts::RejectionReason::UnknownProduct, Some(product))
}

backend_tests! {
    async fn by_user_gives_each_users_first_page_in_one_call(db) {
        let app = spawn_app(db).await;
        let alices = place_many(&app, &app.alice, 3).await;
        let bobs = place_many(&app, &app.bob, 1).await;
        let nobody = Uuid::now_v7();
        let path = format!(
            "/api/orders/by-user?userIds={},{nobody},{}&limit=2",
            app.alice.id, app.bob.id
        );
        let answer = json_body(app.get(&path, Some(&app.admin.token)).await, StatusCode::OK).await;
        let pages = answer["pages"].as_array().expect("pages");
        let users: Vec<&Value> = pages.iter().map(|page| &page["userId"]).collect();
        assert_eq!(users, [&json!(app.alice.id), &json!(nobody), &json!(app.bob.id)], "{answer}");

        // Alice: her newest two, and a cursor that continues her list where the page ends.
        assert_eq!(item_ids(&pages[0]), newest_first(&alices)[..2].to_vec(), "{answer}");
        let cursor = pages[0]["nextCursor"].as_str().expect("alice has more");
        let rest = app.list_as(&app.admin, &format!("userId={}&cursor={cursor}", app.alice.id)).await;
        assert_eq!(item_ids(&rest), newest_first(&alices)[2..].to_vec());
        assert_eq!(item_ids(&pages[1]), Vec::<Uuid>::new());
        assert_eq!(pages[1]["nextCursor"], Value::Null);
        assert_eq!(item_ids(&pages[2]), bobs);
        assert_eq!(pages[2]["nextCursor"], Value::Null);
        for order in pages[0]["items"].as_array().expect("items") {
            assert_order_shape(order);
        }

        // The status filter applies to every page.
        let path = format!("/api/orders/by-user?userIds={}&status=confirmed", app.alice.id);
        let answer = json_body(app.get(&path, Some(&app.admin.token)).await, StatusCode::OK).await;
        assert_eq!(item_ids(&answer["pages"][0]), Vec::<Uuid>::new());
    }

    async fn by_user_lets_a_customer_read_only_their_own_pages(db) {
        let app = spawn_app(db).await;
        let alices = place_many(&app, &app.alice, 1).await;
        let own = format!("/api/orders/by-user?userIds={}", app.alice.id);
        let answer = json_body(app.get(&own, Some(&app.alice.token)).await, StatusCode::OK).await;
        assert_eq!(item_ids(&answer["pages"][0]), alices);
        let both = format!("/api/orders/by-user?userIds={},{}", app.alice.id, app.bob.id);
        problem(app.get(&both, Some(&app.alice.token)).await, StatusCode::FORBIDDEN, "forbidden").await;
        problem(app.get(&own, None).await, StatusCode::UNAUTHORIZED, "unauthenticated").await;
        for bad in ["userIds=nope", "userIds=", "limit=0", "status=lost"] {
            let path = if bad.starts_with("userIds") {
                format!("/api/orders/by-user?{bad}")
            } else {
                format!("/api/orders/by-user?userIds={}&{bad}", app.alice.id)
            };
            problem(app.get(&path, Some(&app.admin.token)).await, StatusCode::BAD_REQUEST, "bad_request")
                .await;
        }
    }
}
