//! The Mercato products service: the catalog, its inventory, and the stock reservations of the
//! order saga. It is the authority on what exists, what it costs and how many are left, and it
//! never oversells (DESIGN.md promise 3).
//!
//! It owns the `products`, `order_holds` and `reservation_lines` tables of its own database (plus
//! the outbox and inbox of `mercato-bus`); other services learn about products from its events.
//!
//! - [`app`]: [`ProductsService`], assembled from a [`mercato_store::Database`] and a token
//!   verifier; its reservation consumer; shared handler state.
//! - [`http`]: routes and their OpenAPI description (`products`, `inventory`), `ETag` and
//!   `If-Match`.
//! - [`reservations`]: [`reservations::Reservations`], which applies `order.placed`,
//!   `order.updated` and `order.cancelled`: all or nothing, products locked in id order.
//! - [`domain`]: field rules (name, sku, price, stock, ...) as parsers.
//! - [`db`]: queries over `products`, `order_holds`, `reservation_lines`, and the migrations
//!   (`migrations/<backend>/`).

pub mod app;
pub mod db;
pub mod domain;
pub mod http;
pub mod reservations;

pub use app::{ProductsService, RESERVATIONS_CONSUMER};
