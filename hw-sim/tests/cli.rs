//! The `baton-hwsim` binary as rigs and demos run it: it comes up, writes the
//! inventory, serves the control API, applies fault flags, refuses bad flags
//! with exit code 2 and a message, and exits cleanly on SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_baton-hwsim");

/// A running simulator, killed on drop if the test did not stop it.
struct Sim {
    child: Child,
    control: String,
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the binary and waits for its banner line naming the control API.
fn spawn(args: &[&str]) -> Sim {
    let mut child = Command::new(BIN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {BIN}: {e}"));
    let stdout = child
        .stdout
        .take()
        .unwrap_or_else(|| panic!("no stdout pipe"));
    let mut lines = BufReader::new(stdout).lines();
    let control = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| {
            l.strip_prefix("baton-hwsim: control API ")
                .map(|u| u.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("baton-hwsim exited before its banner"));
    // Keep draining stdout so that later lines never meet a closed pipe.
    std::thread::spawn(move || lines.for_each(drop));
    Sim { child, control }
}

/// A blocking `GET` returning the JSON body.
fn get(base: &str, path: &str) -> Value {
    let host = base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(host).unwrap_or_else(|e| panic!("connect {host}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap_or_else(|e| panic!("{e}"));
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut reply = String::new();
    stream
        .read_to_string(&mut reply)
        .unwrap_or_else(|e| panic!("{e}"));
    let (head, body) = reply.split_once("\r\n\r\n").unwrap_or_default();
    assert!(head.starts_with("HTTP/1.1 200"), "GET {path}: {head}");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
}

#[test]
fn twenty_nodes_come_up_with_inventory_and_control_api() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let inventory = dir.path().join("inv.json");
    let inventory_arg = inventory.to_string_lossy().into_owned();
    let mut sim = spawn(&[
        "--nodes",
        "20",
        "--control-port",
        "0",
        "--export-inventory",
        &inventory_arg,
        "--export-driver",
        "mixed",
        "--boot-flag-valid-timeout",
        "1500ms",
    ]);
    let entries: Vec<Value> =
        serde_json::from_slice(&std::fs::read(&inventory).unwrap_or_default())
            .unwrap_or_else(|e| panic!("inventory: {e}"));
    assert_eq!(entries.len(), 20);
    let nodes = get(&sim.control, "/nodes");
    let nodes = nodes.as_array().cloned().unwrap_or_default();
    assert_eq!(nodes.len(), 20);
    for (i, (entry, node)) in entries.iter().zip(&nodes).enumerate() {
        assert_eq!(entry["name"], node["name"]);
        let (driver, port) = if i % 2 == 0 {
            ("redfish", &node["redfish_port"])
        } else {
            ("ipmi", &node["ipmi_port"])
        };
        assert_eq!(entry["driver"], driver, "{entry}");
        assert_eq!(&entry["bmc"]["port"], port, "{entry}");
        assert_eq!(entry["bmc"]["username"], "admin");
    }
    let summary = get(&sim.control, "/");
    assert_eq!(summary["power_states"]["on"], 20);
    assert_eq!(summary["boot_flag_valid_timeout"], "1s 500ms");

    let pid = Pid::from_raw(i32::try_from(sim.child.id()).unwrap_or(0));
    kill(pid, Signal::SIGTERM).unwrap_or_else(|e| panic!("{e}"));
    let status = sim.child.wait().unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success(), "SIGTERM must end it cleanly: {status}");
}

#[test]
fn fault_flags_apply_to_a_seeded_fraction_and_to_named_nodes() {
    let sim = spawn(&[
        "--nodes",
        "10",
        "--no-ipmi",
        "--fault",
        "busy",
        "--fault",
        "slow=250ms",
        "--fault-fraction",
        "0.3",
        "--seed",
        "5",
        "--node-fault",
        "node-0009:hung_os",
        "--node-reset-types",
        "node-0002:On,ForceOff",
        "--initial-power",
        "off",
    ]);
    let nodes = get(&sim.control, "/nodes");
    let nodes = nodes.as_array().cloned().unwrap_or_default();
    let busy: Vec<&Value> = nodes
        .iter()
        .filter(|n| n["faults"]["busy"] == true)
        .collect();
    assert_eq!(busy.len(), 3, "30% of 10 nodes");
    for node in &busy {
        assert_eq!(
            node["faults"]["slow"], "250ms",
            "both faults hit the same seeded nodes"
        );
    }
    assert_eq!(nodes[9]["faults"]["hung_os"], true);
    assert_eq!(
        nodes[2]["quirks"]["reset_types"],
        serde_json::json!(["On", "ForceOff"])
    );
    assert_eq!(
        nodes[3]["quirks"]["reset_types"].as_array().map(Vec::len),
        Some(9)
    );
    assert!(nodes.iter().all(|n| n["power_state"] == "off"));
    assert!(nodes.iter().all(|n| n["ipmi_port"].is_null()));
}

#[test]
fn quirk_flags_reach_every_node() {
    let sim = spawn(&[
        "--nodes",
        "2",
        "--no-ipmi",
        "--power-state-style",
        "stale=2s",
        "--shutdown-timeout",
        "300s",
        "--mid-transition",
        "ignore",
        "--boot-patch",
        "all_required,no_continuous",
        "--etag",
        "weak,racy",
        "--session-limit-reply",
        "vendor",
        "--keep-alive-requests",
        "100",
        "--keep-alive-idle",
        "60s",
        "--fault",
        "min_interval=50ms",
    ]);
    let nodes = get(&sim.control, "/nodes");
    let quirks = &nodes[1]["quirks"];
    let want = serde_json::json!({
        "power_state_style": "stale=2s",
        "shutdown_timeout": "5m",
        "mid_transition": "ignore",
        "boot_patch": ["all_required", "no_continuous"],
        "etag": ["weak", "racy"],
        "session_limit_reply": "vendor",
        "keep_alive_requests": 100,
        "keep_alive_idle": "1m",
    });
    for (key, value) in want.as_object().into_iter().flatten() {
        assert_eq!(&quirks[key], value, "{key}");
    }
    assert_eq!(nodes[1]["faults"]["min_interval"], "50ms");
}

fn refused(args: &[&str]) -> String {
    let output = Command::new(BIN)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot start {BIN}: {e}"));
    assert_eq!(
        output.status.code(),
        Some(2),
        "{args:?} must be refused with exit 2"
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn bad_flags_exit_2_saying_what_is_wrong() {
    assert!(refused(&["--fault", "melt"]).contains("no_answer"));
    assert!(refused(&["--fault", "slow"]).contains("slow=<duration>"));
    assert!(refused(&["--nodes", "0"]).contains("nodes must be at least 1"));
    let unknown = refused(&["--nodes", "5", "--node-fault", "node-0099:busy"]);
    assert!(unknown.contains("node-0000..node-0004"), "{unknown}");
    assert!(refused(&["--export-driver", "serial"]).contains("redfish, ipmi, mixed"));
    assert!(refused(&["--reset-types", "On,Explode"]).contains("ForceOff"));
    assert!(refused(&["--node-reset-types", "node-0001:Explode"]).contains("ForceOff"));
    let fraction = refused(&["--fault-fraction", "0.5"]);
    assert!(
        fraction.contains("--fault"),
        "a fraction of no fault: {fraction}"
    );
    let long = refused(&[
        "--power-on-delay",
        "100000000000years",
        "--latency",
        "2days",
    ]);
    assert!(
        long.contains("power-on delay") && long.contains("latency 2days is too long"),
        "{long}"
    );
    assert!(refused(&["--fault", "slow=2days"]).contains("at most 1day"));
    assert!(refused(&["--power-state-style", "fuzzy"]).contains("ideal, binary or stale"));
    assert!(refused(&["--boot-patch", "picky"]).contains("refuse_in_post"));
    assert!(refused(&["--keep-alive-requests", "0"]).contains("at least 1"));
    assert!(refused(&["--fault", "bmc_reboot"]).contains("bmc_reboot=<duration>"));
    assert!(refused(&["--boot-flag-valid-timeout", "0s"]).contains("more than 0"));
    assert!(refused(&["--bind", "::1/64"]).contains("IPv4 only"));
    let crowded = refused(&["--nodes", "300", "--bind", "127.9.9.0/24"]);
    assert!(crowded.contains("256 addresses are left"), "{crowded}");
    let export = refused(&[
        "--no-ipmi",
        "--export-driver",
        "ipmi",
        "--export-inventory",
        "x.json",
    ]);
    assert!(export.contains("serves no IPMI"), "{export}");
    let unknown = refused(&["--nodes", "2", "--node-reset-types", "node-0007:On"]);
    assert!(
        unknown.contains("reset types is for node \"node-0007\""),
        "{unknown}"
    );
}
