//! Liveness and readiness.
//!
//! `GET /health/live` answers while the process runs. `GET /health/ready` runs every registered
//! check (each service registers its database; the bus registers itself) and answers `503
//! not_ready` with the failing checks when any fails, so a load balancer stops sending traffic.
//! Once the process is told to stop, [`Readiness::drain`] turns it red for good while requests
//! are still served (see [`crate::shutdown::drained`]).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mercato_store::Database;
use serde_json::json;

use crate::error::PROBLEM_JSON;

type CheckFuture = Pin<Box<dyn Future<Output = Result<String, String>> + Send>>;
type Check = Arc<dyn Fn() -> CheckFuture + Send + Sync>;

/// How long one check may take before it counts as failed.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// The readiness checks of one process.
#[derive(Clone, Default)]
pub struct Readiness {
    checks: Vec<(String, Check)>,
    /// Shared by every clone: set once the process is shutting down.
    draining: Arc<AtomicBool>,
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.checks.iter().map(|(name, _)| name)).finish()
    }
}

impl Readiness {
    /// Registers a check: `Ok(detail)` when healthy, `Err(reason)` otherwise.
    pub fn add<F, Fut>(&mut self, name: impl Into<String>, check: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<String, String>> + Send + 'static,
    {
        let check: Check = Arc::new(move || Box::pin(check()));
        self.checks.push((name.into(), check));
    }

    /// Registers a database ping under `name`.
    pub fn add_database(&mut self, name: impl Into<String>, database: Database) {
        self.add(name, move || {
            let database = database.clone();
            async move {
                database.ping().await.map(|()| "ok".to_owned()).map_err(|error| error.to_string())
            }
        });
    }

    /// From now on every check of this readiness (and of its clones) answers not ready, naming
    /// the shutdown: the process is about to stop.
    pub fn drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn merge(&mut self, other: Readiness) {
        self.checks.extend(other.checks);
    }

    /// Runs every check concurrently; `true` when all pass.
    pub async fn check(&self) -> (bool, BTreeMap<String, String>) {
        let runs = self.checks.iter().map(|(name, check)| async move {
            let outcome = match tokio::time::timeout(CHECK_TIMEOUT, check()).await {
                Ok(outcome) => outcome,
                Err(_) => Err(format!("no answer within {CHECK_TIMEOUT:?}")),
            };
            (name.clone(), outcome)
        });
        let mut ready = true;
        let mut report = BTreeMap::new();
        if self.draining.load(Ordering::SeqCst) {
            ready = false;
            report
                .insert("shutdown".to_owned(), "failing: the process is shutting down".to_owned());
        }
        for (name, outcome) in futures::future::join_all(runs).await {
            match outcome {
                Ok(detail) => {
                    report.insert(name, detail);
                }
                Err(reason) => {
                    ready = false;
                    tracing::warn!(check = %name, %reason, "readiness check failed");
                    report.insert(name, format!("failing: {reason}"));
                }
            }
        }
        (ready, report)
    }
}

/// `GET /health/live`.
pub async fn live() -> Response {
    axum::Json(json!({"status": "live"})).into_response()
}

/// `GET /health/ready`: `200` with each check's detail, or `503 not_ready` naming what fails.
pub async fn ready(readiness: Readiness) -> Response {
    let (ok, checks) = readiness.check().await;
    if ok {
        return axum::Json(json!({"status": "ready", "checks": checks})).into_response();
    }
    let failing: Vec<&str> = checks
        .iter()
        .filter(|(_, detail)| detail.starts_with("failing"))
        .map(|(name, _)| name.as_str())
        .collect();
    let body = json!({
        "type": "/problems/not_ready",
        "title": "Service Unavailable",
        "status": 503,
        "detail": format!("not ready: {}", failing.join(", ")),
        "code": "not_ready",
        "checks": checks,
    });
    let mut response = (StatusCode::SERVICE_UNAVAILABLE, body.to_string()).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_failing_check_makes_the_process_not_ready() {
        let mut readiness = Readiness::default();
        readiness.add("database", || async { Ok("ok".to_owned()) });
        assert!(readiness.check().await.0);
        readiness.add("bus", || async { Err("connection refused".to_owned()) });
        let (ready, report) = readiness.check().await;
        assert!(!ready);
        assert_eq!(report["database"], "ok");
        assert_eq!(report["bus"], "failing: connection refused");
    }
}
