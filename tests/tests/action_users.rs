//! Action records name their caller: the uid the socket reported and, when
//! the user database knows it, the user name — in the API and in
//! `baton node actions`. Other callers are played by `setpriv` (the suite
//! runs as root): uid 1 (`daemon` in Debian's base-passwd) and uid 4242,
//! which no user has, both in the `operator` group.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use baton_tests::daemon::{baton, TestDaemon};
use http::Method;

fn gid(name: &str) -> u32 {
    nix::unistd::Group::from_name(name)
        .unwrap()
        .unwrap_or_else(|| panic!("group {name} (Debian base-passwd) is missing"))
        .gid
        .as_raw()
}

/// `PUT` or `DELETE /v1/nodes/n1/maintenance` as `uid` in the operator
/// role; returns the body followed by the HTTP status.
fn maintenance_as(socket: &std::path::Path, uid: u32, method: &str) -> String {
    assert!(
        nix::unistd::geteuid().is_root(),
        "runs curl as other uids through setpriv, which needs root (CI runs the suite as root)"
    );
    let mut command = Command::new("setpriv");
    command
        .arg(format!("--reuid={uid}"))
        .arg(format!("--regid={}", gid("operator")))
        .arg(format!("--groups={}", gid("staff")))
        .args(["--", "curl", "-q", "-s", "-S", "-w", "%{http_code}"])
        .args(["-X", method, "--unix-socket"])
        .arg(socket);
    if method == "PUT" {
        command.args([
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            "{}",
        ]);
    }
    let out = command
        .arg("http://localhost/v1/nodes/n1/maintenance")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

// Several threads: curl is waited for on one while batond serves on others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_carry_the_callers_uid_and_user_name() {
    let d = TestDaemon::start_with(|config| {
        config.api.socket_group = "staff".into();
        config.auth.admin_groups = vec!["adm".into()];
        config.auth.operator_groups = vec!["operator".into()];
        config.auth.reader_groups = vec!["users".into()];
    })
    .await;
    std::fs::set_permissions(d.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let node = baton_tests::daemon::node_json("n1", "pw");
    let created = d
        .call(Method::POST, "/v1/nodes", Some(&node.to_string()))
        .await;
    assert_eq!(created.status.as_u16(), 201);
    let answer = maintenance_as(d.socket(), 1, "PUT");
    assert!(answer.ends_with("200"), "{answer}");
    let answer = maintenance_as(d.socket(), 4242, "DELETE");
    assert!(answer.ends_with("200"), "{answer}");

    let listed = d
        .call(Method::GET, "/v1/nodes/n1/os-instance-actions", None)
        .await;
    let body: serde_json::Value = serde_json::from_slice(&listed.body).unwrap();
    let callers: Vec<(String, serde_json::Value)> = body["instanceActions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["user_id"].as_str().unwrap().to_owned(),
                a["user_name"].clone(),
            )
        })
        .collect();
    assert_eq!(
        callers,
        [
            ("4242".to_owned(), serde_json::Value::Null),
            ("1".to_owned(), serde_json::json!("daemon")),
            ("0".to_owned(), serde_json::json!("root")),
        ],
        "{body}"
    );

    let (code, out, err) = baton(d.socket(), &["node", "actions", "n1"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("root (0)") && out.contains("daemon (1)"),
        "{out}"
    );
    assert!(out.contains(" 4242 "), "{out}");
    d.stop().await;
}
