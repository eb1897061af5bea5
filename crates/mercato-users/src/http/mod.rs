//! The users service's HTTP surface: routes, their OpenAPI description, and the [`Actor`]
//! extractor.
//!
//! - [`users`][]: registration and the account routes (`/api/users...`).
//! - [`auth`][]: login, refresh, logout (`/api/auth/...`).
//! - [`jwks`][]: `/.well-known/jwks.json`.
//! - [`compat`][]: the original Node service's routes (`/api/register`, `/api/login`,
//!   `/api/get/:id`), deprecated in the OpenAPI document.

pub mod actor;
pub mod auth;
pub mod compat;
pub mod jwks;
pub mod users;

use axum::Router;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;

pub use actor::Actor;

#[derive(OpenApi)]
#[openapi(
    info(title = "Mercato users service", description = "Accounts, login and tokens."),
    tags((name = "users", description = "Accounts"), (name = "auth", description = "Login and tokens"))
)]
struct UsersApi;

/// Every route of the service with its state, and their OpenAPI document.
#[allow(deprecated)] // the compatibility routes are deprecated on purpose
pub fn routes(state: AppState) -> (Router, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(UsersApi::openapi())
        .routes(routes!(users::register, users::list_users))
        .routes(routes!(users::me))
        .routes(routes!(users::get_user, users::update_user, users::delete_user))
        .routes(routes!(auth::login))
        .routes(routes!(auth::refresh))
        .routes(routes!(auth::logout))
        .routes(routes!(jwks::jwks))
        .routes(routes!(compat::register))
        .routes(routes!(compat::login))
        .routes(routes!(compat::get_user))
        .with_state(state)
        .split_for_parts()
}
