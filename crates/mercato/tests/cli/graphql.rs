//! The GraphQL gateway over HTTP through the real binary: `mercato up` serves `/graphql`, and
//! every test talks to it with `POST` (or `GET`) only, as a client would.
//!
//! What is proved here (API.md "GraphQL gateway"): every query and mutation of `schema.graphql`
//! with its rules (who may do what, validation with `extensions.fields`, conflicts); execution
//! errors with HTTP 200 and `data`, each with an `extensions.code`; documents refused before they
//! run (syntax, unknown fields, depth, complexity, aliases, size, mutations over `GET`) with HTTP
//! 400 (413 for size), no `data`, and no call to any service; batching of `Order.user`,
//! `OrderItem.product` and `User.orders` (a page costs a constant number of service calls);
//! Relay paging with `endCursor` or an edge's `cursor`; the response content type; automatic
//! persisted queries; the per-client rate limit; and the introspection switch.
//!
//! The helpers ([`Gateway`], [`Answer`]) are shared with the WebSocket tests in `graphql_ws.rs`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use mercato_testkit::client::Client;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, RETRY_AFTER};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::process::Command;

use crate::orders::{ADMIN_EMAIL, ADMIN_PASSWORD, sign_in, up_with_admin};
use crate::process::Mercato;

/// Every `extensions.code` the contract allows.
pub const CODES: [&str; 8] = [
    "UNAUTHENTICATED",
    "FORBIDDEN",
    "NOT_FOUND",
    "BAD_USER_INPUT",
    "CONFLICT",
    "RATE_LIMITED",
    "LIMIT_EXCEEDED",
    "INTERNAL",
];

/// A customer's password (at least 8 characters).
pub const PASSWORD: &str = "correct horse battery";

/// The fields of an order that most tests look at, as a fragment (`...O`).
pub const ORDER_FRAGMENT: &str = "fragment O on Order { id userId status total rejectionReason \
     paymentMethod version shippingAddress { street city zipCode state country } \
     items { productId quantity unitPrice name } }";

/// `document` followed by [`ORDER_FRAGMENT`].
pub fn with_order(document: &str) -> String {
    format!("{document}\n{ORDER_FRAGMENT}")
}

/// A money string ("17.50") in cents.
pub fn cents(value: &Value) -> i64 {
    let text = value.as_str().unwrap_or_else(|| panic!("money is a string: {value}"));
    let (units, fraction) = text.split_once('.').unwrap_or_else(|| panic!("two decimals: {text}"));
    assert_eq!(fraction.len(), 2, "money has two decimals: {text}");
    let units: i64 = units.parse().unwrap_or_else(|_| panic!("money: {text}"));
    let fraction: i64 = fraction.parse().unwrap_or_else(|_| panic!("money: {text}"));
    units * 100 + fraction
}

/// A string member of a JSON value.
pub fn string(value: &Value) -> String {
    value.as_str().unwrap_or_else(|| panic!("expected a string, got {value}")).to_owned()
}

/// The nodes of a connection.
pub fn nodes(connection: &Value) -> Vec<Value> {
    connection["edges"]
        .as_array()
        .unwrap_or_else(|| panic!("a connection has edges: {connection}"))
        .iter()
        .map(|edge| edge["node"].clone())
        .collect()
}

/// A member of every node of a connection, as strings.
pub fn node_strings(connection: &Value, member: &str) -> Vec<String> {
    nodes(connection).iter().map(|node| string(&node[member])).collect()
}

/// One answer of `/graphql`.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Answer {
    pub fn content_type(&self) -> Option<&str> {
        self.headers.get(CONTENT_TYPE).and_then(|value| value.to_str().ok())
    }

    /// The errors, each checked to carry one of the contract's codes.
    pub fn errors(&self) -> &Vec<Value> {
        let errors = self.body["errors"]
            .as_array()
            .unwrap_or_else(|| panic!("expected errors: {}", self.body));
        assert!(!errors.is_empty(), "`errors` is never empty: {}", self.body);
        for error in errors {
            let code = error["extensions"]["code"].as_str().unwrap_or_default();
            assert!(CODES.contains(&code), "an error with an unknown code: {}", self.body);
        }
        errors
    }

    /// A successful execution: HTTP 200 and no errors; returns `data`.
    pub fn data(&self) -> &Value {
        assert_eq!(self.status, StatusCode::OK, "expected data: {}", self.body);
        assert!(self.body.get("errors").is_none(), "unexpected errors: {}", self.body);
        assert!(self.body["data"].is_object(), "expected data: {}", self.body);
        &self.body["data"]
    }

    /// An execution error: HTTP 200, with a `data` member, and a first error with `code`;
    /// returns that error.
    pub fn execution_error(&self, code: &str) -> &Value {
        assert_eq!(self.status, StatusCode::OK, "execution errors are HTTP 200: {}", self.body);
        assert!(
            self.body.as_object().is_some_and(|body| body.contains_key("data")),
            "an execution error comes with `data`: {}",
            self.body
        );
        let error = &self.errors()[0];
        assert_eq!(error["extensions"]["code"], code, "{}", self.body);
        error
    }

    /// The fields named by a `BAD_USER_INPUT` execution error.
    pub fn bad_fields(&self) -> Vec<String> {
        let error = self.execution_error("BAD_USER_INPUT");
        let fields = error["extensions"]["fields"]
            .as_array()
            .unwrap_or_else(|| panic!("BAD_USER_INPUT lists extensions.fields: {}", self.body));
        fields
            .iter()
            .map(|field| {
                assert!(field["message"].is_string(), "each field has a message: {}", self.body);
                string(&field["field"])
            })
            .collect()
    }

    /// Refused before execution: this status, `errors` with `code` first, and no `data` at all.
    pub fn refused(&self, status: StatusCode, code: &str) {
        assert_eq!(self.status, status, "{}", self.body);
        assert!(self.body.get("data").is_none(), "a refused document has no `data`: {}", self.body);
        assert_eq!(self.errors()[0]["extensions"]["code"], code, "{}", self.body);
    }
}

/// A signed-in account.
#[derive(Debug, Clone)]
pub struct Account {
    pub id: String,
    pub email: String,
    pub token: String,
}

/// A running `mercato up` with a configured admin, and the admin's token.
pub struct Gateway {
    pub mercato: Mercato,
    pub http: reqwest::Client,
    pub admin: String,
}

impl Gateway {
    pub async fn start(data: &Path) -> Self {
        Self::start_with(up_with_admin(data)).await
    }

    /// Starts `command` (`mercato up` with the admin configured); the admin signs in over REST,
    /// so the gateway's rate limit and call counter are untouched.
    pub async fn start_with(command: Command) -> Self {
        let mercato = Mercato::start(command).await;
        let admin =
            sign_in(&Client::new(mercato.base_url.clone()), ADMIN_EMAIL, ADMIN_PASSWORD).await;
        Self { mercato, http: reqwest::Client::new(), admin }
    }

    pub fn graphql_url(&self) -> String {
        self.mercato.url("/graphql")
    }

    /// `POST /graphql` with `body`, a token and extra headers.
    pub async fn post(
        &self,
        body: &Value,
        token: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut request = self.http.post(self.graphql_url()).json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        answer(request.send().await.expect("POST /graphql is answered")).await
    }

    /// `POST /graphql` with a document and its variables.
    pub async fn query(&self, document: &str, variables: Value, token: Option<&str>) -> Answer {
        self.post(&json!({"query": document, "variables": variables}), token, &[]).await
    }

    /// `GET /graphql?<params>`.
    pub async fn get(&self, params: &[(&str, &str)]) -> Answer {
        let request = self.http.get(self.graphql_url()).query(params);
        answer(request.send().await.expect("GET /graphql is answered")).await
    }

    /// Runs a document that must succeed and returns its `data`.
    pub async fn data(&self, document: &str, variables: Value, token: Option<&str>) -> Value {
        self.query(document, variables, token).await.data().clone()
    }

    /// `gateway_upstream_calls_total` per service, from `/metrics`.
    pub async fn upstream_calls_by_service(&self) -> BTreeMap<String, u64> {
        let text = self
            .http
            .get(self.mercato.url("/metrics"))
            .send()
            .await
            .expect("GET /metrics is answered")
            .text()
            .await
            .expect("the metrics are text");
        let mut calls = BTreeMap::new();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("gateway_upstream_calls_total") else { continue };
            let (labels, value) =
                rest.rsplit_once(' ').unwrap_or_else(|| panic!("a sample: {line}"));
            let value: u64 = value.parse().unwrap_or_else(|_| panic!("a counter value: {line}"));
            *calls.entry(labels.trim().to_owned()).or_default() += value;
        }
        calls
    }

    /// The sum of `gateway_upstream_calls_total` over every service, from `/metrics`.
    pub async fn upstream_calls(&self) -> u64 {
        self.upstream_calls_by_service().await.values().sum()
    }

    /// Registers `name@example.com` with `registerUser` and signs them in with `login`.
    pub async fn customer(&self, name: &str) -> Account {
        let email = format!("{name}@example.com");
        let created = self
            .data(
                "mutation($input: RegisterInput!) \
                 { registerUser(input: $input) { id email role } }",
                json!({"input": {"name": name, "email": email, "password": PASSWORD}}),
                None,
            )
            .await;
        assert_eq!(created["registerUser"]["role"], "CUSTOMER", "{created}");
        let id = string(&created["registerUser"]["id"]);
        let token = self.login(&email, PASSWORD).await;
        assert_eq!(token["user"]["id"], id.as_str(), "{token}");
        Account { id, email, token: string(&token["token"]) }
    }

    /// `login` (must succeed); returns the auth payload.
    pub async fn login(&self, email: &str, password: &str) -> Value {
        let data = self
            .data(
                "mutation($email: String!, $password: String!) \
                 { login(email: $email, password: $password) \
                 { token tokenType expiresIn refreshToken user { id email } } }",
                json!({"email": email, "password": password}),
                None,
            )
            .await;
        data["login"].clone()
    }

    /// `createProduct` as the admin; returns the product's id.
    pub async fn product(
        &self,
        name: &str,
        price: &str,
        stock: i64,
        category: Option<&str>,
    ) -> String {
        let data = self
            .data(
                "mutation($input: CreateProductInput!) \
                 { createProduct(input: $input) { id name price stock active } }",
                json!({"input": {
                    "name": name, "price": price, "stock": stock, "category": category,
                }}),
                Some(&self.admin),
            )
            .await;
        let product = &data["createProduct"];
        assert_eq!(product["price"], price, "{data}");
        assert_eq!(product["stock"], stock, "{data}");
        assert_eq!(product["active"], true, "{data}");
        string(&product["id"])
    }

    /// A product's current stock (`product(id) { stock }`).
    pub async fn stock(&self, product: &str) -> i64 {
        let data = self
            .data("query($id: ID!) { product(id: $id) { stock } }", json!({"id": product}), None)
            .await;
        data["product"]["stock"].as_i64().unwrap_or_else(|| panic!("a stock: {data}"))
    }

    /// `placeOrder` with these lines, an optional idempotency key and wait.
    pub async fn place_order(
        &self,
        token: Option<&str>,
        lines: &[(&str, i64)],
        key: Option<&str>,
        wait: Option<i64>,
    ) -> Answer {
        let items: Vec<Value> = lines
            .iter()
            .map(|(product, quantity)| json!({"productId": product, "quantity": quantity}))
            .collect();
        let document = with_order(
            "mutation($input: PlaceOrderInput!, $key: String, $wait: Int) \
             { placeOrder(input: $input, idempotencyKey: $key, waitSeconds: $wait) { ...O } }",
        );
        self.query(&document, json!({"input": {"items": items}, "key": key, "wait": wait}), token)
            .await
    }

    /// `updateOrder` with `input`, held up to 5 s.
    pub async fn update_order(&self, token: &str, id: &str, input: Value) -> Answer {
        let document = with_order(
            "mutation($id: ID!, $input: UpdateOrderInput!) \
             { updateOrder(id: $id, input: $input, waitSeconds: 5) { ...O } }",
        );
        self.query(&document, json!({"id": id, "input": input}), Some(token)).await
    }
}

async fn answer(response: reqwest::Response) -> Answer {
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.expect("a readable body");
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|error| panic!("the {status} answer is not JSON ({error}): {text}"));
    Answer { status, headers, body }
}

/// Walks a connection at `path` in `document` (which takes `$first` and `$after`, plus
/// `variables`) page by page with `pageInfo.endCursor`; returns the pages' nodes. Each page
/// holds at most `first` nodes, and the last edge's `cursor` as `after` gives the same next page
/// as `endCursor` (Relay clients use either).
pub async fn walk(
    gateway: &Gateway,
    document: &str,
    path: &[&str],
    first: i64,
    variables: Value,
    token: Option<&str>,
) -> Vec<Vec<Value>> {
    let page_at = |after: Option<String>| {
        let mut variables = variables.clone();
        variables["first"] = json!(first);
        variables["after"] = json!(after);
        async move {
            let data = gateway.data(document, variables, token).await;
            path.iter().fold(data, |value, member| value[*member].clone())
        }
    };
    let mut pages: Vec<Vec<Value>> = Vec::new();
    let mut after: Option<String> = None;
    let mut via_edge: Option<Vec<Value>> = None;
    loop {
        let connection = page_at(after.clone()).await;
        let page = nodes(&connection);
        assert!(
            page.len() <= usize::try_from(first).unwrap_or(0),
            "a page holds at most `first`: {connection}"
        );
        if let Some(via_edge) = via_edge.take() {
            assert_eq!(page, via_edge, "the last edge's cursor leads to the same next page");
        }
        pages.push(page);
        assert!(pages.len() <= 100, "paging ends");
        if connection["pageInfo"]["hasNextPage"] == false {
            return pages;
        }
        after = Some(string(&connection["pageInfo"]["endCursor"]));
        let edges = connection["edges"].as_array().expect("edges");
        let last =
            edges.last().unwrap_or_else(|| panic!("a page before the last is full: {connection}"));
        via_edge = Some(nodes(&page_at(Some(string(&last["cursor"]))).await));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_queries_and_mutations_follow_the_contract() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let gw = Gateway::start(dir.path()).await;
    const ME: &str = "{ me { id email name role } }";
    const USER: &str = "query($id: ID!) { user(id: $id) { id email name } }";
    const USERS: &str = "query($first: Int, $after: String, $query: String) \
         { users(first: $first, after: $after, query: $query) { edges { cursor node { id email } } \
         pageInfo { hasNextPage endCursor } } }";

    // me: null without a token.
    assert_eq!(gw.data(ME, json!({}), None).await, json!({"me": null}));
    let alice = gw.customer("alice").await;
    let bob = gw.customer("bob").await;
    let me = gw.data(ME, json!({}), Some(&alice.token)).await;
    assert_eq!(me["me"]["id"], alice.id.as_str(), "{me}");
    assert_eq!(me["me"]["email"], "alice@example.com");
    assert_eq!(me["me"]["role"], "CUSTOMER");
    let me = gw.data(ME, json!({}), Some(&gw.admin)).await;
    assert_eq!(me["me"]["role"], "ADMIN", "{me}");

    // user: oneself; an admin anyone; a customer not another user.
    let own = gw.data(USER, json!({"id": alice.id}), Some(&alice.token)).await;
    assert_eq!(own["user"]["email"], "alice@example.com", "{own}");
    let by_admin = gw.data(USER, json!({"id": bob.id}), Some(&gw.admin)).await;
    assert_eq!(by_admin["user"]["email"], "bob@example.com", "{by_admin}");
    gw.query(USER, json!({"id": bob.id}), Some(&alice.token)).await.execution_error("FORBIDDEN");
    gw.query(USER, json!({"id": bob.id}), None).await.execution_error("UNAUTHENTICATED");

    // users: admin only; `query` matches name or email.
    gw.query(USERS, json!({}), None).await.execution_error("UNAUTHENTICATED");
    gw.query(USERS, json!({}), Some(&alice.token)).await.execution_error("FORBIDDEN");
    let found = gw.data(USERS, json!({"query": "ALICE"}), Some(&gw.admin)).await;
    assert_eq!(node_strings(&found["users"], "email"), ["alice@example.com"], "{found}");
    let carol = gw.customer("carol").await;
    let dave = gw.customer("dave").await;
    let all = gw.data(USERS, json!({"first": 100}), Some(&gw.admin)).await;
    let every: Vec<String> = node_strings(&all["users"], "email");
    assert_eq!(every.len(), 5, "the admin and four customers: {all}");
    assert_eq!(all["users"]["pageInfo"]["hasNextPage"], false, "{all}");
    // Paging with `first` and `after` walks every account once, in the same order.
    let pages = walk(&gw, USERS, &["users"], 2, json!({}), Some(&gw.admin)).await;
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 1], "{pages:?}");
    let walked: Vec<String> = pages.iter().flatten().map(|node| string(&node["email"])).collect();
    assert_eq!(walked, every);

    // registerUser: a duplicate email (compared case-insensitively) and invalid input.
    const REGISTER: &str =
        "mutation($input: RegisterInput!) { registerUser(input: $input) { id } }";
    let duplicate =
        json!({"input": {"name": "Al", "email": "ALICE@example.com", "password": PASSWORD}});
    gw.query(REGISTER, duplicate, None).await.execution_error("CONFLICT");
    let invalid = json!({"input": {"name": "Al", "email": "not-an-email", "password": "short"}});
    let fields: BTreeSet<String> =
        gw.query(REGISTER, invalid, None).await.bad_fields().into_iter().collect();
    assert_eq!(fields, BTreeSet::from(["email".to_owned(), "password".to_owned()]));

    // login: a bad password is UNAUTHENTICATED.
    const LOGIN: &str = "mutation($email: String!, $password: String!) \
         { login(email: $email, password: $password) { token } }";
    let bad = json!({"email": alice.email, "password": "wrong password"});
    gw.query(LOGIN, bad, None).await.execution_error("UNAUTHENTICATED");

    // refreshToken: works once; the spent token again is UNAUTHENTICATED.
    const REFRESH: &str = "mutation($token: String!) { refreshToken(refreshToken: $token) \
         { token refreshToken tokenType user { id } } }";
    let session = gw.login(&alice.email, PASSWORD).await;
    assert_eq!(session["tokenType"], "Bearer", "{session}");
    assert_eq!(session["expiresIn"], 900, "{session}");
    let refresh = string(&session["refreshToken"]);
    let renewed = gw.data(REFRESH, json!({"token": refresh}), None).await;
    assert_eq!(renewed["refreshToken"]["user"]["id"], alice.id.as_str(), "{renewed}");
    assert_ne!(renewed["refreshToken"]["refreshToken"], refresh.as_str(), "the token rotates");
    let renewed_token = string(&renewed["refreshToken"]["token"]);
    let me = gw.data(ME, json!({}), Some(&renewed_token)).await;
    assert_eq!(me["me"]["id"], alice.id.as_str(), "{me}");
    gw.query(REFRESH, json!({"token": refresh}), None).await.execution_error("UNAUTHENTICATED");

    // updateUser: oneself; an admin anyone; a customer may not set a role.
    const UPDATE: &str = "mutation($id: ID!, $input: UpdateUserInput!) \
         { updateUser(id: $id, input: $input) { id name role } }";
    let renamed = gw
        .data(UPDATE, json!({"id": alice.id, "input": {"name": "Alice A."}}), Some(&alice.token))
        .await;
    assert_eq!(renamed["updateUser"]["name"], "Alice A.", "{renamed}");
    let by_admin =
        gw.data(UPDATE, json!({"id": bob.id, "input": {"name": "Bob B."}}), Some(&gw.admin)).await;
    assert_eq!(by_admin["updateUser"]["name"], "Bob B.", "{by_admin}");
    let promote = json!({"id": alice.id, "input": {"role": "ADMIN"}});
    gw.query(UPDATE, promote, Some(&alice.token)).await.execution_error("FORBIDDEN");
    let me = gw.data(ME, json!({}), Some(&alice.token)).await;
    assert_eq!(me["me"]["role"], "CUSTOMER", "a refused change changes nothing: {me}");
    let other = json!({"id": bob.id, "input": {"name": "Mallory"}});
    gw.query(UPDATE, other, Some(&alice.token)).await.execution_error("FORBIDDEN");

    // deleteUser: true; the deleted user's still-unexpired token is then refused by `me`.
    const DELETE: &str = "mutation($id: ID!) { deleteUser(id: $id) }";
    gw.query(DELETE, json!({"id": carol.id}), Some(&dave.token)).await.execution_error("FORBIDDEN");
    let deleted = gw.data(DELETE, json!({"id": dave.id}), Some(&dave.token)).await;
    assert_eq!(deleted, json!({"deleteUser": true}));
    gw.query(ME, json!({}), Some(&dave.token)).await.execution_error("UNAUTHENTICATED");
    let gone = gw.data(USER, json!({"id": dave.id}), Some(&gw.admin)).await;
    assert_eq!(gone, json!({"user": null}));
    let deleted = gw.data(DELETE, json!({"id": carol.id}), Some(&gw.admin)).await;
    assert_eq!(deleted, json!({"deleteUser": true}));
    let all = gw.data(USERS, json!({"first": 100}), Some(&gw.admin)).await;
    assert_eq!(node_strings(&all["users"], "email").len(), 3, "{all}");
    assert!(gw.mercato.terminate().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn product_queries_and_mutations_follow_the_contract() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let gw = Gateway::start(dir.path()).await;
    let alice = gw.customer("alice").await;
    const CREATE: &str = "mutation($input: CreateProductInput!) { createProduct(input: $input) \
         { id name sku description category price stock active version } }";
    const PRODUCT: &str = "query($id: ID!) \
         { product(id: $id) { id name price stock active version description category } }";
    const PRODUCTS: &str = "query($first: Int, $after: String, $filter: ProductFilter) \
         { products(first: $first, after: $after, filter: $filter) \
         { edges { cursor node { id name } } \
         pageInfo { hasNextPage endCursor } } }";

    // createProduct: admin only; invalid input names its fields.
    let input = json!({"input": {"name": "Green tea", "price": "4.50", "stock": 10}});
    gw.query(CREATE, input.clone(), None).await.execution_error("UNAUTHENTICATED");
    gw.query(CREATE, input, Some(&alice.token)).await.execution_error("FORBIDDEN");
    let bad_price = json!({"input": {"name": "Green tea", "price": "1.999", "stock": 10}});
    assert_eq!(gw.query(CREATE, bad_price, Some(&gw.admin)).await.bad_fields(), ["price"]);
    let bad_name = json!({"input": {"name": "", "price": "4.50", "stock": 10}});
    assert_eq!(gw.query(CREATE, bad_name, Some(&gw.admin)).await.bad_fields(), ["name"]);
    let created = gw
        .data(
            CREATE,
            json!({"input": {
                "name": "Green tea", "price": "4.50", "stock": 10,
                "sku": "TEA-G", "category": "tea",
            }}),
            Some(&gw.admin),
        )
        .await;
    let green = &created["createProduct"];
    assert_eq!(green["sku"], "TEA-G", "{created}");
    assert_eq!(green["category"], "tea", "{created}");
    assert_eq!(green["description"], Value::Null, "{created}");
    let green = string(&green["id"]);
    let black = gw.product("Black tea", "6.00", 0, Some("tea")).await;
    let espresso = gw.product("Espresso", "12.00", 5, Some("coffee")).await;
    let decaf = gw
        .data(
            CREATE,
            json!({"input": {
                "name": "Decaf", "price": 9.99, "stock": 3, "category": "coffee",
                "description": "no caffeine",
            }}),
            Some(&gw.admin),
        )
        .await;
    assert_eq!(decaf["createProduct"]["price"], "9.99", "a number is taken as money: {decaf}");
    let decaf = string(&decaf["createProduct"]["id"]);
    gw.query(
        CREATE,
        json!({"input": {"name": "Copy", "price": "1.00", "stock": 1, "sku": "tea-g"}}),
        Some(&gw.admin),
    )
    .await
    .execution_error("CONFLICT");

    // product: by id; an unknown UUID is null; a non-UUID is BAD_USER_INPUT on `id`.
    let found = gw.data(PRODUCT, json!({"id": decaf}), None).await;
    assert_eq!(found["product"]["name"], "Decaf", "{found}");
    assert_eq!(found["product"]["description"], "no caffeine", "{found}");
    let unknown = gw.data(PRODUCT, json!({"id": uuid::Uuid::now_v7().to_string()}), None).await;
    assert_eq!(unknown, json!({"product": null}));
    assert_eq!(gw.query(PRODUCT, json!({"id": "nope"}), None).await.bad_fields(), ["id"]);

    // products: filters (query, category, price bounds inclusive, in stock) and paging.
    let names = |data: &Value| -> BTreeSet<String> {
        node_strings(&data["products"], "name").into_iter().collect()
    };
    let set =
        |names: &[&str]| -> BTreeSet<String> { names.iter().map(|&n| n.to_owned()).collect() };
    let filter = |filter: Value| json!({"filter": filter});
    let by_query = gw.data(PRODUCTS, filter(json!({"query": "TEA"})), None).await;
    assert_eq!(names(&by_query), set(&["Green tea", "Black tea"]), "{by_query}");
    let by_description = gw.data(PRODUCTS, filter(json!({"query": "caffeine"})), None).await;
    assert_eq!(names(&by_description), set(&["Decaf"]), "{by_description}");
    let by_category = gw.data(PRODUCTS, filter(json!({"category": "coffee"})), None).await;
    assert_eq!(names(&by_category), set(&["Espresso", "Decaf"]), "{by_category}");
    let by_price =
        gw.data(PRODUCTS, filter(json!({"minPrice": "6.00", "maxPrice": "9.99"})), None).await;
    assert_eq!(names(&by_price), set(&["Black tea", "Decaf"]), "{by_price}");
    let in_stock =
        gw.data(PRODUCTS, filter(json!({"inStock": true, "category": "tea"})), None).await;
    assert_eq!(names(&in_stock), set(&["Green tea"]), "{in_stock}");
    let pages = walk(&gw, PRODUCTS, &["products"], 3, json!({}), None).await;
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [3, 1], "{pages:?}");
    let walked: Vec<String> = pages.iter().flatten().map(|node| string(&node["id"])).collect();
    assert_eq!(
        walked,
        [green.clone(), black.clone(), espresso.clone(), decaf.clone()],
        "oldest first"
    );
    gw.query(PRODUCTS, json!({"first": 101}), None).await.execution_error("BAD_USER_INPUT");

    // updateProduct: admin only; validated by the products service.
    const UPDATE: &str = "mutation($id: ID!, $input: UpdateProductInput!) \
         { updateProduct(id: $id, input: $input) { id name price version } }";
    let change = json!({"id": green, "input": {"name": "Sencha", "price": "5.25"}});
    gw.query(UPDATE, change.clone(), None).await.execution_error("UNAUTHENTICATED");
    gw.query(UPDATE, change.clone(), Some(&alice.token)).await.execution_error("FORBIDDEN");
    let bad_price = json!({"id": green, "input": {"price": "1.999"}});
    assert_eq!(gw.query(UPDATE, bad_price, Some(&gw.admin)).await.bad_fields(), ["price"]);
    let bad_name = json!({"id": green, "input": {"name": ""}});
    assert_eq!(gw.query(UPDATE, bad_name, Some(&gw.admin)).await.bad_fields(), ["name"]);
    let updated = gw.data(UPDATE, change, Some(&gw.admin)).await;
    assert_eq!(updated["updateProduct"]["name"], "Sencha", "{updated}");
    assert_eq!(updated["updateProduct"]["price"], "5.25", "{updated}");
    let read = gw.data(PRODUCT, json!({"id": green}), None).await;
    assert_eq!(read["product"]["name"], "Sencha", "{read}");
    assert_eq!(read["product"]["version"], updated["updateProduct"]["version"], "{read}");
    let unknown = json!({"id": uuid::Uuid::now_v7().to_string(), "input": {"name": "x"}});
    gw.query(UPDATE, unknown, Some(&gw.admin)).await.execution_error("NOT_FOUND");

    // adjustInventory: admin only; never below zero.
    const ADJUST: &str = "mutation($id: ID!, $delta: Int!) \
         { adjustInventory(productId: $id, delta: $delta) { id stock } }";
    gw.query(ADJUST, json!({"id": espresso, "delta": 5}), None)
        .await
        .execution_error("UNAUTHENTICATED");
    gw.query(ADJUST, json!({"id": espresso, "delta": 5}), Some(&alice.token))
        .await
        .execution_error("FORBIDDEN");
    let adjusted = gw.data(ADJUST, json!({"id": espresso, "delta": 5}), Some(&gw.admin)).await;
    assert_eq!(adjusted["adjustInventory"]["stock"], 10, "{adjusted}");
    let removed = gw.data(ADJUST, json!({"id": espresso, "delta": -4}), Some(&gw.admin)).await;
    assert_eq!(removed["adjustInventory"]["stock"], 6, "{removed}");
    gw.query(ADJUST, json!({"id": espresso, "delta": -7}), Some(&gw.admin))
        .await
        .execution_error("CONFLICT");
    assert_eq!(gw.stock(&espresso).await, 6, "a refused adjustment changes nothing");
    assert_eq!(
        gw.query(ADJUST, json!({"id": "nope", "delta": 1}), Some(&gw.admin)).await.bad_fields(),
        ["productId"]
    );

    // deleteProduct: admin only; the product turns inactive and leaves the lists.
    const DELETE: &str = "mutation($id: ID!) { deleteProduct(id: $id) }";
    gw.query(DELETE, json!({"id": black}), None).await.execution_error("UNAUTHENTICATED");
    gw.query(DELETE, json!({"id": black}), Some(&alice.token)).await.execution_error("FORBIDDEN");
    let deleted = gw.data(DELETE, json!({"id": black}), Some(&gw.admin)).await;
    assert_eq!(deleted, json!({"deleteProduct": true}));
    let inactive = gw.data(PRODUCT, json!({"id": black}), None).await;
    assert_eq!(inactive["product"]["active"], false, "{inactive}");
    let listed = gw.data(PRODUCTS, json!({"first": 100}), None).await;
    assert_eq!(names(&listed), set(&["Sencha", "Espresso", "Decaf"]), "{listed}");
    assert!(gw.mercato.terminate().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_queries_and_mutations_follow_the_contract() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let gw = Gateway::start(dir.path()).await;
    let alice = gw.customer("alice").await;
    let bob = gw.customer("bob").await;
    let pen = gw.product("Pen", "2.50", 10, None).await;
    let book = gw.product("Book", "10.00", 4, None).await;

    // placeOrder: signed in only; held with waitSeconds, it answers confirmed and priced.
    gw.place_order(None, &[(&pen, 1)], None, None).await.execution_error("UNAUTHENTICATED");
    let document = with_order(
        "mutation($input: PlaceOrderInput!) { placeOrder(input: $input, waitSeconds: 5) { ...O } }",
    );
    let input = json!({"input": {
        "items": [{"productId": pen, "quantity": 3}, {"productId": book, "quantity": 1}],
        "shippingAddress": {
            "street": "1 Main St", "city": "Springfield", "zipCode": "12345", "country": "US",
        },
        "paymentMethod": "card",
    }});
    let placed = gw.data(&document, input, Some(&alice.token)).await;
    let first = placed["placeOrder"].clone();
    let first_id = string(&first["id"]);
    assert_eq!(first["status"], "CONFIRMED", "{first}");
    assert_eq!(first["userId"], alice.id.as_str(), "{first}");
    assert_eq!(first["paymentMethod"], "card", "{first}");
    assert_eq!(first["shippingAddress"]["city"], "Springfield", "{first}");
    assert_eq!(first["shippingAddress"]["state"], Value::Null, "{first}");
    let items = first["items"].as_array().expect("items");
    let priced: i64 = items
        .iter()
        .map(|item| cents(&item["unitPrice"]) * item["quantity"].as_i64().expect("a quantity"))
        .sum();
    assert_eq!(cents(&first["total"]), priced, "total = sum of unitPrice * quantity: {first}");
    assert_eq!(first["total"], "17.50", "{first}");
    let pen_line =
        items.iter().find(|item| item["productId"] == pen.as_str()).expect("the pen line");
    assert_eq!(pen_line["name"], "Pen", "{first}");
    assert_eq!(pen_line["unitPrice"], "2.50", "{first}");
    assert_eq!(gw.stock(&pen).await, 7);
    assert_eq!(gw.stock(&book).await, 3);

    // Beyond the stock: rejected, with its reason, unpriced, taking nothing.
    let rejected = gw.place_order(Some(&alice.token), &[(&book, 100)], None, Some(5)).await;
    let rejected = rejected.data()["placeOrder"].clone();
    assert_eq!(rejected["status"], "REJECTED", "{rejected}");
    assert_eq!(rejected["rejectionReason"], "insufficient_stock", "{rejected}");
    assert_eq!(rejected["total"], Value::Null, "{rejected}");
    assert_eq!(gw.stock(&book).await, 3);

    // The same idempotency key twice: the same order, placed once.
    let once = gw.place_order(Some(&bob.token), &[(&pen, 1)], Some("bob-1"), Some(5)).await;
    let once = once.data()["placeOrder"].clone();
    let again = gw.place_order(Some(&bob.token), &[(&pen, 1)], Some("bob-1"), Some(5)).await;
    let again = again.data()["placeOrder"].clone();
    assert_eq!(once["id"], again["id"], "{once} {again}");
    assert_eq!(once["status"], "CONFIRMED", "{once}");
    let bob_order = string(&once["id"]);
    assert_eq!(gw.stock(&pen).await, 6, "placed once");

    // Refused input: waitSeconds over 30, a non-UUID product id.
    let too_long = gw.place_order(Some(&bob.token), &[(&pen, 1)], None, Some(31)).await;
    assert_eq!(too_long.bad_fields(), ["waitSeconds"]);
    let not_an_id = gw.place_order(Some(&bob.token), &[("nope", 1)], None, None).await;
    assert_eq!(not_an_id.bad_fields(), ["items[0].productId"]);
    let invalid = gw.place_order(Some(&bob.token), &[(&pen, 0)], None, None).await;
    assert!(!invalid.bad_fields().is_empty());

    // order: the owner (with nested user and products), an admin; NOT_FOUND for another customer.
    const ORDER: &str = "query($id: ID!) \
         { order(id: $id) { ...O user { id email } items { product { id name stock } } } }";
    let document = with_order(ORDER);
    let own = gw.data(&document, json!({"id": first_id}), Some(&alice.token)).await;
    assert_eq!(own["order"]["id"], first_id.as_str(), "{own}");
    assert_eq!(own["order"]["user"]["email"], "alice@example.com", "Order.user: {own}");
    let products: BTreeSet<String> = own["order"]["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|item| string(&item["product"]["name"]))
        .collect();
    assert_eq!(
        products,
        BTreeSet::from(["Book".to_owned(), "Pen".to_owned()]),
        "OrderItem.product"
    );
    let by_admin = gw.data(&document, json!({"id": first_id}), Some(&gw.admin)).await;
    assert_eq!(by_admin["order"]["user"]["email"], "alice@example.com", "{by_admin}");
    gw.query(&document, json!({"id": first_id}), Some(&bob.token))
        .await
        .execution_error("NOT_FOUND");
    gw.query(&document, json!({"id": first_id}), None).await.execution_error("UNAUTHENTICATED");
    let unknown = json!({"id": uuid::Uuid::now_v7().to_string()});
    gw.query(&document, unknown, Some(&gw.admin)).await.execution_error("NOT_FOUND");

    // orders: a customer's own only; an admin everyone's, by `userId` and `status`.
    const ORDERS: &str = "query($status: OrderStatus, $userId: ID) \
         { orders(first: 100, status: $status, userId: $userId) \
         { edges { node { id userId status } } } }";
    let ids = |data: &Value| -> BTreeSet<String> {
        node_strings(&data["orders"], "id").into_iter().collect()
    };
    let rejected_id = string(&rejected["id"]);
    let alices = BTreeSet::from([first_id.clone(), rejected_id.clone()]);
    assert_eq!(ids(&gw.data(ORDERS, json!({}), Some(&alice.token)).await), alices);
    assert_eq!(
        ids(&gw.data(ORDERS, json!({}), Some(&bob.token)).await),
        BTreeSet::from([bob_order.clone()])
    );
    let everyone = BTreeSet::from([first_id.clone(), rejected_id.clone(), bob_order.clone()]);
    assert_eq!(ids(&gw.data(ORDERS, json!({}), Some(&gw.admin)).await), everyone);
    assert_eq!(ids(&gw.data(ORDERS, json!({"userId": alice.id}), Some(&gw.admin)).await), alices);
    let by_status = gw.data(ORDERS, json!({"status": "REJECTED"}), Some(&gw.admin)).await;
    assert_eq!(ids(&by_status), BTreeSet::from([rejected_id.clone()]));
    let own_confirmed = gw.data(ORDERS, json!({"status": "CONFIRMED"}), Some(&alice.token)).await;
    assert_eq!(ids(&own_confirmed), BTreeSet::from([first_id.clone()]));
    gw.query(ORDERS, json!({"userId": alice.id}), Some(&bob.token))
        .await
        .execution_error("FORBIDDEN");
    gw.query(ORDERS, json!({}), None).await.execution_error("UNAUTHENTICATED");
    let newest_first = gw.data(ORDERS, json!({"userId": alice.id}), Some(&gw.admin)).await;
    assert_eq!(
        node_strings(&newest_first["orders"], "id"),
        [rejected_id.clone(), first_id.clone()]
    );

    // User.orders: the user's own orders, nested.
    let mine = gw
        .data(
            "{ me { orders(first: 10) { edges { node { id } } } } }",
            json!({}),
            Some(&alice.token),
        )
        .await;
    let nested: BTreeSet<String> = node_strings(&mine["me"]["orders"], "id").into_iter().collect();
    assert_eq!(nested, alices, "{mine}");

    // updateOrder: items up, then down; each change is re-reserved.
    let line = |product: &str, quantity: i64| json!({"productId": product, "quantity": quantity});
    let up = gw
        .update_order(&alice.token, &first_id, json!({"items": [line(&pen, 5), line(&book, 1)]}))
        .await;
    let up = up.data()["updateOrder"].clone();
    assert_eq!(up["status"], "CONFIRMED", "{up}");
    assert_eq!(up["total"], "22.50", "{up}");
    assert_eq!(gw.stock(&pen).await, 4);
    let down = gw
        .update_order(&alice.token, &first_id, json!({"items": [line(&pen, 1), line(&book, 1)]}))
        .await;
    let down = down.data()["updateOrder"].clone();
    assert_eq!(down["status"], "CONFIRMED", "{down}");
    assert_eq!(down["total"], "12.50", "{down}");
    assert_eq!(gw.stock(&pen).await, 8);
    assert_eq!(gw.stock(&book).await, 3);
    gw.update_order(&bob.token, &first_id, json!({"paymentMethod": "cash"}))
        .await
        .execution_error("NOT_FOUND");

    // Status: a customer may not set it; an admin ships, then delivers.
    gw.update_order(&alice.token, &first_id, json!({"status": "SHIPPED"}))
        .await
        .execution_error("FORBIDDEN");
    let shipped = gw.update_order(&gw.admin, &first_id, json!({"status": "SHIPPED"})).await;
    assert_eq!(shipped.data()["updateOrder"]["status"], "SHIPPED", "{:?}", shipped.body);
    let delivered = gw.update_order(&gw.admin, &first_id, json!({"status": "DELIVERED"})).await;
    assert_eq!(delivered.data()["updateOrder"]["status"], "DELIVERED", "{:?}", delivered.body);
    gw.update_order(&gw.admin, &first_id, json!({"status": "PENDING"}))
        .await
        .execution_error("BAD_USER_INPUT");

    // cancelOrder: cancelled, and its stock goes back; a delivered order cannot be cancelled.
    const CANCEL: &str = "mutation($id: ID!) { cancelOrder(id: $id, waitSeconds: 5) { ...O } }";
    let cancel = with_order(CANCEL);
    gw.query(&cancel, json!({"id": bob_order}), Some(&alice.token))
        .await
        .execution_error("NOT_FOUND");
    let cancelled = gw.data(&cancel, json!({"id": bob_order}), Some(&bob.token)).await;
    assert_eq!(cancelled["cancelOrder"]["status"], "CANCELLED", "{cancelled}");
    assert_eq!(gw.stock(&pen).await, 9);
    gw.query(&cancel, json!({"id": first_id}), Some(&alice.token))
        .await
        .execution_error("CONFLICT");

    // placeOrder for someone else: an admin may, a customer may not.
    let on_behalf = with_order(
        "mutation($input: PlaceOrderInput!) { placeOrder(input: $input, waitSeconds: 5) { ...O } }",
    );
    let input = json!({"input": {"items": [line(&pen, 1)], "userId": alice.id}});
    let placed = gw.data(&on_behalf, input.clone(), Some(&gw.admin)).await;
    assert_eq!(placed["placeOrder"]["userId"], alice.id.as_str(), "{placed}");
    assert_eq!(placed["placeOrder"]["status"], "CONFIRMED", "{placed}");
    gw.query(&on_behalf, input, Some(&bob.token)).await.execution_error("FORBIDDEN");
    assert_eq!(gw.stock(&pen).await, 8);
    assert!(gw.mercato.terminate().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_refused_before_execution_get_400_without_data_and_call_no_service() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let gw = Gateway::start(dir.path()).await;
    let customer = gw.customer("alice").await;
    let token = Some(customer.token.as_str());
    // One call, so the counter exists.
    gw.data("{ me { id } }", json!({}), token).await;
    let calls = gw.upstream_calls().await;
    assert!(calls > 0, "the counter counts");

    let aliases = |count: usize| {
        let fields: Vec<String> = (0..count).map(|n| format!("a{n}: __typename")).collect();
        format!("{{ {} }}", fields.join(" "))
    };
    // Depth: 13 levels (each field with a selection adds one, the leaf too) against 12.
    let deep = "{ me { orders(first: 1) { edges { node { user { orders(first: 1) { edges { node \
                { user { orders(first: 1) { edges { node { id } } } } } } } } } } } } }";
    // Complexity: a page of 100 orders, each with a page of 100 orders.
    let complex = "{ orders(first: 100) { edges { node { items { product { id name } } \
                   user { orders(first: 100) { edges { node { id } } } } } } } }";
    let big = format!("{{ me {{ id }} }} # {}", "x".repeat(64 * 1024));
    let cases = [
        ("a syntax error", "{ me { id }".to_owned(), StatusCode::BAD_REQUEST, "BAD_USER_INPUT"),
        (
            "an unknown field",
            "{ me { nope } }".to_owned(),
            StatusCode::BAD_REQUEST,
            "BAD_USER_INPUT",
        ),
        ("depth 13", deep.to_owned(), StatusCode::BAD_REQUEST, "LIMIT_EXCEEDED"),
        ("complexity over 2000", complex.to_owned(), StatusCode::BAD_REQUEST, "LIMIT_EXCEEDED"),
        ("101 aliases", aliases(101), StatusCode::BAD_REQUEST, "LIMIT_EXCEEDED"),
        ("a body over 64 KiB", big, StatusCode::PAYLOAD_TOO_LARGE, "LIMIT_EXCEEDED"),
    ];
    for (what, document, status, code) in cases {
        gw.query(&document, json!({}), token).await.refused(status, code);
        assert_eq!(gw.upstream_calls().await, calls, "{what} reached no service");
    }
    // A mutation over GET.
    let id = customer.id.as_str();
    let mutation = format!("mutation {{ deleteUser(id: \"{id}\") }}");
    let answer = gw.get(&[("query", mutation.as_str())]).await;
    answer.refused(StatusCode::BAD_REQUEST, "BAD_USER_INPUT");
    assert_eq!(gw.upstream_calls().await, calls, "a mutation over GET reached no service");

    // Just within the limits, documents run.
    let at_depth = "{ me { orders(first: 1) { edges { node { user { orders(first: 1) { edges \
                    { node { user { orders(first: 1) { edges { cursor } } } } } } } } } } } }";
    let data = gw.data(at_depth, json!({}), token).await;
    assert_eq!(data["me"]["orders"]["edges"], json!([]), "{data}");
    let data = gw.data(&aliases(100), json!({}), None).await;
    assert_eq!(data["a99"], "Query", "{data}");
    // A query over GET works, and the customer still exists.
    let answer = gw.get(&[("query", "{me{id}}")]).await;
    assert_eq!(answer.data(), &json!({"me": null}));
    let me = gw.data("{ me { id } }", json!({}), token).await;
    assert_eq!(me["me"]["id"], id, "the refused deleteUser did not run");
    assert!(gw.mercato.terminate().await.success());
}

/// Three customers, six products and 20 orders of 3 lines each, placed by the customers in turn.
struct TwentyOrders {
    customers: Vec<Account>,
    /// (id, name, price) of each product.
    products: Vec<(String, String, String)>,
    /// The owner's email of each order.
    owner_of: HashMap<String, String>,
    /// The orders' ids, newest first.
    newest_first: Vec<String>,
}

impl TwentyOrders {
    async fn place(gw: &Gateway) -> Self {
        let mut customers = Vec::new();
        for name in ["ann", "ben", "cid"] {
            customers.push(gw.customer(name).await);
        }
        let mut products = Vec::new();
        for n in 0..6_i64 {
            let price = format!("{}.{:02}", n + 1, n * 11);
            let id = gw.product(&format!("Item {n}"), &price, 1000, None).await;
            products.push((id, format!("Item {n}"), price));
        }
        let mut owner_of = HashMap::new();
        let mut newest_first = Vec::new();
        for n in 0..20_usize {
            let customer = &customers[n % 3];
            let lines: Vec<(&str, i64)> = (0..3_usize)
                .map(|line| {
                    (products[(n + line) % 6].0.as_str(), i64::try_from(line).unwrap_or(0) + 1)
                })
                .collect();
            let placed = gw.place_order(Some(&customer.token), &lines, None, None).await;
            let id = string(&placed.data()["placeOrder"]["id"]);
            newest_first.insert(0, id.clone());
            owner_of.insert(id, customer.email.clone());
        }
        Self { customers, products, owner_of, newest_first }
    }

    /// The ids of `email`'s orders, newest first.
    fn orders_of(&self, email: &str) -> Vec<String> {
        self.newest_first.iter().filter(|id| self.owner_of[*id] == email).cloned().collect()
    }

    /// Checks a page of [`ORDERS_PAGE`]: each order's user and products are the right ones.
    fn check_page(&self, data: &Value, first: usize) {
        let orders = nodes(&data["orders"]);
        assert_eq!(orders.len(), first, "{data}");
        let shown: Vec<String> = orders.iter().map(|order| string(&order["id"])).collect();
        assert_eq!(shown, self.newest_first[..first], "newest first");
        for order in &orders {
            let id = string(&order["id"]);
            assert_eq!(order["user"]["email"], self.owner_of[&id].as_str(), "Order.user: {order}");
            let items = order["items"].as_array().expect("items");
            assert_eq!(items.len(), 3, "{order}");
            for item in items {
                let product_id = string(&item["productId"]);
                let (_, name, price) = self
                    .products
                    .iter()
                    .find(|(id, _, _)| *id == product_id)
                    .unwrap_or_else(|| panic!("a known product: {order}"));
                assert_eq!(item["product"]["id"], product_id.as_str(), "{order}");
                assert_eq!(item["product"]["name"], name.as_str(), "OrderItem.product: {order}");
                assert_eq!(item["product"]["price"], price.as_str(), "OrderItem.product: {order}");
            }
        }
    }

    /// Checks a page of [`USERS_WITH_ORDERS`]: each user's first 5 orders are theirs.
    fn check_users(&self, data: &Value) {
        let users = nodes(&data["users"]);
        assert_eq!(users.len(), 4, "the admin and three customers: {data}");
        for user in &users {
            let expected = self.orders_of(user["email"].as_str().unwrap_or_default());
            let shown = node_strings(&user["orders"], "id");
            assert_eq!(shown, expected.iter().take(5).cloned().collect::<Vec<_>>(), "{user}");
            assert_eq!(user["orders"]["pageInfo"]["hasNextPage"], expected.len() > 5, "{user}");
            for order in nodes(&user["orders"]) {
                assert_eq!(order["userId"], user["id"], "{user}");
            }
        }
    }
}

const ORDERS_PAGE: &str = "query($first: Int) { orders(first: $first) \
     { edges { node { id user { email } \
     items { productId quantity product { id name price } } } } } }";
const USERS_WITH_ORDERS: &str = "{ users(first: 10) { edges { node { id email orders(first: 5) \
     { edges { node { id userId } } pageInfo { hasNextPage } } } } } }";

/// Runs `document` as the admin; returns its data and the service calls it cost, per service.
async fn costed(gw: &Gateway, document: &str, variables: Value) -> (Value, BTreeMap<String, u64>) {
    let before = gw.upstream_calls_by_service().await;
    let data = gw.data(document, variables, Some(&gw.admin)).await;
    let after = gw.upstream_calls_by_service().await;
    let delta = after
        .into_iter()
        .map(|(service, calls)| {
            let earlier = before.get(&service).copied().unwrap_or(0);
            (service, calls - earlier)
        })
        .filter(|(_, calls)| *calls > 0)
        .collect();
    (data, delta)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_fields_show_the_right_users_products_and_orders_and_paging_reaches_every_order() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let gw = Gateway::start(dir.path()).await;
    let shop = TwentyOrders::place(&gw).await;
    for first in [20_usize, 5] {
        shop.check_page(
            &gw.data(ORDERS_PAGE, json!({"first": first}), Some(&gw.admin)).await,
            first,
        );
    }
    shop.check_users(&gw.data(USERS_WITH_ORDERS, json!({}), Some(&gw.admin)).await);

    // Paging: every order once, newest first, through Query.orders and User.orders.
    const ORDERS: &str = "query($first: Int, $after: String) { orders(first: $first, after: $after) \
         { edges { cursor node { id } } pageInfo { hasNextPage endCursor } } }";
    let pages = walk(&gw, ORDERS, &["orders"], 6, json!({}), Some(&gw.admin)).await;
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [6, 6, 6, 2]);
    let walked: Vec<String> = pages.iter().flatten().map(|node| string(&node["id"])).collect();
    assert_eq!(walked, shop.newest_first);
    const USER_ORDERS: &str = "query($id: ID!, $first: Int, $after: String) { user(id: $id) \
         { orders(first: $first, after: $after) { edges { cursor node { id } } \
         pageInfo { hasNextPage endCursor } } } }";
    let ann = &shop.customers[0];
    let variables = json!({"id": ann.id});
    for token in [&gw.admin, &ann.token] {
        let pages =
            walk(&gw, USER_ORDERS, &["user", "orders"], 3, variables.clone(), Some(token)).await;
        assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [3, 3, 1]);
        let walked: Vec<String> = pages.iter().flatten().map(|node| string(&node["id"])).collect();
        assert_eq!(walked, shop.orders_of(&ann.email));
    }
    assert!(gw.mercato.terminate().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_of_orders_with_users_and_products_costs_three_service_calls_whatever_its_size() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let gw = Gateway::start(dir.path()).await;
    let shop = TwentyOrders::place(&gw).await;
    // Several times over: a batch that splits only now and then is still a split batch.
    for round in 0..5 {
        for first in [20_usize, 5] {
            let (data, calls) = costed(&gw, ORDERS_PAGE, json!({"first": first})).await;
            shop.check_page(&data, first);
            assert_eq!(
                calls.values().sum::<u64>(),
                3,
                "orders + users + products, whatever the page size ({first}, round {round}): \
                 {calls:?}"
            );
        }
        // User.orders: a page of users with their first pages of orders costs two calls.
        let (data, calls) = costed(&gw, USERS_WITH_ORDERS, json!({})).await;
        shop.check_users(&data);
        assert_eq!(calls.values().sum::<u64>(), 2, "users + orders (round {round}): {calls:?}");
    }
    assert!(gw.mercato.terminate().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_answer_is_graphql_response_json_only_when_the_client_accepts_it() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let gw = Gateway::start(dir.path()).await;
    let body = json!({"query": "{ me { id } }"});
    let accepting = [(ACCEPT.as_str(), "application/graphql-response+json")];
    let answer = gw.post(&body, None, &accepting).await;
    assert_eq!(answer.content_type(), Some("application/graphql-response+json"));
    assert_eq!(answer.data(), &json!({"me": null}));
    let answer = gw.post(&body, None, &[]).await;
    assert_eq!(answer.content_type(), Some("application/json"));
    let answer = gw.post(&body, None, &[(ACCEPT.as_str(), "application/json")]).await;
    assert_eq!(answer.content_type(), Some("application/json"));
    let mixed = [(ACCEPT.as_str(), "application/graphql-response+json, application/json;q=0.9")];
    let answer = gw.post(&body, None, &mixed).await;
    assert_eq!(answer.content_type(), Some("application/graphql-response+json"));
    // Refusals and execution errors too.
    let answer = gw.post(&json!({"query": "{ nope }"}), None, &accepting).await;
    answer.refused(StatusCode::BAD_REQUEST, "BAD_USER_INPUT");
    assert_eq!(answer.content_type(), Some("application/graphql-response+json"));
    let answer =
        gw.post(&json!({"query": "{ users { edges { cursor } } }"}), None, &accepting).await;
    answer.execution_error("UNAUTHENTICATED");
    assert_eq!(answer.content_type(), Some("application/graphql-response+json"));
    assert!(gw.mercato.terminate().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automatic_persisted_queries_are_learned_then_run_by_hash() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let gw = Gateway::start(dir.path()).await;
    let alice = gw.customer("alice").await;
    let query = "query Mine { me { email } }";
    let hash: String =
        Sha256::digest(query.as_bytes()).iter().map(|byte| format!("{byte:02x}")).collect();
    let extensions = json!({"persistedQuery": {"version": 1, "sha256Hash": hash}});

    // Unknown hash: the client is told to send the document.
    let answer = gw.post(&json!({"extensions": extensions}), Some(&alice.token), &[]).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let errors = answer.body["errors"].as_array().expect("errors");
    assert_eq!(errors[0]["extensions"]["code"], "PERSISTED_QUERY_NOT_FOUND", "{}", answer.body);
    // The document with its hash runs and is remembered.
    let answer =
        gw.post(&json!({"query": query, "extensions": extensions}), Some(&alice.token), &[]).await;
    assert_eq!(answer.data(), &json!({"me": {"email": "alice@example.com"}}));
    // The hash alone now runs it, over POST and GET.
    let answer = gw.post(&json!({"extensions": extensions}), Some(&alice.token), &[]).await;
    assert_eq!(answer.data(), &json!({"me": {"email": "alice@example.com"}}));
    let answer = gw.get(&[("extensions", extensions.to_string().as_str())]).await;
    assert_eq!(answer.data(), &json!({"me": null}), "anonymous over GET");
    assert!(gw.mercato.terminate().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_over_its_rate_gets_429_with_retry_after() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let mut command = up_with_admin(dir.path());
    command.env("MERCATO_GATEWAY__RATE_LIMIT_PER_MINUTE", "5");
    let gw = Gateway::start_with(command).await;
    let body = json!({"query": "{ me { id } }"});
    for n in 1..=5 {
        let answer = gw.post(&body, None, &[]).await;
        assert_eq!(answer.data(), &json!({"me": null}), "request {n} is within the rate");
    }
    let answer = gw.post(&body, None, &[]).await;
    answer.refused(StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED");
    let retry_after = answer.headers.get(RETRY_AFTER).and_then(|value| value.to_str().ok());
    let seconds: u64 = retry_after
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("a Retry-After in seconds: {retry_after:?}"));
    assert!((1..=60).contains(&seconds), "Retry-After {seconds}");
    // Another client (a signed-in user is counted by their account) is not held back.
    let admin = gw.post(&body, Some(&gw.admin), &[]).await;
    assert!(admin.data()["me"]["id"].is_string(), "{:?}", admin.body);
    assert!(gw.mercato.terminate().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspection_answers_by_default_and_shows_no_schema_when_turned_off() {
    let query = json!({"query": "{ __schema { queryType { name } } }"});
    let dir = tempfile::tempdir().expect("a temp dir");
    let gw = Gateway::start(dir.path()).await;
    let answer = gw.post(&query, None, &[]).await;
    assert_eq!(answer.data(), &json!({"__schema": {"queryType": {"name": "Query"}}}));
    assert!(gw.mercato.terminate().await.success());

    let dir = tempfile::tempdir().expect("a temp dir");
    let mut command = up_with_admin(dir.path());
    command.env("MERCATO_GATEWAY__INTROSPECTION", "false");
    let gw = Gateway::start_with(command).await;
    let answer = gw.post(&query, None, &[]).await;
    assert!(
        answer.body.get("data").is_none_or(|data| data.get("__schema").is_none_or(Value::is_null)),
        "no schema is shown: {}",
        answer.body
    );
    let answer =
        gw.post(&json!({"query": "{ __type(name: \"Query\") { name } }"}), None, &[]).await;
    assert!(
        answer.body.get("data").is_none_or(|data| data.get("__type").is_none_or(Value::is_null)),
        "no type is shown: {}",
        answer.body
    );
    assert!(gw.mercato.terminate().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspection_turned_off_refuses_schema_queries_with_an_error() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let mut command = up_with_admin(dir.path());
    command.env("MERCATO_GATEWAY__INTROSPECTION", "false");
    let gw = Gateway::start_with(command).await;
    let answer = gw.post(&json!({"query": "{ __schema { queryType { name } } }"}), None, &[]).await;
    answer.refused(StatusCode::BAD_REQUEST, "BAD_USER_INPUT");
    assert!(gw.mercato.terminate().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_nullable_field_is_null_in_data_beside_its_error() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let gw = Gateway::start(dir.path()).await;
    let answer = gw.query("{ product(id: \"nope\") { id } __typename }", json!({}), None).await;
    answer.execution_error("BAD_USER_INPUT");
    assert_eq!(answer.body["data"], json!({"product": null, "__typename": "Query"}));
    let answer = gw.query("{ me { id } }", json!({}), Some("not a token")).await;
    answer.execution_error("UNAUTHENTICATED");
    assert_eq!(answer.body["data"], json!({"me": null}), "GraphQL spec 6.4.4: the field is null");
    assert!(gw.mercato.terminate().await.success());
}
