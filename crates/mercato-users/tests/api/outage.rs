//! Promise 7: a database that goes away gives `503 not_ready` (never a 500 or a half-written
//! state) and a red readiness, and the service recovers by itself when it is back.
//!
//! The shared PostgreSQL server must not be stopped, so the drill closes only this test's own
//! database to connections (`ALLOW_CONNECTIONS false`, which binds superusers too) and ends its
//! sessions, then opens it again.

use std::time::Duration;

use mercato_store::sqlx::{self, Connection};
use mercato_testkit::{Backend, TestDatabase, wait_until};
use reqwest::StatusCode;
use serde_json::Value;

use crate::harness::spawn_app;

async fn admin(statement: String) {
    let url = std::env::var("MERCATO_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let mut connection = sqlx::PgConnection::connect(&url).await.expect("an admin connection");
    sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
        .execute(&mut connection)
        .await
        .expect("the admin statement runs");
    let _ = connection.close().await;
}

#[tokio::test]
async fn a_database_outage_answers_503_turns_readiness_red_and_recovers() {
    let Some(db) = TestDatabase::create(Backend::Postgres).await else { return };
    let name = db
        .url
        .rsplit('/')
        .next()
        .and_then(|tail| tail.split('?').next())
        .expect("the database name")
        .to_owned();
    let app = spawn_app(db).await;
    assert_eq!(app.get("/health/ready", None).await.status(), StatusCode::OK);

    admin(format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false")).await;
    admin(format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
    ))
    .await;

    let refused = wait_until("registration answers 503", Duration::from_secs(30), || async {
        let response = app.register("Down", "down@example.com", "unreachable").await;
        (response.status() == StatusCode::SERVICE_UNAVAILABLE).then_some(response)
    })
    .await;
    let body: Value = refused.json().await.expect("a problem body");
    assert_eq!(body["code"], "not_ready");
    assert!(!body.to_string().contains("55000"), "no internals in a 5xx body: {body}");
    let ready = app.get("/health/ready", None).await;
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let ready: Value = ready.json().await.expect("a problem body");
    assert_eq!(ready["code"], "not_ready");
    assert!(ready["checks"]["users.database"].as_str().is_some_and(|d| d.starts_with("failing")));
    assert_eq!(app.get("/health/live", None).await.status(), StatusCode::OK, "still alive");

    admin(format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true")).await;
    wait_until("registration works again", Duration::from_secs(30), || async {
        let response = app.register("Back", "back@example.com", "reachable again").await;
        (response.status() == StatusCode::CREATED).then_some(())
    })
    .await;
    assert_eq!(app.get("/health/ready", None).await.status(), StatusCode::OK);
    // The refused registration left nothing behind: its email is free.
    let retried = app.register("Down", "down@example.com", "unreachable").await;
    assert_eq!(retried.status(), StatusCode::CREATED);
}
