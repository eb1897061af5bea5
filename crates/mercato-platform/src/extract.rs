//! Extractors whose rejections are problem details, as `API.md` names them.
//!
//! - [`Json`]: `415` without `Content-Type: application/json`, `413` over 1 MiB, `400
//!   malformed_json` when the body is not JSON, `422 validation_failed` naming the field whose
//!   type is wrong. Also a response type, so handlers use one `Json` both ways.
//! - [`Path`] and [`Query`]: `400 bad_request` when a path id or a query parameter is malformed.
//! - [`ClientAddr`]: the peer address, when the server was started with connect info.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{ApiError, FieldError};

/// The largest accepted request body: exactly 1 MiB is accepted, one byte more is `413`.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// A JSON request body (with the contract's rejections) or a JSON response.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

fn is_json(headers: &axum::http::HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(request.headers()) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(request, state).await.map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge
            } else {
                ApiError::BadRequest {
                    code: "malformed_json",
                    detail: "the request body could not be read".into(),
                }
            }
        })?;
        parse_json(&bytes).map(Json)
    }
}

/// Parses a JSON body: syntax errors are `400 malformed_json`, type errors `422` on the field.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let deserializer = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                let field = if path == "." { "body".to_owned() } else { path };
                ApiError::Validation(vec![FieldError::new(field, describe_data_error(&inner))])
            }
            _ => ApiError::BadRequest {
                code: "malformed_json",
                detail: format!("the request body is not valid JSON: {inner}"),
            },
        }
    })
}

/// serde's message without its " at line 1 column 9" suffix, which means nothing to a client
/// that named the field.
fn describe_data_error(error: &serde_json::Error) -> String {
    let message = error.to_string();
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_owned(),
        None => message,
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// Path parameters; a malformed one (a non-UUID id) is `400 bad_request`.
#[derive(Debug, Clone, Copy)]
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Self(value)),
            Err(rejection) => {
                Err(ApiError::bad_request(format!("malformed path: {}", rejection.body_text())))
            }
        }
    }
}

/// Query parameters; a malformed one is `400 bad_request`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Self(value)),
            Err(rejection) => {
                Err(ApiError::bad_request(format!("malformed query: {}", rejection.body_text())))
            }
        }
    }
}

/// The address of the peer that sent the request, when known.
///
/// Known when the server runs with `into_make_service_with_connect_info`; in-process callers
/// (tests, the gateway under `mercato up`) may have none.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|info| info.0.ip())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Login {
        email: Option<String>,
        count: Option<u32>,
    }

    #[test]
    fn syntax_errors_are_malformed_json() {
        let error = parse_json::<Login>(b"{\"email\": ").err();
        assert!(matches!(error, Some(ApiError::BadRequest { code: "malformed_json", .. })));
        let error = parse_json::<Login>(b"").err();
        assert!(matches!(error, Some(ApiError::BadRequest { code: "malformed_json", .. })));
    }

    #[test]
    fn type_errors_name_the_field() {
        match parse_json::<Login>(br#"{"email": "a@b.c", "count": "seven"}"#) {
            Err(ApiError::Validation(errors)) => {
                assert_eq!(errors.len(), 1);
                assert_eq!(errors[0].field, "count");
                assert!(!errors[0].message.contains("line"), "{}", errors[0].message);
            }
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn a_body_that_is_not_an_object_is_invalid() {
        match parse_json::<Login>(b"\"just text\"") {
            Err(ApiError::Validation(errors)) => assert_eq!(errors[0].field, "body"),
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn json_content_types_are_recognised() {
        let mut headers = axum::http::HeaderMap::new();
        assert!(!is_json(&headers));
        for (value, expected) in [
            ("application/json", true),
            ("application/json; charset=utf-8", true),
            ("Application/JSON", true),
            ("application/merge-patch+json", true),
            ("text/plain", false),
            ("application/x-www-form-urlencoded", false),
        ] {
            headers.insert(
                header::CONTENT_TYPE,
                value.parse().unwrap_or(header::HeaderValue::from_static("x")),
            );
            assert_eq!(is_json(&headers), expected, "{value}");
        }
    }
}
