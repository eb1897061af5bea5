//! Private servers for fault drills: [`PrivateNats`] (`nats-server -js`) and [`PrivatePostgres`]
//! (a PostgreSQL cluster of its own), each on a free local port with its data in a temporary
//! directory, so that a drill may stop them, gracefully or like a crash, and start them again on
//! the same port and data without touching the machine's shared servers.
//!
//! - A missing binary skips the test with a loud message, or fails it when
//!   `MERCATO_REQUIRE_SERVERS=1`, as [`crate::TestDatabase::create`] does for an unreachable server.
//!   `MERCATO_TEST_NATS_SERVER` names the `nats-server` binary, `MERCATO_TEST_POSTGRES_BIN` the
//!   folder with `initdb` and `postgres` (default: the newest `/usr/lib/postgresql/<version>/bin`).
//! - Each server writes its log to a file in its directory. When dropped, it is stopped (nothing
//!   is left running), and when the test is failing the end of its log goes to stderr, beside the
//!   failure. [`print_log_if_failing`] does the same for any other process's log.
//! - PostgreSQL refuses to run as root, and `.ci/run` runs the tests as root: then `initdb` and
//!   `postgres` run as the `postgres` OS user (the child switches user itself, so the server is
//!   this process's own child and no `runuser` sits in between), in a directory chowned to it.
//!

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use mercato_store::sqlx::{self, Connection};
use tokio::process::{Child, Command};

/// How long a started server has to accept connections (PostgreSQL may first replay its WAL).
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a stopped server has to exit before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// Lines of a server's log shown when a test fails.
const LOG_LINES: usize = 60;

/// Where [`free_port`] looks: below Linux's range for the local ports of outgoing connections
/// (`ip_local_port_range`, 32768-60999 by default).
const PRIVATE_PORTS: std::ops::Range<u16> = 20_000..32_000;

/// A port that was free a moment ago (the server binds it right after), outside the range the
/// OS hands out to outgoing connections. A drill stops a private server and starts it again on
/// the same port; a port from that range was once taken in between by some test's client
/// connection, and the restart failed with "Address already in use".
pub fn free_port() -> u16 {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let span = u32::from(PRIVATE_PORTS.end - PRIVATE_PORTS.start);
    // Test processes start at different places, threads of one process take turns.
    let start = std::process::id().wrapping_mul(7_919) % span;
    for _ in 0..span {
        let offset = (start + NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)) % span;
        let port = PRIVATE_PORTS.start + u16::try_from(offset).unwrap_or(0);
        if std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return port;
        }
    }
    panic!("no free local port in {PRIVATE_PORTS:?}")
}

/// The last `lines` lines of a log file (empty when it cannot be read).
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read(path).map(|bytes| String::from_utf8_lossy(&bytes).into_owned());
    let text = text.unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Prints the end of `name`'s log to stderr when the current thread is panicking (a failing
/// test); for `Drop` implementations.
pub fn print_log_if_failing(name: &str, path: &Path) {
    if std::thread::panicking() {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "\n--- last {LOG_LINES} lines of {name}'s log ({}) ---\n{}\n--- end of {name}'s log ---",
            path.display(),
            log_tail(path, LOG_LINES)
        );
    }
}

/// A log file opened for appending, as a child's stdout and stderr.
fn log_output(path: &Path) -> anyhow::Result<(Stdio, Stdio)> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    Ok((Stdio::from(file.try_clone()?), Stdio::from(file)))
}

/// Sends `signal` (`TERM`, `INT`, `QUIT`, `KILL`) to `child` with `kill(1)`: the workspace forbids
/// `unsafe`, which `libc::kill` would need.
fn send_signal(child: &Child, signal: &str) {
    let Some(pid) = child.id() else { return };
    let sent = std::process::Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .stderr(Stdio::null())
        .status();
    if !sent.is_ok_and(|status| status.success()) {
        eprintln!("warning: kill -{signal} {pid} failed");
    }
}

/// Sends `signal` and waits for the exit; kills the process when it does not exit in time.
async fn stop_child(mut child: Child, signal: &str, what: &str) {
    send_signal(&child, signal);
    match tokio::time::timeout(STOP_TIMEOUT, child.wait()).await {
        Ok(Ok(_)) => {}
        Ok(Err(error)) => eprintln!("warning: waiting for {what}: {error}"),
        Err(_) => {
            eprintln!("warning: {what} did not exit within {STOP_TIMEOUT:?} of SIG{signal}");
            let _ = child.kill().await;
        }
    }
}

/// Stops a child from `Drop` (no runtime to await on): `signal`, then up to [`STOP_TIMEOUT`] for
/// it to exit, then SIGKILL.
fn stop_child_blocking(child: &mut Child, signal: &str) {
    send_signal(child, signal);
    let deadline = Instant::now() + STOP_TIMEOUT;
    while Instant::now() < deadline {
        if !matches!(child.try_wait(), Ok(None)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.start_kill();
}

/// Waits until `child` accepts TCP connections on `port`, failing early when it exits.
async fn wait_for_port(child: &mut Child, port: u16, what: &str) -> anyhow::Result<()> {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut pause = Duration::from_millis(10);
    loop {
        if let Some(status) = child.try_wait()? {
            bail!("{what} exited at once ({status}); is port {port} taken?");
        }
        if tokio::net::TcpStream::connect(address).await.is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("{what} did not accept connections on {address} within {READY_TIMEOUT:?}");
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

/// A private `nats-server -js` on a free port with a temporary store; see the module docs.
#[derive(Debug)]
pub struct PrivateNats {
    binary: PathBuf,
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl PrivateNats {
    /// Starts a server; `None` (after a loud message) when there is no `nats-server` binary and
    /// servers are not required. Panics when it is required, or when the server does not come up.
    pub async fn start() -> Option<Self> {
        let Some(binary) = nats_binary() else {
            crate::skip_or_fail(
                "no nats-server binary (looked at MERCATO_TEST_NATS_SERVER, /usr/sbin/nats-server \
                 and PATH) for a private NATS",
            );
            return None;
        };
        let dir = tempfile::Builder::new()
            .prefix("mercato-nats-")
            .tempdir()
            .expect("a temporary directory for nats-server");
        let mut server = Self { binary, port: free_port(), dir, child: None };
        server.start_again().await;
        Some(server)
    }

    /// `nats://127.0.0.1:<port>`: the same across restarts.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The server's log file (every run appends to it).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("nats-server.log")
    }

    /// Stops the server gracefully (SIGTERM) and waits until it has exited.
    pub async fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            stop_child(child, "TERM", "nats-server").await;
        }
    }

    /// Kills the server (SIGKILL, as a crash would) and waits until it has exited.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take()
            && let Err(error) = child.kill().await
        {
            eprintln!("warning: could not kill the private nats-server: {error}");
        }
    }

    /// Starts the (stopped) server again on the same port with the same store, and waits until
    /// it accepts connections; panics, showing its log, when it does not.
    pub async fn start_again(&mut self) {
        assert!(self.child.is_none(), "the private nats-server is already running");
        if let Err(error) = self.spawn().await {
            panic!(
                "the private nats-server did not start: {error:#}\n{}",
                log_tail(&self.log_path(), LOG_LINES)
            );
        }
    }

    async fn spawn(&mut self) -> anyhow::Result<()> {
        let (stdout, stderr) = log_output(&self.log_path())?;
        let mut child = Command::new(&self.binary)
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-js", "-sd"])
            .arg(self.dir.path().join("store"))
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("running {}", self.binary.display()))?;
        if let Err(error) = wait_for_port(&mut child, self.port, "nats-server").await {
            let _ = child.kill().await;
            return Err(error);
        }
        self.child = Some(child);
        Ok(())
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
        print_log_if_failing("the private nats-server", &self.log_path());
    }
}

fn nats_binary() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("MERCATO_TEST_NATS_SERVER") {
        return Some(PathBuf::from(path)).filter(|path| path.is_file());
    }
    let default = PathBuf::from("/usr/sbin/nats-server");
    if default.is_file() {
        return Some(default);
    }
    in_path("nats-server")
}

fn in_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths).map(|dir| dir.join(name)).find(|path| path.is_file())
    })
}

/// How [`PrivatePostgres::stop`] shuts the server down (what `pg_ctl stop -m` sends).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    /// SIGINT: sessions are ended, a checkpoint is written.
    Fast,
    /// SIGQUIT: like a crash; the next start replays the WAL.
    Immediate,
}

/// A private PostgreSQL cluster on a free port, trust auth for `postgres`, its data and unix
/// socket in a temporary directory; see the module docs.
#[derive(Debug)]
pub struct PrivatePostgres {
    bin: PathBuf,
    port: u16,
    dir: tempfile::TempDir,
    /// The (uid, gid) the server runs as, when not this process's user (tests run as root).
    owner: Option<(u32, u32)>,
    child: Option<Child>,
}

impl PrivatePostgres {
    /// Creates (`initdb`) and starts a cluster; `None` (after a loud message) when the binaries
    /// (or, as root, the `postgres` user) are missing and servers are not required. Panics when
    /// they are required, or when the cluster cannot be made or does not come up.
    pub async fn start() -> Option<Self> {
        let Some(bin) = postgres_bin() else {
            crate::skip_or_fail(
                "no PostgreSQL server binaries (initdb, postgres) for a private cluster (looked at \
                 MERCATO_TEST_POSTGRES_BIN, /usr/lib/postgresql/*/bin and PATH)",
            );
            return None;
        };
        let owner = if running_as_root() {
            let Some(owner) = os_user("postgres") else {
                crate::skip_or_fail(
                    "tests run as root and there is no `postgres` user to run a private \
                     PostgreSQL as (initdb refuses root)",
                );
                return None;
            };
            Some(owner)
        } else {
            None
        };
        let dir = tempfile::Builder::new()
            .prefix("mercato-pg-")
            .tempdir()
            .expect("a temporary directory for PostgreSQL");
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .expect("the PostgreSQL directory can be given to the postgres user");
        }
        let mut server = Self { bin, port: free_port(), dir, owner, child: None };
        if let Err(error) = server.initdb().await {
            panic!("initdb failed for a private PostgreSQL: {error:#}");
        }
        server.start_again().await;
        Some(server)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The URL of `database` on this server, as the `postgres` superuser.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// The server's log file (every run appends to it).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// Creates an empty database and returns its URL.
    pub async fn create_database(&self, name: &str) -> String {
        let mut connection = sqlx::PgConnection::connect(&self.url("postgres"))
            .await
            .expect("an admin connection to the private PostgreSQL");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut connection)
            .await
            .unwrap_or_else(|error| panic!("CREATE DATABASE {name}: {error}"));
        let _ = connection.close().await;
        self.url(name)
    }

    /// Shuts the server down and waits until it has exited.
    pub async fn stop(&mut self, mode: Shutdown) {
        if let Some(child) = self.child.take() {
            stop_child(child, shutdown_signal(mode), "postgres").await;
        }
    }

    /// Starts the (stopped) server again on the same port and data, and waits until it answers
    /// queries; panics, showing its log, when it does not.
    pub async fn start_again(&mut self) {
        assert!(self.child.is_none(), "the private PostgreSQL is already running");
        if let Err(error) = self.spawn().await {
            panic!(
                "the private PostgreSQL did not start: {error:#}\n{}",
                log_tail(&self.log_path(), LOG_LINES)
            );
        }
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(self.bin.join(program));
        command.current_dir(self.dir.path()).stdin(Stdio::null()).kill_on_drop(true);
        if let Some((uid, gid)) = self.owner {
            command.uid(uid).gid(gid);
        }
        command
    }

    async fn initdb(&self) -> anyhow::Result<()> {
        let output = self
            .command("initdb")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync"])
            .output()
            .await
            .context("running initdb")?;
        if !output.status.success() {
            bail!(
                "initdb exited with {}: {}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(())
    }

    async fn spawn(&mut self) -> anyhow::Result<()> {
        let (stdout, stderr) = log_output(&self.log_path())?;
        // fsync is off: a drill kills processes, never the machine, and the page cache survives
        // a process; synchronous_commit stays on, so every commit is written before it is acked.
        let mut child = self
            .command("postgres")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-p", &self.port.to_string(), "-k"])
            .arg(self.dir.path())
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .args(["-c", "max_connections=200"])
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("running {}", self.bin.join("postgres").display()))?;
        if let Err(error) = self.wait_until_ready(&mut child).await {
            let _ = child.kill().await;
            return Err(error);
        }
        self.child = Some(child);
        Ok(())
    }

    /// Waits until a query runs: the port opens before recovery has finished.
    async fn wait_until_ready(&self, child: &mut Child) -> anyhow::Result<()> {
        wait_for_port(child, self.port, "postgres").await?;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait()? {
                bail!("postgres exited ({status})");
            }
            let query = async {
                let mut connection = sqlx::PgConnection::connect(&self.url("postgres")).await?;
                sqlx::raw_sql("SELECT 1").execute(&mut connection).await?;
                connection.close().await
            };
            let error = match tokio::time::timeout(Duration::from_secs(5), query).await {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(error)) => error.to_string(),
                Err(_) => "no answer within 5 s".to_owned(),
            };
            if Instant::now() >= deadline {
                bail!("postgres did not answer a query within {READY_TIMEOUT:?}: {error}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn shutdown_signal(mode: Shutdown) -> &'static str {
    match mode {
        Shutdown::Fast => "INT",
        Shutdown::Immediate => "QUIT",
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        // SIGKILL would leave the server's backends behind for a moment; an immediate shutdown
        // takes them along.
        if let Some(child) = self.child.as_mut() {
            stop_child_blocking(child, shutdown_signal(Shutdown::Immediate));
        }
        print_log_if_failing("the private PostgreSQL", &self.log_path());
    }
}

/// `MERCATO_TEST_POSTGRES_BIN`, else the newest `/usr/lib/postgresql/<version>/bin`, else `PATH`;
/// only a folder with both `initdb` and `postgres` counts.
fn postgres_bin() -> Option<PathBuf> {
    fn complete(dir: &Path) -> bool {
        dir.join("initdb").is_file() && dir.join("postgres").is_file()
    }
    if let Ok(dir) = std::env::var("MERCATO_TEST_POSTGRES_BIN") {
        return Some(PathBuf::from(dir)).filter(|dir| complete(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, bin)| complete(bin))
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    in_path("initdb").and_then(|initdb| initdb.parent().map(Path::to_path_buf)).filter(|dir| {
        // Debian keeps `postgres` out of PATH; a folder without it cannot run a cluster.
        complete(dir)
    })
}

/// Whether this process runs as root (`/proc/self` belongs to the effective user).
fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|meta| meta.uid() == 0)
}

/// The uid and gid of an OS user, from `/etc/passwd`.
fn os_user(name: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        match fields.as_slice() {
            [user, _, uid, gid, ..] if *user == name => {
                Some((uid.parse().ok()?, gid.parse().ok()?))
            }
            _ => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_outside_the_range_of_outgoing_connections_and_bindable() {
        let ports: Vec<u16> = (0..20).map(|_| free_port()).collect();
        for port in &ports {
            assert!(PRIVATE_PORTS.contains(port), "{port}");
            std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, *port)).expect("still free");
        }
        let distinct: std::collections::HashSet<_> = ports.iter().collect();
        assert_eq!(distinct.len(), ports.len(), "one process gets a new port each time");
    }

    #[test]
    fn log_tails_keep_the_last_lines() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("log");
        std::fs::write(&path, "one\ntwo\nthree\n").expect("written");
        assert_eq!(log_tail(&path, 2), "two\nthree");
        assert_eq!(log_tail(&path, 10), "one\ntwo\nthree");
        assert_eq!(log_tail(&dir.path().join("missing"), 3), "");
    }

    #[tokio::test]
    async fn a_private_postgres_survives_a_crash_and_keeps_its_data() {
        let Some(mut server) = PrivatePostgres::start().await else { return };
        let url = server.create_database("drill").await;
        let write = |statement: &'static str| {
            let url = url.clone();
            async move {
                let mut connection = sqlx::PgConnection::connect(&url).await?;
                sqlx::raw_sql(statement).execute(&mut connection).await?;
                connection.close().await
            }
        };
        write("CREATE TABLE kept (id INT); INSERT INTO kept VALUES (1)").await.expect("written");
        server.stop(Shutdown::Immediate).await;
        assert!(write("SELECT 1").await.is_err(), "the server is down");
        server.start_again().await;
        write("INSERT INTO kept VALUES (2)").await.expect("written after the crash");
        server.stop(Shutdown::Fast).await;
        assert!(!server.is_running());
        server.start_again().await;
        let mut connection = sqlx::PgConnection::connect(&url).await.expect("back");
        let rows = sqlx::raw_sql("SELECT id FROM kept").fetch_all(&mut connection).await;
        assert_eq!(rows.expect("the table survived").len(), 2);
    }

    #[tokio::test]
    async fn a_private_nats_restarts_on_its_port() {
        let Some(mut server) = PrivateNats::start().await else { return };
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, server.port()));
        server.stop().await;
        assert!(tokio::net::TcpStream::connect(address).await.is_err(), "stopped");
        server.start_again().await;
        server.kill().await;
        server.start_again().await;
        assert!(tokio::net::TcpStream::connect(address).await.is_ok(), "running again");
        assert!(server.is_running());
    }
}
