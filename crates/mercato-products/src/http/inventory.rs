//! `POST /api/products/:id/inventory`: an admin moves stock by `{delta}` or sets `{stock}`.

use axum::extract::State;
use axum::http::HeaderMap;
use mercato_contracts::{InventoryChangeReason, InventoryUpdated};
use mercato_platform::ApiError;
use mercato_platform::auth::Admin;
use mercato_platform::extract::{Json, Path};
use mercato_platform::time::Timestamp;
use mercato_platform::trace::TraceContext;
use mercato_platform::validation::Fields;
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use crate::app::AppState;
use crate::db::products;
use crate::domain::{self, MAX_STOCK};
use crate::http::check_if_match;
use crate::http::products::{WithTag, locked, tagged};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InventoryRequest {
    /// Units to add (negative: remove); `0` changes nothing.
    #[schema(value_type = Option<i64>)]
    pub delta: Option<Value>,
    /// The new stock, 0..1000000000.
    #[schema(value_type = Option<i64>)]
    pub stock: Option<Value>,
}

/// Adjust a product's stock (admin). Exactly one of `delta` or `stock`.
#[utoipa::path(
    post,
    path = "/api/products/{id}/inventory",
    tag = "products",
    params(("id" = Uuid, Path), ("If-Match" = Option<String>, Header)),
    request_body = InventoryRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, body = crate::http::products::ProductResponse, headers(("ETag" = String))),
        (status = 403, body = mercato_platform::error::Problem),
        (status = 404, body = mercato_platform::error::Problem),
        (status = 409, description = "`insufficient_stock`: stock would go below zero", body = mercato_platform::error::Problem),
        (status = 412, description = "`version_mismatch`", body = mercato_platform::error::Problem),
        (status = 422, description = "`validation_failed`", body = mercato_platform::error::Problem),
    ),
)]
#[tracing::instrument(skip_all, fields(product_id = %id))]
pub async fn adjust_inventory(
    State(state): State<AppState>,
    trace: TraceContext,
    Admin(admin): Admin,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    Json(body): Json<InventoryRequest>,
) -> Result<WithTag, ApiError> {
    let mut fields = Fields::default();
    let delta = fields.optional("delta", body.delta.as_ref(), domain::delta);
    let stock = fields.optional("stock", body.stock.as_ref(), domain::stock);
    match (&body.delta, &body.stock) {
        (Some(_), Some(_)) => fields.push("stock", "give exactly one of `delta` or `stock`"),
        (None, None) => fields.push("delta", "give exactly one of `delta` or `stock`"),
        _ => {}
    }
    fields.finish()?;

    let mut tx = state.db.begin().await?;
    let mut product = locked(&state, &mut tx, id).await?;
    check_if_match(&headers, product.version)?;
    let delta = match (delta, stock) {
        (Some(delta), _) => delta,
        (None, Some(stock)) => stock - product.stock,
        (None, None) => 0,
    };
    let new_stock = product.stock + delta;
    if new_stock < 0 {
        return Err(ApiError::conflict(
            "insufficient_stock",
            format!("only {} units are in stock; cannot remove {}", product.stock, -delta),
        ));
    }
    if new_stock > MAX_STOCK {
        return Err(ApiError::invalid_field(
            "delta",
            format!("stock would exceed {MAX_STOCK} units"),
        ));
    }
    if delta == 0 {
        return Ok(tagged(&product));
    }
    let now = Timestamp::now();
    if !products::add_stock(&state.db, &mut tx, id, delta, now).await? {
        return Err(ApiError::Unexpected(anyhow::anyhow!("stock of a locked product moved")));
    }
    product.stock = new_stock;
    product.version += 1;
    product.updated_at = now;
    let event = InventoryUpdated {
        product_id: id,
        stock: new_stock,
        delta,
        reason: InventoryChangeReason::Adjustment,
    };
    state.outbox.write(&mut tx, event, now.millis(), Some(trace.0.clone())).await?;
    tx.commit().await?;
    state.outbox.notify();
    tracing::info!(product_id = %id, delta, stock = new_stock, by = %admin.user_id, "stock adjusted");
    Ok(tagged(&product))
}
