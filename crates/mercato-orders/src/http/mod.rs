//! The orders service's HTTP surface: routes, their OpenAPI description, and what every route
//! shares.
//!
//! - [`orders`][]: place, read, list, change and cancel (`/api/orders...`).
//! - [`compat`][]: the original Node service's `POST /api/create` and
//!   `POST /api/orders/cancel/:id`, documented as deprecated.
//! - [`Signed`]: a verified caller whose account is not known to be deleted.
//! - [`preferences`]: `Prefer: wait=N` and `Idempotency-Key`.

pub mod compat;
pub mod orders;
pub mod preferences;

use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use mercato_platform::ApiError;
use mercato_platform::auth::Caller;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::db::replicas;

#[derive(OpenApi)]
#[openapi(
    info(title = "Mercato orders service", description = "Orders and their lifecycle."),
    tags((name = "orders", description = "Place, follow, change and cancel orders"))
)]
struct OrdersApi;

/// Every route of the service with its state, and their OpenAPI document.
#[allow(deprecated)]
pub fn routes(state: AppState) -> (Router, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(OrdersApi::openapi())
        .routes(routes!(orders::place_order, orders::list_orders))
        .routes(routes!(orders::orders_by_user))
        .routes(routes!(orders::get_order, orders::update_order, orders::cancel_order))
        .routes(routes!(orders::replace_order))
        .routes(routes!(orders::cancel_order_post))
        .routes(routes!(compat::create))
        .routes(routes!(compat::cancel))
        .with_state(state)
        .split_for_parts()
}

/// A caller with a valid token whose account this service does not know to be deleted (the
/// users service's `user.deleted` makes it refuse the account's tokens at once, not when they
/// expire). An account it has not heard of yet is accepted: a replica that lags refuses no one.
#[derive(Debug, Clone)]
pub struct Signed(pub Caller);

impl FromRequestParts<AppState> for Signed {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let caller = Caller::from_request_parts(parts, state).await?;
        refuse_if_deleted(state, &caller).await?;
        Ok(Self(caller))
    }
}

/// `401` when the caller's account is known to be deleted.
///
/// Placement takes a bare [`Caller`] instead of [`Signed`]: it folds this check into the one
/// query it makes of the replicas anyway, saving a round trip per order. Each of its refusals
/// before that point calls this first (through [`deleted_first`]), so a deleted account's token
/// is still refused with `401`.
pub async fn refuse_if_deleted(state: &AppState, caller: &Caller) -> Result<(), ApiError> {
    let mut conn = state.db.pool().acquire().await?;
    if replicas::is_deleted(&state.db, &mut conn, caller.user_id).await? {
        return Err(ApiError::invalid_token("the account of this token was deleted"));
    }
    Ok(())
}

/// `result`, but a refusal of a deleted account's request is the token's `401`.
pub async fn deleted_first<T>(
    state: &AppState,
    caller: &Caller,
    result: Result<T, ApiError>,
) -> Result<T, ApiError> {
    if result.is_err() {
        refuse_if_deleted(state, caller).await?;
    }
    result
}
