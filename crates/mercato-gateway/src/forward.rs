//! `/api/*` (and the JWKS) forwarded to the owning service, so that under
//! `mercato serve gateway` one address serves REST and GraphQL, as `mercato up` does.

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use mercato_platform::ApiError;

use crate::Gateway;
use crate::upstream::{Service, is_hop_by_hop};

/// The largest body forwarded (the services' own limit, plus one byte so they answer 413).
const MAX_FORWARDED_BYTES: usize = mercato_platform::extract::MAX_BODY_BYTES + 1;

pub fn routes(gateway: Gateway) -> Router {
    Router::new()
        .route("/api/{*rest}", any(forward))
        .route("/.well-known/{*rest}", any(forward))
        .with_state(gateway)
}

async fn forward(State(gateway): State<Gateway>, request: Request) -> Response {
    let Some(service) = Service::owning(request.uri().path()) else {
        return ApiError::not_found("no such route").into_response();
    };
    let client = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|info| crate::upstream::ClientAddress(info.0));
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, MAX_FORWARDED_BYTES).await else {
        return ApiError::PayloadTooLarge.into_response();
    };
    let mut outgoing = http::Request::builder()
        .method(parts.method)
        .uri(parts.uri.path_and_query().map_or("/", |path| path.as_str()));
    for (name, value) in &parts.headers {
        if !is_hop_by_hop(name) {
            outgoing = outgoing.header(name, value);
        }
    }
    let Ok(mut outgoing) = outgoing.body(body) else {
        return ApiError::bad_request("the request cannot be forwarded").into_response();
    };
    if let Some(client) = client {
        outgoing.extensions_mut().insert(client);
    }
    match gateway.services.upstream().call(service, outgoing).await {
        Ok(response) => {
            let (mut parts, body) = response.into_parts();
            let names: Vec<_> =
                parts.headers.keys().filter(|name| is_hop_by_hop(name)).cloned().collect();
            for name in names {
                parts.headers.remove(name);
            }
            Response::from_parts(parts, Body::from(body))
        }
        Err(error) => {
            tracing::warn!(%error, service = service.name(), "forwarding failed");
            ApiError::Unavailable(anyhow::Error::new(error)).into_response()
        }
    }
}
