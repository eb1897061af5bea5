//! `POST /api/auth/login`: the auth payload, credentials and rate limits.

use mercato_testkit::backend_tests;
use reqwest::{Response, StatusCode};
use serde_json::json;

use crate::harness::*;

/// Asserts a `429 rate_limited` with an integer `Retry-After` in `1..=max_seconds`.
async fn assert_rate_limited(response: Response, max_seconds: u64) {
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|value| value.to_str().expect("a readable Retry-After").to_owned());
    problem(response, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    let retry_after = retry_after.expect("a 429 carries Retry-After");
    let seconds: u64 = retry_after
        .parse()
        .unwrap_or_else(|_| panic!("Retry-After is a whole number of seconds: {retry_after:?}"));
    assert!((1..=max_seconds).contains(&seconds), "Retry-After {seconds} within the window");
}

backend_tests! {
    async fn logging_in_returns_a_bearer_token_a_refresh_token_and_the_user(db) {
        let app = spawn_app(db).await;
        let user = app.create_user("Ada", "ada@example.com", PASSWORD).await;
        let before = now();
        let auth = json_body(app.login("ada@example.com", PASSWORD).await, StatusCode::OK).await;

        let mut members: Vec<&str> =
            auth.as_object().expect("an object").keys().map(String::as_str).collect();
        members.sort_unstable();
        assert_eq!(members, ["expiresIn", "refreshToken", "token", "tokenType", "user"], "{auth}");
        assert_eq!(auth["tokenType"], "Bearer");
        assert_eq!(auth["expiresIn"], 900);
        assert_eq!(auth["user"], user);
        let refresh_token = text(&auth["refreshToken"]);
        assert!(refresh_token.len() >= 16, "a refresh token is hard to guess: {refresh_token}");

        let token = text(&auth["token"]);
        let (header, claims) = jwt_parts(&token);
        assert_eq!(header["alg"], "EdDSA");
        assert_eq!(header["kid"], app.keys.kid());
        assert_eq!(claims["sub"], user["id"]);
        assert_eq!(claims["role"], "customer");
        assert_eq!(claims["iss"], "mercato");
        assert!(claims["jti"].as_str().is_some_and(|jti| !jti.is_empty()), "{claims}");
        let iat = claims["iat"].as_i64().expect("iat");
        let exp = claims["exp"].as_i64().expect("exp");
        assert_eq!(exp - iat, 900, "access tokens live 15 minutes");
        assert!((before - 5..=now() + 5).contains(&iat), "iat is now: {iat}");

        let me = json_body(app.get("/api/users/me", Some(&token)).await, StatusCode::OK).await;
        assert_eq!(me, user);
    }

    async fn the_access_token_lifetime_follows_the_configuration(db) {
        let app = spawn_app_with(db, |config| {
            config.access_token_ttl = std::time::Duration::from_secs(120);
        })
        .await;
        app.create_user("Ada", "ada@example.com", PASSWORD).await;
        let auth = json_body(app.login("ada@example.com", PASSWORD).await, StatusCode::OK).await;
        assert_eq!(auth["expiresIn"], 120);
        let (_, claims) = jwt_parts(&text(&auth["token"]));
        assert_eq!(
            claims["exp"].as_i64().expect("exp") - claims["iat"].as_i64().expect("iat"),
            120
        );
    }

    async fn login_matches_the_email_in_any_case(db) {
        let app = spawn_app(db).await;
        app.create_user("Grace", "Grace.Hopper@Example.com", PASSWORD).await;
        for email in
            ["grace.hopper@example.com", "GRACE.HOPPER@EXAMPLE.COM", "Grace.Hopper@Example.com"]
        {
            let auth = json_body(app.login(email, PASSWORD).await, StatusCode::OK).await;
            assert_eq!(auth["user"]["email"], "Grace.Hopper@Example.com", "stored as given");
        }
    }

    async fn the_bootstrap_admin_logs_in_as_an_admin(db) {
        let app = spawn_app(db).await;
        let auth =
            json_body(app.login(&app.admin_email, &app.admin_password).await, StatusCode::OK).await;
        assert_eq!(auth["user"]["role"], "admin");
        assert_eq!(auth["user"]["email"], ADMIN_EMAIL);
        let (_, claims) = jwt_parts(&text(&auth["token"]));
        assert_eq!(claims["role"], "admin");
    }

    async fn a_wrong_password_and_an_unknown_email_get_the_same_answer(db) {
        let app = spawn_app(db).await;
        app.create_user("Ada", "ada@example.com", PASSWORD).await;

        let wrong_password = app.login("ada@example.com", "not the password").await;
        let (status, headers, wrong_password) = parts(wrong_password).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{wrong_password}");
        assert_eq!(headers["content-type"], PROBLEM_JSON);
        let unknown_email = app.login("nobody@example.com", "not the password").await;
        let (status, headers, unknown_email) = parts(unknown_email).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{unknown_email}");
        assert_eq!(headers["content-type"], PROBLEM_JSON);

        assert_eq!(wrong_password, unknown_email, "nothing tells which accounts exist");
        let body: serde_json::Value = serde_json::from_str(&wrong_password).expect("JSON");
        assert_eq!(body["code"], "invalid_credentials");
        assert_eq!(body["type"], "/problems/invalid_credentials");
    }

    async fn a_login_with_missing_fields_is_invalid(db) {
        let app = spawn_app(db).await;
        let fields = invalid_fields(
            app.post_json("/api/auth/login", &json!({"email": "ada@example.com"}), None).await,
        )
        .await;
        assert!(fields.contains(&"password".to_owned()), "{fields:?}");
    }

    async fn after_three_failed_attempts_even_the_right_password_is_rate_limited(db) {
        let app = spawn_app_with(db, |config| config.rate_limit.failed_per_email = 3).await;
        app.create_user("Ada", "ada@example.com", PASSWORD).await;
        app.create_user("Grace", "grace@example.com", PASSWORD).await;
        for _ in 0..3 {
            problem(
                app.login("ada@example.com", "wrong password").await,
                StatusCode::UNAUTHORIZED,
                "invalid_credentials",
            )
            .await;
        }
        assert_rate_limited(app.login("ada@example.com", PASSWORD).await, 15 * 60).await;
        assert_rate_limited(app.login("ada@example.com", "wrong password").await, 15 * 60).await;

        // The limit is per email: another account from the same address still signs in.
        json_body(app.login("grace@example.com", PASSWORD).await, StatusCode::OK).await;
    }

    async fn failed_attempts_count_against_an_email_whatever_its_case(db) {
        let app = spawn_app_with(db, |config| config.rate_limit.failed_per_email = 3).await;
        app.create_user("Ada", "ada@example.com", PASSWORD).await;
        for email in ["ADA@example.com", "ada@EXAMPLE.com", "Ada@Example.Com"] {
            problem(
                app.login(email, "wrong password").await,
                StatusCode::UNAUTHORIZED,
                "invalid_credentials",
            )
            .await;
        }
        assert_rate_limited(app.login("ada@example.com", PASSWORD).await, 15 * 60).await;
    }

    async fn failed_attempts_for_an_unknown_email_are_limited_too(db) {
        let app = spawn_app_with(db, |config| config.rate_limit.failed_per_email = 3).await;
        for _ in 0..3 {
            problem(
                app.login("ghost@example.com", "wrong password").await,
                StatusCode::UNAUTHORIZED,
                "invalid_credentials",
            )
            .await;
        }
        assert_rate_limited(app.login("ghost@example.com", "wrong password").await, 15 * 60).await;
    }

    async fn a_client_address_gets_five_attempts_a_minute_when_so_configured(db) {
        let app = spawn_app_with(db, |config| config.rate_limit.per_address_per_minute = 5).await;
        app.create_user("Ada", "ada@example.com", PASSWORD).await;
        app.create_user("Grace", "grace@example.com", PASSWORD).await;
        // Successful and failed attempts both count, whichever account they name.
        for (email, password, status) in [
            ("ada@example.com", PASSWORD, StatusCode::OK),
            ("grace@example.com", PASSWORD, StatusCode::OK),
            ("ada@example.com", "wrong password", StatusCode::UNAUTHORIZED),
            ("nobody@example.com", PASSWORD, StatusCode::UNAUTHORIZED),
            ("grace@example.com", PASSWORD, StatusCode::OK),
        ] {
            let (actual, _, body) = parts(app.login(email, password).await).await;
            assert_eq!(actual, status, "{email}: {body}");
        }
        assert_rate_limited(app.login("grace@example.com", PASSWORD).await, 60).await;
    }

    async fn the_bootstrap_admin_is_ensured_with_the_configured_password_on_every_start(db) {
        let app = spawn_app(db).await;
        let boss = app.create_user("Boss", "Boss@Example.com", PASSWORD).await;
        let new_password = "the configured admin password";

        // A restart that names an existing customer (in another case) as the admin.
        let restarted = app
            .another_instance(|config| {
                config.admin = Some(mercato_users::AdminCredentials {
                    email: "boss@example.com".to_owned(),
                    password: secrecy::SecretString::from(new_password),
                });
            })
            .await;
        let login = |email: &str, password: &str| {
            app.client
                .post(restarted.url("/api/auth/login"))
                .json(&json!({"email": email, "password": password}))
                .send()
        };
        let auth = json_body(
            login("boss@example.com", new_password).await.expect("an answer"),
            StatusCode::OK,
        )
        .await;
        assert_eq!(auth["user"]["id"], boss["id"], "the existing account, not a new one");
        assert_eq!(auth["user"]["role"], "admin");
        problem(
            login("boss@example.com", PASSWORD).await.expect("an answer"),
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
        )
        .await;

        // The first admin is still there, and tokens from either instance work on both.
        let first_admin = app.admin().await;
        let page = json_body(
            app.client
                .get(restarted.url("/api/users"))
                .bearer_auth(&first_admin.token)
                .send()
                .await
                .expect("an answer"),
            StatusCode::OK,
        )
        .await;
        assert_eq!(
            page["items"].as_array().expect("items").len(),
            2,
            "no duplicate account: {page}"
        );
    }

    async fn parallel_wrong_passwords_get_no_more_verdicts_than_the_limit(db) {
        let app = spawn_app_with(db, |config| config.rate_limit.failed_per_email = 3).await;
        app.create_user("Ada", "ada@example.com", PASSWORD).await;
        // An attacker sending guesses in parallel gets no more than three answered.
        let mut guesses = tokio::task::JoinSet::new();
        for n in 0..10 {
            let request = app.client.post(app.url("/api/auth/login")).json(
                &json!({"email": "ada@example.com", "password": format!("guess number {n}")}),
            );
            guesses.spawn(async move {
                let response = request.send().await.expect("an answer");
                let status = response.status();
                (status, response.text().await.expect("a body"))
            });
        }
        let (mut refused, mut limited) = (0, 0);
        while let Some(outcome) = guesses.join_next().await {
            let (status, body) = outcome.expect("a guess finishes");
            match status {
                StatusCode::UNAUTHORIZED => refused += 1,
                StatusCode::TOO_MANY_REQUESTS => limited += 1,
                other => panic!("a guess is refused or rate limited, got {other}: {body}"),
            }
        }
        assert!(
            refused <= 3,
            "{refused} of 10 parallel guesses had their password checked (limit 3), {limited} were limited"
        );
        assert_rate_limited(app.login("ada@example.com", PASSWORD).await, 15 * 60).await;
    }
}
