//! Access tokens (`/api/users/me`, forged and stale tokens), the JWKS, refresh and logout.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};
use mercato_platform::auth::Role;
use mercato_testkit::backend_tests;
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::harness::*;

/// Claims that would be valid for `sub` if the token were signed by the service.
fn claims_for(sub: &str) -> Value {
    let now = now();
    json!({
        "sub": sub, "role": "customer", "iat": now, "exp": now + 600,
        "iss": "mercato", "jti": Uuid::now_v7().to_string(),
    })
}

/// `header.payload.signature`, signed by `key` (EdDSA).
fn sign_with(key: &SigningKey, header: &Value, claims: &Value) -> String {
    let signing_input = format!("{}.{}", b64_json(header), b64_json(claims));
    let signature = key.sign(signing_input.as_bytes());
    format!("{signing_input}.{}", b64(&signature.to_bytes()))
}

/// The service's public key, as the JWKS publishes it.
async fn published_key(app: &TestApp) -> Value {
    let jwks = json_body(app.get("/.well-known/jwks.json", None).await, StatusCode::OK).await;
    let keys = jwks["keys"].as_array().unwrap_or_else(|| panic!("a JWKS has keys: {jwks}"));
    keys.iter()
        .find(|key| key["kid"] == app.keys.kid())
        .unwrap_or_else(|| panic!("the JWKS lists the signing key {}: {jwks}", app.keys.kid()))
        .clone()
}

/// Asserts that `token` is a well-formed JWT that `key` verifies: a forgery is refused for its
/// key, not for a mistake in how the test built it.
fn assert_well_formed(
    token: &str,
    key: &jsonwebtoken::DecodingKey,
    algorithm: jsonwebtoken::Algorithm,
) {
    let mut validation = jsonwebtoken::Validation::new(algorithm);
    validation.set_issuer(&["mercato"]);
    jsonwebtoken::decode::<Value>(token, key, &validation)
        .unwrap_or_else(|error| panic!("the forged token is well-formed ({error}): {token}"));
}

async fn assert_refused(app: &TestApp, token: &str, what: &str) {
    let response = app.get("/api/users/me", Some(token)).await;
    let (status, headers, body) = parts(response).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{what} must be refused: {body}");
    assert_eq!(headers["content-type"], PROBLEM_JSON, "{what}");
    let body: Value = serde_json::from_str(&body).expect("a JSON problem");
    assert_eq!(body["code"], "invalid_token", "{what}: {body}");
}

backend_tests! {
    async fn the_access_token_opens_users_me(db) {
        let app = spawn_app(db).await;
        let ada = app.token_for("Ada", "ada@example.com").await;
        let me = json_body(app.get("/api/users/me", Some(&ada.token)).await, StatusCode::OK).await;
        assert_user_shape(&me);
        assert_eq!(me["id"], ada.id.as_str());
        assert_eq!(me["email"], "ada@example.com");

        let admin = app.admin().await;
        let me =
            json_body(app.get("/api/users/me", Some(&admin.token)).await, StatusCode::OK).await;
        assert_eq!(me["role"], "admin");
        assert_eq!(me["email"], ADMIN_EMAIL);
    }

    async fn users_me_without_a_token_is_unauthenticated(db) {
        let app = spawn_app(db).await;
        problem(app.get("/api/users/me", None).await, StatusCode::UNAUTHORIZED, "unauthenticated")
            .await;
    }

    async fn users_me_with_a_header_that_is_not_a_bearer_token_is_an_invalid_token(db) {
        let app = spawn_app(db).await;
        let ada = app.token_for("Ada", "ada@example.com").await;
        for authorization in [
            "Basic x".to_owned(),
            "Basic YWRhQGV4YW1wbGUuY29tOmNvcnJlY3QgaG9yc2U=".to_owned(),
            "garbage".to_owned(),
            "Bearer garbage".to_owned(),
            "Bearer a.b.c".to_owned(),
            "Bearer ".to_owned(),
            ada.token.clone(),
            format!("Token {}", ada.token),
        ] {
            let response = app.get_with_authorization("/api/users/me", &authorization).await;
            problem(response, StatusCode::UNAUTHORIZED, "invalid_token").await;
        }
        // The control: the same token, properly presented.
        json_body(
            app.get_with_authorization("/api/users/me", &format!("Bearer {}", ada.token)).await,
            StatusCode::OK,
        )
        .await;
    }

    async fn tokens_minted_with_the_real_key_are_accepted_and_stale_or_foreign_ones_refused(db) {
        let app = spawn_app(db).await;
        let ada = app.token_for("Ada", "ada@example.com").await;
        let now = now();

        let good = app.mint(&ada.id, Role::Customer, now, now + 600, "mercato");
        json_body(app.get("/api/users/me", Some(&good)).await, StatusCode::OK).await;

        let expired = app.mint(&ada.id, Role::Customer, now - 1200, now - 300, "mercato");
        assert_refused(&app, &expired, "a token that expired five minutes ago").await;
        let foreign = app.mint(&ada.id, Role::Customer, now, now + 600, "someone-else");
        assert_refused(&app, &foreign, "a token from another issuer").await;
        let not_a_user = app.mint("not-a-uuid", Role::Customer, now, now + 600, "mercato");
        assert_refused(&app, &not_a_user, "a token whose subject is not a user id").await;
    }

    async fn a_token_with_a_tampered_signature_or_payload_is_refused(db) {
        let app = spawn_app(db).await;
        let ada = app.token_for("Ada", "ada@example.com").await;
        let (header, payload, signature) = {
            let segments: Vec<&str> = ada.token.split('.').collect();
            (segments[0].to_owned(), segments[1].to_owned(), segments[2].to_owned())
        };

        let mut flipped: Vec<char> = signature.chars().collect();
        flipped[10] = if flipped[10] == 'A' { 'B' } else { 'A' };
        let flipped: String = flipped.into_iter().collect();
        assert_refused(&app, &format!("{header}.{payload}.{flipped}"), "a flipped signature").await;
        assert_refused(&app, &format!("{header}.{payload}."), "a missing signature").await;

        // Promoting oneself to admin by editing the payload.
        let mut claims = jwt_parts(&ada.token).1;
        claims["role"] = json!("admin");
        let promoted = format!("{header}.{}.{signature}", b64_json(&claims));
        assert_refused(&app, &promoted, "an edited payload").await;
        problem(
            app.get("/api/users", Some(&promoted)).await,
            StatusCode::UNAUTHORIZED,
            "invalid_token",
        )
        .await;
    }

    async fn an_unsigned_alg_none_token_is_refused(db) {
        let app = spawn_app(db).await;
        let ada = app.token_for("Ada", "ada@example.com").await;
        let claims = claims_for(&ada.id);
        for header in [
            json!({"alg": "none", "typ": "JWT"}),
            json!({"alg": "none", "typ": "JWT", "kid": app.keys.kid()}),
            json!({"alg": "None", "typ": "JWT", "kid": app.keys.kid()}),
        ] {
            let token = format!("{}.{}.", b64_json(&header), b64_json(&claims));
            assert_refused(&app, &token, &format!("an unsigned token with header {header}")).await;
        }
    }

    async fn an_hs256_token_keyed_with_the_public_key_is_refused(db) {
        let app = spawn_app(db).await;
        let ada = app.token_for("Ada", "ada@example.com").await;
        let jwk = published_key(&app).await;
        let x = text(&jwk["x"]);
        let public = URL_SAFE_NO_PAD.decode(&x).expect("x is base64url");
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        header.kid = Some(app.keys.kid());
        for secret in [public.as_slice(), x.as_bytes()] {
            let token = jsonwebtoken::encode(
                &header,
                &claims_for(&ada.id),
                &jsonwebtoken::EncodingKey::from_secret(secret),
            )
            .expect("an HS256 token");
            let key = jsonwebtoken::DecodingKey::from_secret(secret);
            assert_well_formed(&token, &key, jsonwebtoken::Algorithm::HS256);
            assert_refused(&app, &token, "an HS256 token keyed with the public key").await;
        }
    }

    async fn a_token_signed_by_another_key_under_the_same_kid_is_refused(db) {
        let app = spawn_app(db).await;
        let ada = app.token_for("Ada", "ada@example.com").await;
        let stranger = SigningKey::from_bytes(&[7; 32]);
        let header = json!({"alg": "EdDSA", "typ": "JWT", "kid": app.keys.kid()});
        let token = sign_with(&stranger, &header, &claims_for(&ada.id));
        let stranger_public = b64(stranger.verifying_key().as_bytes());
        let key =
            jsonwebtoken::DecodingKey::from_ed_components(&stranger_public).expect("a public key");
        assert_well_formed(&token, &key, jsonwebtoken::Algorithm::EdDSA);
        assert_refused(&app, &token, "a token signed by another key").await;

        let unknown_kid = json!({"alg": "EdDSA", "typ": "JWT", "kid": "someone-elses-key"});
        let token = sign_with(&stranger, &unknown_kid, &claims_for(&ada.id));
        assert_refused(&app, &token, "a token naming an unknown key").await;
    }

    async fn the_jwks_publishes_the_ed25519_key_that_signs_the_tokens(db) {
        let app = spawn_app(db).await;
        let response = app.get("/.well-known/jwks.json", None).await;
        let jwks = json_body(response, StatusCode::OK).await;
        for key in jwks["keys"].as_array().expect("keys") {
            assert!(key.get("d").is_none(), "a JWKS never carries a private key: {key}");
        }
        let jwk = published_key(&app).await;
        assert_eq!(jwk["kty"], "OKP");
        assert_eq!(jwk["crv"], "Ed25519");
        let x = URL_SAFE_NO_PAD.decode(text(&jwk["x"])).expect("x is base64url");
        let x: [u8; 32] = x.try_into().expect("an Ed25519 public key has 32 bytes");
        let public = VerifyingKey::from_bytes(&x).expect("a valid Ed25519 point");

        let ada = app.token_for("Ada", "ada@example.com").await;
        let (signing_input, signature) = ada.token.rsplit_once('.').expect("a JWT");
        let signature = URL_SAFE_NO_PAD.decode(signature).expect("a base64url signature");
        let signature =
            ed25519_dalek::Signature::from_slice(&signature).expect("a 64-byte signature");
        public
            .verify(signing_input.as_bytes(), &signature)
            .expect("the published key verifies the tokens the service issues");
    }

    async fn refreshing_gives_a_new_pair_and_spends_the_old_refresh_token(db) {
        let app = spawn_app(db).await;
        let ada = app.token_for("Ada", "ada@example.com").await;
        let auth = json_body(app.refresh(&ada.refresh_token).await, StatusCode::OK).await;
        assert_eq!(auth["tokenType"], "Bearer");
        assert_eq!(auth["expiresIn"], 900);
        assert_eq!(auth["user"]["id"], ada.id.as_str());
        let token = text(&auth["token"]);
        let refresh_token = text(&auth["refreshToken"]);
        assert_ne!(refresh_token, ada.refresh_token, "refresh tokens rotate");
        assert_ne!(token, ada.token, "a new access token");
        assert_ne!(jwt_parts(&token).1["jti"], jwt_parts(&ada.token).1["jti"]);
        let me = json_body(app.get("/api/users/me", Some(&token)).await, StatusCode::OK).await;
        assert_eq!(me["id"], ada.id.as_str());

        let next = json_body(app.refresh(&refresh_token).await, StatusCode::OK).await;
        assert_ne!(text(&next["refreshToken"]), refresh_token);
    }

    async fn a_spent_refresh_token_presented_again_revokes_its_whole_family(db) {
        let app = spawn_app(db).await;
        let ada = app.token_for("Ada", "ada@example.com").await;
        let second = text(
            &json_body(app.refresh(&ada.refresh_token).await, StatusCode::OK).await["refreshToken"],
        );
        let third =
            text(&json_body(app.refresh(&second).await, StatusCode::OK).await["refreshToken"]);

        problem(app.refresh(&ada.refresh_token).await, StatusCode::UNAUTHORIZED, "invalid_token")
            .await;
        // The replay may be a thief's: the newest token of that family dies too.
        problem(app.refresh(&third).await, StatusCode::UNAUTHORIZED, "invalid_token").await;
        problem(app.refresh(&second).await, StatusCode::UNAUTHORIZED, "invalid_token").await;
    }

    async fn an_unknown_refresh_token_is_refused(db) {
        let app = spawn_app(db).await;
        app.token_for("Ada", "ada@example.com").await;
        for token in ["not-a-refresh-token", "", "0193a0c4-7b5e-7cc2-9f3e-2f1d7f0c9a11"] {
            let (status, _, body) = parts(app.refresh(token).await).await;
            // An empty token may be refused as invalid input instead.
            if token.is_empty() && status == StatusCode::UNPROCESSABLE_ENTITY {
                continue;
            }
            assert_eq!(status, StatusCode::UNAUTHORIZED, "refresh token {token:?}: {body}");
            let body: Value = serde_json::from_str(&body).expect("JSON");
            assert_eq!(body["code"], "invalid_token", "{body}");
        }
        invalid_fields(app.post_json("/api/auth/refresh", &json!({}), None).await).await;
    }

    async fn logging_out_spends_the_refresh_token(db) {
        let app = spawn_app(db).await;
        let ada = app.token_for("Ada", "ada@example.com").await;
        let other_session =
            json_body(app.login("ada@example.com", PASSWORD).await, StatusCode::OK).await;

        let response = app
            .post_json("/api/auth/logout", &json!({"refreshToken": ada.refresh_token}), None)
            .await;
        let (status, _, body) = parts(response).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
        assert!(body.is_empty(), "a 204 has no body: {body}");
        problem(app.refresh(&ada.refresh_token).await, StatusCode::UNAUTHORIZED, "invalid_token")
            .await;

        // Logging out one session leaves the others signed in.
        json_body(app.refresh(&text(&other_session["refreshToken"])).await, StatusCode::OK).await;
    }

    async fn concurrent_refreshes_of_one_token_succeed_at_most_once(db) {
        let app = spawn_app(db).await;
        app.create_user("Ada", "ada@example.com", PASSWORD).await;
        // Several rounds, eight racers each: a lost race must be a 401, never a 500.
        for round in 0..5 {
            let auth =
                json_body(app.login("ada@example.com", PASSWORD).await, StatusCode::OK).await;
            let refresh_token = text(&auth["refreshToken"]);
            let mut racers = tokio::task::JoinSet::new();
            for _ in 0..8 {
                let request = app
                    .client
                    .post(app.url("/api/auth/refresh"))
                    .json(&json!({"refreshToken": refresh_token}));
                racers.spawn(async move {
                    let response = request.send().await.expect("an answer");
                    let status = response.status();
                    (status, response.text().await.expect("a body"))
                });
            }
            let mut refreshed = 0;
            while let Some(outcome) = racers.join_next().await {
                let (status, body) = outcome.expect("a racer finishes");
                match status {
                    StatusCode::OK => refreshed += 1,
                    StatusCode::UNAUTHORIZED => {
                        let body: Value = serde_json::from_str(&body).expect("JSON");
                        assert_eq!(body["code"], "invalid_token", "{body}");
                    }
                    other => panic!(
                        "round {round}: a racing refresh succeeds or is refused, got {other}: {body}"
                    ),
                }
            }
            assert!(refreshed <= 1, "round {round}: one refresh token was spent {refreshed} times");
            problem(app.refresh(&refresh_token).await, StatusCode::UNAUTHORIZED, "invalid_token")
                .await;
        }
    }

    async fn a_refresh_issues_tokens_with_the_users_current_role(db) {
        let app = spawn_app(db).await;
        let ada = app.token_for("Ada", "ada@example.com").await;
        let admin = app.admin().await;
        json_body(
            app.patch_json(
                &format!("/api/users/{}", ada.id),
                &json!({"role": "admin", "name": "Ada Admin"}),
                Some(&admin.token),
            )
            .await,
            StatusCode::OK,
        )
        .await;
        let auth = json_body(app.refresh(&ada.refresh_token).await, StatusCode::OK).await;
        assert_eq!(auth["user"]["role"], "admin");
        assert_eq!(auth["user"]["name"], "Ada Admin");
        let token = text(&auth["token"]);
        assert_eq!(
            jwt_parts(&token).1["role"],
            "admin",
            "the new access token carries the new role"
        );
        json_body(app.get("/api/users", Some(&token)).await, StatusCode::OK).await;

        json_body(
            app.patch_json(
                &format!("/api/users/{}", ada.id),
                &json!({"role": "customer"}),
                Some(&admin.token),
            )
            .await,
            StatusCode::OK,
        )
        .await;
        let auth = json_body(app.refresh(&text(&auth["refreshToken"])).await, StatusCode::OK).await;
        assert_eq!(
            jwt_parts(&text(&auth["token"])).1["role"],
            "customer",
            "a demotion holds at the next refresh"
        );
    }
}
