//! `GET /api/openapi.json`: every users route of `API.md` is documented, and served.

use mercato_testkit::{Backend, TestDatabase};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::harness::*;

/// (method, path, deprecated): the users service's routes as `API.md` lists them.
const ROUTES: &[(&str, &str, bool)] = &[
    ("post", "/api/users", false),
    ("post", "/api/auth/login", false),
    ("post", "/api/auth/refresh", false),
    ("post", "/api/auth/logout", false),
    ("get", "/api/users/me", false),
    ("get", "/api/users/{id}", false),
    ("put", "/api/users/{id}", false),
    ("patch", "/api/users/{id}", false),
    ("delete", "/api/users/{id}", false),
    ("get", "/api/users", false),
    ("post", "/api/register", true),
    ("post", "/api/login", true),
    ("get", "/api/get/{id}", true),
    ("get", "/.well-known/jwks.json", false),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_lists_every_route_and_every_listed_route_is_served() {
    let db = TestDatabase::create(Backend::Sqlite).await.expect("SQLite is always available");
    let app = spawn_app(db).await;
    let response = app.get("/api/openapi.json", None).await;
    let document = json_body(response, StatusCode::OK).await;
    let version = text(&document["openapi"]);
    assert!(version.starts_with("3.1."), "OpenAPI 3.1.x, got {version}");

    let mut missing = Vec::new();
    for &(method, path, deprecated) in ROUTES {
        let operation = &document["paths"][path][method];
        if !operation.is_object() {
            missing.push(format!("{} {path}", method.to_uppercase()));
            continue;
        }
        let marked = operation["deprecated"] == Value::Bool(true);
        assert_eq!(marked, deprecated, "{} {path} deprecated: {operation}", method.to_uppercase());
    }
    assert!(missing.is_empty(), "operations missing from the OpenAPI document: {missing:?}");

    // Each listed route is served: without a token and with an empty JSON body, none of them may
    // answer as an unknown route (404) or a wrong method (405).
    for &(method, path, _) in ROUTES {
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).expect("an HTTP method");
        let concrete = path.replace("{id}", &Uuid::now_v7().to_string());
        let body = matches!(method, Method::POST | Method::PUT | Method::PATCH).then(|| json!({}));
        let response = app.send(method.clone(), &concrete, body.as_ref(), None).await;
        let (status, _, body) = parts(response).await;
        assert!(
            status != StatusCode::NOT_FOUND && status != StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path} is documented but answered {status}: {body}"
        );
    }
}
