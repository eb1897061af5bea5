//! Access tokens: their claims, and the verifier every service runs itself (promise 8).
//!
//! Access tokens are JWTs signed with EdDSA (Ed25519) by the users service. Verification accepts
//! only `EdDSA` (so `alg: none` and HMAC confusion are refused), needs a `kid` naming a known key,
//! checks the signature, `exp` (5 s of leeway for clock skew), `iss`, and that `sub` is a user id.
//!
//! Keys come from one of two places ([`TokenVerifier`]):
//! - handed in-process (`mercato up`: the users service's public keys, no HTTP);
//! - fetched from the users service's `/.well-known/jwks.json` (`mercato serve`), cached, and
//!   fetched again when a token names a key the cache does not know (key rotation) or the cache
//!   is old, at most once per [`REFETCH_AFTER`]. When no key can be fetched at all the request is
//!   `503` (the verifier cannot tell a good token from a bad one), never `401`.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::error::ApiError;

/// A caller's role, as carried in the `role` claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Customer,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Customer => "customer",
            Self::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "customer" => Some(Self::Customer),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }
}

/// The claims of a Mercato access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub role: Role,
    pub iat: i64,
    pub exp: i64,
    pub iss: String,
    pub jti: String,
}

/// Whoever sent a request with a valid access token.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user_id: Uuid,
    pub role: Role,
    pub token_id: String,
}

impl Caller {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// True when the caller may see or change what belongs to `user_id` (self or admin).
    pub fn may_act_for(&self, user_id: Uuid) -> bool {
        self.is_admin() || self.user_id == user_id
    }
}

/// How often the JWKS may be fetched again, at most.
pub const REFETCH_AFTER: Duration = Duration::from_secs(5);
/// How long fetched keys are trusted before they are fetched again on the next request.
const KEYS_TTL: Duration = Duration::from_secs(600);

enum KeySource {
    /// Keys handed in-process; nothing to fetch.
    Fixed,
    /// The users service's JWKS document.
    Jwks { url: String, client: reqwest::Client, fetch: tokio::sync::Mutex<Option<Instant>> },
}

struct Verifier {
    validation: Validation,
    keys: RwLock<HashMap<String, DecodingKey>>,
    source: KeySource,
}

/// Verifies access tokens. Cheap to clone; share one per process.
#[derive(Clone)]
pub struct TokenVerifier(Arc<Verifier>);

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let source = match &self.0.source {
            KeySource::Fixed => "fixed".to_owned(),
            KeySource::Jwks { url, .. } => url.clone(),
        };
        f.debug_struct("TokenVerifier").field("keys", &source).finish_non_exhaustive()
    }
}

fn validation(issuer: &str) -> Validation {
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_issuer(&[issuer]);
    validation.set_required_spec_claims(&["exp", "iat", "iss", "sub"]);
    validation.leeway = 5;
    validation
}

impl TokenVerifier {
    /// A verifier that trusts exactly the keys of `jwks` (in-process use).
    pub fn with_keys(issuer: &str, jwks: &JwkSet) -> anyhow::Result<Self> {
        let keys = decoding_keys(jwks)?;
        Ok(Self(Arc::new(Verifier {
            validation: validation(issuer),
            keys: RwLock::new(keys),
            source: KeySource::Fixed,
        })))
    }

    /// A verifier that fetches keys from `jwks_url` when it needs them.
    pub fn from_jwks_url(issuer: &str, jwks_url: String, client: reqwest::Client) -> Self {
        Self(Arc::new(Verifier {
            validation: validation(issuer),
            keys: RwLock::new(HashMap::new()),
            source: KeySource::Jwks { url: jwks_url, client, fetch: tokio::sync::Mutex::new(None) },
        }))
    }

    /// Replaces the trusted keys (in-process key rotation).
    pub fn set_keys(&self, jwks: &JwkSet) -> anyhow::Result<()> {
        let keys = decoding_keys(jwks)?;
        *self.0.keys.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = keys;
        Ok(())
    }

    fn key(&self, kid: &str) -> Option<DecodingKey> {
        self.0.keys.read().unwrap_or_else(|poisoned| poisoned.into_inner()).get(kid).cloned()
    }

    /// Verifies `token` and returns its caller.
    pub async fn verify(&self, token: &str) -> Result<Caller, ApiError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| ApiError::invalid_token("the access token is malformed"))?;
        if header.alg != Algorithm::EdDSA {
            return Err(ApiError::invalid_token("the access token is not signed with EdDSA"));
        }
        let kid = header
            .kid
            .ok_or_else(|| ApiError::invalid_token("the access token names no signing key"))?;
        let key = match self.key(&kid) {
            Some(key) if !self.keys_are_stale().await => key,
            cached => {
                self.refresh_keys(cached.is_none()).await?;
                self.key(&kid).or(cached).ok_or_else(|| {
                    ApiError::invalid_token("the access token is signed by an unknown key")
                })?
            }
        };
        let data =
            jsonwebtoken::decode::<Claims>(token, &key, &self.0.validation).map_err(|error| {
                use jsonwebtoken::errors::ErrorKind;
                ApiError::invalid_token(match error.kind() {
                    ErrorKind::ExpiredSignature => "the access token has expired",
                    ErrorKind::InvalidIssuer => "the access token was issued by someone else",
                    ErrorKind::InvalidSignature => "the access token's signature is invalid",
                    _ => "the access token is invalid",
                })
            })?;
        let user_id = Uuid::parse_str(&data.claims.sub)
            .map_err(|_| ApiError::invalid_token("the access token's subject is not a user id"))?;
        Ok(Caller { user_id, role: data.claims.role, token_id: data.claims.jti })
    }

    async fn keys_are_stale(&self) -> bool {
        match &self.0.source {
            KeySource::Fixed => false,
            KeySource::Jwks { fetch, .. } => {
                fetch.lock().await.is_none_or(|fetched| fetched.elapsed() > KEYS_TTL)
            }
        }
    }

    /// Fetches the JWKS again unless that happened less than [`REFETCH_AFTER`] ago. `required`:
    /// no cached key can stand in, so a failed fetch is `503`.
    async fn refresh_keys(&self, required: bool) -> Result<(), ApiError> {
        let KeySource::Jwks { url, client, fetch } = &self.0.source else { return Ok(()) };
        let mut last = fetch.lock().await;
        if last.is_some_and(|at| at.elapsed() < REFETCH_AFTER) {
            return Ok(());
        }
        let fetched = async {
            let jwks: JwkSet = client
                .get(url)
                .timeout(Duration::from_secs(3))
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            decoding_keys(&jwks)
        }
        .await;
        match fetched {
            Ok(keys) => {
                *last = Some(Instant::now());
                *self.0.keys.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = keys;
                Ok(())
            }
            Err(error) if required => Err(ApiError::Unavailable(
                error.context(format!("fetching signing keys from {url}")),
            )),
            Err(error) => {
                tracing::warn!(error = format!("{error:#}"), %url, "cannot refresh signing keys; keeping cached ones");
                Ok(())
            }
        }
    }
}

fn decoding_keys(jwks: &JwkSet) -> anyhow::Result<HashMap<String, DecodingKey>> {
    jwks.keys
        .iter()
        .filter_map(|jwk| jwk.common.key_id.clone().map(|kid| (kid, jwk)))
        .map(|(kid, jwk)| Ok((kid, DecodingKey::from_jwk(jwk)?)))
        .collect()
}

/// The public JWK of an Ed25519 key, with its RFC 7638 thumbprint as `kid`.
pub fn ed25519_jwk(public_key: &[u8; 32]) -> anyhow::Result<Jwk> {
    let x = URL_SAFE_NO_PAD.encode(public_key);
    // RFC 7638: SHA-256 over the required members in lexicographic order, no whitespace.
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
    let kid = URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()));
    let jwk = serde_json::json!({
        "kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "alg": "EdDSA", "use": "sig",
    });
    Ok(serde_json::from_value(jwk)?)
}

impl<S> FromRequestParts<S> for Caller
where
    TokenVerifier: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let token = bearer_token(parts)?;
        TokenVerifier::from_ref(state).verify(token).await
    }
}

/// A caller whose token says `admin`; anyone else is `403` before the body is even read.
#[derive(Debug, Clone)]
pub struct Admin(pub Caller);

impl<S> FromRequestParts<S> for Admin
where
    TokenVerifier: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let caller = Caller::from_request_parts(parts, state).await?;
        if caller.is_admin() {
            Ok(Self(caller))
        } else {
            Err(ApiError::forbidden("only an admin may do this"))
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer_token(parts: &Parts) -> Result<&str, ApiError> {
    let header = parts.headers.get(AUTHORIZATION).ok_or_else(ApiError::unauthenticated)?;
    let value = header
        .to_str()
        .map_err(|_| ApiError::invalid_token("the Authorization header is not readable"))?;
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(token.trim())
        }
        _ => Err(ApiError::invalid_token("the Authorization header must be `Bearer <token>`")),
    }
}
