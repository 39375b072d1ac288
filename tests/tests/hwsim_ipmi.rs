//! hw-sim's IPMI LAN endpoints driven by a client we did not write:
//! `ipmitool -I lanplus` (Debian package `ipmitool`, installed by
//! `scripts/install-test-deps.sh`). Every command of the issue runs with
//! cipher suites 3, 17 and ipmitool's default; each power command is checked
//! against the model's power state and counters, and against Redfish on the
//! same node.
//!
//! A missing ipmitool fails these tests (it is never a skip).

use std::net::SocketAddr;
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use baton_hwsim::config::RackConfig;
use baton_hwsim::model::{
    BootEnabled, BootMode, BootTarget, Credentials, Delays, FaultSetting, Faults, Node, PowerState,
};
use baton_hwsim::rack::Rack;
use baton_hwsim::ExportDriver;

const USER: &str = "admin";
const PASSWORD: &str = "ipmi-secret";

/// Starts a rack of `nodes` serving Redfish and IPMI, powered on, with
/// short power transitions.
async fn rack(nodes: usize) -> Rack {
    start(config(nodes)).await
}

fn config(nodes: usize) -> RackConfig {
    RackConfig {
        nodes,
        ipmi: true,
        credentials: Credentials {
            username: USER.into(),
            password: PASSWORD.into(),
        },
        delays: Delays {
            power_on: Duration::from_millis(50),
            power_off: Duration::from_millis(50),
            shutdown: Duration::from_millis(100),
        },
        ..RackConfig::default()
    }
}

async fn start(config: RackConfig) -> Rack {
    match Rack::start(config).await {
        Ok(rack) => rack,
        Err(e) => panic!("rack starts: {e}"),
    }
}

fn ipmi_addr(node: &Node) -> SocketAddr {
    node.ipmi_addr()
        .unwrap_or_else(|| panic!("{} has an IPMI endpoint", node.name()))
}

/// Runs ipmitool against `node` with cipher suite `suite` (None = its
/// default) and `password`.
async fn ipmitool_as(node: &Node, suite: Option<u8>, password: &str, args: &[&str]) -> Output {
    let addr = ipmi_addr(node);
    let mut cmd = tokio::process::Command::new("ipmitool");
    cmd.args([
        "-I",
        "lanplus",
        "-H",
        &addr.ip().to_string(),
        "-p",
        &addr.port().to_string(),
    ]);
    cmd.args(["-U", USER, "-P", password, "-N", "1", "-R", "3"]);
    if let Some(suite) = suite {
        cmd.args(["-C", &suite.to_string()]);
    }
    cmd.args(args);
    match cmd.output().await {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "ipmitool is not installed: run scripts/install-test-deps.sh (Debian package ipmitool)"
        ),
        Err(e) => panic!("cannot run ipmitool: {e}"),
    }
}

/// Runs ipmitool and requires success; returns stdout.
async fn ipmitool(node: &Node, suite: Option<u8>, args: &[&str]) -> String {
    let out = ipmitool_as(node, suite, PASSWORD, args).await;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "ipmitool {args:?} (suite {suite:?}) failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Polls `check` until it holds or 10 s pass.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn settles_at(node: &Node, state: PowerState) {
    eventually(&format!("{} to be {state}", node.name()), || {
        node.power_state() == state
    })
    .await;
}

/// Runs one `power` subcommand and checks it is exactly one power command.
async fn power(node: &Node, suite: Option<u8>, verb: &str) -> String {
    let before = node.counters().power_commands;
    let out = ipmitool(node, suite, &["power", verb]).await;
    assert_eq!(
        node.counters().power_commands,
        before + 1,
        "power {verb} is one command"
    );
    out
}

async fn power_cycle_every_verb(node: &Node, suite: Option<u8>) {
    settles_at(node, PowerState::On).await;
    let status = ipmitool(node, suite, &["chassis", "status"]).await;
    assert!(status.contains("System Power         : on"), "{status}");
    assert!(ipmitool(node, suite, &["power", "status"])
        .await
        .contains("Chassis Power is on"));

    power(node, suite, "off").await;
    settles_at(node, PowerState::Off).await;
    assert!(ipmitool(node, suite, &["power", "status"])
        .await
        .contains("Chassis Power is off"));

    let boots = node.counters().boots;
    power(node, suite, "on").await;
    settles_at(node, PowerState::On).await;
    assert_eq!(node.counters().boots, boots + 1);
    let status = ipmitool(node, suite, &["chassis", "status"]).await;
    assert!(
        status.contains("Last Power Event     : command"),
        "{status}"
    );

    // A power cycle drops the power (one off), then boots.
    let (offs, boots) = (node.counters().power_offs, node.counters().boots);
    power(node, suite, "cycle").await;
    assert_eq!(
        node.counters().power_offs,
        offs + 1,
        "power dropped at once"
    );
    settles_at(node, PowerState::On).await;
    assert_eq!(node.counters().boots, boots + 1);
    // A hard reset is warm: the host reboots, the power never goes off.
    power(node, suite, "reset").await;
    assert_eq!(node.power_state(), PowerState::On);
    assert_eq!(node.counters().boots, boots + 2);
    assert_eq!(node.counters().power_offs, offs + 1);

    let dumps = node.counters().crash_dumps;
    power(node, suite, "diag").await;
    assert_eq!(node.counters().crash_dumps, dumps + 1);
    assert_eq!(node.power_state(), PowerState::On);

    let offs = node.counters().power_offs;
    power(node, suite, "soft").await;
    assert_ne!(node.power_state(), PowerState::On, "soft off started");
    settles_at(node, PowerState::Off).await;
    assert_eq!(node.counters().power_offs, offs + 1);
    power(node, suite, "on").await;
    settles_at(node, PowerState::On).await;
}

async fn boot_devices(node: &Node, suite: Option<u8>) {
    let cases = [
        ("pxe", BootTarget::Pxe, "Force PXE"),
        (
            "disk",
            BootTarget::Hdd,
            "Force Boot from default Hard-Drive",
        ),
        ("cdrom", BootTarget::Cd, "Force Boot from CD/DVD"),
        ("bios", BootTarget::BiosSetup, "Force Boot into BIOS Setup"),
    ];
    for (device, target, shown) in cases {
        let out = ipmitool(node, suite, &["chassis", "bootdev", device]).await;
        assert!(
            out.contains(&format!("Set Boot Device to {device}")),
            "{out}"
        );
        let boot = node.boot_override();
        assert_eq!(
            (boot.target, boot.enabled, boot.mode),
            (target, BootEnabled::Once, BootMode::Legacy)
        );
        let param = ipmitool(node, suite, &["chassis", "bootparam", "get", "5"]).await;
        assert!(param.contains("Boot Flag Valid"), "{param}");
        assert!(param.contains("Options apply to only next boot"), "{param}");
        assert!(param.contains(shown), "{device}: {param}");
    }
    let out = ipmitool(
        node,
        suite,
        &["chassis", "bootdev", "pxe", "options=persistent,efiboot"],
    )
    .await;
    assert!(out.contains("Set Boot Device to pxe"), "{out}");
    let boot = node.boot_override();
    assert_eq!(
        (boot.target, boot.enabled, boot.mode),
        (BootTarget::Pxe, BootEnabled::Continuous, BootMode::Uefi)
    );
    let param = ipmitool(node, suite, &["chassis", "bootparam", "get", "5"]).await;
    assert!(
        param.contains("Options apply to all future boots"),
        "{param}"
    );
    assert!(param.contains("BIOS EFI boot"), "{param}");
}

async fn identity_and_session(node: &Node, suite: Option<u8>) {
    let mc = ipmitool(node, suite, &["mc", "info"]).await;
    assert!(mc.contains("IPMI Version              : 2.0"), "{mc}");
    assert!(mc.contains("Chassis Device"), "{mc}");
    let session = ipmitool(node, suite, &["session", "info", "active"]).await;
    assert!(
        session.contains("privilege level               : ADMINISTRATOR"),
        "{session}"
    );
    assert!(
        session.contains("session type                  : IPMIv2/RMCP+"),
        "{session}"
    );
    assert!(
        session.contains("console ip                    : 127.0.0.1"),
        "{session}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipmitool_drives_a_node_with_suites_3_17_and_default() {
    let rack = rack(3).await;
    let runs = [Some(3u8), Some(17), None];
    let mut tasks = Vec::new();
    for (node, suite) in rack.nodes().iter().zip(runs) {
        let node = Arc::clone(node);
        tasks.push(tokio::spawn(async move {
            identity_and_session(&node, suite).await;
            power_cycle_every_verb(&node, suite).await;
            boot_devices(&node, suite).await;
        }));
    }
    for task in tasks {
        if let Err(e) = task.await {
            std::panic::resume_unwind(e.into_panic());
        }
    }
    rack.shutdown().await;
}

/// Whether `bootparam get 5` shows valid boot flags.
async fn boot_flags_valid(node: &Node) -> bool {
    let param = ipmitool(node, None, &["chassis", "bootparam", "get", "5"]).await;
    assert!(param.contains("Boot Flag "), "{param}");
    param.contains("Boot Flag Valid")
}

/// Power-cycles `node` over IPMI and returns the device the boot used.
async fn cycle_and_boot(node: &Node) -> BootTarget {
    let boots = node.counters().boots;
    ipmitool(node, None, &["power", "cycle"]).await;
    eventually("the boot of the power cycle", || {
        node.counters().boots > boots
    })
    .await;
    node.last_boot()
}

/// IPMI v2.0 28.12: the BMC clears the boot flags valid bit when no
/// Chassis Control command comes within 60 s (here the configured
/// `boot_flag_valid_timeout`) of the flags being set, unless parameter 3
/// bit 3 says not to; a Chassis Control command in time stops the timer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boot_flags_expire_unless_parameter_3_keeps_them_or_a_chassis_control_comes() {
    let timeout = Duration::from_millis(700);
    let rack = start(RackConfig {
        boot_flag_valid_timeout: timeout,
        ..config(3)
    })
    .await;
    let [expires, kept, controlled] = [0, 1, 2].map(|i| Arc::clone(&rack.nodes()[i]));

    let expires_run = async {
        ipmitool(&expires, None, &["chassis", "bootdev", "pxe"]).await;
        eventually("the valid bit to clear", || {
            expires.counters().boot_flags_expired == 1
        })
        .await;
        assert!(!boot_flags_valid(&expires).await);
        assert_eq!(cycle_and_boot(&expires).await, BootTarget::None);
        // Parameters 6 and 7 as ipmitool reads and writes them; the
        // mailbox read ends at the first block past the end (C9h).
        let info = ipmitool(&expires, None, &["chassis", "bootparam", "get", "6"]).await;
        assert!(info.contains("Session Id     : 00000000h"), "{info}");
        let set = [
            "chassis", "bootmbox", "set", "block", "1", "0", "0xAB", "0xCD",
        ];
        ipmitool(&expires, None, &set).await;
        let mailbox = ipmitool(&expires, None, &["chassis", "bootmbox", "get"]).await;
        assert!(
            mailbox.contains("Block   1 Data : abcd0000") && mailbox.contains("Block   4 Data"),
            "{mailbox}"
        );
    };
    let kept_run = async {
        // `03 08`: keep the valid bit on the timeout (what Ironic sends first).
        ipmitool(&kept, None, &["raw", "0x00", "0x08", "0x03", "0x08"]).await;
        let param3 = ipmitool(&kept, None, &["chassis", "bootparam", "get", "3"]).await;
        assert!(
            param3.contains("Don't automatically clear boot flag valid bit on timeout"),
            "{param3}"
        );
        ipmitool(&kept, None, &["chassis", "bootdev", "pxe"]).await;
        tokio::time::sleep(timeout * 2).await;
        assert!(boot_flags_valid(&kept).await);
        assert_eq!(cycle_and_boot(&kept).await, BootTarget::Pxe);
        assert!(!boot_flags_valid(&kept).await, "a once flag is used up");
    };
    let controlled_run = async {
        ipmitool(
            &controlled,
            None,
            &["chassis", "bootdev", "pxe", "options=persistent"],
        )
        .await;
        ipmitool(&controlled, None, &["power", "on"]).await;
        tokio::time::sleep(timeout * 2).await;
        assert!(boot_flags_valid(&controlled).await);
        assert_eq!(cycle_and_boot(&controlled).await, BootTarget::Pxe);
        assert!(boot_flags_valid(&controlled).await, "persistent flags stay");
    };
    tokio::join!(expires_run, kept_run, controlled_run);
    assert_eq!(
        (
            kept.counters().boot_flags_expired,
            controlled.counters().boot_flags_expired
        ),
        (0, 0)
    );
    rack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_password_and_unsupported_suite_fail_cleanly_and_the_node_keeps_serving() {
    let rack = rack(1).await;
    let node = Arc::clone(&rack.nodes()[0]);
    let out = ipmitool_as(&node, Some(3), "not-the-password", &["chassis", "status"]).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Unable to establish IPMI v2 / RMCP+ session"),
        "{err}"
    );

    let out = ipmitool_as(&node, Some(1), PASSWORD, &["chassis", "status"]).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no matching cipher suite"), "{err}");

    // A User-level session may read but not control power.
    let out = ipmitool_as(&node, Some(3), PASSWORD, &["-L", "USER", "power", "off"]).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Insufficient privilege level"), "{err}");
    assert_eq!(node.power_state(), PowerState::On);

    // The same password is refused while the node has wrong_credentials.
    node.apply_fault(FaultSetting::WrongCredentials);
    assert!(
        !ipmitool_as(&node, Some(17), PASSWORD, &["power", "status"])
            .await
            .status
            .success()
    );
    assert!(node.set_faults(Faults::default()).is_ok());

    assert!(ipmitool(&node, Some(17), &["power", "status"])
        .await
        .contains("Chassis Power is on"));
    assert_eq!(node.counters().power_commands, 0);
    rack.shutdown().await;
}

/// GETs a Redfish resource with basic auth and returns its JSON.
async fn redfish_get(http: &reqwest::Client, url: &str) -> serde_json::Value {
    let rsp = http.get(url).basic_auth(USER, Some(PASSWORD)).send().await;
    let rsp = rsp.unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert!(rsp.status().is_success(), "GET {url}: {}", rsp.status());
    rsp.json()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: body is not JSON: {e}"))
}

/// The URL of the node's (only) ComputerSystem, found through the collection.
async fn system_url(http: &reqwest::Client, base: &str) -> String {
    let systems = redfish_get(http, &format!("{base}/redfish/v1/Systems")).await;
    let id = systems["Members"][0]["@odata.id"]
        .as_str()
        .unwrap_or_else(|| panic!("no system: {systems}"));
    format!("{base}{id}")
}

/// Polls the system's `PowerState` until it is `want` (10 s at most).
async fn redfish_power_becomes(http: &reqwest::Client, system: &str, want: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let state = redfish_get(http, system).await["PowerState"].clone();
        if state == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "Redfish PowerState stayed {state}, wanted {want}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `ipmitool power status` until it reports `want` (10 s at most).
async fn ipmi_power_becomes(node: &Node, want: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let expected = format!("Chassis Power is {want}");
    loop {
        let out = ipmitool(node, Some(3), &["power", "status"]).await;
        if out.contains(&expected) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "ipmitool kept saying {out:?}, wanted {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipmi_and_redfish_share_one_power_model() {
    let rack = rack(1).await;
    let node = Arc::clone(&rack.nodes()[0]);
    let http = reqwest::Client::new();
    let system = system_url(&http, &rack.redfish_url(&node)).await;
    redfish_power_becomes(&http, &system, "On").await;

    // IPMI off, seen by Redfish.
    ipmitool(&node, Some(17), &["power", "off"]).await;
    redfish_power_becomes(&http, &system, "Off").await;

    // Redfish on, seen by IPMI.
    let doc = redfish_get(&http, &system).await;
    let target = doc["Actions"]["#ComputerSystem.Reset"]["target"]
        .as_str()
        .unwrap_or_else(|| panic!("no Reset: {doc}"));
    let base = rack.redfish_url(&node);
    let rsp = http
        .post(format!("{base}{target}"))
        .basic_auth(USER, Some(PASSWORD))
        .json(&serde_json::json!({"ResetType": "On"}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST Reset: {e}"));
    assert!(rsp.status().is_success(), "Reset On: {}", rsp.status());
    ipmi_power_becomes(&node, "on").await;

    // A boot override set over IPMI is Redfish's override too.
    ipmitool(&node, Some(3), &["chassis", "bootdev", "cdrom"]).await;
    let boot = redfish_get(&http, &system).await["Boot"].clone();
    assert_eq!(boot["BootSourceOverrideTarget"], "Cd", "{boot}");
    assert_eq!(boot["BootSourceOverrideEnabled"], "Once", "{boot}");

    // One power command over each protocol, counted once each.
    assert_eq!(node.counters().power_commands, 2);
    rack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_apply_to_the_ipmi_endpoint() {
    let rack = rack(1).await;
    let node = Arc::clone(&rack.nodes()[0]);
    let clear = |node: &Node| assert!(node.set_faults(Faults::default()).is_ok());

    // busy: the session opens, commands answer C0h.
    node.apply_fault(FaultSetting::Busy);
    let out = ipmitool_as(&node, Some(3), PASSWORD, &["-L", "USER", "power", "status"]).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Node busy"), "{err}");
    clear(&node);

    // no_answer: datagrams arrive (and are counted) but nothing comes back.
    node.apply_fault(FaultSetting::NoAnswer);
    let before = node.counters().requests;
    assert!(
        !ipmitool_as(&node, Some(3), PASSWORD, &["-R", "1", "power", "status"])
            .await
            .status
            .success()
    );
    assert!(node.counters().requests > before);
    clear(&node);

    // packet_loss=1: every datagram is lost on the way in.
    node.apply_fault(FaultSetting::PacketLoss(1.0));
    let before = node.counters().requests;
    assert!(
        !ipmitool_as(&node, Some(3), PASSWORD, &["-R", "1", "power", "status"])
            .await
            .status
            .success()
    );
    assert_eq!(node.counters().requests, before);
    clear(&node);

    // slow: still served.
    node.apply_fault(FaultSetting::Slow(Duration::from_millis(100)));
    assert!(ipmitool(&node, Some(3), &["power", "status"])
        .await
        .contains("Chassis Power is on"));
    clear(&node);

    // stuck: the command is accepted and counted, and nothing happens.
    node.apply_fault(FaultSetting::Stuck);
    power(&node, Some(3), "off").await;
    assert_eq!(node.power_state(), PowerState::On);
    clear(&node);

    // hung_os: a soft shutdown never finishes (well past the 100 ms shutdown delay).
    node.apply_fault(FaultSetting::HungOs);
    power(&node, Some(3), "soft").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(node.power_state(), PowerState::ShuttingDown);
    clear(&node);
    settles_at(&node, PowerState::Off).await;
    rack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inventory_and_control_api_carry_the_udp_port() {
    let rack = rack(4).await;
    let entries = rack
        .inventory(ExportDriver::Ipmi, None)
        .unwrap_or_else(|e| panic!("ipmi export: {e}"));
    for (node, entry) in rack.nodes().iter().zip(&entries) {
        let json = serde_json::to_value(entry).unwrap_or_else(|e| panic!("entry serialises: {e}"));
        assert_eq!(json["driver"], "ipmi", "{json}");
        assert_eq!(json["bmc"]["port"], ipmi_addr(node).port(), "{json}");
    }
    let mixed = rack
        .inventory(ExportDriver::Mixed, None)
        .unwrap_or_else(|e| panic!("mixed export: {e}"));
    let drivers: Vec<_> = mixed
        .iter()
        .map(|e| {
            serde_json::to_value(e)
                .map(|j| j["driver"].clone())
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(drivers, ["redfish", "ipmi", "redfish", "ipmi"]);

    // The control API shows each node's UDP port; ipmitool answers on it.
    let control = rack
        .control_url()
        .unwrap_or_else(|| panic!("control API runs"));
    let node = &rack.nodes()[2];
    let url = format!("{control}/nodes/{}", node.name());
    let view: serde_json::Value = match reqwest::get(&url).await {
        Ok(rsp) => rsp
            .json()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}")),
        Err(e) => panic!("GET {url}: {e}"),
    };
    assert_eq!(view["ipmi_port"], ipmi_addr(node).port(), "{view}");
    assert!(ipmitool(node, None, &["power", "status"])
        .await
        .contains("Chassis Power is on"));

    // A power command over IPMI shows in the control API's state and counters.
    ipmitool(node, None, &["power", "off"]).await;
    settles_at(node, PowerState::Off).await;
    let view: serde_json::Value = match reqwest::get(&url).await {
        Ok(rsp) => rsp
            .json()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}")),
        Err(e) => panic!("GET {url}: {e}"),
    };
    assert_eq!(view["power_state"], "off", "{view}");
    assert_eq!(view["counters"]["power_commands"], 1, "{view}");
    rack.shutdown().await;
}
