//! `mercato up`: every service in one process, on one port, with embedded storage.
//!
//! Each service still owns its own database (a SQLite file per service under the data dir) and
//! meets the others only through events and HTTP, exactly as under `mercato serve`. Events travel
//! through the embedded durable log (`<data-dir>/events.db`) instead of NATS.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use mercato_bus::EventBus;
use mercato_gateway::Gateway;
use mercato_gateway::upstream::InProcess;
use mercato_orders::OrdersService;
use mercato_platform::http::{Operations, finish};
use mercato_products::ProductsService;
use mercato_store::Database;
use mercato_users::UsersService;

use crate::backbone::Background;
use crate::cli::UpArgs;
use crate::config::{Overrides, Settings};

pub async fn run(config: Option<&Path>, args: UpArgs) -> anyhow::Result<()> {
    let overrides =
        Overrides { listen: args.listen, data_dir: args.data_dir, ..Overrides::default() };
    let settings = Settings::load(config, overrides)?;
    let data_dir = settings.data_dir.clone();
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating the data dir {}", data_dir.display()))?;

    let keys = settings.signing_keys()?;
    let log = crate::backbone::embedded_log(&data_dir).await?;
    // This process is the log's consumer: what a previous run claimed and never settled (it was
    // killed) is handed out again now, not after its ack_wait.
    let released = log.release_in_flight().await?;
    if released > 0 {
        tracing::info!(released, "deliveries left in flight by the last run are due again");
    }
    let bus: Arc<dyn EventBus> = Arc::new(log.clone());
    let users_db = Database::connect(&sqlite_url(&data_dir, "users"), &settings.pool())?;
    let users = UsersService::start(users_db, keys, settings.users_config()?).await?;
    let generated_admin = match settings.admin_email {
        Some(_) => None,
        None => crate::admin::bootstrap_default_admin(&users, &data_dir).await?,
    };

    let products_db = Database::connect(&sqlite_url(&data_dir, "products"), &settings.pool())?;
    let products = ProductsService::start(products_db, users.verifier()).await?;
    let orders_db = Database::connect(&sqlite_url(&data_dir, "orders"), &settings.pool())?;
    let orders = OrdersService::start(orders_db, users.verifier()).await?;

    let mut background = Background::new();
    let prefix = settings.nats_prefix.clone();
    background
        .spawn(users.outbox().relay(bus.clone(), &prefix, "users").run(background.stop_signal()));
    background.spawn(
        products.outbox().relay(bus.clone(), &prefix, "products").run(background.stop_signal()),
    );
    background
        .spawn(products.reservation_consumer(bus.clone(), &prefix).run(background.stop_signal()));
    background
        .spawn(orders.outbox().relay(bus.clone(), &prefix, "orders").run(background.stop_signal()));
    background.spawn(orders.saga_consumer(bus.clone(), &prefix).run(background.stop_signal()));
    background.spawn(orders.replicas_consumer(bus.clone(), &prefix).run(background.stop_signal()));
    background.spawn(orders.clone().maintenance(background.stop_signal()));

    let (users_routes, users_api) = users.routes();
    let (products_routes, products_api) = products.routes();
    let (orders_routes, orders_api) = orders.routes();
    let services = users_routes.merge(products_routes).merge(orders_routes);
    // The gateway calls the services' routers in process: the same handlers, no socket.
    let gateway = Gateway::new(
        Arc::new(InProcess::new(services.clone())),
        users.verifier(),
        settings.gateway.clone(),
    );
    background.spawn(gateway.hub().clone().run(
        bus.clone(),
        prefix.clone(),
        background.stop_signal(),
    ));
    let mut readiness = users.readiness();
    readiness.merge(products.readiness());
    readiness.merge(orders.readiness());
    crate::backbone::add_bus_check(&mut readiness, bus.clone());
    let shutdown = crate::backbone::shutdown(&settings, &readiness);
    let operations = Operations {
        readiness,
        metrics: mercato_platform::metrics::recorder(),
        openapi: mercato_platform::http::document(vec![users_api, products_api, orders_api]),
    };
    let app = finish(
        services.merge(gateway.routes()).merge(crate::events::asyncapi_route(&prefix)),
        operations,
    );

    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("listening on {}", settings.listen))?;
    let address = listener.local_addr()?;
    println!("Mercato is running at http://{address}");
    println!("  REST API      http://{address}/api");
    println!("  GraphQL       http://{address}/graphql (GraphiQL in a browser)");
    println!("  OpenAPI       http://{address}/api/openapi.json");
    println!("  AsyncAPI      http://{address}/api/asyncapi.json");
    println!("  health        http://{address}/health/ready");
    println!("  metrics       http://{address}/metrics");
    println!("  data          {}", data_dir.display());
    if let Some(credentials) = generated_admin {
        println!();
        println!("Created the admin account (shown once; also in {}):", credentials.file.display());
        println!("  email:    {}", credentials.email);
        println!("  password: {}", credentials.password);
    }
    tracing::info!(%address, "mercato up is serving");
    mercato_platform::http::serve(listener, app, shutdown).await?;
    background.stop().await;
    users.database().close().await;
    products.database().close().await;
    orders.database().close().await;
    log.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// The SQLite URL of one service's database in the data dir.
pub fn sqlite_url(data_dir: &Path, service: &str) -> String {
    format!("sqlite://{}", data_dir.join(format!("{service}.db")).display())
}
