//! Integration tests of the orders service, through HTTP as a client sees it and through its
//! consumers' handlers as the bus drives them, against SQLite, PostgreSQL and MariaDB
//! (`mercato_testkit::backend_tests!`). The contract is `API.md`.

mod cancelling;
mod changing;
mod compat;
mod harness;
mod idempotency;
mod openapi;
mod outage;
mod placing;
mod reading;
