//! The fault matrix end to end: a rack of hw-sim nodes, half Redfish and
//! half IPMI, with seeded fractions of faults (see
//! [`baton_tests::faultmatrix`]), takes a soft stop, a start and a soft
//! reboot as batches through batond's socket. Exactly the nodes whose
//! faults make success impossible fail, each with the right error code and
//! a reason naming the cause; the rest succeed (busy spells and packet loss
//! are overcome by retries). Every BMC saw one request at a time, and every
//! power command came at least `min_command_interval` after the conductor's
//! previous request to that BMC. Then the power sync puts exactly the
//! persistently unreadable nodes in maintenance with fault "power
//! failure", and the recovery sweep lifts it once their faults are cleared
//! through hw-sim's control API.
//!
//! Sized for CI: 120 nodes, millisecond transitions, timeouts of a second
//! or two (the slowest sub-jobs are the unanswering BMCs' retries).
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::time::Duration;

use baton_hwsim::{Faults, PowerAction, RequestSpan};
use baton_tests::daemon::wait_until;
use baton_tests::faultmatrix::{judge, Injected, Matrix, Phase, Protocol};
use baton_tests::fleet::Fleet;
use batond::config::Config;
use serde_json::Value;

const NODES: usize = 120;
const SEED: u64 = 12;
const REDFISH_INTERVAL: Duration = Duration::from_millis(20);
const IPMI_INTERVAL: Duration = Duration::from_millis(50);
const PATIENCE: Duration = Duration::from_secs(60);

/// Short timeouts: an unanswering BMC costs (1 + max_retries) ×
/// bmc_timeout plus the pauses between (1 s, 2 s, 4 s). Three retries,
/// because a call that opens an IPMI session over a link losing 30 % of
/// its datagrams each way fails now and then (its ~7 exchanges need ~14
/// of its ~20 tries).
fn conductor(config: &mut Config) {
    config.conductor.bmc_timeout = Duration::from_secs(2);
    config.conductor.max_retries = 3;
    config.conductor.power_state_change_timeout = Duration::from_secs(2);
    config.conductor.soft_power_off_timeout = Duration::from_secs(1);
    config.conductor.min_command_interval.redfish = REDFISH_INTERVAL;
    config.conductor.min_command_interval.ipmi = IPMI_INTERVAL;
}

fn sweeping(config: &mut Config) {
    conductor(config);
    config.sync.interval = Duration::from_secs(1);
    config.sync.recovery_interval = Duration::from_secs(1);
    // Three: a packet-loss node's first read after the restart opens a
    // session, which may fail twice in a row.
    config.sync.max_failures = 3;
    config.sync.workers = 32;
}

fn set_faults(fleet: &Fleet, index: usize, faults: Faults) {
    fleet.rack.nodes()[index].set_faults(faults).unwrap();
}

/// Gives every node its fault of the matrix.
fn inject(fleet: &Fleet, matrix: &Matrix) {
    for (index, fault) in matrix.faulty() {
        set_faults(fleet, index, fault.faults());
    }
}

/// A busy spell per busy node: busy again now, served again once it has
/// refused a request.
fn busy_spells(fleet: &Fleet, matrix: &Matrix) -> tokio::task::JoinHandle<()> {
    let busy: Vec<_> = matrix
        .nodes_with(Injected::Busy)
        .into_iter()
        .map(|i| {
            let node = fleet.rack.nodes()[i].clone();
            node.set_faults(Injected::Busy.faults()).unwrap();
            (node.counters().requests, node)
        })
        .collect();
    tokio::spawn(async move {
        let mut waiting = busy;
        while !waiting.is_empty() {
            waiting.retain(|(before, node)| {
                let refused = node.counters().requests > *before;
                if refused {
                    node.set_faults(Faults::default()).unwrap();
                }
                !refused
            });
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
}

/// The commands IPMI sends after a read on the same session, in the same
/// call (to learn that the session still answers before a command that
/// must not run twice).
fn ipmi_checks_first(action: PowerAction) -> bool {
    matches!(
        action,
        PowerAction::GracefulShutdown
            | PowerAction::ForceRestart
            | PowerAction::PowerCycle
            | PowerAction::Nmi
    )
}

/// Where the pacing of `spans` breaks: a power command's driver call began
/// sooner than `interval` after the previous call's last request ended. A
/// call is one request, except that IPMI reads before a command that must
/// not run twice and Redfish reads the system to learn its reset action
/// before its first command.
fn pacing_breaks(spans: &[RequestSpan], protocol: Protocol, interval: Duration) -> Vec<String> {
    let mut breaks = Vec::new();
    let mut first_command = true;
    for (k, span) in spans.iter().enumerate() {
        let Some(action) = span.command else {
            continue;
        };
        let read_first = match protocol {
            Protocol::Ipmi => ipmi_checks_first(action),
            Protocol::Redfish => first_command,
        };
        first_command = false;
        let call_start = if read_first {
            k.checked_sub(1)
        } else {
            Some(k)
        };
        let Some(previous) = call_start.and_then(|s| s.checked_sub(1)) else {
            continue;
        };
        let call = spans[call_start.unwrap_or(k)].arrived;
        let gap = call.saturating_duration_since(spans[previous].ended);
        if gap < interval {
            breaks.push(format!("{action:?} {gap:?} after the previous request"));
        }
    }
    breaks
}

async fn run_phase(
    fleet: &Fleet,
    matrix: &Matrix,
    names: &[String],
    index: &HashMap<String, usize>,
    phase: Phase,
) {
    let spells = busy_spells(fleet, matrix);
    let job_id = fleet.batch(&phase.body(names)).await;
    let started = tokio::time::Instant::now();
    let job = loop {
        let job = fleet.job(&job_id).await;
        if matches!(job.status.as_str(), "SUCCESS" | "FAIL") {
            break job;
        }
        if started.elapsed() > PATIENCE {
            let running: Vec<String> = job
                .entities
                .sub_jobs
                .iter()
                .flatten()
                .filter(|s| !matches!(s.status.as_str(), "SUCCESS" | "FAIL"))
                .map(|s| {
                    let name = s.entities.server_name.clone().unwrap_or_default();
                    format!("{name} ({:?})", matrix.fault(index[&name]))
                })
                .collect();
            panic!(
                "{}: unfinished after {PATIENCE:?}: {running:?}",
                phase.name()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // A node the batch sent nothing (IPMI asked for a soft reboot) is
    // still in its spell: it ends with the batch.
    spells.abort();
    for i in matrix.nodes_with(Injected::Busy) {
        set_faults(fleet, i, Faults::default());
    }
    let verdict = judge(&job, matrix, phase, index);
    eprintln!("{}: {}", phase.name(), verdict.line());
    assert!(
        verdict.mismatches.is_empty(),
        "{}: {} sub-jobs differ from the matrix:\n{}",
        phase.name(),
        verdict.mismatches.len(),
        verdict.mismatches.join("\n")
    );
    assert_eq!(job.status, "FAIL", "some sub-jobs must fail");
    assert_eq!(job.error_code.as_deref(), Some("BATON.0001"));
}

/// The newest sync sweep's start, from `GET /v1/conductor`.
async fn last_sync_sweep(fleet: &Fleet) -> Option<String> {
    let r = fleet.call(http::Method::GET, "/v1/conductor", None).await;
    let doc: Value = serde_json::from_slice(&r.body).unwrap();
    doc["last_sweeps"]
        .as_array()?
        .iter()
        .find(|s| s["kind"] == "sync")
        .and_then(|s| s["started_at"].as_str().map(str::to_owned))
}

/// Waits until `count` sync sweeps started after the one seen now.
async fn sweeps_pass(fleet: &Fleet, count: usize) {
    let mut seen = last_sync_sweep(fleet).await;
    for _ in 0..count {
        seen = wait_until("a sync sweep", PATIENCE, || {
            let before = seen.clone();
            async move {
                let now = last_sync_sweep(fleet).await;
                (now.is_some() && now != before).then_some(now)
            }
        })
        .await;
    }
}

async fn in_maintenance(fleet: &Fleet, names: &[String]) -> Vec<String> {
    let mut faulted = Vec::new();
    for name in names {
        let states = fleet.states(name).await;
        if states.maintenance {
            assert_eq!(states.fault.as_deref(), Some("power failure"), "{name}");
            faulted.push(name.clone());
        }
    }
    faulted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fault_matrix_fails_exactly_the_nodes_that_cannot_succeed() {
    let mut fleet = Fleet::start(NODES, conductor).await;
    let matrix = Matrix::new(NODES, SEED);
    eprintln!("faults: {}", matrix.summary());
    let names: Vec<String> = (0..NODES).map(|i| fleet.name(i)).collect();
    let index: HashMap<String, usize> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.clone(), i))
        .collect();
    inject(&fleet, &matrix);
    fleet.rack.state().reset_stats();

    for phase in Phase::ALL {
        run_phase(&fleet, &matrix, &names, &index, phase).await;
    }

    // One request at a time per BMC, and the conductor's pause before each
    // command's call. Packet-loss nodes are left out of the pacing check:
    // their driver re-opens a session that stopped answering inside a
    // call, and the handshake runs back to back.
    assert!(
        fleet.rack.stats().max_concurrent_per_bmc <= 1,
        "{:?}",
        fleet.rack.stats()
    );
    let mut commands = 0;
    for (i, name) in names.iter().enumerate() {
        if matrix.fault(i) == Some(Injected::PacketLoss) {
            continue;
        }
        let protocol = Protocol::of(i);
        let interval = match protocol {
            Protocol::Redfish => REDFISH_INTERVAL,
            Protocol::Ipmi => IPMI_INTERVAL,
        };
        let spans = fleet.rack.nodes()[i].request_log();
        commands += spans.iter().filter(|s| s.command.is_some()).count();
        let breaks = pacing_breaks(&spans, protocol, interval);
        assert!(breaks.is_empty(), "{name} ({protocol:?}): {breaks:?}");
    }
    assert!(commands >= NODES, "{commands} power commands checked");

    // The sync: persistently unreadable nodes go to maintenance, no other.
    fleet.daemon.restart_with(sweeping).await;
    let unreadable: Vec<String> = matrix
        .faulty()
        .filter(|(_, f)| f.unreadable())
        .map(|(i, _)| names[i].clone())
        .collect();
    wait_until("the unreadable nodes in maintenance", PATIENCE, || async {
        (in_maintenance(&fleet, &names).await.len() >= unreadable.len()).then_some(())
    })
    .await;
    sweeps_pass(&fleet, 3).await;
    let mut faulted = in_maintenance(&fleet, &names).await;
    faulted.sort();
    let mut want = unreadable.clone();
    want.sort();
    let extra: Vec<_> = faulted
        .iter()
        .filter(|n| !want.contains(n))
        .map(|n| (n, matrix.fault(index[n])))
        .collect();
    assert_eq!(
        faulted, want,
        "in maintenance with fault \"power failure\"; extra: {extra:?}"
    );

    // Faults cleared through the control API: the recovery sweep lifts
    // every node's maintenance.
    let control = baton_tests::hwsim::control_url(&fleet.rack, "/faults");
    let cleared = baton_tests::hwsim::client()
        .delete(control)
        .send()
        .await
        .unwrap();
    assert!(cleared.status().is_success(), "{cleared:?}");
    wait_until("every node out of maintenance", PATIENCE, || async {
        in_maintenance(&fleet, &names)
            .await
            .is_empty()
            .then_some(())
    })
    .await;
    for name in &unreadable {
        let states = fleet.states(name).await;
        assert_eq!(states.fault, None, "{name}");
    }
    fleet.stop().await;
}

/// A soft reboot whose OS never shuts down falls back to a hard reset,
/// which the BMC refuses while the shutdown is under way: the operation
/// ends with a timeout naming the stuck transition instead of reading the
/// node for ever (its batch would never finish).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_soft_reboot_stuck_in_a_hung_shutdown_ends() {
    let fleet = Fleet::start(1, conductor).await;
    let name = fleet.name(0);
    set_faults(&fleet, 0, Injected::HungOs.faults());
    let job_id = fleet
        .batch(&Phase::SoftReboot.body(std::slice::from_ref(&name)))
        .await;
    let job = fleet.finished_job(&job_id).await;
    let sub = &job.entities.sub_jobs.as_deref().unwrap()[0];
    assert_eq!(sub.error_code.as_deref(), Some("BATON.0301"), "{sub:?}");
    let reason = sub.fail_reason.as_deref().unwrap();
    assert!(reason.contains("stayed powering off"), "{reason}");
    let commands: Vec<_> = fleet.rack.nodes()[0]
        .request_log()
        .iter()
        .filter_map(|s| s.command)
        .collect();
    assert_eq!(commands[0], PowerAction::GracefulRestart, "{commands:?}");
    assert!(
        commands[1..]
            .iter()
            .all(|&c| c == PowerAction::ForceRestart)
            && commands.len() > 1,
        "the hard fallback was tried: {commands:?}"
    );
    fleet.stop().await;
}
