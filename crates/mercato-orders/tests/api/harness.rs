//! Spawning the orders service on a fresh database, tokens for its callers, and the events the
//! saga and replica tests feed it.
//!
//! There is no products service here: tests answer for it with [`reserved`], [`rejected`] and
//! [`released`] events applied through the saga handler ([`TestApp::answer`]), exactly as the
//! `orders-saga` consumer applies them (inbox row and effect in one transaction).

#![allow(dead_code)]

use std::ops::Deref;

use mercato_bus::consumer::{HandlerError, record_in_inbox};
use mercato_contracts::{
    Envelope, Event, InventoryRejected, InventoryReleased, InventoryReserved, OrderLine,
    PricedLine, ProductCreated, ProductDeleted, ProductUpdated, RejectionReason, UserCreated,
    UserDeleted, UserUpdated,
};
use mercato_orders::OrdersService;
use mercato_orders::saga::Outcome;
use mercato_platform::auth::{Claims, Role, TokenVerifier};
use mercato_platform::http::{Operations, finish};
use mercato_store::{Database, PoolSettings};
use mercato_testkit::client::Client;
pub use mercato_testkit::http::{invalid_fields, json_body, parts, problem, text};
use mercato_testkit::{TestDatabase, TestServer};
use mercato_users::SigningKeys;
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

pub const ISSUER: &str = "mercato";

/// A signed-in caller: their id and access token.
#[derive(Debug, Clone)]
pub struct Account {
    pub id: Uuid,
    pub token: String,
}

/// The orders service, served on a local port over its own database.
pub struct TestApp {
    pub server: TestServer,
    pub client: Client,
    pub service: OrdersService,
    pub database: Database,
    pub keys: SigningKeys,
    pub admin: Account,
    /// Two customers, so that tests can check who sees what.
    pub alice: Account,
    pub bob: Account,
    /// Declared last so that it is dropped last: dropping it drops the database.
    #[allow(dead_code)]
    pub db: TestDatabase,
}

impl Deref for TestApp {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}

pub async fn spawn_app(db: TestDatabase) -> TestApp {
    let keys = SigningKeys::generate();
    let verifier = TokenVerifier::with_keys(ISSUER, &keys.jwks()).expect("a verifier");
    let settings = PoolSettings { max_connections: 16, ..PoolSettings::default() };
    let database = Database::connect(&db.url, &settings)
        .unwrap_or_else(|error| panic!("connecting to {}: {error:#}", db.url));
    let service = OrdersService::start(database.clone(), verifier)
        .await
        .unwrap_or_else(|error| panic!("the orders service starts on {}: {error:#}", db.url));
    let (routes, openapi) = service.routes();
    let app = finish(
        routes,
        Operations {
            readiness: service.readiness(),
            metrics: mercato_platform::metrics::recorder(),
            openapi,
        },
    );
    let server = TestServer::start(app).await;
    let client = Client::new(server.base_url.clone());
    let admin = account(&keys, Role::Admin);
    let alice = account(&keys, Role::Customer);
    let bob = account(&keys, Role::Customer);
    TestApp { server, client, service, database, keys, admin, alice, bob, db }
}

/// A new account with `role` and a valid token for it.
pub fn account(keys: &SigningKeys, role: Role) -> Account {
    let id = Uuid::now_v7();
    Account { id, token: mint(keys, id, role) }
}

/// A valid access token for `sub` with `role`, signed with `keys`.
pub fn mint(keys: &SigningKeys, sub: Uuid, role: Role) -> String {
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("a clock after 1970")
            .as_secs(),
    )
    .expect("seconds fit in i64");
    keys.sign(&Claims {
        sub: sub.to_string(),
        role,
        iat: now,
        exp: now + 900,
        iss: ISSUER.to_owned(),
        jti: Uuid::now_v7().to_string(),
    })
    .expect("the test key signs a token")
}

/// `{"items": [{productId, quantity}, ...]}`.
pub fn order_body(items: &[(Uuid, i64)]) -> Value {
    json!({"items": items.iter().map(|(id, q)| json!({"productId": id, "quantity": q})).collect::<Vec<_>>()})
}

impl TestApp {
    /// Places an order as `who` (`201` expected) and returns it.
    pub async fn place(&self, who: &Account, items: &[(Uuid, i64)]) -> Value {
        let response = self.post_json("/api/orders", &order_body(items), Some(&who.token)).await;
        json_body(response, StatusCode::CREATED).await
    }

    /// The order as `who` sees it (`200` expected).
    pub async fn order(&self, who: &Account, id: Uuid) -> Value {
        json_body(self.get(&format!("/api/orders/{id}"), Some(&who.token)).await, StatusCode::OK)
            .await
    }

    /// Sends `method path` as `who` with `body` and extra headers.
    pub async fn send_as(
        &self,
        who: &Account,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Response {
        self.client.send_with(method, path, body, Some(&who.token), headers).await
    }

    /// Applies one products-service answer the way the `orders-saga` consumer does. `None` when
    /// the event id was handled before.
    pub async fn answer(&self, event: &Envelope<Value>) -> Result<Option<Outcome>, HandlerError> {
        let mut tx = self.database.begin().await?;
        if !record_in_inbox(&self.database, &mut tx, "orders-saga", &event.id).await? {
            return Ok(None);
        }
        let outcome = self.service.saga().apply(&mut tx, event).await?;
        tx.commit().await?;
        // What the consumer's commit hook does: wake requests held by `Prefer: wait`.
        self.service.saga_committed(event);
        Ok(Some(outcome))
    }

    /// Applies answers together as the `orders-saga` consumer's batch does (inbox rows are not
    /// written): the outcomes, or `None` when the saga declined them (and wrote nothing).
    pub async fn answer_together(&self, events: &[Envelope<Value>]) -> Option<Vec<Outcome>> {
        let mut tx = self.database.begin().await.expect("a transaction");
        let events: Vec<&Envelope<Value>> = events.iter().collect();
        let outcomes = self
            .service
            .saga()
            .apply_many(&mut tx, &events)
            .await
            .unwrap_or_else(|error| panic!("answers applied together failed: {error}"));
        tx.commit().await.expect("committed");
        for event in events {
            self.service.saga_committed(event);
        }
        outcomes
    }

    /// Applies one user or product event the way the `orders-replicas` consumer does.
    pub async fn replicate(&self, event: &Envelope<Value>) -> Result<bool, HandlerError> {
        use mercato_bus::Handler;
        let mut tx = self.database.begin().await?;
        if !record_in_inbox(&self.database, &mut tx, "orders-replicas", &event.id).await? {
            return Ok(false);
        }
        self.service.replication().handle(&mut tx, event).await?;
        tx.commit().await?;
        self.service.replica_committed(event);
        Ok(true)
    }

    /// The `data` of every event of type `E` in the outbox, oldest first.
    pub async fn outbox_events<E: Event>(&self) -> Vec<Value> {
        let rows: Vec<(String,)> = mercato_store::sqlx::query_as(
            self.database.sql("SELECT payload FROM outbox WHERE subject = $1 ORDER BY sequence"),
        )
        .bind(format!("{}.{}", E::AGGREGATE, E::ACTION))
        .fetch_all(self.database.pool())
        .await
        .expect("the outbox is readable");
        rows.into_iter()
            .map(|(payload,)| {
                let envelope: Value = serde_json::from_str(&payload).expect("a JSON envelope");
                envelope["data"].clone()
            })
            .collect()
    }

    /// How many orders are stored.
    pub async fn order_count(&self) -> i64 {
        let (count,): (i64,) = mercato_store::sqlx::query_as("SELECT COUNT(*) FROM orders")
            .fetch_one(self.database.pool())
            .await
            .expect("orders are countable");
        count
    }
}

/// An event as another service would publish it.
pub fn envelope<E: Event>(event: E) -> Envelope<Value> {
    Envelope::new(event, 0, None).into_raw().expect("an event serializes")
}

/// `inventory.reserved` for `order` at `version`, each line at `price` named `"Product N"`.
pub fn reserved(order: Uuid, version: i64, items: &[(Uuid, i64, &str)]) -> Envelope<Value> {
    envelope(InventoryReserved {
        order_id: order,
        order_version: version,
        items: items
            .iter()
            .enumerate()
            .map(|(index, (product_id, quantity, price))| PricedLine {
                product_id: *product_id,
                quantity: *quantity,
                unit_price: (*price).to_owned(),
                name: format!("Product {index}"),
            })
            .collect(),
    })
}

pub fn rejected(
    order: Uuid,
    version: i64,
    reason: RejectionReason,
    product: Option<Uuid>,
) -> Envelope<Value> {
    envelope(InventoryRejected {
        order_id: order,
        order_version: version,
        reason,
        product_id: product,
    })
}

pub fn released(order: Uuid, items: &[(Uuid, i64)]) -> Envelope<Value> {
    envelope(InventoryReleased {
        order_id: order,
        items: items
            .iter()
            .map(|(product_id, quantity)| OrderLine {
                product_id: *product_id,
                quantity: *quantity,
            })
            .collect(),
    })
}

pub fn user_created(user: Uuid, role: &str) -> Envelope<Value> {
    envelope(UserCreated {
        user_id: user,
        name: "Someone".into(),
        email: format!("{user}@example.com"),
        role: role.into(),
    })
}

pub fn user_updated(user: Uuid, role: &str) -> Envelope<Value> {
    envelope(UserUpdated {
        user_id: user,
        name: "Someone Else".into(),
        email: format!("{user}@example.com"),
        role: role.into(),
    })
}

pub fn user_deleted(user: Uuid) -> Envelope<Value> {
    envelope(UserDeleted { user_id: user })
}

pub fn product_created(product: Uuid, name: &str, price: &str) -> Envelope<Value> {
    envelope(ProductCreated {
        product_id: product,
        sku: format!("SKU-{}", product.simple()),
        name: name.into(),
        price: price.into(),
        category: None,
        active: true,
    })
}

pub fn product_updated(product: Uuid, name: &str, price: &str, active: bool) -> Envelope<Value> {
    envelope(ProductUpdated {
        product_id: product,
        sku: format!("SKU-{}", product.simple()),
        name: name.into(),
        price: price.into(),
        category: None,
        active,
    })
}

pub fn product_deleted(product: Uuid) -> Envelope<Value> {
    envelope(ProductDeleted { product_id: product })
}

/// The `id` of an order (or any object with one).
pub fn id_of(value: &Value) -> Uuid {
    Uuid::parse_str(&text(&value["id"])).unwrap_or_else(|error| panic!("an id ({error}): {value}"))
}

/// The ids of a page's items, in order.
pub fn item_ids(page: &Value) -> Vec<Uuid> {
    page["items"]
        .as_array()
        .unwrap_or_else(|| panic!("a page has items: {page}"))
        .iter()
        .map(id_of)
        .collect()
}

/// An order has exactly the contract's members, with a UUIDv7 id and RFC 3339 UTC timestamps.
pub fn assert_order_shape(order: &Value) {
    let members: std::collections::BTreeSet<&str> = order
        .as_object()
        .unwrap_or_else(|| panic!("an order is an object: {order}"))
        .keys()
        .map(String::as_str)
        .collect();
    let expected = [
        "id",
        "userId",
        "status",
        "items",
        "total",
        "shippingAddress",
        "paymentMethod",
        "rejectionReason",
        "lastUpdateRejection",
        "version",
        "createdAt",
        "updatedAt",
    ];
    assert_eq!(members, expected.into_iter().collect(), "the order's members: {order}");
    assert_eq!(id_of(order).get_version_num(), 7, "a UUIDv7 id: {order}");
    mercato_testkit::http::assert_rfc3339_utc(&text(&order["createdAt"]));
    mercato_testkit::http::assert_rfc3339_utc(&text(&order["updatedAt"]));
}

// What the route tests (placing, reading, changing, cancelling, idempotency, compat) share.

/// `/api/orders/{id}`.
pub fn order_path(id: Uuid) -> String {
    format!("/api/orders/{id}")
}

/// A response header as text, if present.
pub fn header_of(response: &Response, name: &str) -> Option<String> {
    response.headers().get(name).map(|value| value.to_str().expect("an ASCII header").to_owned())
}

impl TestApp {
    /// `GET /api/orders?{query}` as `who` (`200` expected): the page.
    pub async fn list_as(&self, who: &Account, query: &str) -> Value {
        let path = if query.is_empty() {
            "/api/orders".to_owned()
        } else {
            format!("/api/orders?{query}")
        };
        json_body(self.get(&path, Some(&who.token)).await, StatusCode::OK).await
    }

    /// Places an order as `who` and confirms it as the products service would, every line at
    /// `"10.00"` (so the total is `quantity × 10.00`); returns the confirmed order (version 2).
    pub async fn place_confirmed(&self, who: &Account, items: &[(Uuid, i64)]) -> Value {
        let placed = self.place(who, items).await;
        let id = id_of(&placed);
        let priced: Vec<(Uuid, i64, &str)> =
            items.iter().map(|(product, quantity)| (*product, *quantity, "10.00")).collect();
        let outcome =
            self.answer(&reserved(id, 1, &priced)).await.expect("the reservation applies");
        assert!(outcome.is_some(), "a fresh reservation event is applied");
        let confirmed = self.order(who, id).await;
        assert_eq!(confirmed["status"], "confirmed", "the reservation confirms: {confirmed}");
        confirmed
    }
}
