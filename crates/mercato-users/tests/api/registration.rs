//! `POST /api/users`: registration, its validation and its conflicts.

use mercato_testkit::backend_tests;
use reqwest::StatusCode;
use serde_json::json;

use crate::harness::*;

/// A valid address of exactly `length` characters (local part 64, labels at most 63).
pub fn email_of_length(length: usize) -> String {
    let local = "a".repeat(64);
    let fixed = local.len() + "@".len() + 63 + 1 + 63 + 1 + ".com".len();
    let last_label = length.checked_sub(fixed).expect("long enough for the fixed parts");
    assert!((1..=63).contains(&last_label), "the last label stays a valid label");
    let email =
        format!("{local}@{}.{}.{}.com", "b".repeat(63), "c".repeat(63), "d".repeat(last_label));
    assert_eq!(email.chars().count(), length);
    email
}

backend_tests! {
    async fn registering_returns_the_new_customer_with_a_location_and_no_password(db) {
        let app = spawn_app(db).await;
        let response = app.register("Ada Lovelace", "ada@example.com", PASSWORD).await;
        let location = response
            .headers()
            .get("location")
            .map(|value| value.to_str().expect("a readable Location").to_owned());
        let content_type = response.headers().get("content-type").cloned();
        let (status, _, body) = parts(response).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert!(
            content_type.is_some_and(|value| value
                .to_str()
                .is_ok_and(|v| v.starts_with("application/json"))),
            "a user is JSON"
        );
        assert!(!body.contains(PASSWORD), "the password never comes back: {body}");
        assert!(!body.contains("$argon2"), "the hash never comes back: {body}");
        let user: serde_json::Value = serde_json::from_str(&body).expect("a JSON user");
        assert_user_shape(&user);
        assert_eq!(user["name"], "Ada Lovelace");
        assert_eq!(user["email"], "ada@example.com");
        assert_eq!(user["role"], "customer");
        assert_eq!(user["createdAt"], user["updatedAt"], "a new user has not been updated yet");
        let id = text(&user["id"]);
        assert_eq!(location.as_deref(), Some(format!("/api/users/{id}").as_str()));

        let admin = app.admin().await;
        let stored = json_body(
            app.get(&format!("/api/users/{id}"), Some(&admin.token)).await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(stored, user, "what registration answered is what is stored");
    }

    async fn names_are_trimmed_and_must_have_1_to_100_characters_after_trimming(db) {
        let app = spawn_app(db).await;
        let user = app.create_user("  Grace Hopper \t", "grace@example.com", PASSWORD).await;
        assert_eq!(user["name"], "Grace Hopper");

        // 100 characters of four bytes each: the limit counts characters, not bytes.
        let emoji = "😀".repeat(100);
        let user = app.create_user(&emoji, "emoji@example.com", PASSWORD).await;
        assert_eq!(user["name"], emoji.as_str());

        let padded = format!("  {}  ", "n".repeat(100));
        let user = app.create_user(&padded, "padded@example.com", PASSWORD).await;
        assert_eq!(user["name"], "n".repeat(100));

        for name in ["n".repeat(101), "😀".repeat(101), String::new(), "   ".to_owned()] {
            let fields =
                invalid_fields(app.register(&name, "refused@example.com", PASSWORD).await).await;
            assert_eq!(fields, ["name"], "name {name:?}");
        }
    }

    async fn emails_must_be_valid_addresses_of_at_most_254_characters(db) {
        let app = spawn_app(db).await;
        let longest = email_of_length(254);
        let user = app.create_user("Longest", &longest, PASSWORD).await;
        assert_eq!(user["email"], longest.as_str());

        let too_long = email_of_length(255);
        for email in [
            too_long.as_str(),
            "not-an-email",
            "ada@",
            "@example.com",
            "ada lovelace@example.com",
            "",
        ] {
            let fields = invalid_fields(app.register("Ada", email, PASSWORD).await).await;
            assert_eq!(fields, ["email"], "email {email:?}");
        }
    }

    async fn passwords_must_have_8_to_128_characters(db) {
        let app = spawn_app(db).await;
        app.create_user("Eight", "eight@example.com", &"p".repeat(8)).await;
        app.create_user("Max", "max@example.com", &"p".repeat(128)).await;
        // Characters, not bytes: 8 two-byte characters are enough, 7 are not.
        app.create_user("Accents", "accents@example.com", &"é".repeat(8)).await;

        for password in ["p".repeat(7), "p".repeat(129), "é".repeat(7), String::new()] {
            let fields =
                invalid_fields(app.register("Ada", "ada@example.com", &password).await).await;
            assert_eq!(
                fields,
                ["password"],
                "a password of {} characters",
                password.chars().count()
            );
        }
        let auth =
            json_body(app.login("max@example.com", &"p".repeat(128)).await, StatusCode::OK).await;
        assert_eq!(auth["user"]["email"], "max@example.com");
    }

    async fn every_invalid_field_is_listed_at_once(db) {
        let app = spawn_app(db).await;
        let mut fields = invalid_fields(app.register(" ", "nope", "short").await).await;
        fields.sort_unstable();
        assert_eq!(fields, ["email", "name", "password"]);
    }

    async fn missing_fields_are_invalid_and_named(db) {
        let app = spawn_app(db).await;
        invalid_fields(app.post_json("/api/users", &json!({}), None).await).await;

        let fields = invalid_fields(
            app.post_json("/api/users", &json!({"name": "Ada", "email": "ada@example.com"}), None)
                .await,
        )
        .await;
        assert!(fields.contains(&"password".to_owned()), "the missing field is named: {fields:?}");
        let fields = invalid_fields(
            app.post_json("/api/users", &json!({"name": "Ada", "password": PASSWORD}), None).await,
        )
        .await;
        assert!(fields.contains(&"email".to_owned()), "the missing field is named: {fields:?}");
    }

    async fn registering_with_a_taken_email_in_other_case_is_a_conflict(db) {
        let app = spawn_app(db).await;
        let first = app.create_user("Ada", "Ada.Lovelace@Example.com", PASSWORD).await;
        assert_eq!(first["email"], "Ada.Lovelace@Example.com", "emails are stored as given");

        for email in
            ["ada.lovelace@example.com", "ADA.LOVELACE@EXAMPLE.COM", "Ada.Lovelace@Example.com"]
        {
            problem(
                app.register("Another Ada", email, PASSWORD).await,
                StatusCode::CONFLICT,
                "email_taken",
            )
            .await;
        }
        // The admin's address is taken too, in any case.
        problem(
            app.register("Impostor", &ADMIN_EMAIL.to_uppercase(), PASSWORD).await,
            StatusCode::CONFLICT,
            "email_taken",
        )
        .await;

        let admin = app.admin().await;
        let page = json_body(
            app.get_query("/api/users", &[("q", "lovelace")], Some(&admin.token)).await,
            StatusCode::OK,
        )
        .await;
        let items = page["items"].as_array().expect("items");
        assert_eq!(items.len(), 1, "the conflicts created nobody: {page}");
        assert_eq!(items[0]["name"], "Ada");
    }

    async fn a_refused_registration_creates_nothing(db) {
        let app = spawn_app(db).await;
        let fields = invalid_fields(app.register("Ada", "fresh@example.com", "short").await).await;
        assert_eq!(fields, ["password"]);
        let fields = invalid_fields(app.register("", "fresh@example.com", PASSWORD).await).await;
        assert_eq!(fields, ["name"]);
        problem(
            app.login("fresh@example.com", PASSWORD).await,
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
        )
        .await;

        let user = app.create_user("Ada", "fresh@example.com", PASSWORD).await;
        assert_eq!(user["email"], "fresh@example.com");
    }

    async fn concurrent_registrations_of_one_email_in_different_cases_create_one_account(db) {
        let app = spawn_app(db).await;
        let (a, b, c, d) = tokio::join!(
            app.register("One", "race@example.com", PASSWORD),
            app.register("Two", "RACE@example.com", PASSWORD),
            app.register("Three", "Race@Example.com", PASSWORD),
            app.register("Four", "race@EXAMPLE.COM", PASSWORD),
        );
        let mut created = 0;
        for response in [a, b, c, d] {
            let (status, _, body) = parts(response).await;
            match status {
                StatusCode::CREATED => created += 1,
                StatusCode::CONFLICT => {
                    let body: serde_json::Value = serde_json::from_str(&body).expect("JSON");
                    assert_eq!(body["code"], "email_taken", "{body}");
                }
                other => {
                    panic!("a racing registration is created or a conflict, got {other}: {body}")
                }
            }
        }
        assert_eq!(created, 1, "exactly one of the racing registrations wins");
        let admin = app.admin().await;
        let page = json_body(
            app.get_query("/api/users", &[("q", "race@")], Some(&admin.token)).await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(page["items"].as_array().expect("items").len(), 1, "{page}");
    }
}
