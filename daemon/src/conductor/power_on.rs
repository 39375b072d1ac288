//! Staggered power-on: at most `power_on.max_per_domain` nodes of one
//! `power_domain` powering on at once, and `power_on.stagger` between two
//! power-on commands in a domain, so that starting a rack does not trip its
//! breaker. A node holds its domain slot from its power-on command until it
//! is seen on (or its operation ends); waiting for a slot holds no worker.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::config::PowerOnConfig;

/// The limits and each domain's state.
#[derive(Debug)]
pub struct PowerOnLimits {
    max_per_domain: Option<usize>,
    stagger: Duration,
    domains: Mutex<HashMap<String, Arc<Domain>>>,
}

#[derive(Debug)]
struct Domain {
    powering_on: Arc<Semaphore>,
    /// When the next power-on command in this domain may go out.
    next_start: tokio::sync::Mutex<Instant>,
}

/// A node's place among its domain's nodes powering on; released on drop.
#[derive(Debug, Default)]
pub struct DomainSlot {
    _permit: Option<OwnedSemaphorePermit>,
}

impl PowerOnLimits {
    pub fn new(config: &PowerOnConfig) -> Self {
        Self {
            max_per_domain: usize::try_from(config.max_per_domain)
                .ok()
                .filter(|n| *n > 0),
            stagger: config.stagger,
            domains: Mutex::new(HashMap::new()),
        }
    }

    fn is_unlimited(&self) -> bool {
        self.max_per_domain.is_none() && self.stagger.is_zero()
    }

    fn domain(&self, name: &str) -> Arc<Domain> {
        let mut domains = self.domains.lock().unwrap_or_else(PoisonError::into_inner);
        let max = self.max_per_domain.unwrap_or(Semaphore::MAX_PERMITS);
        Arc::clone(domains.entry(name.to_owned()).or_insert_with(|| {
            Arc::new(Domain {
                powering_on: Arc::new(Semaphore::new(max)),
                next_start: tokio::sync::Mutex::new(Instant::now()),
            })
        }))
    }

    /// Waits until a node of `domain` may be sent a power-on command, and
    /// returns its slot. Nodes without a domain go at once.
    pub async fn admit(&self, domain: Option<&str>) -> DomainSlot {
        let Some(name) = domain.filter(|_| !self.is_unlimited()) else {
            return DomainSlot::default();
        };
        let domain = self.domain(name);
        let permit = match self.max_per_domain {
            Some(_) => Arc::clone(&domain.powering_on).acquire_owned().await.ok(),
            None => None,
        };
        if !self.stagger.is_zero() {
            // The lock queues the domain's nodes in order; each takes the
            // next start time and pushes it on by the stagger.
            let mut next = domain.next_start.lock().await;
            tokio::time::sleep_until(*next).await;
            *next = Instant::now() + self.stagger;
        }
        DomainSlot { _permit: permit }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Never more than `max_per_domain` slots of one domain held at once,
    /// starts in a domain at least `stagger` apart, domains independent.
    #[tokio::test(start_paused = true)]
    async fn limits_each_domain_on_its_own() {
        let limits = Arc::new(PowerOnLimits::new(&PowerOnConfig {
            max_per_domain: 2,
            stagger: Duration::from_millis(100),
        }));
        let held: Arc<[AtomicUsize; 2]> = Arc::new(Default::default());
        let peak: Arc<[AtomicUsize; 2]> = Arc::new(Default::default());
        let starts = Arc::new(Mutex::new(vec![Vec::new(), Vec::new()]));
        let mut tasks = Vec::new();
        for i in 0..12 {
            let (limits, held, peak, starts) = (
                Arc::clone(&limits),
                Arc::clone(&held),
                Arc::clone(&peak),
                Arc::clone(&starts),
            );
            tasks.push(tokio::spawn(async move {
                let d = i % 2;
                let slot = limits.admit(Some(&format!("rack-{d}"))).await;
                starts.lock().unwrap()[d].push(Instant::now());
                let now = held[d].fetch_add(1, Ordering::SeqCst) + 1;
                peak[d].fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(500)).await;
                held[d].fetch_sub(1, Ordering::SeqCst);
                drop(slot);
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        for d in 0..2 {
            assert_eq!(peak[d].load(Ordering::SeqCst), 2);
            let mut s = starts.lock().unwrap()[d].clone();
            s.sort();
            assert_eq!(s.len(), 6);
            for pair in s.windows(2) {
                assert!(pair[1] - pair[0] >= Duration::from_millis(100));
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn no_domain_or_no_limits_means_no_wait() {
        let limits = PowerOnLimits::new(&PowerOnConfig {
            max_per_domain: 1,
            stagger: Duration::ZERO,
        });
        let _a = limits.admit(None).await;
        let _b = limits.admit(None).await;
        let open = PowerOnLimits::new(&PowerOnConfig::default());
        let _c = open.admit(Some("r1")).await;
        let _d = open.admit(Some("r1")).await;
    }
}
