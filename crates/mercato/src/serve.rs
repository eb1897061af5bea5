//! `mercato serve <service>`: one service in its own process.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use mercato_bus::EventBus;
use mercato_platform::http::{Operations, finish};
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
        other => anyhow::bail!(
            "`mercato serve {}` is not available in this version yet; `mercato up` runs what exists",
            format!("{other:?}").to_lowercase()
        ),
    }
}

async fn serve_users(settings: Settings) -> anyhow::Result<()> {
    let url = settings.database_url.clone().context(
        "`database_url` (--database-url or MERCATO_DATABASE_URL) is required for `serve users`",
    )?;
    let key_file =
        settings.jwt_key_file.clone().unwrap_or_else(|| settings.data_dir.join("jwt-ed25519.pem"));
    let keys = SigningKeys::load_or_generate(&key_file)?;
    let database = Database::connect(&url, &settings.pool())?;
    let users = UsersService::start(database, keys, settings.users_config()?).await?;
    let bus: Arc<dyn EventBus> = Arc::new(crate::backbone::jetstream(&settings).await?);
    let mut background = Background::new();
    background.spawn(
        users
            .outbox()
            .relay(bus.clone(), &settings.nats_prefix, "users")
            .run(background.stop_signal()),
    );
    let (routes, openapi) = users.routes();
    let mut readiness = users.readiness();
    crate::backbone::add_bus_check(&mut readiness, bus.clone());
    let app = finish(
        routes.merge(crate::events::asyncapi_route(&settings.nats_prefix)),
        Operations {
            readiness,
            metrics: mercato_platform::metrics::recorder(),
            openapi: mercato_platform::http::document(vec![openapi]),
        },
    );
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("listening on {}", settings.listen))?;
    let address = listener.local_addr()?;
    println!("Mercato users service is running at http://{address}");
    mercato_platform::http::serve(listener, app, mercato_platform::shutdown::signal()).await?;
    background.stop().await;
    users.database().close().await;
    Ok(())
}
