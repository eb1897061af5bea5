//! Driving the load: the closed loop ([`closed_loop`]: N workers, each sending its next
//! request when its last one was answered) and the open loop ([`open_loop`]: requests at fixed
//! intended send times, [`Schedule`]).
//!
//! A closed loop slows down with the server, so a stall shows as fewer requests rather than as
//! latency ("coordinated omission"). The open loop measures each request from the time it was
//! meant to be sent: when the server stalls, the requests queued behind it carry the stall in
//! their latency. Its in-flight cap is a pool of `--concurrency` workers: a send whose time has
//! come waits for a free worker, is counted late when it goes out more than [`LATE_AFTER`]
//! after its time, and dropped when the run ends before a worker was free.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::args::Stop;
use crate::scenario::{Context, Worker, perform};
use crate::stats::Recorder;

/// A send this much after its intended time counts as late (tokio's timer has 1 ms
/// granularity, so a send a millisecond late is on time as far as this clock can tell).
pub const LATE_AFTER: Duration = Duration::from_millis(10);

/// How the load went, beside what the recorder holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// From the first (intended) send to the last answer.
    pub elapsed: Duration,
    pub open_loop: Option<OpenLoopStats>,
}

/// The open loop's sends against its schedule.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OpenLoopStats {
    pub rate: f64,
    pub scheduled: u64,
    pub sent: u64,
    /// Sent more than [`LATE_AFTER`] after the intended time (waiting for a free worker, or
    /// the load generator itself falling behind).
    pub late: u64,
    /// Never sent: the run ended while they waited for a free worker.
    pub dropped: u64,
    pub late_after_ms: u64,
}

/// Fixed intended send times: send `i` at `i / rate` seconds after the start.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    pub rate: f64,
    pub count: u64,
}

impl Schedule {
    /// The sends of a run: exactly `count`, or every one whose time falls within `duration`.
    pub fn new(rate: f64, stop: Stop) -> Self {
        let count = match stop {
            Stop::Requests(count) => count,
            Stop::After(duration) => (duration.as_secs_f64() * rate).ceil() as u64,
        };
        Self { rate, count }
    }

    /// When send `index` is due, after the start. Computed from the index, not by adding
    /// intervals, so rounding never accumulates into drift.
    pub fn offset(&self, index: u64) -> Duration {
        Duration::from_secs_f64(index as f64 / self.rate)
    }
}

fn record(
    recorder: &Mutex<Recorder>,
    outcome: (crate::scenario::Operation, Result<(), crate::client::Failure>),
    sent: Instant,
) {
    let completed = Instant::now();
    let (operation, result) = outcome;
    recorder.lock().unwrap_or_else(PoisonError::into_inner).record(
        operation,
        completed.duration_since(sent),
        completed,
        &result,
    );
}

/// Runs `workers` until `stop`, each sending as soon as its last request was answered.
pub async fn closed_loop(
    context: Arc<Context>,
    workers: Vec<Worker>,
    stop: Stop,
    start: Instant,
    recorder: Arc<Mutex<Recorder>>,
) -> anyhow::Result<Outcome> {
    let issued = Arc::new(AtomicU64::new(0));
    let mut tasks = JoinSet::new();
    for mut worker in workers {
        let (context, recorder, issued) = (context.clone(), recorder.clone(), issued.clone());
        tasks.spawn(async move {
            loop {
                let go = match stop {
                    Stop::After(duration) => start.elapsed() < duration,
                    Stop::Requests(count) => issued.fetch_add(1, Ordering::Relaxed) < count,
                };
                if !go {
                    break;
                }
                let sent = Instant::now();
                let outcome = perform(&context, &mut worker).await;
                record(&recorder, outcome, sent);
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.context("a load worker failed")?;
    }
    Ok(Outcome { elapsed: start.elapsed(), open_loop: None })
}

/// Sends on `schedule`, at most `workers.len()` requests in flight; latency is measured from
/// each request's intended send time.
pub async fn open_loop(
    context: Arc<Context>,
    workers: Vec<Worker>,
    schedule: Schedule,
    stop: Stop,
    start: Instant,
    recorder: Arc<Mutex<Recorder>>,
) -> anyhow::Result<Outcome> {
    let (free, mut idle) = mpsc::channel(workers.len().max(1));
    for worker in workers {
        // The channel holds every worker: this never waits.
        let _ = free.send(worker).await;
    }
    // With `--duration`, sends still waiting for a worker when it is over are dropped; with
    // `--requests`, every send goes out, however late.
    let end = match stop {
        Stop::After(duration) => Some(tokio::time::Instant::from_std(start + duration)),
        Stop::Requests(_) => None,
    };
    let (mut sent, mut late) = (0_u64, 0_u64);
    let mut tasks = JoinSet::new();
    for index in 0..schedule.count {
        let intended = start + schedule.offset(index);
        tokio::time::sleep_until(tokio::time::Instant::from_std(intended)).await;
        let worker = match end {
            Some(end) => match tokio::time::timeout_at(end, idle.recv()).await {
                Ok(Some(worker)) => worker,
                Ok(None) | Err(_) => break,
            },
            None => match idle.recv().await {
                Some(worker) => worker,
                None => break,
            },
        };
        if intended.elapsed() > LATE_AFTER {
            late += 1;
        }
        sent += 1;
        let (context, recorder, free) = (context.clone(), recorder.clone(), free.clone());
        tasks.spawn(async move {
            let mut worker = worker;
            let outcome = perform(&context, &mut worker).await;
            record(&recorder, outcome, intended);
            let _ = free.send(worker).await;
        });
        // Finished tasks are reaped as the run goes, so the set stays as small as the pool.
        while let Some(done) = tasks.try_join_next() {
            done.context("a load task failed")?;
        }
    }
    while let Some(done) = tasks.join_next().await {
        done.context("a load task failed")?;
    }
    Ok(Outcome {
        elapsed: start.elapsed(),
        open_loop: Some(OpenLoopStats {
            rate: schedule.rate,
            scheduled: schedule.count,
            sent,
            late,
            dropped: schedule.count - sent,
            late_after_ms: LATE_AFTER.as_millis() as u64,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_duration_schedules_every_send_due_within_it() {
        let schedule = Schedule::new(100.0, Stop::After(Duration::from_secs(2)));
        assert_eq!(schedule.count, 200);
        assert_eq!(schedule.offset(0), Duration::ZERO);
        assert_eq!(schedule.offset(1), Duration::from_millis(10));
        assert_eq!(schedule.offset(199), Duration::from_millis(1990));
        // A fractional count rounds up: the send due at 0.9 s of a 1 s run at 2.5/s is in it.
        let schedule = Schedule::new(2.5, Stop::After(Duration::from_secs(1)));
        assert_eq!(schedule.count, 3);
        assert!(schedule.offset(2) < Duration::from_secs(1));
    }

    #[test]
    fn a_request_count_schedules_exactly_that_many() {
        let schedule = Schedule::new(3.0, Stop::Requests(7));
        assert_eq!(schedule.count, 7);
        assert_eq!(schedule.offset(6), Duration::from_secs(2));
    }

    #[test]
    fn intended_times_do_not_drift_at_high_rates() {
        let schedule = Schedule::new(3.0, Stop::Requests(3_000_001));
        let offset = schedule.offset(3_000_000);
        assert_eq!(offset, Duration::from_secs(1_000_000));
        let schedule = Schedule::new(7_000.0, Stop::After(Duration::from_secs(3600)));
        assert_eq!(schedule.count, 25_200_000);
        let last = schedule.offset(schedule.count - 1);
        assert!(last < Duration::from_secs(3600) && last > Duration::from_millis(3_599_999));
    }
}
