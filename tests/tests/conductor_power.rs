//! The conductor end to end: power changes asked through the socket reach
//! simulated Redfish and IPMI BMCs, once each, and are recorded.
#![allow(clippy::unwrap_used)]

use baton_tests::fleet::Fleet;
use http::Method;
use serde_json::json;

/// Off and on again through `PUT states/power` and the action body, on a
/// Redfish node and an IPMI node: hw-sim agrees, each BMC got exactly the
/// commands needed, the target shows while pending and clears after, and
/// each action has a record with events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redfish_and_ipmi_nodes_power_off_and_on() {
    let fleet = Fleet::start(2, |_| {}).await;
    for index in 0..2 {
        let name = fleet.name(index);
        assert!(fleet.sim_power_on(&name), "hw-sim starts nodes on");
        let before = fleet.counters(&name).power_commands;

        let accepted = fleet.power(&name, "power off").await;
        assert_eq!(
            accepted.target_power_state,
            Some(baton_state::PowerState::Off),
            "the target shows while pending"
        );
        let states = fleet.settled(&name).await;
        assert_eq!(states.power_state, Some(baton_state::PowerState::Off));
        assert_eq!(states.last_error, None);
        assert!(!fleet.sim_power_on(&name), "hw-sim says {name} is off");
        assert_eq!(fleet.counters(&name).power_commands, before + 1);

        let record = fleet.action_record(&name, &accepted.request_id).await;
        let action = record.instance_action;
        assert_eq!(action.action, "stop");
        let events: Vec<&str> = action.events.iter().map(|e| e.event.as_str()).collect();
        assert!(events.contains(&"bmc_power_off"), "{events:?}");
        assert!(events.contains(&"wait_power_state"), "{events:?}");
        assert!(action
            .events
            .iter()
            .all(|e| e.result.as_deref() == Some("Success")));

        let r = fleet.action(&name, json!({"os-start": null})).await;
        assert_eq!(r.status.as_u16(), 202, "{:?}", r.body);
        let states = fleet.settled(&name).await;
        assert_eq!(states.power_state, Some(baton_state::PowerState::On));
        assert!(fleet.sim_power_on(&name), "hw-sim says {name} is on");
        assert_eq!(fleet.counters(&name).power_commands, before + 2);

        // The node learned how long its transitions take.
        let view = fleet.node(&name).await;
        assert!(view.learned_transitions.power_off_seconds.is_some());
        assert!(view.learned_transitions.power_on_seconds.is_some());
        assert!(view.power_operation.is_none());
    }
    assert!(fleet.rack.stats().max_concurrent_per_bmc <= 1);
    fleet.stop().await;
}

/// Enrollment, edits and deletion are in the action log, with the caller's
/// uid from the socket's peer credentials.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enroll_and_edit_are_recorded_with_the_callers_uid() {
    let fleet = Fleet::start(1, |_| {}).await;
    let name = fleet.name(0);
    let r = fleet
        .call(
            Method::PATCH,
            &format!("/v1/nodes/{name}"),
            Some(r#"[{"op": "replace", "path": "/power_domain", "value": "rack-9"}]"#),
        )
        .await;
    assert_eq!(r.status.as_u16(), 200, "{:?}", r.body);
    let r = fleet
        .call(
            Method::GET,
            &format!("/v1/nodes/{name}/os-instance-actions"),
            None,
        )
        .await;
    let list: batond::api::types::InstanceActionList = serde_json::from_slice(&r.body).unwrap();
    let actions: Vec<&str> = list
        .instance_actions
        .iter()
        .map(|a| a.action.as_str())
        .collect();
    assert_eq!(actions, ["update", "create"], "newest first");
    let uid = nix::unistd::getuid().as_raw().to_string();
    assert!(list
        .instance_actions
        .iter()
        .all(|a| a.user_id.as_deref() == Some(uid.as_str())));
    fleet.stop().await;
}

/// A node already in the requested state gets no command at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_already_there_gets_no_command() {
    let fleet = Fleet::start(2, |_| {}).await;
    for index in 0..2 {
        let name = fleet.name(index);
        let accepted = fleet.power(&name, "power on").await;
        let states = fleet.settled(&name).await;
        assert_eq!(states.power_state, Some(baton_state::PowerState::On));
        assert_eq!(fleet.counters(&name).power_commands, 0);
        let record = fleet.action_record(&name, &accepted.request_id).await;
        assert_eq!(
            record.instance_action.message.as_deref(),
            Some("already power on")
        );
    }
    fleet.stop().await;
}

/// Reboot and power cycle really restart the server (hw-sim counts boots),
/// once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reboot_and_power_cycle_restart_once() {
    let fleet = Fleet::start(2, |_| {}).await;
    for index in 0..2 {
        let name = fleet.name(index);
        let boots = fleet.counters(&name).boots;
        let r = fleet
            .action(&name, json!({"reboot": {"type": "HARD"}}))
            .await;
        assert_eq!(r.status.as_u16(), 202, "{:?}", r.body);
        let states = fleet.settled(&name).await;
        assert_eq!(states.last_error, None);
        assert_eq!(states.power_state, Some(baton_state::PowerState::On));
        assert_eq!(fleet.counters(&name).boots, boots + 1);
        assert_eq!(fleet.counters(&name).power_commands, 1);

        fleet.power(&name, "power cycle").await;
        let states = fleet.settled(&name).await;
        assert_eq!(states.last_error, None);
        assert_eq!(fleet.counters(&name).boots, boots + 2);
        assert_eq!(fleet.counters(&name).power_commands, 2);
    }
    fleet.stop().await;
}

/// The state rules: locked and maintenance nodes refuse power actions (409)
/// without contacting the BMC; bad bodies are 400s that say what is valid;
/// an IPMI BMC cannot soft-reboot (406).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_name_the_cause() {
    let fleet = Fleet::start(2, |_| {}).await;
    let (redfish, ipmi) = (fleet.name(0), fleet.name(1));

    let r = fleet
        .action(&redfish, json!({"lock": {"reason": "firmware update"}}))
        .await;
    assert_eq!(r.status.as_u16(), 200, "{:?}", r.body);
    let r = fleet
        .action(&redfish, json!({"os-stop": {"type": "HARD"}}))
        .await;
    assert_eq!(r.status.as_u16(), 409);
    let text = String::from_utf8_lossy(&r.body);
    assert!(
        text.contains("locked") && text.contains("firmware update"),
        "{text}"
    );
    fleet.action(&redfish, json!({"unlock": null})).await;

    let r = fleet
        .action(&redfish, json!({"os-stop": {"type": "NOW"}}))
        .await;
    assert_eq!(r.status.as_u16(), 400);
    assert!(String::from_utf8_lossy(&r.body).contains("\\\"SOFT\\\" or \\\"HARD\\\""));
    let r = fleet
        .call(
            Method::PUT,
            &format!("/v1/nodes/{redfish}/states/power"),
            Some(r#"{"target": "off"}"#),
        )
        .await;
    assert_eq!(r.status.as_u16(), 400);
    assert!(String::from_utf8_lossy(&r.body).contains("power off"));

    let r = fleet
        .call(
            Method::PUT,
            &format!("/v1/nodes/{ipmi}/maintenance"),
            Some(r#"{"reason": "disk swap"}"#),
        )
        .await;
    assert_eq!(r.status.as_u16(), 200, "{:?}", r.body);
    let r = fleet.action(&ipmi, json!({"os-start": null})).await;
    assert_eq!(r.status.as_u16(), 409);
    assert!(String::from_utf8_lossy(&r.body).contains("maintenance"));
    let r = fleet
        .call(
            Method::DELETE,
            &format!("/v1/nodes/{ipmi}/maintenance"),
            None,
        )
        .await;
    assert_eq!(r.status.as_u16(), 200);

    let r = fleet
        .action(&ipmi, json!({"reboot": {"type": "SOFT"}}))
        .await;
    assert_eq!(r.status.as_u16(), 406, "{:?}", r.body);

    assert_eq!(fleet.counters(&redfish).power_commands, 0);
    assert_eq!(fleet.counters(&ipmi).power_commands, 0);
    fleet.stop().await;
}
