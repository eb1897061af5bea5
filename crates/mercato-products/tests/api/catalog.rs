//! The catalog through HTTP: `POST /api/products`, `GET`, `PUT`/`PATCH` and `DELETE
//! /api/products/:id`, who may call them, what they answer, what they change and the events
//! they leave in the outbox.

use mercato_contracts::{InventoryUpdated, ProductCreated, ProductDeleted, ProductUpdated};
use mercato_platform::auth::{Claims, Role};
use mercato_testkit::backend_tests;
use reqwest::header::LOCATION;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::harness::*;

/// A moment long past, and how the API shows it: what [`TestApp::backdate`] sets.
const LONG_AGO: i64 = 1_700_000_000_000;
const LONG_AGO_TEXT: &str = "2023-11-14T22:13:20.000Z";

fn mug() -> Value {
    json!({
        "name": "Mug",
        "price": "19.99",
        "stock": 5,
        "sku": "MUG-01",
        "description": "A mug",
        "category": "Kitchen",
    })
}

fn path(id: Uuid) -> String {
    format!("/api/products/{id}")
}

/// The answer's fields, sorted: what a `422` names.
async fn sorted_fields(response: reqwest::Response) -> Vec<String> {
    let mut fields = invalid_fields(response).await;
    fields.sort();
    fields
}

/// Nothing was created: the list is empty and no creation was recorded.
async fn assert_catalog_empty(app: &TestApp) {
    let page = app.list(&[]).await;
    assert_eq!(page, json!({"items": [], "nextCursor": null}));
    assert_eq!(app.outbox_events::<ProductCreated>().await, Vec::<Value>::new());
    assert_eq!(app.outbox_events::<InventoryUpdated>().await, Vec::<Value>::new());
}

fn expired_token(app: &TestApp) -> String {
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("a clock after 1970")
            .as_secs(),
    )
    .expect("seconds fit");
    app.keys
        .sign(&Claims {
            sub: Uuid::now_v7().to_string(),
            role: Role::Admin,
            iat: now - 7_200,
            exp: now - 3_600,
            iss: ISSUER.to_owned(),
            jti: Uuid::now_v7().to_string(),
        })
        .expect("the test key signs a token")
}

backend_tests! {
    async fn creating_a_product_answers_201_with_location_etag_and_the_product(db) {
        let app = spawn_app(db).await;
        let response = app.post_json("/api/products", &mug(), Some(&app.admin)).await;
        let location = response.headers().get(LOCATION).map(|v| v.to_str().expect("ascii").to_owned());
        let (etag, created) = tagged_body(response, StatusCode::CREATED).await;

        assert_product_shape(&created);
        let id = id_of(&created);
        assert_eq!(location, Some(format!("/api/products/{id}")));
        assert_eq!(etag.as_deref(), Some("\"1\""));
        let expected = json!({
            "id": id,
            "sku": "MUG-01",
            "name": "Mug",
            "description": "A mug",
            "category": "Kitchen",
            "price": "19.99",
            "stock": 5,
            "active": true,
            "version": 1,
            "createdAt": created["createdAt"],
            "updatedAt": created["createdAt"],
        });
        assert_eq!(created, expected);

        // The Location names the product as the public route shows it.
        let (etag, read) = tagged_body(app.get(&path(id), None).await, StatusCode::OK).await;
        assert_eq!(etag.as_deref(), Some("\"1\""));
        assert_eq!(read, created);
    }

    async fn text_fields_are_trimmed_and_optional_ones_default_to_null(db) {
        let app = spawn_app(db).await;
        let created =
            app.create_product(json!({"name": "  Tea cup \n", "price": "3", "stock": 0})).await;
        assert_product_shape(&created);
        assert_eq!(created["name"], "Tea cup");
        assert_eq!(created["price"], "3.00");
        assert_eq!(created["stock"], 0);
        assert_eq!(created["description"], Value::Null);
        assert_eq!(created["category"], Value::Null);

        let explicit = app
            .create_product(json!({
                "name": "Saucer", "price": "3.00", "stock": 1,
                "description": null, "category": null, "sku": null,
            }))
            .await;
        assert_eq!((&explicit["description"], &explicit["category"]), (&Value::Null, &Value::Null));
        assert!(explicit["sku"].is_string(), "a generated sku: {explicit}");
    }

    async fn a_price_may_be_a_decimal_string_or_a_json_number(db) {
        let app = spawn_app(db).await;
        let cases = [
            (json!("19.99"), "19.99"),
            (json!(19.99), "19.99"),
            (json!("19.9"), "19.90"),
            (json!(19.9), "19.90"),
            (json!(7), "7.00"),
            (json!("0"), "0.00"),
            (json!(0.05), "0.05"),
            (json!("1000000.00"), "1000000.00"),
            (json!(1_000_000), "1000000.00"),
        ];
        for (n, (price, shown)) in cases.into_iter().enumerate() {
            let body = json!({"name": format!("Priced {n}"), "price": price, "stock": 1});
            let created = app.create_product(body).await;
            assert_eq!(created["price"], shown, "price {price}");
            assert_eq!(app.product(id_of(&created)).await["price"], shown, "price {price} read back");
        }
    }

    async fn an_absent_sku_is_generated_valid_and_unique(db) {
        let app = spawn_app(db).await;
        let first = app.create_product(json!({"name": "One", "price": "1.00", "stock": 1})).await;
        let second = app.create_product(json!({"name": "Two", "price": "1.00", "stock": 1})).await;
        let skus = [text(&first["sku"]), text(&second["sku"])];
        for sku in &skus {
            let valid = !sku.is_empty()
                && sku.len() <= 64
                && sku.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
            assert!(valid, "a generated sku follows the sku rules: {sku:?}");
        }
        assert_ne!(skus[0].to_lowercase(), skus[1].to_lowercase());

        // A generated sku is taken like any other.
        let copy = json!({"name": "Copy", "price": "1.00", "stock": 1, "sku": skus[0].to_lowercase()});
        problem(app.post_json("/api/products", &copy, Some(&app.admin)).await, StatusCode::CONFLICT, "sku_taken")
            .await;
    }

    async fn a_taken_sku_is_a_conflict_whatever_its_case(db) {
        let app = spawn_app(db).await;
        let first = app.create_product(mug()).await;
        for sku in ["MUG-01", "mug-01", "Mug-01"] {
            let body = json!({"name": "Other", "price": "1.00", "stock": 3, "sku": sku});
            let refusal = problem(
                app.post_json("/api/products", &body, Some(&app.admin)).await,
                StatusCode::CONFLICT,
                "sku_taken",
            )
            .await;
            assert_eq!(refusal["status"], 409);
        }
        // A refused request changes nothing.
        assert_eq!(item_ids(&app.list(&[]).await), vec![id_of(&first)]);
        assert_eq!(app.outbox_events::<ProductCreated>().await.len(), 1);
        assert_eq!(app.outbox_events::<InventoryUpdated>().await.len(), 1);
    }

    async fn writes_without_a_valid_token_are_unauthenticated(db) {
        let app = spawn_app(db).await;
        let id = app.product_with_stock("Kept", 4).await;
        let before = app.product(id).await;
        let writes = [
            (Method::POST, "/api/products".to_owned(), Some(mug())),
            (Method::PATCH, path(id), Some(json!({"name": "Changed"}))),
            (Method::PUT, path(id), Some(json!({"name": "Changed"}))),
            (Method::DELETE, path(id), None),
            (Method::POST, format!("/api/products/{id}/inventory"), Some(json!({"delta": 1}))),
        ];
        let other_key = mint(&mercato_users::SigningKeys::generate(), Uuid::now_v7(), Role::Admin);
        let expired = expired_token(&app);
        for (method, path, body) in &writes {
            let answer = app.send(method.clone(), path, body.as_ref(), None).await;
            problem(answer, StatusCode::UNAUTHORIZED, "unauthenticated").await;
            for token in ["garbage", "a.b.c", other_key.as_str(), expired.as_str()] {
                let answer = app.send(method.clone(), path, body.as_ref(), Some(token)).await;
                problem(answer, StatusCode::UNAUTHORIZED, "invalid_token").await;
            }
            // Not `Bearer`.
            let mut request = app.request(method.clone(), path, None).header("authorization", format!("Basic {}", app.admin));
            if let Some(body) = body {
                request = request.json(body);
            }
            let answer = request.send().await.expect("an answer");
            problem(answer, StatusCode::UNAUTHORIZED, "invalid_token").await;
        }
        assert_eq!(app.product(id).await, before);
        assert_eq!(item_ids(&app.list(&[]).await), vec![id]);
        assert_eq!(app.outbox_events::<ProductCreated>().await.len(), 1);
    }

    async fn a_customer_may_not_write_even_with_an_invalid_body(db) {
        let app = spawn_app(db).await;
        let id = app.product_with_stock("Kept", 4).await;
        let before = app.product(id).await;
        let customer = Some(app.customer.as_str());
        for body in [mug(), json!({}), json!({"name": "", "price": -1, "stock": 1.5})] {
            let answer = app.post_json("/api/products", &body, customer).await;
            problem(answer, StatusCode::FORBIDDEN, "forbidden").await;
        }
        for body in [json!({"name": "Changed"}), json!({"price": "abc"})] {
            problem(app.patch_json(&path(id), &body, customer).await, StatusCode::FORBIDDEN, "forbidden").await;
            problem(app.put_json(&path(id), &body, customer).await, StatusCode::FORBIDDEN, "forbidden").await;
        }
        problem(app.delete(&path(id), customer).await, StatusCode::FORBIDDEN, "forbidden").await;

        assert_eq!(app.product(id).await, before);
        assert_eq!(item_ids(&app.list(&[]).await), vec![id]);
        assert_eq!(app.outbox_events::<ProductCreated>().await.len(), 1);
        assert!(app.outbox_events::<ProductUpdated>().await.is_empty());
        assert!(app.outbox_events::<ProductDeleted>().await.is_empty());
    }

    async fn each_invalid_field_is_listed_and_nothing_is_created(db) {
        let app = spawn_app(db).await;
        let valid = |overrides: Value| {
            let mut body = json!({"name": "Mug", "price": "1.00", "stock": 1});
            for (key, value) in overrides.as_object().expect("an object") {
                body[key] = value.clone();
            }
            body
        };
        let cases: Vec<(Value, Vec<&str>)> = vec![
            (valid(json!({"name": ""})), vec!["name"]),
            (valid(json!({"name": "   "})), vec!["name"]),
            (valid(json!({"name": "x".repeat(201)})), vec!["name"]),
            (valid(json!({"name": "é".repeat(201)})), vec!["name"]),
            (valid(json!({"price": -1})), vec!["price"]),
            (valid(json!({"price": "-1.00"})), vec!["price"]),
            (valid(json!({"price": -0.5})), vec!["price"]),
            (valid(json!({"price": "1.999"})), vec!["price"]),
            (valid(json!({"price": 1.999})), vec!["price"]),
            (valid(json!({"price": "1000000.01"})), vec!["price"]),
            (valid(json!({"price": 1_000_000.01})), vec!["price"]),
            (valid(json!({"price": 1_000_001})), vec!["price"]),
            (valid(json!({"price": true})), vec!["price"]),
            (valid(json!({"price": "abc"})), vec!["price"]),
            (valid(json!({"price": ["1.00"]})), vec!["price"]),
            (valid(json!({"price": {"amount": "1.00"}})), vec!["price"]),
            (valid(json!({"price": ""})), vec!["price"]),
            (valid(json!({"stock": -1})), vec!["stock"]),
            (valid(json!({"stock": 1.5})), vec!["stock"]),
            (valid(json!({"stock": 1_000_000_001})), vec!["stock"]),
            (valid(json!({"stock": "5"})), vec!["stock"]),
            (valid(json!({"stock": true})), vec!["stock"]),
            (valid(json!({"sku": ""})), vec!["sku"]),
            (valid(json!({"sku": "has space"})), vec!["sku"]),
            (valid(json!({"sku": "a/b"})), vec!["sku"]),
            (valid(json!({"sku": "ünï"})), vec!["sku"]),
            (valid(json!({"sku": "MUG#1"})), vec!["sku"]),
            (valid(json!({"sku": "x".repeat(65)})), vec!["sku"]),
            (valid(json!({"category": ""})), vec!["category"]),
            (valid(json!({"category": "c".repeat(101)})), vec!["category"]),
            (valid(json!({"description": "d".repeat(5_001)})), vec!["description"]),
            (json!({}), vec!["name", "price", "stock"]),
            (json!({"name": "Mug"}), vec!["price", "stock"]),
            (json!({"name": "Mug", "price": null, "stock": null}), vec!["price", "stock"]),
            (
                json!({"name": "", "price": "-1", "stock": -1, "sku": "bad sku", "category": ""}),
                vec!["category", "name", "price", "sku", "stock"],
            ),
        ];
        for (body, expected) in cases {
            let fields = sorted_fields(app.post_json("/api/products", &body, Some(&app.admin)).await).await;
            assert_eq!(fields, expected, "fields named for {body}");
        }
        assert_catalog_empty(&app).await;
    }

    async fn the_largest_and_smallest_values_are_accepted(db) {
        let app = spawn_app(db).await;
        let created = app
            .create_product(json!({
                "name": "é".repeat(200),
                "price": "1000000.00",
                "stock": 1_000_000_000,
                "sku": "x".repeat(64),
                "category": "c".repeat(100),
                "description": "d".repeat(5_000),
            }))
            .await;
        assert_eq!(created["name"], "é".repeat(200));
        assert_eq!(created["price"], "1000000.00");
        assert_eq!(created["stock"], 1_000_000_000);
        assert_eq!(created["sku"], "x".repeat(64));
        assert_eq!(app.product(id_of(&created)).await, created);

        let smallest = app
            .create_product(json!({"name": "a", "price": 0, "stock": 0, "sku": "A", "category": "c"}))
            .await;
        assert_eq!((&smallest["price"], &smallest["stock"]), (&json!("0.00"), &json!(0)));
        let skus = app.create_product(json!({"name": "b", "price": 1, "stock": 0, "sku": "Az09._-"})).await;
        assert_eq!(skus["sku"], "Az09._-");
    }

    async fn a_body_must_be_json(db) {
        let app = spawn_app(db).await;
        let answer = app
            .request(Method::POST, "/api/products", Some(&app.admin))
            .header("content-type", "text/plain")
            .body(mug().to_string())
            .send()
            .await
            .expect("an answer");
        problem(answer, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type").await;
        let answer = app
            .request(Method::POST, "/api/products", Some(&app.admin))
            .header("content-type", "application/json")
            .body("{\"name\": ")
            .send()
            .await
            .expect("an answer");
        problem(answer, StatusCode::BAD_REQUEST, "malformed_json").await;
        assert_catalog_empty(&app).await;
    }

    async fn a_product_is_read_by_anyone_with_its_etag(db) {
        let app = spawn_app(db).await;
        let created = app.create_product(mug()).await;
        let id = id_of(&created);
        for token in [None, Some(app.customer.as_str()), Some(app.admin.as_str())] {
            let (etag, read) = tagged_body(app.get(&path(id), token).await, StatusCode::OK).await;
            assert_eq!(etag.as_deref(), Some("\"1\""));
            assert_eq!(read, created);
        }
        let unknown = path(Uuid::now_v7());
        problem(app.get(&unknown, None).await, StatusCode::NOT_FOUND, "not_found").await;
    }

    async fn a_path_id_that_is_not_a_uuid_is_a_bad_request(db) {
        let app = spawn_app(db).await;
        for id in ["42", "not-a-uuid", "0193a0c4-7b5e-7cc2-9f3e"] {
            let path = format!("/api/products/{id}");
            problem(app.get(&path, None).await, StatusCode::BAD_REQUEST, "bad_request").await;
            let answer = app.patch_json(&path, &json!({"name": "X"}), Some(&app.admin)).await;
            problem(answer, StatusCode::BAD_REQUEST, "bad_request").await;
            let answer = app.put_json(&path, &json!({"name": "X"}), Some(&app.admin)).await;
            problem(answer, StatusCode::BAD_REQUEST, "bad_request").await;
            problem(app.delete(&path, Some(&app.admin)).await, StatusCode::BAD_REQUEST, "bad_request").await;
            let answer = app.post_json(&format!("{path}/inventory"), &json!({"delta": 1}), Some(&app.admin)).await;
            problem(answer, StatusCode::BAD_REQUEST, "bad_request").await;
        }
    }

    async fn patch_and_put_change_only_the_fields_they_send(db) {
        let app = spawn_app(db).await;
        let id = id_of(&app.create_product(mug()).await);
        app.backdate(id, LONG_AGO).await;
        let before = app.product(id).await;
        assert_eq!(before["updatedAt"], LONG_AGO_TEXT);

        let (etag, renamed) = tagged_body(
            app.patch_json(&path(id), &json!({"name": "Big mug"}), Some(&app.admin)).await,
            StatusCode::OK,
        )
        .await;
        assert_product_shape(&renamed);
        assert_eq!(etag.as_deref(), Some("\"2\""));
        let mut expected = before.clone();
        expected["name"] = json!("Big mug");
        expected["version"] = json!(2);
        expected["updatedAt"] = renamed["updatedAt"].clone();
        assert_eq!(renamed, expected);
        assert_eq!(renamed["createdAt"], LONG_AGO_TEXT);
        assert!(
            text(&renamed["updatedAt"]).as_str() > LONG_AGO_TEXT,
            "updatedAt moved on: {renamed}"
        );
        assert_eq!(app.product(id).await, renamed);

        // PUT is a partial update too: the name stays, the price changes.
        app.backdate(id, LONG_AGO).await;
        let (etag, repriced) = tagged_body(
            app.put_json(&path(id), &json!({"price": 24.5}), Some(&app.admin)).await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(etag.as_deref(), Some("\"3\""));
        let mut expected = renamed.clone();
        expected["price"] = json!("24.50");
        expected["version"] = json!(3);
        expected["createdAt"] = json!(LONG_AGO_TEXT);
        expected["updatedAt"] = repriced["updatedAt"].clone();
        assert_eq!(repriced, expected);
        assert!(text(&repriced["updatedAt"]).as_str() > LONG_AGO_TEXT, "updatedAt moved on: {repriced}");

        // Everything but stock at once.
        let (etag, all) = tagged_body(
            app.patch_json(
                &path(id),
                &json!({"name": "Cup", "price": "2.00", "sku": "CUP-1", "description": "Small", "category": "Tableware"}),
                Some(&app.admin),
            )
            .await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(etag.as_deref(), Some("\"4\""));
        assert_eq!(
            (&all["name"], &all["price"], &all["sku"], &all["description"], &all["category"], &all["stock"]),
            (&json!("Cup"), &json!("2.00"), &json!("CUP-1"), &json!("Small"), &json!("Tableware"), &json!(5))
        );
        let (etag, read) = tagged_body(app.get(&path(id), None).await, StatusCode::OK).await;
        assert_eq!(etag.as_deref(), Some("\"4\""));
        assert_eq!(read, all);

        assert_eq!(
            app.outbox_events::<ProductUpdated>().await,
            vec![
                json!({"productId": id, "sku": "MUG-01", "name": "Big mug", "price": "19.99", "category": "Kitchen", "active": true}),
                json!({"productId": id, "sku": "MUG-01", "name": "Big mug", "price": "24.50", "category": "Kitchen", "active": true}),
                json!({"productId": id, "sku": "CUP-1", "name": "Cup", "price": "2.00", "category": "Tableware", "active": true}),
            ]
        );
    }

    async fn null_clears_description_and_category(db) {
        let app = spawn_app(db).await;
        let id = id_of(&app.create_product(mug()).await);
        let cleared = json_body(
            app.patch_json(&path(id), &json!({"description": null, "category": null}), Some(&app.admin)).await,
            StatusCode::OK,
        )
        .await;
        assert_eq!((&cleared["description"], &cleared["category"]), (&Value::Null, &Value::Null));
        assert_eq!((&cleared["name"], &cleared["price"], &cleared["version"]), (&json!("Mug"), &json!("19.99"), &json!(2)));
        assert_eq!(app.product(id).await, cleared);
        // The category filter follows.
        assert_eq!(app.list(&[("category", "Kitchen")]).await["items"], json!([]));
        assert_eq!(
            app.outbox_events::<ProductUpdated>().await,
            vec![json!({"productId": id, "sku": "MUG-01", "name": "Mug", "price": "19.99", "category": null, "active": true})]
        );

        // Clearing what is already clear changes nothing; setting it again does.
        let again = json_body(
            app.patch_json(&path(id), &json!({"description": null, "category": null}), Some(&app.admin)).await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(again, cleared);
        let set = json_body(
            app.put_json(&path(id), &json!({"category": "Dining"}), Some(&app.admin)).await,
            StatusCode::OK,
        )
        .await;
        assert_eq!((&set["category"], &set["description"], &set["version"]), (&json!("Dining"), &Value::Null, &json!(3)));
        assert_eq!(item_ids(&app.list(&[("category", "dining")]).await), vec![id]);
    }

    async fn a_body_that_changes_nothing_keeps_the_version(db) {
        let app = spawn_app(db).await;
        let id = id_of(&app.create_product(mug()).await);
        app.backdate(id, LONG_AGO).await;
        let before = app.product(id).await;
        let same = [
            json!({}),
            json!({"name": "Mug"}),
            json!({"name": "  Mug  ", "price": 19.99, "sku": "MUG-01"}),
            json!({"price": "19.99", "category": "Kitchen"}),
            json!({"description": "A mug", "category": "Kitchen"}),
        ];
        for body in same {
            let (etag, answer) =
                tagged_body(app.patch_json(&path(id), &body, Some(&app.admin)).await, StatusCode::OK).await;
            assert_eq!(etag.as_deref(), Some("\"1\""), "{body}");
            assert_eq!(answer, before, "{body}");
            let (etag, answer) =
                tagged_body(app.put_json(&path(id), &body, Some(&app.admin)).await, StatusCode::OK).await;
            assert_eq!(etag.as_deref(), Some("\"1\""), "{body}");
            assert_eq!(answer, before, "{body}");
        }
        assert_eq!(app.product(id).await, before);
        assert_eq!(app.product(id).await["updatedAt"], LONG_AGO_TEXT);
        assert!(app.outbox_events::<ProductUpdated>().await.is_empty());
    }

    async fn if_match_guards_a_change(db) {
        let app = spawn_app(db).await;
        let id = id_of(&app.create_product(mug()).await);

        let answer = app.send_if_match(Method::PATCH, &path(id), Some(&json!({"name": "First"})), "\"1\"").await;
        let (etag, first) = tagged_body(answer, StatusCode::OK).await;
        assert_eq!((etag.as_deref(), &first["name"], &first["version"]), (Some("\"2\""), &json!("First"), &json!(2)));

        // Based on a version that is gone: refused, and nothing changes.
        for stale in ["\"1\"", "\"3\"", "W/\"2\"", "2", "\"1\", \"3\""] {
            for method in [Method::PATCH, Method::PUT] {
                let body = json!({"name": "Lost", "price": "1.00"});
                let answer = app.send_if_match(method, &path(id), Some(&body), stale).await;
                problem(answer, StatusCode::PRECONDITION_FAILED, "version_mismatch").await;
            }
            let answer = app.send_if_match(Method::DELETE, &path(id), None, stale).await;
            problem(answer, StatusCode::PRECONDITION_FAILED, "version_mismatch").await;
        }
        assert_eq!(app.product(id).await, first);

        // The current tag (alone or in a list) and `*` match.
        let answer = app.send_if_match(Method::PUT, &path(id), Some(&json!({"name": "Second"})), "\"2\"").await;
        let (etag, second) = tagged_body(answer, StatusCode::OK).await;
        assert_eq!((etag.as_deref(), &second["name"], &second["version"]), (Some("\"3\""), &json!("Second"), &json!(3)));
        let answer = app.send_if_match(Method::PATCH, &path(id), Some(&json!({"name": "Third"})), "\"1\", \"3\"").await;
        let (etag, third) = tagged_body(answer, StatusCode::OK).await;
        assert_eq!((etag.as_deref(), &third["name"]), (Some("\"4\""), &json!("Third")));
        let answer = app.send_if_match(Method::PATCH, &path(id), Some(&json!({"name": "Star"})), "*").await;
        let (etag, star) = tagged_body(answer, StatusCode::OK).await;
        assert_eq!((etag.as_deref(), &star["name"], &star["version"]), (Some("\"5\""), &json!("Star"), &json!(5)));

        let names: Vec<Value> =
            app.outbox_events::<ProductUpdated>().await.iter().map(|event| event["name"].clone()).collect();
        assert_eq!(names, vec![json!("First"), json!("Second"), json!("Third"), json!("Star")]);

        // The ETag a GET gives is what If-Match takes.
        let (etag, _) = tagged_body(app.get(&path(id), None).await, StatusCode::OK).await;
        let etag = etag.expect("an ETag");
        let answer = app.send_if_match(Method::DELETE, &path(id), None, &etag).await;
        assert_eq!(answer.status(), StatusCode::NO_CONTENT);
        assert_eq!(app.product(id).await["active"], false);
    }

    async fn a_taken_sku_on_update_is_a_conflict_and_changes_nothing(db) {
        let app = spawn_app(db).await;
        let first = app.create_product(json!({"name": "First", "price": "1.00", "stock": 1, "sku": "A-1"})).await;
        let second = app.create_product(json!({"name": "Second", "price": "2.00", "stock": 2, "sku": "B-1"})).await;
        let (a, b) = (id_of(&first), id_of(&second));
        for sku in ["A-1", "a-1"] {
            let body = json!({"sku": sku, "name": "Renamed"});
            let answer = app.patch_json(&path(b), &body, Some(&app.admin)).await;
            problem(answer, StatusCode::CONFLICT, "sku_taken").await;
            let answer = app.put_json(&path(b), &body, Some(&app.admin)).await;
            problem(answer, StatusCode::CONFLICT, "sku_taken").await;
        }
        assert_eq!(app.product(b).await, second);
        assert!(app.outbox_events::<ProductUpdated>().await.is_empty());

        // A product may change the case of its own sku; then the old spelling is still taken.
        let own = json_body(app.patch_json(&path(a), &json!({"sku": "a-1"}), Some(&app.admin)).await, StatusCode::OK).await;
        assert_eq!((&own["sku"], &own["version"]), (&json!("a-1"), &json!(2)));
        let body = json!({"name": "Third", "price": "1.00", "stock": 1, "sku": "A-1"});
        problem(app.post_json("/api/products", &body, Some(&app.admin)).await, StatusCode::CONFLICT, "sku_taken").await;
        // And a freed sku may be taken by another.
        json_body(app.patch_json(&path(a), &json!({"sku": "A-2"}), Some(&app.admin)).await, StatusCode::OK).await;
        let moved = json_body(app.patch_json(&path(b), &json!({"sku": "A-1"}), Some(&app.admin)).await, StatusCode::OK).await;
        assert_eq!(moved["sku"], "A-1");
    }

    async fn updates_need_an_admin_and_a_known_product(db) {
        let app = spawn_app(db).await;
        let created = app.create_product(mug()).await;
        let id = id_of(&created);
        let body = json!({"name": "Changed"});
        let customer = Some(app.customer.as_str());
        problem(app.patch_json(&path(id), &body, customer).await, StatusCode::FORBIDDEN, "forbidden").await;
        problem(app.put_json(&path(id), &body, customer).await, StatusCode::FORBIDDEN, "forbidden").await;
        problem(app.patch_json(&path(id), &body, None).await, StatusCode::UNAUTHORIZED, "unauthenticated").await;
        let unknown = path(Uuid::now_v7());
        problem(app.patch_json(&unknown, &body, Some(&app.admin)).await, StatusCode::NOT_FOUND, "not_found").await;
        problem(app.put_json(&unknown, &body, Some(&app.admin)).await, StatusCode::NOT_FOUND, "not_found").await;
        assert_eq!(app.product(id).await, created);
        assert!(app.outbox_events::<ProductUpdated>().await.is_empty());
    }

    async fn an_invalid_update_lists_its_fields_and_changes_nothing(db) {
        let app = spawn_app(db).await;
        let created = app.create_product(mug()).await;
        let id = id_of(&created);
        let cases: Vec<(Value, Vec<&str>)> = vec![
            (json!({"name": "Fine", "price": "-1"}), vec!["price"]),
            (json!({"name": ""}), vec!["name"]),
            (json!({"name": "n".repeat(201)}), vec!["name"]),
            (json!({"price": "1.999"}), vec!["price"]),
            (json!({"price": 1.999}), vec!["price"]),
            (json!({"price": "1000000.01"}), vec!["price"]),
            (json!({"price": false}), vec!["price"]),
            (json!({"sku": "bad sku", "name": "Fine"}), vec!["sku"]),
            (json!({"sku": "s".repeat(65)}), vec!["sku"]),
            (json!({"sku": ""}), vec!["sku"]),
            (json!({"category": "", "description": "Fine"}), vec!["category"]),
            (
                json!({"name": "", "price": "1.999", "sku": "a b", "category": "", "description": "d".repeat(5_001)}),
                vec!["category", "description", "name", "price", "sku"],
            ),
        ];
        for (body, expected) in cases {
            let fields = sorted_fields(app.patch_json(&path(id), &body, Some(&app.admin)).await).await;
            assert_eq!(fields, expected, "PATCH {body}");
            let fields = sorted_fields(app.put_json(&path(id), &body, Some(&app.admin)).await).await;
            assert_eq!(fields, expected, "PUT {body}");
        }
        assert_eq!(app.product(id).await, created);
        assert!(app.outbox_events::<ProductUpdated>().await.is_empty());
    }

    async fn deleting_makes_a_product_inactive_and_hides_it_from_lists(db) {
        let app = spawn_app(db).await;
        let gone = app.create_product(mug()).await;
        let kept = app.product_with_stock("Kept", 2).await;
        let id = id_of(&gone);
        app.backdate(id, LONG_AGO).await;

        let (status, _, body) = parts(app.delete(&path(id), Some(&app.admin)).await).await;
        assert_eq!((status, body.as_str()), (StatusCode::NO_CONTENT, ""));

        let (etag, deleted) = tagged_body(app.get(&path(id), None).await, StatusCode::OK).await;
        assert_eq!(etag.as_deref(), Some("\"2\""));
        let mut expected = gone.clone();
        expected["active"] = json!(false);
        expected["version"] = json!(2);
        expected["createdAt"] = json!(LONG_AGO_TEXT);
        expected["updatedAt"] = deleted["updatedAt"].clone();
        assert_eq!(deleted, expected);
        assert!(text(&deleted["updatedAt"]).as_str() > LONG_AGO_TEXT, "updatedAt moved on: {deleted}");

        let ids = id.to_string();
        assert_eq!(app.list(&[("ids", ids.as_str())]).await, json!({"items": [deleted.clone()], "nextCursor": null}));
        assert_eq!(item_ids(&app.list(&[]).await), vec![kept]);
        assert_eq!(item_ids(&app.list(&[("q", "mug")]).await), Vec::<Uuid>::new());
        assert_eq!(item_ids(&app.list(&[("category", "Kitchen")]).await), Vec::<Uuid>::new());

        // Deleting again is fine and changes nothing.
        let (status, _, body) = parts(app.delete(&path(id), Some(&app.admin)).await).await;
        assert_eq!((status, body.as_str()), (StatusCode::NO_CONTENT, ""));
        let (etag, again) = tagged_body(app.get(&path(id), None).await, StatusCode::OK).await;
        assert_eq!(etag.as_deref(), Some("\"2\""));
        assert_eq!(again, deleted);

        assert_eq!(app.outbox_events::<ProductDeleted>().await, vec![json!({"productId": id})]);
        assert!(app.outbox_events::<ProductUpdated>().await.is_empty());
    }

    async fn deleting_needs_an_admin_and_a_known_product(db) {
        let app = spawn_app(db).await;
        let created = app.create_product(mug()).await;
        let id = id_of(&created);
        problem(app.delete(&path(id), Some(&app.customer)).await, StatusCode::FORBIDDEN, "forbidden").await;
        problem(app.delete(&path(id), None).await, StatusCode::UNAUTHORIZED, "unauthenticated").await;
        problem(app.delete(&path(Uuid::now_v7()), Some(&app.admin)).await, StatusCode::NOT_FOUND, "not_found").await;
        assert_eq!(app.product(id).await, created);
        assert_eq!(item_ids(&app.list(&[]).await), vec![id]);
        assert!(app.outbox_events::<ProductDeleted>().await.is_empty());
    }

    async fn concurrent_creates_with_one_sku_make_one_product(db) {
        let app = spawn_app(db).await;
        let bodies: Vec<Value> = ["RACE-1", "race-1", "Race-1", "RACE-1", "rAcE-1", "race-1"]
            .iter()
            .enumerate()
            .map(|(n, sku)| json!({"name": format!("Racer {n}"), "price": "1.00", "stock": 1, "sku": sku}))
            .collect();
        let answers = futures::future::join_all(
            bodies.iter().map(|body| app.post_json("/api/products", body, Some(&app.admin))),
        )
        .await;
        let mut winners = Vec::new();
        for answer in answers {
            if answer.status() == StatusCode::CREATED {
                winners.push(json_body(answer, StatusCode::CREATED).await);
            } else {
                problem(answer, StatusCode::CONFLICT, "sku_taken").await;
            }
        }
        assert_eq!(winners.len(), 1, "exactly one create wins: {winners:?}");
        assert_eq!(item_ids(&app.list(&[]).await), vec![id_of(&winners[0])]);
        assert_eq!(app.outbox_events::<ProductCreated>().await.len(), 1);
        assert_eq!(app.outbox_events::<InventoryUpdated>().await.len(), 1);
    }

    async fn concurrent_changes_based_on_one_version_make_one_change(db) {
        let app = spawn_app(db).await;
        let id = id_of(&app.create_product(mug()).await);
        let bodies: Vec<Value> = (0..6).map(|n| json!({"name": format!("Name {n}")})).collect();
        let target = path(id);
        let answers = futures::future::join_all(
            bodies.iter().map(|body| app.send_if_match(Method::PATCH, &target, Some(body), "\"1\"")),
        )
        .await;
        let mut winners = Vec::new();
        for answer in answers {
            if answer.status() == StatusCode::OK {
                winners.push(json_body(answer, StatusCode::OK).await);
            } else {
                problem(answer, StatusCode::PRECONDITION_FAILED, "version_mismatch").await;
            }
        }
        assert_eq!(winners.len(), 1, "exactly one change wins: {winners:?}");
        assert_eq!(winners[0]["version"], 2);
        assert_eq!(app.product(id).await, winners[0]);
        let updates = app.outbox_events::<ProductUpdated>().await;
        assert_eq!(updates.len(), 1);
        assert_eq!(updates[0]["name"], winners[0]["name"]);
    }

    async fn creating_records_product_created_and_the_initial_stock(db) {
        let app = spawn_app(db).await;
        let stocked = id_of(&app.create_product(mug()).await);
        let empty = id_of(&app.create_product(json!({"name": "Empty", "price": 4.5, "stock": 0, "sku": "E-1"})).await);

        assert_eq!(
            app.outbox_events::<ProductCreated>().await,
            vec![
                json!({"productId": stocked, "sku": "MUG-01", "name": "Mug", "price": "19.99", "category": "Kitchen", "active": true}),
                json!({"productId": empty, "sku": "E-1", "name": "Empty", "price": "4.50", "category": null, "active": true}),
            ]
        );
        // Only a product created with stock records a stock change, as an adjustment.
        assert_eq!(
            app.outbox_events::<InventoryUpdated>().await,
            vec![json!({"productId": stocked, "stock": 5, "delta": 5, "reason": "adjustment"})]
        );
        assert!(app.outbox_events::<ProductUpdated>().await.is_empty());
        assert!(app.outbox_events::<ProductDeleted>().await.is_empty());
    }
}

backend_tests! {
    async fn a_json_number_price_with_more_than_two_decimals_is_refused_however_small_the_excess(db) {
        let app = spawn_app(db).await;
        for price in ["1.0000000000000001", "19.990000000000000001"] {
            let body = format!(r#"{{"name": "Mug", "price": {price}, "stock": 1}}"#);
            let answer = app
                .request(Method::POST, "/api/products", Some(&app.admin))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .expect("an answer");
            assert_eq!(invalid_fields(answer).await, vec!["price"], "price {price}");
        }
        assert_catalog_empty(&app).await;
    }
}

backend_tests! {
    async fn a_wrongly_typed_text_field_is_listed_with_every_other_bad_field(db) {
        let app = spawn_app(db).await;
        let body = json!({"name": 5, "price": "-1", "stock": -1, "sku": "bad sku"});
        let fields = sorted_fields(app.post_json("/api/products", &body, Some(&app.admin)).await).await;
        assert_eq!(fields, vec!["name", "price", "sku", "stock"]);
        assert_catalog_empty(&app).await;
    }
}

backend_tests! {
    async fn a_patch_may_clear_description_and_category_but_not_name_price_or_sku(db) {
        let app = spawn_app(db).await;
        let product = app.create_product(json!({"name": "Mug", "price": "4.50", "stock": 1})).await;
        let path = format!("/api/products/{}", text(&product["id"]));
        for field in ["name", "price", "sku"] {
            let answer = app.patch_json(&path, &json!({ field: null }), Some(&app.admin)).await;
            assert_eq!(invalid_fields(answer).await, vec![field.to_owned()], "{field}: null");
        }
        assert_eq!(app.product(id_of(&product)).await, product, "nothing changed");
    }
}
