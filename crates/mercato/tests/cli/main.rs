//! System tests of the `mercato` binary as a process: what a newcomer runs.

mod bench;
mod deploy;
mod distributed_drills;
mod events;
mod graphiql;
mod graphql;
mod graphql_ws;
mod order_drills;
mod orders;
mod process;
mod products;
mod serve;
mod serve_orders;
mod up;
