//! The order saga across processes: `mercato serve users`, `serve products` and two replicas of
//! `serve orders`, each service on its own database (PostgreSQL or MariaDB), meeting only through
//! JetStream on the shared NATS (under a prefix of their own) and the users service's JWKS; then
//! `serve gateway` in front of them, forwarding REST, answering GraphQL over HTTP and pushing
//! subscriptions over WebSocket.

use std::time::Duration;

use mercato_testkit::{Backend, TestDatabase, wait_until};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::graphql_ws::{ORDER_STATUS, Socket, TRANSPORT_WS, results_until};
use crate::process::{Mercato, command, login, post_json};

async fn token_of(response: reqwest::Response) -> String {
    assert_eq!(response.status(), StatusCode::OK);
    let session: Value = response.json().await.expect("json");
    session["token"].as_str().expect("a token").to_owned()
}

fn serve(
    service: &str,
    database: &TestDatabase,
    nats: &str,
    prefix: &str,
    extra: &[&str],
) -> tokio::process::Command {
    let mut args = vec![
        "serve",
        service,
        "--listen",
        "127.0.0.1:0",
        "--database-url",
        &database.url,
        "--nats-url",
        nats,
        "--nats-prefix",
        prefix,
    ];
    args.extend_from_slice(extra);
    command(&args)
}

async fn send(
    method: reqwest::Method,
    url: String,
    token: &str,
    body: Option<Value>,
    prefer: Option<&str>,
) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new().request(method, &url).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    if let Some(prefer) = prefer {
        request = request.header("prefer", prefer);
    }
    let response = request.send().await.unwrap_or_else(|error| panic!("{url}: {error}"));
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn the_saga_runs_across_processes(backend: Backend) {
    let Some(nats) = mercato_testkit::reachable_shared_nats().await else { return };
    let Some(users_db) = TestDatabase::create(backend).await else { return };
    let Some(products_db) = TestDatabase::create(backend).await else { return };
    let Some(orders_db) = TestDatabase::create(backend).await else { return };
    let prefix = mercato_testkit::unique_prefix();
    let dir = tempfile::tempdir().expect("a temp dir");
    let data = dir.path().display().to_string();
    let mut users = serve("users", &users_db, &nats, &prefix, &["--data-dir", &data]);
    users
        .env("MERCATO_ADMIN_EMAIL", "ops@example.com")
        .env("MERCATO_ADMIN_PASSWORD", "ops password");
    let users = Mercato::start(users).await;
    let jwks = ["--users-url", users.base_url.as_str()];
    let products = Mercato::start(serve("products", &products_db, &nats, &prefix, &jwks)).await;
    let orders = Mercato::start(serve("orders", &orders_db, &nats, &prefix, &jwks)).await;
    // A second replica on the same database: it shares the durable consumers.
    let replica = Mercato::start(serve("orders", &orders_db, &nats, &prefix, &jwks)).await;

    let admin = token_of(login(&users, "ops@example.com", "ops password").await).await;
    let registered = post_json(
        &users.url("/api/users"),
        json!({"name": "Dee", "email": "dee@example.com", "password": "customer password"}),
    )
    .await;
    assert_eq!(registered.status(), StatusCode::CREATED);
    let customer = token_of(login(&users, "dee@example.com", "customer password").await).await;
    let (status, product) = send(
        reqwest::Method::POST,
        products.url("/api/products"),
        &admin,
        Some(json!({"name": "Lamp", "price": "25.00", "stock": 5})),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let product_id = product["id"].as_str().expect("an id").to_owned();
    let stock = || {
        let url = products.url(&format!("/api/products/{product_id}"));
        async move {
            let product: Value =
                reqwest::get(&url).await.expect("answers").json().await.expect("json");
            product["stock"].as_i64().expect("a stock")
        }
    };

    // Placed in the orders process, reserved in the products process, confirmed back.
    let items = json!({"items": [{"productId": product_id, "quantity": 2}]});
    let (status, order) = send(
        reqwest::Method::POST,
        orders.url("/api/orders"),
        &customer,
        Some(items),
        Some("wait=20"),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    assert_eq!(order["status"], "confirmed", "{order}");
    assert_eq!(order["total"], "50.00");
    assert_eq!(order["items"][0]["name"], "Lamp");
    assert_eq!(stock().await, 3);

    // Too many: rejected by the products service, stock untouched.
    let (_, refused) = send(
        reqwest::Method::POST,
        orders.url("/api/orders"),
        &customer,
        Some(json!({"items": [{"productId": product_id, "quantity": 4}]})),
        Some("wait=20"),
    )
    .await;
    assert_eq!(refused["status"], "rejected", "{refused}");
    assert_eq!(refused["rejectionReason"], "insufficient_stock");
    assert_eq!(stock().await, 3);

    // Cancelled: held until the products process has released the units.
    let id = order["id"].as_str().expect("an id");
    let (status, cancelled) = send(
        reqwest::Method::DELETE,
        orders.url(&format!("/api/orders/{id}")),
        &customer,
        None,
        Some("wait=20"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(stock().await, 5);

    // Without `Prefer`, the answer comes at once and the order settles in the background.
    let (_, fresh) = send(
        reqwest::Method::POST,
        products.url("/api/products"),
        &admin,
        Some(json!({"name": "Shade", "price": "5.00", "stock": 0})),
        None,
    )
    .await;
    let fresh_id = fresh["id"].as_str().expect("an id").to_owned();
    let (_, pending) = send(
        reqwest::Method::POST,
        orders.url("/api/orders"),
        &customer,
        Some(json!({"items": [{"productId": fresh_id, "quantity": 1}]})),
        None,
    )
    .await;
    let pending_id = pending["id"].as_str().expect("an id").to_owned();
    let settled =
        wait_until("the order for a sold-out product is rejected", Duration::from_secs(30), || {
            let url = orders.url(&format!("/api/orders/{pending_id}"));
            let customer = customer.clone();
            async move {
                let (_, order) = send(reqwest::Method::GET, url, &customer, None, None).await;
                (order["status"] != "pending").then_some(order)
            }
        })
        .await;
    assert_eq!(settled["status"], "rejected");
    assert_eq!(settled["rejectionReason"], "insufficient_stock");

    // The replicas share the saga's consumer, so about half of the answers are applied by the
    // replica that does not hold the request. Every held placement is still answered with its
    // order settled (woken from the bus), not `pending` when its 20 s run out.
    let (_, pens) = send(
        reqwest::Method::POST,
        products.url("/api/products"),
        &admin,
        Some(json!({"name": "Pen", "price": "2.00", "stock": 100})),
        None,
    )
    .await;
    let pens = pens["id"].as_str().expect("an id").to_owned();
    for round in 0..5 {
        for instance in [&orders, &replica] {
            let (status, order) = send(
                reqwest::Method::POST,
                instance.url("/api/orders"),
                &customer,
                Some(json!({"items": [{"productId": pens, "quantity": 1}]})),
                Some("wait=20"),
            )
            .await;
            assert_eq!(status, StatusCode::CREATED, "round {round}: {order}");
            assert_eq!(order["status"], "confirmed", "round {round}, held on a replica: {order}");
        }
    }

    // The gateway in front: REST forwarded to the owning service, GraphQL over all three.
    let gateway = Mercato::start(command(&[
        "serve",
        "gateway",
        "--listen",
        "127.0.0.1:0",
        "--nats-url",
        &nats,
        "--nats-prefix",
        &prefix,
        "--users-url",
        users.base_url.as_str(),
        "--products-url",
        products.base_url.as_str(),
        "--orders-url",
        replica.base_url.as_str(),
    ]))
    .await;
    let (status, forwarded) = send(
        reqwest::Method::GET,
        gateway.url(&format!("/api/products/{product_id}")),
        &customer,
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{forwarded}");
    assert_eq!(forwarded["stock"], 5);
    let (status, placed) = send(
        reqwest::Method::POST,
        gateway.url("/api/orders"),
        &customer,
        Some(json!({"items": [{"productId": product_id, "quantity": 1}]})),
        Some("wait=20"),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{placed}");
    assert_eq!(placed["status"], "confirmed", "{placed}");
    let (status, _) =
        send(reqwest::Method::GET, gateway.url("/api/nowhere"), &customer, None, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let place = format!(
        "mutation {{ placeOrder(input: {{items: [{{productId: \"{product_id}\", quantity: 2}}]}}, \
         waitSeconds: 20) {{ status total items {{ name unitPrice }} }} }}"
    );
    let (status, answer) = send(
        reqwest::Method::POST,
        gateway.url("/graphql"),
        &customer,
        Some(json!({ "query": place })),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["data"]["placeOrder"]["status"], "CONFIRMED", "{answer}");
    assert_eq!(answer["data"]["placeOrder"]["total"], "50.00");
    let page = "{ orders(first: 10) { edges { node { status user { email } \
                items { product { name stock } } } } } }";
    let (status, answer) = send(
        reqwest::Method::POST,
        gateway.url("/graphql"),
        &admin,
        Some(json!({ "query": page })),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let edges = answer["data"]["orders"]["edges"].as_array().expect("a page of orders").clone();
    assert!(edges.len() >= 4, "{answer}");
    for edge in &edges {
        assert_eq!(edge["node"]["user"]["email"], "dee@example.com", "{answer}");
        assert!(edge["node"]["items"][0]["product"]["name"].is_string(), "{answer}");
    }

    // A newcomer, entirely through the gateway: registers and logs in (forwarded), follows
    // their orders over WebSocket, places, changes and cancels an order over GraphQL.
    let registered = post_json(
        &gateway.url("/api/users"),
        json!({"name": "Eve", "email": "eve@example.com", "password": "customer password"}),
    )
    .await;
    assert_eq!(registered.status(), StatusCode::CREATED);
    let eve = token_of(
        post_json(
            &gateway.url("/api/auth/login"),
            json!({"email": "eve@example.com", "password": "customer password"}),
        )
        .await,
    )
    .await;
    let graphql = |token: String, query: String, variables: Value| {
        let url = gateway.url("/graphql");
        async move {
            let body = json!({"query": query, "variables": variables});
            let (status, answer) = send(reqwest::Method::POST, url, &token, Some(body), None).await;
            assert_eq!(status, StatusCode::OK, "{answer}");
            assert!(answer.get("errors").is_none(), "{answer}");
            answer["data"].clone()
        }
    };
    let created = graphql(
        admin.clone(),
        "mutation { createProduct(input: {name: \"Cup\", price: \"4.00\", stock: 10}) { id } }"
            .to_owned(),
        json!({}),
    )
    .await;
    let cup = created["createProduct"]["id"].as_str().expect("an id").to_owned();
    let mut socket = Socket::open_at(&gateway.base_url, TRANSPORT_WS, Some(&eve)).await;
    assert_eq!(socket.subscribe_live("mine", ORDER_STATUS, json!({})).await, Vec::<Value>::new());
    let placed = graphql(
        eve.clone(),
        "mutation($cup: ID!) { placeOrder(input: {items: [{productId: $cup, quantity: 2}]}) \
         { id status } }"
            .to_owned(),
        json!({"cup": cup}),
    )
    .await;
    let order_id = placed["placeOrder"]["id"].as_str().expect("an id").to_owned();
    let seen = results_until(
        &mut socket,
        "mine",
        5,
        |data| assert_eq!(data["orderStatusChanged"]["id"], order_id.as_str(), "{data}"),
        |data| data["orderStatusChanged"]["status"] == "CONFIRMED",
    )
    .await;
    assert_eq!(seen[seen.len() - 1]["orderStatusChanged"]["total"], "8.00");
    let changed = graphql(
        eve.clone(),
        "mutation($id: ID!, $cup: ID!) { updateOrder(id: $id, input: {items: \
         [{productId: $cup, quantity: 3}]}, waitSeconds: 20) { status total } }"
            .to_owned(),
        json!({"id": order_id, "cup": cup}),
    )
    .await;
    assert_eq!(changed["updateOrder"]["status"], "CONFIRMED", "{changed}");
    assert_eq!(changed["updateOrder"]["total"], "12.00", "{changed}");
    let cancelled = graphql(
        eve.clone(),
        "mutation($id: ID!) { cancelOrder(id: $id, waitSeconds: 20) { status } }".to_owned(),
        json!({"id": order_id}),
    )
    .await;
    assert_eq!(cancelled["cancelOrder"]["status"], "CANCELLED", "{cancelled}");
    let stock = graphql(
        eve.clone(),
        "query($cup: ID!) { product(id: $cup) { stock } }".to_owned(),
        json!({"cup": cup}),
    )
    .await;
    assert_eq!(stock["product"]["stock"], 10, "the cancelled order's units are back");

    for process in [gateway, replica, orders, products, users] {
        assert!(process.terminate().await.success());
    }
}

#[tokio::test]
async fn the_saga_runs_across_processes_on_postgres() {
    the_saga_runs_across_processes(Backend::Postgres).await;
}

#[tokio::test]
async fn the_saga_runs_across_processes_on_mariadb() {
    the_saga_runs_across_processes(Backend::MySql).await;
}
