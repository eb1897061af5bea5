//! The products service in both shapes: mounted in `mercato up`, and as its own process under
//! `mercato serve products`, verifying the users service's tokens through its JWKS and
//! reserving stock for order events that arrive over JetStream.

use std::time::Duration;

use mercato_bus::EventBus;
use mercato_bus::bus::OutgoingMessage;
use mercato_bus::jetstream::JetStreamBus;
use mercato_contracts::{Envelope, Event, OrderLine, OrderPlaced, nats_subject};
use mercato_testkit::{Backend, TestDatabase, wait_until};
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::process::{Mercato, command, login, post_json, up};

async fn token_of(response: reqwest::Response) -> String {
    assert_eq!(response.status(), StatusCode::OK);
    let session: Value = response.json().await.expect("json");
    session["token"].as_str().expect("a token").to_owned()
}

async fn create_product(base: &str, token: &str, body: Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{base}/api/products"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("POST /api/products answers")
}

async fn get_json(url: String) -> Value {
    let response = reqwest::get(&url).await.expect("answers");
    assert_eq!(response.status(), StatusCode::OK, "{url}");
    response.json().await.expect("json")
}

#[tokio::test]
async fn up_serves_the_catalog_with_admin_writes_and_public_reads() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let mut command = up(dir.path());
    command
        .env("MERCATO_ADMIN_EMAIL", "boss@example.com")
        .env("MERCATO_ADMIN_PASSWORD", "a long admin secret");
    let mercato = Mercato::start(command).await;
    let admin = token_of(login(&mercato, "boss@example.com", "a long admin secret").await).await;
    let registered = post_json(
        &mercato.url("/api/users"),
        json!({"name": "Cy", "email": "cy@example.com", "password": "customer1"}),
    )
    .await;
    assert_eq!(registered.status(), StatusCode::CREATED);
    let customer = token_of(login(&mercato, "cy@example.com", "customer1").await).await;

    let body = json!({"name": "Mug", "price": "4.50", "stock": 3, "sku": "MUG-1"});
    let refused = create_product(&mercato.base_url, &customer, body.clone()).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let created = create_product(&mercato.base_url, &admin, body).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let product: Value = created.json().await.expect("json");

    let page = get_json(mercato.url("/api/products")).await;
    assert_eq!(page["items"], json!([product]));
    let openapi = get_json(mercato.url("/api/openapi.json")).await;
    for path in ["/api/products", "/api/products/{id}/inventory", "/api/users"] {
        assert!(openapi["paths"][path].is_object(), "{path} is documented");
    }
    let ready = get_json(mercato.url("/health/ready")).await;
    assert!(ready["checks"]["products.database"].is_string(), "{ready}");
    assert!(mercato.terminate().await.success());
}

async fn serve_products_reserves_for_orders_from_jetstream(backend: Backend) {
    let Some(nats) = mercato_testkit::reachable_shared_nats().await else { return };
    let Some(users_db) = TestDatabase::create(backend).await else { return };
    let Some(products_db) = TestDatabase::create(backend).await else { return };
    let prefix = mercato_testkit::unique_prefix();
    let dir = tempfile::tempdir().expect("a temp dir");
    let data = dir.path().display().to_string();
    let mut users = command(&[
        "serve",
        "users",
        "--listen",
        "127.0.0.1:0",
        "--database-url",
        &users_db.url,
        "--data-dir",
        &data,
        "--nats-url",
        &nats,
        "--nats-prefix",
        &prefix,
    ]);
    users
        .env("MERCATO_ADMIN_EMAIL", "ops@example.com")
        .env("MERCATO_ADMIN_PASSWORD", "ops password");
    let users = Mercato::start(users).await;
    let products = Mercato::start(command(&[
        "serve",
        "products",
        "--listen",
        "127.0.0.1:0",
        "--database-url",
        &products_db.url,
        "--users-url",
        &users.base_url,
        "--nats-url",
        &nats,
        "--nats-prefix",
        &prefix,
    ]))
    .await;

    let admin = token_of(login(&users, "ops@example.com", "ops password").await).await;
    let created = create_product(
        &products.base_url,
        &admin,
        json!({"name": "Lamp", "price": 25, "stock": 5}),
    )
    .await;
    assert_eq!(created.status(), StatusCode::CREATED, "the token is verified with the JWKS");
    let product: Value = created.json().await.expect("json");
    let id = Uuid::parse_str(product["id"].as_str().expect("an id")).expect("a UUID");
    let forged = create_product(&products.base_url, "not.a.token", json!({})).await;
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);

    // What the orders service will publish: the products process reserves for it.
    let bus = JetStreamBus::connect(&nats, &prefix).await.expect("NATS connects");
    let placed = OrderPlaced {
        order_id: Uuid::now_v7(),
        user_id: Uuid::now_v7(),
        order_version: 1,
        items: vec![OrderLine { product_id: id, quantity: 2 }],
    };
    let envelope = Envelope::new(placed, 0, None);
    let message = OutgoingMessage {
        event_id: envelope.id.clone(),
        subject: nats_subject(&prefix, OrderPlaced::AGGREGATE, OrderPlaced::ACTION),
        payload: serde_json::to_vec(&envelope).expect("serializes").into(),
    };
    for result in bus.publish(vec![message]).await {
        result.expect("JetStream takes the event");
    }
    let url = products.url(&format!("/api/products/{id}"));
    let stock = wait_until("the reservation takes 2 units", Duration::from_secs(30), || {
        let url = url.clone();
        async move {
            let product = get_json(url).await;
            (product["stock"] == 3).then_some(product["stock"].clone())
        }
    })
    .await;
    assert_eq!(stock, 3);

    assert!(products.terminate().await.success());
    assert!(users.terminate().await.success());
}

#[tokio::test]
async fn serve_products_runs_on_postgres() {
    serve_products_reserves_for_orders_from_jetstream(Backend::Postgres).await;
}

#[tokio::test]
async fn serve_products_runs_on_mariadb() {
    serve_products_reserves_for_orders_from_jetstream(Backend::MySql).await;
}
