//! `GET`, `PUT`/`PATCH` and `DELETE /api/users/:id`: who may do what, and what changes.

use mercato_testkit::backend_tests;
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::harness::*;

async fn user_as_admin(app: &TestApp, id: &str) -> Value {
    let admin = app.admin().await;
    json_body(app.get(&format!("/api/users/{id}"), Some(&admin.token)).await, StatusCode::OK).await
}

backend_tests! {
    async fn a_user_reads_themselves_and_an_admin_reads_anyone(db) {
        let app = spawn_app(db).await;
        let ada = app.token_for("Ada", "ada@example.com").await;
        let grace = app.token_for("Grace", "grace@example.com").await;
        let admin = app.admin().await;
        let path = format!("/api/users/{}", ada.id);

        let own = json_body(app.get(&path, Some(&ada.token)).await, StatusCode::OK).await;
        assert_user_shape(&own);
        assert_eq!(own["id"], ada.id.as_str());
        assert_eq!(own["email"], "ada@example.com");

        problem(app.get(&path, Some(&grace.token)).await, StatusCode::FORBIDDEN, "forbidden").await;
        problem(app.get(&path, None).await, StatusCode::UNAUTHORIZED, "unauthenticated").await;

        let seen = json_body(app.get(&path, Some(&admin.token)).await, StatusCode::OK).await;
        assert_eq!(seen, own);
        let unknown = format!("/api/users/{}", Uuid::now_v7());
        problem(app.get(&unknown, Some(&admin.token)).await, StatusCode::NOT_FOUND, "not_found")
            .await;
    }

    async fn a_path_id_that_is_not_a_uuid_is_a_bad_request(db) {
        let app = spawn_app(db).await;
        let admin = app.admin().await;
        for path in ["/api/users/42", "/api/users/not-a-uuid", "/api/users/0193a0c4-7b5e-7cc2-9f3e"]
        {
            problem(
                app.get(path, Some(&admin.token)).await,
                StatusCode::BAD_REQUEST,
                "bad_request",
            )
            .await;
            problem(
                app.patch_json(path, &json!({"name": "X"}), Some(&admin.token)).await,
                StatusCode::BAD_REQUEST,
                "bad_request",
            )
            .await;
            problem(
                app.delete(path, Some(&admin.token)).await,
                StatusCode::BAD_REQUEST,
                "bad_request",
            )
            .await;
        }
    }

    async fn patch_and_put_change_only_the_fields_they_send(db) {
        let app = spawn_app(db).await;
        let ada = app.token_for("Ada", "ada@example.com").await;
        let path = format!("/api/users/{}", ada.id);
        let before = user_as_admin(&app, &ada.id).await;

        let renamed = json_body(
            app.patch_json(&path, &json!({"name": "  Ada King  "}), Some(&ada.token)).await,
            StatusCode::OK,
        )
        .await;
        assert_user_shape(&renamed);
        assert_eq!(renamed["name"], "Ada King");
        assert_eq!(renamed["email"], "ada@example.com");
        assert_eq!(renamed["role"], "customer");
        assert_eq!(renamed["createdAt"], before["createdAt"]);
        assert!(
            text(&renamed["updatedAt"]) >= text(&before["updatedAt"]),
            "updatedAt moves forward"
        );

        // PUT is a partial update too.
        let moved = json_body(
            app.put_json(&path, &json!({"email": "Ada.King@Example.com"}), Some(&ada.token)).await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(moved["name"], "Ada King", "PUT keeps the fields it does not send");
        assert_eq!(moved["email"], "Ada.King@Example.com");
        assert_eq!(user_as_admin(&app, &ada.id).await, moved);

        json_body(app.login("ada.king@example.com", PASSWORD).await, StatusCode::OK).await;
        problem(
            app.login("ada@example.com", PASSWORD).await,
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
        )
        .await;

        let same =
            json_body(app.patch_json(&path, &json!({}), Some(&ada.token)).await, StatusCode::OK)
                .await;
        assert_eq!(same["name"], "Ada King");
        assert_eq!(same["email"], "Ada.King@Example.com");
    }

    async fn an_update_with_invalid_fields_is_refused_and_changes_nothing(db) {
        let app = spawn_app(db).await;
        let ada = app.token_for("Ada", "ada@example.com").await;
        let path = format!("/api/users/{}", ada.id);
        let before = user_as_admin(&app, &ada.id).await;

        let fields =
            invalid_fields(app.patch_json(&path, &json!({"name": "   "}), Some(&ada.token)).await)
                .await;
        assert_eq!(fields, ["name"]);
        let fields = invalid_fields(
            app.patch_json(&path, &json!({"name": "n".repeat(101)}), Some(&ada.token)).await,
        )
        .await;
        assert_eq!(fields, ["name"]);
        let fields = invalid_fields(
            app.patch_json(&path, &json!({"name": "Valid", "email": "nope"}), Some(&ada.token))
                .await,
        )
        .await;
        assert_eq!(fields, ["email"]);
        let fields = invalid_fields(
            app.patch_json(
                &path,
                &json!({"password": "short", "currentPassword": PASSWORD}),
                Some(&ada.token),
            )
            .await,
        )
        .await;
        assert_eq!(fields, ["password"]);
        let fields =
            invalid_fields(app.patch_json(&path, &json!({"name": 5}), Some(&ada.token)).await)
                .await;
        assert_eq!(fields, ["name"]);

        assert_eq!(user_as_admin(&app, &ada.id).await, before, "refused updates change nothing");
        json_body(app.login("ada@example.com", PASSWORD).await, StatusCode::OK).await;
    }

    async fn changing_to_a_taken_email_in_any_case_is_a_conflict_and_changes_nothing(db) {
        let app = spawn_app(db).await;
        let ada = app.token_for("Ada", "ada@example.com").await;
        app.create_user("Grace", "Grace@Example.com", PASSWORD).await;
        let path = format!("/api/users/{}", ada.id);
        let before = user_as_admin(&app, &ada.id).await;

        for email in ["grace@example.com", "GRACE@EXAMPLE.COM"] {
            problem(
                app.patch_json(
                    &path,
                    &json!({"name": "Renamed", "email": email}),
                    Some(&ada.token),
                )
                .await,
                StatusCode::CONFLICT,
                "email_taken",
            )
            .await;
        }
        assert_eq!(user_as_admin(&app, &ada.id).await, before, "not even the name changed");

        // One's own address in another case is not a conflict.
        let recased = json_body(
            app.patch_json(&path, &json!({"email": "ADA@example.com"}), Some(&ada.token)).await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(recased["email"], "ADA@example.com");
    }

    async fn changing_ones_own_password_needs_the_current_one(db) {
        let app = spawn_app(db).await;
        let ada = app.token_for("Ada", "ada@example.com").await;
        let path = format!("/api/users/{}", ada.id);
        let new_password = "a brand new passphrase";

        let fields = invalid_fields(
            app.patch_json(&path, &json!({"password": new_password}), Some(&ada.token)).await,
        )
        .await;
        assert_eq!(fields, ["currentPassword"]);
        problem(
            app.patch_json(
                &path,
                &json!({"password": new_password, "currentPassword": "not the password"}),
                Some(&ada.token),
            )
            .await,
            StatusCode::FORBIDDEN,
            "forbidden",
        )
        .await;
        json_body(app.login("ada@example.com", PASSWORD).await, StatusCode::OK).await;
        problem(
            app.login("ada@example.com", new_password).await,
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
        )
        .await;

        let user = json_body(
            app.put_json(
                &path,
                &json!({"password": new_password, "currentPassword": PASSWORD}),
                Some(&ada.token),
            )
            .await,
            StatusCode::OK,
        )
        .await;
        assert_user_shape(&user);
        json_body(app.login("ada@example.com", new_password).await, StatusCode::OK).await;
        problem(
            app.login("ada@example.com", PASSWORD).await,
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
        )
        .await;
    }

    async fn a_customer_sending_role_is_forbidden_and_nothing_changes(db) {
        let app = spawn_app(db).await;
        let ada = app.token_for("Ada", "ada@example.com").await;
        let path = format!("/api/users/{}", ada.id);
        let before = user_as_admin(&app, &ada.id).await;

        for role in ["admin", "customer"] {
            problem(
                app.patch_json(&path, &json!({"name": "Sneaky", "role": role}), Some(&ada.token))
                    .await,
                StatusCode::FORBIDDEN,
                "forbidden",
            )
            .await;
        }
        assert_eq!(user_as_admin(&app, &ada.id).await, before, "not even the name changed");
        problem(app.get("/api/users", Some(&ada.token)).await, StatusCode::FORBIDDEN, "forbidden")
            .await;
    }

    async fn an_admin_sets_another_users_role_and_password(db) {
        let app = spawn_app(db).await;
        let ada = app.token_for("Ada", "ada@example.com").await;
        let admin = app.admin().await;
        let path = format!("/api/users/{}", ada.id);

        let promoted = json_body(
            app.patch_json(&path, &json!({"role": "admin"}), Some(&admin.token)).await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(promoted["role"], "admin");
        assert_eq!(promoted["name"], "Ada");

        let new_password = "chosen by the admin";
        json_body(
            app.patch_json(&path, &json!({"password": new_password}), Some(&admin.token)).await,
            StatusCode::OK,
        )
        .await;
        problem(
            app.login("ada@example.com", PASSWORD).await,
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
        )
        .await;
        let auth =
            json_body(app.login("ada@example.com", new_password).await, StatusCode::OK).await;
        assert_eq!(auth["user"]["role"], "admin");
        let token = text(&auth["token"]);
        assert_eq!(jwt_parts(&token).1["role"], "admin");
        json_body(app.get("/api/users", Some(&token)).await, StatusCode::OK).await;

        let demoted = json_body(
            app.put_json(&path, &json!({"role": "customer", "name": "Ada K"}), Some(&admin.token))
                .await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(demoted["role"], "customer");
        assert_eq!(demoted["name"], "Ada K");

        let fields = invalid_fields(
            app.patch_json(&path, &json!({"role": "superuser"}), Some(&admin.token)).await,
        )
        .await;
        assert_eq!(fields, ["role"]);
        let unknown = format!("/api/users/{}", Uuid::now_v7());
        problem(
            app.patch_json(&unknown, &json!({"name": "Nobody"}), Some(&admin.token)).await,
            StatusCode::NOT_FOUND,
            "not_found",
        )
        .await;
    }

    async fn a_customer_cannot_update_another_user(db) {
        let app = spawn_app(db).await;
        let ada = app.token_for("Ada", "ada@example.com").await;
        let grace = app.token_for("Grace", "grace@example.com").await;
        let path = format!("/api/users/{}", grace.id);
        let before = user_as_admin(&app, &grace.id).await;

        problem(
            app.patch_json(&path, &json!({"name": "Hijacked"}), Some(&ada.token)).await,
            StatusCode::FORBIDDEN,
            "forbidden",
        )
        .await;
        problem(
            app.put_json(&path, &json!({"email": "mine@example.com"}), Some(&ada.token)).await,
            StatusCode::FORBIDDEN,
            "forbidden",
        )
        .await;
        problem(
            app.patch_json(
                &path,
                &json!({"password": "hijacked password", "currentPassword": PASSWORD}),
                Some(&ada.token),
            )
            .await,
            StatusCode::FORBIDDEN,
            "forbidden",
        )
        .await;
        problem(
            app.patch_json(&path, &json!({"name": "Hijacked"}), None).await,
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
        )
        .await;
        assert_eq!(user_as_admin(&app, &grace.id).await, before);
        json_body(app.login("grace@example.com", PASSWORD).await, StatusCode::OK).await;
    }

    async fn deleting_oneself_removes_the_account_and_frees_the_email(db) {
        let app = spawn_app(db).await;
        let ada = app.token_for("Ada", "ada@example.com").await;
        let path = format!("/api/users/{}", ada.id);

        let (status, _, body) = parts(app.delete(&path, Some(&ada.token)).await).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
        assert!(body.is_empty(), "a 204 has no body: {body}");

        let admin = app.admin().await;
        problem(app.get(&path, Some(&admin.token)).await, StatusCode::NOT_FOUND, "not_found").await;
        problem(
            app.login("ada@example.com", PASSWORD).await,
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
        )
        .await;
        problem(app.refresh(&ada.refresh_token).await, StatusCode::UNAUTHORIZED, "invalid_token")
            .await;
        // The access token is still unexpired and correctly signed, but its user is gone.
        problem(
            app.get("/api/users/me", Some(&ada.token)).await,
            StatusCode::UNAUTHORIZED,
            "invalid_token",
        )
        .await;
        let page = json_body(
            app.get_query("/api/users", &[("q", "ada@example.com")], Some(&admin.token)).await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(page["items"], json!([]), "a deleted user is not listed");

        let again = app.create_user("Ada Again", "ADA@example.com", PASSWORD).await;
        assert_ne!(again["id"], ada.id.as_str(), "a new account");
        json_body(app.login("ada@example.com", PASSWORD).await, StatusCode::OK).await;
    }

    async fn a_customer_cannot_delete_another_user(db) {
        let app = spawn_app(db).await;
        let ada = app.token_for("Ada", "ada@example.com").await;
        let grace = app.token_for("Grace", "grace@example.com").await;
        let path = format!("/api/users/{}", grace.id);
        problem(app.delete(&path, Some(&ada.token)).await, StatusCode::FORBIDDEN, "forbidden")
            .await;
        problem(app.delete(&path, None).await, StatusCode::UNAUTHORIZED, "unauthenticated").await;
        user_as_admin(&app, &grace.id).await;
        json_body(app.get("/api/users/me", Some(&grace.token)).await, StatusCode::OK).await;
    }

    async fn an_admin_deletes_anyone(db) {
        let app = spawn_app(db).await;
        let grace = app.token_for("Grace", "grace@example.com").await;
        let admin = app.admin().await;
        let path = format!("/api/users/{}", grace.id);
        let (status, _, body) = parts(app.delete(&path, Some(&admin.token)).await).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
        problem(app.get(&path, Some(&admin.token)).await, StatusCode::NOT_FOUND, "not_found").await;
        problem(app.delete(&path, Some(&admin.token)).await, StatusCode::NOT_FOUND, "not_found")
            .await;
        problem(
            app.get("/api/users/me", Some(&grace.token)).await,
            StatusCode::UNAUTHORIZED,
            "invalid_token",
        )
        .await;
        problem(app.refresh(&grace.refresh_token).await, StatusCode::UNAUTHORIZED, "invalid_token")
            .await;
    }

    async fn two_users_racing_for_one_email_get_one_success_and_one_conflict(db) {
        let app = spawn_app(db).await;
        let ada = app.token_for("Ada", "ada@example.com").await;
        let grace = app.token_for("Grace", "grace@example.com").await;
        for round in 0..3 {
            let email = format!("wanted{round}@example.com");
            let (ada_path, grace_path) =
                (format!("/api/users/{}", ada.id), format!("/api/users/{}", grace.id));
            let (ada_body, grace_body) =
                (json!({"email": email}), json!({"email": email.to_uppercase()}));
            let (first, second) = tokio::join!(
                app.patch_json(&ada_path, &ada_body, Some(&ada.token)),
                app.patch_json(&grace_path, &grace_body, Some(&grace.token)),
            );
            let mut statuses = Vec::new();
            for response in [first, second] {
                let (status, _, body) = parts(response).await;
                if status == StatusCode::CONFLICT {
                    let body: Value = serde_json::from_str(&body).expect("JSON");
                    assert_eq!(body["code"], "email_taken", "{body}");
                }
                statuses.push(status);
            }
            statuses.sort_unstable();
            assert_eq!(statuses, [StatusCode::OK, StatusCode::CONFLICT], "round {round}");
        }
    }
}

backend_tests! {
    async fn concurrent_updates_of_different_fields_all_survive(db) {
        let app = spawn_app(db).await;
        let ada = app.token_for("Ada", "ada@example.com").await;
        let admin = app.admin().await;
        let path = format!("/api/users/{}", ada.id);
        for round in 0..10 {
            let name = format!("Ada {round}");
            let email = format!("ada{round}@example.com");
            let (new_name, new_email) = (json!({"name": name}), json!({"email": email}));
            let (by_owner, by_admin) = tokio::join!(
                app.patch_json(&path, &new_name, Some(&ada.token)),
                app.patch_json(&path, &new_email, Some(&admin.token)),
            );
            json_body(by_owner, StatusCode::OK).await;
            json_body(by_admin, StatusCode::OK).await;
            let now = user_as_admin(&app, &ada.id).await;
            assert_eq!(now["name"], name.as_str(), "round {round}: the name change was lost");
            assert_eq!(now["email"], email.as_str(), "round {round}: the email change was lost");
        }
    }
}
