//! The `users` table.

use mercato_platform::auth::Role;
use mercato_platform::time::Timestamp;
use mercato_store::sqlx::{self, AnyConnection, FromRow};
use mercato_store::{Backend, Database, dialect};
use uuid::Uuid;

/// A stored account.
#[derive(Debug, Clone)]
pub struct User {
    pub id: Uuid,
    pub name: String,
    pub email: String,
    pub password_hash: String,
    pub role: Role,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(FromRow)]
struct UserRow {
    id: String,
    name: String,
    email: String,
    password_hash: String,
    role: String,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<UserRow> for User {
    type Error = sqlx::Error;

    fn try_from(row: UserRow) -> Result<Self, Self::Error> {
        let decode = |what: &str| sqlx::Error::Decode(format!("users.{what} is corrupt").into());
        Ok(Self {
            id: Uuid::parse_str(&row.id).map_err(|_| decode("id"))?,
            role: Role::parse(&row.role).ok_or_else(|| decode("role"))?,
            name: row.name,
            email: row.email,
            password_hash: row.password_hash,
            created_at: Timestamp::from_millis(row.created_at),
            updated_at: Timestamp::from_millis(row.updated_at),
        })
    }
}

/// Inserts a new account; a taken email is a unique violation the caller turns into `409`.
#[tracing::instrument(skip_all, fields(user_id = %user.id))]
pub async fn insert(
    db: &Database,
    conn: &mut AnyConnection,
    user: &User,
) -> Result<(), sqlx::Error> {
    sqlx::query(db.sql(
        "INSERT INTO users (id, name, email, email_lower, password_hash, role, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    ))
    .bind(user.id.to_string())
    .bind(&user.name)
    .bind(&user.email)
    .bind(user.email.to_lowercase())
    .bind(&user.password_hash)
    .bind(user.role.as_str())
    .bind(user.created_at.millis())
    .bind(user.updated_at.millis())
    .execute(conn)
    .await?;
    Ok(())
}

#[tracing::instrument(skip_all, fields(user_id = %id))]
pub async fn find(
    db: &Database,
    conn: &mut AnyConnection,
    id: Uuid,
) -> Result<Option<User>, sqlx::Error> {
    let row = sqlx::query_as::<_, UserRow>(db.sql(
        "SELECT id, name, email, password_hash, role, created_at, updated_at FROM users WHERE id = $1",
    ))
    .bind(id.to_string())
    .fetch_optional(conn)
    .await?;
    row.map(User::try_from).transpose()
}

/// Reads the account and locks its row until the transaction ends (SQLite's `BEGIN IMMEDIATE`
/// already holds the database's write lock), so a read-modify-write cannot lose another's change.
#[tracing::instrument(skip_all, fields(user_id = %id))]
pub async fn find_for_update(
    db: &Database,
    conn: &mut AnyConnection,
    id: Uuid,
) -> Result<Option<User>, sqlx::Error> {
    let text = match db.backend() {
        Backend::Sqlite => db.sql(
            "SELECT id, name, email, password_hash, role, created_at, updated_at FROM users \
             WHERE id = $1",
        ),
        Backend::Postgres | Backend::MySql => db.sql(
            "SELECT id, name, email, password_hash, role, created_at, updated_at FROM users \
             WHERE id = $1 FOR UPDATE",
        ),
    };
    let row = sqlx::query_as::<_, UserRow>(text).bind(id.to_string()).fetch_optional(conn).await?;
    row.map(User::try_from).transpose()
}

#[tracing::instrument(skip_all)]
pub async fn find_by_email(
    db: &Database,
    conn: &mut AnyConnection,
    email_lower: &str,
) -> Result<Option<User>, sqlx::Error> {
    let row = sqlx::query_as::<_, UserRow>(db.sql(
        "SELECT id, name, email, password_hash, role, created_at, updated_at FROM users \
         WHERE email_lower = $1",
    ))
    .bind(email_lower)
    .fetch_optional(conn)
    .await?;
    row.map(User::try_from).transpose()
}

/// Writes every changeable column of `user` (the caller applied the change).
#[tracing::instrument(skip_all, fields(user_id = %user.id))]
pub async fn update(
    db: &Database,
    conn: &mut AnyConnection,
    user: &User,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(db.sql(
        "UPDATE users SET name = $1, email = $2, email_lower = $3, password_hash = $4, role = $5, \
         updated_at = $6 WHERE id = $7",
    ))
    .bind(&user.name)
    .bind(&user.email)
    .bind(user.email.to_lowercase())
    .bind(&user.password_hash)
    .bind(user.role.as_str())
    .bind(user.updated_at.millis())
    .bind(user.id.to_string())
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Deletes the account; `false` when there was none.
#[tracing::instrument(skip_all, fields(user_id = %id))]
pub async fn delete(
    db: &Database,
    conn: &mut AnyConnection,
    id: Uuid,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(db.sql("DELETE FROM users WHERE id = $1"))
        .bind(id.to_string())
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// The accounts of `ids` that exist, in no particular order.
#[tracing::instrument(skip_all)]
pub async fn by_ids(
    db: &Database,
    conn: &mut AnyConnection,
    ids: &[Uuid],
) -> Result<Vec<User>, sqlx::Error> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let placeholders: Vec<String> = (1..=ids.len()).map(|n| format!("${n}")).collect();
    let sql = format!(
        "SELECT id, name, email, password_hash, role, created_at, updated_at FROM users \
         WHERE id IN ({})",
        placeholders.join(", ")
    );
    let mut query = sqlx::query_as::<_, UserRow>(db.sql_owned(sql));
    for id in ids {
        query = query.bind(id.to_string());
    }
    let rows = query.fetch_all(conn).await?;
    rows.into_iter().map(User::try_from).collect()
}

/// One page of accounts in id (= creation) order, after `after`, optionally matching `query`
/// in name or email (case-insensitive substring). Fetches `limit + 1` rows (see `Page`).
#[tracing::instrument(skip_all)]
pub async fn list(
    db: &Database,
    conn: &mut AnyConnection,
    query: Option<&str>,
    after: Option<Uuid>,
    limit: u32,
) -> Result<Vec<User>, sqlx::Error> {
    // "" sorts before every UUID and "%" matches everything: one query text for every filter.
    let after = after.map(|id| id.to_string()).unwrap_or_default();
    let pattern = query.map_or_else(|| "%".to_owned(), dialect::like_contains);
    let rows = sqlx::query_as::<_, UserRow>(db.sql(
        "SELECT id, name, email, password_hash, role, created_at, updated_at FROM users \
         WHERE id > $1 AND (LOWER(name) LIKE $2 ESCAPE '!' OR email_lower LIKE $3 ESCAPE '!') \
         ORDER BY id LIMIT $4",
    ))
    .bind(after)
    .bind(&pattern)
    .bind(&pattern)
    .bind(i64::from(limit) + 1)
    .fetch_all(conn)
    .await?;
    rows.into_iter().map(User::try_from).collect()
}
