//! The `login_failures` table: recent failed logins per email, for the rate limit.

use mercato_platform::time::Timestamp;
use mercato_store::Database;
use mercato_store::sqlx::{self, AnyConnection};
use uuid::Uuid;

/// The times of the failed logins for `email_lower` since `since`, oldest first, at most `limit`.
#[tracing::instrument(skip_all)]
pub async fn recent(
    db: &Database,
    conn: &mut AnyConnection,
    email_lower: &str,
    since: Timestamp,
    limit: u32,
) -> Result<Vec<Timestamp>, sqlx::Error> {
    let rows: Vec<(i64,)> = sqlx::query_as(db.sql(
        "SELECT failed_at FROM login_failures WHERE email_lower = $1 AND failed_at > $2 \
         ORDER BY failed_at LIMIT $3",
    ))
    .bind(email_lower)
    .bind(since.millis())
    .bind(i64::from(limit))
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|(at,)| Timestamp::from_millis(at)).collect())
}

/// Records a failure, and forgets this email's failures older than `forget_before`.
#[tracing::instrument(skip_all)]
pub async fn record(
    db: &Database,
    conn: &mut AnyConnection,
    email_lower: &str,
    at: Timestamp,
    forget_before: Timestamp,
) -> Result<(), sqlx::Error> {
    sqlx::query(db.sql("DELETE FROM login_failures WHERE email_lower = $1 AND failed_at <= $2"))
        .bind(email_lower)
        .bind(forget_before.millis())
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        db.sql("INSERT INTO login_failures (id, email_lower, failed_at) VALUES ($1, $2, $3)"),
    )
    .bind(Uuid::now_v7().to_string())
    .bind(email_lower)
    .bind(at.millis())
    .execute(conn)
    .await?;
    Ok(())
}

/// Forgets every failure of `email_lower` (a successful login, a deleted account).
#[tracing::instrument(skip_all)]
pub async fn clear(
    db: &Database,
    conn: &mut AnyConnection,
    email_lower: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(db.sql("DELETE FROM login_failures WHERE email_lower = $1"))
        .bind(email_lower)
        .execute(conn)
        .await?;
    Ok(())
}
