//! Password hashing with Argon2id, off the async runtime.
//!
//! One hash costs ~17 ms of CPU with the OWASP parameters (19 MiB, 2 passes, 1 lane): as much as
//! ~20 orders. Hashes run on tokio's blocking pool behind a semaphore as wide as the machine, so a
//! burst of logins queues instead of starving every other request of CPU and memory.

use std::sync::Arc;

use anyhow::Context;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Semaphore;

/// Argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HashingConfig {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for HashingConfig {
    /// OWASP's recommendation for Argon2id (2023).
    fn default() -> Self {
        Self { memory_kib: 19_456, iterations: 2, parallelism: 1 }
    }
}

#[derive(Clone)]
pub struct Passwords {
    argon2: Argon2<'static>,
    permits: Arc<Semaphore>,
    /// A real hash of a random password: unknown emails are checked against it so that a login
    /// takes as long whether or not the account exists.
    decoy: Arc<String>,
}

impl std::fmt::Debug for Passwords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Passwords").field("params", self.argon2.params()).finish_non_exhaustive()
    }
}

impl Passwords {
    pub fn new(config: HashingConfig) -> anyhow::Result<Self> {
        let params = Params::new(config.memory_kib, config.iterations, config.parallelism, None)
            .map_err(|error| anyhow::anyhow!("invalid Argon2 parameters: {error}"))?;
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let width = std::thread::available_parallelism().map_or(2, usize::from);
        let decoy_password = uuid::Uuid::now_v7().to_string();
        let decoy = hash_blocking(&argon2, decoy_password.as_bytes())?;
        Ok(Self { argon2, permits: Arc::new(Semaphore::new(width)), decoy: Arc::new(decoy) })
    }

    pub fn params(&self) -> &Params {
        self.argon2.params()
    }

    /// Hashes a new password (PHC string with salt and parameters).
    pub async fn hash(&self, password: &SecretString) -> anyhow::Result<String> {
        let _permit = self.permits.acquire().await.context("password hashing is shut down")?;
        let argon2 = self.argon2.clone();
        let password = password.clone();
        tokio::task::spawn_blocking(move || {
            hash_blocking(&argon2, password.expose_secret().as_bytes())
        })
        .await
        .context("the hashing task failed")?
    }

    /// Checks `password` against `hash`; with no hash (unknown account) checks against the
    /// decoy and answers `false`, taking the same time.
    pub async fn verify(
        &self,
        password: &SecretString,
        hash: Option<&str>,
    ) -> anyhow::Result<bool> {
        let _permit = self.permits.acquire().await.context("password hashing is shut down")?;
        let argon2 = self.argon2.clone();
        let password = password.clone();
        let known = hash.is_some();
        let hash = hash.map_or_else(|| self.decoy.as_str().to_owned(), str::to_owned);
        let matches = tokio::task::spawn_blocking(move || {
            let parsed = PasswordHash::new(&hash)
                .map_err(|error| anyhow::anyhow!("stored password hash is unreadable: {error}"))?;
            Ok::<_, anyhow::Error>(
                argon2.verify_password(password.expose_secret().as_bytes(), &parsed).is_ok(),
            )
        })
        .await
        .context("the hashing task failed")??;
        Ok(known && matches)
    }
}

fn hash_blocking(argon2: &Argon2<'_>, password: &[u8]) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    argon2
        .hash_password(password, &salt)
        .map(|hash| hash.to_string())
        .map_err(|error| anyhow::anyhow!("hashing a password failed: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> Passwords {
        Passwords::new(HashingConfig { memory_kib: 1024, iterations: 1, parallelism: 1 })
            .unwrap_or_else(|error| panic!("{error}"))
    }

    #[tokio::test]
    async fn a_hash_verifies_its_password_and_nothing_else() -> anyhow::Result<()> {
        let passwords = cheap();
        let hash = passwords.hash(&SecretString::from("correct horse")).await?;
        assert!(hash.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"), "{hash}");
        assert!(passwords.verify(&SecretString::from("correct horse"), Some(&hash)).await?);
        assert!(!passwords.verify(&SecretString::from("correct horse!"), Some(&hash)).await?);
        Ok(())
    }

    #[tokio::test]
    async fn an_unknown_account_never_verifies() -> anyhow::Result<()> {
        let passwords = cheap();
        assert!(!passwords.verify(&SecretString::from("anything"), None).await?);
        Ok(())
    }

    #[test]
    fn the_default_cost_is_owasps_argon2id() {
        let config = HashingConfig::default();
        assert_eq!((config.memory_kib, config.iterations, config.parallelism), (19_456, 2, 1));
    }
}
