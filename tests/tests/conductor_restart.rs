//! Crash safety and shutdown of the real `batond` binary: `kill -9` with
//! operations in flight against slow BMCs loses none of them, and a node
//! that had already reached its target gets no second command; SIGTERM
//! stops promptly and the next start finishes what was left.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use baton_hwsim::{Delays, ExportDriver, Rack, RackConfig};
use baton_state::PowerState;
use baton_tests::daemon::{wait_until, DaemonProcess};
use batond::api::types::NodeStates;
use batond::client::Client;
use bytes::Bytes;
use http::Method;
use nix::sys::signal::Signal;

/// `bmc_timeout` is the default 20 s, so IPMI requests are retransmitted
/// after 1 s (`bmc_timeout`/20): with a 3 s timeout the 150 ms retransmit
/// equalled hw-sim's latency, and on a loaded machine a retransmission
/// reached the BMC while it still served the first copy — two requests at
/// once, which this test counts against the conductor.
const CONFIG: &str = "[conductor]\npower_state_change_timeout = \"20s\"\nbmc_timeout = \"20s\"\n\
                      [sync]\ninterval = \"1h\"\nrecovery_interval = \"1h\"\n";

async fn slow_rack(nodes: usize) -> Rack {
    baton_tests::hwsim::start(RackConfig {
        ipmi: true,
        latency: Duration::from_millis(150),
        delays: Delays {
            power_on: Duration::from_millis(1500),
            power_off: Duration::from_millis(1500),
            shutdown: Duration::from_millis(1500),
        },
        ..baton_tests::hwsim::config(nodes)
    })
    .await
}

async fn call(client: &Client, method: Method, path: &str, body: Option<String>) -> (u16, Bytes) {
    let r = client
        .request(method, path, body.map(Bytes::from))
        .await
        .unwrap();
    (r.status.as_u16(), r.body)
}

async fn import(rack: &Rack, daemon: &DaemonProcess) {
    let path = daemon.dir.join("inventory.json");
    rack.write_inventory(&path, ExportDriver::Mixed).unwrap();
    let body = std::fs::read_to_string(&path).unwrap();
    let (status, text) = call(
        &daemon.client(),
        Method::POST,
        "/v1/nodes/import",
        Some(body),
    )
    .await;
    assert_eq!(status, 200, "{text:?}");
}

async fn power(client: &Client, name: &str, target: &str) {
    let body = serde_json::json!({ "target": target }).to_string();
    let (status, text) = call(
        client,
        Method::PUT,
        &format!("/v1/nodes/{name}/states/power"),
        Some(body),
    )
    .await;
    assert_eq!(status, 202, "{text:?}");
}

async fn states(client: &Client, name: &str) -> NodeStates {
    client
        .get(&format!("/v1/nodes/{name}/states"))
        .await
        .unwrap()
}

async fn settled(client: &Client, name: &str) -> NodeStates {
    wait_until(
        &format!("{name} settled"),
        Duration::from_secs(60),
        || async {
            let s = states(client, name).await;
            s.target_power_state.is_none().then_some(s)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_operation_and_repeats_no_command() {
    let rack = slow_rack(12).await;
    let dir = tempfile::TempDir::new().unwrap();
    let mut daemon = DaemonProcess::start(dir.path(), CONFIG).await;
    import(&rack, &daemon).await;
    let client = daemon.client();
    let names: Vec<String> = rack.nodes().iter().map(|n| n.name().to_owned()).collect();

    // One node reaches its target before the crash.
    let done = &names[11];
    power(&client, done, "power off").await;
    assert_eq!(
        settled(&client, done).await.power_state,
        Some(PowerState::Off)
    );

    // Ten more are in flight when batond is killed; one reboot too.
    for name in &names[..10] {
        power(&client, name, "power off").await;
    }
    let rebooting = &names[10];
    power(&client, rebooting, "rebooting").await;
    // About when the first ones reach off (1.5 s) and others are on their way.
    tokio::time::sleep(Duration::from_millis(1700)).await;
    daemon.stop_with(Signal::SIGKILL);
    // What each BMC had seen when batond died, and which nodes were off.
    let at_kill: Vec<(u64, bool)> = names[..10]
        .iter()
        .map(|name| {
            let node = rack.node(name).unwrap();
            (
                node.counters().power_commands,
                node.power_state() == baton_hwsim::PowerState::Off,
            )
        })
        .collect();

    let reboots_at_kill = rack.node(rebooting).unwrap().counters().power_commands;
    // The dead batond's last requests may still be in hw-sim's hands for
    // one latency; then every count starts again from zero, so what
    // follows is what the restarted batond sent.
    tokio::time::sleep(Duration::from_millis(500)).await;
    rack.state().reset_stats();

    let daemon = DaemonProcess::start(dir.path(), CONFIG).await;
    let client = daemon.client();
    for (name, (_, off_at_kill)) in names[..10].iter().zip(at_kill) {
        let s = settled(&client, name).await;
        assert_eq!(
            s.power_state,
            Some(PowerState::Off),
            "{name}: {:?}",
            s.last_error
        );
        assert_eq!(s.last_error, None);
        let commands = rack.node(name).unwrap().counters().power_commands;
        if off_at_kill {
            assert_eq!(commands, 0, "{name} was off, yet got another command");
        } else {
            // Still going down (IPMI shows no transition) or never told:
            // one more (idempotent) power off at most.
            assert!(
                commands <= 1,
                "{name}: {commands} commands after the restart"
            );
        }
    }
    let s = settled(&client, rebooting).await;
    assert_eq!(s.power_state, Some(PowerState::On));
    let reboots = rack.node(rebooting).unwrap().counters();
    assert!(
        reboots_at_kill + reboots.power_commands <= 1,
        "a restart is never sent twice"
    );

    assert_eq!(
        rack.node(done).unwrap().counters().power_commands,
        0,
        "the node that was done got nothing more"
    );
    for name in &names[..10] {
        assert_ne!(
            rack.node(name).unwrap().power_state(),
            baton_hwsim::PowerState::On
        );
    }
    let crowded: Vec<(String, u32)> = rack
        .nodes()
        .iter()
        .map(|n| (n.name().to_owned(), n.counters().max_concurrent))
        .filter(|(_, c)| *c > 1)
        .collect();
    assert!(
        crowded.is_empty(),
        "BMCs that saw requests at once: {crowded:?}"
    );
    drop(daemon);
    rack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_promptly_and_the_next_start_finishes() {
    let rack = slow_rack(4).await;
    let dir = tempfile::TempDir::new().unwrap();
    let mut daemon = DaemonProcess::start(dir.path(), CONFIG).await;
    import(&rack, &daemon).await;
    let client = daemon.client();
    let names: Vec<String> = rack.nodes().iter().map(|n| n.name().to_owned()).collect();
    for name in &names {
        power(&client, name, "power off").await;
    }
    let status = daemon.stop_with(Signal::SIGTERM);
    assert!(status.success(), "{status:?}");

    let daemon = DaemonProcess::start(dir.path(), CONFIG).await;
    let client = daemon.client();
    for name in &names {
        let s = settled(&client, name).await;
        assert_eq!(
            s.power_state,
            Some(PowerState::Off),
            "{name}: {:?}",
            s.last_error
        );
        assert_eq!(rack.node(name).unwrap().counters().power_commands, 1);
    }
    drop(daemon);
    rack.shutdown().await;
}
