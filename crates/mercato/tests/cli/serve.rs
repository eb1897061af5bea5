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

/// `mercato serve <args> --check-config` with only `env` (and none of the test's own variables).
fn check_config(args: &[&str], env: &[(&str, &str)]) -> tokio::process::Command {
    let mut command = command(args);
    command.arg("--check-config").env_clear().envs(env.iter().copied()).env("RUST_LOG", "warn");
    command
}

#[tokio::test]
async fn check_config_prints_the_settings_with_secrets_redacted_and_connects_nowhere() {
    // Addresses from TEST-NET-3: nothing answers there, so connecting would hang, not succeed.
    let env = [
        ("MERCATO_LISTEN", "0.0.0.0:8081"),
        ("MERCATO_DATABASE_URL", "postgres://mercato:db-s3cret@203.0.113.7:5432/mercato_users"),
        ("MERCATO_NATS_URL", "nats://bus:nats-s3cret@203.0.113.8:4222"),
        ("MERCATO_ADMIN_EMAIL", "ops@example.com"),
        ("MERCATO_ADMIN_PASSWORD", "admin-s3cret"),
        ("MERCATO_USERS__RATE_LIMIT__FAILED_PER_EMAIL", "4"),
    ];
    let started = std::time::Instant::now();
    let (ok, stdout, stderr) = crate::process::run(check_config(&["serve", "users"], &env)).await;
    assert!(ok, "{stderr}");
    assert!(started.elapsed() < std::time::Duration::from_secs(20), "it should not connect");
    for secret in ["db-s3cret", "nats-s3cret", "admin-s3cret"] {
        assert!(!stdout.contains(secret), "{secret} printed:\n{stdout}");
    }
    assert!(
        stdout.contains("postgres://mercato:[REDACTED]@203.0.113.7:5432/mercato_users"),
        "{stdout}"
    );
    assert!(stdout.contains("nats://bus:[REDACTED]@203.0.113.8:4222"), "{stdout}");
    assert!(stdout.contains("listen: 0.0.0.0:8081,"), "{stdout}");
    assert!(stdout.contains("ops@example.com"), "{stdout}");
    assert!(stdout.contains("failed_per_email: 4,"), "the nested tables too:\n{stdout}");

    // RFC 8410's example key: public, for tests only.
    let key = "-----BEGIN PRIVATE KEY-----\n\
               MC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n\
               -----END PRIVATE KEY-----\n";
    let env = [("MERCATO_DATABASE_URL", "sqlite://x.db"), ("MERCATO_JWT_KEY", key)];
    let (ok, stdout, stderr) = crate::process::run(check_config(&["serve", "users"], &env)).await;
    assert!(ok, "{stderr}");
    assert!(!stdout.contains("MC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp"), "the key:\n{stdout}");
    assert!(stdout.contains("jwt_key: [REDACTED]"), "{stdout}");
}

#[tokio::test]
async fn check_config_refuses_what_serve_would_refuse() {
    let refused = [
        (vec!["serve", "users"], vec![], "database_url"),
        (vec!["serve", "products"], vec![("MERCATO_DATABASE_URL", "sqlite://x.db")], "users_url"),
        (vec!["serve", "orders"], vec![("MERCATO_USERS_URL", "http://users:8080")], "database_url"),
        (
            vec!["serve", "gateway", "--users-url", "http://users:8080"],
            vec![("MERCATO_PRODUCTS_URL", "http://products:8080")],
            "orders_url",
        ),
        (
            vec!["serve", "users"],
            vec![("MERCATO_DATABASE_URL", "sqlite://x.db"), ("MERCATO_ADMIN_EMAIL", "a@b.c")],
            "admin_password",
        ),
        (
            vec!["serve", "gateway"],
            vec![("MERCATO_LISEN", "0.0.0.0:8080"), ("MERCATO_USERS_URL", "http://u:1")],
            "lisen",
        ),
    ];
    let dir = tempfile::tempdir().expect("a temp dir");
    let users = [("MERCATO_DATABASE_URL", "sqlite://x.db"), ("MERCATO_JWT_KEY", "not a key")];
    let refused = refused.into_iter().chain([(vec!["serve", "users"], users.to_vec(), "jwt_key")]);
    for (args, env, named) in refused {
        let mut command = check_config(&args, &env);
        command.current_dir(dir.path());
        let (ok, stdout, stderr) = crate::process::run(command).await;
        assert!(!ok, "{args:?} {env:?} should be refused:\n{stdout}");
        assert!(stderr.contains(named), "{args:?} {env:?} should name {named}:\n{stderr}");
    }
    let mut gateway = check_config(
        &["serve", "gateway"],
        &[
            ("MERCATO_USERS_URL", "http://users:8080"),
            ("MERCATO_PRODUCTS_URL", "http://products:8080"),
            ("MERCATO_ORDERS_URL", "http://orders:8080"),
        ],
    );
    gateway.current_dir(dir.path());
    let (ok, stdout, stderr) = crate::process::run(gateway).await;
    assert!(ok, "{stderr}");
    assert!(stdout.contains("nats://127.0.0.1:4222"), "the default NATS URL:\n{stdout}");
    let written: Vec<_> = std::fs::read_dir(dir.path()).expect("the dir").collect();
    assert!(written.is_empty(), "--check-config writes nothing: {written:?}");
}
