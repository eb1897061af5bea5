//! The Mercato users service: accounts, login, refresh tokens, and the keys that sign every
//! access token in the system.
//!
//! It owns the `users`, `refresh_tokens` and `login_attempts` tables of its own database and
//! nothing else; other services learn about users from its events and verify its tokens with the
//! public keys it serves at `/.well-known/jwks.json`.
//!
//! - [`app`]: [`UsersService`], assembled from a [`mercato_store::Database`], [`SigningKeys`] and
//!   [`UsersConfig`]; shared handler state.
//! - [`http`]: routes and their OpenAPI description (`users`, `auth`, `jwks`, `compat`), and the
//!   [`http::Actor`] extractor (a verified token whose account still exists).
//! - [`domain`]: `UserName`, `Email`, `Password`: parsed, so invalid values cannot be built.
//! - [`passwords`]: Argon2id on the blocking pool behind a semaphore.
//! - [`tokens`]: the Ed25519 signing key (persisted), access-token signing, refresh tokens.
//! - [`db`]: queries over `users`, `refresh_tokens`, `login_attempts`, and the migrations
//!   (`migrations/<backend>/`).
//! - [`config`]: [`UsersConfig`], with the login rate limits.

pub mod app;
pub mod config;
pub mod db;
pub mod domain;
pub mod http;
pub mod passwords;
pub mod tokens;

pub use app::UsersService;
pub use config::{AdminCredentials, RateLimitConfig, UsersConfig};
pub use passwords::HashingConfig;
pub use tokens::SigningKeys;
