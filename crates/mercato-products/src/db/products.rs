//! The `products` table.

use std::collections::BTreeMap;

use mercato_platform::money::Money;
use mercato_platform::time::Timestamp;
use mercato_store::sqlx::{self, AnyConnection, FromRow};
use mercato_store::{Backend, Database, dialect};
use uuid::Uuid;

/// A stored product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    pub id: Uuid,
    pub sku: String,
    pub name: String,
    pub description: Option<String>,
    pub category: Option<String>,
    pub price: Money,
    pub stock: i64,
    pub active: bool,
    pub version: i64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

const COLUMNS: &str = "id, sku, name, description, category, price_cents, stock, active, version, \
                       created_at, updated_at";

#[derive(FromRow)]
struct ProductRow {
    id: String,
    sku: String,
    name: String,
    description: Option<String>,
    category: Option<String>,
    price_cents: i64,
    stock: i64,
    active: i16,
    version: i64,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<ProductRow> for Product {
    type Error = sqlx::Error;

    fn try_from(row: ProductRow) -> Result<Self, Self::Error> {
        Ok(Self {
            id: Uuid::parse_str(&row.id)
                .map_err(|_| sqlx::Error::Decode("products.id is corrupt".into()))?,
            sku: row.sku,
            name: row.name,
            description: row.description,
            category: row.category,
            price: Money::from_cents(row.price_cents),
            stock: row.stock,
            active: row.active != 0,
            version: row.version,
            created_at: Timestamp::from_millis(row.created_at),
            updated_at: Timestamp::from_millis(row.updated_at),
        })
    }
}

fn lower(text: Option<&str>) -> Option<String> {
    text.map(str::to_lowercase)
}

/// What `q=` searches: name, description and sku, lower-cased here (SQLite's `LOWER` knows only
/// ASCII).
fn search_text(product: &Product) -> String {
    format!(
        "{}\n{}\n{}",
        product.name.to_lowercase(),
        product.description.as_deref().unwrap_or_default().to_lowercase(),
        product.sku.to_lowercase()
    )
}

/// Inserts a new product; a taken sku is a unique violation the caller turns into `409`.
#[tracing::instrument(skip_all, fields(product_id = %product.id))]
pub async fn insert(
    db: &Database,
    conn: &mut AnyConnection,
    product: &Product,
) -> Result<(), sqlx::Error> {
    sqlx::query(db.sql(
        "INSERT INTO products (id, sku, sku_lower, name, description, category, category_lower, \
         price_cents, stock, active, version, created_at, updated_at, search_text) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
    ))
    .bind(product.id.to_string())
    .bind(&product.sku)
    .bind(product.sku.to_lowercase())
    .bind(&product.name)
    .bind(product.description.as_deref())
    .bind(product.category.as_deref())
    .bind(lower(product.category.as_deref()))
    .bind(product.price.cents())
    .bind(product.stock)
    .bind(i16::from(product.active))
    .bind(product.version)
    .bind(product.created_at.millis())
    .bind(product.updated_at.millis())
    .bind(search_text(product))
    .execute(conn)
    .await?;
    Ok(())
}

#[tracing::instrument(skip_all, fields(product_id = %id))]
pub async fn find(
    db: &Database,
    conn: &mut AnyConnection,
    id: Uuid,
) -> Result<Option<Product>, sqlx::Error> {
    let row = sqlx::query_as::<_, ProductRow>(db.sql(
        "SELECT id, sku, name, description, category, price_cents, stock, active, version, \
         created_at, updated_at FROM products WHERE id = $1",
    ))
    .bind(id.to_string())
    .fetch_optional(conn)
    .await?;
    row.map(Product::try_from).transpose()
}

/// Reads the product and locks its row until the transaction ends.
#[tracing::instrument(skip_all, fields(product_id = %id))]
pub async fn find_for_update(
    db: &Database,
    conn: &mut AnyConnection,
    id: Uuid,
) -> Result<Option<Product>, sqlx::Error> {
    let text = match db.backend() {
        Backend::Sqlite => db.sql(
            "SELECT id, sku, name, description, category, price_cents, stock, active, version, \
             created_at, updated_at FROM products WHERE id = $1",
        ),
        Backend::Postgres | Backend::MySql => db.sql(
            "SELECT id, sku, name, description, category, price_cents, stock, active, version, \
             created_at, updated_at FROM products WHERE id = $1 FOR UPDATE",
        ),
    };
    let row =
        sqlx::query_as::<_, ProductRow>(text).bind(id.to_string()).fetch_optional(conn).await?;
    row.map(Product::try_from).transpose()
}

/// The products among `ids` (each once), in id order, optionally locked (in that order, so two
/// transactions locking overlapping sets cannot deadlock).
pub async fn find_many(
    db: &Database,
    conn: &mut AnyConnection,
    ids: &[Uuid],
    lock: bool,
) -> Result<Vec<Product>, sqlx::Error> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut sorted: Vec<String> = ids.iter().map(Uuid::to_string).collect();
    sorted.sort_unstable();
    sorted.dedup();
    // Padded to a power of two with the last id: a few statement texts, not one per count.
    let last = sorted[sorted.len() - 1].clone();
    sorted.resize(dialect::padded_len(sorted.len()), last);
    let placeholders: Vec<String> = (1..=sorted.len()).map(|n| format!("${n}")).collect();
    let lock = if lock && db.backend() != Backend::Sqlite { " FOR UPDATE" } else { "" };
    let text = format!(
        "SELECT {COLUMNS} FROM products WHERE id IN ({}) ORDER BY id{lock}",
        placeholders.join(", ")
    );
    let mut query = sqlx::query_as::<_, ProductRow>(db.sql_owned(text));
    for id in &sorted {
        query = query.bind(id.as_str());
    }
    query.fetch_all(conn).await?.into_iter().map(Product::try_from).collect()
}

/// Writes the descriptive columns, `active`, version and timestamp of `product` (the caller
/// applied the change to a row it locked). Stock moves only through [`add_stock`] and
/// [`add_stock_many`].
#[tracing::instrument(skip_all, fields(product_id = %product.id))]
pub async fn update_details(
    db: &Database,
    conn: &mut AnyConnection,
    product: &Product,
) -> Result<(), sqlx::Error> {
    sqlx::query(db.sql(
        "UPDATE products SET sku = $1, sku_lower = $2, name = $3, description = $4, \
         category = $5, category_lower = $6, price_cents = $7, active = $8, version = $9, \
         updated_at = $10, search_text = $11 WHERE id = $12",
    ))
    .bind(&product.sku)
    .bind(product.sku.to_lowercase())
    .bind(&product.name)
    .bind(product.description.as_deref())
    .bind(product.category.as_deref())
    .bind(lower(product.category.as_deref()))
    .bind(product.price.cents())
    .bind(i16::from(product.active))
    .bind(product.version)
    .bind(product.updated_at.millis())
    .bind(search_text(product))
    .bind(product.id.to_string())
    .execute(conn)
    .await?;
    Ok(())
}

/// Moves stock by `delta` only if it stays at or above zero, bumping the version; `false` when
/// it would not (or there is no such product).
pub async fn add_stock(
    db: &Database,
    conn: &mut AnyConnection,
    id: Uuid,
    delta: i64,
    now: Timestamp,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(db.sql(
        "UPDATE products SET stock = stock + $1, version = version + 1, updated_at = $2 \
         WHERE id = $3 AND stock + $4 >= 0",
    ))
    .bind(delta)
    .bind(now.millis())
    .bind(id.to_string())
    .bind(delta)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Moves the stock of every product in `deltas` by its delta in one statement, bumping each
/// version, only if every one of them exists and stays at or above zero; `false` (and nothing
/// changed) when one would not. The reservation handler's way to move the stocks of an order's
/// products: one round trip instead of one per product.
///
/// Two guards. A subquery counts the products that would stay at or above zero and lets the
/// update through only when that is all of them, so a refusal changes nothing (a per-row
/// condition alone would move the others and leave the caller to roll back). It is evaluated
/// once per statement, on PostgreSQL against the statement's snapshot, so it is exact for rows
/// the caller has locked (`find_many(.., true)`, as the reservation handler does); the per-row
/// `stock + delta >= 0`, which PostgreSQL re-checks on a row changed concurrently, keeps any
/// stock from going below zero even for rows that are not. The subquery reads a derived table
/// because MySQL refuses a subquery over the table being updated (error 1093) unless it is
/// materialised that way; MariaDB, PostgreSQL and SQLite take either form.
#[tracing::instrument(skip_all, fields(products = deltas.len()))]
pub async fn add_stock_many(
    db: &Database,
    conn: &mut AnyConnection,
    deltas: &BTreeMap<Uuid, i64>,
    now: Timestamp,
) -> Result<bool, sqlx::Error> {
    if deltas.is_empty() {
        return Ok(true);
    }
    // `$N` placeholders must appear once each, in increasing order (the MySQL rewrite binds by
    // position), so the CASE and the id list are repeated with numbers of their own and bound
    // again, in the order they appear. The lists are padded to a power of two by repeating the
    // last product (a repeated arm or id changes nothing): a few statement texts, not one per
    // count of products.
    let distinct = deltas.len();
    let n = dialect::padded_len(distinct);
    let case = |first: usize| {
        let arms: String = (0..n)
            .map(|i| format!(" WHEN ${} THEN ${}", first + 2 * i, first + 2 * i + 1))
            .collect();
        format!("CASE id{arms} END")
    };
    let list =
        |first: usize| (first..first + n).map(|k| format!("${k}")).collect::<Vec<_>>().join(", ");
    // On MariaDB both reads of `products` are pinned to the primary key. The optimizer may
    // scan the whole table instead (it did over the few rows of the tests), and an UPDATE that
    // reads its own table in a subquery waits on every row it scans, unlike a plain UPDATE,
    // which passes over rows that others locked and it does not match: it would wait on rows
    // other reservations locked while they wait on ours, a deadlock. On the key it reads only
    // the rows named, which the caller has locked already.
    let table = match db.backend() {
        Backend::MySql => "products FORCE INDEX (PRIMARY)",
        Backend::Sqlite | Backend::Postgres => "products",
    };
    let text = format!(
        "UPDATE {table} SET stock = stock + {}, version = version + 1, updated_at = ${} \
         WHERE id IN ({}) AND stock + {} >= 0 \
         AND (SELECT COUNT(*) FROM (SELECT id FROM {table} \
         WHERE id IN ({}) AND stock + {} >= 0) AS fitting) = ${}",
        case(1),
        2 * n + 1,
        list(2 * n + 2),
        case(3 * n + 2),
        list(5 * n + 2),
        case(6 * n + 2),
        8 * n + 2,
    );
    let mut ids: Vec<String> = deltas.keys().map(Uuid::to_string).collect();
    let mut values: Vec<i64> = deltas.values().copied().collect();
    let (last_id, last_delta) = (ids[distinct - 1].clone(), values[distinct - 1]);
    ids.resize(n, last_id);
    values.resize(n, last_delta);
    let arms: Vec<(&str, i64)> = ids.iter().map(String::as_str).zip(values).collect();
    let mut update = sqlx::query(db.sql_owned(text));
    for (id, delta) in &arms {
        update = update.bind(*id).bind(*delta);
    }
    update = update.bind(now.millis());
    for id in &ids {
        update = update.bind(id.as_str());
    }
    for (id, delta) in &arms {
        update = update.bind(*id).bind(*delta);
    }
    for id in &ids {
        update = update.bind(id.as_str());
    }
    for (id, delta) in &arms {
        update = update.bind(*id).bind(*delta);
    }
    let count = i64::try_from(distinct).unwrap_or(i64::MAX);
    let done = update.bind(count).execute(conn).await?;
    // Every row matched also changes (its version moves), so MySQL's count of changed rows
    // equals the count of matched rows the other backends report.
    Ok(done.rows_affected() == distinct as u64)
}

/// What a list may be narrowed by.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Case-insensitive substring of name, description or sku.
    pub search: Option<String>,
    /// Exact category, case-insensitive.
    pub category: Option<String>,
    pub min_price: Option<Money>,
    pub max_price: Option<Money>,
    /// `Some(true)`: stock above zero; `Some(false)`: none left.
    pub in_stock: Option<bool>,
}

/// One page of active products in id (= creation) order after `after`, fetching `limit + 1`
/// rows (see `Page`). With `ids`, exactly those products (active or not), no paging.
pub async fn list(
    db: &Database,
    conn: &mut AnyConnection,
    filter: &Filter,
    ids: Option<&[Uuid]>,
    after: Option<Uuid>,
    limit: u32,
) -> Result<Vec<Product>, sqlx::Error> {
    let mut conditions = Vec::new();
    let mut binds: Vec<Bind> = Vec::new();
    let next = |value: Bind, binds: &mut Vec<Bind>| {
        binds.push(value);
        format!("${}", binds.len())
    };
    match ids {
        Some(ids) => {
            let mut listed = Vec::with_capacity(ids.len());
            for id in ids {
                listed.push(next(Bind::Text(id.to_string()), &mut binds));
            }
            conditions.push(format!("id IN ({})", listed.join(", ")));
        }
        None => {
            conditions.push("active = 1".to_owned());
            if let Some(after) = after {
                let n = next(Bind::Text(after.to_string()), &mut binds);
                conditions.push(format!("id > {n}"));
            }
        }
    }
    if let Some(search) = &filter.search {
        let n = next(Bind::Text(dialect::like_contains(&search.to_lowercase())), &mut binds);
        conditions.push(format!("search_text LIKE {n} ESCAPE '!'"));
    }
    if let Some(category) = &filter.category {
        let n = next(Bind::Text(category.to_lowercase()), &mut binds);
        conditions.push(format!("category_lower = {n}"));
    }
    if let Some(min) = filter.min_price {
        let n = next(Bind::Int(min.cents()), &mut binds);
        conditions.push(format!("price_cents >= {n}"));
    }
    if let Some(max) = filter.max_price {
        let n = next(Bind::Int(max.cents()), &mut binds);
        conditions.push(format!("price_cents <= {n}"));
    }
    match filter.in_stock {
        Some(true) => conditions.push("stock > 0".to_owned()),
        Some(false) => conditions.push("stock = 0".to_owned()),
        None => {}
    }
    let mut text =
        format!("SELECT {COLUMNS} FROM products WHERE {} ORDER BY id", conditions.join(" AND "));
    if ids.is_none() {
        let n = next(Bind::Int(i64::from(limit) + 1), &mut binds);
        text.push_str(&format!(" LIMIT {n}"));
    }
    let mut query = sqlx::query_as::<_, ProductRow>(db.sql_owned(text));
    for bind in binds {
        query = match bind {
            Bind::Text(text) => query.bind(text),
            Bind::Int(int) => query.bind(int),
        };
    }
    query.fetch_all(conn).await?.into_iter().map(Product::try_from).collect()
}

enum Bind {
    Text(String),
    Int(i64),
}
