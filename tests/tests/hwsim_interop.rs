//! hw-sim against Redfish clients we did not write: python `sushy` drives a
//! node (power off/on, graceful shutdown, boot override, restart), and the
//! DMTF Redfish Service Validator checks every resource against the CSDL
//! schemas offline. Both run from the venv that `scripts/install-test-deps.sh`
//! prepares; a missing peer fails the test and says so.

use std::path::PathBuf;
use std::process::{Command, Output};

use baton_hwsim::{BootEnabled, BootTarget, PowerState, Quirks, ResetReply};
use baton_tests::hwsim::{
    client, config, redfish, send, start, venv_python, workspace_root, PASSWORD, USER,
};
use reqwest::Method;
use serde_json::Value;

fn run(command: &mut Command, what: &str) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}; run scripts/install-test-deps.sh"));
    output
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sushy_drives_power_and_boot_override() {
    let python = venv_python();
    let rack = start(config(2)).await;
    let node = &rack.nodes()[1];
    let script = workspace_root().join("tests/interop/hwsim_sushy.py");
    let mut command = Command::new(&python);
    command
        .arg(&script)
        .args(["--url", &rack.redfish_url(node)])
        .args(["--username", USER, "--password", PASSWORD])
        .args(["--control", &rack.control_url().unwrap_or_default()])
        .args(["--node", node.name()]);
    let output = tokio::task::spawn_blocking(move || run(&mut command, "the sushy script"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "sushy script failed ({}); if sushy is missing run scripts/install-test-deps.sh\nstdout:\n{stdout}\nstderr:\n{}",
        output.status,
        text(&output.stderr)
    );
    let steps: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l:?}: {e}")))
        .collect();
    let step = |name: &str| {
        steps
            .iter()
            .find(|s| s["step"] == name)
            .unwrap_or_else(|| panic!("no step {name} in {stdout}"))
    };

    assert_eq!(step("read")["sushy"]["power_state"], "On");
    for (name, sushy_end, control_end) in [
        ("force_off", "Off", "off"),
        ("on", "On", "on"),
        ("graceful_shutdown", "Off", "off"),
        ("power_on_again", "On", "on"),
    ] {
        let s = step(name);
        let seen = s["sushy"]["states_seen"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(seen.last(), Some(&Value::from(sushy_end)), "{name}: {s}");
        assert_eq!(s["control"]["power_state"], control_end, "{name}: {s}");
    }
    let boot = step("boot_override");
    assert_eq!(boot["sushy"]["target"], "Pxe");
    assert_eq!(boot["control"]["boot_override"]["target"], "Pxe");
    assert_eq!(boot["control"]["boot_override"]["enabled"], "Once");
    let after = step("after_restart");
    assert_eq!(
        after["control"]["last_boot"], "Pxe",
        "the restart booted from PXE once"
    );
    assert_eq!(after["sushy"]["boot_enabled"], "Disabled");

    // The simulator's own record agrees: five power commands, one per reset.
    assert_eq!(node.counters().power_commands, 5);
    assert_eq!(node.power_state(), PowerState::On);
    assert_eq!(node.last_boot(), BootTarget::Pxe);
    assert_eq!(node.boot_override().enabled, BootEnabled::Disabled);
    assert_eq!(rack.nodes()[0].counters().requests, 0);
    rack.shutdown().await;
}

/// The schema folder `scripts/test-deps/20-redfish-schema.sh` links.
fn csdl_dir() -> PathBuf {
    let dir = workspace_root().join(".cache/redfish-csdl");
    assert!(
        dir.join("ServiceRoot_v1.xml").is_file(),
        "{} has no Redfish CSDL schemas: run scripts/install-test-deps.sh",
        dir.display()
    );
    dir
}

/// Parses the validator's summary table: `| PASS | WARN | FAIL | NOT TESTED |`
/// followed by a row of four numbers.
fn summary(stdout: &str) -> Option<[u64; 4]> {
    let mut lines = stdout.lines().skip_while(|l| !l.contains("FAIL"));
    lines.next()?;
    let row = lines.find(|l| l.starts_with('|'))?;
    let numbers: Vec<u64> = row
        .split('|')
        .filter_map(|cell| cell.trim().parse().ok())
        .collect();
    numbers.try_into().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dmtf_service_validator_reports_no_failures() {
    let validator = venv_python().with_file_name("rf_service_validator");
    assert!(
        validator.is_file(),
        "{} not found: run scripts/install-test-deps.sh to install redfish-service-validator",
        validator.display()
    );
    let schemas = csdl_dir();
    let rack = start(config(1)).await;
    let node = &rack.nodes()[0];
    // A 202 reset leaves a Task behind, so Task resources are validated too.
    node.set_quirks(Quirks {
        reset_reply: ResetReply::Task,
        ..Quirks::default()
    });
    let reset = redfish(
        &client(),
        &rack,
        node,
        Method::POST,
        "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset",
    )
    .json(&serde_json::json!({"ResetType": "ForceOff"}));
    assert_eq!(send(reset).await.0, 202);
    let url = rack.redfish_url(node);
    let logs = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut outputs = Vec::new();
    for auth in ["Session", "Basic"] {
        let mut command = Command::new(&validator);
        command
            .args(["--user", USER, "--password", PASSWORD, "--rhost", &url])
            .args(["--authtype", auth, "--skipschema"])
            .arg("--schema_directory")
            .arg(&schemas)
            .arg("--logdir")
            .arg(logs.path().join(auth));
        let output = tokio::task::spawn_blocking(move || run(&mut command, "the DMTF validator"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        outputs.push((auth, output));
    }
    for (auth, output) in outputs {
        let stdout = text(&output.stdout);
        let Some([pass, _warn, fail, _untested]) = summary(&stdout) else {
            panic!(
                "no validator summary ({auth}); is redfish-service-validator installed? run scripts/install-test-deps.sh\nstdout:\n{stdout}\nstderr:\n{}",
                text(&output.stderr)
            );
        };
        assert_eq!(fail, 0, "validator failures with {auth} auth:\n{stdout}");
        assert!(
            pass >= 150,
            "validator checked too little ({pass} passes):\n{stdout}"
        );
        for resource in [
            "/redfish/v1/TaskService/Tasks/1",
            "/redfish/v1/AccountService/Accounts/1",
            "/redfish/v1/AccountService/Roles/ReadOnly",
        ] {
            assert!(
                stdout.contains(&format!("Validating {resource}")),
                "{resource} not validated:\n{stdout}"
            );
        }
        assert!(
            output.status.success(),
            "validator exit {}:\n{stdout}",
            output.status
        );
    }
    rack.shutdown().await;
}
