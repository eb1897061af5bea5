//! Registration and the account routes.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use mercato_platform::ApiError;
use mercato_platform::auth::Role;
use mercato_platform::extract::{Json, Path, Query};
use mercato_platform::pagination::{Page, decode_cursor, parse_ids, parse_limit};
use mercato_platform::time::Timestamp;
use mercato_platform::trace::TraceContext;
use mercato_store::is_unique_violation;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::app::AppState;
use crate::db::{refresh_tokens, users, users::User};
use crate::domain::{Email, Fields, Password, UserName};
use crate::http::Actor;

/// An account as clients see it: never a password or hash.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserResponse {
    pub id: Uuid,
    pub name: String,
    pub email: String,
    pub role: Role,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl From<&User> for UserResponse {
    fn from(user: &User) -> Self {
        Self {
            id: user.id,
            name: user.name.clone(),
            email: user.email.clone(),
            role: user.role,
            created_at: user.created_at,
            updated_at: user.updated_at,
        }
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegisterRequest {
    /// 1..100 characters after trimming.
    #[schema(required = true)]
    pub name: Option<String>,
    /// A valid address of at most 254 characters, unique case-insensitively.
    #[schema(required = true)]
    pub email: Option<String>,
    /// 8..128 characters.
    #[schema(required = true)]
    pub password: Option<String>,
}

/// `201` with the user and its `Location`.
pub type Created = (StatusCode, HeaderMap, Json<UserResponse>);

/// Register a new customer account.
#[utoipa::path(
    post,
    path = "/api/users",
    tag = "users",
    request_body = RegisterRequest,
    responses(
        (status = 201, description = "Registered", body = UserResponse, headers(("Location" = String))),
        (status = 409, description = "`email_taken`", body = mercato_platform::error::Problem),
        (status = 422, description = "`validation_failed`", body = mercato_platform::error::Problem),
    ),
)]
#[tracing::instrument(skip_all)]
pub async fn register(
    State(state): State<AppState>,
    trace: TraceContext,
    Json(body): Json<RegisterRequest>,
) -> Result<Created, ApiError> {
    let mut fields = Fields::default();
    let name = fields.required("name", body.name.as_deref(), UserName::parse);
    let email = fields.required("email", body.email.as_deref(), Email::parse);
    let password = fields.required("password", body.password.as_deref(), Password::parse);
    fields.finish()?;
    let (Some(name), Some(email), Some(password)) = (name, email, password) else {
        return Err(ApiError::Unexpected(anyhow::anyhow!("parsed fields went missing")));
    };
    let user = state.create_user(name, email, &password, Role::Customer, Some(&trace)).await?;
    let location = HeaderValue::from_str(&format!("/api/users/{}", user.id))
        .map_err(|error| ApiError::Unexpected(error.into()))?;
    let mut headers = HeaderMap::new();
    headers.insert(header::LOCATION, location);
    Ok((StatusCode::CREATED, headers, Json(UserResponse::from(&user))))
}

/// The signed-in user.
#[utoipa::path(
    get,
    path = "/api/users/me",
    tag = "users",
    security(("bearer" = [])),
    responses(
        (status = 200, body = UserResponse),
        (status = 401, description = "`unauthenticated` or `invalid_token`", body = mercato_platform::error::Problem),
    ),
)]
pub async fn me(actor: Actor) -> Json<UserResponse> {
    Json(UserResponse::from(&actor.user))
}

/// One account (self or admin).
#[utoipa::path(
    get,
    path = "/api/users/{id}",
    tag = "users",
    params(("id" = Uuid, Path)),
    security(("bearer" = [])),
    responses(
        (status = 200, body = UserResponse),
        (status = 403, description = "another user's account", body = mercato_platform::error::Problem),
        (status = 404, body = mercato_platform::error::Problem),
    ),
)]
#[tracing::instrument(skip_all, fields(user_id = %id))]
pub async fn get_user(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> Result<Json<UserResponse>, ApiError> {
    if !actor.may_act_for(id) {
        return Err(ApiError::forbidden("only the account's owner or an admin may see it"));
    }
    let mut conn = state.db.pool().acquire().await?;
    let user = users::find(&state.db, &mut conn, id)
        .await?
        .ok_or_else(|| ApiError::not_found("no such user"))?;
    Ok(Json(UserResponse::from(&user)))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateUserRequest {
    pub name: Option<String>,
    pub email: Option<String>,
    /// A new password; changing one's own needs `currentPassword`.
    pub password: Option<String>,
    pub current_password: Option<String>,
    /// `customer` or `admin`; admins only.
    pub role: Option<String>,
}

/// Change an account (partial update; `PUT` behaves as `PATCH`).
#[utoipa::path(
    method(put, patch),
    path = "/api/users/{id}",
    tag = "users",
    params(("id" = Uuid, Path)),
    request_body = UpdateUserRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, body = UserResponse),
        (status = 403, description = "another user's account, a customer setting `role`, or a wrong `currentPassword`", body = mercato_platform::error::Problem),
        (status = 404, body = mercato_platform::error::Problem),
        (status = 409, description = "`email_taken`", body = mercato_platform::error::Problem),
        (status = 422, description = "`validation_failed`", body = mercato_platform::error::Problem),
    ),
)]
#[tracing::instrument(skip_all, fields(user_id = %id))]
pub async fn update_user(
    State(state): State<AppState>,
    trace: TraceContext,
    actor: Actor,
    Path(id): Path<Uuid>,
    Json(body): Json<UpdateUserRequest>,
) -> Result<Json<UserResponse>, ApiError> {
    if !actor.may_act_for(id) {
        return Err(ApiError::forbidden("only the account's owner or an admin may change it"));
    }
    let own_account = actor.id() == id;
    let mut fields = Fields::default();
    let name = fields.optional("name", body.name.as_deref(), UserName::parse);
    let email = fields.optional("email", body.email.as_deref(), Email::parse);
    let password = fields.optional("password", body.password.as_deref(), Password::parse);
    let role = fields.optional("role", body.role.as_deref(), |raw| {
        Role::parse(raw).ok_or_else(|| "must be `customer` or `admin`".to_owned())
    });
    if body.password.is_some() && own_account && body.current_password.is_none() {
        fields.push("currentPassword", "is required to change your own password");
    }
    fields.finish()?;
    if body.role.is_some() && !actor.is_admin() {
        return Err(ApiError::forbidden("only an admin may change a role"));
    }

    // The password work (tens of ms of CPU each) runs outside any transaction: the current
    // password is checked first, the new one hashed once, and the change then applied to the
    // row as it is under lock, so concurrent updates of different fields all survive. If the
    // password hash changed between the check and the lock, the check starts over.
    let current = SecretString::from(body.current_password.unwrap_or_default());
    let mut new_hash = None;
    for _ in 0..3 {
        let verified_hash = if password.is_some() && own_account {
            let mut conn = state.db.pool().acquire().await?;
            let seen = users::find(&state.db, &mut conn, id)
                .await?
                .ok_or_else(|| ApiError::not_found("no such user"))?;
            drop(conn);
            if !state.passwords.verify(&current, Some(&seen.password_hash)).await? {
                return Err(ApiError::forbidden("the current password is wrong"));
            }
            Some(seen.password_hash)
        } else {
            None
        };
        if let (Some(password), None) = (&password, &new_hash) {
            new_hash = Some(state.passwords.hash(password.secret()).await?);
        }

        let mut tx = state.db.begin().await?;
        let mut user = users::find_for_update(&state.db, &mut tx, id)
            .await?
            .ok_or_else(|| ApiError::not_found("no such user"))?;
        if verified_hash.is_some_and(|verified| verified != user.password_hash) {
            continue;
        }
        let mut profile_changed = false;
        if let Some(name) = name.as_ref().filter(|name| name.as_str() != user.name) {
            user.name = name.as_str().to_owned();
            profile_changed = true;
        }
        if let Some(email) = email.as_ref().filter(|email| email.as_str() != user.email) {
            user.email = email.as_str().to_owned();
            profile_changed = true;
        }
        if let Some(role) = role.filter(|role| *role != user.role) {
            user.role = role;
            profile_changed = true;
        }
        if let Some(hash) = &new_hash {
            user.password_hash = hash.clone();
        }
        if !profile_changed && new_hash.is_none() {
            return Ok(Json(UserResponse::from(&user)));
        }
        user.updated_at = Timestamp::now();
        match users::update(&state.db, &mut tx, &user).await {
            Ok(true) => {}
            Ok(false) => return Err(ApiError::not_found("no such user")),
            Err(error) if is_unique_violation(&error) => return Err(email_taken()),
            Err(error) => return Err(error.into()),
        }
        if new_hash.is_some() {
            // A new password ends every session that the old one opened.
            refresh_tokens::revoke_user(&state.db, &mut tx, user.id).await?;
        }
        if profile_changed {
            state.user_updated(&mut tx, &user, Some(&trace)).await?;
        }
        tx.commit().await?;
        state.outbox.notify();
        return Ok(Json(UserResponse::from(&user)));
    }
    Err(ApiError::conflict(
        "update_in_progress",
        "the password was changed by another request meanwhile; try again",
    ))
}

/// Delete an account: its personal data and sessions go, its email is free again.
#[utoipa::path(
    delete,
    path = "/api/users/{id}",
    tag = "users",
    params(("id" = Uuid, Path)),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, body = mercato_platform::error::Problem),
        (status = 404, body = mercato_platform::error::Problem),
    ),
)]
#[tracing::instrument(skip_all, fields(user_id = %id))]
pub async fn delete_user(
    State(state): State<AppState>,
    trace: TraceContext,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    if !actor.may_act_for(id) {
        return Err(ApiError::forbidden("only the account's owner or an admin may delete it"));
    }
    let mut tx = state.db.begin().await?;
    let user = users::find(&state.db, &mut tx, id)
        .await?
        .ok_or_else(|| ApiError::not_found("no such user"))?;
    users::delete(&state.db, &mut tx, id).await?;
    refresh_tokens::revoke_user(&state.db, &mut tx, id).await?;
    crate::db::login_attempts::clear(&state.db, &mut tx, &user.email.to_lowercase()).await?;
    state.user_deleted(&mut tx, id, Some(&trace)).await?;
    tx.commit().await?;
    state.outbox.notify();
    tracing::info!(user_id = %id, by = %actor.id(), "user deleted");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListUsersQuery {
    /// Matches name or email, case-insensitive substring.
    pub q: Option<String>,
    /// Comma-separated ids (at most 100): exactly those accounts that exist, in the order
    /// asked, without paging (the gateway batches through it).
    pub ids: Option<String>,
    /// 1..100, default 20.
    #[param(value_type = Option<u32>)]
    pub limit: Option<String>,
    /// `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

/// Accounts, oldest first (admin).
#[utoipa::path(
    get,
    path = "/api/users",
    tag = "users",
    params(ListUsersQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, body = Page<UserResponse>),
        (status = 400, description = "bad `limit` or `cursor`", body = mercato_platform::error::Problem),
        (status = 403, body = mercato_platform::error::Problem),
    ),
)]
#[tracing::instrument(skip_all)]
pub async fn list_users(
    State(state): State<AppState>,
    actor: Actor,
    Query(query): Query<ListUsersQuery>,
) -> Result<Json<Page<UserResponse>>, ApiError> {
    if !actor.is_admin() {
        return Err(ApiError::forbidden("only an admin may list users"));
    }
    let limit = parse_limit(query.limit.as_deref())?;
    let after =
        match query.cursor.as_deref() {
            Some(cursor) => Some(Uuid::parse_str(&decode_cursor(cursor)?).map_err(|_| {
                ApiError::bad_request("the cursor is not one this service gave out")
            })?),
            None => None,
        };
    let search = query.q.as_deref().map(str::trim).filter(|q| !q.is_empty());
    let mut conn = state.db.pool().acquire().await?;
    if let Some(raw) = query.ids.as_deref() {
        let ids = parse_ids(raw, "users")?;
        let mut found: HashMap<Uuid, User> = users::by_ids(&state.db, &mut conn, &ids)
            .await?
            .into_iter()
            .map(|u| (u.id, u))
            .collect();
        let items = ids.iter().filter_map(|id| found.remove(id)).map(|u| UserResponse::from(&u));
        return Ok(Json(Page { items: items.collect(), next_cursor: None }));
    }
    let rows = users::list(&state.db, &mut conn, search, after, limit).await?;
    let page = Page::from_rows(rows, limit, |user| user.id.to_string());
    Ok(Json(page.map(|user| UserResponse::from(&user))))
}

pub fn email_taken() -> ApiError {
    ApiError::conflict("email_taken", "an account with this email already exists")
}
