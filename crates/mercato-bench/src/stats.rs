//! Recording answers ([`Recorder`]) into HDR histograms (microseconds; per operation, overall,
//! and per second of the run) and error counts, and the [`Summary`] made of them at the end.
//!
//! Latency percentiles are over successful requests: a fast `429` or a refused connection would
//! otherwise make a failing server look quick. Failures are counted apart, by operation, HTTP
//! status and error code.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::client::Failure;
use crate::progress::Snapshot;
use crate::scenario::Operation;

/// The largest latency recorded exactly (one hour, in µs); longer ones saturate there.
const HIGHEST_MICROS: u64 = 3_600_000_000;

fn histogram(significant_figures: u8) -> Histogram<u64> {
    // Fails only for bounds hdrhistogram cannot represent (low 0, high < 2 × low, more than 5
    // significant figures); these constants are none of them, as the unit tests show.
    Histogram::new_with_bounds(1, HIGHEST_MICROS, significant_figures)
        .expect("constant histogram bounds are valid")
}

fn micros(latency: Duration) -> u64 {
    u64::try_from(latency.as_micros()).unwrap_or(u64::MAX).max(1)
}

/// The answers of one second of the run (by completion time).
#[derive(Debug, Clone)]
struct Second {
    ok: u64,
    failed: u64,
    /// Two significant figures: enough for a chart, and small enough for one per second.
    latencies: Histogram<u64>,
}

#[derive(Debug, Clone)]
struct OperationStats {
    ok: u64,
    failed: u64,
    latencies: Histogram<u64>,
}

/// Everything recorded during a run.
#[derive(Debug, Clone)]
pub struct Recorder {
    start: Instant,
    overall: Histogram<u64>,
    operations: BTreeMap<Operation, OperationStats>,
    errors: BTreeMap<(Operation, Failure), u64>,
    seconds: Vec<Second>,
    ok: u64,
    failed: u64,
}

impl Recorder {
    pub fn new(start: Instant) -> Self {
        Self {
            start,
            overall: histogram(3),
            operations: BTreeMap::new(),
            errors: BTreeMap::new(),
            seconds: Vec::new(),
            ok: 0,
            failed: 0,
        }
    }

    /// One answer: `latency` is from the (intended) send time to `completed`.
    pub fn record(
        &mut self,
        operation: Operation,
        latency: Duration,
        completed: Instant,
        result: &Result<(), Failure>,
    ) {
        let second = completed.saturating_duration_since(self.start).as_secs() as usize;
        while self.seconds.len() <= second {
            self.seconds.push(Second { ok: 0, failed: 0, latencies: histogram(2) });
        }
        let stats = self.operations.entry(operation).or_insert_with(|| OperationStats {
            ok: 0,
            failed: 0,
            latencies: histogram(3),
        });
        let bucket = &mut self.seconds[second];
        match result {
            Ok(()) => {
                let value = micros(latency);
                self.ok += 1;
                stats.ok += 1;
                bucket.ok += 1;
                self.overall.saturating_record(value);
                stats.latencies.saturating_record(value);
                bucket.latencies.saturating_record(value);
            }
            Err(failure) => {
                self.failed += 1;
                stats.failed += 1;
                bucket.failed += 1;
                *self.errors.entry((operation, failure.clone())).or_insert(0) += 1;
            }
        }
    }

    /// What the progress display shows now.
    pub fn snapshot(&self) -> Snapshot {
        let elapsed = self.start.elapsed();
        let last_full = (elapsed.as_secs() as usize).checked_sub(1);
        let last_p99_ms = last_full
            .and_then(|second| self.seconds.get(second))
            .and_then(|bucket| Latency::of(&bucket.latencies))
            .map(|latency| latency.p99);
        Snapshot { elapsed, answered: self.ok + self.failed, failed: self.failed, last_p99_ms }
    }

    /// The summary of a run that took `elapsed` from its first send to its last answer.
    pub fn summarize(&self, elapsed: Duration) -> Summary {
        let seconds = elapsed.as_secs_f64().max(1e-6);
        let operations = self
            .operations
            .iter()
            .map(|(operation, stats)| OperationSummary {
                name: operation.name().to_owned(),
                requests: stats.ok + stats.failed,
                ok: stats.ok,
                failed: stats.failed,
                throughput: stats.ok as f64 / seconds,
                latency_ms: Latency::of(&stats.latencies),
            })
            .collect();
        let errors = self
            .errors
            .iter()
            .map(|((operation, failure), count)| ErrorCount {
                operation: operation.name().to_owned(),
                status: failure.status,
                code: failure.code.clone(),
                count: *count,
                rate_limited: failure.is_rate_limited(),
                hint: failure.is_rate_limited().then(|| operation.rate_limit_hint().to_owned()),
            })
            .collect();
        let series = self
            .seconds
            .iter()
            .enumerate()
            .map(|(index, bucket)| {
                // The last second may be partial: its rate is over the part the run lasted.
                let length = (seconds - index as f64).clamp(1e-3, 1.0);
                let latency = Latency::of(&bucket.latencies);
                SecondSummary {
                    second: index as u64,
                    length_seconds: length,
                    ok: bucket.ok,
                    failed: bucket.failed,
                    throughput: bucket.ok as f64 / length,
                    p50_ms: latency.as_ref().map(|latency| latency.p50),
                    p99_ms: latency.as_ref().map(|latency| latency.p99),
                }
            })
            .collect();
        Summary {
            elapsed_seconds: elapsed.as_secs_f64(),
            requests: self.ok + self.failed,
            ok: self.ok,
            failed: self.failed,
            throughput: self.ok as f64 / seconds,
            latency_ms: Latency::of(&self.overall),
            operations,
            errors,
            series,
        }
    }
}

/// Latency percentiles in milliseconds (µs resolution).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    #[serde(rename = "p99.9")]
    pub p99_9: f64,
    pub max: f64,
    pub mean: f64,
}

impl Latency {
    /// `None` for an empty histogram.
    pub fn of(histogram: &Histogram<u64>) -> Option<Self> {
        if histogram.is_empty() {
            return None;
        }
        let ms = |micros: u64| micros as f64 / 1000.0;
        Some(Self {
            p50: ms(histogram.value_at_quantile(0.50)),
            p90: ms(histogram.value_at_quantile(0.90)),
            p99: ms(histogram.value_at_quantile(0.99)),
            p99_9: ms(histogram.value_at_quantile(0.999)),
            max: ms(histogram.max()),
            mean: histogram.mean().round() / 1000.0,
        })
    }
}

/// One operation's line of the summary.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OperationSummary {
    pub name: String,
    pub requests: u64,
    pub ok: u64,
    pub failed: u64,
    /// Successful requests per second.
    pub throughput: f64,
    pub latency_ms: Option<Latency>,
}

/// Failures of one operation with one status and code.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorCount {
    pub operation: String,
    /// `null` when no answer came.
    pub status: Option<u16>,
    pub code: String,
    pub count: u64,
    pub rate_limited: bool,
    /// For rate-limited requests: the server setting to raise.
    pub hint: Option<String>,
}

/// One second of the run.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SecondSummary {
    pub second: u64,
    /// How much of the second the run lasted (less than 1 for the last one).
    pub length_seconds: f64,
    pub ok: u64,
    pub failed: u64,
    pub throughput: f64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// The measurements of a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub elapsed_seconds: f64,
    /// Requests answered or failed.
    pub requests: u64,
    pub ok: u64,
    pub failed: u64,
    /// Successful requests per second over the whole run.
    pub throughput: f64,
    pub latency_ms: Option<Latency>,
    pub operations: Vec<OperationSummary>,
    pub errors: Vec<ErrorCount>,
    pub series: Vec<SecondSummary>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(start: Instant, millis: u64) -> Instant {
        start + Duration::from_millis(millis)
    }

    #[test]
    fn percentiles_come_from_successful_answers_in_milliseconds() {
        let start = Instant::now();
        let mut recorder = Recorder::new(start);
        // 1..=1000 ms, one answer each, all in the first second's bucket or later.
        for millis in 1..=1000_u64 {
            recorder.record(
                Operation::Read,
                Duration::from_millis(millis),
                at(start, millis),
                &Ok(()),
            );
        }
        recorder.record(
            Operation::Read,
            Duration::from_secs(30),
            at(start, 1500),
            &Err(Failure::new(Some(503), "not_ready")),
        );
        let summary = recorder.summarize(Duration::from_secs(2));
        let latency = summary.latency_ms.clone().expect("answers were recorded");
        // Three significant figures: within 0.1 % of the exact value.
        for (actual, exact) in [
            (latency.p50, 500.0),
            (latency.p90, 900.0),
            (latency.p99, 990.0),
            (latency.p99_9, 999.0),
            (latency.max, 1000.0),
        ] {
            assert!((actual - exact).abs() <= exact * 0.001, "{actual} vs {exact}");
        }
        assert_eq!((summary.requests, summary.ok, summary.failed), (1001, 1000, 1));
        assert!((summary.throughput - 500.0).abs() < 1e-9);
        assert_eq!(summary.operations.len(), 1);
        assert_eq!(summary.operations[0].name, "read");
        assert_eq!(summary.errors.len(), 1);
        assert_eq!(summary.errors[0].status, Some(503));
        assert_eq!(summary.errors[0].code, "not_ready");
        assert!(!summary.errors[0].rate_limited);
    }

    #[test]
    fn answers_fall_into_the_second_they_completed_in() {
        let start = Instant::now();
        let mut recorder = Recorder::new(start);
        for millis in [10, 20, 999, 1000, 2500] {
            recorder.record(Operation::Place, Duration::from_millis(5), at(start, millis), &Ok(()));
        }
        let limited = Failure::new(Some(429), "rate_limited");
        recorder.record(Operation::Login, Duration::from_millis(1), at(start, 2600), &Err(limited));
        let summary = recorder.summarize(Duration::from_millis(2500));
        let counts: Vec<(u64, u64, u64)> =
            summary.series.iter().map(|second| (second.second, second.ok, second.failed)).collect();
        assert_eq!(counts, [(0, 3, 0), (1, 1, 0), (2, 1, 1)]);
        // The last, half second: one answer in 0.5 s.
        assert!((summary.series[2].throughput - 2.0).abs() < 1e-9);
        assert!((summary.series[2].length_seconds - 0.5).abs() < 1e-9);
        assert_eq!(summary.series[1].length_seconds, 1.0);
        assert!(summary.series[0].p99_ms.is_some());
        let error = &summary.errors[0];
        assert!(error.rate_limited);
        assert!(error.hint.as_deref().is_some_and(|hint| hint.contains("PER_ADDRESS")));
    }

    #[test]
    fn an_empty_run_has_no_percentiles() {
        let recorder = Recorder::new(Instant::now());
        let summary = recorder.summarize(Duration::from_secs(1));
        assert_eq!(summary.latency_ms, None);
        assert!(summary.series.is_empty());
        assert_eq!(summary.throughput, 0.0);
    }
}
