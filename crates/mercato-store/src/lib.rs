//! Storage plumbing shared by every Mercato service.
//!
//! Each service owns its database and its schema; this crate only gives them one way to reach
//! SQLite, PostgreSQL or MySQL/MariaDB from a single codebase (see `docs/adr/0002-storage.md`):
//!
//! - [`database`]: [`Database`], a pool over sqlx's runtime `Any` driver that knows its
//!   [`Backend`], opens write transactions the right way for each backend and runs a service's
//!   migrations.
//! - [`dialect`]: queries are written once with `$N` placeholders; this module rewrites them to `?`
//!   for MySQL and escapes `LIKE` patterns portably.
//! - [`errors`]: classifies driver errors into "the database is unavailable" (the API answers
//!   `503`), "unique key violated" (a `409` for the caller to name) and everything else.
//!
//! It must not know any service's tables.

pub mod database;
pub mod dialect;
pub mod errors;

pub use database::{Backend, DEFAULT_SQLITE_CACHE_KIB, Database, Migrations, PoolSettings, Tx};
pub use errors::{is_unavailable, is_unique_violation};
pub use sqlx;
