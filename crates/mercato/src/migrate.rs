//! `mercato migrate`: apply migrations and exit (services also migrate on start).

use std::path::Path;

use mercato_store::Database;

use crate::cli::{MigrateArgs, Service};
use crate::config::{Overrides, Settings};
use crate::embedded::sqlite_url;

pub async fn run(config: Option<&Path>, args: MigrateArgs) -> anyhow::Result<()> {
    let overrides = Overrides {
        database_url: args.database_url.clone(),
        data_dir: args.data_dir.clone(),
        ..Overrides::default()
    };
    let settings = Settings::load(config, overrides)?;
    let targets: Vec<(Service, String)> = match (args.service, &settings.database_url) {
        (Some(service), Some(url)) => vec![(service, url.clone())],
        _ => vec![
            (Service::Users, sqlite_url(&settings.data_dir, "users")),
            (Service::Products, sqlite_url(&settings.data_dir, "products")),
            (Service::Orders, sqlite_url(&settings.data_dir, "orders")),
        ],
    };
    for (service, url) in targets {
        let database = Database::connect(&url, &settings.pool())?;
        match service {
            Service::Users => {
                database.migrate(&mercato_users::db::MIGRATIONS).await?;
                database.migrate(&mercato_bus::MIGRATIONS).await?;
            }
            Service::Products => {
                database.migrate(&mercato_products::db::MIGRATIONS).await?;
                database.migrate(&mercato_bus::MIGRATIONS).await?;
            }
            Service::Orders => {
                database.migrate(&mercato_orders::db::MIGRATIONS).await?;
                database.migrate(&mercato_bus::MIGRATIONS).await?;
            }
            other => anyhow::bail!("the {other:?} service has no database in this version"),
        }
        database.close().await;
        println!("{service:?}: migrations applied ({})", database.backend().name());
    }
    Ok(())
}
