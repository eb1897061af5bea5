//! [`Waiters`]: requests held by `Prefer: wait=N`, woken when the saga changes their order.
//!
//! The saga consumer calls [`Waiters::wake`] after the transaction that applied a products-service
//! answer has committed; a held request then reads the order once more. Nothing polls the
//! database in a loop: a request reads the order once when it starts waiting and once per wake-up.
//! A wake-up is never lost: a request registers (and arms its [`Notify`] future) before it reads.
//! A request that arms before its own write commits ([`Waiters::arm`]) starts from the order as
//! it wrote it and reads only when woken: nothing can change the order unseen in between.
//!
//! Replicas: with several instances sharing the saga's durable consumer, the instance that
//! applies an answer is often not the one holding the request. [`Waiters::share`] tells the other
//! instances of every wake-up over a bus signal (`signal.<prefix>.orders.woken`, stored nowhere)
//! and wakes here what they name. A lost signal costs only latency: the request is answered when
//! its wait runs out, with the order as it then is.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};

use mercato_bus::EventBus;
use mercato_bus::bus::signal_subject;
use tokio::sync::futures::OwnedNotified;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use uuid::Uuid;

/// Who is waiting for which order, in this process.
#[derive(Clone, Default)]
pub struct Waiters {
    inner: Arc<Mutex<HashMap<Uuid, Arc<Notify>>>>,
    peers: Arc<OnceLock<Peers>>,
}

/// The other instances of the service, told of each wake-up here.
struct Peers {
    bus: Arc<dyn EventBus>,
    subject: String,
    /// This instance's id, so that it skips its own signals.
    instance: String,
}

/// What a signal says to wake: one order's waiters, or all of them.
const EVERY_ORDER: &str = "*";

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
    /// Wakes every request waiting for `order_id`, here and in the instances shared with.
    pub fn wake(&self, order_id: Uuid) {
        self.wake_here(Some(order_id));
        self.tell_peers(order_id.to_string());
    }

    /// Wakes every waiting request, for changes that do not name their orders (a deleted
    /// user's orders, cancelled by the replica consumer). Each re-reads its order once.
    pub fn wake_all(&self) {
        self.wake_here(None);
        self.tell_peers(EVERY_ORDER.to_owned());
    }

    /// Wakes the requests held here for `order_id`, or all of them.
    fn wake_here(&self, order_id: Option<Uuid>) {
        let map = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match order_id {
            Some(order_id) => {
                if let Some(notify) = map.get(&order_id) {
                    notify.notify_waiters();
                }
            }
            None => map.values().for_each(|notify| notify.notify_waiters()),
        }
    }

    fn tell_peers(&self, what: String) {
        let Some(peers) = self.peers.get() else { return };
        let (bus, subject) = (peers.bus.clone(), peers.subject.clone());
        let payload = bytes::Bytes::from(format!("{} {what}", peers.instance));
        tokio::spawn(async move {
            if let Err(error) = bus.signal(subject, payload).await {
                tracing::debug!(%error, "other instances were not told of a wake-up");
            }
        });
    }

    /// Until `stop`: tells the other instances of the service on `bus` (under `prefix`) of every
    /// wake-up here, and wakes here the requests their wake-ups name. Call once per instance.
    pub async fn share(self, bus: Arc<dyn EventBus>, prefix: &str, stop: watch::Receiver<bool>) {
        let subject = signal_subject(prefix, "orders.woken");
        let instance = Uuid::now_v7().to_string();
        let peers =
            Peers { bus: bus.clone(), subject: subject.clone(), instance: instance.clone() };
        if self.peers.set(peers).is_err() {
            tracing::warn!("wake-ups are already shared with other instances");
            return;
        }
        mercato_bus::tail::follow(bus, vec![subject], "held requests", stop, |_, payload| {
            let text = std::str::from_utf8(&payload).unwrap_or_default();
            let Some((from, what)) = text.split_once(' ') else { return };
            if from == instance {
                return;
            }
            if what == EVERY_ORDER {
                self.wake_here(None);
            } else if let Ok(order_id) = what.parse() {
                self.wake_here(Some(order_id));
            }
        })
        .await;
    }

    fn register(&self, order_id: Uuid) -> Registration {
        let mut map = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let notify = map.entry(order_id).or_default().clone();
        Registration { order_id, notify, waiters: self.clone() }
    }

    /// Arms a wait for `order_id` before the write it waits on commits: every wake-up from now on
    /// is caught, so [`Armed::wait`] can start from the order as written without reading it.
    pub fn arm(&self, order_id: Uuid) -> Armed {
        let registration = self.register(order_id);
        let notified = armed_notified(&registration);
        Armed { notified, registration }
    }

    /// How many orders have waiters now (for tests and metrics).
    pub fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads with `read` until `done` holds or `deadline` passes, reading again only when woken
    /// for `order_id`. Returns the last value read. Armed before the first read, so a wake-up
    /// during it is not lost.
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
        let armed = self.arm(order_id);
        let first = read().await?;
        armed.wait(deadline, first, read, done).await
    }
}

/// A wait registered, and listening, since before a write committed; dropping it unregisters.
pub struct Armed {
    /// Holds a clone of the registration's `Notify`: declared first so that it is dropped
    /// first, and the registration, dropped last, sees only its own and the map's clones.
    notified: Pin<Box<OwnedNotified>>,
    registration: Registration,
}

impl std::fmt::Debug for Armed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Armed").field("order_id", &self.registration.order_id).finish()
    }
}

fn armed_notified(registration: &Registration) -> Pin<Box<OwnedNotified>> {
    let mut notified = Box::pin(registration.notify.clone().notified_owned());
    notified.as_mut().enable();
    notified
}

impl Armed {
    /// Like [`Waiters::wait_for`], starting from `written` (the value as committed after arming)
    /// instead of a first read: reads with `read` only when woken, and once more when `deadline`
    /// passes first.
    pub async fn wait<T, E, R, F>(
        mut self,
        deadline: Instant,
        written: T,
        mut read: R,
        done: impl Fn(&T) -> bool,
    ) -> Result<T, E>
    where
        R: FnMut() -> F,
        F: Future<Output = Result<T, E>>,
    {
        let mut value = written;
        loop {
            if done(&value) || Instant::now() >= deadline {
                return Ok(value);
            }
            tokio::select! {
                () = self.notified.as_mut() => {}
                () = tokio::time::sleep_until(deadline) => {}
            }
            // Listening again before reading, so a wake-up during the read is not lost.
            self.notified = armed_notified(&self.registration);
            value = read().await?;
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

    #[tokio::test]
    async fn an_armed_wait_starts_from_the_written_value_and_misses_no_earlier_wake_up() {
        let waiters = Waiters::default();
        let order = Uuid::now_v7();
        let reads = Arc::new(AtomicUsize::new(0));
        let state = Arc::new(AtomicUsize::new(0));
        let read = || {
            reads.fetch_add(1, Ordering::SeqCst);
            let value = state.load(Ordering::SeqCst);
            async move { Ok::<_, ()>(value) }
        };
        let deadline = Instant::now() + Duration::from_secs(30);

        // Done as written: answered without a single read.
        let armed = waiters.arm(order);
        assert_eq!(armed.wait(deadline, 2, read, |value| *value == 2).await, Ok(2));
        assert_eq!(reads.load(Ordering::SeqCst), 0);

        // Woken after arming but before waiting (the saga was quicker than the request): the
        // wait reads at once instead of sleeping until its deadline.
        let armed = waiters.arm(order);
        state.store(2, Ordering::SeqCst);
        waiters.wake(order);
        let waited = tokio::time::timeout(
            Duration::from_secs(5),
            armed.wait(deadline, 0, read, |value| *value == 2),
        )
        .await;
        assert_eq!(waited, Ok(Ok(2)), "the early wake-up was lost");
        assert_eq!(reads.load(Ordering::SeqCst), 1);
        assert!(waiters.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn an_armed_wait_reads_once_more_at_its_deadline() {
        let waiters = Waiters::default();
        let deadline = Instant::now() + Duration::from_secs(2);
        let armed = waiters.arm(Uuid::now_v7());
        let value = armed.wait(deadline, 1, || async { Ok::<_, ()>(7) }, |_| false).await;
        assert_eq!(value, Ok(7));
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
