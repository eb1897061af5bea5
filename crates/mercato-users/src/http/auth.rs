//! Login, refresh and logout.
//!
//! A login opens a session: an access token (15 min) and a refresh token (30 days) of a new
//! family. Each refresh spends its token and issues the next of the same family; presenting a
//! spent token again means it was stolen or replayed, so the whole family is revoked.

use axum::extract::State;
use axum::http::StatusCode;
use mercato_platform::ApiError;
use mercato_platform::extract::{ClientAddr, Json};
use mercato_platform::time::Timestamp;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::app::AppState;
use crate::db::{login_attempts, refresh_tokens, users};
use crate::domain::Fields;
use crate::http::users::UserResponse;
use crate::tokens::refresh_token_hash;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoginRequest {
    #[schema(required = true)]
    pub email: Option<String>,
    #[schema(required = true)]
    pub password: Option<String>,
}

/// A session: the access token, the refresh token and who it is for.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthPayload {
    /// The access token (EdDSA JWT).
    pub token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    pub refresh_token: String,
    pub user: UserResponse,
}

fn invalid_credentials() -> ApiError {
    ApiError::Unauthorized { code: "invalid_credentials", detail: "wrong email or password".into() }
}

/// Log in with email and password.
#[utoipa::path(
    post,
    path = "/api/auth/login",
    tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, body = AuthPayload),
        (status = 401, description = "`invalid_credentials` (the same for an unknown email and a wrong password)", body = mercato_platform::error::Problem),
        (status = 429, description = "`rate_limited`, with `Retry-After`", body = mercato_platform::error::Problem),
    ),
)]
#[tracing::instrument(skip_all)]
pub async fn login(
    State(state): State<AppState>,
    ClientAddr(address): ClientAddr,
    Json(body): Json<LoginRequest>,
) -> Result<Json<AuthPayload>, ApiError> {
    if let Some(address) = address {
        state
            .address_limiter
            .hit(&address)
            .map_err(|retry_after| ApiError::RateLimited { retry_after })?;
    }
    let mut fields = Fields::default();
    let email =
        fields.required("email", body.email.as_deref(), |raw| Ok(raw.trim().to_lowercase()));
    let password =
        fields.required("password", body.password.as_deref(), |raw| Ok(SecretString::from(raw)));
    fields.finish()?;
    let (Some(email), Some(password)) = (email, password) else {
        return Err(ApiError::Unexpected(anyhow::anyhow!("parsed fields went missing")));
    };

    let limits = &state.config.rate_limit;
    let now = Timestamp::now();
    // The attempt takes its slot before the password is checked (see `login_attempts`), and no
    // connection is held while the hash runs (~20 ms of CPU).
    let user = {
        let mut conn = state.db.pool().acquire().await?;
        login_attempts::reserve(
            &state.db,
            &mut conn,
            &email,
            now,
            limits.failed_window,
            limits.failed_per_email,
        )
        .await?
        .map_err(|retry_after| ApiError::RateLimited { retry_after })?;
        users::find_by_email(&state.db, &mut conn, &email).await?
    };
    let verified =
        state.passwords.verify(&password, user.as_ref().map(|u| u.password_hash.as_str())).await?;
    // A failure keeps its slot taken: that is the recorded failure.
    let Some(user) = user.filter(|_| verified) else { return Err(invalid_credentials()) };

    let mut tx = state.db.begin().await?;
    login_attempts::clear(&state.db, &mut tx, &email).await?;
    let payload = state.open_session(&mut tx, &user, Uuid::now_v7()).await?;
    tx.commit().await?;
    Ok(Json(payload))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RefreshRequest {
    #[schema(required = true)]
    pub refresh_token: Option<String>,
}

impl RefreshRequest {
    fn token(self) -> Result<String, ApiError> {
        let mut fields = Fields::default();
        let token = fields
            .required("refreshToken", self.refresh_token.as_deref(), |raw| Ok(raw.to_owned()));
        fields.finish()?;
        token.ok_or_else(|| ApiError::invalid_token("no refresh token"))
    }
}

fn spent_token() -> ApiError {
    ApiError::invalid_token("this refresh token was already used; its session has been revoked")
}

/// Trade a refresh token for a new session; the old token is spent.
#[utoipa::path(
    post,
    path = "/api/auth/refresh",
    tag = "auth",
    request_body = RefreshRequest,
    responses(
        (status = 200, body = AuthPayload),
        (status = 401, description = "`invalid_token`: unknown, expired or spent (a spent one revokes its family)", body = mercato_platform::error::Problem),
    ),
)]
#[tracing::instrument(skip_all)]
pub async fn refresh(
    State(state): State<AppState>,
    Json(body): Json<RefreshRequest>,
) -> Result<Json<AuthPayload>, ApiError> {
    let hash = refresh_token_hash(&body.token()?);
    let mut tx = state.db.begin().await?;
    // Spending first takes the token's row lock before anything else, so concurrent uses of one
    // token queue behind each other instead of deadlocking (InnoDB) on the family's rows.
    let spent_now = refresh_tokens::spend(&state.db, &mut tx, &hash).await?;
    let stored = refresh_tokens::find(&state.db, &mut tx, &hash)
        .await?
        .ok_or_else(|| ApiError::invalid_token("unknown refresh token"))?;
    if !spent_now {
        // Spent before, or by a concurrent request a moment ago: a replay either way.
        refresh_tokens::revoke_family(&state.db, &mut tx, &stored.family_id).await?;
        tx.commit().await?;
        tracing::warn!(user_id = %stored.user_id, "a spent refresh token was presented; session revoked");
        return Err(spent_token());
    }
    if stored.expires_at <= Timestamp::now().millis() {
        return Err(ApiError::invalid_token("the refresh token has expired"));
    }
    let user_id = Uuid::parse_str(&stored.user_id)
        .map_err(|_| ApiError::Unexpected(anyhow::anyhow!("refresh_tokens.user_id is corrupt")))?;
    let family = Uuid::parse_str(&stored.family_id).map_err(|_| {
        ApiError::Unexpected(anyhow::anyhow!("refresh_tokens.family_id is corrupt"))
    })?;
    let user = users::find(&state.db, &mut tx, user_id)
        .await?
        .ok_or_else(|| ApiError::invalid_token("the account of this token no longer exists"))?;
    let payload = state.open_session(&mut tx, &user, family).await?;
    tx.commit().await?;
    Ok(Json(payload))
}

/// End the session of a refresh token (its whole family).
#[utoipa::path(
    post,
    path = "/api/auth/logout",
    tag = "auth",
    request_body = RefreshRequest,
    responses(
        (status = 204, description = "Logged out"),
        (status = 401, description = "`invalid_token`: unknown or spent", body = mercato_platform::error::Problem),
    ),
)]
#[tracing::instrument(skip_all)]
pub async fn logout(
    State(state): State<AppState>,
    Json(body): Json<RefreshRequest>,
) -> Result<StatusCode, ApiError> {
    let hash = refresh_token_hash(&body.token()?);
    let mut tx = state.db.begin().await?;
    let stored = refresh_tokens::find(&state.db, &mut tx, &hash)
        .await?
        .ok_or_else(|| ApiError::invalid_token("unknown refresh token"))?;
    refresh_tokens::revoke_family(&state.db, &mut tx, &stored.family_id).await?;
    tx.commit().await?;
    if stored.spent != 0 {
        return Err(spent_token());
    }
    Ok(StatusCode::NO_CONTENT)
}
