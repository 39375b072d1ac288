//! The conductor's own health: uptime, host, process RSS and CPU (sysinfo),
//! database size, node counts and what the conductor is doing (its pool,
//! operations, BMC requests, last sweeps) — what `GET /v1/conductor`
//! reports, and `/metrics` in part.

use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use baton_state::{PowerState, PowerStateCounts, Store, SCHEMA_VERSION};
use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

use crate::api::types::{
    power_state_key, BmcRequestCount, ConductorStatus, DatabaseStatus, NodeCounts, OperationStatus,
    ProcessStatus, SweepReport, WorkerStatus,
};

/// What the conductor is doing now, and has done since start-up.
#[derive(Debug, Clone)]
pub struct Activity {
    pub workers: WorkerStatus,
    pub operations: OperationStatus,
    pub bmc_requests: Vec<BmcRequestCount>,
    pub last_sweeps: Vec<SweepReport>,
}

/// Keeps the sysinfo view between calls, so CPU usage is measured over the
/// interval since the previous report.
#[derive(Debug)]
pub struct Health {
    started: Instant,
    started_at: String,
    hostname: String,
    pid: Pid,
    system: Mutex<System>,
}

impl Health {
    pub fn new() -> Self {
        let pid = Pid::from_u32(std::process::id());
        let mut system = System::new();
        refresh(&mut system, pid);
        Self {
            started: Instant::now(),
            started_at: time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            hostname: hostname::get()
                .map_or_else(|_| "unknown".into(), |h| h.to_string_lossy().into_owned()),
            pid,
            system: Mutex::new(system),
        }
    }

    pub fn hostname(&self) -> &str {
        &self.hostname
    }

    pub fn report(
        &self,
        store: &Store,
        counts: &PowerStateCounts,
        activity: Activity,
    ) -> ConductorStatus {
        ConductorStatus {
            version: env!("CARGO_PKG_VERSION").into(),
            hostname: self.hostname.clone(),
            started_at: self.started_at.clone(),
            uptime_seconds: self.started.elapsed().as_secs(),
            workers: activity.workers,
            operations: activity.operations,
            bmc_requests: activity.bmc_requests,
            last_sweeps: activity.last_sweeps,
            nodes: node_counts(counts),
            process: self.process(),
            database: DatabaseStatus {
                path: store.path().display().to_string(),
                size_bytes: store.size_on_disk(),
                schema_version: SCHEMA_VERSION,
                writes_refused: store.writes_refused().map(|r| r.to_string()),
            },
        }
    }

    fn process(&self) -> ProcessStatus {
        let mut system = self.system.lock().unwrap_or_else(PoisonError::into_inner);
        refresh(&mut system, self.pid);
        let process = system.process(self.pid);
        ProcessStatus {
            pid: self.pid.as_u32(),
            rss_bytes: process.map_or(0, sysinfo::Process::memory),
            cpu_percent: process.map_or(0.0, sysinfo::Process::cpu_usage),
            cpu_seconds: process.map_or(0.0, |p| p.accumulated_cpu_time() as f64 / 1000.0),
        }
    }
}

impl Default for Health {
    fn default() -> Self {
        Self::new()
    }
}

fn refresh(system: &mut System, pid: Pid) {
    system.refresh_processes_specifics(
        ProcessesToUpdate::Some(&[pid]),
        true,
        ProcessRefreshKind::nothing().with_memory().with_cpu(),
    );
}

/// Every state appears, with 0 where no node is in it, so dashboards see a
/// stable set of keys.
pub fn node_counts(counts: &PowerStateCounts) -> NodeCounts {
    let by_power_state: std::collections::BTreeMap<String, u64> = PowerState::ALL
        .into_iter()
        .map(Some)
        .chain([None])
        .map(|s| (power_state_key(s).to_owned(), counts.get(s)))
        .collect();
    NodeCounts {
        total: counts.total(),
        by_power_state,
    }
}
