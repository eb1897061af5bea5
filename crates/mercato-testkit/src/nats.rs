//! NATS for tests: the shared server's URL, unique subject prefixes, and [`NatsServer`], a private
//! `nats-server -js` that a fault drill may stop and restart without touching the shared one.
//!
//! Tests on the shared server (`MERCATO_TEST_NATS_URL`, default `nats://127.0.0.1:4222`) each use
//! their own prefix from [`unique_prefix`], so their streams (named after the prefix) never meet.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";
const DEFAULT_BINARY: &str = "/usr/sbin/nats-server";
/// How long a started server has to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// The shared NATS server of the machine (`MERCATO_TEST_NATS_URL`).
pub fn shared_nats_url() -> String {
    std::env::var("MERCATO_TEST_NATS_URL").unwrap_or_else(|_| DEFAULT_NATS_URL.to_owned())
}

/// The shared NATS server's URL when it accepts connections; `None` after a loud message when
/// it does not and servers are not required (panics when they are), like [`crate::TestDatabase`].
pub async fn reachable_shared_nats() -> Option<String> {
    let url = shared_nats_url();
    let authority = url.split("://").nth(1).unwrap_or(&url).split('/').next().unwrap_or_default();
    let address = authority.rsplit('@').next().unwrap_or(authority).to_owned();
    let connect = tokio::net::TcpStream::connect(address.clone());
    match tokio::time::timeout(Duration::from_secs(3), connect).await {
        Ok(Ok(_)) => Some(url),
        outcome => {
            let reason = match outcome {
                Ok(Err(error)) => error.to_string(),
                _ => "no answer within 3 s".to_owned(),
            };
            crate::skip_or_fail(&format!("NATS is unreachable at {url} ({reason})"));
            None
        }
    }
}

/// A subject prefix no other test uses: `t` and 12 random hex digits (one subject token, so
/// the stream name derived from it is valid too).
pub fn unique_prefix() -> String {
    // The tail of a UUIDv7 is random; its head is the clock, which tests started in the same
    // millisecond share.
    let id = uuid::Uuid::now_v7().simple().to_string();
    format!("t{}", &id[id.len() - 12..])
}

/// A private `nats-server` with JetStream on a free local port and a temporary store.
///
/// [`NatsServer::stop`] kills it like a crash; [`NatsServer::restart`] starts it again on the same
/// port and store, so streams, messages and durable consumers survive as they would in
/// production. Killed when dropped.
#[derive(Debug)]
pub struct NatsServer {
    binary: PathBuf,
    port: u16,
    store: tempfile::TempDir,
    child: Option<tokio::process::Child>,
}

impl NatsServer {
    /// Starts a server; `None` (after a loud message) when there is no `nats-server` binary and
    /// servers are not required. Panics when it is required, or when it does not come up.
    pub async fn start() -> Option<Self> {
        let Some(binary) = find_binary() else {
            let message = "no nats-server binary (looked at MERCATO_TEST_NATS_SERVER, \
                           /usr/sbin/nats-server and PATH)";
            crate::skip_or_fail(message);
            return None;
        };
        let store = tempfile::tempdir().expect("a temporary directory for the JetStream store");
        let port = free_port().expect("a free local port for nats-server");
        let mut server = Self { binary, port, store, child: None };
        if let Err(error) = server.spawn().await {
            panic!("the private nats-server did not start: {error:#}");
        }
        Some(server)
    }

    /// `nats://127.0.0.1:<port>`; the same across restarts.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server (SIGKILL, as a crash would) and waits until it has exited.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take()
            && let Err(error) = child.kill().await
        {
            eprintln!("warning: could not kill the private nats-server: {error}");
        }
    }

    /// Starts the server again on the same port with the same store; panics when it does not
    /// come up within 10 s.
    pub async fn restart(&mut self) {
        self.stop().await;
        if let Err(error) = self.spawn().await {
            panic!("the private nats-server did not restart: {error:#}");
        }
    }

    async fn spawn(&mut self) -> anyhow::Result<()> {
        let mut child = tokio::process::Command::new(&self.binary)
            .arg("-js")
            .args(["-a", "127.0.0.1"])
            .args(["-p", &self.port.to_string()])
            .arg("-sd")
            .arg(self.store.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("running {}", self.binary.display()))?;
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut pause = Duration::from_millis(10);
        loop {
            if let Some(status) = child.try_wait()? {
                bail!("nats-server exited at once ({status}); is port {} taken?", self.port);
            }
            if tokio::net::TcpStream::connect(address).await.is_ok() {
                break;
            }
            if Instant::now() >= deadline {
                let _ = child.kill().await;
                bail!(
                    "nats-server did not accept connections on {address} within {READY_TIMEOUT:?}"
                );
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(200));
        }
        self.child = Some(child);
        Ok(())
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        // `kill_on_drop` sends the signal; nothing to wait for here.
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
    }
}

fn find_binary() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("MERCATO_TEST_NATS_SERVER") {
        return Some(PathBuf::from(path)).filter(|path| path.is_file());
    }
    let default = PathBuf::from(DEFAULT_BINARY);
    if default.is_file() {
        return Some(default);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths).map(|dir| dir.join("nats-server")).find(|p| p.is_file())
    })
}

/// A port that was free a moment ago (the OS picks it; the server binds it right after).
fn free_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_one_token_and_unique() {
        let first = unique_prefix();
        let second = unique_prefix();
        assert_ne!(first, second);
        assert_eq!(first.len(), 13);
        assert!(first.starts_with('t'));
        assert!(first.chars().all(|c| c.is_ascii_alphanumeric()), "{first}");
    }
}
