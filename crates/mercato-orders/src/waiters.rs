//! [`Waiters`]: requests held by `Prefer: wait=N`, woken when the saga changes their order.
//!
//! The saga consumer calls [`Waiters::wake`] after the transaction that applied a products-service
//! answer has committed; a held request then reads the order once more. Nothing polls the
//! database in a loop: a request reads the order once when it starts waiting and once per wake-up.
//! A wake-up is never lost: a request registers (and arms its [`Notify`] future) before it reads.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tokio::time::Instant;
use uuid::Uuid;

/// Who is waiting for which order, in this process.
#[derive(Clone, Default)]
pub struct Waiters {
    inner: Arc<Mutex<HashMap<Uuid, Arc<Notify>>>>,
}

impl std::fmt::Debug for Waiters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waiters").finish_non_exhaustive()
    }
}

/// One waiter's registration; dropping it unregisters.
struct Registration {
    order_id: Uuid,
    notify: Arc<Notify>,
    waiters: Waiters,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut map = self.waiters.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Clones are only made under this lock: the map's and ours are the last two.
        if Arc::strong_count(&self.notify) <= 2 {
            map.remove(&self.order_id);
        }
    }
}

impl Waiters {
    /// Wakes every request waiting for `order_id`.
    pub fn wake(&self, order_id: Uuid) {
        let map = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(notify) = map.get(&order_id) {
            notify.notify_waiters();
        }
    }

    /// Wakes every waiting request, for changes that do not name their orders (a deleted
    /// user's orders, cancelled by the replica consumer). Each re-reads its order once.
    pub fn wake_all(&self) {
        let map = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for notify in map.values() {
            notify.notify_waiters();
        }
    }

    fn register(&self, order_id: Uuid) -> Registration {
        let mut map = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let notify = map.entry(order_id).or_default().clone();
        Registration { order_id, notify, waiters: self.clone() }
    }

    /// How many orders have waiters now (for tests and metrics).
    pub fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads with `read` until `done` holds or `deadline` passes, reading again only when woken
    /// for `order_id`. Returns the last value read.
    pub async fn wait_for<T, E, R, F>(
        &self,
        order_id: Uuid,
        deadline: Instant,
        mut read: R,
        done: impl Fn(&T) -> bool,
    ) -> Result<T, E>
    where
        R: FnMut() -> F,
        F: Future<Output = Result<T, E>>,
    {
        let registration = self.register(order_id);
        loop {
            let notified = registration.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let value = read().await?;
            if done(&value) || Instant::now() >= deadline {
                return Ok(value);
            }
            tokio::select! {
                () = notified => {}
                () = tokio::time::sleep_until(deadline) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_waiter_reads_again_only_when_woken_and_unregisters() {
        let waiters = Waiters::default();
        let order = Uuid::now_v7();
        let reads = Arc::new(AtomicUsize::new(0));
        let state = Arc::new(AtomicUsize::new(0));
        let task = {
            let (waiters, reads, state) = (waiters.clone(), reads.clone(), state.clone());
            tokio::spawn(async move {
                let deadline = Instant::now() + Duration::from_secs(30);
                waiters
                    .wait_for(
                        order,
                        deadline,
                        || {
                            reads.fetch_add(1, Ordering::SeqCst);
                            let value = state.load(Ordering::SeqCst);
                            async move { Ok::<_, ()>(value) }
                        },
                        |value| *value == 2,
                    )
                    .await
            })
        };
        while reads.load(Ordering::SeqCst) < 1 {
            tokio::task::yield_now().await;
        }
        waiters.wake(Uuid::now_v7());
        state.store(1, Ordering::SeqCst);
        waiters.wake(order);
        while reads.load(Ordering::SeqCst) < 2 {
            tokio::task::yield_now().await;
        }
        state.store(2, Ordering::SeqCst);
        waiters.wake(order);
        assert_eq!(task.await.expect("the waiter finishes"), Ok(2));
        assert_eq!(reads.load(Ordering::SeqCst), 3, "one read per wake-up, no polling");
        assert!(waiters.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_gives_up_at_the_deadline_with_the_last_value() {
        let waiters = Waiters::default();
        let deadline = Instant::now() + Duration::from_secs(2);
        let value = waiters
            .wait_for(Uuid::now_v7(), deadline, || async { Ok::<_, ()>(7) }, |_| false)
            .await;
        assert_eq!(value, Ok(7));
        assert!(waiters.is_empty());
    }
}
