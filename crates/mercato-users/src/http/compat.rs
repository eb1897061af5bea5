//! Routes of the original Node users service, kept for its clients: same handlers, same rules,
//! documented as deprecated.

use axum::extract::State;
use mercato_platform::ApiError;
use mercato_platform::extract::{ClientAddr, Json, Path};
use mercato_platform::trace::TraceContext;
use uuid::Uuid;

use crate::app::AppState;
use crate::http::Actor;
use crate::http::auth::{self, AuthPayload, LoginRequest};
use crate::http::users::{self, Created, RegisterRequest, UserResponse};

/// `= POST /api/users`.
#[utoipa::path(
    post,
    path = "/api/register",
    tag = "users",
    request_body = RegisterRequest,
    responses((status = 201, body = UserResponse)),
)]
#[deprecated(note = "use POST /api/users")]
pub async fn register(
    state: State<AppState>,
    trace: TraceContext,
    body: Json<RegisterRequest>,
) -> Result<Created, ApiError> {
    users::register(state, trace, body).await
}

/// `= POST /api/auth/login`.
#[utoipa::path(
    post,
    path = "/api/login",
    tag = "auth",
    request_body = LoginRequest,
    responses((status = 200, body = AuthPayload)),
)]
#[deprecated(note = "use POST /api/auth/login")]
pub async fn login(
    state: State<AppState>,
    address: ClientAddr,
    body: Json<LoginRequest>,
) -> Result<Json<AuthPayload>, ApiError> {
    auth::login(state, address, body).await
}

/// `= GET /api/users/{id}`.
#[utoipa::path(
    get,
    path = "/api/get/{id}",
    tag = "users",
    params(("id" = Uuid, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = UserResponse)),
)]
#[deprecated(note = "use GET /api/users/{id}")]
pub async fn get_user(
    state: State<AppState>,
    actor: Actor,
    id: Path<Uuid>,
) -> Result<Json<UserResponse>, ApiError> {
    users::get_user(state, actor, id).await
}
