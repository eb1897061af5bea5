//! Progress on stderr, so stdout keeps only the summary: one line rewritten in place (`\r`)
//! when stderr is a terminal, else a line every few seconds (a log or CI keeps every line, and
//! carriage returns would garble it).

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::args::Stop;
use crate::stats::Recorder;

/// How often the terminal line is redrawn.
const TERMINAL_TICK: Duration = Duration::from_millis(250);
/// How often a line is written when stderr is not a terminal.
const LOG_TICK: Duration = Duration::from_secs(5);

fn write_err(text: &str) {
    let mut stderr = std::io::stderr().lock();
    let _ = stderr.write_all(text.as_bytes());
    let _ = stderr.flush();
}

/// Counts fixtures as they are made: `fixtures: products 7/20`.
#[derive(Debug)]
pub struct Counter {
    label: &'static str,
    total: usize,
    done: AtomicUsize,
    terminal: bool,
}

impl Counter {
    pub fn start(label: &'static str, total: usize) -> Self {
        let counter = Self {
            label,
            total,
            done: AtomicUsize::new(0),
            terminal: std::io::stderr().is_terminal(),
        };
        if counter.terminal {
            write_err(&format!("\rfixtures: {label} 0/{total}\x1b[K"));
        } else {
            write_err(&format!("fixtures: creating {total} {label}\n"));
        }
        counter
    }

    pub fn tick(&self) {
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        if self.terminal {
            write_err(&format!("\rfixtures: {} {done}/{}\x1b[K", self.label, self.total));
        }
    }

    pub fn finish(&self) {
        let done = self.done.load(Ordering::Relaxed);
        if self.terminal {
            write_err(&format!("\rfixtures: {} {done}/{}\x1b[K\n", self.label, self.total));
        } else {
            write_err(&format!("fixtures: {} {done}/{} done\n", self.label, self.total));
        }
    }
}

/// The progress display of a running load; stopped with [`Display::finish`].
#[derive(Debug)]
pub struct Display {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Display {
    pub fn spawn(recorder: Arc<Mutex<Recorder>>, stop: Stop) -> Self {
        let terminal = std::io::stderr().is_terminal();
        let (sender, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let tick = if terminal { TERMINAL_TICK } else { LOG_TICK };
            let mut interval = tokio::time::interval(tick);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            interval.tick().await;
            let mut last = (Instant::now(), 0_u64);
            loop {
                tokio::select! {
                    _ = interval.tick() => {}
                    _ = stopped.changed() => break,
                }
                let snapshot = recorder.lock().unwrap_or_else(PoisonError::into_inner).snapshot();
                let now = Instant::now();
                let window = now.duration_since(last.0).as_secs_f64();
                let rate =
                    if window > 0.0 { (snapshot.answered - last.1) as f64 / window } else { 0.0 };
                last = (now, snapshot.answered);
                let line = line(&snapshot, rate, stop);
                if terminal {
                    write_err(&format!("\r{line}\x1b[K"));
                } else {
                    write_err(&format!("{line}\n"));
                }
            }
            // The last line shows the whole run: its average rate, not the last window's.
            let snapshot = recorder.lock().unwrap_or_else(PoisonError::into_inner).snapshot();
            let seconds = snapshot.elapsed.as_secs_f64();
            let average = if seconds > 0.0 { snapshot.answered as f64 / seconds } else { 0.0 };
            let line = line(&snapshot, average, stop);
            write_err(&if terminal { format!("\r{line}\x1b[K\n") } else { format!("{line}\n") });
        });
        Self { stop: sender, task }
    }

    pub async fn finish(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// What the display shows, read from the recorder.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Snapshot {
    pub elapsed: Duration,
    /// Requests answered (or failed) so far.
    pub answered: u64,
    pub failed: u64,
    /// The p99 (ms) of the last full second, if it had successes.
    pub last_p99_ms: Option<f64>,
}

/// `  4.0s [ 40%]  12,345 requests  3,086/s  0 errors  p99 4.12 ms`
pub fn line(snapshot: &Snapshot, rate: f64, stop: Stop) -> String {
    let elapsed = snapshot.elapsed.as_secs_f64();
    let done = match stop {
        Stop::After(duration) => (elapsed / duration.as_secs_f64()).min(1.0),
        Stop::Requests(count) => (snapshot.answered as f64 / count as f64).min(1.0),
    };
    let p99 = snapshot.last_p99_ms.map_or_else(|| "-".to_owned(), |p99| format!("{p99:.2} ms"));
    format!(
        "{elapsed:6.1}s [{:3.0}%] {:>10} requests {:>9}/s {:>6} errors  p99 {p99}",
        done * 100.0,
        crate::report::thousands(snapshot.answered),
        crate::report::thousands(rate.round() as u64),
        crate::report::thousands(snapshot.failed),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_shows_progress_rate_errors_and_p99() {
        let snapshot = Snapshot {
            elapsed: Duration::from_secs(4),
            answered: 12_345,
            failed: 2,
            last_p99_ms: Some(4.1234),
        };
        let shown = line(&snapshot, 3086.4, Stop::After(Duration::from_secs(10)));
        assert_eq!(
            shown,
            "   4.0s [ 40%]     12,345 requests     3,086/s      2 errors  p99 4.12 ms"
        );
        let snapshot = Snapshot { last_p99_ms: None, ..snapshot };
        let shown = line(&snapshot, 0.0, Stop::Requests(100_000));
        assert!(shown.contains("[ 12%]") && shown.ends_with("p99 -"), "{shown}");
    }
}
