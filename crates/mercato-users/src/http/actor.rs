//! [`Actor`]: the verified caller, confirmed against the accounts table.
//!
//! Other services trust a token's claims until it expires; the users service owns the accounts,
//! so it also checks that the account still exists (a deleted user's token is `401
//! invalid_token` at once) and takes the role from the account (a demoted admin loses admin
//! rights at once).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use mercato_platform::ApiError;
use mercato_platform::auth::{Caller, Role};
use uuid::Uuid;

use crate::app::AppState;
use crate::db::users::{self, User};

#[derive(Debug, Clone)]
pub struct Actor {
    pub user: User,
}

impl Actor {
    pub fn id(&self) -> Uuid {
        self.user.id
    }

    pub fn is_admin(&self) -> bool {
        self.user.role == Role::Admin
    }

    /// Self or admin.
    pub fn may_act_for(&self, user_id: Uuid) -> bool {
        self.is_admin() || self.user.id == user_id
    }
}

impl FromRequestParts<AppState> for Actor {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let caller = Caller::from_request_parts(parts, state).await?;
        let mut conn = state.db.pool().acquire().await?;
        let user = users::find(&state.db, &mut conn, caller.user_id)
            .await?
            .ok_or_else(|| ApiError::invalid_token("the account of this token no longer exists"))?;
        Ok(Self { user })
    }
}
