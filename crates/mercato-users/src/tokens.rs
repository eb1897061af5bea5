//! Signing access tokens and minting refresh tokens.
//!
//! Access tokens: EdDSA (Ed25519) JWTs, verified by every service with the public keys of
//! `/.well-known/jwks.json`. The private key is a PKCS#8 PEM file that persists (in the data dir
//! under `mercato up`, from `--jwt-key-file` under `serve`) or PEM text from the environment, so
//! tokens stay valid across restarts.
//!
//! Rotation: the JWKS lists the current key first, then the retired keys given to
//! [`SigningKeys::with_retired`], so tokens they signed stay valid until they expire; verifiers
//! fetch the JWKS again when a token names a key they do not know.
//!
//! Refresh tokens: 32 random bytes, base64url; only their SHA-256 is stored, so a database leak
//! does not hand out sessions.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, spki::der::pem::LineEnding,
};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use mercato_platform::auth::{Claims, ed25519_jwk};
use rand::RngCore;
use sha2::{Digest, Sha256};

struct Keys {
    kid: String,
    encoding: EncodingKey,
    jwks: JwkSet,
}

/// The users service's signing key and the JWKS that publishes its public half.
#[derive(Clone)]
pub struct SigningKeys(Arc<Keys>);

impl std::fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeys").field("kid", &self.0.kid).finish_non_exhaustive()
    }
}

impl SigningKeys {
    /// A fresh key that lives in memory only (tests).
    pub fn generate() -> Self {
        let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
        Self::from_key(&key)
            .unwrap_or_else(|error| panic!("a generated key is always usable: {error:#}"))
    }

    /// Loads the PKCS#8 PEM key at `path`, creating it (mode 0600) when the file does not exist.
    pub fn load_or_generate(path: &Path) -> anyhow::Result<Self> {
        let key = if path.exists() {
            let pem = std::fs::read_to_string(path)
                .with_context(|| format!("reading the JWT signing key {}", path.display()))?;
            ed25519_dalek::SigningKey::from_pkcs8_pem(&pem).map_err(|error| {
                anyhow::anyhow!(
                    "{} is not an Ed25519 private key in PKCS#8 PEM: {error}",
                    path.display()
                )
            })?
        } else {
            let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
            let pem = key
                .to_pkcs8_pem(LineEnding::LF)
                .map_err(|error| anyhow::anyhow!("encoding the signing key: {error}"))?;
            write_private(path, pem.as_bytes())
                .with_context(|| format!("writing the JWT signing key {}", path.display()))?;
            tracing::info!(path = %path.display(), "generated a new JWT signing key");
            key
        };
        Self::from_key(&key)
    }

    /// The key in `pem` (Ed25519, PKCS#8 PEM text, e.g. from a secret in the environment);
    /// `source` names it in errors.
    pub fn from_pem(pem: &str, source: &str) -> anyhow::Result<Self> {
        let key = ed25519_dalek::SigningKey::from_pkcs8_pem(pem.trim()).map_err(|error| {
            anyhow::anyhow!("{source} is not an Ed25519 private key in PKCS#8 PEM: {error}")
        })?;
        Self::from_key(&key)
    }

    /// These keys, also publishing the retired keys in `pems` (each `(source, PEM)`: an Ed25519
    /// private key in PKCS#8 or a public key in SPKI PEM) so that the tokens they signed stay
    /// valid until they expire. Nothing is signed with them.
    pub fn with_retired(self, pems: &[(String, String)]) -> anyhow::Result<Self> {
        let mut jwks = self.0.jwks.clone();
        for (source, pem) in pems {
            let pem = pem.trim();
            let public = match ed25519_dalek::SigningKey::from_pkcs8_pem(pem) {
                Ok(private) => private.verifying_key(),
                Err(_) => {
                    ed25519_dalek::VerifyingKey::from_public_key_pem(pem).map_err(|error| {
                        anyhow::anyhow!(
                            "{source} is neither an Ed25519 private key (PKCS#8 PEM) nor a public \
                         key (SPKI PEM): {error}"
                        )
                    })?
                }
            };
            let jwk = ed25519_jwk(&public.to_bytes())?;
            if !jwks.keys.iter().any(|known| known.common.key_id == jwk.common.key_id) {
                jwks.keys.push(jwk);
            }
        }
        let keys = Keys { kid: self.0.kid.clone(), encoding: self.0.encoding.clone(), jwks };
        Ok(Self(Arc::new(keys)))
    }

    fn from_key(key: &ed25519_dalek::SigningKey) -> anyhow::Result<Self> {
        let pem = key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|error| anyhow::anyhow!("encoding the signing key: {error}"))?;
        let encoding =
            EncodingKey::from_ed_pem(pem.as_bytes()).context("loading the signing key")?;
        let jwk = ed25519_jwk(&key.verifying_key().to_bytes())?;
        let kid = jwk.common.key_id.clone().context("a JWK always has a kid")?;
        Ok(Self(Arc::new(Keys { kid, encoding, jwks: JwkSet { keys: vec![jwk] } })))
    }

    /// The id of the current signing key (the JWT header's `kid`).
    pub fn kid(&self) -> String {
        self.0.kid.clone()
    }

    /// The public keys, as served at `/.well-known/jwks.json`: the current one first.
    pub fn jwks(&self) -> JwkSet {
        self.0.jwks.clone()
    }

    /// Signs `claims` with the current key.
    pub fn sign(&self, claims: &Claims) -> anyhow::Result<String> {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.0.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.0.encoding).context("signing an access token")
    }
}

fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

/// A new opaque refresh token.
pub fn new_refresh_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// What the database keeps of a refresh token.
pub fn refresh_token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes()).iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::pkcs8::EncodePublicKey;
    use mercato_platform::auth::TokenVerifier;

    use super::*;

    #[test]
    fn a_key_file_is_created_private_and_read_back() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("keys/jwt.pem");
        let first = SigningKeys::load_or_generate(&path)?;
        let again = SigningKeys::load_or_generate(&path)?;
        assert_eq!(first.kid(), again.kid(), "the same key after a restart");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path)?.permissions().mode() & 0o777, 0o600);
        }
        Ok(())
    }

    #[test]
    fn a_file_that_is_not_a_key_is_a_clear_error() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("jwt.pem");
        std::fs::write(&path, "not a key")?;
        let error = SigningKeys::load_or_generate(&path).err().map(|e| format!("{e:#}"));
        assert!(error.is_some_and(|e| e.contains("PKCS#8")));
        Ok(())
    }

    #[test]
    fn refresh_tokens_are_random_and_stored_hashed() {
        let token = new_refresh_token();
        assert_ne!(token, new_refresh_token());
        assert_eq!(token.len(), 43);
        let hash = refresh_token_hash(&token);
        assert_eq!(hash.len(), 64);
        assert!(!hash.contains(&token));
    }

    fn pem_of(key: &ed25519_dalek::SigningKey) -> String {
        key.to_pkcs8_pem(LineEnding::LF).map(|pem| pem.to_string()).unwrap_or_default()
    }

    fn claims() -> Claims {
        let now = mercato_platform::time::Timestamp::now().millis() / 1000;
        Claims {
            sub: uuid::Uuid::now_v7().to_string(),
            role: mercato_platform::auth::Role::Customer,
            iat: now,
            exp: now + 60,
            iss: "mercato".to_owned(),
            jti: uuid::Uuid::now_v7().to_string(),
        }
    }

    #[tokio::test]
    async fn a_retired_key_is_published_and_still_verifies_its_tokens() {
        let old = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
        let new = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
        let before = SigningKeys::from_pem(&pem_of(&old), "old").expect("the old key loads");
        let token = before.sign(&claims()).expect("signed with the old key");

        // The old key given as its private PEM, or only its public half: the same JWKS.
        let public = old.verifying_key().to_public_key_pem(LineEnding::LF).expect("a public PEM");
        for retired in [pem_of(&old), public] {
            let after = SigningKeys::from_pem(&pem_of(&new), "new")
                .and_then(|keys| keys.with_retired(&[("old".to_owned(), retired)]))
                .expect("rotated keys load");
            let kids: Vec<_> =
                after.jwks().keys.iter().filter_map(|k| k.common.key_id.clone()).collect();
            assert_eq!(kids, vec![after.kid(), before.kid()], "current first, then retired");
            let verifier = TokenVerifier::with_keys("mercato", &after.jwks()).expect("a verifier");
            verifier.verify(&token).await.expect("a token of the retired key still verifies");
            let fresh = after.sign(&claims()).expect("signed with the new key");
            assert_eq!(
                jsonwebtoken::decode_header(&fresh).ok().and_then(|h| h.kid),
                Some(after.kid())
            );
            verifier.verify(&fresh).await.expect("a token of the new key verifies");
        }
    }

    #[test]
    fn a_bad_key_is_refused_with_its_source_named() {
        let error =
            SigningKeys::from_pem("not a key", "MERCATO_JWT_KEY").err().map(|e| e.to_string());
        assert!(error.unwrap_or_default().contains("MERCATO_JWT_KEY"));
        let error = SigningKeys::generate()
            .with_retired(&[("/keys/old.pem".to_owned(), "junk".to_owned())])
            .err()
            .map(|e| e.to_string());
        assert!(error.unwrap_or_default().contains("/keys/old.pem"));
    }
}
