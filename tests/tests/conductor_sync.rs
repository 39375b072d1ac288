//! Power sync end to end: out-of-band changes are recorded (`record`) or
//! reverted (`enforce`); a BMC that stops answering puts its node in
//! maintenance with fault "power failure" after `sync.max_failures` sweeps,
//! and the recovery sweep lifts it once the BMC answers — while an
//! operator's maintenance is never touched.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use baton_hwsim::Faults;
use baton_state::PowerState;
use baton_tests::daemon::wait_until;
use baton_tests::fleet::Fleet;
use batond::api::types::InstanceActionList;
use batond::config::SyncPolicy;
use http::Method;

const PATIENCE: Duration = Duration::from_secs(30);

fn sweeping(policy: SyncPolicy) -> impl FnOnce(&mut batond::config::Config) {
    move |config| {
        config.sync.interval = Duration::from_secs(1);
        config.sync.recovery_interval = Duration::from_secs(1);
        config.sync.policy = policy;
        config.sync.max_failures = 3;
        config.conductor.bmc_timeout = Duration::from_millis(400);
    }
}

async fn power_state_becomes(fleet: &Fleet, name: &str, want: PowerState) {
    wait_until(&format!("{name} recorded as {want}"), PATIENCE, || async {
        (fleet.states(name).await.power_state == Some(want)).then_some(())
    })
    .await;
}

async fn sync_messages(fleet: &Fleet, name: &str) -> Vec<String> {
    let r = fleet
        .call(
            Method::GET,
            &format!("/v1/nodes/{name}/os-instance-actions"),
            None,
        )
        .await;
    let list: InstanceActionList = serde_json::from_slice(&r.body).unwrap();
    list.instance_actions
        .into_iter()
        .filter(|a| a.action == "power-sync")
        .filter_map(|a| a.message)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_policy_records_an_out_of_band_change() {
    let fleet = Fleet::start(2, sweeping(SyncPolicy::Record)).await;
    for index in 0..2 {
        let name = fleet.name(index);
        power_state_becomes(&fleet, &name, PowerState::On).await;
        assert!(
            sync_messages(&fleet, &name).await.is_empty(),
            "a first read is no change"
        );
        fleet.rack.node(&name).unwrap().set_power_out_of_band(false);
        power_state_becomes(&fleet, &name, PowerState::Off).await;
        let messages = sync_messages(&fleet, &name).await;
        assert_eq!(
            messages,
            ["power state changed out of band: power on → power off"],
            "{name}"
        );
        assert_eq!(fleet.counters(&name).power_commands, 0, "record only");
    }
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enforce_policy_drives_the_node_back() {
    let fleet = Fleet::start(2, sweeping(SyncPolicy::Enforce)).await;
    for index in 0..2 {
        let name = fleet.name(index);
        power_state_becomes(&fleet, &name, PowerState::On).await;
        fleet.rack.node(&name).unwrap().set_power_out_of_band(false);
        wait_until(&format!("{name} powered back on"), PATIENCE, || async {
            (fleet.counters(&name).power_commands >= 1 && fleet.sim_power_on(&name)).then_some(())
        })
        .await;
        let states = fleet.settled(&name).await;
        assert_eq!(states.power_state, Some(PowerState::On));
        let messages = sync_messages(&fleet, &name).await;
        assert!(
            messages
                .iter()
                .any(|m| m.contains("driving it back to power on")),
            "{messages:?}"
        );
        assert_eq!(fleet.counters(&name).power_commands, 1);
    }
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_nodes_go_to_maintenance_and_come_back() {
    let fleet = Fleet::start(3, sweeping(SyncPolicy::Record)).await;
    let (redfish, ipmi, operators) = (fleet.name(0), fleet.name(1), fleet.name(2));
    let r = fleet
        .call(
            Method::PUT,
            &format!("/v1/nodes/{operators}/maintenance"),
            Some(r#"{"reason": "rack move"}"#),
        )
        .await;
    assert_eq!(r.status.as_u16(), 200);
    for name in [&redfish, &ipmi, &operators] {
        fleet
            .rack
            .node(name)
            .unwrap()
            .set_faults(Faults {
                no_answer: true,
                ..Faults::default()
            })
            .unwrap();
    }
    for name in [&redfish, &ipmi] {
        wait_until(&format!("{name} in maintenance"), PATIENCE, || async {
            let states = fleet.states(name).await;
            states.maintenance.then_some(())
        })
        .await;
        let states = fleet.states(name).await;
        assert_eq!(states.fault.as_deref(), Some("power failure"));
        let reason = states.maintenance_reason.unwrap();
        assert!(reason.contains("3 times in a row"), "{reason}");
        assert_eq!(fleet.node(name).await.sync_failures, 3);
    }
    for name in [&redfish, &ipmi, &operators] {
        fleet
            .rack
            .node(name)
            .unwrap()
            .set_faults(Faults::default())
            .unwrap();
    }
    for name in [&redfish, &ipmi] {
        wait_until(&format!("{name} out of maintenance"), PATIENCE, || async {
            let states = fleet.states(name).await;
            (!states.maintenance).then_some(())
        })
        .await;
        let states = fleet.states(name).await;
        assert_eq!(states.fault, None);
        assert_eq!(fleet.node(name).await.sync_failures, 0);
    }
    let states = fleet.states(&operators).await;
    assert!(states.maintenance, "an operator's maintenance stays");
    assert_eq!(states.maintenance_reason.as_deref(), Some("rack move"));
    assert_eq!(states.fault, None);
    fleet.stop().await;
}
