//! Classifying driver errors the way the API needs them.

use sqlx::error::ErrorKind;

/// True when the error means the database cannot be reached right now (the API answers `503`
/// and readiness turns red), as opposed to a query that the database refused.
pub fn is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => {
            // Codes that mean the database cannot serve this service right now, not that a query
            // was wrong. PostgreSQL: admin or crash shutdown, cannot connect now, too many
            // connections, not accepting connections (55000 at connect), database missing,
            // authentication failed. MySQL: shutdown in progress, too many connections, access
            // denied, unknown database. SQLite: busy after the timeout.
            matches!(
                db.code().as_deref(),
                Some(
                    "57P01"
                        | "57P02"
                        | "57P03"
                        | "53300"
                        | "55000"
                        | "3D000"
                        | "28000"
                        | "28P01"
                        | "1053"
                        | "1040"
                        | "1045"
                        | "1049"
                        | "5"
                        | "517"
                )
            )
        }
        _ => false,
    }
}

/// True when the error is a violated unique key (a duplicate email, sku, or event id).
pub fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.kind() == ErrorKind::UniqueViolation)
}
