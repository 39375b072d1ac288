//! The bounded pool of BMC requests and the courtesy owed to each BMC.
//!
//! The bound is on requests in flight (`conductor.workers`), not on nodes in
//! transition: a request takes a permit only while it is on the wire, so
//! a thousand nodes can be waiting for their power to settle while a
//! hundred requests run. Each BMC also has a gate: one request at a time,
//! and `min_command_interval` (per protocol) between the end of one request
//! and the start of the next. A request waits for its BMC's gate *before*
//! it takes a permit, so a busy BMC never holds a worker idle.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;

/// Limits on BMC requests: a global permit count and a gate per BMC.
#[derive(Debug)]
pub struct Pool {
    permits: Semaphore,
    max: usize,
    busy: AtomicUsize,
    waiting: AtomicUsize,
    gates: Mutex<HashMap<String, Arc<Gate>>>,
}

/// One BMC: held for the whole of a request; remembers when the last one
/// ended.
#[derive(Debug, Default)]
struct Gate {
    last_end: tokio::sync::Mutex<Option<Instant>>,
}

impl Pool {
    pub fn new(max: usize) -> Self {
        Self {
            permits: Semaphore::new(max),
            max,
            busy: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            gates: Mutex::new(HashMap::new()),
        }
    }

    pub fn max(&self) -> usize {
        self.max
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

    /// Runs one BMC request `request` against `bmc` under the rules above.
    pub async fn run<T>(&self, bmc: &str, gap: Duration, request: impl Future<Output = T>) -> T {
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let gate = self.gate(bmc);
        let mut last_end = gate.last_end.lock().await;
        if let Some(end) = *last_end {
            tokio::time::sleep_until(end + gap).await;
        }
        let permit = self.permits.acquire().await;
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        self.busy.fetch_add(1, Ordering::Relaxed);
        let result = request.await;
        self.busy.fetch_sub(1, Ordering::Relaxed);
        drop(permit);
        *last_end = Some(Instant::now());
        result
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
}
