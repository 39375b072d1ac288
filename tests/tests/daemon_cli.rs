//! The `baton` CLI against a running batond: tables and --json, every node
//! command, typed `set` values and the password kept off argv, paging,
//! multi-node delete, what a wrong `--socket` says, and the exit codes
//! (1 API error, 2 usage, 3 unreachable).
#![allow(clippy::unwrap_used)]

use std::path::Path;

use baton_tests::daemon::{baton, baton_with, inventory, TestDaemon};
use serde_json::Value;

const PASSWORD: &str = "cli-pw-4Kd93";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_commands_end_to_end() {
    let d = TestDaemon::start().await;
    let s = d.socket().to_owned();

    let (code, out, err) = baton_with(
        &s,
        &[
            "node",
            "create",
            "--name",
            "web-1",
            "--driver",
            "ipmi",
            "--address",
            "10.1.0.5",
            "--username",
            "admin",
            "--power-domain",
            "rack-a",
            "--extra",
            "owner=ops",
        ],
        &[("BATON_BMC_PASSWORD", PASSWORD)],
        None,
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("web-1") && out.contains("******") && !out.contains(PASSWORD),
        "{out}"
    );

    let file = d.dir.path().join("inventory.json");
    std::fs::write(&file, inventory("rack-b-", 3, PASSWORD).to_string()).unwrap();
    let (code, out, err) = baton(&s, &["node", "import", file.to_str().unwrap()]);
    assert_eq!((code, out.as_str()), (0, "imported 3 nodes\n"), "{err}");

    let (code, out, _) = baton(&s, &["node", "list"]);
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 5, "{out}");
    assert!(
        lines[0].starts_with("UUID")
            && lines[0].contains("NAME")
            && lines[0].contains("POWER DOMAIN")
    );
    let name_col = lines[0].find("NAME").unwrap();
    assert!(lines
        .iter()
        .skip(1)
        .all(|l| l[name_col..].starts_with("web-1") || l[name_col..].starts_with("rack-b-")));

    let (code, out, _) = baton(&s, &["--json", "node", "list", "--power-domain", "rack-a"]);
    assert_eq!(code, 0);
    let listed: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(listed["nodes"].as_array().unwrap().len(), 1);
    assert_eq!(listed["nodes"][0]["name"], "web-1");
    assert!(listed.get("next").is_none(), "{out}");

    let (code, out, err) = baton(
        &s,
        &[
            "--json",
            "node",
            "set",
            "web-1",
            "bmc/port=6230",
            "extra/slot=7",
            "power_domain=rack-c",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let shown: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown["bmc"]["port"], 6230);
    assert_eq!(shown["extra"]["slot"], 7);
    assert_eq!(shown["power_domain"], "rack-c");

    let (code, out, _) = baton(
        &s,
        &[
            "--json",
            "node",
            "unset",
            "web-1",
            "power_domain",
            "extra/owner",
        ],
    );
    assert_eq!(code, 0);
    let shown: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown["power_domain"], Value::Null);
    assert!(shown["extra"].get("owner").is_none());

    let (code, out, _) = baton(&s, &["node", "show", "web-1"]);
    assert_eq!(code, 0);
    assert!(
        out.lines()
            .any(|l| l.starts_with("bmc ") && l.ends_with("10.1.0.5:6230")),
        "{out}"
    );

    let (code, _, err) = baton(&s, &["node", "set", "web-1", "uuid=x"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("/uuid is read-only") && err.contains("request req-"),
        "{err}"
    );

    let (code, out, _) = baton(&s, &["node", "delete", "web-1", "rack-b-0"]);
    assert_eq!(
        (code, out.as_str()),
        (0, "deleted web-1\ndeleted rack-b-0\n")
    );

    let (code, out, err) = baton(&s, &["conductor", "status"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("nodes") && out.contains("2 (") && out.contains("schema version"),
        "{out}"
    );
    let (code, out, _) = baton(&s, &["--json", "conductor", "status"]);
    assert_eq!(code, 0);
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["nodes"]["total"],
        2
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_and_exit_codes() {
    let d = TestDaemon::start().await;
    let s = d.socket().to_owned();

    let (code, out, err) = baton(&s, &["node", "show", "missing"]);
    assert_eq!(code, 1);
    assert!(out.is_empty());
    assert!(
        err.contains("node missing not found")
            && err.contains("itemNotFound")
            && err.contains("request req-"),
        "{err}"
    );

    let (code, _, err) = baton(&s, &["--json", "node", "show", "missing"]);
    assert_eq!(code, 1);
    let envelope: Value = serde_json::from_str(err.trim()).unwrap();
    assert_eq!(envelope["error"]["code"], "itemNotFound");
    assert!(envelope["error"]["request_id"]
        .as_str()
        .unwrap()
        .starts_with("req-"));

    let bad = d.dir.path().join("bad.json");
    std::fs::write(&bad, "[{\"name\": ").unwrap();
    let (code, _, err) = baton(&s, &["node", "import", bad.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not valid JSON"), "{err}");
    let (code, _, err) = baton(&s, &["node", "import", "/nonexistent/inv.json"]);
    assert_eq!(code, 2, "{err}");

    let (code, _, err) = baton(&s, &["node", "set", "x", "novalue"]);
    assert_eq!(code, 2);
    assert!(err.contains("PATH=VALUE"), "{err}");
    let (code, _, _) = baton(&s, &["node", "frobnicate"]);
    assert_eq!(code, 2);

    let missing = d.dir.path().join("nope.sock");
    let (code, _, err) = baton(&missing, &["node", "list"]);
    assert_eq!(code, 3);
    assert!(err.contains("does not exist"), "{err}");

    // A socket file nobody listens on.
    let dead = d.dir.path().join("dead.sock");
    drop(std::os::unix::net::UnixListener::bind(&dead).unwrap());
    let (code, _, err) = baton(&dead, &["conductor", "status"]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("cannot reach batond"), "{err}");
    d.stop().await;
}

#[test]
fn completions_are_generated() {
    for shell in ["bash", "zsh", "fish"] {
        let (code, out, err) = baton(Path::new("/unused"), &["completions", shell]);
        assert_eq!(code, 0, "{err}");
        assert!(
            out.contains("baton") && out.contains("import"),
            "{shell}: {out}"
        );
    }
    // The closed sets of values are offered.
    let (_, bash, _) = baton(Path::new("/unused"), &["completions", "bash"]);
    assert!(bash.contains("redfish ipmi"), "--driver values");
    assert!(bash.contains("on off error null"), "--power-state values");
}

/// Enrolls `count` nodes named `{prefix}{i}` with `baton node import`.
fn import(d: &TestDaemon, prefix: &str, count: usize) {
    let file = d.dir.path().join(format!("{prefix}inventory.json"));
    std::fs::write(&file, inventory(prefix, count, PASSWORD).to_string()).unwrap();
    let (code, _, err) = baton(d.socket(), &["node", "import", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
}

fn json_of(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

const CREATE_N1: [&str; 12] = [
    "node",
    "create",
    "--name",
    "n1",
    "--driver",
    "redfish",
    "--address",
    "10.1.0.9",
    "--username",
    "admin",
    "--extra",
    "k=7",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_knows_text_fields_and_keeps_the_password_off_argv() {
    let d = TestDaemon::start().await;
    let s = d.socket().to_owned();

    // Without a password source, create says where the password comes from.
    let (code, _, err) = baton(&s, &CREATE_N1);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("BATON_BMC_PASSWORD") && err.contains("--password-stdin"),
        "{err}"
    );
    // A password on argv is refused without being repeated.
    let mut with_argv = CREATE_N1.to_vec();
    with_argv.extend(["--password", "argv-Secret-1"]);
    let (code, _, err) = baton(&s, &with_argv);
    assert_eq!(code, 2, "{err}");
    assert!(
        !err.contains("argv-Secret-1") && err.contains("BATON_BMC_PASSWORD"),
        "{err}"
    );

    let (code, out, err) = baton_with(&s, &CREATE_N1, &[("BATON_BMC_PASSWORD", "111111")], None);
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains("111111"), "{out}");
    assert_eq!(
        d.stored_node("n1")
            .await
            .spec
            .bmc
            .password
            .unwrap()
            .expose(),
        "111111"
    );

    // Text fields stay text whatever they look like; extra is typed the
    // same way on create and on set.
    let (code, out, err) = baton(
        &s,
        &[
            "--json",
            "node",
            "set",
            "n1",
            "power_domain=2",
            "extra/j=7",
            "maintenance=true",
            "maintenance_reason=null",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let shown = json_of(&out);
    assert_eq!(shown["power_domain"], "2");
    assert_eq!(shown["maintenance_reason"], "null");
    assert_eq!(shown["extra"]["k"], 7);
    assert_eq!(shown["extra"]["j"], shown["extra"]["k"]);
    let (code, out, err) = baton(&s, &["--json", "node", "set", "n1", "name=123"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(json_of(&out)["name"], "123");
    let (code, _, err) = baton(&s, &["node", "set", "123", "bmc/port=http"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("bmc/port must be a port number"), "{err}");

    // bmc/password=VALUE on argv is refused and not echoed.
    let (code, _, err) = baton(&s, &["node", "set", "123", "bmc/password=31415926"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        !err.contains("31415926") && err.contains("BATON_BMC_PASSWORD"),
        "{err}"
    );
    assert_eq!(
        d.stored_node("123")
            .await
            .spec
            .bmc
            .password
            .unwrap()
            .expose(),
        "111111"
    );

    // A numeric password from the environment is stored as text.
    let (code, out, err) = baton_with(
        &s,
        &["node", "set", "123", "bmc/password"],
        &[("BATON_BMC_PASSWORD", "31415926")],
        None,
    );
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains("31415926"), "{out}");
    assert_eq!(
        d.stored_node("123")
            .await
            .spec
            .bmc
            .password
            .unwrap()
            .expose(),
        "31415926"
    );
    // Without a source, the bare path is an error, not an empty password.
    let (code, _, err) = baton(&s, &["node", "set", "123", "bmc/password"]);
    assert_eq!(code, 2, "{err}");

    // From stdin: one trailing newline dropped; the environment ignored.
    let (code, _, err) = baton_with(
        &s,
        &["node", "set", "123", "--password-stdin"],
        &[("BATON_BMC_PASSWORD", "not-this-one")],
        Some("2718 28\n"),
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        d.stored_node("123")
            .await
            .spec
            .bmc
            .password
            .unwrap()
            .expose(),
        "2718 28"
    );
    let (code, _, err) = baton_with(
        &s,
        &["node", "set", "123", "--password-stdin"],
        &[],
        Some(""),
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no password"), "{err}");
    assert_eq!(
        d.stored_node("123")
            .await
            .spec
            .bmc
            .password
            .unwrap()
            .expose(),
        "2718 28"
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paged_listings_say_there_is_more_and_how_to_get_it() {
    let d = TestDaemon::start().await;
    let s = d.socket().to_owned();
    import(&d, "p-", 5);

    // --json keeps the API's page: the nodes and the `next` link.
    let (code, out, err) = baton(&s, &["--json", "node", "list", "--limit", "2"]);
    assert_eq!(code, 0, "{err}");
    let page = json_of(&out);
    assert_eq!(page["nodes"].as_array().unwrap().len(), 2);
    let next = page["next"].as_str().unwrap();
    let last = page["nodes"][1]["uuid"].as_str().unwrap();
    assert!(next.contains(&format!("marker={last}")), "{next}");

    // The table says there is more, with the command for the next page.
    let mut seen = Vec::new();
    let mut args: Vec<String> = ["node", "list", "--limit", "2"].map(String::from).to_vec();
    for expected_rows in [2, 2, 1] {
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, out, err) = baton(&s, &argv);
        assert_eq!(code, 0, "{err}");
        let rows: Vec<&str> = out.lines().skip(1).collect();
        assert_eq!(rows.len(), expected_rows, "{out}");
        seen.extend(
            rows.iter()
                .map(|r| r.split_whitespace().nth(1).unwrap().to_owned()),
        );
        let Some(command) = err
            .trim()
            .strip_prefix("more nodes may follow; next page: baton ")
        else {
            assert_eq!(expected_rows, 1, "no hint on a full page: {err}");
            assert!(err.is_empty(), "{err}");
            break;
        };
        args = command.split(' ').map(String::from).collect();
    }
    seen.sort();
    assert_eq!(seen, ["p-0", "p-1", "p-2", "p-3", "p-4"]);

    // Filters are repeated in the hint, with the CLI's spelling.
    let (code, _, err) = baton(
        &s,
        &[
            "node",
            "list",
            "--limit",
            "1",
            "--power-state",
            "null",
            "--driver",
            "redfish",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("--power-state null --driver redfish --limit 1 --marker "),
        "{err}"
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn choices_are_checked_by_the_cli() {
    let d = TestDaemon::start().await;
    let s = d.socket().to_owned();
    import(&d, "c-", 2);

    for (flag, bad, valid) in [
        ("--driver", "telnet", "redfish, ipmi"),
        ("--power-state", "sleeping", "on, off, error, null"),
    ] {
        let (code, _, err) = baton(&s, &["node", "list", flag, bad]);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains(valid), "{err}");
    }
    // `--power-state on` means "power on" (never read nodes are "null").
    let (code, out, err) = baton(&s, &["--json", "node", "list", "--power-state", "on"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(json_of(&out)["nodes"].as_array().unwrap().len(), 0);
    let (code, out, err) = baton(&s, &["--json", "node", "list", "--power-state", "null"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(json_of(&out)["nodes"].as_array().unwrap().len(), 2);
    let (code, _, err) = baton(&s, &["node", "list", "--power-state", "power off"]);
    assert_eq!(code, 0, "{err}");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_goes_on_past_failures_and_errors_name_cli_commands() {
    let d = TestDaemon::start().await;
    let s = d.socket().to_owned();
    import(&d, "node-000", 4);

    let (code, out, err) = baton(
        &s,
        &["node", "delete", "node-0000", "node-001", "node-0002"],
    );
    assert_eq!(code, 1, "{err}");
    assert_eq!(out, "deleted node-0000\ndeleted node-0002\n");
    assert!(
        err.contains("node node-001 not found; did you mean node-0001?")
            && err.contains("`baton node list`")
            && err.contains("1 of 3 nodes failed"),
        "{err}"
    );
    assert!(!err.contains("/v1/"), "{err}");

    let (code, out, err) = baton(&s, &["--json", "node", "delete", "gone", "node-0003"]);
    assert_eq!(code, 1, "{err}");
    let report = json_of(&out);
    assert_eq!(report["deleted"], serde_json::json!(["node-0003"]));
    assert_eq!(report["failed"][0]["node"], "gone");
    assert_eq!(report["failed"][0]["error"]["code"], "itemNotFound");
    let (_, out, _) = baton(&s, &["--json", "node", "list"]);
    let left: Vec<Value> = json_of(&out)["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].clone())
        .collect();
    assert_eq!(left, ["node-0001"]);

    let (code, _, err) = baton(&s, &["node", "show", "NODE-0001"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("did you mean node-0001?") && !err.contains("/v1/"),
        "{err}"
    );

    // One node (an object) given to import: pointed at `baton node create`.
    let one = d.dir.path().join("one.json");
    std::fs::write(
        &one,
        baton_tests::daemon::node_json("solo", PASSWORD).to_string(),
    )
    .unwrap();
    let (code, _, err) = baton(&s, &["node", "import", one.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("`baton node create`") && !err.contains("/v1/"),
        "{err}"
    );
    d.stop().await;
}

#[test]
fn a_wrong_socket_says_what_is_wrong() {
    let dir = tempfile::TempDir::new().unwrap();
    let file = dir.path().join("regular");
    std::fs::write(&file, "").unwrap();
    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    let cases: [(&Path, &str); 4] = [
        (dir.path(), "is a directory, not a socket"),
        (&file, "is a regular file, not a socket"),
        (&stale, "nothing is listening on"),
        (&dir.path().join("absent.sock"), "does not exist"),
    ];
    for (path, says) in cases {
        let (code, _, err) = baton(path, &["node", "list"]);
        assert_eq!(code, 3, "{}: {err}", path.display());
        assert!(
            err.contains(says) && err.contains("--socket") && !err.contains("os error"),
            "{}: {err}",
            path.display()
        );
    }
    let (code, _, err) = baton(&stale, &["node", "list"]);
    assert_eq!(code, 3);
    assert!(err.contains("is batond running?"), "{err}");
}

#[test]
fn every_flag_and_argument_has_help_and_every_command_examples() {
    fn walk(cmd: &clap::Command, path: &str, problems: &mut Vec<String>) {
        let path = format!("{path} {}", cmd.get_name()).trim().to_owned();
        for arg in cmd.get_arguments() {
            let builtin = matches!(arg.get_id().as_str(), "help" | "version");
            if !builtin && !arg.is_hide_set() && arg.get_help().is_none() {
                problems.push(format!("{path}: {} has no help", arg.get_id()));
            }
        }
        let subcommands: Vec<_> = cmd
            .get_subcommands()
            .filter(|c| c.get_name() != "help")
            .collect();
        if subcommands.is_empty() {
            let examples = cmd
                .get_after_help()
                .map(ToString::to_string)
                .is_some_and(|h| h.contains("Examples:\n") && h.contains("baton "));
            if !examples {
                problems.push(format!("{path}: no examples"));
            }
        }
        if cmd.get_about().is_none() && path != "baton" {
            problems.push(format!("{path}: no description"));
        }
        for sub in subcommands {
            walk(sub, &path, problems);
        }
    }
    let mut problems = Vec::new();
    walk(&batond::cli::command(), "", &mut problems);
    assert!(problems.is_empty(), "{problems:#?}");
}
