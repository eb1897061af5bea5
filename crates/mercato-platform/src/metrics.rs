//! Prometheus metrics: RED metrics per route, and the `/metrics` rendering.
//!
//! The `metrics` facade has one recorder per process, so the Prometheus recorder is installed
//! once and shared; every app in the process (several in tests) reports into it.
//!
//! The recorder keeps every histogram sample until its upkeep folds them into the buckets. Only
//! the exporter's own HTTP listener schedules that, and Mercato serves `/metrics` itself, so a
//! thread of its own runs the upkeep every [`UPKEEP_PERIOD`]: without it, a process nobody
//! scraped kept one sample per request for ever.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Request latency buckets, in seconds: fine below 25 ms, where Mercato's targets are.
const LATENCY_BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

static RECORDER: OnceLock<PrometheusHandle> = OnceLock::new();

/// How often the recorder's histogram samples are folded into their buckets (the exporter's own
/// default).
pub const UPKEEP_PERIOD: Duration = Duration::from_secs(5);

/// The process's Prometheus recorder, installed on first use.
pub fn recorder() -> PrometheusHandle {
    RECORDER
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("http_request_duration_seconds".into()),
                    LATENCY_BUCKETS,
                )
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let handle = match builder.install_recorder() {
                Ok(handle) => handle,
                // Another recorder is already installed: render from a detached one rather than
                // failing the service.
                Err(_) => PrometheusBuilder::new().build_recorder().handle(),
            };
            let upkeep = handle.clone();
            let started = std::thread::Builder::new().name("metrics-upkeep".into()).spawn(move || {
                loop {
                    std::thread::sleep(UPKEEP_PERIOD);
                    upkeep.run_upkeep();
                }
            });
            if let Err(error) = started {
                tracing::warn!(%error, "cannot start the metrics upkeep; samples are folded on each scrape only");
            }
            handle
        })
        .clone()
}

/// Middleware (a route layer, so that the matched route is known) recording
/// `http_requests_total{method,route,status}` and `http_request_duration_seconds{method,route}`.
pub async fn track(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("http_request_duration_seconds", "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

/// `GET /metrics`: the Prometheus text exposition.
pub async fn render(handle: PrometheusHandle) -> Response {
    handle.run_upkeep();
    let mut response = handle.render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Histogram samples are folded by a thread of the recorder's own, not only by scrapes: a
    /// process nobody scrapes must not keep every sample.
    #[test]
    fn the_recorder_runs_its_upkeep_without_being_scraped() {
        let _handle = recorder();
        let threads: Vec<String> = std::fs::read_dir("/proc/self/task")
            .expect("the process's threads are listed")
            .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
            .map(|name| name.trim().to_owned())
            .collect();
        assert!(threads.iter().any(|name| name == "metrics-upkeep"), "threads: {threads:?}");
    }
}
