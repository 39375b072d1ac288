//! hw-sim's faults as a Redfish client meets them, set at start (config) and
//! at run time (control API), and `max_concurrent` counting real overlap.
//! Assertions about time are lower bounds only (a fault never makes a reply
//! faster), so the tests cannot flake on a slow machine.

use std::time::{Duration, Instant};

use baton_hwsim::{FaultPlan, FaultSetting, NodeFault, PowerState};
use baton_tests::hwsim::{
    client, config, control_get, control_url, message_key, plain_and_tls, redfish, send, start,
    wait_for,
};
use reqwest::Method;
use serde_json::json;

const SYSTEM: &str = "/redfish/v1/Systems/1";
const RESET: &str = "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset";

#[tokio::test]
async fn request_faults_set_at_start() {
    let mut cfg = config(5);
    let fault = |node: &str, setting| NodeFault {
        node: node.into(),
        setting,
    };
    cfg.node_faults = vec![
        fault("node-0001", FaultSetting::Http500),
        fault("node-0002", FaultSetting::Busy),
        fault("node-0003", FaultSetting::WrongCredentials),
        fault("node-0004", FaultSetting::NoAnswer),
    ];
    let rack = start(cfg).await;
    let http = client();
    let get = |i: usize| redfish(&http, &rack, &rack.nodes()[i], Method::GET, SYSTEM);

    assert_eq!(send(get(0)).await.0, 200);
    let (status, error) = send(get(1)).await;
    assert_eq!(
        (status, message_key(&error)),
        (500, "InternalError".to_owned())
    );
    let busy = get(2).send().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(busy.status(), 503);
    assert_eq!(busy.headers()["retry-after"], "1");
    assert_eq!(
        send(get(3)).await.0,
        401,
        "wrong_credentials refuses the configured password"
    );

    let silent = get(4).timeout(Duration::from_millis(300)).send().await;
    assert!(
        silent.as_ref().is_err_and(reqwest::Error::is_timeout),
        "no_answer must never reply: {silent:?}"
    );
    // The unanswered request was received and counted.
    assert_eq!(rack.nodes()[4].counters().requests, 1);
    rack.shutdown().await;
}

#[tokio::test]
async fn slow_adds_latency_and_fraction_picks_seeded_nodes() {
    let mut cfg = config(10);
    cfg.fault_plans = vec![FaultPlan {
        fraction: 0.3,
        setting: FaultSetting::Slow(Duration::from_millis(400)),
        seed: 42,
    }];
    let rack = start(cfg).await;
    let http = client();
    let slow: Vec<_> = rack
        .nodes()
        .iter()
        .filter(|n| n.faults().slow.is_some())
        .collect();
    assert_eq!(slow.len(), 3, "30% of 10 nodes");
    let expected: Vec<String> = rack
        .state()
        .apply_fault_fraction(FaultSetting::Slow(Duration::from_millis(400)), 0.3, 42)
        .unwrap_or_default();
    let names: Vec<String> = slow.iter().map(|n| n.name().to_owned()).collect();
    assert_eq!(names, expected, "same seed, same nodes");

    let started = Instant::now();
    assert_eq!(
        send(redfish(&http, &rack, slow[0], Method::GET, SYSTEM))
            .await
            .0,
        200
    );
    assert!(started.elapsed() >= Duration::from_millis(400));
    rack.shutdown().await;
}

#[tokio::test]
async fn stuck_and_hung_os_at_run_time_through_the_control_api() {
    let rack = start(config(2)).await;
    let http = client();
    let (stuck, hung) = (&rack.nodes()[0], &rack.nodes()[1]);
    let put = |name: &str, body: serde_json::Value| {
        http.put(control_url(&rack, &format!("/nodes/{name}/faults")))
            .json(&body)
    };
    assert_eq!(send(put(stuck.name(), json!({"stuck": true}))).await.0, 200);
    assert_eq!(
        send(put(hung.name(), json!({"hung_os": true}))).await.0,
        200
    );

    // stuck: the command is accepted (204) and ignored.
    let (status, _) = send(
        redfish(&http, &rack, stuck, Method::POST, RESET).json(&json!({"ResetType": "ForceOff"})),
    )
    .await;
    assert_eq!(status, 204);
    // hung_os: the graceful shutdown starts and never ends.
    let (status, _) = send(
        redfish(&http, &rack, hung, Method::POST, RESET)
            .json(&json!({"ResetType": "GracefulShutdown"})),
    )
    .await;
    assert_eq!(status, 204);

    let longest = rack.state().config().delays.shutdown * 3;
    tokio::time::sleep(longest).await;
    assert_eq!(stuck.power_state(), PowerState::On);
    assert_eq!(stuck.counters().power_commands, 1);
    let (_, system) = send(redfish(&http, &rack, hung, Method::GET, SYSTEM)).await;
    assert_eq!(system["PowerState"], "PoweringOff");

    // A hard off still works on a hung OS.
    let (status, _) = send(
        redfish(&http, &rack, hung, Method::POST, RESET).json(&json!({"ResetType": "ForceOff"})),
    )
    .await;
    assert_eq!(status, 204);
    wait_for("hung node off", || async {
        (hung.power_state() == PowerState::Off).then_some(())
    })
    .await;

    // DELETE clears the faults: the stuck node obeys again.
    let cleared = http.delete(control_url(
        &rack,
        &format!("/nodes/{}/faults", stuck.name()),
    ));
    let (status, node) = send(cleared).await;
    assert_eq!((status, &node["faults"]), (200, &json!({})));
    let (status, _) = send(
        redfish(&http, &rack, stuck, Method::POST, RESET).json(&json!({"ResetType": "ForceOff"})),
    )
    .await;
    assert_eq!(status, 204);
    wait_for("unstuck node off", || async {
        (stuck.power_state() == PowerState::Off).then_some(())
    })
    .await;
    rack.shutdown().await;
}

#[tokio::test]
async fn flapping_changes_power_out_of_band() {
    let mut cfg = config(1);
    cfg.flap_interval = Duration::from_millis(10);
    let rack = start(cfg).await;
    let http = client();
    let node = &rack.nodes()[0];
    let (status, _) = send(
        http.post(control_url(&rack, "/faults"))
            .json(&json!({"fraction": 1.0, "fault": "flapping", "seed": 1})),
    )
    .await;
    assert_eq!(status, 200);
    wait_for("a flap to off and back on", || async {
        let c = node.counters();
        (c.power_offs >= 1 && c.boots >= 1).then_some(())
    })
    .await;
    assert_eq!(
        node.counters().power_commands,
        0,
        "flaps are not BMC commands"
    );
    rack.shutdown().await;
}

#[tokio::test]
async fn max_concurrent_counts_real_overlap() {
    let rack = start(config(2)).await;
    let http = client();
    let node = &rack.nodes()[0];

    // Sequential requests never overlap.
    for _ in 0..5 {
        assert_eq!(
            send(redfish(&http, &rack, node, Method::GET, SYSTEM))
                .await
                .0,
            200
        );
    }
    let stats = control_get(&http, &rack, "/stats").await;
    assert_eq!(stats["max_concurrent_per_bmc"], 1);
    assert_eq!(stats["total_requests"], 5);

    // Five requests held open by a slow BMC are five at once.
    node.apply_fault(FaultSetting::Slow(Duration::from_secs(3)));
    let held: Vec<_> = (0..5)
        .map(|_| tokio::spawn(redfish(&http, &rack, node, Method::GET, SYSTEM).send()))
        .collect();
    wait_for("five requests in flight", || async {
        (node.counters().in_flight == 5).then_some(())
    })
    .await;
    let stats = control_get(&http, &rack, "/stats").await;
    assert_eq!(stats["max_concurrent_per_bmc"], 5);
    assert_eq!(rack.nodes()[1].counters().max_concurrent, 0);
    for request in held {
        let reply = request.await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(reply.map_or(0, |r| r.status().as_u16()), 200);
    }
    assert_eq!(node.counters().in_flight, 0);

    let (status, reset) = send(http.post(control_url(&rack, "/stats/reset"))).await;
    assert_eq!(status, 200);
    assert_eq!(
        reset,
        json!({"total_requests": 0, "power_commands": 0, "max_concurrent_per_bmc": 0})
    );
    rack.shutdown().await;
}

#[tokio::test]
async fn wrong_credentials_also_refuses_existing_sessions() {
    let rack = start(config(1)).await;
    let http = client();
    let node = &rack.nodes()[0];
    let base = rack.redfish_url(node);
    let login = http
        .post(format!("{base}/redfish/v1/SessionService/Sessions"))
        .json(&json!({"UserName": baton_tests::hwsim::USER, "Password": baton_tests::hwsim::PASSWORD}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(login.status(), 201);
    let token = login.headers()["x-auth-token"]
        .to_str()
        .unwrap_or_default()
        .to_owned();
    let with_token = || {
        http.get(format!("{base}{SYSTEM}"))
            .header("X-Auth-Token", token.as_str())
    };
    assert_eq!(send(with_token()).await.0, 200);

    node.apply_fault(FaultSetting::WrongCredentials);
    assert_eq!(send(with_token()).await.0, 401);
    assert_eq!(
        send(redfish(&http, &rack, node, Method::GET, SYSTEM))
            .await
            .0,
        401
    );

    assert!(node.set_faults(baton_hwsim::Faults::default()).is_ok());
    assert_eq!(
        send(with_token()).await.0,
        200,
        "the session outlives the fault"
    );
    rack.shutdown().await;
}

/// `Rack::shutdown` must not wait for requests that would take long: one
/// paying an hour of `slow` latency over Redfish and over IPMI, and one whose
/// client sent the headers but stopped half-way through the body.
#[tokio::test]
async fn shutdown_does_not_wait_for_slow_or_half_sent_requests() {
    use tokio::io::AsyncWriteExt;

    let rack = start(config(2)).await;
    let nodes = rack.nodes().to_vec();
    let (slow, healthy) = (&nodes[0], &nodes[1]);
    let an_hour = r#"{"slow": "1h"}"#;
    let http = client();
    let (status, _) = send(
        http.put(control_url(
            &rack,
            &format!("/nodes/{}/faults", slow.name()),
        ))
        .header("content-type", "application/json")
        .body(an_hour),
    )
    .await;
    assert_eq!(status, 200);

    // Redfish: a GET that will sit in its latency for an hour.
    let pending = tokio::spawn(
        redfish(&http, &rack, slow, Method::GET, SYSTEM)
            .timeout(Duration::from_secs(3600))
            .send(),
    );
    // IPMI: an ASF Presence Ping, also held by the latency.
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("bind: {e}"));
    let ping = [6, 0, 0xFF, 6, 0, 0, 0x11, 0xBE, 0x80, 7, 0, 0];
    let ipmi = slow
        .ipmi_addr()
        .unwrap_or_else(|| panic!("the test rack serves IPMI"));
    udp.send_to(&ping, ipmi)
        .await
        .unwrap_or_else(|e| panic!("send: {e}"));
    // A POST whose body never arrives in full.
    let mut half = tokio::net::TcpStream::connect(healthy.redfish_addr())
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    half.write_all(
        b"POST /redfish/v1/SessionService/Sessions HTTP/1.1\r\nHost: x\r\n\
          Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"UserName\"",
    )
    .await
    .unwrap_or_else(|e| panic!("write: {e}"));
    wait_for("all three requests received", || async {
        (slow.counters().in_flight == 2 && healthy.counters().in_flight == 1).then_some(())
    })
    .await;

    let stopped = tokio::time::timeout(Duration::from_secs(5), rack.shutdown()).await;
    assert!(
        stopped.is_ok(),
        "shutdown waited for in-flight requests instead of ending them"
    );
    let answer = pending.await.unwrap_or_else(|e| panic!("join: {e}"));
    assert!(
        answer.is_err(),
        "the slow request gets no reply: {answer:?}"
    );
}

/// Plays a fault or event on node 0 through `POST /nodes/{name}/faults`.
async fn post_fault(rack: &baton_hwsim::Rack, fault: serde_json::Value) {
    let path = format!("/nodes/{}/faults", rack.nodes()[0].name());
    let (status, body) = send(client().post(control_url(rack, &path)).json(&fault)).await;
    assert_eq!(status, 200, "POST {path} {fault}: {body}");
}

/// A new Redfish session on node 0: its token.
async fn login(rack: &baton_hwsim::Rack, http: &reqwest::Client) -> String {
    let url = format!(
        "{}/redfish/v1/SessionService/Sessions",
        rack.redfish_url(&rack.nodes()[0])
    );
    let response = http
        .post(url)
        .json(&json!({"UserName": baton_tests::hwsim::USER, "Password": baton_tests::hwsim::PASSWORD}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("login: {e}"));
    assert_eq!(response.status(), 201);
    response.headers()["x-auth-token"]
        .to_str()
        .unwrap_or_default()
        .to_owned()
}

async fn get_with_token(rack: &baton_hwsim::Rack, http: &reqwest::Client, token: &str) -> u16 {
    let url = format!("{}{SYSTEM}", rack.redfish_url(&rack.nodes()[0]));
    send(http.get(url).header("X-Auth-Token", token)).await.0
}

#[tokio::test]
async fn drop_sessions_and_bmc_reboot_invalidate_every_token() {
    for (rack, http) in plain_and_tls(config(1)).await {
        let token = login(&rack, &http).await;
        assert_eq!(get_with_token(&rack, &http, &token).await, 200);
        post_fault(&rack, json!({"fault": "drop_sessions"})).await;
        assert_eq!(get_with_token(&rack, &http, &token).await, 401);
        assert!(
            rack.nodes()[0].faults().is_healthy(),
            "an event, not a fault"
        );

        let token = login(&rack, &http).await;
        post_fault(&rack, json!({"fault": "bmc_reboot", "value": "500ms"})).await;
        let before = rack.nodes()[0].counters().requests;
        let down = redfish(&http, &rack, &rack.nodes()[0], Method::GET, SYSTEM)
            .send()
            .await;
        assert!(down.is_err(), "a rebooting BMC answers nothing: {down:?}");
        assert!(rack.nodes()[0].counters().requests <= before + 1);
        wait_for("the BMC back up", || async {
            let up = redfish(&http, &rack, &rack.nodes()[0], Method::GET, SYSTEM)
                .send()
                .await;
            up.is_ok_and(|r| r.status() == 200).then_some(())
        })
        .await;
        assert_eq!(
            get_with_token(&rack, &http, &token).await,
            401,
            "sessions did not survive the reboot"
        );
    }
}

#[tokio::test]
async fn min_interval_refuses_and_link_flap_on_power_drops_the_link() {
    for (rack, http) in plain_and_tls(config(1)).await {
        let get = || redfish(&http, &rack, &rack.nodes()[0], Method::GET, SYSTEM);
        post_fault(&rack, json!({"fault": "min_interval", "value": "1h"})).await;
        assert_eq!(send(get()).await.0, 200);
        let (status, body) = send(get()).await;
        assert_eq!(
            (status, message_key(&body)),
            (503, "ServiceTemporarilyUnavailable".to_owned())
        );
        let node = &rack.nodes()[0];
        let mut faults = node.faults();
        faults.min_interval = None;
        assert_eq!(node.set_faults(faults), Ok(()));

        post_fault(&rack, json!({"fault": "link_flap_on_power", "value": "1h"})).await;
        assert_eq!(send(get()).await.0, 200, "no power change yet");
        let reset = redfish(&http, &rack, node, Method::POST, RESET)
            .json(&json!({"ResetType": "ForceOff"}));
        assert_eq!(send(reset).await.0, 204, "the command is answered");
        assert!(get().send().await.is_err(), "then the link is down");
        assert_eq!(node.power_state(), PowerState::ShuttingDown);
    }
}
