//! The gateway remembers parsed documents and validation results
//! ([`mercato_gateway::documents`]); a client must not be able to tell, except by speed. Each
//! test sends the same text more than once over `/graphql` and checks that every answer is the
//! one a fresh gateway would give: refusals stay refusals (limits, mutations over `GET`,
//! introspection turned off, wrongly typed variables), each named operation runs itself,
//! persisted queries still work, and the cache stays within its bound.
//!
//! The services are a stub products router in process: a product for any id, a page of one.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::Path;
use axum::routing::get;
use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use mercato_gateway::documents::{MAX_ENTRIES, MAX_TEXT_BYTES};
use mercato_gateway::limits::Limits;
use mercato_gateway::upstream::InProcess;
use mercato_gateway::{Gateway, GatewayConfig};
use mercato_platform::auth::TokenVerifier;
use serde_json::{Value, json};
use tower::ServiceExt;

const PRODUCT_ID: &str = "0190b5a4-1f7e-7c55-a0a8-3f1a9d3b9c11";

fn product(id: &str) -> Value {
    json!({
        "id": id, "sku": "SKU-1", "name": "Lamp", "description": null, "category": null,
        "price": "17.50", "stock": 3, "active": true, "version": 1,
        "createdAt": "2025-01-01T00:00:00Z", "updatedAt": "2025-01-01T00:00:00Z",
    })
}

fn products_service() -> Router {
    Router::new()
        .route(
            "/api/products/{id}",
            get(|Path(id): Path<String>| async move { axum::Json(product(&id)) }),
        )
        .route(
            "/api/products",
            get(|| async {
                axum::Json(json!({ "items": [product(PRODUCT_ID)], "nextCursor": null }))
            }),
        )
}

/// Limits low enough to be reached by short documents.
fn config() -> GatewayConfig {
    GatewayConfig {
        limits: Limits { max_depth: 4, max_complexity: 20, max_aliases: 2, ..Limits::default() },
        introspection: true,
        rate_limit_per_minute: 0,
    }
}

fn gateway(config: GatewayConfig) -> Gateway {
    // Every request here is anonymous: the verifier never fetches its keys.
    let verifier = TokenVerifier::from_jwks_url(
        "mercato",
        "http://127.0.0.1:9/jwks".into(),
        reqwest::Client::new(),
    );
    Gateway::new(Arc::new(InProcess::new(products_service())), verifier, config)
}

/// One answer of `/graphql`, its body both as bytes and as JSON.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    bytes: Bytes,
    body: Value,
}

impl Answer {
    fn data(&self) -> &Value {
        assert_eq!(self.status, StatusCode::OK, "{}", self.body);
        assert!(self.body.get("errors").is_none(), "unexpected errors: {}", self.body);
        &self.body["data"]
    }

    /// Refused before running: HTTP 400, no `data`, a first error with `code`; its message.
    fn refused(&self, code: &str) -> &str {
        assert_eq!(self.status, StatusCode::BAD_REQUEST, "{}", self.body);
        assert!(self.body.get("data").is_none(), "{}", self.body);
        assert_eq!(self.body["errors"][0]["extensions"]["code"], code, "{}", self.body);
        self.body["errors"][0]["message"].as_str().unwrap_or_default()
    }
}

async fn send(gateway: &Gateway, request: Request<Body>) -> Answer {
    let response = gateway.routes().oneshot(request).await.expect("the router answers");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("a body");
    let body = serde_json::from_slice(&bytes).expect("a JSON body");
    Answer { status, bytes, body }
}

async fn post(gateway: &Gateway, body: Value) -> Answer {
    let request = Request::builder()
        .method(Method::POST)
        .uri("/graphql")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .expect("a request");
    send(gateway, request).await
}

async fn post_query(gateway: &Gateway, query: &str) -> Answer {
    post(gateway, json!({ "query": query })).await
}

async fn get_query(gateway: &Gateway, query: &str) -> Answer {
    let params = serde_urlencoded::to_string([("query", query)]).expect("encodable");
    let request = Request::builder()
        .method(Method::GET)
        .uri(format!("/graphql?{params}"))
        .body(Body::empty())
        .expect("a request");
    send(gateway, request).await
}

#[tokio::test]
async fn the_same_document_twice_gets_the_same_answer() {
    let gateway = gateway(config());
    let query =
        format!(r#"{{ product(id: "{PRODUCT_ID}") {{ id sku name price stock active }} }}"#);
    let first = post_query(&gateway, &query).await;
    assert_eq!(first.data()["product"]["sku"], "SKU-1");
    let second = post_query(&gateway, &query).await;
    assert_eq!(second.status, first.status);
    assert_eq!(second.bytes, first.bytes);
    // The second answer came from the remembered document and validation.
    assert_eq!(gateway.documents().document_count(), 1);
    assert_eq!(gateway.documents().validation_count(), 1);
}

#[tokio::test]
async fn a_document_over_a_limit_is_refused_every_time() {
    let gateway = gateway(config());
    let deep = "{ me { orders { edges { node { id } } } } }";
    let complex = "{ products(first: 50) { edges { node { id } } } }";
    let aliased = "{ a: __typename b: __typename c: __typename }";
    for (query, says) in [(deep, "deep"), (complex, "complexity"), (aliased, "aliases")] {
        let first = post_query(&gateway, query).await;
        assert!(first.refused("LIMIT_EXCEEDED").contains(says), "{}", first.body);
        for _ in 0..2 {
            let again = post_query(&gateway, query).await;
            again.refused("LIMIT_EXCEEDED");
            assert_eq!(again.bytes, first.bytes);
        }
    }
    // The depth and complexity refusals passed async-graphql's own rules, whose successes are
    // remembered: the limits were applied to a remembered validation the second time.
    assert_eq!(gateway.documents().validation_count(), 2);
    let within = post_query(&gateway, "{ products(first: 2) { edges { node { id } } } }").await;
    assert_eq!(within.data()["products"]["edges"][0]["node"]["id"], PRODUCT_ID);
}

#[tokio::test]
async fn a_mutation_sent_with_get_is_refused_even_after_it_ran_with_post() {
    let gateway = gateway(config());
    let mutation = format!(r#"mutation {{ deleteProduct(id: "{PRODUCT_ID}") }}"#);
    let ran = post_query(&gateway, &mutation).await;
    assert_eq!(ran.status, StatusCode::OK, "{}", ran.body);
    assert_eq!(ran.body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED", "{}", ran.body);
    for _ in 0..2 {
        let refused = get_query(&gateway, &mutation).await;
        assert_eq!(refused.refused("BAD_USER_INPUT"), "mutations must be sent with POST");
    }
    let again = post_query(&gateway, &mutation).await;
    assert_eq!(again.bytes, ran.bytes);
}

#[tokio::test]
async fn each_named_operation_of_a_document_runs_itself() {
    let gateway = gateway(config());
    let document = "query A { a: __typename } query B { b: __typename }";
    for _ in 0..2 {
        for name in ["A", "B", "A"] {
            let answer = post(&gateway, json!({ "query": document, "operationName": name })).await;
            let expected =
                if name == "A" { json!({ "a": "Query" }) } else { json!({ "b": "Query" }) };
            assert_eq!(answer.data(), &expected);
        }
        let unnamed = post_query(&gateway, document).await;
        unnamed.refused("BAD_USER_INPUT");
        let unknown = post(&gateway, json!({ "query": document, "operationName": "C" })).await;
        unknown.refused("BAD_USER_INPUT");
    }
}

#[tokio::test]
async fn a_request_with_variables_is_validated_with_them() {
    let gateway = gateway(config());
    let query = "query P($id: ID!) { product(id: $id) { sku } }";
    let good = json!({ "query": query, "variables": { "id": PRODUCT_ID } });
    let wrong = json!({ "query": query, "variables": { "id": { "not": "an id" } } });
    assert_eq!(post(&gateway, good.clone()).await.data()["product"]["sku"], "SKU-1");
    for _ in 0..2 {
        post(&gateway, wrong.clone()).await.refused("BAD_USER_INPUT");
        assert_eq!(post(&gateway, good.clone()).await.data()["product"]["sku"], "SKU-1");
    }

    // Without variables this text is remembered as valid, with the complexity of `first: 1`;
    // a request whose variable asks for a page over the limit is still refused.
    let paged = "query L($n: Int = 1) { products(first: $n) { edges { node { id } } } }";
    for _ in 0..2 {
        assert!(post_query(&gateway, paged).await.data()["products"].is_object());
        let over = post(&gateway, json!({ "query": paged, "variables": { "n": 50 } })).await;
        assert!(over.refused("LIMIT_EXCEEDED").contains("complexity"), "{}", over.body);
    }
    assert_eq!(gateway.documents().validation_count(), 1);
}

#[tokio::test]
async fn an_unparsable_document_is_refused_as_async_graphql_refuses_it() {
    let gateway = gateway(config());
    let text = "{ product(id: \"x\") { id }";
    let expected = async_graphql::ServerError::from(
        async_graphql::parser::parse_query(text).expect_err("the text does not parse"),
    );
    let first = post_query(&gateway, text).await;
    assert_eq!(first.refused("BAD_USER_INPUT"), expected.message);
    let second = post_query(&gateway, text).await;
    assert_eq!(second.bytes, first.bytes);
    assert_eq!(gateway.documents().document_count(), 0);
}

#[tokio::test]
async fn introspection_turned_off_stays_refused() {
    let gateway = gateway(GatewayConfig { introspection: false, ..config() });
    for _ in 0..2 {
        let answer = post_query(&gateway, "{ __schema { queryType { name } } }").await;
        assert_eq!(answer.refused("BAD_USER_INPUT"), "introspection is turned off on this server");
    }
}

#[tokio::test]
async fn persisted_queries_still_work() {
    let gateway = gateway(config());
    let query = format!(r#"{{ product(id: "{PRODUCT_ID}") {{ id sku name }} }}"#);
    // printf '%s' "$query" | sha256sum
    let hash = "db76541cbdd5a3f58bdefccf9a88a879d2e290ef5b2f73325614ade3f6c99aab";
    let persisted = json!({ "persistedQuery": { "version": 1, "sha256Hash": hash } });
    let unknown = post(&gateway, json!({ "extensions": persisted })).await;
    assert_eq!(unknown.body["errors"][0]["extensions"]["code"], "PERSISTED_QUERY_NOT_FOUND");
    let registered = post(&gateway, json!({ "query": query, "extensions": persisted })).await;
    assert_eq!(registered.data()["product"]["sku"], "SKU-1");
    for _ in 0..2 {
        let by_hash = post(&gateway, json!({ "extensions": persisted })).await;
        assert_eq!(by_hash.bytes, registered.bytes);
    }
    // A persisted query runs as its text: parsed once, validated once, for both ways of sending.
    assert_eq!(gateway.documents().document_count(), 1);
    assert_eq!(gateway.documents().validation_count(), 1);
    assert_eq!(post_query(&gateway, &query).await.bytes, registered.bytes);
    assert_eq!(gateway.documents().document_count(), 1);

    // A text under another hash is refused, and its hash stays unknown.
    let wrong = json!({ "persistedQuery": { "version": 1, "sha256Hash": "0".repeat(64) } });
    let refused = post(&gateway, json!({ "query": query, "extensions": wrong })).await;
    assert_eq!(refused.refused("BAD_USER_INPUT"), "the sha256Hash is not the SHA-256 of the query");
    let still_unknown = post(&gateway, json!({ "extensions": wrong })).await;
    assert_eq!(still_unknown.body["errors"][0]["extensions"]["code"], "PERSISTED_QUERY_NOT_FOUND");
}

#[tokio::test]
async fn the_gateway_never_remembers_more_documents_than_its_bound() {
    let gateway = gateway(config());
    for n in 0..MAX_ENTRIES + 100 {
        let answer = post_query(&gateway, &format!("{{ n{n}: __typename }}")).await;
        assert_eq!(answer.data()[format!("n{n}")], "Query");
        assert!(gateway.documents().document_count() <= MAX_ENTRIES);
        assert!(gateway.documents().validation_count() <= MAX_ENTRIES);
    }
    assert!(gateway.documents().document_count() > 0);

    // A long text is answered, and not remembered.
    let before = gateway.documents().document_count();
    let long = format!("{{ __typename }}{}", " ".repeat(MAX_TEXT_BYTES));
    assert_eq!(post_query(&gateway, &long).await.data()["__typename"], "Query");
    assert_eq!(gateway.documents().document_count(), before);
}
