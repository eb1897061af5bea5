//! What a run needs on the server, made through the public API only (never in a database, so
//! the bench works against any deployment): the admin's session, products with stock for the
//! whole run, customers registered with emails unique to the run, and for the GraphQL order
//! page a few settled orders.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, anyhow, bail};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::args::Plan;
use crate::client::{Account, Api, require};
use crate::progress::Counter;
use crate::scenario::HOLD;

/// The variables that name the admin, the same ones `mercato up` makes its bootstrap admin from.
pub const ADMIN_EMAIL_VAR: &str = "MERCATO_ADMIN_EMAIL";
pub const ADMIN_PASSWORD_VAR: &str = "MERCATO_ADMIN_PASSWORD";

/// The stock of each product: the most the contract allows, so no run runs out.
pub const STOCK: i64 = 1_000_000_000;
/// Orders made for the GraphQL order page (one page of `orders(first: 20)`).
const PAGE_ORDERS: usize = 20;
/// Fixture requests in flight at once.
const PARALLEL: usize = 8;

/// The admin's email and password.
#[derive(Debug, Clone)]
pub struct AdminCredentials {
    pub email: String,
    pub password: String,
}

impl AdminCredentials {
    pub fn from_env() -> anyhow::Result<Self> {
        Self::from_values(
            std::env::var(ADMIN_EMAIL_VAR).ok(),
            std::env::var(ADMIN_PASSWORD_VAR).ok(),
        )
    }

    pub fn from_values(email: Option<String>, password: Option<String>) -> anyhow::Result<Self> {
        match (email.filter(|e| !e.trim().is_empty()), password.filter(|p| !p.is_empty())) {
            (Some(email), Some(password)) => Ok(Self { email, password }),
            (email, _) => {
                let missing = if email.is_none() { ADMIN_EMAIL_VAR } else { ADMIN_PASSWORD_VAR };
                bail!(
                    "{missing} is not set: mercato bench creates its products as an admin; set \
                     {ADMIN_EMAIL_VAR} and {ADMIN_PASSWORD_VAR} to an admin account of the server \
                     (the ones `mercato up` was started with)"
                )
            }
        }
    }
}

/// A product made for the run.
#[derive(Debug, Clone)]
pub struct Product {
    pub id: String,
    pub initial_stock: i64,
}

/// Everything made for the run.
#[derive(Debug)]
pub struct Fixtures {
    /// Unique to the run: in the customers' emails and the products' names.
    pub run_id: String,
    pub seed: u64,
    pub admin: Account,
    pub products: Vec<Product>,
    pub customers: Vec<Arc<Account>>,
    /// Orders placed while making the fixtures.
    pub orders: usize,
}

/// Makes the fixtures of `plan`, showing progress on stderr.
pub async fn create(api: &Api, plan: &Plan, admin: &AdminCredentials) -> anyhow::Result<Fixtures> {
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| since.as_nanos() as u64)
        .unwrap_or_default()
        ^ (u64::from(std::process::id()) << 40);
    let run_id = format!("{:012x}", seed & 0xFFFF_FFFF_FFFF);

    let admin = Account::sign_in(api, &admin.email, &admin.password).await.with_context(|| {
        format!(
            "cannot sign in as the admin at {} (check the URL, and that {ADMIN_EMAIL_VAR} and \
             {ADMIN_PASSWORD_VAR} name an admin account of that server)",
            api.base()
        )
    })?;
    if admin.role != "admin" {
        bail!(
            "{} is not an admin (role `{}`): {ADMIN_EMAIL_VAR} must name an admin account",
            admin.email,
            admin.role
        );
    }
    let admin_token =
        admin.token(api).await.map_err(|failure| anyhow!("admin token: {failure}"))?;

    let products = create_products(api, plan, &run_id, &admin_token).await?;
    let customers = create_customers(api, plan.customers, &run_id).await?;
    let mut orders = 0;
    if plan.scenario.needs_orders() {
        orders = place_orders(api, &products, &customers).await?;
    }
    Ok(Fixtures { run_id, seed, admin, products, customers, orders })
}

async fn create_products(
    api: &Api,
    plan: &Plan,
    run_id: &str,
    admin_token: &str,
) -> anyhow::Result<Vec<Product>> {
    let counter = Counter::start("products", plan.products);
    let mut products = Vec::with_capacity(plan.products);
    let mut pending = JoinSet::new();
    for index in 0..plan.products {
        if pending.len() >= PARALLEL {
            products.push(joined(pending.join_next().await)?);
            counter.tick();
        }
        let request =
            api.request(Method::POST, "/api/products").bearer_auth(admin_token).json(&json!({
                "name": format!("Bench {run_id} product {index}"),
                "price": format!("{}.{:02}", 1 + index % 50, (index * 7) % 100),
                "stock": STOCK,
                "category": "bench",
                "description": "made by mercato bench",
            }));
        pending.spawn(async move {
            let created = require(request, StatusCode::CREATED, "creating a product").await?;
            Ok::<_, anyhow::Error>(Product {
                id: string(&created, "id")?,
                initial_stock: created.get("stock").and_then(Value::as_i64).unwrap_or(STOCK),
            })
        });
    }
    while let Some(done) = pending.join_next().await {
        products.push(joined(Some(done))?);
        counter.tick();
    }
    counter.finish();
    Ok(products)
}

async fn create_customers(
    api: &Api,
    count: usize,
    run_id: &str,
) -> anyhow::Result<Vec<Arc<Account>>> {
    let counter = Counter::start("customers", count);
    let mut customers = Vec::with_capacity(count);
    let mut pending = JoinSet::new();
    for index in 0..count {
        // Registration and login each cost an Argon2id hash: a few at a time is as fast.
        if pending.len() >= PARALLEL / 2 {
            customers.push(joined(pending.join_next().await)?);
            counter.tick();
        }
        let api = api.clone();
        let email = format!("bench-{run_id}-{index}@example.com");
        let password = format!("bench-{run_id}-password");
        pending.spawn(async move {
            let request = api.request(Method::POST, "/api/users").json(&json!({
                "name": format!("Bench customer {index}"),
                "email": email,
                "password": password,
            }));
            require(request, StatusCode::CREATED, "registering a customer").await?;
            Ok::<_, anyhow::Error>(Arc::new(Account::sign_in(&api, &email, &password).await?))
        });
    }
    while let Some(done) = pending.join_next().await {
        customers.push(joined(Some(done))?);
        counter.tick();
    }
    counter.finish();
    Ok(customers)
}

/// A page of settled orders (three lines each) from the customers in turn.
async fn place_orders(
    api: &Api,
    products: &[Product],
    customers: &[Arc<Account>],
) -> anyhow::Result<usize> {
    let counter = Counter::start("orders", PAGE_ORDERS);
    let mut pending = JoinSet::new();
    for index in 0..PAGE_ORDERS {
        if pending.len() >= PARALLEL {
            joined(pending.join_next().await)?;
            counter.tick();
        }
        let customer = customers[index % customers.len()].clone();
        let items: Vec<Value> = (0..3)
            .map(|line| json!({"productId": products[(index + line) % products.len()].id, "quantity": 1}))
            .collect();
        let api = api.clone();
        pending.spawn(async move {
            let token = customer.token(&api).await.map_err(|f| anyhow!("customer token: {f}"))?;
            let request = api
                .request(Method::POST, "/api/orders")
                .bearer_auth(token)
                .header("Prefer", HOLD)
                .json(&json!({"items": items}));
            require(request, StatusCode::CREATED, "placing an order").await?;
            Ok::<_, anyhow::Error>(())
        });
    }
    while let Some(done) = pending.join_next().await {
        joined(Some(done))?;
        counter.tick();
    }
    counter.finish();
    Ok(PAGE_ORDERS)
}

/// The result of a finished fixture task.
fn joined<T>(done: Option<Result<anyhow::Result<T>, tokio::task::JoinError>>) -> anyhow::Result<T> {
    match done {
        Some(result) => result.context("a fixture task failed")?,
        None => Err(anyhow!("no fixture task was running")),
    }
}

fn string(value: &Value, member: &str) -> anyhow::Result<String> {
    value
        .get(member)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("the answer has no `{member}`: {value}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_admin_variables_are_named() {
        let error =
            AdminCredentials::from_values(None, Some("secret".into())).expect_err("missing");
        let message = error.to_string();
        assert!(message.starts_with("MERCATO_ADMIN_EMAIL is not set"), "{message}");
        assert!(message.contains("MERCATO_ADMIN_PASSWORD"), "{message}");
        let error = AdminCredentials::from_values(Some("a@b.c".into()), Some(String::new()))
            .expect_err("x");
        assert!(error.to_string().starts_with("MERCATO_ADMIN_PASSWORD is not set"), "{error}");
        let credentials =
            AdminCredentials::from_values(Some("a@b.c".into()), Some("pw".into())).expect("set");
        assert_eq!(credentials.email, "a@b.c");
    }
}
