//! hw-sim's vendor quirks as a Redfish client meets them, each set through
//! the control API (`PUT /nodes/{name}/quirks`) on a rack served over plain
//! HTTP and over HTTPS: how the power state reads during a transition, and
//! how a command the transition does not allow is answered.

use std::time::Duration;

use baton_hwsim::{InitialPower, Rack, RackConfig};
use baton_tests::hwsim::{config, control_url, message_key, plain_and_tls, redfish, send};
use reqwest::{Client, Method};
use serde_json::{json, Value};

const SYSTEM: &str = "/redfish/v1/Systems/1";
const RESET: &str = "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset";

/// A one-node rack that starts off and takes `power_on` to boot.
fn slow_boot(power_on: Duration) -> RackConfig {
    let mut cfg = config(1);
    cfg.initial_power = InitialPower::Off;
    cfg.delays.power_on = power_on;
    cfg
}

/// Merges `change` into node 0's quirks through the control API.
async fn set_quirks(rack: &Rack, change: Value) {
    let http = baton_tests::hwsim::client();
    let node = format!("/nodes/{}", rack.nodes()[0].name());
    let (_, status) = send(http.get(control_url(rack, &node))).await;
    let mut quirks = status["quirks"].clone();
    for (key, value) in change.as_object().into_iter().flatten() {
        quirks[key] = value.clone();
    }
    let (code, answer) = send(
        http.put(control_url(rack, &format!("{node}/quirks")))
            .json(&quirks),
    )
    .await;
    assert_eq!(code, 200, "PUT quirks {quirks}: {answer}");
}

async fn power_state(rack: &Rack, http: &Client) -> String {
    let (status, body) = send(redfish(http, rack, &rack.nodes()[0], Method::GET, SYSTEM)).await;
    assert_eq!(status, 200, "{body}");
    body["PowerState"].as_str().unwrap_or_default().to_owned()
}

async fn reset(rack: &Rack, http: &Client, reset_type: &str) -> (u16, Value) {
    let request = redfish(http, rack, &rack.nodes()[0], Method::POST, RESET)
        .json(&json!({ "ResetType": reset_type }));
    send(request).await
}

#[tokio::test]
async fn power_state_styles_ideal_binary_and_stale() {
    for (rack, http) in plain_and_tls(slow_boot(Duration::from_secs(30))).await {
        assert_eq!(reset(&rack, &http, "On").await.0, 204);
        assert_eq!(power_state(&rack, &http).await, "PoweringOn", "ideal");
        set_quirks(&rack, json!({"power_state_style": "binary"})).await;
        assert_eq!(
            power_state(&rack, &http).await,
            "On",
            "binary: in POST reads On"
        );
        let node = &rack.nodes()[0];
        node.set_power_out_of_band(true);
        set_quirks(&rack, json!({"power_state_style": "stale=1h"})).await;
        assert_eq!(
            power_state(&rack, &http).await,
            "Off",
            "stale: the state of an hour ago, before every change"
        );
        assert_eq!(node.power_state(), baton_hwsim::PowerState::On);
    }
}

#[tokio::test]
async fn a_command_mid_transition_is_refused_or_ignored() {
    for (rack, http) in plain_and_tls(slow_boot(Duration::from_secs(30))).await {
        assert_eq!(reset(&rack, &http, "On").await.0, 204);
        let (status, body) = reset(&rack, &http, "GracefulShutdown").await;
        assert_eq!(
            (status, message_key(&body)),
            (409, "ActionParameterValueConflict".to_owned())
        );
        set_quirks(&rack, json!({"mid_transition": "ignore"})).await;
        let commands = rack.nodes()[0].counters().power_commands;
        assert_eq!(reset(&rack, &http, "GracefulShutdown").await.0, 204);
        assert_eq!(rack.nodes()[0].counters().power_commands, commands + 1);
        assert_eq!(power_state(&rack, &http).await, "PoweringOn", "dropped");
    }
}
