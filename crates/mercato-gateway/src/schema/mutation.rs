//! `Mutation`: writes, each one REST call to the owning service, which validates and decides;
//! the gateway checks ids and the caller first so a refused request never reaches a service.

use async_graphql::{Context, ID, Object, Result};
use serde_json::json;

use crate::clients::{OrderTarget, OrderWrite};
use crate::errors::{IntoGraphql, bad_field};
use crate::schema::context::Session;
use crate::schema::ids;
use crate::schema::types::{
    AuthPayload, CreateProductInput, Order, PlaceOrderInput, Product, RegisterInput,
    UpdateOrderInput, UpdateProductInput, UpdateUserInput, User, check_item_ids,
};

#[derive(Debug, Default)]
pub struct Mutation;

/// `waitSeconds` as the orders service's `Prefer: wait=N` (0..30).
fn wait(wait_seconds: Option<i32>) -> Result<Option<u32>> {
    match wait_seconds {
        None => Ok(None),
        Some(seconds) if (0..=30).contains(&seconds) => Ok(u32::try_from(seconds).ok()),
        Some(_) => Err(bad_field("waitSeconds", "must be from 0 to 30")),
    }
}

fn to_json(value: &impl serde::Serialize) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or_default()
}

#[Object]
impl Mutation {
    /// Creates a customer account.
    async fn register_user(&self, ctx: &Context<'_>, input: RegisterInput) -> Result<User> {
        let session = ctx.data::<Session>()?;
        session.services.register(&input, &session.credentials).await.graphql()
    }

    /// Signs in; `UNAUTHENTICATED` on a bad email or password.
    async fn login(
        &self,
        ctx: &Context<'_>,
        email: String,
        password: String,
    ) -> Result<AuthPayload> {
        let session = ctx.data::<Session>()?;
        let body = json!({ "email": email, "password": password });
        session.services.authenticate("login", &body, &session.credentials).await.graphql()
    }

    /// Trades a refresh token for new tokens (the old one is spent).
    async fn refresh_token(&self, ctx: &Context<'_>, refresh_token: String) -> Result<AuthPayload> {
        let session = ctx.data::<Session>()?;
        let body = json!({ "refreshToken": refresh_token });
        session.services.authenticate("refresh", &body, &session.credentials).await.graphql()
    }

    /// Changes oneself (or anyone, for an admin).
    async fn update_user(&self, ctx: &Context<'_>, id: ID, input: UpdateUserInput) -> Result<User> {
        let session = ctx.data::<Session>()?;
        let id = ids::uuid("id", &id)?;
        let caller = session.require()?;
        if input.role.is_some() && !caller.is_admin() {
            return Err(crate::errors::forbidden("only an admin may change a role"));
        }
        session.services.update_user(&id, &input, &session.credentials).await.graphql()
    }

    /// Deletes oneself (or anyone, for an admin); their open orders are cancelled.
    async fn delete_user(&self, ctx: &Context<'_>, id: ID) -> Result<bool> {
        let session = ctx.data::<Session>()?;
        let id = ids::uuid("id", &id)?;
        session.require()?;
        session.services.delete_user(&id, &session.credentials).await.graphql().map(|()| true)
    }

    /// Adds a product to the catalog (admin).
    async fn create_product(
        &self,
        ctx: &Context<'_>,
        input: CreateProductInput,
    ) -> Result<Product> {
        let session = ctx.data::<Session>()?;
        session.require_admin()?;
        session.services.save_product(None, &input, &session.credentials).await.graphql()
    }

    /// Changes a product (admin).
    async fn update_product(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: UpdateProductInput,
    ) -> Result<Product> {
        let session = ctx.data::<Session>()?;
        let id = ids::uuid("id", &id)?;
        session.require_admin()?;
        session.services.save_product(Some(&id), &input, &session.credentials).await.graphql()
    }

    /// Retires a product (admin): hidden from lists, refused in new orders.
    async fn delete_product(&self, ctx: &Context<'_>, id: ID) -> Result<bool> {
        let session = ctx.data::<Session>()?;
        let id = ids::uuid("id", &id)?;
        session.require_admin()?;
        session.services.delete_product(&id, &session.credentials).await.graphql().map(|()| true)
    }

    /// Adds (or, negative, removes) stock (admin); `CONFLICT` below zero.
    async fn adjust_inventory(
        &self,
        ctx: &Context<'_>,
        product_id: ID,
        delta: i32,
    ) -> Result<Product> {
        let session = ctx.data::<Session>()?;
        let id = ids::uuid("productId", &product_id)?;
        session.require_admin()?;
        session
            .services
            .adjust_inventory(&id, i64::from(delta), &session.credentials)
            .await
            .graphql()
    }

    /// Places an order (`pending`; `waitSeconds` holds the answer until it settles).
    async fn place_order(
        &self,
        ctx: &Context<'_>,
        input: PlaceOrderInput,
        idempotency_key: Option<String>,
        wait_seconds: Option<i32>,
    ) -> Result<Order> {
        let session = ctx.data::<Session>()?;
        check_item_ids(&input.items)?;
        if let Some(user_id) = &input.user_id {
            ids::uuid("userId", user_id)?;
        }
        let wait_seconds = wait(wait_seconds)?;
        session.require()?;
        let body = to_json(&input);
        let write = OrderWrite {
            target: OrderTarget::Place(&body),
            idempotency_key: idempotency_key.as_deref(),
            wait_seconds,
        };
        session.services.write_order(write, &session.credentials).await.graphql()
    }

    /// Changes an order's items, address or payment method (admin: also ships and delivers).
    async fn update_order(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: UpdateOrderInput,
        wait_seconds: Option<i32>,
    ) -> Result<Order> {
        let session = ctx.data::<Session>()?;
        let id = ids::uuid("id", &id)?;
        if let Some(items) = &input.items {
            check_item_ids(items)?;
        }
        let wait_seconds = wait(wait_seconds)?;
        session.require()?;
        let body = to_json(&input);
        let write = OrderWrite {
            target: OrderTarget::Change(&id, &body),
            idempotency_key: None,
            wait_seconds,
        };
        session.services.write_order(write, &session.credentials).await.graphql()
    }

    /// Cancels an order; its reserved stock goes back.
    async fn cancel_order(
        &self,
        ctx: &Context<'_>,
        id: ID,
        wait_seconds: Option<i32>,
    ) -> Result<Order> {
        let session = ctx.data::<Session>()?;
        let id = ids::uuid("id", &id)?;
        let wait_seconds = wait(wait_seconds)?;
        session.require()?;
        let write =
            OrderWrite { target: OrderTarget::Cancel(&id), idempotency_key: None, wait_seconds };
        session.services.write_order(write, &session.credentials).await.graphql()
    }
}
