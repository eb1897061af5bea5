//! Signing access tokens and minting refresh tokens.
//!
//! Access tokens: EdDSA (Ed25519) JWTs, verified by every service with the public keys of
//! `/.well-known/jwks.json`. The private key is a PKCS#8 PEM file that persists (in the data dir
//! under `mercato up`, from `--jwt-key-file` under `serve`), so tokens stay valid across restarts.
//!
//! Refresh tokens: 32 random bytes, base64url; only their SHA-256 is stored, so a database leak
//! does not hand out sessions.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, spki::der::pem::LineEnding};
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

    /// The public keys, as served at `/.well-known/jwks.json`.
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
}
