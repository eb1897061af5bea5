//! A fixed-window rate limiter kept in memory, per key.
//!
//! Used for limits where per-instance counting is good enough (requests per client address);
//! limits that must hold across replicas and restarts live in the owning service's database.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Allows `limit` hits per key in each window of `window`.
#[derive(Debug)]
pub struct FixedWindow<K> {
    limit: u32,
    window: Duration,
    counts: Mutex<HashMap<K, (Instant, u32)>>,
}

impl<K: Eq + Hash + Clone> FixedWindow<K> {
    pub fn new(limit: u32, window: Duration) -> Self {
        Self { limit, window, counts: Mutex::new(HashMap::new()) }
    }

    /// Counts a hit for `key`; `Err(retry_after)` when the key is over its limit.
    pub fn hit(&self, key: &K) -> Result<(), Duration> {
        self.hit_at(key, Instant::now())
    }

    fn hit_at(&self, key: &K, now: Instant) -> Result<(), Duration> {
        let mut counts = self.counts.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if counts.len() > 100_000 {
            let window = self.window;
            counts.retain(|_, (start, _)| now.duration_since(*start) < window);
        }
        let entry = counts.entry(key.clone()).or_insert((now, 0));
        if now.duration_since(entry.0) >= self.window {
            *entry = (now, 0);
        }
        if entry.1 >= self.limit {
            return Err(self.window.saturating_sub(now.duration_since(entry.0)));
        }
        entry.1 += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hit_after_the_limit_is_refused_until_the_window_ends() {
        let limiter = FixedWindow::new(2, Duration::from_secs(60));
        let start = Instant::now();
        assert!(limiter.hit_at(&"a", start).is_ok());
        assert!(limiter.hit_at(&"a", start).is_ok());
        let retry = limiter.hit_at(&"a", start + Duration::from_secs(10));
        assert_eq!(retry, Err(Duration::from_secs(50)));
        assert!(limiter.hit_at(&"b", start).is_ok(), "keys are counted apart");
        assert!(limiter.hit_at(&"a", start + Duration::from_secs(60)).is_ok());
    }
}
