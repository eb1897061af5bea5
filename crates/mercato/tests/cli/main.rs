//! System tests of the `mercato` binary as a process: what a newcomer runs.

mod events;
mod process;
mod products;
mod serve;
mod up;
