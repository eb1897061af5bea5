//! [`Database`]: one pool, one backend, the service's migrations.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{Context, bail};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Executor, SqlSafeStr, SqlStr, Transaction};

use crate::dialect;

/// Which database server (or file) a [`Database`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
    MySql,
}

impl Backend {
    /// Reads the backend from a database URL's scheme.
    pub fn from_url(url: &str) -> anyhow::Result<Self> {
        let scheme = url.split_once(':').map(|(scheme, _)| scheme).unwrap_or_default();
        match scheme {
            "sqlite" => Ok(Self::Sqlite),
            "postgres" | "postgresql" => Ok(Self::Postgres),
            "mysql" | "mariadb" => Ok(Self::MySql),
            _ => bail!(
                "unsupported database URL scheme `{scheme}`: use sqlite://, postgres:// or mysql://"
            ),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
            Self::MySql => "mysql",
        }
    }
}

/// A service's migrations, one folder per backend (embedded with `sqlx::migrate!`).
#[derive(Debug)]
pub struct Migrations {
    pub sqlite: Migrator,
    pub postgres: Migrator,
    pub mysql: Migrator,
}

/// A pooled connection idle this long is pinged before it is handed out (see
/// [`Database::connect`]).
const IDLE_BEFORE_TEST: Duration = Duration::from_secs(1);

/// Pool sizing and timeouts.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub max_connections: u32,
    /// How long a request waits for a connection before the API answers `503`.
    pub acquire_timeout: Duration,
    /// SQLite only: the page cache of one database file, in KiB, shared out over the pool's
    /// connections (each SQLite connection has a cache of its own).
    pub sqlite_cache_kib: u32,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(3),
            sqlite_cache_kib: DEFAULT_SQLITE_CACHE_KIB,
        }
    }
}

/// The default page cache of one SQLite file over all its connections: 4 MiB. SQLite's own
/// default is 2 MiB per connection, 32 MiB for a pool of 16, and `mercato up` has four files:
/// under a minute of `mercato bench settle` its RSS grew past 110 MiB with it (91 MiB with
/// this budget, at the same throughput). Pages outside the cache come from the operating
/// system's file cache, without a thread hand-off.
pub const DEFAULT_SQLITE_CACHE_KIB: u32 = 4 * 1024;

/// The smallest page cache a SQLite connection is given, whatever the budget.
const MIN_SQLITE_CACHE_KIB: u32 = 64;

impl PoolSettings {
    /// Each SQLite connection's share of [`PoolSettings::sqlite_cache_kib`].
    pub fn sqlite_cache_per_connection_kib(&self) -> u32 {
        (self.sqlite_cache_kib / self.max_connections.max(1)).max(MIN_SQLITE_CACHE_KIB)
    }
}

/// A connection pool to one service's database.
///
/// Cheap to clone. Queries go through [`Database::sql`] so that one text serves every backend.
#[derive(Clone)]
pub struct Database {
    pool: AnyPool,
    backend: Backend,
    /// SQLite only: writers of this process queue here, first come first served, before they
    /// take the file's write lock (see [`Database::begin`]).
    write_gate: Option<Arc<tokio::sync::Mutex<()>>>,
    /// MySQL and SQLite texts of the `$N` queries, rewritten once each. Keyed by the query text, which comes
    /// from the source code, so the map stays as small as the number of queries in the program.
    positional: Arc<RwLock<HashMap<&'static str, Arc<str>>>>,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database").field("backend", &self.backend).finish_non_exhaustive()
    }
}

impl Database {
    /// Connects to `url` (`sqlite://path`, `postgres://...`, `mysql://...`).
    ///
    /// SQLite files (and their folder) are created when missing and run in WAL mode. Connecting is
    /// lazy: a server that is down now makes requests answer `503` until it is back, instead of
    /// keeping the service from starting.
    pub fn connect(url: &str, settings: &PoolSettings) -> anyhow::Result<Self> {
        sqlx::any::install_default_drivers();
        let backend = Backend::from_url(url)?;
        let url = match backend {
            Backend::Sqlite => sqlite_url(url)?,
            _ => url.to_owned(),
        };
        let options = AnyConnectOptions::from_str(&url)
            .with_context(|| format!("invalid {} database URL", backend.name()))?;
        let mut pool = AnyPoolOptions::new()
            .max_connections(settings.max_connections)
            .min_connections(0)
            .acquire_timeout(settings.acquire_timeout)
            // sqlx pings every connection it hands out by default, and again when it comes back
            // (that one cannot be turned off). Under load that doubled the round trips of a
            // one-query request: a network round trip on PostgreSQL and MySQL, two thread
            // hand-offs on SQLite, whose every statement runs on the connection's own thread.
            // A connection is pinged when it comes back, so only one that sat idle for a while
            // can have died unseen: those are tested before use, the busy ones are not.
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= IDLE_BEFORE_TEST {
                        sqlx::Connection::ping(conn).await?;
                    }
                    Ok(true)
                })
            });
        if backend == Backend::Sqlite {
            // A negative cache_size is in KiB.
            let cache_size =
                format!("PRAGMA cache_size = -{}", settings.sqlite_cache_per_connection_kib());
            pool = pool.after_connect(move |conn, _meta| {
                let cache_size = cache_size.clone();
                Box::pin(async move {
                    // WAL lets readers run beside the one writer; busy_timeout queues writers
                    // instead of failing them; NORMAL sync is durable across process crashes.
                    conn.execute(
                        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                         PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;",
                    )
                    .await?;
                    conn.execute(sqlx::AssertSqlSafe(cache_size)).await?;
                    Ok(())
                })
            });
        }
        if backend == Backend::MySql {
            pool = pool.after_connect(|conn, _meta| {
                Box::pin(async move {
                    // PostgreSQL's isolation level on MySQL too: one set of semantics for the
                    // code, and no gap locks, so "lock the row if it exists, else insert it"
                    // cannot deadlock two transactions on neighbouring keys (ADR 0006).
                    conn.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED").await?;
                    Ok(())
                })
            });
        }
        let pool = pool.connect_lazy_with(options);
        let write_gate = (backend == Backend::Sqlite).then(Arc::default);
        Ok(Self { pool, backend, positional: Arc::default(), write_gate })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Whether `$N` placeholders are rewritten to `?` for this backend: MySQL knows only `?`;
    /// SQLite knows `$N`, but binds a value to a named parameter by looking its name up in a
    /// list, once per parameter: quadratic in the parameters of a statement, which was 6 % of
    /// the CPU time of a multi-row write path (`sqlite3_bind_parameter_name`). `?` is bound by
    /// position.
    fn positional_placeholders(&self) -> bool {
        self.backend != Backend::Postgres
    }

    /// The text of `query` for this backend (placeholders rewritten for MySQL and SQLite).
    pub fn sql(&self, query: &'static str) -> SqlStr {
        if !self.positional_placeholders() {
            return query.into_sql_str();
        }
        let cached = self.positional.read().ok().and_then(|map| map.get(query).cloned());
        let text = cached.unwrap_or_else(|| {
            let text: Arc<str> = dialect::to_positional(query).into();
            if let Ok(mut map) = self.positional.write() {
                map.insert(query, text.clone());
            }
            text
        });
        sqlx::AssertSqlSafe(text).into_sql_str()
    }

    /// The text of a query assembled at run time (a list of placeholders for `IN (...)`), with
    /// the same placeholder rules as [`Database::sql`]. Only placeholders may vary: values are
    /// always bound, never formatted into the text.
    pub fn sql_owned(&self, query: String) -> SqlStr {
        let text =
            if self.positional_placeholders() { dialect::to_positional(&query) } else { query };
        sqlx::AssertSqlSafe(text).into_sql_str()
    }

    /// Begins a transaction that will write.
    ///
    /// On SQLite this takes the write lock up front (`BEGIN IMMEDIATE`): a deferred transaction
    /// that reads and then writes fails with `SQLITE_BUSY` instead of waiting when another writer
    /// committed in between. Before that, the transaction queues behind the other writers of
    /// this process: SQLite's own busy handler makes a waiting writer sleep in growing steps
    /// (up to 100 ms) whatever the lock's holder does, which under load turned a 1 ms wait into
    /// hundreds of milliseconds at the 99th percentile.
    pub async fn begin(&self) -> Result<Tx, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => {
                let gate = self.write_turn().await;
                let tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
                Ok(Tx { tx, _gate: gate })
            }
            _ => Ok(Tx { tx: self.pool.begin().await?, _gate: None }),
        }
    }

    /// Runs one write outside a transaction (autocommit). On SQLite it first queues behind
    /// this process's other writers, as [`Database::begin`] does: a write that skipped the queue
    /// met a locked file and slept in SQLite's busy handler, in steps of up to 100 ms, while
    /// the queued writers went on; the outbox relay's bookkeeping did, and held the saga back.
    pub async fn execute_write(
        &self,
        query: sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments>,
    ) -> Result<sqlx::any::AnyQueryResult, sqlx::Error> {
        let _turn = self.write_turn().await;
        query.execute(&self.pool).await
    }

    /// This process's turn to write to a SQLite file (first come, first served); `None` on the
    /// servers, which queue writers themselves.
    async fn write_turn(&self) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        match &self.write_gate {
            Some(gate) => Some(gate.clone().lock_owned().await),
            None => None,
        }
    }

    /// Checks that the database answers (readiness).
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map(|_| ())
    }

    /// Applies the migrations for this backend that have not run yet.
    pub async fn migrate(&self, migrations: &Migrations) -> anyhow::Result<()> {
        let migrator = match self.backend {
            Backend::Sqlite => &migrations.sqlite,
            Backend::Postgres => &migrations.postgres,
            Backend::MySql => &migrations.mysql,
        };
        migrator.run(&self.pool).await.context("running database migrations")?;
        Ok(())
    }

    /// Closes every connection (graceful shutdown, tests that drop their database).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Makes sure a SQLite URL creates its file, and that the file's folder exists.
/// A transaction from [`Database::begin`]: use it as the connection (`&mut tx`), then
/// [`Tx::commit`]; dropped without a commit, it rolls back. On SQLite it holds this process's
/// write turn until it ends.
pub struct Tx {
    tx: Transaction<'static, sqlx::Any>,
    _gate: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl std::fmt::Debug for Tx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tx").finish_non_exhaustive()
    }
}

impl Tx {
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }

    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        self.tx.rollback().await
    }
}

impl std::ops::Deref for Tx {
    type Target = sqlx::AnyConnection;

    fn deref(&self) -> &Self::Target {
        &self.tx
    }
}

impl std::ops::DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.tx
    }
}

fn sqlite_url(url: &str) -> anyhow::Result<String> {
    let rest = url.trim_start_matches("sqlite:").trim_start_matches("//");
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() {
        bail!("a sqlite URL needs a file path, e.g. sqlite://./mercato-data/users.db");
    }
    let parent = std::path::Path::new(path).parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(parent) = parent.filter(|_| path != ":memory:") {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating the folder {}", parent.display()))?;
    }
    let mode = if query.contains("mode=") { String::new() } else { "mode=rwc".to_owned() };
    let query =
        [query, &mode].iter().filter(|q| !q.is_empty()).copied().collect::<Vec<_>>().join("&");
    Ok(format!("sqlite://{path}?{query}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_are_read_from_url_schemes() {
        assert_eq!(Backend::from_url("sqlite://x.db").ok(), Some(Backend::Sqlite));
        assert_eq!(Backend::from_url("postgres://h/db").ok(), Some(Backend::Postgres));
        assert_eq!(Backend::from_url("postgresql://h/db").ok(), Some(Backend::Postgres));
        assert_eq!(Backend::from_url("mysql://h/db").ok(), Some(Backend::MySql));
        let error = Backend::from_url("redis://h").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(error.contains("redis"), "{error}");
    }

    #[test]
    fn the_sqlite_cache_budget_is_shared_out_over_the_pool() {
        let settings = |max_connections, sqlite_cache_kib| PoolSettings {
            max_connections,
            sqlite_cache_kib,
            ..PoolSettings::default()
        };
        assert_eq!(PoolSettings::default().sqlite_cache_per_connection_kib(), 256);
        assert_eq!(settings(8, 4096).sqlite_cache_per_connection_kib(), 512);
        assert_eq!(settings(16, 100).sqlite_cache_per_connection_kib(), MIN_SQLITE_CACHE_KIB);
        assert_eq!(settings(0, 4096).sqlite_cache_per_connection_kib(), 4096);
    }

    #[tokio::test]
    async fn every_sqlite_connection_gets_its_share_of_the_cache() -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("mercato-store-cache-{}", std::process::id()));
        let url = format!("sqlite://{}/cache.db", dir.display());
        let settings = PoolSettings { max_connections: 4, ..PoolSettings::default() };
        let db = Database::connect(&url, &settings)?;
        // Two connections at once, so the second is a new one made by the pool too.
        let mut first = db.pool().acquire().await?;
        let mut second = db.pool().acquire().await?;
        for conn in [&mut first, &mut second] {
            let row = sqlx::query("PRAGMA cache_size").fetch_one(&mut **conn).await?;
            let cache_size: i64 = sqlx::Row::try_get(&row, 0)?;
            assert_eq!(cache_size, -1024);
        }
        drop((first, second));
        db.close().await;
        let _ = std::fs::remove_dir_all(dir);
        Ok(())
    }

    #[tokio::test]
    async fn sqlite_is_built_with_the_query_planner_stability_guarantee() -> anyhow::Result<()> {
        // Without it, statements with a bound LIMIT are prepared again on every execution
        // (`.cargo/config.toml`).
        let dir = std::env::temp_dir().join(format!("mercato-store-qpsg-{}", std::process::id()));
        let db = Database::connect(
            &format!("sqlite://{}/qpsg.db", dir.display()),
            &PoolSettings::default(),
        )?;
        let options: Vec<String> =
            sqlx::query_scalar("PRAGMA compile_options").fetch_all(db.pool()).await?;
        assert!(options.iter().any(|option| option == "ENABLE_QPSG"), "{options:?}");
        db.close().await;
        let _ = std::fs::remove_dir_all(dir);
        Ok(())
    }

    #[test]
    fn sqlite_urls_create_their_file() {
        let dir = std::env::temp_dir().join(format!("mercato-store-{}", std::process::id()));
        let url = format!("sqlite://{}/a/users.db", dir.display());
        let rewritten = sqlite_url(&url).ok();
        assert_eq!(rewritten, Some(format!("sqlite://{}/a/users.db?mode=rwc", dir.display())));
        assert!(dir.join("a").is_dir());
        let _ = std::fs::remove_dir_all(dir);
    }
}
