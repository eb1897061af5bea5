//! The original Node services' routes: `POST /api/register`, `POST /api/login`, `GET /api/get/:id`.

use mercato_testkit::backend_tests;
use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::harness::*;

backend_tests! {
    async fn the_old_register_route_creates_a_user_like_post_api_users(db) {
        let app = spawn_app(db).await;
        let response = app
            .post_json(
                "/api/register",
                &json!({"name": " Ada ", "email": "Ada@Example.com", "password": PASSWORD}),
                None,
            )
            .await;
        let location = response
            .headers()
            .get("location")
            .map(|value| value.to_str().expect("readable").to_owned());
        let user = json_body(response, StatusCode::CREATED).await;
        assert_user_shape(&user);
        assert_eq!(user["name"], "Ada");
        assert_eq!(user["email"], "Ada@Example.com");
        assert_eq!(user["role"], "customer");
        assert_eq!(location, Some(format!("/api/users/{}", text(&user["id"]))));

        // Same rules as the route it stands for.
        problem(
            app.post_json(
                "/api/register",
                &json!({"name": "Ada", "email": "ada@example.com", "password": PASSWORD}),
                None,
            )
            .await,
            StatusCode::CONFLICT,
            "email_taken",
        )
        .await;
        problem(
            app.register("Ada", "ADA@example.com", PASSWORD).await,
            StatusCode::CONFLICT,
            "email_taken",
        )
        .await;
        let mut fields = invalid_fields(
            app.post_json(
                "/api/register",
                &json!({"name": "", "email": "nope", "password": "short"}),
                None,
            )
            .await,
        )
        .await;
        fields.sort_unstable();
        assert_eq!(fields, ["email", "name", "password"]);
    }

    async fn the_old_login_route_answers_like_post_api_auth_login(db) {
        let app = spawn_app(db).await;
        let user = app.create_user("Ada", "ada@example.com", PASSWORD).await;
        let auth = json_body(
            app.post_json(
                "/api/login",
                &json!({"email": "ADA@example.com", "password": PASSWORD}),
                None,
            )
            .await,
            StatusCode::OK,
        )
        .await;
        let mut members: Vec<&str> =
            auth.as_object().expect("an object").keys().map(String::as_str).collect();
        members.sort_unstable();
        assert_eq!(members, ["expiresIn", "refreshToken", "token", "tokenType", "user"], "{auth}");
        assert_eq!(auth["tokenType"], "Bearer");
        assert_eq!(auth["expiresIn"], 900);
        assert_eq!(auth["user"], user);
        let me =
            json_body(app.get("/api/users/me", Some(&text(&auth["token"]))).await, StatusCode::OK)
                .await;
        assert_eq!(me, user);
        json_body(app.refresh(&text(&auth["refreshToken"])).await, StatusCode::OK).await;

        let wrong = app
            .post_json(
                "/api/login",
                &json!({"email": "ada@example.com", "password": "wrong password"}),
                None,
            )
            .await;
        let (_, _, wrong) = parts(wrong).await;
        let unknown = app.login("nobody@example.com", "wrong password").await;
        let unknown = problem(unknown, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
        let wrong: serde_json::Value = serde_json::from_str(&wrong).expect("JSON");
        assert_eq!(wrong, unknown, "the same refusal as the new route");
    }

    async fn the_old_get_route_keeps_the_same_auth_rules(db) {
        let app = spawn_app(db).await;
        let ada = app.token_for("Ada", "ada@example.com").await;
        let grace = app.token_for("Grace", "grace@example.com").await;
        let admin = app.admin().await;
        let path = format!("/api/get/{}", ada.id);

        let own = json_body(app.get(&path, Some(&ada.token)).await, StatusCode::OK).await;
        let canonical = json_body(
            app.get(&format!("/api/users/{}", ada.id), Some(&ada.token)).await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(own, canonical);
        problem(app.get(&path, Some(&grace.token)).await, StatusCode::FORBIDDEN, "forbidden").await;
        problem(app.get(&path, None).await, StatusCode::UNAUTHORIZED, "unauthenticated").await;
        problem(
            app.get_with_authorization(&path, "Basic x").await,
            StatusCode::UNAUTHORIZED,
            "invalid_token",
        )
        .await;
        assert_eq!(json_body(app.get(&path, Some(&admin.token)).await, StatusCode::OK).await, own);
        problem(
            app.get(&format!("/api/get/{}", Uuid::now_v7()), Some(&admin.token)).await,
            StatusCode::NOT_FOUND,
            "not_found",
        )
        .await;
        problem(
            app.get("/api/get/not-a-uuid", Some(&admin.token)).await,
            StatusCode::BAD_REQUEST,
            "bad_request",
        )
        .await;
    }
}
