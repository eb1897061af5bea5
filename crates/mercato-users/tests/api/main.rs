//! Integration tests of the users service, through HTTP as a client sees it, against SQLite,
//! PostgreSQL and MariaDB (`mercato_testkit::backend_tests!`). The contract is `API.md`.

mod admin_list;
mod compat;
mod events;
mod harness;
mod login;
mod openapi;
mod outage;
mod plumbing;
mod registration;
mod tokens;
mod users;
mod verifier;
