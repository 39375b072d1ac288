//! One address per BMC: a 1000-node rack on 127.77.0.0/16, every node on the
//! same Redfish (HTTPS) and IPMI ports at its own address, reached by curl
//! and ipmitool (Debian packages, installed by `scripts/install-test-deps.sh`)
//! as a client would reach a real BMC network; the inventory names each
//! node's own address.

use std::net::IpAddr;
use std::process::Command;

use baton_hwsim::{ExportDriver, Node, Rack};
use baton_tests::hwsim::{config, start, PASSWORD, USER};
use serde_json::Value;

/// Ports no other test uses, on an address range no other test uses.
const REDFISH_PORT: u16 = 24_443;
const IPMI_PORT: u16 = 24_623;
const NODES: usize = 1000;

async fn range_rack() -> Rack {
    let mut cfg = config(NODES);
    cfg.bind = IpAddr::from([127, 77, 0, 0]);
    cfg.bind_prefix = Some(16);
    cfg.redfish_base_port = Some(REDFISH_PORT);
    cfg.ipmi_base_port = Some(IPMI_PORT);
    cfg.tls = true;
    start(cfg).await
}

fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} (run scripts/install-test-deps.sh): {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn curl_system(node: &Node, ca: &str) -> Value {
    let url = format!("https://{}/redfish/v1/Systems/1", node.redfish_addr());
    let credentials = format!("{USER}:{PASSWORD}");
    let body = run(
        "curl",
        &["-sS", "--fail", "--cacert", ca, "-u", &credentials, &url],
    );
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{url}: {e}: {body}"))
}

fn ipmitool_power(node: &Node) -> String {
    let addr = node
        .ipmi_addr()
        .unwrap_or_else(|| panic!("{} serves IPMI", node.name()));
    let (host, port) = (addr.ip().to_string(), addr.port().to_string());
    run(
        "ipmitool",
        &[
            "-I", "lanplus", "-H", &host, "-p", &port, "-U", USER, "-P", PASSWORD, "-N", "1", "-R",
            "3", "power", "status",
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rack_on_an_address_range_answers_each_node_at_its_own_address() {
    let rack = range_rack().await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let inventory = dir.path().join("inventory.json");
    rack.write_inventory(&inventory, ExportDriver::Mixed)
        .unwrap_or_else(|e| panic!("{e}"));
    let entries: Vec<Value> =
        serde_json::from_slice(&std::fs::read(&inventory).unwrap_or_default())
            .unwrap_or_else(|e| panic!("{e}"));
    let ca = dir.path().join("inventory-ca.pem");
    let ca = ca.to_string_lossy().into_owned();

    for index in [0, 1, 257, 998, 999] {
        let node = &rack.nodes()[index];
        let address = format!("127.77.{}.{}", index / 256, index % 256);
        assert_eq!(
            node.redfish_addr().to_string(),
            format!("{address}:{REDFISH_PORT}")
        );
        let entry = &entries[index];
        let port = if index % 2 == 0 {
            REDFISH_PORT
        } else {
            IPMI_PORT
        };
        assert_eq!(
            (
                entry["bmc"]["address"].as_str(),
                entry["bmc"]["port"].as_u64()
            ),
            (Some(address.as_str()), Some(u64::from(port))),
            "{entry}"
        );

        let before = node.counters().requests;
        let ca = ca.clone();
        let node_for_tools = std::sync::Arc::clone(node);
        let (system, power) = tokio::task::spawn_blocking(move || {
            let system = curl_system(&node_for_tools, &ca);
            (system, ipmitool_power(&node_for_tools))
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            system["Name"],
            node.name(),
            "the node at {address} answered"
        );
        assert!(power.contains("Chassis Power is on"), "{power}");
        assert!(
            node.counters().requests > before + 1,
            "{} saw the requests",
            node.name()
        );
    }
    let touched: u64 = rack.nodes().iter().map(|n| n.counters().requests).sum();
    let on_touched: u64 = [0, 1, 257, 998, 999]
        .iter()
        .map(|&i| rack.nodes()[i].counters().requests)
        .sum();
    assert_eq!(touched, on_touched, "no other node was reached");
    rack.shutdown().await;
}
