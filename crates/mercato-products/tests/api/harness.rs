//! Spawning the products service on a fresh database, tokens for its callers, and the order
//! events the reservation tests feed it.
//!
//! Tokens are signed with a key made for the test and verified with its public half, exactly
//! as the service verifies the users service's tokens in production.

use std::collections::BTreeMap;

use mercato_bus::consumer::{HandlerError, record_in_inbox};
use mercato_contracts::{Envelope, Event, OrderCancelled, OrderLine, OrderPlaced, OrderUpdated};
use mercato_platform::auth::{Claims, Role, TokenVerifier};
use mercato_platform::http::{Operations, finish};
use mercato_products::ProductsService;
use mercato_products::db::{holds, products};
use mercato_products::reservations::{Outcome, Placement};
use mercato_store::{Database, PoolSettings};
pub use mercato_testkit::http::{invalid_fields, json_body, parts, problem, text};
use mercato_testkit::{TestDatabase, TestServer};
use mercato_users::SigningKeys;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

pub const ISSUER: &str = "mercato";

/// The products service, served on a local port over its own database.
pub struct TestApp {
    pub server: TestServer,
    pub client: reqwest::Client,
    pub service: ProductsService,
    pub database: Database,
    pub keys: SigningKeys,
    /// An admin's and a customer's access tokens.
    pub admin: String,
    pub customer: String,
    /// Declared last so that it is dropped last: dropping it drops the database.
    #[allow(dead_code)]
    pub db: TestDatabase,
}

pub async fn spawn_app(db: TestDatabase) -> TestApp {
    let keys = SigningKeys::generate();
    let verifier = TokenVerifier::with_keys(ISSUER, &keys.jwks()).expect("a verifier");
    let settings = PoolSettings { max_connections: 16, ..PoolSettings::default() };
    let database = Database::connect(&db.url, &settings)
        .unwrap_or_else(|error| panic!("connecting to {}: {error:#}", db.url));
    let service = ProductsService::start(database.clone(), verifier)
        .await
        .unwrap_or_else(|error| panic!("the products service starts on {}: {error:#}", db.url));
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
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("an HTTP client");
    let admin = mint(&keys, Uuid::now_v7(), Role::Admin);
    let customer = mint(&keys, Uuid::now_v7(), Role::Customer);
    TestApp { server, client, service, database, keys, admin, customer, db }
}

/// A valid access token for `sub` with `role`, signed with `keys`.
pub fn mint(keys: &SigningKeys, sub: Uuid, role: Role) -> String {
    let now = chrono_seconds();
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

fn chrono_seconds() -> i64 {
    let elapsed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("a clock after 1970");
    i64::try_from(elapsed.as_secs()).expect("seconds fit in i64")
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        self.server.url(path)
    }

    /// A request builder for `method path` with the token, if any.
    pub fn request(&self, method: Method, path: &str, token: Option<&str>) -> RequestBuilder {
        let request = self.client.request(method, self.url(path));
        match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        token: Option<&str>,
    ) -> Response {
        let mut request = self.request(method.clone(), path, token);
        if let Some(body) = body {
            request = request.json(body);
        }
        request
            .send()
            .await
            .unwrap_or_else(|error| panic!("{method} {path} was not answered: {error}"))
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Response {
        self.send(Method::GET, path, None, token).await
    }

    /// `GET path` with query parameters, encoded by the client.
    pub async fn get_query(&self, path: &str, query: &[(&str, &str)]) -> Response {
        self.client
            .get(self.url(path))
            .query(query)
            .send()
            .await
            .unwrap_or_else(|error| panic!("GET {path} {query:?} was not answered: {error}"))
    }

    pub async fn post_json(&self, path: &str, body: &Value, token: Option<&str>) -> Response {
        self.send(Method::POST, path, Some(body), token).await
    }

    pub async fn patch_json(&self, path: &str, body: &Value, token: Option<&str>) -> Response {
        self.send(Method::PATCH, path, Some(body), token).await
    }

    pub async fn put_json(&self, path: &str, body: &Value, token: Option<&str>) -> Response {
        self.send(Method::PUT, path, Some(body), token).await
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> Response {
        self.send(Method::DELETE, path, None, token).await
    }

    /// Creates a product as admin (`201` expected) and returns it.
    pub async fn create_product(&self, body: Value) -> Value {
        json_body(
            self.post_json("/api/products", &body, Some(&self.admin)).await,
            StatusCode::CREATED,
        )
        .await
    }

    /// Creates a product with `stock` units at 10.00 and returns its id.
    pub async fn product_with_stock(&self, name: &str, stock: i64) -> Uuid {
        let product =
            self.create_product(json!({"name": name, "price": "10.00", "stock": stock})).await;
        Uuid::parse_str(&text(&product["id"])).expect("a product id")
    }

    /// The product as the public route shows it.
    pub async fn product(&self, id: Uuid) -> Value {
        json_body(self.get(&format!("/api/products/{id}"), None).await, StatusCode::OK).await
    }

    /// The product's stock, read from the database.
    pub async fn stock(&self, id: Uuid) -> i64 {
        let mut conn = self.database.pool().acquire().await.expect("a connection");
        products::find(&self.database, &mut conn, id)
            .await
            .expect("a read")
            .expect("the product")
            .stock
    }

    /// Units held per product across every order.
    pub async fn held(&self) -> BTreeMap<Uuid, i64> {
        let mut conn = self.database.pool().acquire().await.expect("a connection");
        holds::held_per_product(&self.database, &mut conn).await.expect("a read")
    }

    /// Applies one order event the way the consumer does: inbox row and effect in one
    /// transaction. `None` when the event id was handled before.
    pub async fn apply(&self, event: &Envelope<Value>) -> Result<Option<Outcome>, HandlerError> {
        let mut tx = self.database.begin().await?;
        if !record_in_inbox(&self.database, &mut tx, "products-reservations", &event.id).await? {
            return Ok(None);
        }
        let outcome = self.service.reservations().apply(&mut tx, event).await?;
        tx.commit().await?;
        Ok(Some(outcome))
    }

    /// Reserves `placements` together in one transaction, as the consumer's batch does; the
    /// outcomes, or `None` when the handler declined them (and wrote nothing).
    pub async fn reserve_together(&self, placements: &[Placement]) -> Option<Vec<Outcome>> {
        let mut tx = self.database.begin().await.expect("a transaction");
        let outcomes = self
            .service
            .reservations()
            .reserve_placements(&mut tx, placements)
            .await
            .unwrap_or_else(|error| panic!("placements reserved together failed: {error}"));
        tx.commit().await.expect("committed");
        outcomes
    }

    /// `method path` as admin, with `body` (when given) and one `If-Match` header.
    pub async fn send_if_match(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        if_match: &str,
    ) -> Response {
        let mut request =
            self.request(method.clone(), path, Some(&self.admin)).header("if-match", if_match);
        if let Some(body) = body {
            request = request.json(body);
        }
        request.send().await.unwrap_or_else(|error| {
            panic!("{method} {path} (If-Match {if_match}) was not answered: {error}")
        })
    }

    /// `GET /api/products` with query parameters (anonymous): the page, `200` expected.
    pub async fn list(&self, query: &[(&str, &str)]) -> Value {
        json_body(self.get_query("/api/products", query).await, StatusCode::OK).await
    }

    /// Sets the product's `createdAt` and `updatedAt` to `millis` in the database, so that a
    /// test sees whether a change moves `updatedAt` without waiting for the clock to tick.
    pub async fn backdate(&self, id: Uuid, millis: i64) {
        mercato_store::sqlx::query(
            self.database.sql("UPDATE products SET created_at = $1, updated_at = $2 WHERE id = $3"),
        )
        .bind(millis)
        .bind(millis)
        .bind(id.to_string())
        .execute(self.database.pool())
        .await
        .expect("the product is backdated");
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
}

/// An event as the orders service would publish it.
pub fn envelope<E: Event>(event: E) -> Envelope<Value> {
    Envelope::new(event, 0, None).into_raw().expect("an event serializes")
}

pub fn lines(items: &[(Uuid, i64)]) -> Vec<OrderLine> {
    items
        .iter()
        .map(|(product_id, quantity)| OrderLine { product_id: *product_id, quantity: *quantity })
        .collect()
}

/// An `order.placed` as the batch path takes it.
pub fn placement(order_id: Uuid, items: &[(Uuid, i64)]) -> Placement {
    Placement { order_id, version: 1, items: lines(items), trace: None }
}

pub fn placed(order_id: Uuid, version: i64, items: &[(Uuid, i64)]) -> Envelope<Value> {
    envelope(OrderPlaced {
        order_id,
        user_id: Uuid::nil(),
        order_version: version,
        items: lines(items),
    })
}

pub fn updated(order_id: Uuid, version: i64, items: &[(Uuid, i64)]) -> Envelope<Value> {
    envelope(OrderUpdated {
        order_id,
        user_id: Uuid::nil(),
        order_version: version,
        items: lines(items),
    })
}

pub fn cancelled(order_id: Uuid, version: i64) -> Envelope<Value> {
    envelope(OrderCancelled { order_id, user_id: Uuid::nil(), order_version: version })
}

/// The `id` of a product (or any object with one).
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

/// Asserts the status and returns the `ETag` header (if any) and the JSON body.
pub async fn tagged_body(response: Response, status: StatusCode) -> (Option<String>, Value) {
    let etag = response
        .headers()
        .get(reqwest::header::ETAG)
        .map(|value| value.to_str().expect("a readable ETag").to_owned());
    (etag, json_body(response, status).await)
}

/// A product has exactly the contract's members, with a UUIDv7 id and RFC 3339 UTC timestamps.
pub fn assert_product_shape(product: &Value) {
    let members: std::collections::BTreeSet<&str> = product
        .as_object()
        .unwrap_or_else(|| panic!("a product is an object: {product}"))
        .keys()
        .map(String::as_str)
        .collect();
    let expected = [
        "id",
        "sku",
        "name",
        "description",
        "category",
        "price",
        "stock",
        "active",
        "version",
        "createdAt",
        "updatedAt",
    ];
    assert_eq!(members, expected.into_iter().collect(), "the product's members: {product}");
    assert_eq!(id_of(product).get_version_num(), 7, "a UUIDv7 id: {product}");
    mercato_testkit::http::assert_rfc3339_utc(&text(&product["createdAt"]));
    mercato_testkit::http::assert_rfc3339_utc(&text(&product["updatedAt"]));
}
