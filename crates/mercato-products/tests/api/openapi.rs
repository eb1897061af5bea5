//! The service's OpenAPI document (`GET /api/openapi.json`) describes every route of the
//! contract with its methods, parameters and answers.

use std::collections::{BTreeMap, BTreeSet};

use mercato_testkit::backend_tests;
use reqwest::StatusCode;
use serde_json::Value;

use crate::harness::*;

const METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

async fn document(app: &TestApp) -> Value {
    let response = app.get("/api/openapi.json", None).await;
    let content_type =
        response.headers().get("content-type").map(|v| v.to_str().expect("ascii").to_owned());
    assert_eq!(content_type.as_deref(), Some("application/json"));
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

backend_tests! {
    async fn the_document_lists_every_route_with_its_methods(db) {
        let app = spawn_app(db).await;
        let document = document(&app).await;
        assert!(text(&document["openapi"]).starts_with("3.1"), "OpenAPI 3.1: {}", document["openapi"]);

        let paths: BTreeMap<String, BTreeSet<String>> = document["paths"]
            .as_object()
            .expect("paths")
            .iter()
            .map(|(path, item)| {
                let methods = item
                    .as_object()
                    .expect("a path item")
                    .keys()
                    .filter(|key| METHODS.contains(&key.as_str()))
                    .cloned()
                    .collect();
                (path.clone(), methods)
            })
            .collect();
        let expected = BTreeMap::from([
            ("/api/products".to_owned(), strings(&["get", "post"])),
            ("/api/products/{id}".to_owned(), strings(&["delete", "get", "patch", "put"])),
            ("/api/products/{id}/inventory".to_owned(), strings(&["post"])),
        ]);
        assert_eq!(paths, expected);
    }

    async fn each_operation_documents_its_answers_and_parameters(db) {
        let app = spawn_app(db).await;
        let document = document(&app).await;

        let create = operation(&document, "/api/products", "post");
        assert!(create["requestBody"].is_object(), "POST /api/products takes a body");
        assert!(statuses(create).is_superset(&strings(&["201", "401", "403", "409", "422"])), "{create}");

        let list = operation(&document, "/api/products", "get");
        let parameters: BTreeSet<String> = list["parameters"]
            .as_array()
            .expect("list parameters")
            .iter()
            .map(|parameter| text(&parameter["name"]))
            .collect();
        assert_eq!(
            parameters,
            strings(&["q", "category", "minPrice", "maxPrice", "inStock", "ids", "limit", "cursor"])
        );
        assert!(statuses(list).is_superset(&strings(&["200", "400"])), "{list}");

        let read = operation(&document, "/api/products/{id}", "get");
        assert!(statuses(read).is_superset(&strings(&["200", "400", "404"])), "{read}");
        for method in ["put", "patch"] {
            let update = operation(&document, "/api/products/{id}", method);
            assert!(update["requestBody"].is_object(), "{method} takes a body");
            assert!(
                statuses(update).is_superset(&strings(&["200", "403", "404", "409", "412", "422"])),
                "{method}: {update}"
            );
        }
        let delete = operation(&document, "/api/products/{id}", "delete");
        assert!(statuses(delete).is_superset(&strings(&["204", "403", "404"])), "{delete}");

        let inventory = operation(&document, "/api/products/{id}/inventory", "post");
        assert!(inventory["requestBody"].is_object(), "the inventory route takes a body");
        assert!(
            statuses(inventory).is_superset(&strings(&["200", "403", "404", "409", "412", "422"])),
            "{inventory}"
        );
    }
}
