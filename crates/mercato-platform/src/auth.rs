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
//!
//! A token that verified is remembered for [`VERIFIED_TTL`] (at most [`VERIFIED_TOKENS`] of them,
//! keyed by the whole token): its next use checks only `exp` and that its key is still trusted,
//! not the Ed25519 signature again, the dearest step of a request that reads one row.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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

/// How long a verified token is taken on its word before its signature is checked again.
pub const VERIFIED_TTL: Duration = Duration::from_secs(60);
/// How many verified tokens are remembered; when full, all are forgotten at once.
pub const VERIFIED_TOKENS: usize = 16_384;
/// Seconds of clock skew allowed on `exp`.
const LEEWAY_SECS: u64 = 5;

/// A token whose signature, issuer and subject were checked.
struct VerifiedToken {
    caller: Caller,
    kid: String,
    /// Its `exp` plus the leeway, in seconds since the epoch: refused after that.
    expires_at: i64,
    /// When it must be verified in full again.
    until: Instant,
}

struct Verifier {
    validation: Validation,
    keys: RwLock<HashMap<String, DecodingKey>>,
    source: KeySource,
    verified: Mutex<HashMap<String, VerifiedToken>>,
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

fn now_secs() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_secs() as i64)
}

fn validation(issuer: &str) -> Validation {
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_issuer(&[issuer]);
    validation.set_required_spec_claims(&["exp", "iat", "iss", "sub"]);
    validation.leeway = LEEWAY_SECS;
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
            verified: Mutex::new(HashMap::new()),
        })))
    }

    /// A verifier that fetches keys from `jwks_url` when it needs them.
    pub fn from_jwks_url(issuer: &str, jwks_url: String, client: reqwest::Client) -> Self {
        Self(Arc::new(Verifier {
            validation: validation(issuer),
            keys: RwLock::new(HashMap::new()),
            source: KeySource::Jwks { url: jwks_url, client, fetch: tokio::sync::Mutex::new(None) },
            verified: Mutex::new(HashMap::new()),
        }))
    }

    /// Replaces the trusted keys (in-process key rotation).
    pub fn set_keys(&self, jwks: &JwkSet) -> anyhow::Result<()> {
        // Tokens of a dropped key are refused at once: `remembered` checks the key is kept.
        let keys = decoding_keys(jwks)?;
        *self.0.keys.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = keys;
        Ok(())
    }

    fn key(&self, kid: &str) -> Option<DecodingKey> {
        self.0.keys.read().unwrap_or_else(|poisoned| poisoned.into_inner()).get(kid).cloned()
    }

    /// Verifies `token` and returns its caller.
    pub async fn verify(&self, token: &str) -> Result<Caller, ApiError> {
        if let Some(caller) = self.remembered(token) {
            return Ok(caller);
        }
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
        let caller = Caller { user_id, role: data.claims.role, token_id: data.claims.jti };
        self.remember(token, &caller, kid, data.claims.exp);
        Ok(caller)
    }

    /// The caller of a token verified less than [`VERIFIED_TTL`] ago, if it has not expired
    /// since and its key is still trusted ([`TokenVerifier::set_keys`] may have dropped it).
    fn remembered(&self, token: &str) -> Option<Caller> {
        let (caller, kid) = {
            let verified = self.0.verified.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let entry = verified.get(token)?;
            if entry.until <= Instant::now() || entry.expires_at < now_secs() {
                return None;
            }
            (entry.caller.clone(), entry.kid.clone())
        };
        self.0
            .keys
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .contains_key(&kid)
            .then_some(caller)
    }

    fn remember(&self, token: &str, caller: &Caller, kid: String, exp: i64) {
        let entry = VerifiedToken {
            caller: caller.clone(),
            kid,
            expires_at: exp.saturating_add(LEEWAY_SECS as i64),
            until: Instant::now() + VERIFIED_TTL,
        };
        let mut verified = self.0.verified.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if verified.len() >= VERIFIED_TOKENS {
            verified.clear();
        }
        verified.insert(token.to_owned(), entry);
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

#[cfg(test)]
mod tests {
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
    use jsonwebtoken::{EncodingKey, Header};

    use super::*;

    const ISSUER: &str = "mercato";

    /// A key pair: its JWKS and a signer of claims.
    struct Key {
        jwks: JwkSet,
        kid: String,
        encoding: EncodingKey,
    }

    impl Key {
        fn generate() -> Self {
            let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
            let pem = key.to_pkcs8_pem(LineEnding::LF).expect("a PEM");
            let jwk = ed25519_jwk(&key.verifying_key().to_bytes()).expect("a JWK");
            let kid = jwk.common.key_id.clone().expect("a kid");
            let encoding = EncodingKey::from_ed_pem(pem.as_bytes()).expect("an encoding key");
            Self { jwks: JwkSet { keys: vec![jwk] }, kid, encoding }
        }

        fn sign(&self, user_id: Uuid, exp: i64) -> String {
            let mut header = Header::new(Algorithm::EdDSA);
            header.kid = Some(self.kid.clone());
            let claims = Claims {
                sub: user_id.to_string(),
                role: Role::Customer,
                iat: now_secs() - 10,
                exp,
                iss: ISSUER.to_owned(),
                jti: Uuid::new_v4().to_string(),
            };
            jsonwebtoken::encode(&header, &claims, &self.encoding).expect("a token")
        }
    }

    fn remembered(verifier: &TokenVerifier) -> usize {
        verifier.0.verified.lock().map(|verified| verified.len()).unwrap_or_default()
    }

    #[tokio::test]
    async fn a_verified_token_is_remembered_and_answers_the_same_caller() {
        let key = Key::generate();
        let verifier = TokenVerifier::with_keys(ISSUER, &key.jwks).expect("a verifier");
        let user = Uuid::new_v4();
        let token = key.sign(user, now_secs() + 900);
        let first = verifier.verify(&token).await.expect("valid");
        assert_eq!(remembered(&verifier), 1);
        let again = verifier.verify(&token).await.expect("still valid");
        assert_eq!((again.user_id, again.role, again.token_id), (user, first.role, first.token_id));
    }

    #[tokio::test]
    async fn a_tampered_token_is_not_taken_for_a_remembered_one() {
        let key = Key::generate();
        let verifier = TokenVerifier::with_keys(ISSUER, &key.jwks).expect("a verifier");
        let token = key.sign(Uuid::new_v4(), now_secs() + 900);
        verifier.verify(&token).await.expect("valid");
        let mut tampered = token.clone();
        let last = tampered.pop().expect("a signature");
        tampered.push(if last == 'A' { 'B' } else { 'A' });
        assert!(verifier.verify(&tampered).await.is_err(), "another text is verified in full");
        // Another key's token with the same claims is refused too.
        let other = Key::generate().sign(Uuid::new_v4(), now_secs() + 900);
        assert!(verifier.verify(&other).await.is_err());
    }

    #[tokio::test]
    async fn a_remembered_token_is_refused_once_it_expires() {
        let key = Key::generate();
        let verifier = TokenVerifier::with_keys(ISSUER, &key.jwks).expect("a verifier");
        // Expired 4 s ago: still within the 5 s leeway, for about one second more.
        let exp = now_secs() - 4;
        let token = key.sign(Uuid::new_v4(), exp);
        verifier.verify(&token).await.expect("valid within the leeway");
        assert!(verifier.remembered(&token).is_some());
        while now_secs() <= exp + LEEWAY_SECS as i64 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(verifier.remembered(&token).is_none(), "an expired token is not remembered");
        assert!(verifier.verify(&token).await.is_err(), "an expired token is refused");
    }

    #[tokio::test]
    async fn a_remembered_token_of_a_dropped_key_is_refused() {
        let old = Key::generate();
        let verifier = TokenVerifier::with_keys(ISSUER, &old.jwks).expect("a verifier");
        let token = old.sign(Uuid::new_v4(), now_secs() + 900);
        verifier.verify(&token).await.expect("valid");
        let new = Key::generate();
        verifier.set_keys(&new.jwks).expect("new keys");
        assert!(verifier.verify(&token).await.is_err(), "the old key is no longer trusted");
        assert!(verifier.verify(&new.sign(Uuid::new_v4(), now_secs() + 900)).await.is_ok());
    }

    #[tokio::test]
    async fn a_token_is_verified_in_full_again_after_the_ttl() {
        let key = Key::generate();
        let verifier = TokenVerifier::with_keys(ISSUER, &key.jwks).expect("a verifier");
        let token = key.sign(Uuid::new_v4(), now_secs() + 900);
        verifier.verify(&token).await.expect("valid");
        assert!(verifier.remembered(&token).is_some());
        if let Ok(mut verified) = verifier.0.verified.lock() {
            verified.values_mut().for_each(|entry| entry.until = Instant::now());
        }
        assert!(verifier.remembered(&token).is_none(), "past the TTL it is not taken on its word");
        verifier.verify(&token).await.expect("verified in full, still valid");
        assert!(verifier.remembered(&token).is_some());
    }

    #[tokio::test]
    async fn the_memory_of_tokens_is_bounded() {
        let key = Key::generate();
        let verifier = TokenVerifier::with_keys(ISSUER, &key.jwks).expect("a verifier");
        let caller = Caller { user_id: Uuid::new_v4(), role: Role::Customer, token_id: "t".into() };
        for n in 0..VERIFIED_TOKENS + 10 {
            verifier.remember(&format!("token-{n}"), &caller, key.kid.clone(), now_secs() + 60);
        }
        assert!(remembered(&verifier) <= VERIFIED_TOKENS);
    }
}
