//! The GraphQL schema of API.md ("GraphQL gateway"), committed as `schema.graphql` at the
//! repository root (a test fails when they drift apart).
//!
//! - [`types`]: objects read from the services' JSON, inputs, enums, the `Decimal` and
//!   `DateTime` scalars;
//! - [`query`], [`mutation`], [`subscription`]: the root types;
//! - [`context`]: the per-request [`context::Session`] (caller, credentials, loaders);
//! - [`connections`]: Relay connections over the services' cursor pages.

pub mod connections;
pub mod context;
mod ids;
pub mod mutation;
pub mod query;
pub mod subscription;
pub mod types;

use std::sync::Arc;

use async_graphql::Schema;

use crate::documents::Documents;
use crate::hooks::GatewayHooks;
use crate::hub::EventHub;
use crate::limits::Limits;

pub type GatewaySchema = Schema<query::Query, mutation::Mutation, subscription::Subscription>;

/// The schema, remembering documents in `documents`, which must be new: validation results are
/// only true of the schema that computed them.
pub fn build(
    hub: EventHub,
    limits: Limits,
    introspection: bool,
    documents: Arc<Documents>,
) -> GatewaySchema {
    // One extension for everything (see `crate::hooks` for why).
    let mut builder = Schema::build(query::Query, mutation::Mutation, subscription::Subscription)
        .data(hub)
        .extension(GatewayHooks::new(limits, introspection, documents));
    if !introspection {
        builder = builder.disable_introspection();
    }
    builder.finish()
}

/// The schema's SDL, as `schema.graphql` holds it.
pub fn sdl() -> String {
    build(EventHub::new(), Limits::default(), true, Arc::default()).sdl()
}
