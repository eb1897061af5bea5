//! Graceful shutdown: SIGTERM or Ctrl-C ([`signal`]), then readiness red while requests are
//! still served ([`drained`]), then the server stops taking connections and lets in-flight
//! requests finish; background work (consumers, relays) stops after it.

use std::time::Duration;

use crate::health::Readiness;

/// Resolves `drain` after `signal`, having turned `readiness` red at once: the future to give
/// the server as its shutdown signal, so that load balancers see the instance leave before its
/// listener closes.
pub async fn drained(
    signal: impl std::future::Future<Output = ()>,
    readiness: Readiness,
    drain: Duration,
) {
    signal.await;
    readiness.drain();
    if !drain.is_zero() {
        tracing::info!(?drain, "readiness is red; serving until the drain ends");
        tokio::time::sleep(drain).await;
    }
}

/// Resolves when the process is asked to stop (SIGTERM on Unix, or Ctrl-C).
pub async fn signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("Ctrl-C received, shutting down"),
        () = terminate => tracing::info!("SIGTERM received, shutting down"),
    }
}
