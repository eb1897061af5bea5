//! `known_users` and `catalog`: what this service has heard from the users and products services.
//!
//! Each row keeps the id of the newest event applied to it (UUIDv7 ids sort by the time they were
//! made, to the millisecond and by a counter within it), so an older event that arrives late
//! changes nothing. A user's deletion is final: no later event brings the account back.

use std::collections::{HashMap, HashSet};

use mercato_store::Database;
use mercato_store::dialect::{padded_len, placeholders};
use mercato_store::sqlx::{self, AnyConnection};
use uuid::Uuid;

use crate::db::for_update;

/// Whether the user is known to be deleted. Unknown users are not: a replica that lags never
/// refuses anyone.
pub async fn is_deleted(
    db: &Database,
    conn: &mut AnyConnection,
    user_id: Uuid,
) -> Result<bool, sqlx::Error> {
    let row: Option<(i16,)> =
        sqlx::query_as(db.sql("SELECT deleted FROM known_users WHERE user_id = $1"))
            .bind(user_id.to_string())
            .fetch_optional(conn)
            .await?;
    Ok(row.is_some_and(|(deleted,)| deleted != 0))
}

/// Applies a `user.created` / `user.updated` / `user.deleted` with id `event`. `true` when
/// this event newly marks the user deleted.
pub async fn apply_user(
    db: &Database,
    conn: &mut AnyConnection,
    user_id: Uuid,
    role: Option<&str>,
    deleted: bool,
    event: &str,
) -> Result<bool, sqlx::Error> {
    let text = format!(
        "SELECT role, deleted, newest_event FROM known_users WHERE user_id = $1{}",
        for_update(db)
    );
    let row: Option<(String, i16, String)> = sqlx::query_as(db.sql_owned(text))
        .bind(user_id.to_string())
        .fetch_optional(&mut *conn)
        .await?;
    match row {
        None => {
            sqlx::query(db.sql(
                "INSERT INTO known_users (user_id, role, deleted, newest_event) \
                 VALUES ($1, $2, $3, $4)",
            ))
            .bind(user_id.to_string())
            .bind(role.unwrap_or("customer"))
            .bind(i16::from(deleted))
            .bind(event)
            .execute(conn)
            .await?;
            Ok(deleted)
        }
        Some((_, was_deleted, _)) if was_deleted != 0 => Ok(false),
        Some((stored_role, _, stored_event)) => {
            if !deleted && event < stored_event.as_str() {
                return Ok(false);
            }
            sqlx::query(db.sql(
                "UPDATE known_users SET role = $1, deleted = $2, newest_event = $3 \
                 WHERE user_id = $4",
            ))
            .bind(role.unwrap_or(&stored_role))
            .bind(i16::from(deleted))
            .bind(event.max(stored_event.as_str()))
            .bind(user_id.to_string())
            .execute(conn)
            .await?;
            Ok(deleted)
        }
    }
}

/// A product as the catalog replica knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogEntry {
    pub product_id: Uuid,
    pub name: String,
    pub price_cents: i64,
    pub active: bool,
}

/// Applies a `product.*` event with id `event`: `entry` for created/updated, `None` for a
/// deletion (the product turns inactive, its name stays for the orders that show it).
pub async fn apply_product(
    db: &Database,
    conn: &mut AnyConnection,
    product_id: Uuid,
    entry: Option<&CatalogEntry>,
    event: &str,
) -> Result<(), sqlx::Error> {
    let text = format!("SELECT newest_event FROM catalog WHERE product_id = $1{}", for_update(db));
    let row: Option<(String,)> = sqlx::query_as(db.sql_owned(text))
        .bind(product_id.to_string())
        .fetch_optional(&mut *conn)
        .await?;
    match (row, entry) {
        (Some((stored,)), _) if stored.as_str() >= event => Ok(()),
        (Some(_), Some(entry)) => {
            sqlx::query(db.sql(
                "UPDATE catalog SET name = $1, price_cents = $2, active = $3, newest_event = $4 \
                 WHERE product_id = $5",
            ))
            .bind(&entry.name)
            .bind(entry.price_cents)
            .bind(i16::from(entry.active))
            .bind(event)
            .bind(product_id.to_string())
            .execute(conn)
            .await?;
            Ok(())
        }
        (Some(_), None) => {
            sqlx::query(
                db.sql("UPDATE catalog SET active = 0, newest_event = $1 WHERE product_id = $2"),
            )
            .bind(event)
            .bind(product_id.to_string())
            .execute(conn)
            .await?;
            Ok(())
        }
        (None, Some(entry)) => {
            sqlx::query(db.sql(
                "INSERT INTO catalog (product_id, name, price_cents, active, newest_event) \
                 VALUES ($1, $2, $3, $4, $5)",
            ))
            .bind(product_id.to_string())
            .bind(&entry.name)
            .bind(entry.price_cents)
            .bind(i16::from(entry.active))
            .bind(event)
            .execute(conn)
            .await?;
            Ok(())
        }
        // A deletion of a product never seen: nothing to show for it.
        (None, None) => Ok(()),
    }
}

/// What a placement needs from the replicas, read with one statement: which of `user_ids` are
/// known to be deleted, and the names of `product_ids` (those the replica has seen).
pub async fn deleted_and_names(
    db: &Database,
    conn: &mut AnyConnection,
    user_ids: &[Uuid],
    product_ids: &[Uuid],
) -> Result<(HashSet<Uuid>, HashMap<Uuid, String>), sqlx::Error> {
    // Lists padded to powers of two (repeating their last id): a few statement texts, not one
    // per combination of lengths (see `padded_len`).
    let users = padded(user_ids);
    let products = padded(product_ids);
    let mut parts = vec![format!(
        "SELECT 'u' AS kind, user_id AS id, '' AS name FROM known_users \
         WHERE user_id IN ({}) AND deleted <> 0",
        placeholders(1, users.len())
    )];
    if !products.is_empty() {
        parts.push(format!(
            "SELECT 'p' AS kind, product_id AS id, name FROM catalog WHERE product_id IN ({})",
            placeholders(users.len() + 1, products.len())
        ));
    }
    let mut query =
        sqlx::query_as::<_, (String, String, String)>(db.sql_owned(parts.join(" UNION ALL ")));
    for id in users.iter().chain(&products) {
        query = query.bind(id.to_string());
    }
    let mut deleted = HashSet::new();
    let mut names = HashMap::new();
    for (kind, id, name) in query.fetch_all(conn).await? {
        let Ok(id) = Uuid::parse_str(&id) else { continue };
        if kind == "u" {
            deleted.insert(id);
        } else {
            names.insert(id, name);
        }
    }
    Ok((deleted, names))
}

/// `ids` with its last id repeated up to [`padded_len`]; empty stays empty.
fn padded(ids: &[Uuid]) -> Vec<Uuid> {
    let mut padded = ids.to_vec();
    if let Some(&last) = ids.last() {
        padded.resize(padded_len(ids.len()), last);
    }
    padded
}

/// The replica's names of `product_ids` (those it has seen).
pub async fn names(
    db: &Database,
    conn: &mut AnyConnection,
    product_ids: &[Uuid],
) -> Result<HashMap<Uuid, String>, sqlx::Error> {
    if product_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let products = padded(product_ids);
    let text = format!(
        "SELECT product_id, name FROM catalog WHERE product_id IN ({})",
        placeholders(1, products.len())
    );
    let mut query = sqlx::query_as::<_, (String, String)>(db.sql_owned(text));
    for id in &products {
        query = query.bind(id.to_string());
    }
    let rows = query.fetch_all(conn).await?;
    Ok(rows.into_iter().filter_map(|(id, name)| Some((Uuid::parse_str(&id).ok()?, name))).collect())
}
