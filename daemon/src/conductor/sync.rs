//! Power sync: periodic sweeps that read the BMC of every idle node (no
//! target, not in maintenance) and reconcile the record with what they
//! find, and a slower recovery sweep for the nodes the sync itself put in
//! maintenance.
//!
//! - A node read successfully has its failure count reset. When its state
//!   differs from the record, policy `record` stores the new state and logs
//!   a `power-sync` action; policy `enforce` drives the node back to the
//!   recorded state — unless the record is itself in doubt (an operation
//!   was interrupted or reset before the node was read again), in which
//!   case the sweep records what it read.
//! - A failed read adds one to the node's failure count, kept in the
//!   database so a restart does not reset it. At `sync.max_failures` the
//!   node goes to maintenance with `fault = "power failure"`.
//! - The recovery sweep reads only such nodes and lifts the maintenance of
//!   each whose BMC answers again. An operator's maintenance (no fault) is
//!   never set, replaced or lifted by a sweep.
//!
//! Every write is conditional on the node still being idle, so a sweep
//! that read a node just before an operator's command cannot overwrite
//! what the command does. Sweeps run on a plain interval timer rather than
//! a cron scheduler: their period is a duration, not a calendar rule.

use std::time::{Duration, Instant};

use baton_state::{
    Maintenance, NewAction, Node, NodeChange, NodeIdent, NodeUpdate, OpPhase, Operation,
    PowerState, PowerVerb, UpdateError,
};
use futures::StreamExt;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use super::reconcile::{Reconciler, Shared};
use super::stats::SweepReport;
use crate::config::{SyncConfig, SyncPolicy};

/// The fault the sync sets, and the only one it lifts.
pub const POWER_FAILURE: &str = "power failure";

/// Nodes loaded from the database at a time during a sweep.
const CHUNK: usize = 256;

/// What one node's sweep did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    Unchanged,
    Changed,
    Failed,
    Skipped,
}

/// Runs both sweeps until `stop`.
pub async fn run(reconciler: Reconciler, stop: CancellationToken) {
    let sync = sweep_every(reconciler.clone(), false, stop.clone());
    let recovery = sweep_every(reconciler, true, stop);
    tokio::join!(sync, recovery);
}

/// The period of the sync sweep, or (`faulted`) of the recovery sweep.
fn period(settings: &SyncConfig, faulted: bool) -> Duration {
    if faulted {
        settings.recovery_interval
    } else {
        settings.interval
    }
}

/// Sweeps every period until `stop`; a reload that changes the period
/// starts the count again from the change.
async fn sweep_every(reconciler: Reconciler, faulted: bool, stop: CancellationToken) {
    let mut settings = reconciler.shared().sync.subscribe();
    let mut every = period(&settings.borrow_and_update(), faulted);
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            changed = settings.changed() => {
                if changed.is_err() {
                    return;
                }
                let now = period(&settings.borrow_and_update(), faulted);
                if now != every {
                    every = now;
                    ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
                    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                }
                continue;
            }
            _ = ticks.tick() => {}
        }
        let report = tokio::select! {
            () = stop.cancelled() => return,
            report = sweep(&reconciler, faulted) => report,
        };
        tracing::debug!(
            kind = %report.kind,
            read = report.read,
            failed = report.failed,
            changed = report.changed,
            duration_ms = report.duration_ms,
            "power sync sweep finished"
        );
        reconciler.shared().stats.record_sweep(report);
    }
}

/// One sweep over the idle nodes, or (`faulted`) over the nodes the sync
/// put in maintenance. Nodes that failed last time are read first.
pub async fn sweep(reconciler: &Reconciler, faulted: bool) -> SweepReport {
    let shared = reconciler.shared();
    let started_at = OffsetDateTime::now_utc();
    let started = Instant::now();
    let mut report = SweepReport {
        kind: if faulted { "recovery" } else { "sync" }.into(),
        started_at: started_at
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        ..SweepReport::default()
    };
    let ids = match shared.store.sync_candidate_ids(faulted).await {
        Ok(ids) => ids,
        Err(error) => {
            tracing::warn!(%error, "power sync cannot list the nodes");
            return report;
        }
    };
    let workers = usize::try_from(shared.sync.borrow().workers).unwrap_or(1);
    let seen: Vec<Seen> = candidates(shared, &ids, faulted)
        .map(|node| sync_node(reconciler, node, faulted))
        .buffer_unordered(workers)
        .collect()
        .await;
    for s in seen {
        match s {
            Seen::Unchanged => report.read += 1,
            Seen::Changed => {
                report.read += 1;
                report.changed += 1;
            }
            Seen::Failed => report.failed += 1,
            Seen::Skipped => {}
        }
    }
    report.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    report
}

/// The sweep's nodes, loaded [`CHUNK`] at a time as the workers need them:
/// only the ids of the whole fleet are held, and each node is read from the
/// database shortly before its BMC is, so the sweep acts on a fresh record.
/// A chunk that cannot be loaded is skipped (logged); the next sweep reads
/// its nodes.
fn candidates<'a>(
    shared: &'a Shared,
    ids: &[i64],
    faulted: bool,
) -> impl futures::Stream<Item = Node> + 'a {
    let chunks: Vec<Vec<i64>> = ids.chunks(CHUNK).map(<[i64]>::to_vec).collect();
    futures::stream::iter(chunks)
        .then(move |chunk| async move {
            match shared.store.sync_candidates_among(chunk, faulted).await {
                Ok(nodes) => nodes,
                Err(error) => {
                    tracing::warn!(%error, "power sync cannot load some nodes; the next sweep reads them");
                    Vec::new()
                }
            }
        })
        .flat_map(futures::stream::iter)
}

async fn sync_node(reconciler: &Reconciler, node: Node, faulted: bool) -> Seen {
    let shared = reconciler.shared();
    if node.live_reservation(OffsetDateTime::now_utc()).is_some() {
        return Seen::Skipped;
    }
    match shared.read_power(&node).await {
        Ok(state) if state.is_transitional() => Seen::Unchanged,
        Ok(state) => {
            let state = if state.settled() == baton_drivers::PowerState::Off {
                PowerState::Off
            } else {
                PowerState::On
            };
            if faulted {
                recover(shared, &node, state).await
            } else {
                record_read(reconciler, &node, state).await
            }
        }
        Err(error) if faulted => {
            tracing::debug!(node = %node.uuid, %error, "faulted node still does not answer");
            Seen::Failed
        }
        Err(error) => record_failure(shared, &node, &error.to_string()).await,
    }
}

fn sync_action(node: &Node, message: String) -> NewAction {
    NewAction {
        request_id: format!("req-{}", uuid::Uuid::new_v4()),
        node_uuid: node.uuid,
        action: "power-sync".into(),
        user_id: None,
        user_name: None,
        message: Some(message),
        project_id: None,
        sub_job_id: None,
    }
}

/// Still idle, as the sweep saw it: no target, not in maintenance.
fn still_idle(node: &Node) -> bool {
    node.target_power_state.is_none() && !node.spec.maintenance
}

/// The read matches the record as the sweep listed it, and there is no
/// failure count or doubt to clear: the write would change nothing. (A node
/// changed since the listing is left to the next sweep, as a write
/// conditional on the listing's view would be.)
fn nothing_to_record(node: &Node, state: PowerState) -> bool {
    node.power_state == Some(state)
        && node.conductor.sync_failures == 0
        && !node.conductor.power_state_unsure
}

async fn record_read(reconciler: &Reconciler, node: &Node, state: PowerState) -> Seen {
    let shared = reconciler.shared();
    if nothing_to_record(node, state) {
        // The common case of a sweep: no write, so a sweep of an unchanged
        // fleet costs BMC reads only, not one transaction per node.
        return Seen::Unchanged;
    }
    let policy = shared.sync.borrow().policy;
    let lease = shared.lease(PowerVerb::On, None);
    let changed = shared
        .store
        .change_node(NodeIdent::Uuid(node.uuid), move |node| {
            if !still_idle(node) {
                return Err(());
            }
            let recorded = node.power_state;
            let mut update = NodeUpdate {
                sync_failures: (node.conductor.sync_failures > 0).then_some(0),
                power_state_unsure: node.conductor.power_state_unsure.then_some(false),
                ..NodeUpdate::default()
            };
            let Some(recorded_state) = recorded.filter(|r| *r != state) else {
                // Same state, or never read before: nothing happened out
                // of band.
                if recorded.is_none() {
                    update.power_state = Some(Some(state));
                }
                return Ok(NodeChange::from(update));
            };
            let enforce = policy == SyncPolicy::Enforce
                && recorded_state != PowerState::Error
                && !node.conductor.power_state_unsure
                && !node.locked;
            update.power_state = Some(Some(state));
            let mut action = sync_action(
                node,
                format!("power state changed out of band: {recorded_state} → {state}"),
            );
            if enforce {
                let verb = if recorded_state == PowerState::On {
                    PowerVerb::On
                } else {
                    PowerVerb::Off
                };
                action.message = Some(format!(
                    "power state changed out of band: {recorded_state} → {state}; driving it back to {recorded_state}"
                ));
                update.operation = Some(Some(Operation {
                    verb,
                    request_id: action.request_id.clone(),
                    boot_first: None,
                    timeout: None,
                    phase: OpPhase::Queued,
                    requested_at: OffsetDateTime::now_utc(),
                    sub_job: None,
                }));
                update.reservation = Some(Some(lease));
            }
            Ok(NodeChange {
                update,
                action: Some(action),
                ..NodeChange::default()
            })
        })
        .await;
    let out_of_band = node.power_state.is_some_and(|recorded| recorded != state);
    match changed {
        Ok(node) => {
            if node.conductor.operation.is_some() {
                reconciler.submit(node.uuid);
            }
            if out_of_band {
                Seen::Changed
            } else {
                Seen::Unchanged
            }
        }
        Err(UpdateError::Rejected(())) => Seen::Skipped,
        Err(UpdateError::Store(error)) => {
            tracing::warn!(node = %node.uuid, %error, "power sync cannot record a read");
            Seen::Skipped
        }
    }
}

async fn record_failure(shared: &Shared, node: &Node, error: &str) -> Seen {
    let max = shared.sync.borrow().max_failures;
    let error = error.to_owned();
    let written = shared
        .store
        .change_node(NodeIdent::Uuid(node.uuid), move |node| {
            if !still_idle(node) {
                return Err(());
            }
            let failures = node.conductor.sync_failures.saturating_add(1);
            let mut change = NodeChange::from(NodeUpdate {
                sync_failures: Some(failures),
                ..NodeUpdate::default()
            });
            if failures >= max {
                let reason = format!(
                    "power sync could not read the BMC {failures} times in a row; last: {error}"
                );
                change.update.maintenance = Some(Maintenance {
                    on: true,
                    reason: Some(reason.clone()),
                    fault: Some(POWER_FAILURE.into()),
                });
                change.action = Some(sync_action(node, reason));
            }
            Ok(change)
        })
        .await;
    if let Err(UpdateError::Store(error)) = written {
        tracing::warn!(node = %node.uuid, %error, "power sync cannot record a failed read");
    }
    Seen::Failed
}

async fn recover(shared: &Shared, node: &Node, state: PowerState) -> Seen {
    let written = shared
        .store
        .change_node(NodeIdent::Uuid(node.uuid), move |node| {
            let ours = node.spec.maintenance && node.fault.as_deref() == Some(POWER_FAILURE);
            if !ours {
                return Err(());
            }
            Ok(NodeChange {
                update: NodeUpdate {
                    maintenance: Some(Maintenance {
                        on: false,
                        reason: None,
                        fault: None,
                    }),
                    sync_failures: Some(0),
                    power_state: Some(Some(state)),
                    power_state_unsure: Some(false),
                    ..NodeUpdate::default()
                },
                action: Some(sync_action(
                    node,
                    format!("the BMC answers again ({state}); left maintenance"),
                )),
                ..NodeChange::default()
            })
        })
        .await;
    match written {
        Ok(_) => Seen::Changed,
        Err(_) => Seen::Skipped,
    }
}
