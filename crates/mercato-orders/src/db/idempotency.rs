//! `idempotency_keys`: the first response to each `Idempotency-Key`, per user and route.

use mercato_store::Database;
use mercato_store::sqlx::{self, AnyConnection};
use uuid::Uuid;

/// How long a key is kept, at least.
pub const RETENTION_MILLIS: i64 = 24 * 60 * 60 * 1000;

/// A stored first response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub fingerprint: String,
    pub status: u16,
    pub body: String,
}

/// The key's stored response, if it was used before (and not yet purged).
pub async fn find(
    db: &Database,
    conn: &mut AnyConnection,
    user_id: Uuid,
    route: &str,
    key: &str,
) -> Result<Option<Stored>, sqlx::Error> {
    let row: Option<(String, i16, String)> = sqlx::query_as(db.sql(
        "SELECT fingerprint, status, body FROM idempotency_keys \
         WHERE user_id = $1 AND route = $2 AND idempotency_key = $3",
    ))
    .bind(user_id.to_string())
    .bind(route)
    .bind(key)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|(fingerprint, status, body)| Stored {
        fingerprint,
        status: u16::try_from(status).unwrap_or(200),
        body,
    }))
}

/// Stores the first response in the transaction that made it. A concurrent first use of the same
/// key makes this a unique violation: the caller rolls back and replays the winner's response.
pub async fn insert(
    db: &Database,
    conn: &mut AnyConnection,
    user_id: Uuid,
    route: &str,
    key: &str,
    stored: &Stored,
    now_millis: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(db.sql(
        "INSERT INTO idempotency_keys (user_id, route, idempotency_key, fingerprint, status, body, \
         created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    ))
    .bind(user_id.to_string())
    .bind(route)
    .bind(key)
    .bind(&stored.fingerprint)
    .bind(i16::try_from(stored.status).unwrap_or(200))
    .bind(&stored.body)
    .bind(now_millis)
    .execute(conn)
    .await?;
    Ok(())
}

/// Forgets keys older than the retention; returns how many.
pub async fn purge(db: &Database, now_millis: i64) -> Result<u64, sqlx::Error> {
    let delete = sqlx::query(db.sql("DELETE FROM idempotency_keys WHERE created_at < $1"))
        .bind(now_millis - RETENTION_MILLIS);
    let done = db.execute_write(delete).await?;
    Ok(done.rows_affected())
}

/// Replaces the stored body with the one the first request finally answered (after it was held by
/// `Prefer: wait`), so a retry gets exactly what the first request got.
pub async fn replace_body(
    db: &Database,
    user_id: Uuid,
    route: &str,
    key: &str,
    body: &str,
) -> Result<(), sqlx::Error> {
    let update = sqlx::query(db.sql(
        "UPDATE idempotency_keys SET body = $1 \
         WHERE user_id = $2 AND route = $3 AND idempotency_key = $4",
    ))
    .bind(body)
    .bind(user_id.to_string())
    .bind(route)
    .bind(key);
    db.execute_write(update).await?;
    Ok(())
}
