//! The orders service's queries, as free functions over a connection or transaction.
//!
//! - [`orders`]: the `orders` table (lines, address and saga bookkeeping as JSON text).
//! - [`replicas`]: `known_users` and `catalog`, this service's views of the users and products
//!   services, built from their events.
//! - [`idempotency`]: stored first responses per `Idempotency-Key`.
//!
//! Query texts use `$N` placeholders and portable SQL; [`Database::sql`] adapts them to the
//! backend (see `mercato-store`). Row locks (`FOR UPDATE`) are left out on SQLite, whose write
//! transactions (`BEGIN IMMEDIATE`) already hold the database's one write lock.

pub mod idempotency;
pub mod orders;
pub mod replicas;

pub use mercato_store::{Database, Migrations};

/// This service's migrations, one folder per backend.
pub static MIGRATIONS: Migrations = Migrations {
    sqlite: mercato_store::sqlx::migrate!("./migrations/sqlite"),
    postgres: mercato_store::sqlx::migrate!("./migrations/postgres"),
    mysql: mercato_store::sqlx::migrate!("./migrations/mysql"),
};

/// `FOR UPDATE` where the backend has row locks.
pub(crate) fn for_update(db: &Database) -> &'static str {
    match db.backend() {
        mercato_store::Backend::Sqlite => "",
        _ => " FOR UPDATE",
    }
}
