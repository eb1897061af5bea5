//! The `refresh_tokens` table: one row per issued refresh token, by hash.

use mercato_platform::time::Timestamp;
use mercato_store::Database;
use mercato_store::sqlx::{self, AnyConnection, FromRow};
use uuid::Uuid;

#[derive(Debug, Clone, FromRow)]
pub struct StoredRefreshToken {
    pub family_id: String,
    pub user_id: String,
    pub spent: i16,
    pub expires_at: i64,
}

#[tracing::instrument(skip_all, fields(user_id = %user_id))]
pub async fn insert(
    db: &Database,
    conn: &mut AnyConnection,
    token_hash: &str,
    family_id: Uuid,
    user_id: Uuid,
    expires_at: Timestamp,
) -> Result<(), sqlx::Error> {
    sqlx::query(db.sql(
        "INSERT INTO refresh_tokens (token_hash, family_id, user_id, spent, expires_at, created_at) \
         VALUES ($1, $2, $3, 0, $4, $5)",
    ))
    .bind(token_hash)
    .bind(family_id.to_string())
    .bind(user_id.to_string())
    .bind(expires_at.millis())
    .bind(Timestamp::now().millis())
    .execute(conn)
    .await?;
    Ok(())
}

#[tracing::instrument(skip_all)]
pub async fn find(
    db: &Database,
    conn: &mut AnyConnection,
    token_hash: &str,
) -> Result<Option<StoredRefreshToken>, sqlx::Error> {
    sqlx::query_as::<_, StoredRefreshToken>(db.sql(
        "SELECT family_id, user_id, spent, expires_at FROM refresh_tokens WHERE token_hash = $1",
    ))
    .bind(token_hash)
    .fetch_optional(conn)
    .await
}

/// Marks the token spent; `false` when it already was (a concurrent use won the race).
#[tracing::instrument(skip_all)]
pub async fn spend(
    db: &Database,
    conn: &mut AnyConnection,
    token_hash: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        db.sql("UPDATE refresh_tokens SET spent = 1 WHERE token_hash = $1 AND spent = 0"),
    )
    .bind(token_hash)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Revokes every token of one login's chain.
#[tracing::instrument(skip_all)]
pub async fn revoke_family(
    db: &Database,
    conn: &mut AnyConnection,
    family_id: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(db.sql("DELETE FROM refresh_tokens WHERE family_id = $1"))
        .bind(family_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Revokes every session of a user (deleted account, changed password).
#[tracing::instrument(skip_all, fields(user_id = %user_id))]
pub async fn revoke_user(
    db: &Database,
    conn: &mut AnyConnection,
    user_id: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query(db.sql("DELETE FROM refresh_tokens WHERE user_id = $1"))
        .bind(user_id.to_string())
        .execute(conn)
        .await?;
    Ok(())
}
