//! `mercato bench`: load scenarios against a running Mercato, through its public HTTP API only
//! (REST and GraphQL), with latency histograms, error breakdowns, reports and, after the
//! scenarios that move stock, a check that the system's promises still hold.
//!
//! It owns no server-side state and must not reach around the API: fixtures are made with the
//! admin account named by `MERCATO_ADMIN_EMAIL` / `MERCATO_ADMIN_PASSWORD`, never in a
//! database, and it never reads the server's settings (it may run on another machine; the
//! `mercato` binary does not load its config for it).
//!
//! - [`args`]: the command line ([`BenchArgs`]) and the validated plan of a run.
//! - [`client`]: the pooled HTTP client, how an answer is judged (status, error `code`), and
//!   signed-in accounts whose tokens are renewed during long runs.
//! - [`fixtures`]: products, customers and orders made for the run.
//! - [`scenario`]: the scenarios, the operations they send and what counts as a success.
//! - [`load`]: the closed loop (N workers) and the open loop (`--rate`, fixed intended send
//!   times, latency from the intended time).
//! - [`stats`]: HDR histograms per operation and per second, error counts, the summary.
//! - [`invariants`]: no order left pending, stock conserved, checked through the API.
//! - [`progress`]: the progress display on stderr.
//! - [`report`]: the stdout table, the JSON document, the Markdown report and its SVG chart.

pub mod args;
pub mod client;
pub mod fixtures;
pub mod invariants;
pub mod load;
pub mod progress;
pub mod report;
pub mod scenario;
pub mod stats;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Instant, SystemTime};

use anyhow::{Context as _, bail};

pub use crate::args::BenchArgs;
use crate::args::{Plan, Stop};
use crate::client::Api;
use crate::fixtures::AdminCredentials;
use crate::load::Schedule;
use crate::report::{Results, Settings};
use crate::scenario::{Context, Worker};
use crate::stats::Recorder;

/// Runs `mercato bench`: fixtures, load, summary on stdout, the files asked for, and then an
/// error when an invariant failed or no request succeeded (so scripts see a non-zero exit).
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let plan = args.plan();
    let admin = AdminCredentials::from_env()?;
    let api = Api::new(&plan.url, plan.concurrency)?;
    let started_at = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let fixtures = Arc::new(fixtures::create(&api, &plan, &admin).await?);

    let context =
        Arc::new(Context { api: api.clone(), fixtures: fixtures.clone(), scenario: plan.scenario });
    let workers: Vec<Worker> =
        (0..plan.concurrency).map(|index| Worker::new(index, &fixtures)).collect();
    eprintln!("running {} against {}", plan.scenario.name(), plan.url);
    let start = Instant::now();
    let recorder = Arc::new(Mutex::new(Recorder::new(start)));
    let display = progress::Display::spawn(recorder.clone(), plan.stop);
    let outcome = match plan.rate {
        None => load::closed_loop(context, workers, plan.stop, start, recorder.clone()).await,
        Some(rate) => {
            let schedule = Schedule::new(rate, plan.stop);
            load::open_loop(context, workers, schedule, plan.stop, start, recorder.clone()).await
        }
    };
    display.finish().await;
    let outcome = outcome?;
    let summary =
        recorder.lock().unwrap_or_else(PoisonError::into_inner).summarize(outcome.elapsed);

    let invariants = if plan.scenario.checks_invariants() {
        eprintln!(
            "checking invariants (waiting up to {} s for pending orders)",
            invariants::PATIENCE.as_secs()
        );
        Some(invariants::check(&api, &fixtures, invariants::PATIENCE).await?)
    } else {
        None
    };

    let results = Results {
        scenario: plan.scenario.name(),
        command_line: report::command_line(std::env::args()),
        started_at,
        run_id: fixtures.run_id.clone(),
        settings: settings(&plan),
        summary,
        open_loop: outcome.open_loop,
        invariants,
    };
    print!("{}", report::table(&results));
    if let Some(path) = &plan.json {
        let json =
            serde_json::to_string_pretty(&results).context("cannot write the results as JSON")?;
        write(path, &json)?;
    }
    if let Some(path) = &plan.report {
        let chart_path = chart_path(path);
        let chart_name = chart_path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        let title =
            format!("mercato bench {}: throughput and p99 latency per second", results.scenario);
        write(&chart_path, &report::svg(&title, &results.summary.series))?;
        write(path, &report::markdown(&results, &chart_name))?;
    }
    if let Some(invariants) = &results.invariants
        && !invariants.holds
    {
        bail!("an invariant does not hold after the run (see the summary above)");
    }
    if results.summary.ok == 0 {
        bail!("no request succeeded (see the errors above)");
    }
    Ok(())
}

fn settings(plan: &Plan) -> Settings {
    let (duration_seconds, requests) = match plan.stop {
        Stop::After(duration) => (Some(duration.as_secs_f64()), None),
        Stop::Requests(count) => (None, Some(count)),
    };
    Settings {
        url: plan.url.clone(),
        mode: if plan.rate.is_some() { "open" } else { "closed" },
        concurrency: plan.concurrency,
        duration_seconds,
        requests,
        rate: plan.rate,
        products: plan.products,
        customers: plan.customers,
    }
}

/// The chart beside the report: `run.md` → `run.svg` (`run` → `run.svg`).
pub fn chart_path(report: &Path) -> PathBuf {
    let path = report.with_extension("svg");
    if path == report { report.with_extension("chart.svg") } else { path }
}

fn write(path: &Path, contents: &str) -> anyhow::Result<()> {
    std::fs::write(path, contents).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chart_goes_beside_the_report() {
        assert_eq!(chart_path(Path::new("out/run.md")), Path::new("out/run.svg"));
        assert_eq!(chart_path(Path::new("run")), Path::new("run.svg"));
        assert_eq!(chart_path(Path::new("run.svg")), Path::new("run.chart.svg"));
    }
}
