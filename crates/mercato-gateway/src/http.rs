//! GraphQL over HTTP: `POST /graphql` (queries and mutations), `GET /graphql` (queries only, or
//! the GraphiQL page for a browser) and the WebSocket upgrade at `/graphql/ws`.
//!
//! A document refused before it runs (unparsable, invalid, over a limit) is HTTP 400 with
//! `errors` and no `data`; execution errors come with HTTP 200; a body over the size limit is
//! HTTP 413; a client over its rate is HTTP 429 with `Retry-After` and `RATE_LIMITED`. The
//! answer is `application/graphql-response+json` when the client accepts it.

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};

use crate::Gateway;
use crate::errors::{BAD_USER_INPUT, LIMIT_EXCEEDED, RATE_LIMITED};
use crate::limits::{REFUSED_HEADER, ReadOnly};
use crate::upstream::ClientAddress;

pub const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";

pub fn routes(gateway: Gateway) -> Router {
    Router::new()
        .route("/graphql", get(get_graphql).post(post_graphql))
        .route("/graphql/ws", get(websocket))
        .with_state(gateway)
        .merge(crate::graphiql::assets())
}

/// The client's address, when the server knows it.
fn client_of(request: &Request) -> Option<ClientAddress> {
    request.extensions().get::<ConnectInfo<SocketAddr>>().map(|info| ClientAddress(info.0))
}

/// An answer with only `errors`, each with its code.
fn refusal(status: StatusCode, code: &str, message: &str, headers: &HeaderMap) -> Response {
    let body = serde_json::json!({
        "errors": [{ "message": message, "extensions": { "code": code } }]
    });
    answer(status, body.to_string().into(), headers)
}

fn answer(status: StatusCode, body: Bytes, request_headers: &HeaderMap) -> Response {
    let accepts_graphql_response = request_headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|accept| accept.contains(GRAPHQL_RESPONSE));
    let content_type = if accepts_graphql_response { GRAPHQL_RESPONSE } else { "application/json" };
    (status, [(header::CONTENT_TYPE, content_type)], body).into_response()
}

async fn post_graphql(State(gateway): State<Gateway>, request: Request) -> Response {
    let client = client_of(&request);
    let (parts, body) = request.into_parts();
    let limit = gateway.config.limits.max_document_bytes;
    let Ok(body) = axum::body::to_bytes(body, limit).await else {
        let message = format!("the request body is over {limit} bytes");
        return refusal(StatusCode::PAYLOAD_TOO_LARGE, LIMIT_EXCEEDED, &message, &parts.headers);
    };
    let is_json =
        parts.headers.get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok()).is_some_and(
            |value| {
                let media = value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
                media == "application/json" || media == "application/graphql-response+json"
            },
        );
    if !is_json {
        let message = "send the request as Content-Type: application/json";
        return refusal(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            BAD_USER_INPUT,
            message,
            &parts.headers,
        );
    }
    let request = match serde_json::from_slice::<async_graphql::Request>(&body) {
        Ok(request) => request,
        Err(error) => {
            let message = format!("the body is not a GraphQL request: {error}");
            return refusal(StatusCode::BAD_REQUEST, BAD_USER_INPUT, &message, &parts.headers);
        }
    };
    gateway.run(request, &parts.headers, client, false).await
}

async fn get_graphql(State(gateway): State<Gateway>, request: Request) -> Response {
    let client = client_of(&request);
    let headers = request.headers().clone();
    let raw = request.uri().query().unwrap_or_default().to_owned();
    if raw.is_empty() && crate::graphiql::wants_page(&headers) {
        return crate::graphiql::page();
    }
    let limit = gateway.config.limits.max_document_bytes;
    if raw.len() > limit {
        let message = format!("the query string is over {limit} bytes");
        return refusal(StatusCode::PAYLOAD_TOO_LARGE, LIMIT_EXCEEDED, &message, &headers);
    }
    match request_from_query(&raw) {
        Ok(request) => gateway.run(request, &headers, client, true).await,
        Err(message) => refusal(StatusCode::BAD_REQUEST, BAD_USER_INPUT, &message, &headers),
    }
}

/// A GraphQL request from `?query=&operationName=&variables=&extensions=` (the last two JSON).
fn request_from_query(raw: &str) -> Result<async_graphql::Request, String> {
    let params: HashMap<String, String> = serde_urlencoded::from_str(raw)
        .map_err(|error| format!("unreadable query string: {error}"))?;
    let json = |name: &str| -> Result<serde_json::Value, String> {
        match params.get(name).map(String::as_str) {
            None | Some("") => Ok(serde_json::Value::Null),
            Some(text) => {
                serde_json::from_str(text).map_err(|error| format!("{name} is not JSON: {error}"))
            }
        }
    };
    let mut body = serde_json::json!({
        "query": params.get("query").cloned().unwrap_or_default(),
        "operationName": params.get("operationName"),
    });
    for name in ["variables", "extensions"] {
        let value = json(name)?;
        if !value.is_null() {
            body[name] = value;
        }
    }
    serde_json::from_value(body).map_err(|error| format!("not a GraphQL request: {error}"))
}

async fn websocket(State(gateway): State<Gateway>, request: Request) -> Response {
    let client = client_of(&request);
    let (mut parts, _body) = request.into_parts();
    let Some(protocol) = crate::ws::protocol(&parts.headers) else {
        let message = "ask for the graphql-transport-ws (or graphql-ws) subprotocol";
        return refusal(StatusCode::BAD_REQUEST, BAD_USER_INPUT, message, &parts.headers);
    };
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        Ok(upgrade) => upgrade,
        Err(rejection) => return rejection.into_response(),
    };
    crate::ws::upgrade(gateway, protocol, upgrade, client).await
}

impl Gateway {
    /// Runs one request: rate limit, session, execution, status and content type.
    async fn run(
        &self,
        request: async_graphql::Request,
        headers: &HeaderMap,
        client: Option<ClientAddress>,
        read_only: bool,
    ) -> Response {
        let token = bearer(headers);
        let request_id =
            headers.get("x-request-id").and_then(|value| value.to_str().ok()).map(str::to_owned);
        let session = self.session(token.as_deref(), client, request_id).await;
        if let Some(limiter) = &self.limiter {
            let key = match &session.authentication {
                crate::schema::context::Authentication::Caller(caller) => {
                    format!("user:{}", caller.user_id)
                }
                _ => client.map_or_else(|| "anonymous".to_owned(), |c| format!("ip:{}", c.0.ip())),
            };
            if let Err(retry_after) = limiter.hit(&key) {
                let seconds = retry_after.as_secs().max(1);
                let mut response = refusal(
                    StatusCode::TOO_MANY_REQUESTS,
                    RATE_LIMITED,
                    &format!("too many requests; retry in {seconds} s"),
                    headers,
                );
                if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
                    response.headers_mut().insert(header::RETRY_AFTER, value);
                }
                return response;
            }
        }
        let mut request = request.data(session);
        if read_only {
            request = request.data(ReadOnly);
        }
        let mut response = self.schema.execute(request).await;
        let refused = response.http_headers.remove(REFUSED_HEADER).is_some();
        let status = if refused { StatusCode::BAD_REQUEST } else { StatusCode::OK };
        // Refused before running: `errors` and no `data` at all.
        let written = if refused {
            serde_json::to_vec(&serde_json::json!({ "errors": &response.errors }))
        } else {
            serde_json::to_vec(&response)
        };
        let body = match written {
            Ok(body) => body,
            Err(error) => {
                tracing::error!(%error, "a GraphQL response could not be written");
                return refusal(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "INTERNAL",
                    "internal error",
                    headers,
                );
            }
        };
        let mut answer = answer(status, body.into(), headers);
        answer.headers_mut().extend(response.http_headers);
        answer
    }
}

/// The bearer token of `Authorization`; another scheme gives an empty token, which is refused.
fn bearer(headers: &HeaderMap) -> Option<String> {
    Some(bearer_value(headers.get(header::AUTHORIZATION)?.to_str().unwrap_or_default()))
}

/// The token of an `Authorization` value (`Bearer <token>`); another scheme gives an empty
/// token, which is refused.
pub fn bearer_value(value: &str) -> String {
    value.strip_prefix("Bearer ").unwrap_or_default().trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_bearer_value_gives_a_token() {
        assert_eq!(bearer_value("Bearer abc"), "abc");
        assert_eq!(bearer_value("Basic abc"), "");
        assert_eq!(bearer_value("abc"), "");
    }

    #[test]
    fn a_get_request_reads_its_json_parameters() {
        let request = request_from_query(
            "query=query%20Q(%24id%3A%20ID!)%20%7B%20product(id%3A%20%24id)%20%7B%20id%20%7D%20%7D&operationName=Q&variables=%7B%22id%22%3A%22x%22%7D",
        );
        let request = request.ok();
        assert_eq!(request.as_ref().and_then(|r| r.operation_name.clone()).as_deref(), Some("Q"));
        assert!(request_from_query("query=x&variables=%7Bnope").is_err());
    }
}
