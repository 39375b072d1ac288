//! hw-sim's `garbage` fault against the drivers: for every variant, set
//! per node through the control API, a driver call fails (never a panic, a
//! success, or a wait past the call's deadline) with `InvalidResponse`, and
//! the BMC saw the request. Also: the variants are chosen by fraction through
//! `POST /faults`, and each spoils what it says on the wire.

use std::sync::Arc;
use std::time::{Duration, Instant};

use baton_drivers::{build_driver, DriverConfig, DriverError, DriverKind, PowerDriver};
use baton_hwsim::{Garbage, Node, Rack};
use baton_tests::hwsim::{self, client, control_url, PASSWORD, USER};
use serde_json::{json, Value};

/// Deadline of one driver call here.
const CALL_TIMEOUT: Duration = Duration::from_secs(3);

fn driver(kind: DriverKind, node: &Node) -> Arc<dyn PowerDriver> {
    let (address, port) = match kind {
        DriverKind::Redfish => ("http://127.0.0.1", node.redfish_addr().port()),
        DriverKind::Ipmi => (
            "127.0.0.1",
            node.ipmi_addr()
                .unwrap_or_else(|| panic!("no IPMI endpoint"))
                .port(),
        ),
    };
    let mut config = DriverConfig::new(kind, address, Some(port), USER, PASSWORD);
    config.options.call_timeout = CALL_TIMEOUT;
    config.options.ipmi_retransmit_interval = Duration::from_millis(200);
    build_driver(&config).unwrap_or_else(|e| panic!("driver: {e}"))
}

/// Sets `garbage=<variant>` on one node through the control API.
async fn set_garbage(rack: &Rack, node: &str, garbage: Garbage) {
    let url = control_url(rack, &format!("/nodes/{node}/faults"));
    let body = json!({"fault": "garbage", "value": garbage.name()});
    let r = client()
        .post(url)
        .json(&body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(r.status().is_success(), "{}", r.status());
}

/// A power-state read against `garbage` on a fresh node: `InvalidResponse`
/// within the call's deadline, and the BMC got the request.
async fn read_gets_invalid_response(kind: DriverKind, garbage: Garbage) {
    let read = read_with_garbage(kind, garbage).await;
    assert!(
        matches!(read, Err(DriverError::InvalidResponse(_))),
        "{kind:?} with garbage={garbage}: {read:?}"
    );
}

/// A power-state read against `garbage` on a fresh node: an error within
/// the call's deadline (never a success, a panic or a hang), and the BMC
/// got the request.
async fn read_with_garbage(
    kind: DriverKind,
    garbage: Garbage,
) -> Result<baton_drivers::PowerState, DriverError> {
    let rack = hwsim::start(baton_hwsim::RackConfig {
        ipmi: true,
        ..hwsim::config(1)
    })
    .await;
    let node = &rack.nodes()[0];
    set_garbage(&rack, node.name(), garbage).await;
    assert_eq!(node.faults().garbage, Some(garbage));
    let driver = driver(kind, node);
    let started = Instant::now();
    let read = driver.power_state().await;
    let elapsed = started.elapsed();
    assert!(read.is_err(), "{kind:?} with garbage={garbage}: {read:?}");
    assert!(
        elapsed < CALL_TIMEOUT + Duration::from_millis(500),
        "{kind:?} with garbage={garbage} took {elapsed:?}, past its {CALL_TIMEOUT:?} deadline"
    );
    assert!(node.counters().requests > 0, "the BMC saw nothing");
    println!("{kind:?} garbage={garbage}: {read:?} after {elapsed:?}");
    rack.shutdown().await;
    read
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redfish_invalid_json() {
    read_gets_invalid_response(DriverKind::Redfish, Garbage::InvalidJson).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redfish_wrong_types() {
    read_gets_invalid_response(DriverKind::Redfish, Garbage::WrongTypes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redfish_truncated_body() {
    read_gets_invalid_response(DriverKind::Redfish, Garbage::Truncated).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redfish_oversized_body() {
    read_gets_invalid_response(DriverKind::Redfish, Garbage::Oversized).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipmi_truncated_packets() {
    read_gets_invalid_response(DriverKind::Ipmi, Garbage::Truncated).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipmi_answers_without_their_data() {
    read_gets_invalid_response(DriverKind::Ipmi, Garbage::WrongTypes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipmi_wrong_session_id() {
    read_gets_invalid_response(DriverKind::Ipmi, Garbage::WrongSession).await;
}

/// Garbage that starts on a session already open: the next read is
/// `InvalidResponse` too, within its deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipmi_garbage_on_an_open_session() {
    let rack = hwsim::start(hwsim::config(2)).await;
    for (node, garbage) in rack
        .nodes()
        .iter()
        .zip([Garbage::Truncated, Garbage::WrongSession])
    {
        let driver = driver(DriverKind::Ipmi, node);
        assert!(driver.power_state().await.is_ok());
        set_garbage(&rack, node.name(), garbage).await;
        let started = Instant::now();
        let read = driver.power_state().await;
        let elapsed = started.elapsed();
        assert!(
            matches!(read, Err(DriverError::InvalidResponse(_))),
            "garbage={garbage} on an open session: {read:?}"
        );
        assert!(
            elapsed < CALL_TIMEOUT + Duration::from_millis(500),
            "{elapsed:?}"
        );
    }
    rack.shutdown().await;
}

/// Each variant spoils the Redfish wire as it says, and a fraction of the
/// rack gets it through `POST /faults`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn variants_spoil_the_redfish_wire_and_go_by_fraction() {
    let rack = hwsim::start(hwsim::config(10)).await;
    let http = client();
    let url = control_url(&rack, "/faults");
    let r = http
        .post(url)
        .json(&json!({"fraction": 0.3, "fault": "garbage", "value": "truncated", "seed": 7}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(r.status().is_success());
    let faulted = rack
        .nodes()
        .iter()
        .filter(|n| n.faults().garbage == Some(Garbage::Truncated))
        .count();
    assert_eq!(faulted, 3);

    let node = rack
        .nodes()
        .iter()
        .find(|n| n.faults().garbage.is_none())
        .unwrap_or_else(|| panic!("a node without the fault"));
    let root = format!("http://{}/redfish/v1", node.redfish_addr());
    for (garbage, check) in [
        (Garbage::InvalidJson, "not JSON"),
        (Garbage::WrongTypes, "wrong types"),
        (Garbage::Oversized, "oversized"),
    ] {
        set_garbage(&rack, node.name(), garbage).await;
        let body = http
            .get(&root)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .bytes()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        match check {
            "not JSON" => assert!(serde_json::from_slice::<Value>(&body).is_err()),
            "wrong types" => {
                let v: Value = serde_json::from_slice(&body).unwrap_or_default();
                assert_eq!(v["RedfishVersion"], json!(42), "{v}");
            }
            _ => assert!(body.len() >= 2 * 1024 * 1024, "{}", body.len()),
        }
    }
    set_garbage(&rack, node.name(), Garbage::Truncated).await;
    let cut = http
        .get(&root)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let announced = cut.content_length().unwrap_or_default();
    assert!(announced > 0);
    assert!(
        cut.bytes().await.is_err(),
        "a truncated body must not read whole"
    );
    rack.shutdown().await;
}
