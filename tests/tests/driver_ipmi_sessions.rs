//! The IPMI driver frees its slots in the BMC's session table: a BMC holds
//! a handful of sessions (real ones as few as 4), and a session nobody
//! closes stays until the BMC's own idle timeout (60 s here, as the spec
//! suggests). hw-sim's `ipmi_sessions` gauge counts what the BMC holds.
//!
//! - a session re-opened after the driver's idle time closes the old one
//!   first, so reads spread over minutes hold one slot, not one per read;
//! - a driver dropped without `close` (node deleted, settings changed)
//!   still closes its session;
//! - batond closes a node's session when the node is deleted.

use std::sync::Arc;
use std::time::Duration;

use baton_drivers::{build_driver, DriverConfig, DriverKind, PowerDriver, PowerState};
use baton_hwsim::{Node, RackConfig};
use baton_tests::daemon::wait_until;
use baton_tests::fleet::Fleet;
use baton_tests::hwsim::{self, PASSWORD, USER};
use http::Method;

/// The driver's idle time in these tests: short, so a re-open comes soon.
const IDLE: Duration = Duration::from_millis(300);

fn ipmi_rack(nodes: usize) -> RackConfig {
    RackConfig {
        ipmi: true,
        ..hwsim::config(nodes)
    }
}

fn driver(node: &Node) -> Arc<dyn PowerDriver> {
    let port = node.ipmi_addr().map(|a| a.port());
    let mut config = DriverConfig::new(DriverKind::Ipmi, "127.0.0.1", port, USER, PASSWORD);
    config.options.ipmi_retransmit_interval = Duration::from_millis(200);
    config.options.call_timeout = Duration::from_secs(5);
    config.options.ipmi_session_idle = IDLE;
    build_driver(&config).unwrap_or_else(|e| panic!("driver: {e}"))
}

fn sessions(node: &Node) -> u32 {
    node.counters().ipmi_sessions
}

/// Waits until the BMC holds `n` sessions (the gauge moves with the BMC's
/// datagrams, and a dropped driver closes on a thread of its own).
async fn until_sessions(node: &Node, n: u32) {
    wait_until(
        &format!("{} to hold {n} IPMI sessions", node.name()),
        Duration::from_secs(10),
        || async { (sessions(node) == n).then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_reopened_after_idle_closes_the_old_one() {
    let rack = hwsim::start(ipmi_rack(1)).await;
    let node = &rack.nodes()[0];
    let driver = driver(node);
    for round in 0..3 {
        assert_eq!(driver.power_state().await, Ok(PowerState::On), "{round}");
        // The idle session is closed once the call has its answer.
        until_sessions(node, 1).await;
        tokio::time::sleep(IDLE + Duration::from_millis(100)).await;
    }
    driver.close().await;
    assert_eq!(sessions(node), 0, "close freed the slot");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_driver_closes_its_session() {
    let rack = hwsim::start(ipmi_rack(1)).await;
    let node = &rack.nodes()[0];
    let driver = driver(node);
    assert_eq!(driver.power_state().await, Ok(PowerState::On));
    assert_eq!(sessions(node), 1);
    drop(driver);
    until_sessions(node, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batond_closes_the_session_of_a_deleted_node() {
    let fleet = Fleet::start_rack(ipmi_rack(2), |_| {}).await;
    // Odd nodes are enrolled over IPMI.
    let name = fleet.name(1);
    let node = fleet.rack.node(&name).unwrap_or_else(|| panic!("{name}"));
    fleet.power(&name, "power off").await;
    let states = fleet.settled(&name).await;
    assert_eq!(states.last_error, None);
    assert_eq!(sessions(node), 1, "one session for the operation");
    let deleted = fleet
        .call(Method::DELETE, &format!("/v1/nodes/{name}"), None)
        .await;
    assert!(deleted.status.is_success(), "{:?}", deleted.body);
    until_sessions(node, 0).await;
    fleet.stop().await;
}
