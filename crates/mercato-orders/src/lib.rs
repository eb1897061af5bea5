//! The Mercato orders service: the order lifecycle and its side of the order saga
//! (DESIGN.md "The order saga"; promises 4, 6 and 8).
//!
//! An order is placed `pending` with its `order.placed` in one transaction (outbox); the
//! products service answers with `inventory.reserved` or `inventory.rejected`, and the order is
//! confirmed and priced, or rejected. Customers see and change only their own orders.
//!
//! - [`app`]: [`OrdersService`], assembled from a [`mercato_store::Database`] and a token
//!   verifier; its two consumers (saga answers, replicas) and shared handler state.
//! - [`order`]: the order aggregate and its state machine, with checked transitions.
//! - [`placing`]: group commit of placements: orders placed at the same moment share one
//!   transaction.
//! - [`saga`]: [`saga::Saga`], which applies the products service's answers.
//! - [`replication`]: [`replication::Replication`], the users and catalog replicas from their
//!   events; a deleted user's tokens are refused and their open orders cancelled.
//! - [`waiters`]: requests held by `Prefer: wait=N`, woken by the saga (across replicas too,
//!   through bus signals: [`waiters::Waiters::share`]), never by polling.
//! - [`http`]: routes, their OpenAPI description, `Idempotency-Key` and `Prefer`, and the
//!   compatibility routes of the original service.
//! - [`fields`]: request field rules as parsers.
//! - [`db`]: queries over `orders`, `known_users`, `catalog`, `idempotency_keys`, and the
//!   migrations (`migrations/<backend>/`).

pub mod app;
pub mod db;
pub mod fields;
pub mod http;
pub mod order;
pub mod placing;
pub mod replication;
pub mod saga;
pub mod waiters;

pub use app::{OrdersService, REPLICAS_CONSUMER, SAGA_CONSUMER};
