//! The orders service's consumers, driven as the bus drives them: the saga's answers from the
//! products service (late, duplicated, reordered), `Prefer: wait` woken by them, and the users
//! and catalog replicas. On SQLite, PostgreSQL and MariaDB.

#[path = "../api/harness.rs"]
mod harness;

mod answers;
mod ordering;
mod replicas;
