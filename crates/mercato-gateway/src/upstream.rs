//! How the gateway reaches the services: [`InProcess`] calls their routers directly (`mercato up`),
//! [`OverHttp`] calls them over pooled HTTP connections with timeouts, retrying idempotent reads
//! (`mercato serve gateway`). Both take and give plain `http` requests and responses, so the
//! typed clients ([`crate::clients`]) and the `/api/*` forwarding ([`crate::forward`]) do not
//! know which one they use.

use std::net::SocketAddr;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use tower::ServiceExt;

/// The services behind the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    Users,
    Products,
    Orders,
}

impl Service {
    pub fn name(self) -> &'static str {
        match self {
            Self::Users => "users",
            Self::Products => "products",
            Self::Orders => "orders",
        }
    }

    /// The service that owns a REST path (API.md), compatibility routes included.
    pub fn owning(path: &str) -> Option<Self> {
        let under = |prefix: &str| {
            path.strip_prefix(prefix).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        };
        if ["/api/users", "/api/auth", "/api/register", "/api/login", "/api/get", "/.well-known"]
            .iter()
            .any(|prefix| under(prefix))
        {
            Some(Self::Users)
        } else if under("/api/products") {
            Some(Self::Products)
        } else if under("/api/orders") || under("/api/create") {
            Some(Self::Orders)
        } else {
            None
        }
    }
}

/// A service could not be asked (its answer, whatever the status, is not an error here).
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("the {service} service is unreachable: {reason}")]
    Unreachable { service: &'static str, reason: String },
    #[error("the {service} service did not answer within {after:?}")]
    Timeout { service: &'static str, after: Duration },
}

/// The client's address, carried in a request's extensions so the services' per-address limits
/// see the real client, not the gateway.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddress(pub SocketAddr);

/// Sends one request to a service and returns its whole answer.
#[async_trait]
pub trait Upstream: Send + Sync + 'static {
    async fn call(
        &self,
        service: Service,
        request: Request<Bytes>,
    ) -> Result<Response<Bytes>, UpstreamError>;
}

/// The largest answer read from a service (a page of 100 orders of 100 lines is well below).
const MAX_ANSWER_BYTES: usize = 32 * 1024 * 1024;

/// The services' routers in this process: a call is a function call, no socket.
#[derive(Clone)]
pub struct InProcess {
    router: axum::Router,
}

impl std::fmt::Debug for InProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcess").finish_non_exhaustive()
    }
}

impl InProcess {
    /// `router` serves the routes of every service (without the operational endpoints).
    pub fn new(router: axum::Router) -> Self {
        Self { router }
    }
}

#[async_trait]
impl Upstream for InProcess {
    async fn call(
        &self,
        service: Service,
        request: Request<Bytes>,
    ) -> Result<Response<Bytes>, UpstreamError> {
        let mut request = request.map(axum::body::Body::from);
        if let Some(ClientAddress(address)) = request.extensions().get::<ClientAddress>().copied() {
            request.extensions_mut().insert(axum::extract::ConnectInfo(address));
        }
        let response = match self.router.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let (parts, body) = response.into_parts();
        let body = axum::body::to_bytes(body, MAX_ANSWER_BYTES).await.map_err(|error| {
            UpstreamError::Unreachable { service: service.name(), reason: error.to_string() }
        })?;
        Ok(Response::from_parts(parts, body))
    }
}

/// Where the services listen, and how patiently to call them.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub users_url: String,
    pub products_url: String,
    pub orders_url: String,
    /// Per request; a request holding `Prefer: wait=N` gets N seconds more.
    pub timeout: Duration,
    /// Extra attempts for `GET` requests that could not reach the service or got 502/503/504.
    pub read_retries: u32,
}

/// The services over HTTP, one pooled client for all of them.
#[derive(Debug, Clone)]
pub struct OverHttp {
    client: reqwest::Client,
    settings: HttpSettings,
}

impl OverHttp {
    pub fn new(settings: HttpSettings) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .connect_timeout(Duration::from_secs(3))
            .tcp_nodelay(true)
            .build()?;
        Ok(Self { client, settings })
    }

    fn base(&self, service: Service) -> &str {
        let url = match service {
            Service::Users => &self.settings.users_url,
            Service::Products => &self.settings.products_url,
            Service::Orders => &self.settings.orders_url,
        };
        url.trim_end_matches('/')
    }

    async fn attempt(
        &self,
        service: Service,
        method: &Method,
        url: &str,
        headers: &HeaderMap,
        body: &Bytes,
        timeout: Duration,
    ) -> Result<Response<Bytes>, UpstreamError> {
        let unreachable = |error: reqwest::Error| {
            if error.is_timeout() {
                UpstreamError::Timeout { service: service.name(), after: timeout }
            } else {
                UpstreamError::Unreachable { service: service.name(), reason: error.to_string() }
            }
        };
        let response = self
            .client
            .request(method.clone(), url)
            .headers(headers.clone())
            .body(body.clone())
            .timeout(timeout)
            .send()
            .await
            .map_err(unreachable)?;
        let mut answer = Response::builder().status(response.status());
        if let Some(answer_headers) = answer.headers_mut() {
            for (name, value) in response.headers() {
                if !is_hop_by_hop(name) {
                    answer_headers.append(name.clone(), value.clone());
                }
            }
        }
        let body = response.bytes().await.map_err(unreachable)?;
        answer.body(body).map_err(|error| UpstreamError::Unreachable {
            service: service.name(),
            reason: error.to_string(),
        })
    }
}

#[async_trait]
impl Upstream for OverHttp {
    async fn call(
        &self,
        service: Service,
        request: Request<Bytes>,
    ) -> Result<Response<Bytes>, UpstreamError> {
        let (parts, body) = request.into_parts();
        let path = parts.uri.path_and_query().map_or("/", |path| path.as_str());
        let url = format!("{}{path}", self.base(service));
        let mut headers = parts.headers;
        headers.retain_hop_by_hop();
        if let Some(ClientAddress(address)) = parts.extensions.get::<ClientAddress>()
            && let Ok(value) = address.ip().to_string().parse()
        {
            headers.insert("x-forwarded-for", value);
        }
        let timeout = self.settings.timeout + held_for(&headers);
        let retries = if parts.method == Method::GET { self.settings.read_retries } else { 0 };
        let mut attempt = 0;
        loop {
            let outcome =
                self.attempt(service, &parts.method, &url, &headers, &body, timeout).await;
            let retry = match &outcome {
                Ok(response) => matches!(
                    response.status(),
                    StatusCode::BAD_GATEWAY
                        | StatusCode::SERVICE_UNAVAILABLE
                        | StatusCode::GATEWAY_TIMEOUT
                ),
                Err(UpstreamError::Unreachable { .. }) => true,
                Err(UpstreamError::Timeout { .. }) => false,
            };
            if !retry || attempt >= retries {
                return outcome;
            }
            attempt += 1;
            tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
        }
    }
}

/// How long a request asks the service to hold it (`Prefer: wait=N`, at most 30 s).
fn held_for(headers: &HeaderMap) -> Duration {
    let seconds = headers
        .get_all("prefer")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|part| part.trim().strip_prefix("wait="))
        .filter_map(|n| n.trim().parse::<u64>().ok())
        .max()
        .unwrap_or(0);
    Duration::from_secs(seconds.min(30))
}

/// Headers that belong to one connection and are never passed on (RFC 9110, 7.6.1).
pub fn is_hop_by_hop(name: &header::HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
            | "host"
            | "content-length"
    )
}

trait RetainEndToEnd {
    fn retain_hop_by_hop(&mut self);
}

impl RetainEndToEnd for HeaderMap {
    /// Drops the hop-by-hop headers, keeping the end-to-end ones.
    fn retain_hop_by_hop(&mut self) {
        let names: Vec<_> = self.keys().filter(|name| is_hop_by_hop(name)).cloned().collect();
        for name in names {
            self.remove(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rest_path_has_its_owner() {
        assert_eq!(Service::owning("/api/users/me"), Some(Service::Users));
        assert_eq!(Service::owning("/api/auth/login"), Some(Service::Users));
        assert_eq!(Service::owning("/api/register"), Some(Service::Users));
        assert_eq!(Service::owning("/.well-known/jwks.json"), Some(Service::Users));
        assert_eq!(Service::owning("/api/products"), Some(Service::Products));
        assert_eq!(Service::owning("/api/orders/x/cancel"), Some(Service::Orders));
        assert_eq!(Service::owning("/api/create"), Some(Service::Orders));
        assert_eq!(Service::owning("/api/productsx"), None);
        assert_eq!(Service::owning("/graphql"), None);
    }

    #[test]
    fn a_held_request_gets_its_wait_added() {
        let mut headers = HeaderMap::new();
        assert_eq!(held_for(&headers), Duration::ZERO);
        headers.insert("prefer", header::HeaderValue::from_static("respond-async, wait=12"));
        assert_eq!(held_for(&headers), Duration::from_secs(12));
        headers.insert("prefer", header::HeaderValue::from_static("wait=500"));
        assert_eq!(held_for(&headers), Duration::from_secs(30));
    }
}
