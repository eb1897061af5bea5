//! Typed clients of the three services over an [`Upstream`]: one method per REST route the
//! gateway uses, returning the schema's types ([`crate::schema::types`]) or a [`ServiceError`].
//!
//! Every call carries the caller's own token, so each service checks it again (promise 8), and
//! the client's address and request id.

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, header};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::errors::{Problem, ServiceError};
use crate::schema::types::{AuthPayload, Order, Page, Product, User};
use crate::upstream::{ClientAddress, Service, Upstream};

/// Who a call is made for: the caller's bearer token (as sent), address and request id.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    pub token: Option<String>,
    pub client: Option<ClientAddress>,
    pub request_id: Option<String>,
}

/// The services, as the gateway's resolvers and loaders see them.
#[derive(Clone)]
pub struct Services {
    upstream: Arc<dyn Upstream>,
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services").finish_non_exhaustive()
    }
}

/// One REST call.
struct Call<'a> {
    service: Service,
    method: Method,
    path: String,
    body: Option<Vec<u8>>,
    headers: Vec<(&'static str, String)>,
    credentials: &'a Credentials,
}

impl Services {
    pub fn new(upstream: Arc<dyn Upstream>) -> Self {
        Self { upstream }
    }

    pub fn upstream(&self) -> &Arc<dyn Upstream> {
        &self.upstream
    }

    async fn send(&self, call: Call<'_>) -> Result<Bytes, ServiceError> {
        let service = call.service.name();
        let mut request = Request::builder().method(call.method).uri(&call.path);
        if let Some(token) = &call.credentials.token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        if let Some(request_id) = &call.credentials.request_id {
            request = request.header("x-request-id", request_id);
        }
        for (name, value) in &call.headers {
            request = request.header(*name, value);
        }
        let body = match call.body {
            Some(body) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Bytes::from(body)
            }
            None => Bytes::new(),
        };
        let mut request = request.body(body).map_err(|error| {
            ServiceError::Unavailable(format!("bad request to {service}: {error}"))
        })?;
        if let Some(client) = call.credentials.client {
            request.extensions_mut().insert(client);
        }
        metrics::counter!("gateway_upstream_calls_total", "service" => service).increment(1);
        let response = self
            .upstream
            .call(call.service, request)
            .await
            .map_err(|error| ServiceError::Unavailable(error.to_string()))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response.into_body());
        }
        let problem: Problem = serde_json::from_slice(response.body()).unwrap_or_default();
        Err(ServiceError::Refused { service, status: status.as_u16(), problem })
    }

    async fn json<T: DeserializeOwned>(&self, call: Call<'_>) -> Result<T, ServiceError> {
        let service = call.service.name();
        let body = self.send(call).await?;
        serde_json::from_slice(&body).map_err(|error| {
            ServiceError::Unavailable(format!("unreadable answer from {service}: {error}"))
        })
    }

    fn call<'a>(
        service: Service,
        method: Method,
        path: String,
        credentials: &'a Credentials,
    ) -> Call<'a> {
        Call { service, method, path, body: None, headers: Vec::new(), credentials }
    }

    fn with_body<'a>(
        service: Service,
        method: Method,
        path: String,
        body: &impl Serialize,
        credentials: &'a Credentials,
    ) -> Call<'a> {
        let body = serde_json::to_vec(body).unwrap_or_default();
        Call { service, method, path, body: Some(body), headers: Vec::new(), credentials }
    }

    /// `None` for a 404.
    async fn optional<T: DeserializeOwned>(
        &self,
        call: Call<'_>,
    ) -> Result<Option<T>, ServiceError> {
        match self.json(call).await {
            Ok(found) => Ok(Some(found)),
            Err(error) if error.status() == Some(404) => Ok(None),
            Err(error) => Err(error),
        }
    }

    // --- users --------------------------------------------------------------------------------

    pub async fn me(&self, credentials: &Credentials) -> Result<User, ServiceError> {
        self.json(Self::call(Service::Users, Method::GET, "/api/users/me".into(), credentials))
            .await
    }

    pub async fn user(
        &self,
        id: &str,
        credentials: &Credentials,
    ) -> Result<Option<User>, ServiceError> {
        let path = format!("/api/users/{id}");
        self.optional(Self::call(Service::Users, Method::GET, path, credentials)).await
    }

    /// The accounts of `ids` that exist (admin), in one call per 100 ids.
    pub async fn users_by_ids(
        &self,
        ids: &[String],
        credentials: &Credentials,
    ) -> Result<Vec<User>, ServiceError> {
        let mut found = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(100) {
            let path = format!("/api/users?ids={}", chunk.join(","));
            let page: Page<User> =
                self.json(Self::call(Service::Users, Method::GET, path, credentials)).await?;
            found.extend(page.items);
        }
        Ok(found)
    }

    pub async fn users(
        &self,
        query: &[(&str, String)],
        credentials: &Credentials,
    ) -> Result<Page<User>, ServiceError> {
        let path = with_query("/api/users", query);
        self.json(Self::call(Service::Users, Method::GET, path, credentials)).await
    }

    pub async fn register(
        &self,
        body: &impl Serialize,
        credentials: &Credentials,
    ) -> Result<User, ServiceError> {
        let call =
            Self::with_body(Service::Users, Method::POST, "/api/users".into(), body, credentials);
        self.json(call).await
    }

    /// `route` is `login` or `refresh`.
    pub async fn authenticate(
        &self,
        route: &str,
        body: &impl Serialize,
        credentials: &Credentials,
    ) -> Result<AuthPayload, ServiceError> {
        let path = format!("/api/auth/{route}");
        self.json(Self::with_body(Service::Users, Method::POST, path, body, credentials)).await
    }

    pub async fn update_user(
        &self,
        id: &str,
        body: &impl Serialize,
        credentials: &Credentials,
    ) -> Result<User, ServiceError> {
        let path = format!("/api/users/{id}");
        self.json(Self::with_body(Service::Users, Method::PATCH, path, body, credentials)).await
    }

    pub async fn delete_user(
        &self,
        id: &str,
        credentials: &Credentials,
    ) -> Result<(), ServiceError> {
        let path = format!("/api/users/{id}");
        self.send(Self::call(Service::Users, Method::DELETE, path, credentials)).await.map(drop)
    }

    // --- products -----------------------------------------------------------------------------

    pub async fn product(
        &self,
        id: &str,
        credentials: &Credentials,
    ) -> Result<Option<Product>, ServiceError> {
        let path = format!("/api/products/{id}");
        self.optional(Self::call(Service::Products, Method::GET, path, credentials)).await
    }

    /// The products of `ids` (active or not), in one call per 100 ids.
    pub async fn products_by_ids(
        &self,
        ids: &[String],
        credentials: &Credentials,
    ) -> Result<Vec<Product>, ServiceError> {
        let mut found = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(100) {
            let path = format!("/api/products?ids={}", chunk.join(","));
            let page: Page<Product> =
                self.json(Self::call(Service::Products, Method::GET, path, credentials)).await?;
            found.extend(page.items);
        }
        Ok(found)
    }

    pub async fn products(
        &self,
        query: &[(&str, String)],
        credentials: &Credentials,
    ) -> Result<Page<Product>, ServiceError> {
        let path = with_query("/api/products", query);
        self.json(Self::call(Service::Products, Method::GET, path, credentials)).await
    }

    /// `POST` (`id` absent) or `PATCH` a product.
    pub async fn save_product(
        &self,
        id: Option<&str>,
        body: &impl Serialize,
        credentials: &Credentials,
    ) -> Result<Product, ServiceError> {
        let call = match id {
            None => Self::with_body(
                Service::Products,
                Method::POST,
                "/api/products".into(),
                body,
                credentials,
            ),
            Some(id) => {
                let path = format!("/api/products/{id}");
                Self::with_body(Service::Products, Method::PATCH, path, body, credentials)
            }
        };
        self.json(call).await
    }

    pub async fn delete_product(
        &self,
        id: &str,
        credentials: &Credentials,
    ) -> Result<(), ServiceError> {
        let path = format!("/api/products/{id}");
        self.send(Self::call(Service::Products, Method::DELETE, path, credentials)).await.map(drop)
    }

    pub async fn adjust_inventory(
        &self,
        id: &str,
        delta: i64,
        credentials: &Credentials,
    ) -> Result<Product, ServiceError> {
        let path = format!("/api/products/{id}/inventory");
        let body = serde_json::json!({ "delta": delta });
        self.json(Self::with_body(Service::Products, Method::POST, path, &body, credentials)).await
    }

    // --- orders -------------------------------------------------------------------------------

    pub async fn order(
        &self,
        id: &str,
        credentials: &Credentials,
    ) -> Result<Option<Order>, ServiceError> {
        let path = format!("/api/orders/{id}");
        self.optional(Self::call(Service::Orders, Method::GET, path, credentials)).await
    }

    pub async fn orders(
        &self,
        query: &[(&str, String)],
        credentials: &Credentials,
    ) -> Result<Page<Order>, ServiceError> {
        let path = with_query("/api/orders", query);
        self.json(Self::call(Service::Orders, Method::GET, path, credentials)).await
    }

    /// The first page (`limit` orders) of each of `users`, in one call per 100 users.
    pub async fn orders_by_user(
        &self,
        users: &[String],
        status: Option<&str>,
        limit: i32,
        credentials: &Credentials,
    ) -> Result<Vec<UserPage>, ServiceError> {
        let mut pages = Vec::with_capacity(users.len());
        for chunk in users.chunks(100) {
            let mut query = vec![("userIds", chunk.join(",")), ("limit", limit.to_string())];
            if let Some(status) = status {
                query.push(("status", status.to_owned()));
            }
            let path = with_query("/api/orders/by-user", &query);
            let answer: UserPages =
                self.json(Self::call(Service::Orders, Method::GET, path, credentials)).await?;
            pages.extend(answer.pages);
        }
        Ok(pages)
    }

    /// Places (`id` absent), changes or cancels (`cancel`) an order, with the optional
    /// `Idempotency-Key` and `Prefer: wait=N`.
    pub async fn write_order(
        &self,
        write: OrderWrite<'_>,
        credentials: &Credentials,
    ) -> Result<Order, ServiceError> {
        let mut call = match write.target {
            OrderTarget::Place(body) => Self::with_body(
                Service::Orders,
                Method::POST,
                "/api/orders".into(),
                body,
                credentials,
            ),
            OrderTarget::Change(id, body) => {
                let path = format!("/api/orders/{id}");
                Self::with_body(Service::Orders, Method::PATCH, path, body, credentials)
            }
            OrderTarget::Cancel(id) => {
                let path = format!("/api/orders/{id}/cancel");
                Self::call(Service::Orders, Method::POST, path, credentials)
            }
        };
        if let Some(key) = write.idempotency_key {
            call.headers.push(("idempotency-key", key.to_owned()));
        }
        if let Some(seconds) = write.wait_seconds {
            call.headers.push(("prefer", format!("wait={seconds}")));
        }
        self.json(call).await
    }
}

/// `GET /api/orders/by-user`'s answer.
#[derive(Debug, serde::Deserialize)]
struct UserPages {
    pages: Vec<UserPage>,
}

/// The first page of one user's orders.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserPage {
    pub user_id: String,
    pub items: Vec<Order>,
    pub next_cursor: Option<String>,
}

/// What an order write does.
#[derive(Debug)]
pub enum OrderTarget<'a> {
    Place(&'a serde_json::Value),
    Change(&'a str, &'a serde_json::Value),
    Cancel(&'a str),
}

#[derive(Debug)]
pub struct OrderWrite<'a> {
    pub target: OrderTarget<'a>,
    pub idempotency_key: Option<&'a str>,
    pub wait_seconds: Option<u32>,
}

/// `path?a=1&b=2`, form-encoded; no `?` without parameters.
fn with_query(path: &str, query: &[(&str, String)]) -> String {
    if query.is_empty() {
        return path.to_owned();
    }
    let encoded = serde_urlencoded::to_string(query).unwrap_or_default();
    format!("{path}?{encoded}")
}
