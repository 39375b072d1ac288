//! Counters the conductor keeps for `/metrics` and `GET /v1/conductor`:
//! BMC requests by protocol and result, operations by outcome, and the
//! last power-sync sweep.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use baton_drivers::DriverError;
use baton_state::Driver;
use serde::{Deserialize, Serialize};

/// One finished power-sync sweep.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SweepReport {
    /// `"sync"` (idle nodes) or `"recovery"` (nodes the sync faulted).
    pub kind: String,
    pub started_at: String,
    pub duration_ms: u64,
    /// Nodes read successfully.
    pub read: u64,
    /// Nodes whose read failed.
    pub failed: u64,
    /// Nodes whose state differed from the record.
    pub changed: u64,
}

#[derive(Debug, Default)]
pub struct Stats {
    requests: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    operations_ok: AtomicU64,
    operations_failed: AtomicU64,
    /// The last sweep of each kind, so an (often empty) recovery sweep
    /// does not hide the last sync sweep.
    last_sweeps: Mutex<BTreeMap<String, SweepReport>>,
}

impl Stats {
    pub fn count_request<T>(&self, driver: Driver, result: &Result<T, DriverError>) {
        let outcome = match result {
            Ok(_) => "ok",
            Err(e) => e.kind(),
        };
        *self
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry((driver.as_str(), outcome))
            .or_default() += 1;
    }

    pub fn count_operation(&self, ok: bool) {
        let counter = if ok {
            &self.operations_ok
        } else {
            &self.operations_failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// BMC requests so far: `((protocol, result), count)`.
    pub fn requests(&self) -> Vec<((&'static str, &'static str), u64)> {
        self.requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(k, v)| (*k, *v))
            .collect()
    }

    /// Finished operations: `(succeeded, failed)`.
    pub fn operations(&self) -> (u64, u64) {
        (
            self.operations_ok.load(Ordering::Relaxed),
            self.operations_failed.load(Ordering::Relaxed),
        )
    }

    pub fn record_sweep(&self, report: SweepReport) {
        self.last_sweeps
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(report.kind.clone(), report);
    }

    /// The last sweep of each kind (`recovery`, `sync`).
    pub fn last_sweeps(&self) -> Vec<SweepReport> {
        self.last_sweeps
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }
}
