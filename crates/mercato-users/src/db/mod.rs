//! The users service's queries, as free functions over a connection or transaction.
//!
//! Query texts use `$N` placeholders and portable SQL; [`Database::sql`] adapts them to the
//! backend (see `mercato-store`).

pub mod login_attempts;
pub mod refresh_tokens;
pub mod users;

pub use mercato_store::{Database, Migrations};

/// This service's migrations, one folder per backend.
pub static MIGRATIONS: Migrations = Migrations {
    sqlite: mercato_store::sqlx::migrate!("./migrations/sqlite"),
    postgres: mercato_store::sqlx::migrate!("./migrations/postgres"),
    mysql: mercato_store::sqlx::migrate!("./migrations/mysql"),
};
