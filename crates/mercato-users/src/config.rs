//! The users service's configuration (the `[users]` table, plus the bootstrap admin).

use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::passwords::HashingConfig;

/// Login rate limits (config keys `users.rate_limit.*`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Failed logins per email within `failed_window` before further attempts get `429`.
    pub failed_per_email: u32,
    #[serde(rename = "failed_window_secs", with = "duration_secs")]
    pub failed_window: Duration,
    /// Login attempts per client address per minute.
    pub per_address_per_minute: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            failed_per_email: 10,
            failed_window: Duration::from_secs(15 * 60),
            per_address_per_minute: 300,
        }
    }
}

/// The account the users service makes sure exists, with role admin and this password.
#[derive(Debug, Clone)]
pub struct AdminCredentials {
    pub email: String,
    pub password: SecretString,
}

/// Everything the users service needs besides its database and signing key.
#[derive(Debug, Clone)]
pub struct UsersConfig {
    /// The `iss` claim of access tokens, checked by every verifier.
    pub issuer: String,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    pub rate_limit: RateLimitConfig,
    pub hashing: HashingConfig,
    pub admin: Option<AdminCredentials>,
}

impl Default for UsersConfig {
    fn default() -> Self {
        Self {
            issuer: "mercato".to_owned(),
            access_token_ttl: Duration::from_secs(900),
            refresh_token_ttl: Duration::from_secs(30 * 24 * 3600),
            rate_limit: RateLimitConfig::default(),
            hashing: HashingConfig::default(),
            admin: None,
        }
    }
}

/// Durations in config files are whole seconds.
mod duration_secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(duration.as_secs())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        u64::deserialize(deserializer).map(Duration::from_secs)
    }
}
