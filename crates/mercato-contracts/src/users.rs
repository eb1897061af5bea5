//! Events of the `user` aggregate, emitted by the users service. The orders service keeps a
//! replica of users from them.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::event::impl_event;

/// A user signed up or was created by an admin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserCreated {
    pub user_id: Uuid,
    /// Display name.
    pub name: String,
    pub email: String,
    /// `customer` or `admin`.
    pub role: String,
}

/// A user's profile or role changed; carries the whole new state, not a diff, so a replica that
/// missed an update is repaired by the next one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserUpdated {
    pub user_id: Uuid,
    /// Display name.
    pub name: String,
    pub email: String,
    /// `customer` or `admin`.
    pub role: String,
}

/// A user was deleted: their tokens must be refused and their open orders cancelled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserDeleted {
    pub user_id: Uuid,
}

impl_event!(
    UserCreated,
    aggregate: "user",
    action: "created",
    producer: "users",
    subject: user_id,
    description: "A user was created (sign-up or by an admin).",
);

impl_event!(
    UserUpdated,
    aggregate: "user",
    action: "updated",
    producer: "users",
    subject: user_id,
    description: "A user's name, email or role changed; carries the whole new state.",
);

impl_event!(
    UserDeleted,
    aggregate: "user",
    action: "deleted",
    producer: "users",
    subject: user_id,
    description: "A user was deleted; their open orders are to be cancelled.",
);
