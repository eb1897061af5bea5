//! The GraphQL gateway (API.md "GraphQL gateway"): one API over the users, products and orders
//! services, with batching, guards and live subscriptions.
//!
//! - [`Gateway`]: the gateway of one process; [`Gateway::routes`] serves `/graphql` (and, with
//!   [`Gateway::forwarding`], `/api/*` under `mercato serve gateway`).
//! - [`upstream`]: how the services are reached, in process or over HTTP;
//!   [`clients`]: typed calls of their REST routes; [`errors`]: their problems as GraphQL errors.
//! - [`schema`]: the schema (`schema.graphql`), resolvers and batching loaders.
//! - [`limits`]: depth, complexity and alias guards, run before anything executes.
//! - [`documents`]: parsed documents and validation results remembered across requests, so the
//!   same text is not parsed and validated again on every request, and persisted queries.
//! - [`hooks`]: the one async-graphql extension that runs the last two on every request.
//! - [`hub`]: the bus tail that feeds subscriptions; [`ws`]: the WebSocket protocols.
//! - [`http`]: GraphQL over HTTP; [`forward`]: REST forwarding; [`graphiql`]: the browser page.

pub mod clients;
pub mod documents;
pub mod errors;
pub mod forward;
pub mod graphiql;
pub mod hooks;
pub mod http;
pub mod hub;
pub mod limits;
pub mod schema;
pub mod upstream;
pub mod ws;

use std::sync::Arc;
use std::time::Duration;

use mercato_platform::auth::TokenVerifier;
use mercato_platform::rate_limit::FixedWindow;
use serde::Deserialize;

use crate::clients::{Credentials, Services};
use crate::documents::Documents;
use crate::hub::EventHub;
use crate::limits::Limits;
use crate::schema::GatewaySchema;
use crate::schema::context::{Authentication, Session};
use crate::upstream::{ClientAddress, Upstream};

/// The gateway's settings (`[gateway]` in the config file, `MERCATO_GATEWAY__*`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// `gateway.limits.*`: depth, complexity, aliases, document size.
    pub limits: Limits,
    /// Schema introspection (GraphiQL needs it); on by default.
    pub introspection: bool,
    /// Requests per client (signed-in user, else address) per minute; 0 turns the limit off.
    pub rate_limit_per_minute: u32,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self { limits: Limits::default(), introspection: true, rate_limit_per_minute: 60_000 }
    }
}

/// The gateway of one process. Cheap to clone.
#[derive(Clone)]
pub struct Gateway {
    schema: GatewaySchema,
    services: Services,
    verifier: TokenVerifier,
    hub: EventHub,
    /// Its schema's remembered documents (the schema holds them too).
    documents: Arc<Documents>,
    config: Arc<GatewayConfig>,
    limiter: Option<Arc<FixedWindow<String>>>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Gateway {
    /// A gateway over `upstream`, checking tokens with `verifier`. Its subscriptions see the
    /// events given to [`Gateway::hub`] (run [`EventHub::run`] on the bus).
    pub fn new(
        upstream: Arc<dyn Upstream>,
        verifier: TokenVerifier,
        config: GatewayConfig,
    ) -> Self {
        let hub = EventHub::new();
        let documents = Arc::new(Documents::default());
        let schema = schema::build(
            hub.clone(),
            config.limits.clone(),
            config.introspection,
            documents.clone(),
        );
        let limiter = (config.rate_limit_per_minute > 0).then(|| {
            Arc::new(FixedWindow::new(config.rate_limit_per_minute, Duration::from_secs(60)))
        });
        Self {
            schema,
            services: Services::new(upstream),
            verifier,
            hub,
            documents,
            config: Arc::new(config),
            limiter,
        }
    }

    pub fn hub(&self) -> &EventHub {
        &self.hub
    }

    pub fn schema(&self) -> &GatewaySchema {
        &self.schema
    }

    /// The parsed documents and validation results its schema remembers.
    pub fn documents(&self) -> &Documents {
        &self.documents
    }

    /// `/graphql`, `/graphql/ws` and the GraphiQL assets.
    pub fn routes(&self) -> axum::Router {
        http::routes(self.clone())
    }

    /// `/api/*` and `/.well-known/*`, forwarded to the owning service.
    pub fn forwarding(&self) -> axum::Router {
        forward::routes(self.clone())
    }

    /// The session of a request or socket: the token checked here (the services check it
    /// again), and what the services are sent.
    pub async fn session(
        &self,
        token: Option<&str>,
        client: Option<ClientAddress>,
        request_id: Option<String>,
    ) -> Session {
        let authentication = match token {
            None => Authentication::Anonymous,
            Some(token) => match self.verifier.verify(token).await {
                Ok(caller) => Authentication::Caller(caller),
                Err(_) => Authentication::Refused(
                    "the token is invalid or expired; sign in again".to_owned(),
                ),
            },
        };
        let credentials = Credentials { token: token.map(str::to_owned), client, request_id };
        Session::new(self.services.clone(), credentials, authentication)
    }
}
