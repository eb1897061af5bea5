//! Fault drills for the event backbone (DESIGN.md promises 1, 2 and 5), each against the
//! embedded log and JetStream, with the service's state in a real database.
//!
//! - [`harness`]: the test bed (database, outbox, bus, relay and consumer tasks) and the
//!   recording handler; "applied once" is always counted in the database.
//! - [`broker_down`]: the broker is down while a service produces events.
//! - [`consumer_crash`]: a consumer dies inside its handler before acking.
//! - [`relay_crash`]: the relay dies after publishing and before marking; duplicates on the wire.
//! - [`database_down`]: the consumer's own database is down.
//! - [`poison`]: events that keep failing, are rejected or cannot be read.
//! - [`order`]: events of one aggregate arriving out of order.
//! - [`embedded_restart`]: the embedded log across a restart of the process.
//! - [`batch`]: one failing event in a batch.
//! - [`filters`]: a consumer of several subjects gets exactly those.
//!
//! Servers: PostgreSQL and the shared NATS come from the testkit's environment variables; drills
//! that kill the broker start a private `nats-server`. Unreachable servers skip loudly unless
//! `MERCATO_REQUIRE_SERVERS=1`.

#[macro_use]
mod harness;

mod batch;
mod broker_down;
mod consumer_crash;
mod database_down;
mod embedded_restart;
mod filters;
mod order;
mod poison;
mod relay_crash;
mod replicas;
