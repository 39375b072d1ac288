//! The bounded pool of BMC requests and the courtesy owed to each BMC.
//!
//! The bound is on requests in flight (`conductor.workers`), not on nodes in
//! transition: a request takes a permit only while it is on the wire, so
//! a thousand nodes can be waiting for their power to settle while a
//! hundred requests run. Each BMC also has a gate: one request at a time,
//! and `min_command_interval` (per protocol) between the end of one request
//! and the start of the next. A request waits for its BMC's gate *before*
//! it takes a permit, so a busy BMC never holds a worker idle.
//!
//! Permits go to requests in two lanes: a free permit goes to a waiting
//! interactive request (one node's action) before any bulk one (a batch's
//! sub-jobs, the power sync), so a single request issued during a
//! thousand-node batch starts within a few request times instead of
//! queueing behind the batch.
//!
//! The bound can change while requests run ([`Pool::resize`], on reload):
//! growing hands out the new permits at once; shrinking takes free permits
//! away at once and the rest as the requests holding them finish.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

/// Which queue a request waits in for a permit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// One node's action, asked for by a person or a scheduler.
    Interactive,
    /// One of many: a batch's sub-jobs, the power sync's reads.
    Bulk,
}

/// Limits on BMC requests: a global permit count and a gate per BMC.
#[derive(Debug)]
pub struct Pool {
    permits: Arc<Permits>,
    max: AtomicUsize,
    busy: AtomicUsize,
    waiting: AtomicUsize,
    gates: Mutex<HashMap<String, Arc<Gate>>>,
}

/// One BMC: held for the whole of a request; remembers when the last one
/// ended.
type Gate = tokio::sync::Mutex<Option<Instant>>;

/// A BMC's gate and a permit, held while a request runs.
struct Slot {
    last_end: tokio::sync::OwnedMutexGuard<Option<Instant>>,
    _permit: Permit,
}

impl Pool {
    pub fn new(max: usize) -> Self {
        Self {
            permits: Arc::new(Permits::new(max)),
            max: AtomicUsize::new(max),
            busy: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            gates: Mutex::new(HashMap::new()),
        }
    }

    pub fn max(&self) -> usize {
        self.max.load(Ordering::Relaxed)
    }

    /// Changes the most requests in flight (at least 1). Requests already
    /// running finish; new ones wait until fewer than `max` run.
    pub fn resize(&self, max: usize) {
        let max = max.max(1);
        let old = self.max.swap(max, Ordering::SeqCst);
        if max > old {
            let grow = {
                let mut state = self.permits.lock();
                // Permits still owed from an earlier shrink are cancelled first.
                let cancelled = state.owed.min(max - old);
                state.owed -= cancelled;
                max - old - cancelled
            };
            for _ in 0..grow {
                Permits::release(&self.permits);
            }
        } else {
            let mut state = self.permits.lock();
            let shrink = old - max;
            let taken = state.free.min(shrink);
            state.free -= taken;
            state.owed += shrink - taken;
        }
    }

    /// Requests on the wire now.
    pub fn busy(&self) -> usize {
        self.busy.load(Ordering::Relaxed)
    }

    /// Requests waiting for their BMC's gate or a permit.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    fn gate(&self, bmc: &str) -> Arc<Gate> {
        let mut gates = self.gates.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(gates.entry(bmc.to_owned()).or_default())
    }

    /// Runs one BMC request `request` against `bmc` under the rules above,
    /// in the interactive lane.
    pub async fn run<T>(&self, bmc: &str, gap: Duration, request: impl Future<Output = T>) -> T {
        let slot = self.enter(bmc, gap, Lane::Interactive).await;
        self.send(slot, request).await
    }

    /// Runs `request` in `lane` once its BMC's gate and a permit are free —
    /// if `admit`, asked at that moment, still says so (a batch sub-job
    /// cancelled while it waited never sends its command). `None` when
    /// refused; nothing was sent then.
    pub async fn run_admitted<T>(
        &self,
        bmc: &str,
        gap: Duration,
        lane: Lane,
        admit: impl FnOnce() -> bool,
        request: impl Future<Output = T>,
    ) -> Option<T> {
        let slot = self.enter(bmc, gap, lane).await;
        if !admit() {
            return None;
        }
        Some(self.send(slot, request).await)
    }

    /// Waits for the BMC's gate, its gap, then a permit.
    async fn enter(&self, bmc: &str, gap: Duration, lane: Lane) -> Slot {
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let last_end = self.gate(bmc).lock_owned().await;
        if let Some(end) = *last_end {
            tokio::time::sleep_until(end + gap).await;
        }
        let permit = Permits::acquire(&self.permits, lane).await;
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        Slot {
            last_end,
            _permit: permit,
        }
    }

    async fn send<T>(&self, mut slot: Slot, request: impl Future<Output = T>) -> T {
        self.busy.fetch_add(1, Ordering::Relaxed);
        let result = request.await;
        self.busy.fetch_sub(1, Ordering::Relaxed);
        *slot.last_end = Some(Instant::now());
        result
    }
}

/// A counting semaphore with two FIFO queues, the interactive one served
/// first.
#[derive(Debug)]
struct Permits {
    state: Mutex<PermitState>,
}

#[derive(Debug)]
struct PermitState {
    free: usize,
    /// Permits to take away as they come back, after a shrink.
    owed: usize,
    interactive: VecDeque<oneshot::Sender<Permit>>,
    bulk: VecDeque<oneshot::Sender<Permit>>,
}

/// One permit; handed back (to the next waiter) when dropped.
#[derive(Debug)]
struct Permit {
    permits: Arc<Permits>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        Permits::release(&self.permits);
    }
}

impl Permits {
    fn new(max: usize) -> Self {
        Self {
            state: Mutex::new(PermitState {
                free: max,
                owed: 0,
                interactive: VecDeque::new(),
                bulk: VecDeque::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PermitState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn acquire(this: &Arc<Self>, lane: Lane) -> Permit {
        let waiting = {
            let mut state = this.lock();
            let ahead =
                !state.interactive.is_empty() || (lane == Lane::Bulk && !state.bulk.is_empty());
            if state.free > 0 && !ahead {
                state.free -= 1;
                None
            } else {
                let (tx, rx) = oneshot::channel();
                match lane {
                    Lane::Interactive => state.interactive.push_back(tx),
                    Lane::Bulk => state.bulk.push_back(tx),
                }
                Some(rx)
            }
        };
        match waiting {
            None => Permit {
                permits: Arc::clone(this),
            },
            // The sender is only dropped after sending (`release`); should
            // that ever change, fall back to a fresh permit-less wait.
            Some(rx) => match rx.await {
                Ok(permit) => permit,
                Err(_) => Box::pin(Self::acquire(this, lane)).await,
            },
        }
    }

    /// Hands a returned permit to the first live waiter, interactive first;
    /// a waiter that gave up drops the permit it is sent, which comes back
    /// here for the next one.
    fn release(this: &Arc<Self>) {
        let mut state = this.lock();
        if state.owed > 0 {
            state.owed -= 1;
            return;
        }
        loop {
            let next = match state.interactive.pop_front() {
                Some(tx) => Some(tx),
                None => state.bulk.pop_front(),
            };
            let Some(tx) = next else {
                state.free += 1;
                return;
            };
            if tx.is_closed() {
                continue;
            }
            drop(state);
            let permit = Permit {
                permits: Arc::clone(this),
            };
            // A receiver dropped between the check and the send drops the
            // permit, whose Drop releases it again.
            let _ = tx.send(permit);
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Requests running now on one BMC, and the (start, end) of each.
    type BmcLog = (usize, Vec<(Instant, Instant)>);

    /// Never more than `max` requests at once overall, never two at once on
    /// one BMC, and the gap between two requests to one BMC is kept.
    #[tokio::test(start_paused = true)]
    async fn bounds_requests_and_serialises_each_bmc() {
        let pool = Arc::new(Pool::new(3));
        let now = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let per_bmc: Arc<Mutex<HashMap<String, BmcLog>>> = Arc::default();
        let mut tasks = Vec::new();
        for i in 0..40 {
            let (pool, now, peak, per_bmc) = (
                Arc::clone(&pool),
                Arc::clone(&now),
                Arc::clone(&peak),
                Arc::clone(&per_bmc),
            );
            tasks.push(tokio::spawn(async move {
                let bmc = format!("bmc-{}", i % 5);
                pool.run(&bmc, Duration::from_millis(50), async {
                    let start = Instant::now();
                    let running = now.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(running, Ordering::SeqCst);
                    {
                        let mut map = per_bmc.lock().unwrap();
                        let entry = map.entry(bmc.clone()).or_default();
                        entry.0 += 1;
                        assert_eq!(entry.0, 1, "two requests at once on {bmc}");
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    let mut map = per_bmc.lock().unwrap();
                    let entry = map.get_mut(&bmc).unwrap();
                    entry.0 -= 1;
                    entry.1.push((start, Instant::now()));
                    now.fetch_sub(1, Ordering::SeqCst);
                })
                .await;
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(peak.load(Ordering::SeqCst), 3);
        for (_, spans) in per_bmc.lock().unwrap().values_mut() {
            spans.sort();
            for pair in spans.windows(2) {
                assert!(pair[1].0 >= pair[0].1 + Duration::from_millis(50));
            }
        }
        assert_eq!((pool.busy(), pool.waiting()), (0, 0));
    }

    /// Runs `n` requests on distinct BMCs at once and returns how many
    /// were running at the peak.
    async fn peak_of(pool: &Arc<Pool>, n: usize) -> usize {
        let peak = Arc::new(AtomicUsize::new(0));
        let now = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..n)
            .map(|i| {
                let (pool, now, peak) = (Arc::clone(pool), Arc::clone(&now), Arc::clone(&peak));
                tokio::spawn(async move {
                    pool.run(&format!("bmc-{i}"), Duration::ZERO, async {
                        peak.fetch_max(now.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        now.fetch_sub(1, Ordering::SeqCst);
                    })
                    .await;
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        peak.load(Ordering::SeqCst)
    }

    #[tokio::test(start_paused = true)]
    async fn resize_grows_and_shrinks_the_bound() {
        let pool = Arc::new(Pool::new(2));
        assert_eq!(peak_of(&pool, 10).await, 2);
        pool.resize(5);
        assert_eq!((pool.max(), peak_of(&pool, 10).await), (5, 5));
        pool.resize(3);
        assert_eq!((pool.max(), peak_of(&pool, 10).await), (3, 3));
        // Shrinking while permits are out takes them back as they return.
        let busy = tokio::spawn({
            let pool = Arc::clone(&pool);
            async move { peak_of(&pool, 3).await }
        });
        for _ in 0..5 {
            tokio::task::yield_now().await;
        }
        pool.resize(1);
        busy.await.unwrap();
        assert_eq!(peak_of(&pool, 10).await, 1);
        pool.resize(4);
        assert_eq!(peak_of(&pool, 10).await, 4);
    }
}
