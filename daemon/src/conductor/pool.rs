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
    gates: Mutex<Gates>,
}

/// One BMC: held for the whole of a request; remembers when the last one
/// ended.
type Gate = tokio::sync::Mutex<Option<Instant>>;

/// A BMC's gate and a permit, held while a request runs.
struct Slot {
    last_end: tokio::sync::OwnedMutexGuard<Option<Instant>>,
    gap: Duration,
    _permit: Permit,
}

/// How often gates with a gap are looked over for ones to drop.
const PRUNE_EVERY: Duration = Duration::from_secs(10);

/// The gates, and what pruning them needs to know.
#[derive(Debug, Default)]
struct Gates {
    by_bmc: HashMap<String, Arc<Gate>>,
    /// The longest gap any request asked for: a gate idle for longer
    /// remembers nothing that matters.
    longest_gap: Duration,
    last_prune: Option<Instant>,
}

impl Pool {
    pub fn new(max: usize) -> Self {
        Self {
            permits: Arc::new(Permits::new(max)),
            max: AtomicUsize::new(max),
            busy: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            gates: Mutex::new(Gates::default()),
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

    fn gates(&self) -> std::sync::MutexGuard<'_, Gates> {
        self.gates.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn gate(&self, bmc: &str, gap: Duration) -> Arc<Gate> {
        let mut gates = self.gates();
        gates.longest_gap = gates.longest_gap.max(gap);
        if gates
            .last_prune
            .is_none_or(|at| at.elapsed() >= PRUNE_EVERY)
        {
            gates.last_prune = Some(Instant::now());
            let longest_gap = gates.longest_gap;
            Self::prune_gates(&mut gates.by_bmc, longest_gap);
        }
        Arc::clone(gates.by_bmc.entry(bmc.to_owned()).or_default())
    }

    /// BMCs with a gate now (for tests).
    #[cfg(test)]
    fn gate_count(&self) -> usize {
        self.gates().by_bmc.len()
    }

    /// Runs one BMC request `request` against `bmc` under the rules above,
    /// in the interactive lane.
    pub async fn run<T>(&self, bmc: &str, gap: Duration, request: impl Future<Output = T>) -> T {
        let slot = self.enter(bmc, gap, Lane::Interactive).await;
        self.send(bmc, slot, request).await
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
        Some(self.send(bmc, slot, request).await)
    }

    /// Waits for the BMC's gate, its gap, then a permit.
    async fn enter(&self, bmc: &str, gap: Duration, lane: Lane) -> Slot {
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let last_end = self.gate(bmc, gap).lock_owned().await;
        if let Some(end) = *last_end {
            tokio::time::sleep_until(end + gap).await;
        }
        let permit = Permits::acquire(&self.permits, lane).await;
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        Slot {
            last_end,
            gap,
            _permit: permit,
        }
    }

    async fn send<T>(&self, bmc: &str, mut slot: Slot, request: impl Future<Output = T>) -> T {
        self.busy.fetch_add(1, Ordering::Relaxed);
        let result = request.await;
        self.busy.fetch_sub(1, Ordering::Relaxed);
        *slot.last_end = Some(Instant::now());
        if slot.gap.is_zero() {
            self.drop_idle_gate(bmc, &slot);
        }
        result
    }

    /// Forgets the gate of a BMC that owes no gap once its request is done
    /// and nobody else waits for it: a sweep of 10 000 BMCs would otherwise
    /// leave 10 000 gates behind. (A gate with a gap is kept: it remembers
    /// when the next request may go; [`Pool::prune_gates`] drops it later.)
    fn drop_idle_gate(&self, bmc: &str, slot: &Slot) {
        let mut gates = self.gates();
        // Ours and the map's: a waiter cloned it under this same lock.
        let only_ours = Arc::strong_count(tokio::sync::OwnedMutexGuard::mutex(&slot.last_end)) == 2;
        if only_ours {
            gates.by_bmc.remove(bmc);
        }
    }

    /// Drops every gate nobody holds or waits for whose gap has passed;
    /// run at most every [`PRUNE_EVERY`], from [`Pool::gate`].
    fn prune_gates(gates: &mut HashMap<String, Arc<Gate>>, longest_gap: Duration) {
        gates.retain(|_, gate| {
            if Arc::strong_count(gate) > 1 {
                return true;
            }
            match gate.try_lock() {
                Ok(last_end) => last_end.is_some_and(|end| end.elapsed() < longest_gap),
                Err(_) => true,
            }
        });
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

    /// Gates of BMCs that owe no gap go as their last request ends, even
    /// with others queued behind it on the same BMC, which still go one at
    /// a time; gates with a gap stay until they are pruned.
    #[tokio::test(start_paused = true)]
    async fn idle_gates_are_dropped_without_losing_the_one_at_a_time_rule() {
        let pool = Arc::new(Pool::new(10));
        let running: Arc<[AtomicUsize; 3]> = Arc::default();
        // Arriving one every 3 ms, so some find their BMC's gate held and
        // others find it gone.
        let tasks: Vec<_> = (0..30)
            .map(|i| {
                let (pool, running) = (Arc::clone(&pool), Arc::clone(&running));
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(3 * i as u64)).await;
                    let bmc = i % 3;
                    pool.run(&format!("bmc-{bmc}"), Duration::ZERO, async {
                        let before = running[bmc].fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        running[bmc].fetch_sub(1, Ordering::SeqCst);
                        before
                    })
                    .await
                })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap(), 0, "two requests at once on one BMC");
        }
        assert_eq!(pool.gate_count(), 0);

        let gap = Duration::from_millis(100);
        for i in 0..5 {
            pool.run(&format!("ipmi-{i}"), gap, async {}).await;
        }
        assert_eq!(pool.gate_count(), 5, "a gate with a gap remembers it");
        tokio::time::sleep(PRUNE_EVERY + gap).await;
        pool.run("ipmi-new", gap, async {}).await;
        assert_eq!(pool.gate_count(), 1, "the idle ones were pruned");
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
