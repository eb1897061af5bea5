//! The `orders` table.

use mercato_platform::money::Money;
use mercato_platform::time::Timestamp;
use mercato_store::dialect::{padded_len, placeholders, power_of_two_chunks, value_rows};
use mercato_store::sqlx::{self, AnyConnection, FromRow};
use mercato_store::{Backend, Database};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::db::for_update;
use crate::order::{Address, Line, Order, Previous, Status, UpdateRejection};

const COLUMNS: &str = "id, user_id, status, items, total_cents, shipping_address, payment_method, \
                       rejection_reason, last_update_rejection, version, awaiting_version, \
                       previous_items, previous_total_cents, stock_released, created_at, updated_at";

#[derive(FromRow)]
struct OrderRow {
    id: String,
    user_id: String,
    status: String,
    items: String,
    total_cents: Option<i64>,
    shipping_address: Option<String>,
    payment_method: Option<String>,
    rejection_reason: Option<String>,
    last_update_rejection: Option<String>,
    version: i64,
    awaiting_version: Option<i64>,
    previous_items: Option<String>,
    previous_total_cents: Option<i64>,
    stock_released: i16,
    created_at: i64,
    updated_at: i64,
}

/// `lastUpdateRejection` as stored.
#[derive(Serialize, Deserialize)]
struct StoredRejection {
    reason: String,
    #[serde(rename = "productId")]
    product_id: Option<Uuid>,
    at: i64,
}

fn corrupt(what: &str) -> sqlx::Error {
    sqlx::Error::Decode(format!("orders.{what} is corrupt").into())
}

fn json<T: Serialize>(value: &T) -> String {
    // Plain data with string keys: serializing it cannot fail.
    serde_json::to_string(value).unwrap_or_default()
}

fn parse_json<T: for<'de> Deserialize<'de>>(text: &str, what: &str) -> Result<T, sqlx::Error> {
    serde_json::from_str(text).map_err(|_| corrupt(what))
}

impl TryFrom<OrderRow> for Order {
    type Error = sqlx::Error;

    fn try_from(row: OrderRow) -> Result<Self, Self::Error> {
        let uuid = |text: &str, what| Uuid::parse_str(text).map_err(|_| corrupt(what));
        let previous = match row.previous_items {
            Some(items) => Some(Previous {
                items: parse_json(&items, "previous_items")?,
                total: row.previous_total_cents.map(Money::from_cents),
            }),
            None => None,
        };
        let rejection = row
            .last_update_rejection
            .map(|text| parse_json::<StoredRejection>(&text, "last_update_rejection"))
            .transpose()?
            .map(|stored| UpdateRejection {
                reason: stored.reason,
                product_id: stored.product_id,
                at: Timestamp::from_millis(stored.at),
            });
        Ok(Self {
            id: uuid(&row.id, "id")?,
            user_id: uuid(&row.user_id, "user_id")?,
            status: Status::parse(&row.status).ok_or_else(|| corrupt("status"))?,
            items: parse_json::<Vec<Line>>(&row.items, "items")?,
            total: row.total_cents.map(Money::from_cents),
            shipping_address: row
                .shipping_address
                .map(|text| parse_json::<Address>(&text, "shipping_address"))
                .transpose()?,
            payment_method: row.payment_method,
            rejection_reason: row.rejection_reason,
            last_update_rejection: rejection,
            version: row.version,
            awaiting_version: row.awaiting_version,
            previous,
            stock_released: row.stock_released != 0,
            created_at: Timestamp::from_millis(row.created_at),
            updated_at: Timestamp::from_millis(row.updated_at),
        })
    }
}

fn stored_rejection(order: &Order) -> Option<String> {
    order.last_update_rejection.as_ref().map(|rejection| {
        json(&StoredRejection {
            reason: rejection.reason.clone(),
            product_id: rejection.product_id,
            at: rejection.at.millis(),
        })
    })
}

/// Rows per multi-row `INSERT` of [`insert_all`]: 16 columns each, well under every backend's
/// limit of bound parameters.
const ROWS_PER_INSERT: usize = 64;

/// Inserts new `orders` with multi-row `INSERT`s of at most [`ROWS_PER_INSERT`] rows (of
/// power-of-two sizes: see [`power_of_two_chunks`]).
#[tracing::instrument(skip_all, fields(orders = orders.len()))]
pub async fn insert_all(
    db: &Database,
    conn: &mut AnyConnection,
    orders: &[&Order],
) -> Result<(), sqlx::Error> {
    write_rows(db, conn, orders, "").await
}

/// The columns an order's change writes (all but `id`, `user_id` and `created_at`), as
/// [`update`] writes them.
const CHANGING: [&str; 13] = [
    "status",
    "items",
    "total_cents",
    "shipping_address",
    "payment_method",
    "rejection_reason",
    "last_update_rejection",
    "version",
    "awaiting_version",
    "previous_items",
    "previous_total_cents",
    "stock_released",
    "updated_at",
];

/// Writes every changing column of orders read (and locked) before in the same transaction,
/// with multi-row upserts instead of one [`update`] per order: the rows exist, so each one is
/// updated, never inserted.
#[tracing::instrument(skip_all, fields(orders = orders.len()))]
pub async fn update_all(
    db: &Database,
    conn: &mut AnyConnection,
    orders: &[&Order],
) -> Result<(), sqlx::Error> {
    let upsert = match db.backend() {
        Backend::MySql => {
            let set: Vec<String> = CHANGING.iter().map(|c| format!("{c} = VALUES({c})")).collect();
            format!(" ON DUPLICATE KEY UPDATE {}", set.join(", "))
        }
        Backend::Sqlite | Backend::Postgres => {
            let set: Vec<String> = CHANGING.iter().map(|c| format!("{c} = excluded.{c}")).collect();
            format!(" ON CONFLICT (id) DO UPDATE SET {}", set.join(", "))
        }
    };
    write_rows(db, conn, orders, &upsert).await
}

/// Multi-row `INSERT`s of every column of `orders`, followed by `tail` (an upsert clause).
async fn write_rows(
    db: &Database,
    conn: &mut AnyConnection,
    orders: &[&Order],
    tail: &str,
) -> Result<(), sqlx::Error> {
    for chunk in power_of_two_chunks(orders, ROWS_PER_INSERT) {
        let text =
            format!("INSERT INTO orders ({COLUMNS}) VALUES {}{tail}", value_rows(chunk.len(), 16));
        let mut insert = sqlx::query(db.sql_owned(text));
        for order in chunk {
            insert = insert
                .bind(order.id.to_string())
                .bind(order.user_id.to_string())
                .bind(order.status.as_str())
                .bind(json(&order.items))
                .bind(order.total.map(Money::cents))
                .bind(order.shipping_address.as_ref().map(json))
                .bind(order.payment_method.clone())
                .bind(order.rejection_reason.clone())
                .bind(stored_rejection(order))
                .bind(order.version)
                .bind(order.awaiting_version)
                .bind(order.previous.as_ref().map(|previous| json(&previous.items)))
                .bind(order.previous.as_ref().and_then(|previous| previous.total).map(Money::cents))
                .bind(i16::from(order.stock_released))
                .bind(order.created_at.millis())
                .bind(order.updated_at.millis());
        }
        insert.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Writes every changing column of an order read before in the same transaction.
#[tracing::instrument(skip_all, fields(order_id = %order.id))]
pub async fn update(
    db: &Database,
    conn: &mut AnyConnection,
    order: &Order,
) -> Result<(), sqlx::Error> {
    sqlx::query(db.sql(
        "UPDATE orders SET status = $1, items = $2, total_cents = $3, shipping_address = $4, \
         payment_method = $5, rejection_reason = $6, last_update_rejection = $7, version = $8, \
         awaiting_version = $9, previous_items = $10, previous_total_cents = $11, \
         stock_released = $12, updated_at = $13 WHERE id = $14",
    ))
    .bind(order.status.as_str())
    .bind(json(&order.items))
    .bind(order.total.map(Money::cents))
    .bind(order.shipping_address.as_ref().map(json))
    .bind(order.payment_method.as_deref())
    .bind(order.rejection_reason.as_deref())
    .bind(stored_rejection(order))
    .bind(order.version)
    .bind(order.awaiting_version)
    .bind(order.previous.as_ref().map(|previous| json(&previous.items)))
    .bind(order.previous.as_ref().and_then(|previous| previous.total).map(Money::cents))
    .bind(i16::from(order.stock_released))
    .bind(order.updated_at.millis())
    .bind(order.id.to_string())
    .execute(conn)
    .await?;
    Ok(())
}

#[tracing::instrument(skip_all, fields(order_id = %id))]
pub async fn find(
    db: &Database,
    conn: &mut AnyConnection,
    id: Uuid,
) -> Result<Option<Order>, sqlx::Error> {
    let text = format!("SELECT {COLUMNS} FROM orders WHERE id = $1");
    let row = sqlx::query_as::<_, OrderRow>(db.sql_owned(text))
        .bind(id.to_string())
        .fetch_optional(conn)
        .await?;
    row.map(Order::try_from).transpose()
}

/// Reads an order and locks it until the transaction ends.
#[tracing::instrument(skip_all, fields(order_id = %id))]
pub async fn find_for_update(
    db: &Database,
    conn: &mut AnyConnection,
    id: Uuid,
) -> Result<Option<Order>, sqlx::Error> {
    let text = format!("SELECT {COLUMNS} FROM orders WHERE id = $1{}", for_update(db));
    let row = sqlx::query_as::<_, OrderRow>(db.sql_owned(text))
        .bind(id.to_string())
        .fetch_optional(conn)
        .await?;
    row.map(Order::try_from).transpose()
}

/// The orders of `ids` that exist, locked (in id order, as every writer locks them).
pub async fn find_many_for_update(
    db: &Database,
    conn: &mut AnyConnection,
    ids: &[Uuid],
) -> Result<Vec<Order>, sqlx::Error> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut ids: Vec<String> = ids.iter().map(Uuid::to_string).collect();
    ids.sort_unstable();
    ids.dedup();
    // Padded to a power of two with the last id: a few statement texts, not one per count.
    let last = ids[ids.len() - 1].clone();
    ids.resize(padded_len(ids.len()), last);
    let text = format!(
        "SELECT {COLUMNS} FROM orders WHERE id IN ({}) ORDER BY id{}",
        placeholders(1, ids.len()),
        for_update(db)
    );
    let mut query = sqlx::query_as::<_, OrderRow>(db.sql_owned(text));
    for id in &ids {
        query = query.bind(id.as_str());
    }
    query.fetch_all(conn).await?.into_iter().map(Order::try_from).collect()
}

/// A user's `pending` and `confirmed` orders, locked: what deleting the user cancels.
pub async fn open_of_user_for_update(
    db: &Database,
    conn: &mut AnyConnection,
    user_id: Uuid,
) -> Result<Vec<Order>, sqlx::Error> {
    let text = format!(
        "SELECT {COLUMNS} FROM orders WHERE user_id = $1 AND status IN ('pending', 'confirmed') \
         ORDER BY id{}",
        for_update(db)
    );
    let rows = sqlx::query_as::<_, OrderRow>(db.sql_owned(text))
        .bind(user_id.to_string())
        .fetch_all(conn)
        .await?;
    rows.into_iter().map(Order::try_from).collect()
}

/// What a list shows.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub user_id: Option<Uuid>,
    pub status: Option<Status>,
    /// The `(created_at, id)` of the last order of the previous page.
    pub before: Option<(i64, Uuid)>,
}

/// The newest `limit` orders of each of `users` (optionally of one status), in one query: a
/// window per user. Grouped by user, newest first within each.
pub async fn newest_of_each(
    db: &Database,
    conn: &mut AnyConnection,
    users: &[Uuid],
    status: Option<Status>,
    limit: u32,
) -> Result<Vec<Order>, sqlx::Error> {
    if users.is_empty() {
        return Ok(Vec::new());
    }
    let placeholders: Vec<String> = (1..=users.len()).map(|n| format!("${n}")).collect();
    let mut n = users.len();
    let status_filter = match status {
        Some(_) => {
            n += 1;
            format!(" AND status = ${n}")
        }
        None => String::new(),
    };
    let text = format!(
        "SELECT {COLUMNS} FROM (SELECT {COLUMNS}, ROW_NUMBER() OVER \
         (PARTITION BY user_id ORDER BY created_at DESC, id DESC) AS position FROM orders \
         WHERE user_id IN ({}){status_filter}) ranked WHERE position <= ${} \
         ORDER BY user_id, created_at DESC, id DESC",
        placeholders.join(", "),
        n + 1
    );
    let mut query = sqlx::query_as::<_, OrderRow>(db.sql_owned(text));
    for user in users {
        query = query.bind(user.to_string());
    }
    if let Some(status) = status {
        query = query.bind(status.as_str());
    }
    let rows = query.bind(i64::from(limit)).fetch_all(conn).await?;
    rows.into_iter().map(Order::try_from).collect()
}

/// Up to `limit` orders, newest first (`created_at`, then id).
pub async fn list(
    db: &Database,
    conn: &mut AnyConnection,
    filter: &Filter,
    limit: u32,
) -> Result<Vec<Order>, sqlx::Error> {
    let mut text = format!("SELECT {COLUMNS} FROM orders WHERE 1 = 1");
    let mut n = 0;
    let mut next = || {
        n += 1;
        n
    };
    if filter.user_id.is_some() {
        text.push_str(&format!(" AND user_id = ${}", next()));
    }
    if filter.status.is_some() {
        text.push_str(&format!(" AND status = ${}", next()));
    }
    if filter.before.is_some() {
        let (a, b, c) = (next(), next(), next());
        text.push_str(&format!(" AND (created_at < ${a} OR (created_at = ${b} AND id < ${c}))"));
    }
    text.push_str(&format!(" ORDER BY created_at DESC, id DESC LIMIT ${}", next()));
    let mut query = sqlx::query_as::<_, OrderRow>(db.sql_owned(text));
    if let Some(user_id) = filter.user_id {
        query = query.bind(user_id.to_string());
    }
    if let Some(status) = filter.status {
        query = query.bind(status.as_str());
    }
    if let Some((created_at, id)) = filter.before {
        query = query.bind(created_at).bind(created_at).bind(id.to_string());
    }
    let rows = query.bind(i64::from(limit)).fetch_all(conn).await?;
    rows.into_iter().map(Order::try_from).collect()
}
