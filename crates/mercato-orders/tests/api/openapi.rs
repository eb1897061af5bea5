//! The service's OpenAPI document (`GET /api/openapi.json`) describes every orders route with its
//! methods and answers, and marks the compatibility routes deprecated.

use std::collections::{BTreeMap, BTreeSet};

use mercato_testkit::backend_tests;
use reqwest::StatusCode;
use serde_json::Value;

use crate::harness::*;

const METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

async fn document(app: &TestApp) -> Value {
    let response = app.get("/api/openapi.json", None).await;
    assert_eq!(header_of(&response, "content-type").as_deref(), Some("application/json"));
    json_body(response, StatusCode::OK).await
}

fn operation<'a>(document: &'a Value, path: &str, method: &str) -> &'a Value {
    let operation = &document["paths"][path][method];
    assert!(operation.is_object(), "{method} {path} is documented");
    operation
}

fn statuses(operation: &Value) -> BTreeSet<String> {
    operation["responses"].as_object().expect("responses").keys().cloned().collect()
}

fn strings(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|item| (*item).to_owned()).collect()
}

/// Every documented operation as `(path, method)`.
fn operations(document: &Value) -> Vec<(String, String)> {
    document["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .expect("a path item")
                .keys()
                .filter(|key| METHODS.contains(&key.as_str()))
                .map(|method| (path.clone(), method.clone()))
                .collect::<Vec<_>>()
        })
        .collect()
}

backend_tests! {
    async fn the_document_lists_every_orders_route_with_its_methods(db) {
        let app = spawn_app(db).await;
        let document = document(&app).await;
        assert!(text(&document["openapi"]).starts_with("3.1"), "OpenAPI 3.1: {}", document["openapi"]);

        let mut paths: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (path, method) in operations(&document) {
            paths.entry(path).or_default().insert(method);
        }
        let expected = BTreeMap::from([
            ("/api/orders".to_owned(), strings(&["get", "post"])),
            ("/api/orders/{id}".to_owned(), strings(&["delete", "get", "patch", "put"])),
            ("/api/orders/{id}/cancel".to_owned(), strings(&["post"])),
            ("/api/orders/by-user".to_owned(), strings(&["get"])),
            ("/api/create".to_owned(), strings(&["post"])),
            ("/api/orders/cancel/{id}".to_owned(), strings(&["post"])),
        ]);
        assert_eq!(paths, expected);
    }

    async fn only_the_compatibility_routes_are_deprecated(db) {
        let app = spawn_app(db).await;
        let document = document(&app).await;
        for (path, method) in operations(&document) {
            let deprecated = document["paths"][&path][&method]["deprecated"] == Value::Bool(true);
            let compat = matches!(
                (path.as_str(), method.as_str()),
                ("/api/create", "post") | ("/api/orders/cancel/{id}", "post")
            );
            assert_eq!(deprecated, compat, "{method} {path}: deprecated is {deprecated}");
        }
    }

    async fn each_operation_documents_its_body_and_main_answers(db) {
        let app = spawn_app(db).await;
        let document = document(&app).await;

        let place = operation(&document, "/api/orders", "post");
        assert!(place["requestBody"].is_object(), "POST /api/orders takes a body");
        assert!(statuses(place).is_superset(&strings(&["201", "400", "401", "403", "422"])), "{place}");
        let list = operation(&document, "/api/orders", "get");
        let parameters: BTreeSet<String> = list["parameters"]
            .as_array()
            .expect("list parameters")
            .iter()
            .map(|parameter| text(&parameter["name"]))
            .collect();
        assert_eq!(parameters, strings(&["status", "userId", "limit", "cursor"]));
        assert!(statuses(list).is_superset(&strings(&["200", "400", "401", "403"])), "{list}");
        let read = operation(&document, "/api/orders/{id}", "get");
        assert!(statuses(read).is_superset(&strings(&["200", "400", "401", "404"])), "{read}");
        let patch = operation(&document, "/api/orders/{id}", "patch");
        assert!(patch["requestBody"].is_object(), "PATCH takes a body");
        assert!(
            statuses(patch).is_superset(&strings(&["200", "401", "403", "404", "409", "422"])),
            "{patch}"
        );
        let delete = operation(&document, "/api/orders/{id}", "delete");
        assert!(statuses(delete).is_superset(&strings(&["200", "401", "404", "409"])), "{delete}");
        let create = operation(&document, "/api/create", "post");
        assert!(create["requestBody"].is_object(), "POST /api/create takes a body");
        assert!(statuses(create).contains("201"), "{create}");
        assert!(statuses(operation(&document, "/api/orders/cancel/{id}", "post")).contains("200"));
    }
}

mercato_testkit::backend_tests! {
    async fn aliases_document_the_same_answers_as_the_routes_they_behave_as(db) {
        let app = spawn_app(db).await;
        let document = document(&app).await;
        let patch = statuses(operation(&document, "/api/orders/{id}", "patch"));
        let put = operation(&document, "/api/orders/{id}", "put");
        assert_eq!(statuses(put), patch, "PUT behaves as PATCH: {put}");
        let delete = statuses(operation(&document, "/api/orders/{id}", "delete"));
        let cancel = operation(&document, "/api/orders/{id}/cancel", "post");
        assert_eq!(statuses(cancel), delete, "POST .../cancel behaves as DELETE: {cancel}");
    }
}
