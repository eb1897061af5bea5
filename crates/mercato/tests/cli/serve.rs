//! `mercato serve users` as its own process on a real database server.

use mercato_testkit::{Backend, TestDatabase};
use reqwest::StatusCode;
use serde_json::json;

use crate::process::{Mercato, command, post_json};

async fn serve_users_registers_and_logs_in(backend: Backend) {
    let Some(db) = TestDatabase::create(backend).await else { return };
    let dir = tempfile::tempdir().expect("a temp dir");
    let key = dir.path().join("jwt.pem");
    let key_arg = key.display().to_string();
    let mut serve = command(&[
        "serve",
        "users",
        "--listen",
        "127.0.0.1:0",
        "--database-url",
        &db.url,
        "--jwt-key-file",
        &key_arg,
    ]);
    serve
        .env("MERCATO_ADMIN_EMAIL", "ops@example.com")
        .env("MERCATO_ADMIN_PASSWORD", "ops password");
    let users = Mercato::start(serve).await;
    assert!(key.exists(), "the signing key is generated where --jwt-key-file points");

    let registered = post_json(
        &users.url("/api/users"),
        json!({"name": "Ada", "email": "ada@example.com", "password": "analytical"}),
    )
    .await;
    assert_eq!(registered.status(), StatusCode::CREATED);
    let login = post_json(
        &users.url("/api/auth/login"),
        json!({"email": "ops@example.com", "password": "ops password"}),
    )
    .await;
    assert_eq!(login.status(), StatusCode::OK);
    let ready = reqwest::get(users.url("/health/ready")).await.expect("ready answers");
    assert_eq!(ready.status(), StatusCode::OK);
    assert!(users.terminate().await.success());
}

#[tokio::test]
async fn serve_users_runs_on_postgres() {
    serve_users_registers_and_logs_in(Backend::Postgres).await;
}

#[tokio::test]
async fn serve_users_runs_on_mariadb() {
    serve_users_registers_and_logs_in(Backend::MySql).await;
}

#[tokio::test]
async fn serve_users_without_a_database_url_says_so() {
    let (ok, _, stderr) = crate::process::run(command(&["serve", "users"])).await;
    assert!(!ok);
    assert!(stderr.contains("database_url"), "{stderr}");
}

#[tokio::test]
async fn serve_gateway_names_each_service_url_it_misses() {
    let (ok, _, stderr) = crate::process::run(command(&["serve", "gateway"])).await;
    assert!(!ok);
    assert!(stderr.contains("users_url"), "{stderr}");
    let users = ["serve", "gateway", "--users-url", "http://127.0.0.1:9"];
    let (ok, _, stderr) = crate::process::run(command(&users)).await;
    assert!(!ok);
    assert!(stderr.contains("products_url"), "{stderr}");
    let (ok, _, stderr) = crate::process::run(command(&[
        "serve",
        "gateway",
        "--users-url",
        "http://127.0.0.1:9",
        "--products-url",
        "http://127.0.0.1:9",
    ]))
    .await;
    assert!(!ok);
    assert!(stderr.contains("orders_url"), "{stderr}");
}

#[tokio::test]
async fn serve_orders_without_a_users_url_says_so() {
    let (ok, _, stderr) = crate::process::run(command(&["serve", "orders"])).await;
    assert!(!ok);
    assert!(stderr.contains("users_url"), "{stderr}");
}
