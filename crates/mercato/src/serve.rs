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
use mercato_users::UsersService;

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
    if args.check_config {
        return check_config(args.service, &settings);
    }
    match args.service {
        Service::Users => serve_users(settings).await,
        Service::Products => serve_products(settings).await,
        Service::Orders => serve_orders(settings).await,
        Service::Gateway => serve_gateway(settings).await,
    }
}

/// `serve <service> --check-config`: refuses what [`run`] would refuse before connecting
/// anywhere, else prints the effective settings with secrets redacted. Connects to nothing and
/// writes no file, so a deployment's environment can be checked anywhere.
fn check_config(service: Service, settings: &Settings) -> anyhow::Result<()> {
    let name = match service {
        Service::Users => "users",
        Service::Products => "products",
        Service::Orders => "orders",
        Service::Gateway => "gateway",
    };
    match service {
        Service::Users => {
            required(settings.database_url.as_deref(), "database_url", name)?;
            settings.users_config()?;
            // A key given as text is checked here; key files are read only by `serve`.
            if let Some(pem) = &settings.jwt_key {
                let pem = secrecy::ExposeSecret::expose_secret(pem);
                mercato_users::SigningKeys::from_pem(pem, "`jwt_key` (MERCATO_JWT_KEY)")?;
            }
        }
        Service::Products | Service::Orders => {
            users_url(settings, name)?;
            required(settings.database_url.as_deref(), "database_url", name)?;
        }
        Service::Gateway => {
            users_url(settings, name)?;
            required(settings.products_url.as_deref(), "products_url", name)?;
            required(settings.orders_url.as_deref(), "orders_url", name)?;
        }
    }
    let nats = settings.nats_url.as_deref().unwrap_or(crate::backbone::DEFAULT_NATS_URL);
    println!("The configuration of `mercato serve {name}` is valid (secrets redacted).");
    println!("events: NATS JetStream at {}", redact_secrets(nats));
    println!("{}", redact_secrets(&format!("{settings:#?}")));
    Ok(())
}

/// Hides secrets in `text` (the pretty `Debug` of the settings): the value of every field named
/// like a secret (`*password*`, `*secret*`, `*_key`; `secrecy` already hides its own), and the
/// password of every URL (`postgres://user:password@host`).
fn redact_secrets(text: &str) -> String {
    let secret =
        |name: &str| name.contains("password") || name.contains("secret") || name.ends_with("_key");
    let mut lines = Vec::new();
    // While inside a secret field's multi-line value: the indentation of its closing line.
    let mut skipping: Option<usize> = None;
    for line in text.lines() {
        let indent = line.len() - line.trim_start().len();
        if let Some(depth) = skipping {
            if indent == depth && line.trim_start().starts_with([')', '}', ']']) {
                skipping = None;
            }
            continue;
        }
        match line.trim_start().split_once(": ") {
            Some((field, value)) if secret(field) && value != "None," => {
                if value.ends_with(['(', '{', '[']) {
                    skipping = Some(indent);
                }
                lines.push(format!("{}{field}: [REDACTED],", &line[..indent]));
            }
            _ => lines.push(redact_url_passwords(line)),
        }
    }
    lines.join("\n")
}

/// `scheme://user:password@host` becomes `scheme://user:[REDACTED]@host`, for every URL in `text`.
fn redact_url_passwords(text: &str) -> String {
    let mut redacted = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("://") {
        let (before, after) = rest.split_at(start + 3);
        redacted.push_str(before);
        // Not at `"` or `,`: a password may hold them, and hiding too much beats leaking.
        let end = after.find(['/', '?', '#', ' ']).unwrap_or(after.len());
        let authority = &after[..end];
        match authority
            .rsplit_once('@')
            .and_then(|(info, host)| info.split_once(':').map(|(user, _)| (user, host)))
        {
            Some((user, host)) => redacted.push_str(&format!("{user}:[REDACTED]@{host}")),
            None => redacted.push_str(authority),
        }
        rest = &after[end..];
    }
    redacted.push_str(rest);
    redacted
}

fn database(settings: &Settings, service: &str) -> anyhow::Result<Database> {
    let url = required(settings.database_url.as_deref(), "database_url", service)?;
    Database::connect(url, &settings.pool())
}

/// A setting without which `serve <service>` cannot start, or an error naming its flag and
/// variable.
fn required<'a>(value: Option<&'a str>, key: &str, service: &str) -> anyhow::Result<&'a str> {
    value.with_context(|| {
        format!(
            "`{key}` (--{} or MERCATO_{}) is required for `serve {service}`",
            key.replace('_', "-"),
            key.to_uppercase()
        )
    })
}

/// The users service's base URL, whose JWKS verifies tokens.
fn users_url<'a>(settings: &'a Settings, service: &str) -> anyhow::Result<&'a str> {
    settings.users_url.as_deref().with_context(|| {
        format!("`users_url` (--users-url or MERCATO_USERS_URL) is required for `serve {service}`: its JWKS verifies tokens")
    })
}

/// A verifier of the users service's tokens, with keys fetched from its JWKS.
fn remote_verifier(settings: &Settings, service: &str) -> anyhow::Result<TokenVerifier> {
    let users = users_url(settings, service)?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .context("building the HTTP client for the JWKS")?;
    let url = format!("{}/.well-known/jwks.json", users.trim_end_matches('/'));
    Ok(TokenVerifier::from_jwks_url(&settings.jwt_issuer, url, client))
}

async fn serve_users(settings: Settings) -> anyhow::Result<()> {
    let keys = settings.signing_keys()?;
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
    background.spawn(orders.clone().share_wake_ups(
        bus.clone(),
        prefix.clone(),
        background.stop_signal(),
    ));
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
        required(value.as_deref(), key, "gateway").map(str::to_owned)
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
        let shutdown = crate::backbone::shutdown(settings, &readiness);
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
        mercato_platform::http::serve(listener, app, shutdown).await?;
        background.stop().await;
        Ok(())
    }
}
