//! Configuration: defaults < TOML file (`--config`) < `MERCATO_*` environment < flags.
//!
//! Keys are the snake_case field names below; nested tables use `__` in environment variables
//! (`users.rate_limit.failed_per_email` is `MERCATO_USERS__RATE_LIMIT__FAILED_PER_EMAIL`).
//! Unknown keys and bad values are refused at start with the key named.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::bail;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use mercato_users::{AdminCredentials, HashingConfig, RateLimitConfig, UsersConfig};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// Every setting of the `mercato` binary.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
    pub nats_url: Option<String>,
    pub nats_prefix: String,
    pub users_url: Option<String>,
    pub products_url: Option<String>,
    pub orders_url: Option<String>,
    pub jwt_key_file: Option<PathBuf>,
    /// The users service's signing key as PKCS#8 PEM text (e.g. a secret in `MERCATO_JWT_KEY`);
    /// it wins over `jwt_key_file`.
    pub jwt_key: Option<SecretString>,
    /// Retired keys (PEM files, private or public) the users service still publishes in its
    /// JWKS, so that the tokens they signed stay valid until they expire.
    pub jwt_previous_key_files: Vec<PathBuf>,
    /// On SIGTERM, how long readiness answers 503 while requests are still served, so that load
    /// balancers stop sending traffic before the listener closes.
    pub shutdown_drain_secs: u64,
    /// The `iss` of access tokens; every service of one deployment must agree on it.
    pub jwt_issuer: String,
    pub admin_email: Option<String>,
    pub admin_password: Option<SecretString>,
    pub currency: String,
    pub database: DatabaseSettings,
    pub users: UsersSettings,
    pub gateway: mercato_gateway::GatewayConfig,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./mercato-data"),
            database_url: None,
            nats_url: None,
            nats_prefix: "mercato".to_owned(),
            users_url: None,
            products_url: None,
            orders_url: None,
            jwt_key_file: None,
            jwt_key: None,
            jwt_previous_key_files: Vec::new(),
            shutdown_drain_secs: 2,
            jwt_issuer: "mercato".to_owned(),
            admin_email: None,
            admin_password: None,
            currency: "USD".to_owned(),
            database: DatabaseSettings::default(),
            users: UsersSettings::default(),
            gateway: mercato_gateway::GatewayConfig::default(),
        }
    }
}

/// Connection pool settings (the `[database]` table).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSettings {
    pub max_connections: u32,
    pub acquire_timeout_secs: u64,
    /// SQLite only: the page cache of each database file over all its connections, in MiB.
    pub sqlite_cache_mib: u32,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout_secs: 3,
            sqlite_cache_mib: mercato_store::DEFAULT_SQLITE_CACHE_KIB / 1024,
        }
    }
}

/// The `[users]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UsersSettings {
    pub rate_limit: RateLimitConfig,
    pub hashing: HashingConfig,
}

/// Values given as flags: only the ones present override.
#[derive(Debug, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nats_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nats_prefix: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub users_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub products_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub orders_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt_key_file: Option<PathBuf>,
}

/// Environment variables with the `MERCATO_` prefix that are not settings (test harness, the
/// config file path itself).
const NOT_SETTINGS: &[&str] = &["config", "require_servers"];

impl Settings {
    /// Loads and validates the settings from every layer.
    pub fn load(config_file: Option<&Path>, overrides: Overrides) -> anyhow::Result<Self> {
        Self::load_from(config_file, Env::prefixed("MERCATO_"), overrides)
    }

    fn load_from(
        config_file: Option<&Path>,
        env: Env,
        overrides: Overrides,
    ) -> anyhow::Result<Self> {
        let mut figment = Figment::new();
        if let Some(path) = config_file {
            if !path.is_file() {
                bail!("the config file {} does not exist", path.display());
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        let env = env.split("__").lowercase(true).filter(|key| {
            let key = key.as_str().to_ascii_lowercase();
            !NOT_SETTINGS.contains(&key.as_str()) && !key.starts_with("test_")
        });
        figment = figment.merge(env).merge(Serialized::defaults(overrides));
        let settings: Self = figment.extract().map_err(|error| {
            let messages: Vec<String> = error.into_iter().map(|e| e.to_string()).collect();
            anyhow::anyhow!("invalid configuration: {}", messages.join("; "))
        })?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> anyhow::Result<()> {
        if let Some(url) = &self.database_url {
            mercato_store::Backend::from_url(url).map_err(|error| {
                anyhow::anyhow!("invalid configuration: `database_url`: {error}")
            })?;
        }
        if self.nats_prefix.is_empty()
            || !self.nats_prefix.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            bail!("invalid configuration: `nats_prefix` must be letters, digits, `-` or `_`");
        }
        if ["dlq", "signal"].contains(&self.nats_prefix.as_str()) {
            // `dlq.<prefix>.>` and `signal.<prefix>.>` must stay outside the stream `<prefix>.>`.
            bail!("invalid configuration: `nats_prefix` cannot be `dlq` or `signal` (reserved)");
        }
        if self.currency.len() != 3 || !self.currency.chars().all(|c| c.is_ascii_uppercase()) {
            bail!("invalid configuration: `currency` must be an ISO 4217 code such as USD");
        }
        let limits = &self.users.rate_limit;
        if limits.failed_per_email == 0 || limits.per_address_per_minute == 0 {
            bail!("invalid configuration: `users.rate_limit` limits must be at least 1");
        }
        if limits.failed_window.is_zero() {
            bail!(
                "invalid configuration: `users.rate_limit.failed_window_secs` must be at least 1"
            );
        }
        let hashing = &self.users.hashing;
        argon2::Params::new(hashing.memory_kib, hashing.iterations, hashing.parallelism, None)
            .map_err(|error| anyhow::anyhow!("invalid configuration: `users.hashing`: {error}"))?;
        let gateway = &self.gateway.limits;
        if [
            gateway.max_depth,
            gateway.max_complexity,
            gateway.max_aliases,
            gateway.max_document_bytes,
        ]
        .contains(&0)
        {
            bail!("invalid configuration: `gateway.limits` must each be at least 1");
        }
        if self.database.max_connections == 0 {
            bail!("invalid configuration: `database.max_connections` must be at least 1");
        }
        if self.database.sqlite_cache_mib == 0 || self.database.sqlite_cache_mib > 4096 {
            bail!("invalid configuration: `database.sqlite_cache_mib` must be between 1 and 4096");
        }
        Ok(())
    }

    /// The users service's config. The bootstrap admin needs both `admin_email` and
    /// `admin_password` (`users create-admin` takes the password alone, so loading allows it).
    pub fn users_config(&self) -> anyhow::Result<UsersConfig> {
        let admin = match (&self.admin_email, &self.admin_password) {
            (Some(email), Some(password)) => {
                Some(AdminCredentials { email: email.clone(), password: password.clone() })
            }
            (None, None) => None,
            _ => bail!(
                "invalid configuration: set both `admin_email` and `admin_password`, or neither"
            ),
        };
        Ok(UsersConfig {
            issuer: self.jwt_issuer.clone(),
            rate_limit: self.users.rate_limit.clone(),
            hashing: self.users.hashing,
            admin,
            ..UsersConfig::default()
        })
    }

    /// The users service's signing keys: `jwt_key` when set, else the PEM file `jwt_key_file`
    /// (default: `jwt-ed25519.pem` in the data dir, generated when missing), publishing the
    /// retired `jwt_previous_key_files` beside it.
    pub fn signing_keys(&self) -> anyhow::Result<mercato_users::SigningKeys> {
        use anyhow::Context as _;
        use secrecy::ExposeSecret as _;

        let keys = match &self.jwt_key {
            Some(pem) => mercato_users::SigningKeys::from_pem(
                pem.expose_secret(),
                "`jwt_key` (MERCATO_JWT_KEY)",
            )?,
            None => {
                let file = self
                    .jwt_key_file
                    .clone()
                    .unwrap_or_else(|| self.data_dir.join("jwt-ed25519.pem"));
                mercato_users::SigningKeys::load_or_generate(&file)?
            }
        };
        let retired = self
            .jwt_previous_key_files
            .iter()
            .map(|path| {
                let pem = std::fs::read_to_string(path).with_context(|| {
                    format!(
                        "reading the retired JWT key {} (jwt_previous_key_files)",
                        path.display()
                    )
                })?;
                Ok((path.display().to_string(), pem))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        keys.with_retired(&retired)
    }

    pub fn pool(&self) -> mercato_store::PoolSettings {
        mercato_store::PoolSettings {
            max_connections: self.database.max_connections,
            acquire_timeout: std::time::Duration::from_secs(self.database.acquire_timeout_secs),
            sqlite_cache_kib: self.database.sqlite_cache_mib * 1024,
        }
    }
}

#[cfg(test)]
// figment's `Jail` fixes its closures' error type (`figment::Error`, large); not ours to box.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use figment::Jail;

    fn load(overrides: Overrides) -> Result<Settings, String> {
        let file = Path::new("mercato.toml");
        Settings::load(file.exists().then_some(file), overrides)
            .map_err(|error| format!("{error:#}"))
    }

    #[test]
    fn defaults_need_no_configuration() {
        Jail::expect_with(|_jail| {
            let settings = load(Overrides::default())?;
            assert_eq!(settings.listen.to_string(), "127.0.0.1:8080");
            assert_eq!(settings.data_dir, PathBuf::from("./mercato-data"));
            assert_eq!(settings.users.rate_limit.failed_per_email, 10);
            assert_eq!(settings.nats_prefix, "mercato");
            Ok(())
        });
    }

    #[test]
    fn flags_beat_environment_which_beats_the_file() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "mercato.toml",
                "listen = \"127.0.0.1:7000\"\ncurrency = \"EUR\"\nnats_prefix = \"file\"\n\
                 [users.rate_limit]\nfailed_per_email = 3\n",
            )?;
            jail.set_env("MERCATO_LISTEN", "127.0.0.1:7001");
            jail.set_env("MERCATO_NATS_PREFIX", "env");
            jail.set_env("MERCATO_USERS__RATE_LIMIT__PER_ADDRESS_PER_MINUTE", "7");
            jail.set_env("MERCATO_TEST_POSTGRES_URL", "postgres://ignored");
            jail.set_env("MERCATO_REQUIRE_SERVERS", "1");
            let overrides = Overrides { nats_prefix: Some("flag".into()), ..Overrides::default() };
            let settings = load(overrides)?;
            assert_eq!(settings.listen.to_string(), "127.0.0.1:7001", "env beats file");
            assert_eq!(settings.nats_prefix, "flag", "flag beats env");
            assert_eq!(settings.currency, "EUR", "file beats default");
            assert_eq!(settings.users.rate_limit.failed_per_email, 3);
            assert_eq!(settings.users.rate_limit.per_address_per_minute, 7);
            Ok(())
        });
    }

    #[test]
    fn a_bad_value_names_its_key() {
        Jail::expect_with(|jail| {
            jail.set_env("MERCATO_LISTEN", "not-an-address");
            let error = load(Overrides::default()).err().unwrap_or_default();
            assert!(error.to_lowercase().contains("listen"), "{error}");
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env("MERCATO_USERS__RATE_LIMIT__FAILED_PER_EMAIL", "many");
            let error = load(Overrides::default()).err().unwrap_or_default();
            assert!(error.to_lowercase().contains("failed_per_email"), "{error}");
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env("MERCATO_DATABASE_URL", "redis://localhost");
            let error = load(Overrides::default()).err().unwrap_or_default();
            assert!(error.contains("database_url"), "{error}");
            Ok(())
        });
    }

    #[test]
    fn the_sqlite_cache_is_set_in_mib_and_checked() {
        Jail::expect_with(|jail| {
            assert_eq!(load(Overrides::default())?.pool().sqlite_cache_kib, 4096);
            jail.set_env("MERCATO_DATABASE__SQLITE_CACHE_MIB", "8");
            assert_eq!(load(Overrides::default())?.pool().sqlite_cache_kib, 8192);
            jail.set_env("MERCATO_DATABASE__SQLITE_CACHE_MIB", "0");
            let error = load(Overrides::default()).err().unwrap_or_default();
            assert!(error.contains("sqlite_cache_mib"), "{error}");
            Ok(())
        });
    }

    #[test]
    fn an_unknown_key_is_refused() {
        Jail::expect_with(|jail| {
            jail.create_file("mercato.toml", "lisen = \"127.0.0.1:1\"\n")?;
            let error = load(Overrides::default()).err().unwrap_or_default();
            assert!(error.contains("lisen"), "{error}");
            Ok(())
        });
    }

    #[test]
    fn an_admin_email_without_a_password_is_refused() {
        Jail::expect_with(|jail| {
            jail.set_env("MERCATO_ADMIN_EMAIL", "boss@example.com");
            let settings = load(Overrides::default())?;
            let error = settings.users_config().err().map(|e| e.to_string()).unwrap_or_default();
            assert!(error.contains("admin_password"), "{error}");
            Ok(())
        });
    }
}
