//! [`ProductsService`]: the service assembled from its database and a token verifier.

use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::extract::FromRef;
use mercato_bus::consumer::{Consumer, ConsumerConfig};
use mercato_bus::{EventBus, Outbox};
use mercato_contracts::{Event, OrderCancelled, OrderPlaced, OrderUpdated, nats_subject};
use mercato_platform::auth::TokenVerifier;
use mercato_platform::health::Readiness;
use mercato_store::Database;

use crate::db;
use crate::reservations::Reservations;

/// The durable consumer through which this service reserves stock for orders.
pub const RESERVATIONS_CONSUMER: &str = "products-reservations";

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub(crate) db: Database,
    pub(crate) outbox: Outbox,
    pub(crate) verifier: TokenVerifier,
}

impl FromRef<AppState> for TokenVerifier {
    fn from_ref(state: &AppState) -> Self {
        state.verifier.clone()
    }
}

/// The products service, ready to serve.
#[derive(Clone)]
pub struct ProductsService {
    state: AppState,
}

impl std::fmt::Debug for ProductsService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProductsService").field("db", &self.state.db).finish_non_exhaustive()
    }
}

impl ProductsService {
    /// Migrates the database. `verifier` checks the users service's tokens.
    pub async fn start(database: Database, verifier: TokenVerifier) -> anyhow::Result<Self> {
        database.migrate(&db::MIGRATIONS).await.context("migrating the products database")?;
        database
            .migrate(&mercato_bus::MIGRATIONS)
            .await
            .context("migrating the products database's outbox and inbox")?;
        Ok(Self {
            state: AppState { outbox: Outbox::new(database.clone()), db: database, verifier },
        })
    }

    /// The service's routes (with state) and their OpenAPI document.
    pub fn routes(&self) -> (Router, utoipa::openapi::OpenApi) {
        crate::http::routes(self.state.clone())
    }

    pub fn router(&self) -> Router {
        self.routes().0
    }

    pub fn openapi(&self) -> utoipa::openapi::OpenApi {
        self.routes().1
    }

    /// The reservation handler (applies order events in a caller's transaction).
    pub fn reservations(&self) -> Reservations {
        Reservations::new(self.state.db.clone(), self.state.outbox.clone())
    }

    /// The consumer that reserves and releases stock for the order saga, on `bus` under
    /// `prefix`. Replicas share it.
    pub fn reservation_consumer(&self, bus: Arc<dyn EventBus>, prefix: &str) -> Consumer {
        let subjects = vec![
            nats_subject(prefix, OrderPlaced::AGGREGATE, OrderPlaced::ACTION),
            nats_subject(prefix, OrderUpdated::AGGREGATE, OrderUpdated::ACTION),
            nats_subject(prefix, OrderCancelled::AGGREGATE, OrderCancelled::ACTION),
        ];
        let config = ConsumerConfig::new(RESERVATIONS_CONSUMER, subjects);
        Consumer::new(self.state.db.clone(), bus, config, Arc::new(self.reservations()))
            .waking(self.state.outbox.clone())
    }

    /// The service's readiness checks (its database, and its outbox backlog as detail).
    pub fn readiness(&self) -> Readiness {
        let mut readiness = Readiness::default();
        readiness.add_database("products.database", self.state.db.clone());
        readiness.add("products.outbox", self.state.outbox.backlog_check());
        readiness
    }

    /// The service's outbox (its relay publishes it onto the bus).
    pub fn outbox(&self) -> Outbox {
        self.state.outbox.clone()
    }

    pub fn database(&self) -> &Database {
        &self.state.db
    }
}
