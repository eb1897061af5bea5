//! [`ApiError`]: every refusal a handler can give, as RFC 9457 problem details.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mercato_store::sqlx;
use serde::Serialize;

/// One invalid field of a `422 validation_failed` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

/// Everything a Mercato endpoint can answer other than success.
///
/// Each variant has one status; the `code` strings are the ones `API.md` lists.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// `400`: the body is not JSON (`malformed_json`) or a path or query is malformed
    /// (`bad_request`).
    #[error("{detail}")]
    BadRequest { code: &'static str, detail: String },
    /// `401`: no token (`unauthenticated`), a bad token (`invalid_token`) or a failed login
    /// (`invalid_credentials`).
    #[error("{detail}")]
    Unauthorized { code: &'static str, detail: String },
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    /// `409` with a code naming the conflict (`email_taken`, `invalid_state`, ...).
    #[error("{detail}")]
    Conflict { code: &'static str, detail: String },
    /// `412 version_mismatch`.
    #[error("{0}")]
    PreconditionFailed(String),
    #[error("the request body is larger than 1 MiB")]
    PayloadTooLarge,
    #[error("requests with a body must send Content-Type: application/json")]
    UnsupportedMediaType,
    /// `422 validation_failed`, listing every invalid field.
    #[error("the request has invalid fields")]
    Validation(Vec<FieldError>),
    /// `422` with another code (`idempotency_key_reused`).
    #[error("{detail}")]
    Unprocessable { code: &'static str, detail: String },
    #[error("too many requests")]
    RateLimited { retry_after: Duration },
    /// `503 not_ready`: a dependency (database, bus) is down. The cause is logged, never shown.
    #[error("a dependency is unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// `500`: a bug or an unexpected failure. The cause is logged, never shown.
    #[error("unexpected error")]
    Unexpected(#[from] anyhow::Error),
}

impl ApiError {
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::BadRequest { code: "bad_request", detail: detail.into() }
    }

    pub fn unauthenticated() -> Self {
        Self::Unauthorized {
            code: "unauthenticated",
            detail: "this endpoint needs a bearer access token".into(),
        }
    }

    pub fn invalid_token(detail: impl Into<String>) -> Self {
        Self::Unauthorized { code: "invalid_token", detail: detail.into() }
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::Forbidden(detail.into())
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::NotFound(detail.into())
    }

    pub fn conflict(code: &'static str, detail: impl Into<String>) -> Self {
        Self::Conflict { code, detail: detail.into() }
    }

    /// A `422` for a single field.
    pub fn invalid_field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Validation(vec![FieldError::new(field, message)])
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Validation(_) | Self::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Unexpected(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest { code, .. }
            | Self::Unauthorized { code, .. }
            | Self::Conflict { code, .. }
            | Self::Unprocessable { code, .. } => code,
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::PreconditionFailed(_) => "version_mismatch",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::Validation(_) => "validation_failed",
            Self::RateLimited { .. } => "rate_limited",
            Self::Unavailable(_) => "not_ready",
            Self::Unexpected(_) => "internal",
        }
    }
}

/// Database errors: unreachable means `503`, anything else is unexpected. Handlers that expect a
/// unique violation check for it before converting.
impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        if mercato_store::is_unavailable(&error) {
            Self::Unavailable(anyhow::Error::new(error).context("the database is unavailable"))
        } else {
            Self::Unexpected(anyhow::Error::new(error).context("database query failed"))
        }
    }
}

/// The body of every error response (`application/problem+json`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    pub code: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
}

/// The cause of a 5xx, carried to the logging middleware in the response's extensions.
#[derive(Debug, Clone)]
pub struct ErrorCause(pub Arc<anyhow::Error>);

pub const PROBLEM_JSON: &str = "application/problem+json";

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let code = self.code();
        let detail = match &self {
            Self::Unavailable(_) => {
                "a dependency of this service is unavailable; retry shortly".to_owned()
            }
            Self::Unexpected(_) => {
                "an unexpected error occurred; it has been logged with this request's id".to_owned()
            }
            Self::Validation(errors) => {
                let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
                format!("invalid fields: {}", fields.join(", "))
            }
            other => other.to_string(),
        };
        let problem = Problem {
            kind: format!("/problems/{code}"),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail,
            code: code.to_owned(),
            errors: match &self {
                Self::Validation(errors) => Some(errors.clone()),
                _ => None,
            },
        };
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Self::RateLimited { retry_after } = &self {
            let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
        }
        match self {
            Self::Unavailable(cause) | Self::Unexpected(cause) => {
                response.extensions_mut().insert(ErrorCause(Arc::new(cause)));
            }
            _ => {}
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_of(error: ApiError) -> (StatusCode, serde_json::Value, Response) {
        let response = error.into_response();
        let status = response.status();
        let (parts, body) = response.into_parts();
        let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default();
        let json = serde_json::from_slice(&bytes).unwrap_or_default();
        (status, json, Response::from_parts(parts, axum::body::Body::empty()))
    }

    #[tokio::test]
    async fn validation_errors_list_their_fields() {
        let (status, json, response) = body_of(ApiError::Validation(vec![
            FieldError::new("email", "is not an email address"),
            FieldError::new("name", "must not be empty"),
        ]))
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        assert_eq!(json["type"], "/problems/validation_failed");
        assert_eq!(json["code"], "validation_failed");
        assert_eq!(json["status"], 422);
        assert_eq!(json["errors"][0]["field"], "email");
        assert_eq!(json["errors"][1]["field"], "name");
    }

    #[tokio::test]
    async fn server_errors_hide_their_cause_but_carry_it_for_the_log() {
        let (status, json, response) =
            body_of(ApiError::Unexpected(anyhow::anyhow!("password=hunter2 in a query"))).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!json.to_string().contains("hunter2"));
        assert!(json.get("errors").is_none());
        let cause = response.extensions().get::<ErrorCause>().map(|c| c.0.to_string());
        assert_eq!(cause.as_deref(), Some("password=hunter2 in a query"));
    }

    #[tokio::test]
    async fn rate_limits_say_when_to_retry_rounding_up() {
        let (status, json, response) =
            body_of(ApiError::RateLimited { retry_after: Duration::from_millis(1500) }).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(json["code"], "rate_limited");
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
    }
}
