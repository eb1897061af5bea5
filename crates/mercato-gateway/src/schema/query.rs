//! `Query`: reads, each one REST call (plus the batched loads of nested fields). Nullable
//! fields that fail are `null` beside their error ([`or_null`]).

use async_graphql::{Context, ID, Object, Result};

use crate::errors::{IntoGraphql, NOT_FOUND, coded, or_null};
use crate::schema::connections::{self, OrderConnection, ProductConnection, UserConnection};
use crate::schema::context::Session;
use crate::schema::ids;
use crate::schema::types::{Order, OrderStatus, Product, ProductFilter, User};

#[derive(Debug, Default)]
pub struct Query;

#[Object]
impl Query {
    /// The signed-in user; null when not signed in.
    async fn me(&self, ctx: &Context<'_>) -> Result<Option<User>> {
        or_null(ctx, read_me(ctx).await)
    }

    /// A user: oneself, or anyone for an admin.
    async fn user(&self, ctx: &Context<'_>, id: ID) -> Result<Option<User>> {
        or_null(ctx, read_user(ctx, &id).await)
    }

    /// Every account (admin), oldest first; `query` matches name or email.
    #[graphql(complexity = "connections::cost(first, child_complexity)")]
    async fn users(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        query: Option<String>,
    ) -> Result<UserConnection> {
        let session = ctx.data::<Session>()?;
        session.require_admin()?;
        let mut params = connections::page_query(first, after)?;
        if let Some(query) = query {
            params.push(("q", query));
        }
        let page = session.services.users(&params, &session.credentials).await.graphql()?;
        Ok(UserConnection::from_page(page, User::cursor))
    }

    /// A product (also an inactive one); null when unknown.
    async fn product(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Product>> {
        or_null(ctx, read_product(ctx, &id).await)
    }

    /// Active products, oldest first, filtered.
    #[graphql(complexity = "connections::cost(first, child_complexity)")]
    async fn products(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        filter: Option<ProductFilter>,
    ) -> Result<ProductConnection> {
        let session = ctx.data::<Session>()?;
        let mut params = connections::page_query(first, after)?;
        if let Some(filter) = filter {
            let ProductFilter { query, category, min_price, max_price, in_stock } = filter;
            let texts = [("q", query), ("category", category)];
            params.extend(texts.into_iter().filter_map(|(name, value)| Some((name, value?))));
            params.extend(min_price.map(|price| ("minPrice", price.0)));
            params.extend(max_price.map(|price| ("maxPrice", price.0)));
            params.extend(in_stock.map(|in_stock| ("inStock", in_stock.to_string())));
        }
        let page = session.services.products(&params, &session.credentials).await.graphql()?;
        Ok(ProductConnection::from_page(page, Product::cursor))
    }

    /// An order of the caller's (any order for an admin); `NOT_FOUND` otherwise.
    async fn order(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Order>> {
        or_null(ctx, read_order(ctx, &id).await)
    }

    /// The caller's orders (an admin: everyone's, or `userId`'s), newest first.
    #[graphql(complexity = "connections::cost(first, child_complexity)")]
    async fn orders(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        status: Option<OrderStatus>,
        user_id: Option<ID>,
    ) -> Result<OrderConnection> {
        let session = ctx.data::<Session>()?;
        session.require()?;
        let mut params = connections::page_query(first, after)?;
        if let Some(status) = status {
            params.push(("status", status.as_rest().to_owned()));
        }
        if let Some(user_id) = user_id {
            params.push(("userId", ids::uuid("userId", &user_id)?));
        }
        let page = session.services.orders(&params, &session.credentials).await.graphql()?;
        session.prefetch(ctx.look_ahead().field("edges").field("node"), &page.items).await;
        Ok(OrderConnection::from_page(page, Order::cursor))
    }
}

async fn read_me(ctx: &Context<'_>) -> Result<Option<User>> {
    let session = ctx.data::<Session>()?;
    if session.caller()?.is_none() {
        return Ok(None);
    }
    session.services.me(&session.credentials).await.graphql().map(Some)
}

async fn read_user(ctx: &Context<'_>, id: &ID) -> Result<Option<User>> {
    let session = ctx.data::<Session>()?;
    let id = ids::uuid("id", id)?;
    session.require()?;
    session.services.user(&id, &session.credentials).await.graphql()
}

async fn read_product(ctx: &Context<'_>, id: &ID) -> Result<Option<Product>> {
    let session = ctx.data::<Session>()?;
    let id = ids::uuid("id", id)?;
    session.services.product(&id, &session.credentials).await.graphql()
}

async fn read_order(ctx: &Context<'_>, id: &ID) -> Result<Option<Order>> {
    let session = ctx.data::<Session>()?;
    let id = ids::uuid("id", id)?;
    session.require()?;
    match session.services.order(&id, &session.credentials).await.graphql()? {
        Some(order) => Ok(Some(order)),
        None => Err(coded(NOT_FOUND, "no such order")),
    }
}
