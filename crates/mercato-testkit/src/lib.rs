//! Test support for Mercato's integration and system tests.
//!
//! - [`TestDatabase`]: a fresh database per test on SQLite (always), PostgreSQL or MariaDB (when
//!   reachable), dropped when the test ends, even when it fails.
//! - [`backend_tests!`]: runs one test body against all three backends, as three tests.
//! - [`TestServer`]: serves a router on `127.0.0.1:0`, like the real binary, and stops it on drop.
//! - [`wait_until`]: bounded polling for a condition, so no test depends on timing luck.
//! - [`client`]: an HTTP client for one server, with tokens, JSON bodies and headers.
//! - [`http`]: assertions on answers (status and JSON, problem details and their code, `422`
//!   fields).
//! - [`nats`]: the shared NATS server's URL and unique subject prefixes.
//! - [`servers`]: private `nats-server` and PostgreSQL instances on free ports, for drills that
//!   stop, crash and restart them without touching the machine's shared servers.
//!
//! Server URLs come from `MERCATO_TEST_POSTGRES_URL` and `MERCATO_TEST_MYSQL_URL` (defaults: the
//! machine's local servers). An unreachable server skips the test with a loud message, unless
//! `MERCATO_REQUIRE_SERVERS=1` (set by `.ci/run`), where it fails the test.

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use mercato_store::sqlx::{self, Connection};

pub mod client;
pub mod http;
pub mod nats;
pub mod servers;

pub use mercato_store::Backend;
pub use nats::{reachable_shared_nats, shared_nats_url, unique_prefix};

const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
const DEFAULT_MYSQL_URL: &str = "mysql://root@127.0.0.1:3306/mysql";

/// Skips a test whose server is unreachable, or fails it when servers are required. The message
/// goes to the process's stderr handle itself: `eprintln!` inside a passing test is captured by
/// the test harness and never shown, which would make the skip silent.
pub fn skip_or_fail(what: &str) {
    assert!(!servers_required(), "{what}, and servers are required (MERCATO_REQUIRE_SERVERS=1)");
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "\n*** SKIPPED: {what}; set MERCATO_REQUIRE_SERVERS=1 to make this a failure ***\n"
    );
}

/// True when tests must fail, not skip, when a server is unreachable.
pub fn servers_required() -> bool {
    std::env::var("MERCATO_REQUIRE_SERVERS").is_ok_and(|value| value == "1")
}

fn admin_url(backend: Backend) -> String {
    match backend {
        Backend::Postgres => std::env::var("MERCATO_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned()),
        Backend::MySql => {
            std::env::var("MERCATO_TEST_MYSQL_URL").unwrap_or_else(|_| DEFAULT_MYSQL_URL.to_owned())
        }
        Backend::Sqlite => String::new(),
    }
}

/// `scheme://authority/` + `database`, keeping the query string of the admin URL.
fn url_with_database(admin: &str, database: &str) -> String {
    let (base, query) = admin.split_once('?').map_or((admin, None), |(b, q)| (b, Some(q)));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[scheme_end..].find('/').map_or(base.len(), |i| scheme_end + i);
    let mut url = format!("{}/{database}", &base[..path_start]);
    if let Some(query) = query {
        url.push('?');
        url.push_str(query);
    }
    url
}

/// A database that exists for one test.
#[derive(Debug)]
pub struct TestDatabase {
    pub backend: Backend,
    /// The URL a service connects with.
    pub url: String,
    name: String,
    _dir: Option<tempfile::TempDir>,
}

/// An outage of one PostgreSQL test database, without stopping the shared server: the database
/// is closed to new connections (`ALLOW_CONNECTIONS false`, which binds superusers too) and its
/// sessions are ended. [`PostgresOutage::end`] opens it again.
#[derive(Debug)]
pub struct PostgresOutage {
    name: String,
}

impl PostgresOutage {
    /// Takes `database` (a PostgreSQL [`TestDatabase`]) away.
    pub async fn begin(database: &TestDatabase) -> Self {
        assert_eq!(database.backend, Backend::Postgres, "an outage drill needs PostgreSQL");
        let name = database.name.clone();
        postgres_admin(format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false")).await;
        postgres_admin(format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
        ))
        .await;
        Self { name }
    }

    /// Brings the database back.
    pub async fn end(self) {
        postgres_admin(format!("ALTER DATABASE {} ALLOW_CONNECTIONS true", self.name)).await;
    }
}

async fn postgres_admin(statement: String) {
    let mut connection = sqlx::PgConnection::connect(&admin_url(Backend::Postgres))
        .await
        .expect("an admin connection to PostgreSQL");
    sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
        .execute(&mut connection)
        .await
        .expect("the admin statement runs");
    let _ = connection.close().await;
}

impl TestDatabase {
    /// Creates a fresh, empty database; `None` (after a loud message) when the server is
    /// unreachable and servers are not required.
    pub async fn create(backend: Backend) -> Option<Self> {
        let name = format!("mercato_test_{}", uuid::Uuid::now_v7().simple());
        if backend == Backend::Sqlite {
            let dir = tempfile::tempdir().expect("a temporary directory for SQLite");
            let url = format!("sqlite://{}/{name}.db", dir.path().display());
            return Some(Self { backend, url, name, _dir: Some(dir) });
        }
        let admin = admin_url(backend);
        match create_database(backend, &admin, &name).await {
            Ok(()) => {
                Some(Self { backend, url: url_with_database(&admin, &name), name, _dir: None })
            }
            Err(error) if !servers_required() => {
                skip_or_fail(&format!("{} is unreachable at {admin} ({error:#})", backend.name()));
                None
            }
            Err(error) => {
                panic!("{} is required but unreachable at {admin}: {error:#}", backend.name())
            }
        }
    }
}

async fn create_database(backend: Backend, admin: &str, name: &str) -> anyhow::Result<()> {
    let statement = match backend {
        Backend::Postgres => format!("CREATE DATABASE {name}"),
        Backend::MySql => {
            format!("CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
        }
        Backend::Sqlite => return Ok(()),
    };
    execute_admin(backend, admin, statement).await
}

async fn execute_admin(backend: Backend, admin: &str, statement: String) -> anyhow::Result<()> {
    let connect = async {
        match backend {
            Backend::Postgres => {
                let mut connection = sqlx::PgConnection::connect(admin).await?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(statement)).execute(&mut connection).await?;
                connection.close().await
            }
            Backend::MySql => {
                let mut connection = sqlx::MySqlConnection::connect(admin).await?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(statement)).execute(&mut connection).await?;
                connection.close().await
            }
            Backend::Sqlite => Ok(()),
        }
    };
    tokio::time::timeout(Duration::from_secs(10), connect)
        .await
        .context("no answer within 10 s")?
        .with_context(|| format!("connecting to {}", backend.name()))
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if self.backend == Backend::Sqlite {
            return;
        }
        let backend = self.backend;
        let statement = match backend {
            Backend::Postgres => format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            _ => format!("DROP DATABASE IF EXISTS {}", self.name),
        };
        let admin = admin_url(backend);
        // Drop runs inside the test's runtime; a thread with its own runtime can block on the
        // drop without needing that runtime to make progress.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(execute_admin(backend, &admin, statement))
        })
        .join();
        if let Ok(Err(error)) = dropped {
            eprintln!("warning: could not drop test database {}: {error:#}", self.name);
        }
    }
}

/// Runs a test body against SQLite, PostgreSQL and MariaDB, as three tests in a module named
/// after the body:
///
/// ```ignore
/// backend_tests! {
///     async fn registering_twice_is_a_conflict(db) { let app = spawn_app(db).await; ... }
/// }
/// ```
#[macro_export]
macro_rules! backend_tests {
    ($( $(#[$meta:meta])* async fn $name:ident($db:ident) $body:block )*) => {
        $(
            $(#[$meta])*
            mod $name {
                #[allow(unused_imports)]
                use super::*;

                async fn run($db: $crate::TestDatabase) $body

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    if let Some(db) = $crate::TestDatabase::create($crate::Backend::Sqlite).await {
                        run(db).await
                    }
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    if let Some(db) = $crate::TestDatabase::create($crate::Backend::Postgres).await {
                        run(db).await
                    }
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn mysql() {
                    if let Some(db) = $crate::TestDatabase::create($crate::Backend::MySql).await {
                        run(db).await
                    }
                }
            }
        )*
    };
}

/// A router served on a random local port until dropped.
#[derive(Debug)]
pub struct TestServer {
    pub address: SocketAddr,
    pub base_url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl TestServer {
    /// Serves `app` on `127.0.0.1:0`, with peer addresses known to handlers (as in production).
    pub async fn start(app: axum::Router) -> Self {
        let listener =
            tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a free local port");
        let address = listener.local_addr().expect("the bound address");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let service = app.into_make_service_with_connect_info::<SocketAddr>();
            let _ = axum::serve(listener, service)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Self { address, base_url: format!("http://{address}"), stop: Some(stop) }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Polls `probe` until it returns `Some`, at most `timeout`; panics naming `what` otherwise.
pub async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(10);
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting until {what}");
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_replace_the_admin_database() {
        assert_eq!(
            url_with_database("postgres://postgres@127.0.0.1:5432/postgres", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            url_with_database("mysql://root@127.0.0.1:3306", "x"),
            "mysql://root@127.0.0.1:3306/x"
        );
        assert_eq!(
            url_with_database("postgres://u@h/db?sslmode=disable", "x"),
            "postgres://u@h/x?sslmode=disable"
        );
    }
}
