//! The `baton` CLI against a running batond: tables and --json, every node
//! command, and the exit codes (1 API error, 2 usage, 3 unreachable).
#![allow(clippy::unwrap_used)]

use baton_tests::daemon::{baton, inventory, TestDaemon};

const PASSWORD: &str = "cli-pw-4Kd93";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_commands_end_to_end() {
    let d = TestDaemon::start().await;
    let s = d.socket().to_owned();

    let (code, out, err) = baton(
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
            "--password",
            PASSWORD,
            "--power-domain",
            "rack-a",
            "--extra",
            "owner=ops",
        ],
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
    let listed: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["name"], "web-1");

    let (code, out, _) = baton(&s, &["--json", "node", "list", "--limit", "2"]);
    assert_eq!(code, 0);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        2
    );

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
    let shown: serde_json::Value = serde_json::from_str(&out).unwrap();
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
    let shown: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown["power_domain"], serde_json::Value::Null);
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
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["nodes"]["total"],
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
    let envelope: serde_json::Value = serde_json::from_str(err.trim()).unwrap();
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
        let (code, out, err) = baton(std::path::Path::new("/unused"), &["completions", shell]);
        assert_eq!(code, 0, "{err}");
        assert!(
            out.contains("baton") && out.contains("import"),
            "{shell}: {out}"
        );
    }
}
