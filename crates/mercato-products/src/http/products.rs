//! The catalog routes: create, list, read, change, delete (soft).

use std::collections::HashMap;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use mercato_contracts::{
    InventoryChangeReason, InventoryUpdated, ProductCreated, ProductDeleted, ProductUpdated,
};
use mercato_platform::ApiError;
use mercato_platform::auth::Admin;
use mercato_platform::extract::{Json, Path, Query};
use mercato_platform::money::Money;
use mercato_platform::pagination::{Page, decode_cursor, parse_ids, parse_limit};
use mercato_platform::time::Timestamp;
use mercato_platform::trace::TraceContext;
use mercato_platform::validation::Fields;
use mercato_store::is_unique_violation;
use mercato_store::sqlx::AnyConnection;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::app::AppState;
use crate::db::products::{self, Filter, Product};
use crate::domain;
use crate::http::{check_if_match, etag};

/// A product as clients see it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProductResponse {
    pub id: Uuid,
    pub sku: String,
    pub name: String,
    pub description: Option<String>,
    pub category: Option<String>,
    pub price: Money,
    /// Units available to order (units held by orders are already taken off).
    pub stock: i64,
    /// `false` once deleted: hidden from lists, refused for new orders.
    pub active: bool,
    /// Increases on every change; the `ETag` is `"<version>"`.
    pub version: i64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl From<&Product> for ProductResponse {
    fn from(product: &Product) -> Self {
        Self {
            id: product.id,
            sku: product.sku.clone(),
            name: product.name.clone(),
            description: product.description.clone(),
            category: product.category.clone(),
            price: product.price,
            stock: product.stock,
            active: product.active,
            version: product.version,
            created_at: product.created_at,
            updated_at: product.updated_at,
        }
    }
}

/// `200` with a product and its `ETag`.
pub type WithTag = (HeaderMap, Json<ProductResponse>);

pub(crate) fn tagged(product: &Product) -> WithTag {
    let mut headers = HeaderMap::new();
    headers.insert(header::ETAG, etag(product.version));
    (headers, Json(ProductResponse::from(product)))
}

pub(crate) fn sku_taken() -> ApiError {
    ApiError::conflict("sku_taken", "a product with this sku already exists")
}

pub(crate) async fn locked(
    state: &AppState,
    conn: &mut AnyConnection,
    id: Uuid,
) -> Result<Product, ApiError> {
    products::find_for_update(&state.db, conn, id)
        .await?
        .ok_or_else(|| ApiError::not_found("no such product"))
}

pub(crate) fn product_event(product: &Product) -> ProductUpdated {
    ProductUpdated {
        product_id: product.id,
        sku: product.sku.clone(),
        name: product.name.clone(),
        price: product.price.to_string(),
        category: product.category.clone(),
        active: product.active,
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateProductRequest {
    /// 1..200 characters.
    #[schema(value_type = String, required = true)]
    pub name: Option<Value>,
    /// 0..1000000.00, a decimal string or a number with at most two decimals.
    #[schema(value_type = String, required = true, example = "19.99")]
    pub price: Option<Box<RawValue>>,
    /// 0..1000000000 units.
    #[schema(value_type = i64, required = true)]
    pub stock: Option<Value>,
    /// 1..64 of `[A-Za-z0-9._-]`, unique case-insensitively; generated when absent.
    #[schema(value_type = Option<String>)]
    pub sku: Option<Value>,
    /// At most 5000 characters.
    #[schema(value_type = Option<String>)]
    pub description: Option<Value>,
    /// 1..100 characters.
    #[schema(value_type = Option<String>)]
    pub category: Option<Value>,
}

/// Add a product (admin).
#[utoipa::path(
    post,
    path = "/api/products",
    tag = "products",
    request_body = CreateProductRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created", body = ProductResponse, headers(("Location" = String), ("ETag" = String))),
        (status = 401, body = mercato_platform::error::Problem),
        (status = 403, description = "not an admin", body = mercato_platform::error::Problem),
        (status = 409, description = "`sku_taken`", body = mercato_platform::error::Problem),
        (status = 422, description = "`validation_failed`", body = mercato_platform::error::Problem),
    ),
)]
#[tracing::instrument(skip_all)]
pub async fn create_product(
    State(state): State<AppState>,
    trace: TraceContext,
    Admin(_admin): Admin,
    Json(body): Json<CreateProductRequest>,
) -> Result<(StatusCode, HeaderMap, Json<ProductResponse>), ApiError> {
    let mut fields = Fields::default();
    let name = fields.required("name", body.name.as_ref(), |v| domain::name(domain::text(v)?));
    let price = fields.required("price", body.price.as_deref(), domain::price);
    let stock = fields.required("stock", body.stock.as_ref(), domain::stock);
    let sku = fields.optional("sku", body.sku.as_ref(), |v| domain::sku(domain::text(v)?));
    let description = fields.optional("description", body.description.as_ref(), |v| {
        domain::description(domain::text(v)?)
    });
    let category =
        fields.optional("category", body.category.as_ref(), |v| domain::category(domain::text(v)?));
    fields.finish()?;
    let (Some(name), Some(price), Some(stock)) = (name, price, stock) else {
        return Err(ApiError::Unexpected(anyhow::anyhow!("parsed fields went missing")));
    };
    let id = Uuid::now_v7();
    let now = Timestamp::now();
    let product = Product {
        id,
        sku: sku.unwrap_or_else(|| domain::generated_sku(id)),
        name,
        description,
        category,
        price,
        stock,
        active: true,
        version: 1,
        created_at: now,
        updated_at: now,
    };
    let mut tx = state.db.begin().await?;
    match products::insert(&state.db, &mut tx, &product).await {
        Ok(()) => {}
        Err(error) if is_unique_violation(&error) => return Err(sku_taken()),
        Err(error) => return Err(error.into()),
    }
    let created = ProductCreated {
        product_id: product.id,
        sku: product.sku.clone(),
        name: product.name.clone(),
        price: product.price.to_string(),
        category: product.category.clone(),
        active: true,
    };
    let traceparent = Some(trace.0.clone());
    state.outbox.write(&mut tx, created, now.millis(), traceparent.clone()).await?;
    if stock > 0 {
        // The events alone add up to every product's stock: creation counts as an adjustment.
        let initial = InventoryUpdated {
            product_id: product.id,
            stock,
            delta: stock,
            reason: InventoryChangeReason::Adjustment,
        };
        state.outbox.write(&mut tx, initial, now.millis(), traceparent).await?;
    }
    tx.commit().await?;
    state.outbox.notify();
    tracing::info!(product_id = %product.id, sku = %product.sku, "product created");
    let (mut headers, body) = tagged(&product);
    let location = HeaderValue::from_str(&format!("/api/products/{}", product.id))
        .map_err(|error| ApiError::Unexpected(error.into()))?;
    headers.insert(header::LOCATION, location);
    Ok((StatusCode::CREATED, headers, body))
}

/// One product, active or not.
#[utoipa::path(
    get,
    path = "/api/products/{id}",
    tag = "products",
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, body = ProductResponse, headers(("ETag" = String))),
        (status = 400, description = "not a UUID", body = mercato_platform::error::Problem),
        (status = 404, body = mercato_platform::error::Problem),
    ),
)]
pub async fn get_product(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
) -> Result<WithTag, ApiError> {
    let mut conn = state.db.pool().acquire().await?;
    let product = products::find(&state.db, &mut conn, id)
        .await?
        .ok_or_else(|| ApiError::not_found("no such product"))?;
    Ok(tagged(&product))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct ListProductsQuery {
    /// Case-insensitive substring of name, description or sku.
    pub q: Option<String>,
    /// Exact category, case-insensitive.
    pub category: Option<String>,
    /// Inclusive lower price bound, e.g. `10.00`.
    pub min_price: Option<String>,
    /// Inclusive upper price bound.
    pub max_price: Option<String>,
    /// `true`: only products with stock; `false`: only sold-out ones.
    pub in_stock: Option<String>,
    /// Comma-separated ids (at most 100): exactly those products, active or not, in the order
    /// asked, without paging.
    pub ids: Option<String>,
    /// 1..100, default 20.
    #[param(value_type = Option<u32>)]
    pub limit: Option<String>,
    /// `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

fn price_bound(name: &str, raw: Option<&str>) -> Result<Option<Money>, ApiError> {
    raw.map(|raw| {
        Money::parse(raw).map_err(|error| ApiError::bad_request(format!("{name} {error}")))
    })
    .transpose()
}

/// Active products in creation order, filtered; or exactly the products of `ids`.
#[utoipa::path(
    get,
    path = "/api/products",
    tag = "products",
    params(ListProductsQuery),
    responses(
        (status = 200, body = Page<ProductResponse>),
        (status = 400, description = "bad `limit`, `cursor`, price bound, `inStock` or `ids`", body = mercato_platform::error::Problem),
    ),
)]
#[tracing::instrument(skip_all)]
pub async fn list_products(
    State(state): State<AppState>,
    Query(query): Query<ListProductsQuery>,
) -> Result<Json<Page<ProductResponse>>, ApiError> {
    let limit = parse_limit(query.limit.as_deref())?;
    let after =
        match query.cursor.as_deref() {
            Some(cursor) => Some(Uuid::parse_str(&decode_cursor(cursor)?).map_err(|_| {
                ApiError::bad_request("the cursor is not one this service gave out")
            })?),
            None => None,
        };
    let in_stock = match query.in_stock.as_deref() {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "inStock must be true or false, got `{other}`"
            )));
        }
    };
    let filter = Filter {
        search: query.q.as_deref().map(str::trim).filter(|q| !q.is_empty()).map(str::to_lowercase),
        category: query
            .category
            .as_deref()
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_owned),
        min_price: price_bound("minPrice", query.min_price.as_deref())?,
        max_price: price_bound("maxPrice", query.max_price.as_deref())?,
        in_stock,
    };
    let ids = query.ids.as_deref().map(|raw| parse_ids(raw, "products")).transpose()?;
    let mut conn = state.db.pool().acquire().await?;
    let rows = products::list(&state.db, &mut conn, &filter, ids.as_deref(), after, limit).await?;
    let page = match ids {
        Some(ids) => {
            let mut found: HashMap<Uuid, Product> =
                rows.into_iter().map(|product| (product.id, product)).collect();
            let items =
                ids.iter().filter_map(|id| found.remove(id)).map(|p| ProductResponse::from(&p));
            Page { items: items.collect(), next_cursor: None }
        }
        None => Page::from_rows(rows, limit, |product| product.id.to_string())
            .map(|product| ProductResponse::from(&product)),
    };
    Ok(Json(page))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateProductRequest {
    #[serde(default, deserialize_with = "domain::nullable")]
    #[schema(value_type = Option<String>)]
    pub name: Option<Option<Value>>,
    #[serde(default, deserialize_with = "domain::nullable")]
    #[schema(value_type = Option<String>, example = "19.99")]
    pub price: Option<Option<Box<RawValue>>>,
    #[serde(default, deserialize_with = "domain::nullable")]
    #[schema(value_type = Option<String>)]
    pub sku: Option<Option<Value>>,
    /// `null` clears it.
    #[serde(default, deserialize_with = "domain::nullable")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<Value>>,
    /// `null` clears it.
    #[serde(default, deserialize_with = "domain::nullable")]
    #[schema(value_type = Option<String>)]
    pub category: Option<Option<Value>>,
}

/// Change a product (admin; partial, `PUT` behaves as `PATCH`). Stock changes go through the
/// inventory route.
#[utoipa::path(
    method(put, patch),
    path = "/api/products/{id}",
    tag = "products",
    params(("id" = Uuid, Path), ("If-Match" = Option<String>, Header, description = "the `ETag` the change is based on")),
    request_body = UpdateProductRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, body = ProductResponse, headers(("ETag" = String))),
        (status = 403, body = mercato_platform::error::Problem),
        (status = 404, body = mercato_platform::error::Problem),
        (status = 409, description = "`sku_taken`", body = mercato_platform::error::Problem),
        (status = 412, description = "`version_mismatch`", body = mercato_platform::error::Problem),
        (status = 422, description = "`validation_failed`", body = mercato_platform::error::Problem),
    ),
)]
#[tracing::instrument(skip_all, fields(product_id = %id))]
pub async fn update_product(
    State(state): State<AppState>,
    trace: TraceContext,
    Admin(_admin): Admin,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    Json(body): Json<UpdateProductRequest>,
) -> Result<WithTag, ApiError> {
    let mut fields = Fields::default();
    let name = fields.optional("name", body.name.as_ref(), |v| {
        domain::name(domain::text(domain::not_null(v)?)?)
    });
    let price =
        fields.optional("price", body.price.as_ref(), |v| domain::price(domain::not_null(v)?));
    let sku = fields
        .optional("sku", body.sku.as_ref(), |v| domain::sku(domain::text(domain::not_null(v)?)?));
    let description = fields.optional("description", body.description.as_ref(), |v| {
        v.as_ref().map(|v| domain::description(domain::text(v)?)).transpose()
    });
    let category = fields.optional("category", body.category.as_ref(), |v| {
        v.as_ref().map(|v| domain::category(domain::text(v)?)).transpose()
    });
    fields.finish()?;

    let mut tx = state.db.begin().await?;
    let mut product = locked(&state, &mut tx, id).await?;
    check_if_match(&headers, product.version)?;
    let before = product.clone();
    if let Some(name) = name {
        product.name = name;
    }
    if let Some(price) = price {
        product.price = price;
    }
    if let Some(sku) = sku {
        product.sku = sku;
    }
    if let Some(description) = description {
        product.description = description;
    }
    if let Some(category) = category {
        product.category = category;
    }
    if product == before {
        return Ok(tagged(&product));
    }
    product.version += 1;
    product.updated_at = Timestamp::now();
    match products::update_details(&state.db, &mut tx, &product).await {
        Ok(()) => {}
        Err(error) if is_unique_violation(&error) => return Err(sku_taken()),
        Err(error) => return Err(error.into()),
    }
    state
        .outbox
        .write(&mut tx, product_event(&product), product.updated_at.millis(), Some(trace.0.clone()))
        .await?;
    tx.commit().await?;
    state.outbox.notify();
    Ok(tagged(&product))
}

/// Delete a product (admin): it becomes inactive, hidden from lists and refused for new orders;
/// old orders keep it. Deleting it again changes nothing.
#[utoipa::path(
    delete,
    path = "/api/products/{id}",
    tag = "products",
    params(("id" = Uuid, Path), ("If-Match" = Option<String>, Header)),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Inactive"),
        (status = 403, body = mercato_platform::error::Problem),
        (status = 404, body = mercato_platform::error::Problem),
        (status = 412, description = "`version_mismatch`", body = mercato_platform::error::Problem),
    ),
)]
#[tracing::instrument(skip_all, fields(product_id = %id))]
pub async fn delete_product(
    State(state): State<AppState>,
    trace: TraceContext,
    Admin(admin): Admin,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let mut tx = state.db.begin().await?;
    let mut product = locked(&state, &mut tx, id).await?;
    check_if_match(&headers, product.version)?;
    if !product.active {
        return Ok(StatusCode::NO_CONTENT);
    }
    product.active = false;
    product.version += 1;
    product.updated_at = Timestamp::now();
    products::update_details(&state.db, &mut tx, &product).await?;
    let event = ProductDeleted { product_id: id };
    state.outbox.write(&mut tx, event, product.updated_at.millis(), Some(trace.0.clone())).await?;
    tx.commit().await?;
    state.outbox.notify();
    tracing::info!(product_id = %id, by = %admin.user_id, "product deleted");
    Ok(StatusCode::NO_CONTENT)
}
