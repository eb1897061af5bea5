//! The products service's queries, as free functions over a connection or transaction.
//!
//! - [`products`]: the catalog rows, with stock and version.
//! - [`holds`]: what each order holds (`order_holds` and `reservation_lines`).
//!
//! Query texts use `$N` placeholders and portable SQL; [`Database::sql`] adapts them to the
//! backend (see `mercato-store`). Row locks (`FOR UPDATE`) are left out on SQLite, whose write
//! transactions (`BEGIN IMMEDIATE`) already hold the database's one write lock.

pub mod holds;
pub mod products;

pub use mercato_store::{Database, Migrations};

/// This service's migrations, one folder per backend.
pub static MIGRATIONS: Migrations = Migrations {
    sqlite: mercato_store::sqlx::migrate!("./migrations/sqlite"),
    postgres: mercato_store::sqlx::migrate!("./migrations/postgres"),
    mysql: mercato_store::sqlx::migrate!("./migrations/mysql"),
};
