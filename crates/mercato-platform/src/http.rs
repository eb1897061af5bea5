//! Turning a service router into a server that speaks the contract.
//!
//! [`finish`] adds, around whatever routes a process mounts:
//! - `x-request-id` on every response (echoed when the request had one, else a new UUIDv7), and a
//!   tracing span per request carrying it;
//! - the cause of every 5xx logged once, with its chain, inside that span;
//! - RED metrics per matched route;
//! - the 1 MiB body limit;
//! - problem-detail answers for unknown routes (`404`) and wrong methods (`405`);
//! - `/health/live`, `/health/ready`, `/metrics` and `/api/openapi.json`.

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use tower::ServiceBuilder;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;

use crate::error::{ApiError, ErrorCause};
use crate::extract::MAX_BODY_BYTES;
use crate::health::{self, Readiness};

pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Gives requests without an `x-request-id` a fresh UUIDv7.
#[derive(Debug, Clone, Copy, Default)]
struct NewRequestId;

impl MakeRequestId for NewRequestId {
    fn make_request_id<B>(&mut self, _request: &axum::http::Request<B>) -> Option<RequestId> {
        HeaderValue::from_str(&uuid::Uuid::now_v7().to_string()).ok().map(RequestId::new)
    }
}

/// Operational pieces every process serves next to its routes.
#[derive(Clone)]
pub struct Operations {
    pub readiness: Readiness,
    pub metrics: PrometheusHandle,
    /// The OpenAPI document of every REST endpoint the process serves.
    pub openapi: utoipa::openapi::OpenApi,
}

impl std::fmt::Debug for Operations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Operations").field("readiness", &self.readiness).finish_non_exhaustive()
    }
}

/// Wraps the routes of one process (one service, or all of them under `mercato up`) with the
/// shared middleware and operational endpoints.
pub fn finish(routes: Router, operations: Operations) -> Router {
    let Operations { readiness, metrics, openapi } = operations;
    let openapi = std::sync::Arc::new(openapi.to_json().unwrap_or_default());
    routes
        .route(
            "/api/openapi.json",
            get(move || {
                let openapi = openapi.clone();
                async move {
                    ([(axum::http::header::CONTENT_TYPE, "application/json")], openapi.to_string())
                }
            }),
        )
        .route("/health/live", get(health::live))
        .route("/health/ready", get(move || health::ready(readiness.clone())))
        .route("/metrics", get(move || crate::metrics::render(metrics.clone())))
        .fallback(|| async { ApiError::not_found("no such route") })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .route_layer(middleware::from_fn(crate::metrics::track))
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(REQUEST_ID.clone(), NewRequestId))
                .layer(TraceLayer::new_for_http().make_span_with(request_span))
                .layer(PropagateRequestIdLayer::new(REQUEST_ID.clone()))
                .layer(middleware::from_fn(crate::trace::propagate))
                .layer(middleware::from_fn(log_server_errors))
                .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES)),
        )
}

fn request_span(request: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    let request_id = request
        .headers()
        .get(&REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        request_id = %request_id,
        trace_id = tracing::field::Empty,
    )
}

/// Logs the cause of a 5xx (carried by [`ErrorCause`]) once, with its whole chain.
async fn log_server_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    if let Some(ErrorCause(cause)) = response.extensions().get::<ErrorCause>() {
        tracing::error!(
            status = response.status().as_u16(),
            error = format!("{cause:#}"),
            "request failed"
        );
    }
    response
}

/// Serves `app` on `listener` until `shutdown` resolves, then lets in-flight requests finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await
}

/// One OpenAPI 3.1 document from the documents of the services a process serves, with the
/// bearer-token security scheme their operations refer to.
pub fn document(parts: Vec<utoipa::openapi::OpenApi>) -> utoipa::openapi::OpenApi {
    use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
    use utoipa::openapi::{ComponentsBuilder, InfoBuilder, OpenApiBuilder};

    let info = InfoBuilder::new()
        .title("Mercato")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(
            "Mercato's REST API. Errors are RFC 9457 problem details; see API.md for the contract.",
        ))
        .build();
    let bearer = SecurityScheme::Http(
        HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build(),
    );
    let mut document = OpenApiBuilder::new()
        .info(info)
        .components(Some(ComponentsBuilder::new().security_scheme("bearer", bearer).build()))
        .build();
    for part in parts {
        document.merge(part);
    }
    document
}
