//! Promise 7: a database that goes away gives `503 not_ready` (never a 500 or a half-written
//! state) and a red readiness, and the service recovers by itself when it is back.
//!
//! The shared PostgreSQL server must not be stopped, so the drill takes away only this test's
//! own database ([`PostgresOutage`]).

use std::time::Duration;

use mercato_testkit::{Backend, PostgresOutage, TestDatabase, wait_until};
use reqwest::StatusCode;
use serde_json::Value;

use crate::harness::spawn_app;

#[tokio::test]
async fn a_database_outage_answers_503_turns_readiness_red_and_recovers() {
    let Some(db) = TestDatabase::create(Backend::Postgres).await else { return };
    let app = spawn_app(db).await;
    assert_eq!(app.get("/health/ready", None).await.status(), StatusCode::OK);

    let outage = PostgresOutage::begin(&app.db).await;

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

    outage.end().await;
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
