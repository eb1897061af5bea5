//! The users service's events: written to its outbox in the same transaction as each change,
//! never for a refused request, never carrying a password.

use mercato_store::sqlx;
use mercato_store::{Database, PoolSettings};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{ADMIN_EMAIL, json_body, spawn_app, text};

/// The outbox's events after the bootstrap admin's, in order: (type, data).
async fn outbox_events(url: &str) -> Vec<(String, Value)> {
    let db = Database::connect(url, &PoolSettings::default()).expect("connecting");
    let rows: Vec<(String,)> =
        sqlx::query_as(db.sql("SELECT payload FROM outbox ORDER BY sequence"))
            .fetch_all(db.pool())
            .await
            .expect("reading the outbox");
    db.close().await;
    rows.into_iter()
        .map(|(payload,)| {
            let envelope: Value = serde_json::from_str(&payload).expect("an envelope");
            (envelope["type"].as_str().unwrap_or_default().to_owned(), envelope["data"].clone())
        })
        .filter(|(_, data)| data["email"] != ADMIN_EMAIL)
        .collect()
}

mercato_testkit::backend_tests! {
    async fn each_change_writes_its_event_and_refusals_write_none(db) {
        let app = spawn_app(db).await;
        let url = app.db.url.clone();
        let session = app.token_for_with("Eve", "eve@example.com", "original password").await;
        assert_eq!(app.register("Eve Again", "EVE@example.com", "another password").await.status(), StatusCode::CONFLICT);
        assert_eq!(app.register("", "nobody@example.com", "short").await.status(), StatusCode::UNPROCESSABLE_ENTITY);

        let path = format!("/api/users/{}", session.id);
        let renamed = app.patch_json(&path, &json!({"name": "Eve Renamed"}), Some(&session.token)).await;
        assert_eq!(renamed.status(), StatusCode::OK);
        // A password change alone changes nothing other services know about: no event.
        let password = app
            .patch_json(&path, &json!({"password": "a new password", "currentPassword": "original password"}), Some(&session.token))
            .await;
        assert_eq!(password.status(), StatusCode::OK);
        let relogin = json_body(app.login("eve@example.com", "a new password").await, StatusCode::OK).await;
        assert_eq!(app.delete(&path, Some(&text(&relogin["token"]))).await.status(), StatusCode::NO_CONTENT);

        let events = outbox_events(&url).await;
        let types: Vec<&str> = events.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(types, ["mercato.user.created.v1", "mercato.user.updated.v1", "mercato.user.deleted.v1"]);
        assert_eq!(events[0].1, json!({"userId": session.id, "name": "Eve", "email": "eve@example.com", "role": "customer"}));
        assert_eq!(events[1].1["name"], "Eve Renamed");
        assert_eq!(events[2].1, json!({"userId": session.id}));
        for (_, data) in &events {
            assert!(!data.to_string().to_lowercase().contains("password"), "{data}");
        }
    }
}

mercato_testkit::backend_tests! {
    async fn the_callers_trace_continues_into_the_event(db) {
        let app = spawn_app(db).await;
        let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let response = app
            .client
            .post(app.url("/api/users"))
            .header("traceparent", parent)
            .json(&json!({"name": "Tracy", "email": "tracy@example.com", "password": "followed!"}))
            .send()
            .await
            .expect("register answers");
        assert_eq!(response.status(), StatusCode::CREATED);

        let db = Database::connect(&app.db.url, &PoolSettings::default()).expect("connecting");
        let (payload,): (String,) = sqlx::query_as(db.sql(
            "SELECT payload FROM outbox WHERE payload LIKE '%tracy@example.com%'",
        ))
        .fetch_one(db.pool())
        .await
        .expect("the event is in the outbox");
        db.close().await;
        let envelope: Value = serde_json::from_str(&payload).expect("an envelope");
        let traceparent = envelope["traceparent"].as_str().expect("a traceparent");
        let parts: Vec<&str> = traceparent.split('-').collect();
        assert_eq!(parts.len(), 4, "{traceparent}");
        assert_eq!(parts[1], "4bf92f3577b34da6a3ce929d0e0e4736", "same trace as the request");
        assert_ne!(parts[2], "00f067aa0ba902b7", "a span of its own");
    }
}
