//! Integration tests of the products service, through HTTP as a client sees it and through its
//! reservation handler as the consumer drives it, against SQLite, PostgreSQL and MariaDB
//! (`mercato_testkit::backend_tests!`). The contract is `API.md`.

mod catalog;
mod conservation;
mod harness;
mod inventory;
mod listing;
mod openapi;
mod reservations;
