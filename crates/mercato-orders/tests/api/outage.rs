//! Promise 7: a database that goes away gives `503 not_ready` (never a 500 or a half-written
//! order) and a red readiness, and the service recovers by itself when it is back. The shared
//! PostgreSQL server is not stopped: only this test's database is taken away
//! ([`PostgresOutage`]).

use std::time::Duration;

use mercato_contracts::OrderPlaced;
use mercato_testkit::{Backend, PostgresOutage, TestDatabase, wait_until};
use reqwest::StatusCode;
use serde_json::Value;
use uuid::Uuid;

use crate::harness::*;

#[tokio::test]
async fn a_database_outage_answers_503_places_nothing_and_recovers() {
    let Some(db) = TestDatabase::create(Backend::Postgres).await else { return };
    let app = spawn_app(db).await;
    let product = Uuid::now_v7();
    app.place(&app.alice, &[(product, 1)]).await;

    let outage = PostgresOutage::begin(&app.db).await;
    let body = order_body(&[(product, 2)]);
    let refused = wait_until("placement answers 503", Duration::from_secs(30), || async {
        let response = app.post_json("/api/orders", &body, Some(&app.alice.token)).await;
        (response.status() == StatusCode::SERVICE_UNAVAILABLE).then_some(response)
    })
    .await;
    let problem: Value = refused.json().await.expect("a problem body");
    assert_eq!(problem["code"], "not_ready", "{problem}");
    let ready = app.get("/health/ready", None).await;
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let ready: Value = ready.json().await.expect("a problem body");
    assert!(ready["checks"]["orders.database"].as_str().is_some_and(|d| d.starts_with("failing")));
    let listed = app.get("/api/orders", Some(&app.alice.token)).await;
    assert_eq!(listed.status(), StatusCode::SERVICE_UNAVAILABLE, "reads too, never a 500");

    outage.end().await;
    wait_until("placement works again", Duration::from_secs(30), || async {
        let response = app.post_json("/api/orders", &body, Some(&app.alice.token)).await;
        (response.status() == StatusCode::CREATED).then_some(())
    })
    .await;
    assert_eq!(app.get("/health/ready", None).await.status(), StatusCode::OK);
    // The refused placements left nothing behind: exactly two orders, two order.placed.
    assert_eq!(app.order_count().await, 2);
    assert_eq!(app.outbox_events::<OrderPlaced>().await.len(), 2);
}
