//! Crash safety of batches: the real `batond` binary is killed with
//! SIGKILL while a 60-server batch runs against a hw-sim rack (half
//! Redfish, half IPMI) — right after the 200, midway, and near the end —
//! then started again on the same database. The job must complete
//! SUCCESS with every sub-job SUCCESS, every node must be in the target
//! state, and hw-sim's counters must show that no node got a command it
//! should not have: a reboot is never sent twice, and is sent after the
//! restart to every node it had not gone out to — it is left out only
//! where it was on the wire when batond died (at most one per worker; the
//! conductor cannot tell whether the BMC carried it out, and says so in
//! the sub-job); a stop is sent once more only where the BMC cannot show
//! that it is already under way (IPMI reports a node on until its power
//! drops), never to a node that had reached off. The database passes
//! `PRAGMA integrity_check` as the crash left it and at the end.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use baton_hwsim::{Delays, Rack, RackConfig};
use baton_tests::crash::{finished_job, import, integrity, post_batch, run_batch};
use baton_tests::daemon::DaemonProcess;
use nix::sys::signal::Signal;
use serde_json::json;

const NODES: usize = 60;
/// Fewer workers than servers, so that at any kill point some sub-jobs
/// wait for a worker while others wait for their power to settle.
const WORKERS: usize = 4;
const CONFIG: &str = "[conductor]\nworkers = 4\npower_state_change_timeout = \"20s\"\n\
                      bmc_timeout = \"3s\"\n[sync]\ninterval = \"1h\"\nrecovery_interval = \"1h\"\n";
const PATIENCE: Duration = Duration::from_secs(60);

/// When batond is killed.
#[derive(Debug, Clone, Copy)]
enum KillAt {
    /// As soon as the 200 with the job id is in.
    Accepted,
    /// Once half of the nodes have carried out their command.
    Midway,
    /// Once 80 % of them have.
    NearEnd,
}

/// Which batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Batch {
    StopHard,
    RebootHard,
}

async fn rack() -> Rack {
    baton_tests::hwsim::start(RackConfig {
        ipmi: true,
        latency: Duration::from_millis(30),
        delays: Delays {
            power_on: Duration::from_millis(600),
            power_off: Duration::from_millis(600),
            shutdown: Duration::from_millis(600),
        },
        ..baton_tests::hwsim::config(NODES)
    })
    .await
}

/// Whether hw-sim shows node `i` as having carried out this batch's
/// command: off for a stop, a boot started for a reboot (a hard reset
/// keeps the power on).
fn carried_out(rack: &Rack, i: usize, batch: Batch) -> bool {
    let node = &rack.nodes()[i];
    match batch {
        Batch::StopHard => node.power_state() == baton_hwsim::PowerState::Off,
        Batch::RebootHard => node.counters().boots >= 1,
    }
}

fn carried_out_count(rack: &Rack, batch: Batch) -> usize {
    (0..NODES).filter(|&i| carried_out(rack, i, batch)).count()
}

/// Waits (polling hw-sim in-process, so finely) until `at` is reached.
async fn reach(rack: &Rack, batch: Batch, at: KillAt) {
    let want = match at {
        KillAt::Accepted => return,
        KillAt::Midway => NODES / 2,
        KillAt::NearEnd => NODES * 80 / 100,
    };
    let deadline = Instant::now() + PATIENCE;
    while carried_out_count(rack, batch) < want {
        assert!(Instant::now() < deadline, "the batch never reached {at:?}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// What one node's BMC had seen once the killed batond's last requests
/// had landed.
#[derive(Debug, Clone, Copy)]
struct AtKill {
    commands: u64,
    done: bool,
}

async fn crash_and_resume(batch: Batch, at: KillAt) {
    let rack = rack().await;
    let dir = tempfile::TempDir::new().unwrap();
    let mut daemon = DaemonProcess::start(dir.path(), CONFIG).await;
    import(&rack, &daemon).await;
    let names: Vec<String> = rack.nodes().iter().map(|n| n.name().to_owned()).collect();
    let servers: Vec<_> = names.iter().map(|n| json!({ "id": n })).collect();
    // A start of nodes already on reads and records every power state, as
    // a running conductor's sync would have: the batch then commands each
    // node without a read first, so only the restart's reads keep a node
    // from a command it should not get.
    let warm_up = run_batch(
        &daemon,
        &json!({"os-start": {"servers": servers}}),
        PATIENCE,
    )
    .await;
    assert_eq!(warm_up.status, "SUCCESS", "{:?}", warm_up.fail_reason);
    assert_eq!(rack.stats().power_commands, 0);
    let body = match batch {
        Batch::StopHard => json!({"os-stop": {"type": "HARD", "servers": servers}}),
        Batch::RebootHard => json!({"reboot": {"type": "HARD", "servers": servers}}),
    };
    let job_id = post_batch(&daemon.client(), &body).await;

    reach(&rack, batch, at).await;
    daemon.stop_with(Signal::SIGKILL);
    let done_at_kill = carried_out_count(&rack, batch);
    assert!(
        done_at_kill < NODES,
        "the whole batch was carried out before the kill at {at:?}; nothing was tested"
    );
    // Requests the dead batond had sent land within a latency.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let at_kill: Vec<AtKill> = (0..NODES)
        .map(|i| AtKill {
            commands: rack.nodes()[i].counters().power_commands,
            done: carried_out(&rack, i, batch),
        })
        .collect();
    let db = dir.path().join("baton.db");
    assert_eq!(integrity(&db), "ok", "the database as the crash left it");

    let mut daemon = DaemonProcess::start(dir.path(), CONFIG).await;
    let finished = finished_job(&daemon.client(), &job_id, PATIENCE).await;
    assert_eq!(
        finished.status, "SUCCESS",
        "killed at {at:?}: {:?}",
        finished.fail_reason
    );
    let sub_jobs = finished.entities.sub_jobs.clone().unwrap_or_default();
    assert_eq!(sub_jobs.len(), NODES);
    for sub in &sub_jobs {
        assert_eq!(sub.status, "SUCCESS", "{sub:?}");
    }
    // Nodes the restarted batond left alone because their command may
    // have gone out before the kill: it says so in the sub-job.
    let maybe_sent: Vec<&str> = sub_jobs
        .iter()
        .filter(|s| {
            s.message
                .as_deref()
                .is_some_and(|m| m.contains("not sent again"))
        })
        .filter_map(|s| s.entities.server_name.as_deref())
        .collect();
    let wrong: Vec<String> = at_kill
        .iter()
        .enumerate()
        .filter_map(|(i, kill)| {
            let maybe_sent = maybe_sent.contains(&rack.nodes()[i].name());
            node_problem(&rack, batch, i, *kill, maybe_sent)
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "killed at {at:?} with {done_at_kill} of {NODES} carried out; {} node(s) wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    let lost: Vec<&str> = maybe_sent
        .iter()
        .copied()
        .filter(|name| rack.node(name).unwrap().counters().power_commands == 0)
        .collect();
    assert!(
        lost.len() <= WORKERS,
        "killed at {at:?}: {} reboots never arrived, more than the {WORKERS} that can \
         be on the wire at once (a command still queued was taken as sent): {lost:?}",
        lost.len()
    );
    assert!(rack.stats().max_concurrent_per_bmc <= 1);
    let status = daemon.stop_with(Signal::SIGTERM);
    assert!(status.success(), "{status:?}");
    assert_eq!(integrity(&db), "ok", "the database at the end");
    rack.shutdown().await;
}

/// What is wrong with one node after the restart, if anything: it must be
/// in the target state, commanded as often as it should have been.
fn node_problem(
    rack: &Rack,
    batch: Batch,
    i: usize,
    kill: AtKill,
    maybe_sent: bool,
) -> Option<String> {
    let node = &rack.nodes()[i];
    let counters = node.counters();
    let commands = counters.power_commands;
    let state = node.power_state();
    let seen = format!(
        "{}: {state:?}, {commands} power command(s), {} boot(s); at the kill {kill:?}",
        node.name(),
        counters.boots
    );
    let fine = match batch {
        // Never reset twice; reset once unless the command was on the
        // wire at the kill (counted by the caller).
        Batch::RebootHard => {
            let least = u64::from(!(maybe_sent && kill.commands == 0));
            state == baton_hwsim::PowerState::On
                && (least..=1).contains(&commands)
                && counters.boots == commands
        }
        Batch::StopHard => {
            // An IPMI node (odd ones in a mixed inventory) reads on until
            // its power drops, so one on its way down at the kill may be
            // told again — a hard power-off is idempotent. A Redfish BMC
            // shows the transition, and is left alone; so is every node
            // that had reached off.
            let on_its_way = kill.commands == 1 && !kill.done;
            let most = if i % 2 == 1 && on_its_way { 2 } else { 1 };
            state == baton_hwsim::PowerState::Off
                && (1..=most).contains(&commands)
                && (!kill.done || commands == kill.commands)
        }
    };
    (!fine).then_some(seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_killed_right_after_accept_completes() {
    crash_and_resume(Batch::StopHard, KillAt::Accepted).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_killed_midway_completes() {
    crash_and_resume(Batch::StopHard, KillAt::Midway).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_killed_near_the_end_completes() {
    crash_and_resume(Batch::StopHard, KillAt::NearEnd).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reboot_killed_right_after_accept_resets_each_node_once() {
    crash_and_resume(Batch::RebootHard, KillAt::Accepted).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reboot_killed_midway_resets_each_node_once() {
    crash_and_resume(Batch::RebootHard, KillAt::Midway).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reboot_killed_near_the_end_resets_each_node_once() {
    crash_and_resume(Batch::RebootHard, KillAt::NearEnd).await;
}
