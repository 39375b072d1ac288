//! The `baton` CLI's power, boot, action, lock, maintenance and action-log
//! commands end to end: the CLI binary through batond's socket to simulated
//! Redfish and IPMI BMCs, checked against what hw-sim saw.
#![allow(clippy::unwrap_used)]

use baton_hwsim::{BootEnabled, BootTarget, Faults};
use baton_tests::daemon::baton;
use baton_tests::fleet::Fleet;
use serde_json::Value;

/// Runs `baton` off the async workers (batond and hw-sim run on them).
async fn cli(fleet: &Fleet, args: &[&str]) -> (i32, String, String) {
    let socket = fleet.daemon.socket().to_owned();
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        baton(&socket, &args)
    })
    .await
    .unwrap()
}

/// `baton`, expecting exit 0; returns stdout.
async fn ok(fleet: &Fleet, args: &[&str]) -> String {
    let (code, out, err) = cli(fleet, args).await;
    assert_eq!(code, 0, "baton {args:?}: {err}\n{out}");
    out
}

fn json_of(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// `node power … --wait` on a Redfish and an IPMI node: the final state on
/// stdout, one BMC command per change, none when already there; without
/// `--wait` the accepted request points at `node actions`; the action form
/// (`os-stop --type HARD`) does the same through `POST …/action`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_changes_wait_for_the_outcome() {
    let fleet = Fleet::start(2, |_| {}).await;
    for index in 0..2 {
        let name = fleet.name(index);
        let before = fleet.counters(&name).power_commands;

        let out = ok(&fleet, &["node", "power", &name, "off", "--wait"]).await;
        assert_eq!(out, format!("{name}: power off (reached power off)\n"));
        assert!(!fleet.sim_power_on(&name));
        assert_eq!(fleet.counters(&name).power_commands, before + 1);

        let out = ok(&fleet, &["node", "power", &name, "off", "--wait"]).await;
        assert_eq!(out, format!("{name}: power off (already power off)\n"));
        assert_eq!(fleet.counters(&name).power_commands, before + 1);

        // Without --wait: accepted, with the command that shows the outcome.
        let out = ok(&fleet, &["node", "power", &name, "on"]).await;
        let follow = format!("`baton node actions {name} req-");
        assert!(
            out.contains("start accepted, going to power on") && out.contains(&follow),
            "{out}"
        );
        let request_id = out
            .split_whitespace()
            .find(|w| w.starts_with("req-"))
            .unwrap()
            .trim_end_matches([')', '`'])
            .to_owned();
        fleet.settled(&name).await;
        assert!(fleet.sim_power_on(&name));
        let out = ok(&fleet, &["node", "actions", &name, &request_id]).await;
        assert!(
            out.contains("result      Success") && out.contains("bmc_power_on"),
            "{out}"
        );

        let out = ok(
            &fleet,
            &[
                "--json", "node", "action", &name, "os-stop", "--type", "HARD", "--wait",
            ],
        )
        .await;
        let record = json_of(&out);
        assert_eq!(record["action"], "stop");
        assert_eq!(record["message"], "reached power off");
        assert!(!fleet.sim_power_on(&name));
        assert_eq!(fleet.counters(&name).power_commands, before + 3);
        ok(&fleet, &["node", "action", &name, "os-start", "--wait"]).await;
        assert!(fleet.sim_power_on(&name));

        // The node view shows what the conductor learned of its timing.
        let out = ok(&fleet, &["node", "show", &name]).await;
        let learned = out
            .lines()
            .find(|l| l.starts_with("learned power off"))
            .unwrap_or_else(|| panic!("no learned timing in {out}"));
        assert!(
            learned.trim_end().ends_with('s') && !learned.contains(" -"),
            "{learned}"
        );
    }
    assert!(fleet.rack.stats().max_concurrent_per_bmc <= 1);
    fleet.stop().await;
}

/// A failed operation waited for exits 1 with batond's message and the
/// command to see its events; `--timeout` bounds the wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_operation_exits_1_with_its_message() {
    // Nodes 0 and 1 (Redfish, IPMI) ignore power commands; 2 and 3 refuse
    // the password (set before any session exists, which would outlive it).
    let fleet = Fleet::start(4, |_| {}).await;
    for index in 0..4 {
        let name = fleet.name(index);
        let stuck = index < 2;
        let faults = Faults {
            stuck,
            wrong_credentials: !stuck,
            ..Faults::default()
        };
        fleet.rack.node(&name).unwrap().set_faults(faults).unwrap();
    }
    for index in 0..2 {
        let name = fleet.name(index);
        let (code, out, err) = cli(
            &fleet,
            &["node", "power", &name, "off", "--wait", "--timeout", "1"],
        )
        .await;
        assert_eq!(code, 1, "{out}{err}");
        assert!(out.is_empty(), "{out}");
        assert!(
            err.contains(&format!("node {name}: stop failed: "))
                && err.contains("did not reach power off within 1s")
                && err.contains(&format!("`baton node actions {name} req-")),
            "{err}"
        );
        assert!(fleet.sim_power_on(&name), "stuck: the BMC ignored it");
    }
    for index in 2..4 {
        let name = fleet.name(index);
        let (code, _, err) =
            cli(&fleet, &["--json", "node", "power", &name, "off", "--wait"]).await;
        assert_eq!(code, 1, "{err}");
        let envelope = json_of(err.trim());
        assert_eq!(envelope["error"]["code"], "operationFailed");
        let last_error = fleet.states(&name).await.last_error.unwrap();
        assert!(
            envelope["error"]["message"]
                .as_str()
                .unwrap()
                .contains(&last_error),
            "{envelope} vs {last_error}"
        );
        assert!(fleet.sim_power_on(&name));
    }
    fleet.stop().await;
}

/// Lock and maintenance refuse power changes with a message naming the CLI
/// command that lifts them, and that command works; the BMC sees nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_and_maintenance_refusals_name_the_way_out() {
    let fleet = Fleet::start(1, |_| {}).await;
    let name = fleet.name(0);

    let out = ok(
        &fleet,
        &["node", "lock", &name, "--reason", "firmware update"],
    )
    .await;
    assert!(
        out.lines()
            .any(|l| l.starts_with("locked") && l.ends_with("true")),
        "{out}"
    );
    let (code, _, err) = cli(&fleet, &["node", "power", &name, "off"]).await;
    assert_eq!(code, 1, "{err}");
    let unlock = format!("baton node unlock {name}");
    assert!(
        err.contains("firmware update") && err.contains(&unlock),
        "{err}"
    );
    ok(&fleet, &unlock.split(' ').skip(1).collect::<Vec<_>>()).await;

    let out = ok(
        &fleet,
        &[
            "node",
            "maintenance",
            &name,
            "on",
            "--reason",
            "replacing a DIMM",
        ],
    )
    .await;
    assert!(out.contains("replacing a DIMM"), "{out}");
    let (code, _, err) = cli(&fleet, &["node", "action", &name, "reboot"]).await;
    assert_eq!(code, 1, "{err}");
    let leave = format!("baton node maintenance {name} off");
    assert!(err.contains(&leave), "{err}");
    let (code, _, err) = cli(
        &fleet,
        &["node", "maintenance", &name, "off", "--reason", "x"],
    )
    .await;
    assert_eq!(code, 2, "{err}");
    let out = ok(&fleet, &leave.split(' ').skip(1).collect::<Vec<_>>()).await;
    assert!(
        out.lines()
            .any(|l| l.starts_with("maintenance ") && l.ends_with("false")),
        "{out}"
    );

    assert_eq!(fleet.counters(&name).power_commands, 0);
    let log = ok(&fleet, &["node", "actions", &name]).await;
    for action in ["lock", "unlock", "maintenance", "end_maintenance"] {
        assert!(
            log.lines()
                .any(|l| l.split_whitespace().nth(1) == Some(action)),
            "{action}: {log}"
        );
    }
    fleet.stop().await;
}

/// `node boot` sets the override the BMC reports (once or persistent, over
/// Redfish and IPMI); bad values and flags are usage errors; the action log
/// tells a missing node from a missing action.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boot_devices_reach_the_bmc_and_bad_input_is_refused() {
    let fleet = Fleet::start(2, |_| {}).await;
    for index in 0..2 {
        let name = fleet.name(index);
        let out = ok(&fleet, &["node", "boot", &name, "pxe"]).await;
        assert!(
            out.lines()
                .any(|l| l.starts_with("boot device") && l.ends_with("pxe")),
            "{out}"
        );
        let set = fleet.rack.node(&name).unwrap().boot_override();
        assert_eq!(
            (set.target, set.enabled),
            (BootTarget::Pxe, BootEnabled::Once)
        );
        ok(&fleet, &["node", "boot", &name, "disk", "--persistent"]).await;
        let set = fleet.rack.node(&name).unwrap().boot_override();
        assert_eq!(
            (set.target, set.enabled),
            (BootTarget::Hdd, BootEnabled::Continuous)
        );
    }
    let name = fleet.name(0);
    for (args, says) in [
        (
            vec!["node", "power", &name, "sideways"],
            "on, off, reboot, soft-off, soft-reboot, cycle",
        ),
        (vec!["node", "boot", &name, "usb"], "pxe, disk, cdrom, bios"),
        (vec!["node", "action", &name, "explode"], "os-reset_status"),
        (
            vec!["node", "action", &name, "os-start", "--type", "HARD"],
            "--type goes with os-stop and reboot",
        ),
        (
            vec!["node", "action", &name, "os-stop", "--type", "GENTLE"],
            "SOFT, HARD",
        ),
        (
            vec!["node", "power", &name, "off", "--timeout", "0"],
            "--timeout",
        ),
    ] {
        let (code, _, err) = cli(&fleet, &args).await;
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    let (code, _, err) = cli(&fleet, &["node", "actions", &name, "req-nope"]).await;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("action req-nope not found") && !err.contains("did you mean"),
        "{err}"
    );
    let typo = name.replace("node-", "nodes-");
    let (code, _, err) = cli(&fleet, &["node", "actions", &typo]).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(&format!("did you mean {name}?")), "{err}");
    let (code, _, err) = cli(&fleet, &["node", "power", &typo, "on"]).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(&format!("did you mean {name}?")), "{err}");

    // An IPMI BMC cannot soft-reboot: refused before anything is sent.
    let ipmi = fleet.name(1);
    let (code, _, err) = cli(&fleet, &["node", "power", &ipmi, "soft-reboot"]).await;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("cannot do") && err.contains("notAcceptable"),
        "{err}"
    );
    fleet.stop().await;
}

/// On a terminal, `--wait` shows a spinner on stderr while it waits, then
/// clears it; the final line is the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_spins_on_a_terminal() {
    let fleet = Fleet::start(1, |_| {}).await;
    let name = fleet.name(0);
    let baton_bin = baton_tests::daemon::workspace_bin("baton");
    let command = format!(
        "{} --socket {} node power {name} off --wait",
        baton_bin.display(),
        fleet.daemon.socket().display()
    );
    // `script` runs the command on a pseudo-terminal and copies what it
    // wrote (stdout and stderr) to its own stdout.
    let output = tokio::process::Command::new("script")
        .args(["--quiet", "--return", "--command", &command, "/dev/null"])
        .env_remove("BATON_SOCKET")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}");
    assert!(
        text.contains(&format!("⠋ {name}: stop to power off")) && text.contains("\r\u{1b}[K"),
        "{text:?}"
    );
    assert!(
        text.contains(&format!("{name}: power off (reached power off)")),
        "{text:?}"
    );
    fleet.stop().await;
}
