//! Hardware in the loop: the conductor end to end — batond enrolls real
//! BMCs from an inventory file and drives them through the socket.
//!
//! `BATON_HIL_INVENTORY` names a JSON inventory in the form
//! `POST /v1/nodes/import` takes (see README, "Hardware-in-the-loop").
//! Without `BATON_HIL_ALLOW_POWER=1` the test only enrolls the nodes and
//! waits for the power sync to read each one; with it, every node is
//! powered off and on again through `PUT …/states/power` (the servers
//! **will** go down). `BATON_HIL_SETTLE_SECS` (default 300) bounds each
//! power change.
//!
//! Like the driver HIL test it is `#[ignore]`d, so a plain `cargo test`
//! lists it as ignored with the reason; run it with `-- --ignored`, and a
//! missing `BATON_HIL_INVENTORY` then fails it, saying what to set.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use baton_state::PowerState;
use baton_tests::daemon::{wait_until, TestDaemon};
use batond::api::types::{ImportResult, NodeStates};
use http::Method;

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

async fn states(daemon: &TestDaemon, uuid: &uuid::Uuid) -> NodeStates {
    let r = daemon
        .call(Method::GET, &format!("/v1/nodes/{uuid}/states"), None)
        .await;
    serde_json::from_slice(&r.body).unwrap()
}

async fn drive(daemon: &TestDaemon, uuid: &uuid::Uuid, target: &str, settle: Duration) {
    let body = serde_json::json!({ "target": target }).to_string();
    let r = daemon
        .call(
            Method::PUT,
            &format!("/v1/nodes/{uuid}/states/power"),
            Some(&body),
        )
        .await;
    assert_eq!(r.status.as_u16(), 202, "{target} on {uuid}: {:?}", r.body);
    let done = wait_until(&format!("{uuid} to reach {target}"), settle, || async {
        let s = states(daemon, uuid).await;
        s.target_power_state.is_none().then_some(s)
    })
    .await;
    assert_eq!(done.last_error, None, "{uuid}: {target}");
    let want = if target == "power off" {
        PowerState::Off
    } else {
        PowerState::On
    };
    assert_eq!(done.power_state, Some(want), "{uuid}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs real BMCs: set BATON_HIL_INVENTORY (and BATON_HIL_ALLOW_POWER=1 to power them), run with -- --ignored"]
async fn the_conductor_drives_real_bmcs() {
    let path = var("BATON_HIL_INVENTORY").expect(
        "set BATON_HIL_INVENTORY to an inventory file (the JSON array POST /v1/nodes/import takes)",
    );
    let inventory = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read BATON_HIL_INVENTORY {path}: {e}"));
    let settle = Duration::from_secs(
        var("BATON_HIL_SETTLE_SECS")
            .map_or(300, |s| s.parse().expect("BATON_HIL_SETTLE_SECS: seconds")),
    );
    let daemon = TestDaemon::start_with(|config| {
        config.conductor.power_state_change_timeout = settle;
        config.sync.interval = Duration::from_secs(2);
    })
    .await;
    let r = daemon
        .call(Method::POST, "/v1/nodes/import", Some(&inventory))
        .await;
    assert_eq!(r.status.as_u16(), 200, "import: {:?}", r.body);
    let imported: ImportResult = serde_json::from_slice(&r.body).unwrap();
    for uuid in &imported.uuids {
        let read = wait_until(&format!("the sync to read {uuid}"), settle, || async {
            let s = states(&daemon, uuid).await;
            s.power_state.is_some().then_some(s)
        })
        .await;
        eprintln!("{uuid}: {:?}", read.power_state);
    }
    if var("BATON_HIL_ALLOW_POWER").is_some_and(|v| v == "1") {
        for uuid in &imported.uuids {
            drive(&daemon, uuid, "power off", settle).await;
            drive(&daemon, uuid, "power on", settle).await;
        }
    } else {
        eprintln!("BATON_HIL_ALLOW_POWER is not 1: read only, no power changes");
    }
    daemon.stop().await;
}
