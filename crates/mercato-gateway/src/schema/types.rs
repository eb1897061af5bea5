//! The schema's object, input, enum and scalar types. Objects are read straight from the
//! services' JSON answers; fields that cross services (`Order.user`, `OrderItem.product`,
//! `User.orders`) are resolved through the batching loaders.

use async_graphql::{
    ComplexObject, Context, Enum, InputObject, InputValueError, InputValueResult, Result, Scalar,
    ScalarType, SimpleObject, Value,
};
use mercato_platform::money::Money;
use mercato_platform::time::Timestamp;
use serde::{Deserialize, Serialize};

use crate::errors::{IntoGraphql, or_null};
use crate::schema::context::{Session, UserOrdersKey};
use crate::schema::{connections, ids};

// --- scalars ----------------------------------------------------------------------------------

/// Money as a string with two decimals ("19.99"); input takes a string or a number.
///
/// Input is normalised when it is valid money and otherwise passed on as written: the owning
/// service validates it and names the field (`price`) in `extensions.fields`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Decimal(pub String);

#[Scalar(name = "Decimal")]
impl ScalarType for Decimal {
    fn parse(value: Value) -> InputValueResult<Self> {
        let text = match &value {
            Value::String(text) => text.clone(),
            Value::Number(number) => number.to_string(),
            _ => return Err(InputValueError::expected_type(value)),
        };
        Ok(Decimal(Money::parse(&text).map_or(text, |money| money.to_string())))
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.clone())
    }
}

/// An RFC 3339 timestamp in UTC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DateTime(pub String);

#[Scalar(name = "DateTime")]
impl ScalarType for DateTime {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(text) if Timestamp::parse_rfc3339(text).is_some() => {
                Ok(DateTime(text.clone()))
            }
            _ => Err(InputValueError::custom("a DateTime is an RFC 3339 timestamp")),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.clone())
    }
}

// --- enums ------------------------------------------------------------------------------------

#[derive(Debug, Enum, Copy, Clone, Eq, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Customer,
    Admin,
}

#[derive(Debug, Enum, Copy, Clone, Eq, PartialEq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OrderStatus {
    Pending,
    Confirmed,
    Rejected,
    Cancelled,
    Shipped,
    Delivered,
}

impl OrderStatus {
    /// The REST spelling (`confirmed`).
    pub fn as_rest(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Confirmed => "confirmed",
            Self::Rejected => "rejected",
            Self::Cancelled => "cancelled",
            Self::Shipped => "shipped",
            Self::Delivered => "delivered",
        }
    }

    pub fn from_rest(text: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(text.to_owned())).ok()
    }
}

// --- objects ----------------------------------------------------------------------------------

/// A page as the services answer it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Deserialize, SimpleObject)]
#[serde(rename_all = "camelCase")]
#[graphql(complex)]
pub struct User {
    pub id: async_graphql::ID,
    pub name: String,
    pub email: String,
    pub role: Role,
    pub created_at: DateTime,
    pub updated_at: DateTime,
}

#[ComplexObject]
impl User {
    /// This user's orders, newest first (the user themself or an admin). First pages are
    /// batched: a page of users with their orders costs one call to the orders service.
    #[graphql(complexity = "connections::cost(first, child_complexity)")]
    async fn orders(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        status: Option<OrderStatus>,
    ) -> Result<connections::OrderConnection> {
        let session = ctx.data::<Session>()?;
        session.require()?;
        let mut query = connections::page_query(first, after.clone())?;
        if after.is_none() {
            let first = first.unwrap_or(connections::DEFAULT_FIRST);
            let key = UserOrdersKey { user_id: self.id.to_string(), status, first };
            let page = session.user_orders().load_one(key).await.graphql()?;
            return Ok(page.unwrap_or_else(|| {
                connections::OrderConnection::from_page(
                    Page { items: Vec::new(), next_cursor: None },
                    Order::cursor,
                )
            }));
        }
        query.push(("userId", self.id.to_string()));
        if let Some(status) = status {
            query.push(("status", status.as_rest().to_owned()));
        }
        let page = session.services.orders(&query, &session.credentials).await.graphql()?;
        Ok(connections::OrderConnection::from_page(page, Order::cursor))
    }
}

#[derive(Debug, Clone, Deserialize, SimpleObject)]
#[serde(rename_all = "camelCase")]
pub struct AuthPayload {
    pub token: String,
    pub token_type: String,
    pub expires_in: i32,
    pub refresh_token: String,
    pub user: User,
}

#[derive(Debug, Clone, Deserialize, SimpleObject)]
#[serde(rename_all = "camelCase")]
pub struct Product {
    pub id: async_graphql::ID,
    pub sku: String,
    pub name: String,
    pub description: Option<String>,
    pub category: Option<String>,
    pub price: Decimal,
    pub stock: i32,
    pub active: bool,
    pub version: i32,
    pub created_at: DateTime,
    pub updated_at: DateTime,
}

impl Product {
    pub fn cursor(&self) -> String {
        mercato_platform::pagination::encode_cursor(&self.id)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, SimpleObject, InputObject)]
#[serde(rename_all = "camelCase")]
#[graphql(input_name = "AddressInput")]
pub struct Address {
    pub street: String,
    pub city: String,
    pub zip_code: String,
    pub state: Option<String>,
    pub country: Option<String>,
}

#[derive(Debug, Clone, Deserialize, SimpleObject)]
#[serde(rename_all = "camelCase")]
#[graphql(complex)]
pub struct OrderItem {
    pub product_id: async_graphql::ID,
    pub quantity: i32,
    pub unit_price: Option<Decimal>,
    pub name: Option<String>,
}

#[ComplexObject]
impl OrderItem {
    /// The product now (batched: one call for every item of a response).
    async fn product(&self, ctx: &Context<'_>) -> Result<Option<Product>> {
        let session = ctx.data::<Session>()?;
        or_null(ctx, session.products().load_one(self.product_id.to_string()).await.graphql())
    }
}

#[derive(Debug, Clone, Deserialize, SimpleObject)]
#[serde(rename_all = "camelCase")]
pub struct UpdateRejection {
    pub reason: String,
    pub product_id: Option<async_graphql::ID>,
    pub at: DateTime,
}

#[derive(Debug, Clone, Deserialize, SimpleObject)]
#[serde(rename_all = "camelCase")]
#[graphql(complex)]
pub struct Order {
    pub id: async_graphql::ID,
    pub user_id: async_graphql::ID,
    pub status: OrderStatus,
    pub items: Vec<OrderItem>,
    pub total: Option<Decimal>,
    pub shipping_address: Option<Address>,
    pub payment_method: Option<String>,
    pub rejection_reason: Option<String>,
    pub last_update_rejection: Option<UpdateRejection>,
    pub version: i32,
    pub created_at: DateTime,
    pub updated_at: DateTime,
}

#[ComplexObject]
impl Order {
    /// Whoever placed the order (batched: one call for every order of a response).
    async fn user(&self, ctx: &Context<'_>) -> Result<Option<User>> {
        let session = ctx.data::<Session>()?;
        or_null(ctx, session.users().load_one(self.user_id.to_string()).await.graphql())
    }
}

impl Order {
    /// The cursor the orders service pages by (creation time, id).
    pub fn cursor(&self) -> String {
        let millis = Timestamp::parse_rfc3339(&self.created_at.0).map_or(0, Timestamp::millis);
        mercato_platform::pagination::encode_cursor(&mercato_platform::pagination::order_key(
            millis, &self.id,
        ))
    }
}

impl User {
    pub fn cursor(&self) -> String {
        mercato_platform::pagination::encode_cursor(&self.id)
    }
}

/// A CloudEvents 1.0 event as it travels on the bus.
#[derive(Debug, Clone, Deserialize, SimpleObject)]
pub struct DomainEvent {
    pub specversion: String,
    pub id: async_graphql::ID,
    #[serde(rename = "type")]
    #[graphql(name = "type")]
    pub kind: String,
    pub source: String,
    pub subject: String,
    pub time: DateTime,
    pub data: async_graphql::Json<serde_json::Value>,
}

// --- inputs -----------------------------------------------------------------------------------

#[derive(Debug, InputObject, Serialize)]
pub struct RegisterInput {
    pub name: String,
    pub email: String,
    pub password: String,
}

#[derive(Debug, InputObject, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateUserInput {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_password: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
}

#[derive(Debug, InputObject)]
pub struct ProductFilter {
    pub query: Option<String>,
    pub category: Option<String>,
    pub min_price: Option<Decimal>,
    pub max_price: Option<Decimal>,
    pub in_stock: Option<bool>,
}

#[derive(Debug, InputObject, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateProductInput {
    pub name: String,
    pub price: Decimal,
    pub stock: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sku: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
}

#[derive(Debug, InputObject, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateProductInput {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price: Option<Decimal>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sku: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
}

#[derive(Debug, InputObject, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderItemInput {
    pub product_id: async_graphql::ID,
    pub quantity: i32,
}

#[derive(Debug, InputObject, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlaceOrderInput {
    pub items: Vec<OrderItemInput>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shipping_address: Option<Address>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payment_method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<async_graphql::ID>,
}

#[derive(Debug, InputObject, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateOrderInput {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub items: Option<Vec<OrderItemInput>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shipping_address: Option<Address>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payment_method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<OrderStatus>,
}

/// Checks every id of an order input before anything is sent.
pub fn check_item_ids(items: &[OrderItemInput]) -> Result<()> {
    for (index, item) in items.iter().enumerate() {
        ids::uuid(&format!("items[{index}].productId"), &item.product_id)?;
    }
    Ok(())
}
