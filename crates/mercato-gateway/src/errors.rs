//! GraphQL errors with `extensions.code` (API.md): every error the gateway answers is built
//! here, and a service's problem details become one of these codes, never passed on raw.

use async_graphql::{Error, ErrorExtensions, Value};
use serde::Deserialize;

pub const UNAUTHENTICATED: &str = "UNAUTHENTICATED";
pub const FORBIDDEN: &str = "FORBIDDEN";
pub const NOT_FOUND: &str = "NOT_FOUND";
pub const BAD_USER_INPUT: &str = "BAD_USER_INPUT";
pub const CONFLICT: &str = "CONFLICT";
pub const RATE_LIMITED: &str = "RATE_LIMITED";
pub const LIMIT_EXCEEDED: &str = "LIMIT_EXCEEDED";
pub const INTERNAL: &str = "INTERNAL";

/// One invalid input field, as the services and `extensions.fields` name them.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// An error with `extensions.code`.
pub fn coded(code: &'static str, message: impl Into<String>) -> Error {
    Error::new(message).extend_with(|_, extensions| extensions.set("code", code))
}

pub fn unauthenticated() -> Error {
    coded(UNAUTHENTICATED, "sign in first: send `Authorization: Bearer <token>`")
}

pub fn forbidden(message: impl Into<String>) -> Error {
    coded(FORBIDDEN, message)
}

/// `BAD_USER_INPUT` with `extensions.fields`.
pub fn bad_input(fields: Vec<FieldError>) -> Error {
    let message = match fields.as_slice() {
        [one] => format!("{}: {}", one.field, one.message),
        _ => "the input is invalid".to_owned(),
    };
    with_fields(Error::new(message), BAD_USER_INPUT, &fields)
}

pub fn bad_field(field: &str, message: impl Into<String>) -> Error {
    bad_input(vec![FieldError { field: field.to_owned(), message: message.into() }])
}

fn with_fields(error: Error, code: &'static str, fields: &[FieldError]) -> Error {
    let fields = Value::from_json(serde_json::to_value(fields).unwrap_or_default())
        .unwrap_or(Value::List(Vec::new()));
    error.extend_with(|_, extensions| {
        extensions.set("code", code);
        extensions.set("fields", fields.clone());
    })
}

/// The problem details body of a service's error answer.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Problem {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub detail: String,
    #[serde(default)]
    pub errors: Vec<FieldError>,
}

/// Why a service call did not give what was asked.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ServiceError {
    /// The service answered with an error status and problem details.
    #[error("{service} answered {status}: {}", problem.code)]
    Refused { service: &'static str, status: u16, problem: Problem },
    /// The service could not be reached or answered something unreadable.
    #[error("{0}")]
    Unavailable(String),
}

impl ServiceError {
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Refused { status, .. } => Some(*status),
            Self::Unavailable(_) => None,
        }
    }

    /// The GraphQL error a client sees: the service's own words for a 4xx, with its code mapped
    /// (and kept as `extensions.reason`); a generic message for anything else.
    pub fn into_graphql(self) -> Error {
        let Self::Refused { service, status, problem } = self else {
            tracing::warn!(error = %self, "a service call failed");
            return coded(INTERNAL, "a service is unavailable; try again shortly");
        };
        let code = match status {
            400 | 413 | 415 | 422 => BAD_USER_INPUT,
            401 => UNAUTHENTICATED,
            403 => FORBIDDEN,
            404 => NOT_FOUND,
            409 | 412 => CONFLICT,
            429 => RATE_LIMITED,
            _ => {
                tracing::warn!(service, status, code = %problem.code, "a service failed a call");
                return coded(INTERNAL, "a service failed; try again shortly").extend_with(
                    |_, extensions| {
                        if status == 503 {
                            extensions.set("reason", "not_ready");
                        }
                    },
                );
            }
        };
        let message = if problem.detail.is_empty() { problem.code.clone() } else { problem.detail };
        let error = if code == BAD_USER_INPUT {
            with_fields(Error::new(message), code, &problem.errors)
        } else {
            coded(code, message)
        };
        let reason = problem.code;
        error.extend_with(move |_, extensions| {
            if !reason.is_empty() {
                extensions.set("reason", reason.as_str());
            }
        })
    }
}

/// A nullable field's outcome: on an error, the field is `null` in `data` and the error is
/// listed beside it, as the GraphQL spec asks (async-graphql would instead drop the field or
/// null its parent).
pub fn or_null<T>(
    ctx: &async_graphql::Context<'_>,
    result: async_graphql::Result<Option<T>>,
) -> async_graphql::Result<Option<T>> {
    match result {
        Ok(value) => Ok(value),
        Err(error) => {
            ctx.add_error(ctx.set_error_path(error.into_server_error(ctx.item.pos)));
            Ok(None)
        }
    }
}

/// `.graphql()?` turns a service call's error into the coded GraphQL error (async-graphql's
/// blanket `From<Display>` would drop the code).
pub trait IntoGraphql<T> {
    fn graphql(self) -> async_graphql::Result<T>;
}

impl<T> IntoGraphql<T> for Result<T, ServiceError> {
    fn graphql(self) -> async_graphql::Result<T> {
        self.map_err(ServiceError::into_graphql)
    }
}

impl<T> IntoGraphql<T> for Result<T, std::sync::Arc<ServiceError>> {
    fn graphql(self) -> async_graphql::Result<T> {
        self.map_err(|error| ServiceError::into_graphql((*error).clone()))
    }
}
