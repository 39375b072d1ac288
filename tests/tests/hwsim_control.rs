//! hw-sim's control API: the summary, node listing, out-of-band power, fault
//! and quirk changes, stats, and 4xx answers that say what is wrong.

use baton_hwsim::{BootTarget, PowerState};
use baton_tests::hwsim::{client, config, control_get, control_url, send, start, PASSWORD, USER};
use serde_json::json;

#[tokio::test]
async fn summary_and_nodes_show_state_ports_and_counters() {
    let rack = start(config(4)).await;
    let http = client();
    let summary = control_get(&http, &rack, "/").await;
    assert_eq!(summary["nodes"], 4);
    assert_eq!(summary["power_states"], json!({"on": 4}));

    let nodes = control_get(&http, &rack, "/nodes").await;
    let nodes = nodes.as_array().cloned().unwrap_or_default();
    assert_eq!(nodes.len(), 4);
    for (shown, node) in nodes.iter().zip(rack.nodes()) {
        assert_eq!(shown["name"], node.name());
        assert_eq!(shown["redfish_port"], node.endpoints().redfish_port);
        assert_eq!(shown["power_state"], "on");
        assert_eq!(shown["faults"], json!({}));
        assert_eq!(shown["boot_override"]["target"], "None");
        for key in ["requests", "power_commands", "max_concurrent"] {
            assert_eq!(shown["counters"][key], 0, "{key}");
        }
    }
    rack.shutdown().await;
}

#[tokio::test]
async fn out_of_band_power_is_not_a_command() {
    let rack = start(config(2)).await;
    let http = client();
    let node = &rack.nodes()[1];
    let url = control_url(&rack, &format!("/nodes/{}/power", node.name()));
    let (status, shown) = send(http.post(&url).json(&json!({"state": "off"}))).await;
    assert_eq!((status, &shown["power_state"]), (200, &json!("off")));
    assert_eq!(node.power_state(), PowerState::Off);
    assert_eq!(node.counters().power_commands, 0);

    let (status, error) = send(http.post(&url).json(&json!({"state": "sideways"}))).await;
    assert_eq!(status, 400, "{error}");
    assert!(error["error"]
        .as_str()
        .unwrap_or_default()
        .contains("sideways"));
    let summary = control_get(&http, &rack, "/").await;
    assert_eq!(summary["power_states"], json!({"off": 1, "on": 1}));
    rack.shutdown().await;
}

#[tokio::test]
async fn faults_and_quirks_are_validated_and_applied() {
    let rack = start(config(10)).await;
    let http = client();
    let node = &rack.nodes()[0];
    let faults_url = control_url(&rack, &format!("/nodes/{}/faults", node.name()));

    let (status, shown) = send(
        http.put(&faults_url)
            .json(&json!({"slow": "1500ms", "busy": true})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(shown["faults"], json!({"slow": "1s 500ms", "busy": true}));
    // PUT replaces the whole set.
    let (_, shown) = send(http.put(&faults_url).json(&json!({"stuck": true}))).await;
    assert_eq!(shown["faults"], json!({"stuck": true}));

    for (bad, hint) in [
        (json!({"bussy": true}), "bussy"),
        (json!({"slow": "soon"}), "slow"),
        (json!({"packet_loss": 1.5}), "packet_loss"),
    ] {
        let (status, error) = send(http.put(&faults_url).json(&bad)).await;
        assert!((400..500).contains(&status), "{bad} → {status}");
        let message = error["error"].as_str().unwrap_or_default();
        assert!(message.contains(hint), "{message:?} should name {hint}");
    }
    assert!(node.faults().stuck, "refused requests change nothing");

    let fraction = |body: serde_json::Value| http.post(control_url(&rack, "/faults")).json(&body);
    let (status, picked) = send(fraction(
        json!({"fraction": 0.5, "fault": "http_500", "seed": 9}),
    ))
    .await;
    assert_eq!((status, &picked["count"]), (200, &json!(5)));
    let chosen: Vec<String> = rack
        .nodes()
        .iter()
        .filter(|n| n.faults().http_500)
        .map(|n| n.name().to_owned())
        .collect();
    assert_eq!(picked["nodes"], json!(chosen));
    let (status, picked) = send(fraction(
        json!({"fraction": 0.2, "fault": "slow", "value": "2s"}),
    ))
    .await;
    assert_eq!((status, &picked["fault"]), (200, &json!("slow=2s")));
    let (status, error) = send(fraction(json!({"fraction": 0.2, "fault": "melt"}))).await;
    assert_eq!(status, 400);
    assert!(
        error["error"]
            .as_str()
            .unwrap_or_default()
            .contains("no_answer"),
        "lists valid faults"
    );
    let (status, _) = send(fraction(json!({"fraction": 2.0, "fault": "busy"}))).await;
    assert_eq!(status, 400);

    let (status, cleared) = send(http.delete(control_url(&rack, "/faults"))).await;
    assert_eq!((status, &cleared["cleared"]), (200, &json!(10)));
    assert!(rack.nodes().iter().all(|n| n.faults().is_healthy()));

    let quirks_url = control_url(&rack, &format!("/nodes/{}/quirks", node.name()));
    let (status, shown) = send(http.put(&quirks_url).json(
        &json!({"reset_types": ["On", "ForceOff"], "already_in_state": "400", "reset_reply": "202"}),
    ))
    .await;
    assert_eq!(status, 200);
    assert_eq!(shown["quirks"]["reset_types"], json!(["On", "ForceOff"]));
    let (status, _) = send(http.put(&quirks_url).json(&json!({"reset_types": []}))).await;
    assert_eq!(status, 400);
    let (status, _) = send(
        http.put(&quirks_url)
            .json(&json!({"reset_types": ["Explode"]})),
    )
    .await;
    assert!((400..500).contains(&status));
    rack.shutdown().await;
}

#[tokio::test]
async fn unknown_nodes_routes_and_methods_are_4xx_with_a_message() {
    let rack = start(config(2)).await;
    let http = client();
    let (status, error) = send(http.get(control_url(&rack, "/nodes/node-9999"))).await;
    assert_eq!(status, 404);
    let message = error["error"].as_str().unwrap_or_default();
    assert!(message.contains("node-0000..node-0001"), "{message}");

    let (status, error) = send(http.get(control_url(&rack, "/nope"))).await;
    assert_eq!(status, 404);
    assert!(error["error"].as_str().is_some());
    let (status, error) = send(http.delete(control_url(&rack, "/stats"))).await;
    assert_eq!(status, 405);
    assert!(error["error"].as_str().is_some());
    let (status, error) = send(
        http.put(control_url(&rack, "/nodes/node-0000/faults"))
            .header("Content-Type", "application/json")
            .body("{"),
    )
    .await;
    assert_eq!(status, 400);
    assert!(error["error"]
        .as_str()
        .unwrap_or_default()
        .starts_with("Bad JSON body"));
    rack.shutdown().await;
}

#[tokio::test]
async fn boot_override_and_last_boot_are_shown() {
    let rack = start(config(1)).await;
    let http = client();
    let node = &rack.nodes()[0];
    node.set_boot_override(baton_hwsim::BootOverride {
        target: BootTarget::Cd,
        enabled: baton_hwsim::BootEnabled::Once,
        mode: baton_hwsim::BootMode::Legacy,
    });
    node.set_power_out_of_band(false);
    node.set_power_out_of_band(true);
    let shown = control_get(&http, &rack, "/nodes/node-0000").await;
    assert_eq!(shown["last_boot"], "Cd");
    assert_eq!(shown["boot_override"]["enabled"], "Disabled");
    assert_eq!(shown["counters"]["boots"], 1);
    rack.shutdown().await;
}

#[tokio::test]
async fn a_slow_fault_too_long_for_the_clock_is_refused() {
    let rack = start(config(2)).await;
    let http = client();
    let node = &rack.nodes()[0];
    let faults_url = control_url(&rack, &format!("/nodes/{}/faults", node.name()));
    // u64::MAX seconds: adding the latency to it used to overflow and panic
    // every request the node served afterwards.
    let endless = json!({"slow": "18446744073709551615s"});
    let (status, error) = send(http.put(&faults_url).json(&endless)).await;
    assert_eq!(status, 400, "{error}");
    let message = error["error"].as_str().unwrap_or_default();
    assert!(
        message.contains("too long") && message.contains("at most 1day"),
        "{message}"
    );
    assert!(node.faults().is_healthy(), "nothing applied");

    let fraction = json!({"fraction": 1.0, "fault": "slow", "value": "18446744073709551615s"});
    let (status, error) = send(http.post(control_url(&rack, "/faults")).json(&fraction)).await;
    assert_eq!(status, 400, "{error}");
    assert!(rack.nodes().iter().all(|n| n.faults().is_healthy()));

    // The node still serves.
    let system = format!("{}/redfish/v1/Systems/1", rack.redfish_url(node));
    let (status, _) = send(http.get(system).basic_auth(USER, Some(PASSWORD))).await;
    assert_eq!(status, 200);
    rack.shutdown().await;
}
