//! `mercato serve <service>`: one service in its own process, on its own database, with NATS
//! JetStream as the bus.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use mercato_bus::EventBus;
use mercato_gateway::Gateway;
use mercato_gateway::upstream::{HttpSettings, OverHttp};
use mercato_orders::OrdersService;
use mercato_platform::auth::TokenVerifier;
use mercato_platform::health::Readiness;
use mercato_platform::http::{Operations, finish};
use mercato_products::ProductsService;
use mercato_store::Database;
use mercato_users::{SigningKeys, UsersService};

use crate::backbone::Background;
use crate::cli::{ServeArgs, Service};
use crate::config::{Overrides, Settings};

pub async fn run(config: Option<&Path>, args: ServeArgs) -> anyhow::Result<()> {
    let overrides = Overrides {
        listen: args.listen,
        data_dir: args.data_dir,
        database_url: args.database_url,
        nats_url: args.nats_url,
        nats_prefix: args.nats_prefix,
        users_url: args.users_url,
        products_url: args.products_url,
        orders_url: args.orders_url,
        jwt_key_file: args.jwt_key_file,
    };
    let settings = Settings::load(config, overrides)?;
    match args.service {
        Service::Users => serve_users(settings).await,
        Service::Products => serve_products(settings).await,
        Service::Orders => serve_orders(settings).await,
        Service::Gateway => serve_gateway(settings).await,
    }
}

fn database(settings: &Settings, service: &str) -> anyhow::Result<Database> {
    let url = settings.database_url.clone().with_context(|| {
        format!(
            "`database_url` (--database-url or MERCATO_DATABASE_URL) is required for `serve {service}`"
        )
    })?;
    Database::connect(&url, &settings.pool())
}

/// A verifier of the users service's tokens, with keys fetched from its JWKS.
fn remote_verifier(settings: &Settings, service: &str) -> anyhow::Result<TokenVerifier> {
    let users = settings.users_url.as_deref().with_context(|| {
        format!("`users_url` (--users-url or MERCATO_USERS_URL) is required for `serve {service}`: its JWKS verifies tokens")
    })?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .context("building the HTTP client for the JWKS")?;
    let url = format!("{}/.well-known/jwks.json", users.trim_end_matches('/'));
    Ok(TokenVerifier::from_jwks_url(&settings.jwt_issuer, url, client))
}

async fn serve_users(settings: Settings) -> anyhow::Result<()> {
    let key_file =
        settings.jwt_key_file.clone().unwrap_or_else(|| settings.data_dir.join("jwt-ed25519.pem"));
    let keys = SigningKeys::load_or_generate(&key_file)?;
    let users =
        UsersService::start(database(&settings, "users")?, keys, settings.users_config()?).await?;
    let bus: Arc<dyn EventBus> = Arc::new(crate::backbone::jetstream(&settings).await?);
    let mut background = Background::new();
    background.spawn(
        users
            .outbox()
            .relay(bus.clone(), &settings.nats_prefix, "users")
            .run(background.stop_signal()),
    );
    let (routes, openapi) = users.routes();
    let shape = Shape { name: "users", routes, openapi, readiness: users.readiness(), bus };
    shape.serve(&settings, background).await?;
    users.database().close().await;
    Ok(())
}

async fn serve_products(settings: Settings) -> anyhow::Result<()> {
    let verifier = remote_verifier(&settings, "products")?;
    let products = ProductsService::start(database(&settings, "products")?, verifier).await?;
    let bus: Arc<dyn EventBus> = Arc::new(crate::backbone::jetstream(&settings).await?);
    let prefix = &settings.nats_prefix;
    let mut background = Background::new();
    background.spawn(
        products.outbox().relay(bus.clone(), prefix, "products").run(background.stop_signal()),
    );
    background
        .spawn(products.reservation_consumer(bus.clone(), prefix).run(background.stop_signal()));
    let (routes, openapi) = products.routes();
    let shape = Shape { name: "products", routes, openapi, readiness: products.readiness(), bus };
    shape.serve(&settings, background).await?;
    products.database().close().await;
    Ok(())
}

async fn serve_orders(settings: Settings) -> anyhow::Result<()> {
    let verifier = remote_verifier(&settings, "orders")?;
    let orders = OrdersService::start(database(&settings, "orders")?, verifier).await?;
    let bus: Arc<dyn EventBus> = Arc::new(crate::backbone::jetstream(&settings).await?);
    let prefix = &settings.nats_prefix;
    let mut background = Background::new();
    background
        .spawn(orders.outbox().relay(bus.clone(), prefix, "orders").run(background.stop_signal()));
    background.spawn(orders.saga_consumer(bus.clone(), prefix).run(background.stop_signal()));
    background.spawn(orders.replicas_consumer(bus.clone(), prefix).run(background.stop_signal()));
    background.spawn(orders.clone().maintenance(background.stop_signal()));
    let (routes, openapi) = orders.routes();
    let shape = Shape { name: "orders", routes, openapi, readiness: orders.readiness(), bus };
    shape.serve(&settings, background).await?;
    orders.database().close().await;
    Ok(())
}

/// The gateway: GraphQL over the three services' HTTP APIs, subscriptions from NATS, and
/// `/api/*` forwarded, so that one address serves what `mercato up` serves.
async fn serve_gateway(settings: Settings) -> anyhow::Result<()> {
    let verifier = remote_verifier(&settings, "gateway")?;
    let url = |value: &Option<String>, key: &str| {
        value.clone().with_context(|| {
            format!(
                "`{key}` (--{} or MERCATO_{}) is required for `serve gateway`",
                key.replace('_', "-"),
                key.to_uppercase()
            )
        })
    };
    let upstream = OverHttp::new(HttpSettings {
        users_url: url(&settings.users_url, "users_url")?,
        products_url: url(&settings.products_url, "products_url")?,
        orders_url: url(&settings.orders_url, "orders_url")?,
        timeout: Duration::from_secs(10),
        read_retries: 2,
    })?;
    let gateway = Gateway::new(Arc::new(upstream), verifier, settings.gateway.clone());
    let bus: Arc<dyn EventBus> = Arc::new(crate::backbone::jetstream(&settings).await?);
    let mut background = Background::new();
    background.spawn(gateway.hub().clone().run(
        bus.clone(),
        settings.nats_prefix.clone(),
        background.stop_signal(),
    ));
    let routes = gateway.routes().merge(gateway.forwarding());
    let openapi = utoipa::openapi::OpenApi::default();
    let shape = Shape { name: "gateway", routes, openapi, readiness: Readiness::default(), bus };
    shape.serve(&settings, background).await
}

/// What every single-service process serves besides its own routes.
struct Shape {
    name: &'static str,
    routes: Router,
    openapi: utoipa::openapi::OpenApi,
    readiness: Readiness,
    bus: Arc<dyn EventBus>,
}

impl Shape {
    /// Serves until SIGTERM/Ctrl-C, then stops the background tasks.
    async fn serve(self, settings: &Settings, background: Background) -> anyhow::Result<()> {
        let mut readiness = self.readiness;
        crate::backbone::add_bus_check(&mut readiness, self.bus);
        let app = finish(
            self.routes.merge(crate::events::asyncapi_route(&settings.nats_prefix)),
            Operations {
                readiness,
                metrics: mercato_platform::metrics::recorder(),
                openapi: mercato_platform::http::document(vec![self.openapi]),
            },
        );
        let listener = tokio::net::TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("listening on {}", settings.listen))?;
        let address = listener.local_addr()?;
        println!("Mercato {} service is running at http://{address}", self.name);
        mercato_platform::http::serve(listener, app, mercato_platform::shutdown::signal()).await?;
        background.stop().await;
        Ok(())
    }
}
