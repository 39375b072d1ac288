//! Batches end to end: `POST /v1/baremetalservers/action` against a hw-sim
//! rack of Redfish and IPMI BMCs — whole-request validation that starts
//! nothing, a thousand-node HARD stop with one command per node, faults
//! that fail only their own sub-jobs with the right codes, cancel, the
//! fairness of single-node requests during a batch, and staggered power-on
//! as hw-sim's own command log shows it.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use baton_hwsim::{FaultSetting, PowerAction};
use baton_tests::daemon::wait_until;
use baton_tests::fleet::{Fleet, SETTLE};
use batond::api::types::JobDocument;
use http::Method;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;

fn servers(fleet: &Fleet, range: std::ops::Range<usize>) -> Vec<Value> {
    range.map(|i| json!({"id": fleet.name(i)})).collect()
}

fn power_commands(fleet: &Fleet) -> u64 {
    fleet
        .rack
        .nodes()
        .iter()
        .map(|n| n.counters().power_commands)
        .sum()
}

fn sub_jobs(job: &JobDocument) -> &[batond::api::types::SubJobDocument] {
    job.entities.sub_jobs.as_deref().unwrap_or_default()
}

async fn error_message(fleet: &Fleet, body: &Value) -> String {
    let r = fleet.batch_raw(body).await;
    assert_eq!(r.status.as_u16(), 400, "{body}: {:?}", r.body);
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["error"]["code"], "badRequest");
    v["error"]["message"].as_str().unwrap().to_owned()
}

/// Too many, repeated and unknown servers, and bodies of the wrong shape,
/// are refused as a whole: 400 naming what is wrong, no job, no target,
/// no command at any BMC.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_batch_starts_nothing() {
    let fleet = Fleet::start(4, |_| {}).await;
    let before = power_commands(&fleet);

    let many: Vec<Value> = (0..1001).map(|i| json!({"id": format!("n{i}")})).collect();
    let m = error_message(
        &fleet,
        &json!({"os-stop": {"type": "HARD", "servers": many}}),
    )
    .await;
    assert!(m.contains("1001 entries"), "{m}");

    let mut repeated = servers(&fleet, 0..3);
    repeated.push(json!({"id": fleet.name(1)}));
    let m = error_message(&fleet, &json!({"os-stop": {"servers": repeated}})).await;
    assert!(
        m.contains(&fleet.name(1)) && m.contains("more than once"),
        "{m}"
    );

    // The same node by name and by uuid is a repeat too.
    let uuid = fleet.node(&fleet.name(2)).await.uuid.to_string();
    let body = json!({"os-start": {"servers": [{"id": fleet.name(2)}, {"id": uuid}]}});
    let m = error_message(&fleet, &body).await;
    assert!(m.contains("same node as"), "{m}");

    let mut unknown = servers(&fleet, 0..2);
    unknown.push(json!({"id": "ghost-1"}));
    unknown.push(json!({"id": "ghost-2"}));
    let m = error_message(&fleet, &json!({"reboot": {"servers": unknown}})).await;
    assert!(m.contains("2 unknown server id(s)"), "{m}");
    assert!(m.contains("ghost-1, ghost-2"), "{m}");

    for (body, expect) in [
        (json!({"os-stop": {"servers": []}}), "servers is empty"),
        (
            json!({"os-stop": {"servers": [{"id": "a"}], "force": true}}),
            "unknown field",
        ),
        (
            json!({"os-halt": {"servers": [{"id": "a"}]}}),
            "unknown field",
        ),
        (
            json!({"os-stop": {"type": "FAST", "servers": [{"id": "a"}]}}),
            "not SOFT or HARD",
        ),
        (json!([1, 2]), "expected e.g."),
    ] {
        let m = error_message(&fleet, &body).await;
        assert!(m.contains(expect), "{body}: {m}");
    }

    let r = fleet.call(Method::GET, "/v1/jobs", None).await;
    let list: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(list["jobs"], json!([]), "no job was created");
    for i in 0..4 {
        assert_eq!(fleet.states(&fleet.name(i)).await.target_power_state, None);
    }
    assert_eq!(power_commands(&fleet), before, "no BMC got a command");
    fleet.stop().await;
}

/// The headline: a thousand servers, half Redfish and half IPMI, stopped
/// HARD as one job: 200 with a job id, every sub-job SUCCESS, every hw-sim
/// node off after exactly one power command, never two requests at once
/// on one BMC; sub-jobs and node actions point at each other. A second
/// stop succeeds without a command ("already power off").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_servers_stop_hard_as_one_job() {
    let n = 1000;
    let fleet = Fleet::start(n, |c| c.conductor.workers = 100).await;
    fleet.rack.state().reset_stats();
    let job_id = fleet
        .batch(&json!({"os-stop": {"type": "HARD", "servers": servers(&fleet, 0..n)}}))
        .await;
    let job = fleet.finished_job(&job_id).await;
    assert_eq!(job.status, "SUCCESS", "{:?}", job.fail_reason);
    assert_eq!(job.job_type, "baremetalBatchOperate");
    assert_eq!(job.operation, "os-stop");
    assert_eq!(job.entities.sub_jobs_total, n as u64);
    assert!(job.begin_time.is_some() && job.end_time.is_some());
    assert!(sub_jobs(&job).iter().all(|s| s.status == "SUCCESS"
        && s.error_code.is_none()
        && s.job_type == "baremetalSingleOperate"));
    for (i, node) in fleet.rack.nodes().iter().enumerate() {
        assert!(!fleet.sim_power_on(node.name()), "node {i} is still on");
        assert_eq!(node.counters().power_commands, 1, "node {i}");
    }
    assert!(fleet.rack.stats().max_concurrent_per_bmc <= 1);

    // A sub-job and its node's action name each other.
    let sub = &sub_jobs(&job)[7];
    let record = fleet
        .action_record(&sub.entities.server_id.to_string(), &sub.request_id)
        .await
        .instance_action;
    assert_eq!(record.sub_job_id.as_deref(), Some(sub.job_id.as_str()));
    assert_eq!(record.action, "stop");

    // Already off: success with no command.
    let again = fleet
        .batch(&json!({"os-stop": {"type": "HARD", "servers": servers(&fleet, 0..10)}}))
        .await;
    let job = fleet.finished_job(&again).await;
    assert_eq!(job.status, "SUCCESS");
    assert!(sub_jobs(&job)
        .iter()
        .all(|s| s.message.as_deref() == Some("already power off")));
    assert_eq!(power_commands(&fleet), n as u64);
    fleet.stop().await;
}

/// Wrong credentials and BMCs that never answer fail their own sub-jobs,
/// with their codes; a locked node and one in maintenance fail at once;
/// every other node stops; the job is FAIL and its reason counts them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_fail_only_their_own_sub_jobs() {
    let n = 60;
    let fleet = Fleet::start(n, |c| {
        c.conductor.bmc_timeout = Duration::from_millis(500);
        c.conductor.max_retries = 1;
    })
    .await;
    let wrong = fleet
        .rack
        .state()
        .apply_fault_fraction(FaultSetting::WrongCredentials, 0.05, 7)
        .unwrap();
    let silent: Vec<String> = fleet
        .rack
        .state()
        .apply_fault_fraction(FaultSetting::NoAnswer, 0.05, 8)
        .unwrap()
        .into_iter()
        .filter(|name| !wrong.contains(name))
        .collect();
    let faulty = |name: &str| wrong.iter().chain(&silent).any(|f| f == name);
    let healthy: Vec<String> = (0..n)
        .map(|i| fleet.name(i))
        .filter(|m| !faulty(m))
        .collect();
    let (locked, kept) = (healthy[0].clone(), healthy[1].clone());
    let r = fleet
        .action(&locked, json!({"lock": {"reason": "firmware"}}))
        .await;
    assert_eq!(r.status.as_u16(), 200, "{:?}", r.body);
    let r = fleet
        .call(
            Method::PUT,
            &format!("/v1/nodes/{kept}/maintenance"),
            Some("{}"),
        )
        .await;
    assert!(r.status.is_success(), "{:?}", r.body);
    fleet.rack.state().reset_stats();

    let job_id = fleet
        .batch(&json!({"os-stop": {"type": "HARD", "servers": servers(&fleet, 0..n)}}))
        .await;
    let job = fleet.finished_job(&job_id).await;
    assert_eq!(job.status, "FAIL");
    let failed = wrong.len() + silent.len() + 2;
    let reason = job.fail_reason.clone().unwrap();
    assert!(
        reason.starts_with(&format!("{failed} of {n} sub-jobs failed")),
        "{reason}"
    );
    for sub in sub_jobs(&job) {
        let name = sub.entities.server_name.clone().unwrap();
        let expected = if wrong.contains(&name) {
            Some("BATON.0202")
        } else if silent.contains(&name) {
            Some("BATON.0201")
        } else if name == locked {
            Some("BATON.0101")
        } else if name == kept {
            Some("BATON.0102")
        } else {
            None
        };
        assert_eq!(
            sub.error_code.as_deref(),
            expected,
            "{name}: {:?}",
            sub.fail_reason
        );
        match expected {
            None => {
                assert_eq!(sub.status, "SUCCESS", "{name}");
                assert!(!fleet.sim_power_on(&name), "{name} is off");
            }
            Some(_) => {
                assert_eq!(sub.status, "FAIL", "{name}");
                assert!(sub.fail_reason.as_deref().is_some_and(|r| !r.is_empty()));
            }
        }
    }
    for name in [&locked, &kept] {
        assert_eq!(
            fleet.counters(name).power_commands,
            0,
            "{name} was left alone"
        );
    }
    fleet.stop().await;
}

/// A cancel ends the sub-jobs whose command has not gone out (FAIL,
/// "cancelled", and their BMCs never get a command) and lets the others
/// finish; the job ends FAIL and the counts add up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_what_has_not_started() {
    let n = 40;
    let mut rack = baton_tests::hwsim::config(n);
    rack.latency = Duration::from_millis(50);
    let fleet = Fleet::start_rack(rack, |c| c.conductor.workers = 1).await;
    fleet.rack.state().reset_stats();
    let job_id = fleet
        .batch(&json!({"os-stop": {"type": "HARD", "servers": servers(&fleet, 0..n)}}))
        .await;
    // Every node is read first, then commanded, one request at a time.
    wait_until("a few commands to go out", SETTLE, || async {
        (power_commands(&fleet) >= 3).then_some(())
    })
    .await;
    let r = fleet
        .call(Method::POST, &format!("/v1/jobs/{job_id}/cancel"), None)
        .await;
    assert_eq!(r.status.as_u16(), 200, "{:?}", r.body);
    let job = fleet.finished_job(&job_id).await;
    assert_eq!(job.status, "FAIL");
    let counts = job.entities.sub_jobs_status;
    assert!(
        counts.success >= 3 && counts.fail >= n as u64 / 2,
        "{counts:?}"
    );
    assert_eq!(
        counts.success,
        power_commands(&fleet),
        "one command per success"
    );
    assert_eq!(counts.success + counts.fail, n as u64);
    for sub in sub_jobs(&job) {
        let name = sub.entities.server_name.clone().unwrap();
        let commands = fleet.counters(&name).power_commands;
        if sub.status == "SUCCESS" {
            assert_eq!(commands, 1, "{name}");
            assert!(!fleet.sim_power_on(&name));
        } else {
            assert_eq!(sub.error_code.as_deref(), Some("BATON.0401"), "{name}");
            assert_eq!(sub.fail_reason.as_deref(), Some("cancelled"));
            assert_eq!(commands, 0, "cancelled {name} got no command");
            assert!(fleet.sim_power_on(&name));
            assert_eq!(fleet.states(&name).await.target_power_state, None);
        }
    }
    // Cancelling a finished job changes nothing.
    let r = fleet
        .call(Method::POST, &format!("/v1/jobs/{job_id}/cancel"), None)
        .await;
    assert_eq!(r.status.as_u16(), 200);
    assert_eq!(fleet.job(&job_id).await.entities.sub_jobs_status, counts);
    let r = fleet.call(Method::POST, "/v1/jobs/nope/cancel", None).await;
    assert_eq!(r.status.as_u16(), 404);
    fleet.stop().await;
}

/// A single-node request issued during a batch gets the next free worker:
/// it is done while most of the batch still waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_request_does_not_wait_for_the_batch() {
    let n = 41;
    let mut rack = baton_tests::hwsim::config(n);
    rack.latency = Duration::from_millis(30);
    let fleet = Fleet::start_rack(rack, |c| c.conductor.workers = 2).await;
    fleet.rack.state().reset_stats();
    let job_id = fleet
        .batch(&json!({"os-stop": {"type": "HARD", "servers": servers(&fleet, 0..n - 1)}}))
        .await;
    // The batch reads every node, then commands them: wait for its first
    // command, ask for the single one, and count the batch's commands.
    wait_until("the batch's commands to start", SETTLE, || async {
        (power_commands(&fleet) >= 1).then_some(())
    })
    .await;
    let single = fleet.name(n - 1);
    fleet.power(&single, "power off").await;
    wait_until("the single command to reach its BMC", SETTLE, || async {
        (fleet.counters(&single).power_commands == 1).then_some(())
    })
    .await;
    let batch_commands = power_commands(&fleet) - 1;
    assert!(
        batch_commands < (n as u64 - 1) / 2,
        "the single request waited for {batch_commands} of the batch's {} commands",
        n - 1
    );
    fleet.settled(&single).await;
    assert!(!fleet.sim_power_on(&single));
    fleet.finished_job(&job_id).await;
    fleet.stop().await;
}

/// `power_on.max_per_domain` and `power_on.stagger`, as hw-sim saw them:
/// in each rack, power-on commands at least `stagger` apart, and a third
/// one only after the first of two before it had finished powering on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_on_is_staggered_per_domain() {
    let n = 16;
    let mut rack = baton_tests::hwsim::config(n);
    rack.nodes_per_domain = 8;
    let power_on = rack.delays.power_on;
    let stagger = Duration::from_millis(40);
    let fleet = Fleet::start_rack(rack, |c| {
        c.power_on.max_per_domain = 2;
        c.power_on.stagger = stagger;
    })
    .await;
    let job_id = fleet
        .batch(&json!({"os-stop": {"type": "HARD", "servers": servers(&fleet, 0..n)}}))
        .await;
    assert_eq!(fleet.finished_job(&job_id).await.status, "SUCCESS");
    fleet.rack.state().reset_stats();
    let job_id = fleet
        .batch(&json!({"os-start": {"servers": servers(&fleet, 0..n)}}))
        .await;
    assert_eq!(fleet.finished_job(&job_id).await.status, "SUCCESS");
    let job = fleet.finished_job(&job_id).await;
    for domain in 0..2 {
        let mut starts: Vec<_> = fleet.rack.nodes()[domain * 8..(domain + 1) * 8]
            .iter()
            .flat_map(|node| node.command_log())
            .filter(|(_, action)| *action == PowerAction::On)
            .map(|(at, _)| at)
            .collect();
        starts.sort();
        assert_eq!(starts.len(), 8, "one power-on per node");
        // The stagger is kept when commands are sent, so it is checked on
        // batond's own record of when it sent each (hw-sim's arrival times
        // vary with each request's own transport time).
        let mut sent = Vec::new();
        for sub in &sub_jobs(&job)[domain * 8..(domain + 1) * 8] {
            let action = fleet
                .action_record(&sub.entities.server_id.to_string(), &sub.request_id)
                .await
                .instance_action;
            let event = action
                .events
                .iter()
                .find(|e| e.event == "bmc_power_on")
                .unwrap();
            sent.push(time::OffsetDateTime::parse(&event.start_time, &Rfc3339).unwrap());
        }
        sent.sort();
        for pair in sent.windows(2) {
            assert!(
                pair[1] - pair[0] >= stagger,
                "commands sent closer than the stagger"
            );
        }
        for three in starts.windows(3) {
            assert!(
                three[2] - three[0] >= power_on,
                "three nodes of rack {} powering on at once",
                domain + 1
            );
        }
    }
    fleet.stop().await;
}
