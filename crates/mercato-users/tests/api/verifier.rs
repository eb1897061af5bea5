//! The token verifier other services run under `mercato serve`: keys fetched from this service's
//! JWKS over HTTP, refetched for an unknown key, and `503` (not `401`) when no key can be fetched.

use mercato_platform::ApiError;
use mercato_platform::auth::{Claims, Role, TokenVerifier};
use mercato_testkit::{Backend, TestDatabase};
use mercato_users::SigningKeys;
use uuid::Uuid;

use crate::harness::{now, spawn_app};

async fn app() -> crate::harness::TestApp {
    let db = TestDatabase::create(Backend::Sqlite).await.expect("SQLite is always available");
    spawn_app(db).await
}

#[tokio::test]
async fn a_remote_verifier_accepts_this_services_tokens_via_its_jwks() {
    let app = app().await;
    let session = app.token_for("Remote", "remote@example.com").await;
    let verifier = TokenVerifier::from_jwks_url(
        "mercato",
        app.url("/.well-known/jwks.json"),
        reqwest::Client::new(),
    );
    let caller = verifier.verify(&session.token).await.expect("the token verifies");
    assert_eq!(caller.user_id.to_string(), session.id);
    assert_eq!(caller.role, Role::Customer);
}

#[tokio::test]
async fn a_remote_verifier_refuses_a_key_the_jwks_does_not_list() {
    let app = app().await;
    let verifier = TokenVerifier::from_jwks_url(
        "mercato",
        app.url("/.well-known/jwks.json"),
        reqwest::Client::new(),
    );
    let stranger = SigningKeys::generate();
    let token = stranger
        .sign(&Claims {
            sub: Uuid::now_v7().to_string(),
            role: Role::Admin,
            iat: now(),
            exp: now() + 600,
            iss: "mercato".into(),
            jti: Uuid::now_v7().to_string(),
        })
        .expect("signing");
    match verifier.verify(&token).await {
        Err(ApiError::Unauthorized { code, .. }) => assert_eq!(code, "invalid_token"),
        other => panic!("expected 401 invalid_token, got {other:?}"),
    }
}

#[tokio::test]
async fn a_remote_verifier_without_reachable_keys_answers_unavailable_not_unauthorized() {
    let app = app().await;
    let session = app.token_for("Offline", "offline@example.com").await;
    // A port that was free a moment ago: nothing answers there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let address = closed.local_addr().expect("its address");
    drop(closed);
    let verifier = TokenVerifier::from_jwks_url(
        "mercato",
        format!("http://{address}/.well-known/jwks.json"),
        reqwest::Client::new(),
    );
    match verifier.verify(&session.token).await {
        Err(error @ ApiError::Unavailable(_)) => assert_eq!(error.code(), "not_ready"),
        other => panic!("expected 503 not_ready, got {other:?}"),
    }
}
