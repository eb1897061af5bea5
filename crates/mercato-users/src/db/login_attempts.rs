//! The `login_attempts` table: failed logins per email in a fixed window, for the rate limit.
//!
//! A login takes a slot before its password is checked ([`reserve`]): one conditional update
//! (`failures < limit`), atomic on every backend, so parallel guesses cannot all pass the check
//! before any failure is recorded. A successful login gives the slot back by clearing the email's
//! failures ([`clear`]); a failed one leaves it taken.

use std::time::Duration;

use mercato_platform::time::Timestamp;
use mercato_store::sqlx::{self, AnyConnection};
use mercato_store::{Database, is_unique_violation};

/// Takes one attempt slot for `email_lower`; `Err(retry_after)` when the window is full.
#[tracing::instrument(skip_all)]
pub async fn reserve(
    db: &Database,
    conn: &mut AnyConnection,
    email_lower: &str,
    now: Timestamp,
    window: Duration,
    limit: u32,
) -> Result<Result<(), Duration>, sqlx::Error> {
    // A window that has ended starts again from now.
    sqlx::query(db.sql(
        "UPDATE login_attempts SET failures = 0, window_start = $1 \
         WHERE email_lower = $2 AND window_start <= $3",
    ))
    .bind(now.millis())
    .bind(email_lower)
    .bind(now.minus(window).millis())
    .execute(&mut *conn)
    .await?;
    // Two rounds: the second one after inserting the row (or losing that race to another login).
    for _ in 0..2 {
        let taken = sqlx::query(db.sql(
            "UPDATE login_attempts SET failures = failures + 1 \
             WHERE email_lower = $1 AND failures < $2",
        ))
        .bind(email_lower)
        .bind(i64::from(limit))
        .execute(&mut *conn)
        .await?;
        if taken.rows_affected() == 1 {
            return Ok(Ok(()));
        }
        let window_start: Option<(i64,)> = sqlx::query_as(
            db.sql("SELECT window_start FROM login_attempts WHERE email_lower = $1"),
        )
        .bind(email_lower)
        .fetch_optional(&mut *conn)
        .await?;
        if let Some((start,)) = window_start {
            let reopens = Timestamp::from_millis(start).plus(window);
            let wait = u64::try_from(reopens.millis() - now.millis()).unwrap_or(0);
            return Ok(Err(Duration::from_millis(wait.max(1000))));
        }
        let inserted = sqlx::query(db.sql(
            "INSERT INTO login_attempts (email_lower, window_start, failures) VALUES ($1, $2, 1)",
        ))
        .bind(email_lower)
        .bind(now.millis())
        .execute(&mut *conn)
        .await;
        match inserted {
            Ok(_) => return Ok(Ok(())),
            Err(error) if is_unique_violation(&error) => continue,
            Err(error) => return Err(error),
        }
    }
    Ok(Err(Duration::from_secs(1)))
}

/// Forgets the failures of `email_lower` (a successful login, a deleted account).
#[tracing::instrument(skip_all)]
pub async fn clear(
    db: &Database,
    conn: &mut AnyConnection,
    email_lower: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(db.sql("DELETE FROM login_attempts WHERE email_lower = $1"))
        .bind(email_lower)
        .execute(conn)
        .await?;
    Ok(())
}
