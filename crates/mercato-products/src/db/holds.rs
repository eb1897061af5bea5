//! What each order holds: `order_holds` (one row per order seen, with the latest version applied)
//! and `reservation_lines` (the units a `held` order holds, per product).

use std::collections::BTreeMap;

use mercato_store::dialect::{padded_len, placeholders, power_of_two_chunks, value_rows};
use mercato_store::sqlx::{self, AnyConnection};
use mercato_store::{Backend, Database};
use uuid::Uuid;

/// Rows per multi-row `INSERT` (power-of-two sizes up to this; see `power_of_two_chunks`).
const ROWS_PER_INSERT: usize = 64;

/// Where an order stands with this service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldState {
    /// Its lines are reserved.
    Held,
    /// Its latest placement or change could not be reserved; it holds nothing.
    Rejected,
    /// Cancelled: it holds nothing and never will again.
    Cancelled,
}

impl HoldState {
    fn as_str(self) -> &'static str {
        match self {
            Self::Held => "held",
            Self::Rejected => "rejected",
            Self::Cancelled => "cancelled",
        }
    }

    fn parse(raw: &str) -> Result<Self, sqlx::Error> {
        match raw {
            "held" => Ok(Self::Held),
            "rejected" => Ok(Self::Rejected),
            "cancelled" => Ok(Self::Cancelled),
            _ => Err(sqlx::Error::Decode("order_holds.state is corrupt".into())),
        }
    }
}

/// An order's row, read under lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hold {
    pub version: i64,
    pub state: HoldState,
}

/// Reads the order's row and locks it until the transaction ends. Under READ COMMITTED (the
/// level every backend runs at, see ADR 0006) a missing row takes no lock: two transactions
/// that both find none both insert, and the primary key makes the second fail and retry.
pub async fn find_for_update(
    db: &Database,
    conn: &mut AnyConnection,
    order_id: Uuid,
) -> Result<Option<Hold>, sqlx::Error> {
    let text = match db.backend() {
        Backend::Sqlite => {
            db.sql("SELECT order_version, state FROM order_holds WHERE order_id = $1")
        }
        Backend::Postgres | Backend::MySql => {
            db.sql("SELECT order_version, state FROM order_holds WHERE order_id = $1 FOR UPDATE")
        }
    };
    let row: Option<(i64, String)> =
        sqlx::query_as(text).bind(order_id.to_string()).fetch_optional(conn).await?;
    row.map(|(version, state)| Ok(Hold { version, state: HoldState::parse(&state)? })).transpose()
}

/// Which of `order_ids` have a row, locking those until the transaction ends (see
/// [`find_for_update`] for the ones that have none).
pub async fn find_existing(
    db: &Database,
    conn: &mut AnyConnection,
    order_ids: &[Uuid],
) -> Result<Vec<Uuid>, sqlx::Error> {
    if order_ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut ids: Vec<String> = order_ids.iter().map(Uuid::to_string).collect();
    ids.sort_unstable();
    let last = ids[ids.len() - 1].clone();
    ids.resize(padded_len(ids.len()), last);
    let lock = if db.backend() == Backend::Sqlite { "" } else { " FOR UPDATE" };
    let text = format!(
        "SELECT order_id FROM order_holds WHERE order_id IN ({}) ORDER BY order_id{lock}",
        placeholders(1, ids.len())
    );
    let mut query = sqlx::query_as::<_, (String,)>(db.sql_owned(text));
    for id in &ids {
        query = query.bind(id.as_str());
    }
    query
        .fetch_all(conn)
        .await?
        .into_iter()
        .map(|(id,)| {
            Uuid::parse_str(&id)
                .map_err(|_| sqlx::Error::Decode("order_holds.order_id is corrupt".into()))
        })
        .collect()
}

/// Inserts the rows of orders this service has not seen before.
pub async fn insert_many(
    db: &Database,
    conn: &mut AnyConnection,
    holds: &[(Uuid, Hold)],
    now_millis: i64,
) -> Result<(), sqlx::Error> {
    for chunk in power_of_two_chunks(holds, ROWS_PER_INSERT) {
        let text = format!(
            "INSERT INTO order_holds (order_version, state, updated_at, order_id) VALUES {}",
            value_rows(chunk.len(), 4)
        );
        let mut insert = sqlx::query(db.sql_owned(text));
        for (order_id, hold) in chunk {
            insert = insert
                .bind(hold.version)
                .bind(hold.state.as_str())
                .bind(now_millis)
                .bind(order_id.to_string());
        }
        insert.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Records the lines of orders that have none yet: `(order, product, units)` rows.
pub async fn insert_lines_many(
    db: &Database,
    conn: &mut AnyConnection,
    lines: &[(Uuid, Uuid, i64)],
) -> Result<(), sqlx::Error> {
    for chunk in power_of_two_chunks(lines, ROWS_PER_INSERT) {
        let text = format!(
            "INSERT INTO reservation_lines (order_id, product_id, quantity) VALUES {}",
            value_rows(chunk.len(), 3)
        );
        let mut insert = sqlx::query(db.sql_owned(text));
        for (order_id, product_id, quantity) in chunk {
            insert = insert.bind(order_id.to_string()).bind(product_id.to_string()).bind(*quantity);
        }
        insert.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Writes the order's row (insert or update).
pub async fn save(
    db: &Database,
    conn: &mut AnyConnection,
    order_id: Uuid,
    hold: Hold,
    existed: bool,
    now_millis: i64,
) -> Result<(), sqlx::Error> {
    let text = if existed {
        db.sql("UPDATE order_holds SET order_version = $1, state = $2, updated_at = $3 WHERE order_id = $4")
    } else {
        db.sql(
            "INSERT INTO order_holds (order_version, state, updated_at, order_id) \
             VALUES ($1, $2, $3, $4)",
        )
    };
    sqlx::query(text)
        .bind(hold.version)
        .bind(hold.state.as_str())
        .bind(now_millis)
        .bind(order_id.to_string())
        .execute(conn)
        .await?;
    Ok(())
}

/// The units the order holds, per product.
pub async fn lines(
    db: &Database,
    conn: &mut AnyConnection,
    order_id: Uuid,
) -> Result<BTreeMap<Uuid, i64>, sqlx::Error> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        db.sql("SELECT product_id, quantity FROM reservation_lines WHERE order_id = $1"),
    )
    .bind(order_id.to_string())
    .fetch_all(conn)
    .await?;
    rows.into_iter()
        .map(|(product, quantity)| {
            let product = Uuid::parse_str(&product).map_err(|_| {
                sqlx::Error::Decode("reservation_lines.product_id is corrupt".into())
            })?;
            Ok((product, quantity))
        })
        .collect()
}

/// Forgets every line of the order.
pub async fn delete_lines(
    db: &Database,
    conn: &mut AnyConnection,
    order_id: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query(db.sql("DELETE FROM reservation_lines WHERE order_id = $1"))
        .bind(order_id.to_string())
        .execute(conn)
        .await?;
    Ok(())
}

/// Records the order's lines (it has none yet).
pub async fn insert_lines(
    db: &Database,
    conn: &mut AnyConnection,
    order_id: Uuid,
    lines: &BTreeMap<Uuid, i64>,
) -> Result<(), sqlx::Error> {
    if lines.is_empty() {
        return Ok(());
    }
    let rows: Vec<String> = (0..lines.len())
        .map(|i| format!("(${}, ${}, ${})", 3 * i + 1, 3 * i + 2, 3 * i + 3))
        .collect();
    let text = format!(
        "INSERT INTO reservation_lines (order_id, product_id, quantity) VALUES {}",
        rows.join(", ")
    );
    let mut insert = sqlx::query(db.sql_owned(text));
    for (product, quantity) in lines {
        insert = insert.bind(order_id.to_string()).bind(product.to_string()).bind(*quantity);
    }
    insert.execute(conn).await?;
    Ok(())
}

/// Units held per product across every order (for the conservation checks of tests and ops).
pub async fn held_per_product(
    db: &Database,
    conn: &mut AnyConnection,
) -> Result<BTreeMap<Uuid, i64>, sqlx::Error> {
    // Summed here rather than with SUM(), whose result type differs between backends.
    let rows: Vec<(String, i64)> =
        sqlx::query_as(db.sql("SELECT product_id, quantity FROM reservation_lines"))
            .fetch_all(conn)
            .await?;
    let mut held = BTreeMap::new();
    for (product, quantity) in rows {
        let product = Uuid::parse_str(&product)
            .map_err(|_| sqlx::Error::Decode("reservation_lines.product_id is corrupt".into()))?;
        *held.entry(product).or_insert(0) += quantity;
    }
    Ok(held)
}
