//! What every route shares: content types, body limits, problem fallbacks, request ids,
//! health and metrics.

use mercato_testkit::backend_tests;
use reqwest::{Method, StatusCode};
use serde_json::json;
use uuid::Uuid;

use crate::harness::*;

const MIB: usize = 1 << 20;

/// A registration body of exactly `size` bytes, padded in an extra `pad` member.
fn registration_of_size(email: &str, size: usize) -> String {
    let head = format!(r#"{{"name":"Padded","email":"{email}","password":"{PASSWORD}","pad":""#);
    let tail = r#""}"#;
    let pad = size - head.len() - tail.len();
    let body = format!("{head}{}{tail}", "x".repeat(pad));
    assert_eq!(body.len(), size);
    body
}

backend_tests! {
    async fn a_body_without_a_json_content_type_is_unsupported(db) {
        let app = spawn_app(db).await;
        let body =
            json!({"name": "Ada", "email": "ada@example.com", "password": PASSWORD}).to_string();
        let response = app
            .client
            .post(app.url("/api/users"))
            .body(body.clone())
            .send()
            .await
            .expect("an answer");
        problem(response, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type").await;
        let response = app
            .client
            .post(app.url("/api/users"))
            .header("content-type", "text/plain")
            .body(body.clone())
            .send()
            .await
            .expect("an answer");
        problem(response, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type").await;
        let login = json!({"email": "ada@example.com", "password": PASSWORD}).to_string();
        let response = app
            .client
            .post(app.url("/api/auth/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(login)
            .send()
            .await
            .expect("an answer");
        problem(response, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type").await;

        // Nothing was created: the same body, properly labelled, registers.
        let response = app
            .client
            .post(app.url("/api/users"))
            .header("content-type", "application/json; charset=utf-8")
            .body(body)
            .send()
            .await
            .expect("an answer");
        json_body(response, StatusCode::CREATED).await;
    }

    async fn a_body_that_is_not_json_is_malformed(db) {
        let app = spawn_app(db).await;
        for body in [r#"{"name": "Ada", "email": "#, "name=Ada", ""] {
            let response = app
                .client
                .post(app.url("/api/users"))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .expect("an answer");
            problem(response, StatusCode::BAD_REQUEST, "malformed_json").await;
        }
    }

    async fn a_field_of_the_wrong_type_is_invalid_and_named(db) {
        let app = spawn_app(db).await;
        let fields = invalid_fields(
            app.post_json(
                "/api/users",
                &json!({"name": 5, "email": "ada@example.com", "password": PASSWORD}),
                None,
            )
            .await,
        )
        .await;
        assert!(fields.contains(&"name".to_owned()), "{fields:?}");
        let fields = invalid_fields(
            app.post_json(
                "/api/auth/login",
                &json!({"email": ["ada@example.com"], "password": PASSWORD}),
                None,
            )
            .await,
        )
        .await;
        assert!(fields.contains(&"email".to_owned()), "{fields:?}");
    }

    async fn a_body_of_exactly_one_mebibyte_is_accepted_and_one_byte_more_is_too_large(db) {
        let app = spawn_app(db).await;
        let send = |body: String| {
            app.client
                .post(app.url("/api/users"))
                .header("content-type", "application/json")
                .body(body)
                .send()
        };
        let response = send(registration_of_size("big@example.com", MIB)).await.expect("an answer");
        let (status, _, body) = parts(response).await;
        assert_ne!(status, StatusCode::PAYLOAD_TOO_LARGE, "exactly 1 MiB is accepted: {body}");
        assert_eq!(
            status,
            StatusCode::CREATED,
            "a valid registration with an extra member: {body}"
        );

        let response =
            send(registration_of_size("bigger@example.com", MIB + 1)).await.expect("an answer");
        problem(response, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
        problem(
            app.login("bigger@example.com", PASSWORD).await,
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
        )
        .await;
    }

    async fn unknown_routes_and_wrong_methods_are_problems(db) {
        let app = spawn_app(db).await;
        problem(app.get("/api/nothing-here", None).await, StatusCode::NOT_FOUND, "not_found").await;
        problem(app.get("/api/users/me/extra", None).await, StatusCode::NOT_FOUND, "not_found")
            .await;
        for (method, path) in [
            (Method::DELETE, "/api/users"),
            (Method::GET, "/api/auth/login"),
            (Method::PUT, "/api/auth/refresh"),
            (Method::POST, "/api/users/me"),
            (Method::POST, "/.well-known/jwks.json"),
        ] {
            let response = app.send(method.clone(), path, None, None).await;
            let (status, headers, body) = parts(response).await;
            assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}: {body}");
            assert_eq!(headers["content-type"], PROBLEM_JSON, "{method} {path}");
            let body: serde_json::Value = serde_json::from_str(&body).expect("a JSON problem");
            assert_eq!(body["status"], 405);
        }
    }

    async fn every_response_carries_a_request_id_echoed_when_sent(db) {
        let app = spawn_app(db).await;
        let sent = "test-request-0001";
        for path in ["/api/users/me", "/api/nothing-here", "/health/live", "/.well-known/jwks.json"]
        {
            let response = app
                .client
                .get(app.url(path))
                .header("x-request-id", sent)
                .send()
                .await
                .expect("an answer");
            assert_eq!(response.headers()["x-request-id"], sent, "{path} echoes the request id");

            let response = app.get(path, None).await;
            let id = response
                .headers()
                .get("x-request-id")
                .unwrap_or_else(|| panic!("{path} answers with a request id"))
                .to_str()
                .expect("readable")
                .to_owned();
            let uuid = Uuid::parse_str(&id)
                .unwrap_or_else(|_| panic!("a fresh request id is a UUID: {id}"));
            assert_eq!(uuid.get_version_num(), 7, "a UUIDv7: {id}");
        }
        let response = app.register("Ada", "nope", PASSWORD).await;
        assert!(response.headers().contains_key("x-request-id"), "errors carry a request id too");
        let response = app.register("Ada", "ada@example.com", PASSWORD).await;
        assert!(response.headers().contains_key("x-request-id"), "a 201 carries a request id");
    }

    async fn health_endpoints_answer(db) {
        let app = spawn_app(db).await;
        let (status, _, body) = parts(app.get("/health/live", None).await).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (status, _, body) = parts(app.get("/health/ready", None).await).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    async fn metrics_count_requests_by_route_template(db) {
        let app = spawn_app(db).await;
        let ada = app.token_for("Ada", "ada@example.com").await;
        json_body(
            app.get(&format!("/api/users/{}", ada.id), Some(&ada.token)).await,
            StatusCode::OK,
        )
        .await;

        let response = app.get("/metrics", None).await;
        let (status, _, metrics) = parts(response).await;
        assert_eq!(status, StatusCode::OK);
        let counted = metrics.lines().any(|line| {
            line.starts_with("http_requests_total{")
                && line.contains(r#"route="/api/users/{"#)
                && line.contains(r#"method="GET""#)
                && line.contains(r#"status="200""#)
        });
        assert!(counted, "http_requests_total counts GET /api/users/{{id}}:\n{metrics}");
        assert!(
            metrics.lines().any(|line| line.starts_with("http_request_duration_seconds_bucket{")),
            "the latency histogram is exported:\n{metrics}"
        );
        assert!(
            !metrics.contains(&format!("route=\"/api/users/{}\"", ada.id)),
            "routes are labelled by template, not by id"
        );
    }
}
