//! [`OrdersService`]: the service assembled from its database and a token verifier, with its two
//! consumers.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::FromRef;
use mercato_bus::consumer::{Consumer, ConsumerConfig};
use mercato_bus::{EventBus, Outbox};
use mercato_contracts::{
    Envelope, Event, InventoryRejected, InventoryReleased, InventoryReserved, ProductCreated,
    ProductDeleted, ProductUpdated, UserCreated, UserDeleted, UserUpdated, nats_subject,
};
use mercato_platform::auth::TokenVerifier;
use mercato_platform::health::Readiness;
use mercato_platform::time::Timestamp;
use mercato_store::Database;
use serde_json::Value;
use tokio::sync::watch;

use crate::db;
use crate::placing::Placer;
use crate::replication::Replication;
use crate::saga::{self, Saga};
use crate::waiters::Waiters;

/// The durable consumer of the products service's answers.
pub const SAGA_CONSUMER: &str = "orders-saga";
/// The durable consumer that keeps the user and catalog replicas.
pub const REPLICAS_CONSUMER: &str = "orders-replicas";

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub(crate) db: Database,
    pub(crate) outbox: Outbox,
    pub(crate) verifier: TokenVerifier,
    pub(crate) waiters: Waiters,
    pub(crate) placer: Placer,
}

impl FromRef<AppState> for TokenVerifier {
    fn from_ref(state: &AppState) -> Self {
        state.verifier.clone()
    }
}

/// The orders service, ready to serve.
#[derive(Clone)]
pub struct OrdersService {
    state: AppState,
}

impl std::fmt::Debug for OrdersService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrdersService").field("db", &self.state.db).finish_non_exhaustive()
    }
}

impl OrdersService {
    /// Migrates the database. `verifier` checks the users service's tokens.
    pub async fn start(database: Database, verifier: TokenVerifier) -> anyhow::Result<Self> {
        database.migrate(&db::MIGRATIONS).await.context("migrating the orders database")?;
        database
            .migrate(&mercato_bus::MIGRATIONS)
            .await
            .context("migrating the orders database's outbox and inbox")?;
        // One outbox, so that the placer's commits wake the relay that publishes it.
        let outbox = Outbox::new(database.clone());
        Ok(Self {
            state: AppState {
                placer: Placer::start(database.clone(), outbox.clone()),
                outbox,
                db: database,
                verifier,
                waiters: Waiters::default(),
            },
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

    /// The handler of the products service's answers (applies them in a caller's transaction).
    pub fn saga(&self) -> Saga {
        Saga::new(self.state.db.clone(), self.state.outbox.clone())
    }

    /// The handler that keeps the user and catalog replicas.
    pub fn replication(&self) -> Replication {
        Replication::new(self.state.db.clone(), self.state.outbox.clone())
    }

    /// The group commit of placements (its counts are for tests and metrics).
    pub fn placer(&self) -> Placer {
        self.state.placer.clone()
    }

    /// Requests held by `Prefer: wait`.
    pub fn waiters(&self) -> Waiters {
        self.state.waiters.clone()
    }

    /// The consumer of `inventory.reserved`, `.rejected` and `.released` on `bus` under `prefix`.
    /// Replicas share it; it wakes this instance's held requests after each commit.
    pub fn saga_consumer(&self, bus: Arc<dyn EventBus>, prefix: &str) -> Consumer {
        let subjects = vec![
            nats_subject(prefix, InventoryReserved::AGGREGATE, InventoryReserved::ACTION),
            nats_subject(prefix, InventoryRejected::AGGREGATE, InventoryRejected::ACTION),
            nats_subject(prefix, InventoryReleased::AGGREGATE, InventoryReleased::ACTION),
        ];
        let service = self.clone();
        Consumer::new(
            self.state.db.clone(),
            bus,
            ConsumerConfig::new(SAGA_CONSUMER, subjects),
            Arc::new(self.saga()),
        )
        .waking(self.state.outbox.clone())
        .on_commit(Arc::new(move |event| service.saga_committed(event)))
    }

    /// After an answer's effects committed: wakes the requests held for its order.
    pub fn saga_committed(&self, event: &Envelope<Value>) {
        if let Some(order_id) = saga::order_of(event) {
            self.state.waiters.wake(order_id);
        }
    }

    /// After a replica event's effects committed: a deleted user's orders were cancelled, so
    /// the requests held for them are over (the event does not name them: all re-read).
    pub fn replica_committed(&self, event: &Envelope<Value>) {
        if event.event_type == UserDeleted::TYPE {
            self.state.waiters.wake_all();
        }
    }

    /// The consumer of `user.*` and `product.*` that keeps the replicas (and cancels a deleted
    /// user's orders).
    pub fn replicas_consumer(&self, bus: Arc<dyn EventBus>, prefix: &str) -> Consumer {
        let subject = |aggregate, action| nats_subject(prefix, aggregate, action);
        let subjects = vec![
            subject(UserCreated::AGGREGATE, UserCreated::ACTION),
            subject(UserUpdated::AGGREGATE, UserUpdated::ACTION),
            subject(UserDeleted::AGGREGATE, UserDeleted::ACTION),
            subject(ProductCreated::AGGREGATE, ProductCreated::ACTION),
            subject(ProductUpdated::AGGREGATE, ProductUpdated::ACTION),
            subject(ProductDeleted::AGGREGATE, ProductDeleted::ACTION),
        ];
        let service = self.clone();
        Consumer::new(
            self.state.db.clone(),
            bus,
            ConsumerConfig::new(REPLICAS_CONSUMER, subjects),
            Arc::new(self.replication()),
        )
        .waking(self.state.outbox.clone())
        .on_commit(Arc::new(move |event| service.replica_committed(event)))
    }

    /// Shares wake-ups with the other instances on `bus` until `stop` (`mercato serve orders`,
    /// where replicas share the saga's consumer): see [`Waiters::share`].
    pub async fn share_wake_ups(
        self,
        bus: Arc<dyn EventBus>,
        prefix: String,
        stop: watch::Receiver<bool>,
    ) {
        self.state.waiters.clone().share(bus, &prefix, stop).await;
    }

    /// Forgets idempotency keys past their retention, hourly, until `stop`.
    pub async fn maintenance(self, mut stop: watch::Receiver<bool>) {
        loop {
            match db::idempotency::purge(&self.state.db, Timestamp::now().millis()).await {
                Ok(0) => {}
                Ok(purged) => tracing::info!(purged, "expired idempotency keys forgotten"),
                Err(error) => tracing::warn!(%error, "cannot purge idempotency keys; will retry"),
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(3600)) => {}
                _ = stop.wait_for(|stopped| *stopped) => return,
            }
        }
    }

    /// The service's readiness checks (its database, and its outbox backlog as detail).
    pub fn readiness(&self) -> Readiness {
        let mut readiness = Readiness::default();
        readiness.add_database("orders.database", self.state.db.clone());
        readiness.add("orders.outbox", self.state.outbox.backlog_check());
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
