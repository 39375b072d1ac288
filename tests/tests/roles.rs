//! Peer-credential roles on the socket, end to end: `curl` runs as another
//! uid with chosen groups (`setpriv`, as root — the suite runs as root in
//! CI) against batond, for each route class and each role, including the
//! 403 bodies. The groups are Debian base groups: `adm` holds the admin
//! role, `operator` the operator role, `users` the reader role, and the
//! socket belongs to `staff` (so only members can connect at all).
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use baton_tests::daemon::TestDaemon;

/// A uid no user has, so only the groups given on the command line count.
const CALLER_UID: u32 = 4242;

fn gid(name: &str) -> u32 {
    nix::unistd::Group::from_name(name)
        .unwrap()
        .unwrap_or_else(|| panic!("group {name} (Debian base-passwd) is missing"))
        .gid
        .as_raw()
}

/// What one request as another caller got back.
#[derive(Debug)]
struct Answer {
    status: u16,
    body: serde_json::Value,
}

/// `method path` with `body`, as uid [`CALLER_UID`] with primary group
/// `group` and, when `connect`, supplementary group `staff`. None when the
/// socket refused the connection.
fn call_as(
    socket: &Path,
    group: &str,
    connect: bool,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Option<Answer> {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the role tests run curl as other uids through setpriv, which needs root (CI runs the suite as root)"
    );
    let mut command = Command::new("setpriv");
    command
        .arg(format!("--reuid={CALLER_UID}"))
        .arg(format!("--regid={}", gid(group)));
    if connect {
        command.arg(format!("--groups={}", gid("staff")));
    } else {
        command.arg("--clear-groups");
    }
    command
        .args(["--", "curl", "-q", "-s", "-S", "--unix-socket"])
        .arg(socket)
        .args(["-X", method, "-w", "\n%{http_code}"]);
    if let Some(body) = body {
        command.args([
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            body,
        ]);
    }
    let out = command
        .arg(format!("http://localhost{path}"))
        .output()
        .unwrap();
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        // curl exit 7: could not connect.
        assert_eq!(out.status.code(), Some(7), "curl failed: {stderr}");
        return None;
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let (body, status) = stdout.rsplit_once('\n').unwrap();
    Some(Answer {
        status: status.trim().parse().unwrap(),
        body: serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    })
}

async fn daemon() -> TestDaemon {
    let d = TestDaemon::start_with(|config| {
        config.api.socket_group = "staff".into();
        config.auth.admin_groups = vec!["adm".into()];
        config.auth.operator_groups = vec!["operator".into()];
        config.auth.reader_groups = vec!["users".into()];
    })
    .await;
    // Let other uids reach the socket (the temp dir is 0700).
    std::fs::set_permissions(d.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    d
}

/// Route classes: a read, operator actions, the admin-only node action and
/// admin routes. Nothing is enrolled, so an allowed request on a node gets
/// 404 and an allowed enrollment with an empty body 400.
const REQUESTS: [(&str, &str, Option<&str>, &str); 10] = [
    ("GET", "/v1/nodes", None, "reader"),
    ("GET", "/metrics", None, "reader"),
    (
        "PUT",
        "/v1/nodes/nope/maintenance",
        Some(r#"{"reason": "r"}"#),
        "operator",
    ),
    (
        "PUT",
        "/v1/nodes/nope/states/power",
        Some(r#"{"target": "power off"}"#),
        "operator",
    ),
    (
        "POST",
        "/v1/nodes/nope/action",
        Some(r#"{"os-stop": null}"#),
        "operator",
    ),
    (
        "POST",
        "/v1/baremetalservers/action",
        Some("{}"),
        "operator",
    ),
    (
        "POST",
        "/v1/nodes/nope/action",
        Some(r#"{"os-reset_status": null}"#),
        "admin",
    ),
    ("POST", "/v1/nodes", Some("{}"), "admin"),
    ("DELETE", "/v1/nodes/nope", None, "admin"),
    ("PATCH", "/v1/nodes/nope", Some("[]"), "admin"),
];

fn rank(role: &str) -> u8 {
    match role {
        "reader" => 1,
        "operator" => 2,
        "admin" => 3,
        _ => 0,
    }
}

#[tokio::test]
async fn each_role_may_do_its_routes_and_gets_403_naming_the_role_for_the_rest() {
    let d = daemon().await;
    let socket = d.socket().to_owned();
    let roles = [
        ("adm", "admin"),
        ("operator", "operator"),
        ("users", "reader"),
        ("nogroup", "none"),
    ];
    let mut checks = Vec::new();
    for (group, role) in roles {
        for (method, path, body, needs) in REQUESTS {
            let socket = socket.clone();
            checks.push(tokio::task::spawn_blocking(move || {
                let answer = call_as(&socket, group, true, method, path, body).unwrap();
                (group, role, method, path, needs, answer)
            }));
        }
    }
    for check in checks {
        let (group, role, method, path, needs, answer) = check.await.unwrap();
        let what = format!("{role} ({group}) {method} {path}: {answer:?}");
        if rank(role) >= rank(needs) {
            assert_ne!(answer.status, 403, "{what}");
            continue;
        }
        assert_eq!(answer.status, 403, "{what}");
        let error = &answer.body["error"];
        assert_eq!(error["code"], "forbidden", "{what}");
        assert!(
            error["request_id"].as_str().unwrap().starts_with("req-"),
            "{what}"
        );
        let message = error["message"].as_str().unwrap();
        // The route's own rule is checked first: a reader asking for an
        // admin-only node action is told the route needs an operator.
        let needs = if path.ends_with("/action") && rank(role) < rank("operator") {
            "operator"
        } else {
            needs
        };
        let has = if role == "none" {
            "no role".to_owned()
        } else {
            format!("the {role} role")
        };
        assert!(
            message.starts_with(&format!("uid {CALLER_UID} has {has}; ")),
            "{what}"
        );
        assert!(
            message.contains(&format!("needs the {needs} role (root or a member of ")),
            "{what}"
        );
    }
    d.stop().await;
}

#[tokio::test]
async fn the_socket_is_0660_in_its_group_and_others_cannot_connect() {
    let d = daemon().await;
    let meta = std::fs::metadata(d.socket()).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!((meta.mode() & 0o777, meta.gid()), (0o660, gid("staff")));
    let socket = d.socket().to_owned();
    let refused =
        tokio::task::spawn_blocking(move || call_as(&socket, "adm", false, "GET", "/v1", None))
            .await
            .unwrap();
    assert!(
        refused.is_none(),
        "a caller outside the socket's group connected: {refused:?}"
    );
    // Root is an admin whatever its groups.
    let created = d.call(http::Method::POST, "/v1/nodes", Some("{}")).await;
    assert_eq!(created.status.as_u16(), 400);
    d.stop().await;
}

/// The groups of `[auth]` in a config file for `dir`.
fn write_auth(file: &Path, dir: &Path, operator_groups: &str) {
    let text = format!(
        "[api]\nsocket = {:?}\nsocket_group = \"staff\"\n[state]\ndatabase = {:?}\n\
         [auth]\nadmin_groups = [\"adm\"]\noperator_groups = {operator_groups}\nreader_groups = [\"users\"]\n",
        dir.join("baton.sock").display().to_string(),
        dir.join("baton.db").display().to_string(),
    );
    std::fs::write(file, text).unwrap();
}

#[tokio::test]
async fn a_reload_changes_the_roles_and_an_unknown_group_changes_nothing() {
    let dir = tempfile::TempDir::new().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let file = dir.path().join("batond.toml");
    write_auth(&file, dir.path(), r#"["operator"]"#);
    let config = batond::config::Config::load(&file).unwrap();
    let startup = batond::daemon::Startup {
        config_path: Some(file.clone()),
        ..Default::default()
    };
    let mut daemon = batond::daemon::Daemon::start_with(config, startup)
        .await
        .unwrap();
    let socket = daemon.socket_path().to_owned();
    let maintenance = move || {
        let socket = socket.clone();
        tokio::task::spawn_blocking(move || {
            let body = Some(r#"{"reason": "r"}"#);
            call_as(
                &socket,
                "users",
                true,
                "PUT",
                "/v1/nodes/nope/maintenance",
                body,
            )
            .unwrap()
            .status
        })
    };
    assert_eq!(maintenance().await.unwrap(), 403);

    // `users` becomes an operator group too.
    write_auth(&file, dir.path(), r#"["operator", "users"]"#);
    daemon.reload().await;
    assert_eq!(maintenance().await.unwrap(), 404);

    // An unknown group: the reload fails and the roles stay.
    write_auth(&file, dir.path(), r#"["no-such-group-baton-test"]"#);
    daemon.reload().await;
    assert_eq!(maintenance().await.unwrap(), 404);
    daemon.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_socket_directory_others_may_write_to_is_refused() {
    let dir = tempfile::TempDir::new().unwrap();
    let open = dir.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let mut config = baton_tests::daemon::temp_config(dir.path());
    config.api.socket = open.join("baton.sock");
    let error = batond::daemon::Daemon::start(config)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("is writable by others (mode 0777)") && error.contains("chmod 0750"),
        "{error}"
    );
    assert!(!open.join("baton.sock").exists());
}

#[tokio::test]
async fn a_database_others_can_read_is_refused_with_the_fix() {
    let dir = tempfile::TempDir::new().unwrap();
    let config = baton_tests::daemon::temp_config(dir.path());
    let daemon = batond::daemon::Daemon::start(config.clone()).await.unwrap();
    daemon.shutdown().await.unwrap();
    let database = config.state.database.clone();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&database), 0o600);
    std::fs::set_permissions(&database, std::fs::Permissions::from_mode(0o644)).unwrap();
    let error = batond::daemon::Daemon::start(config)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("can be read by users other than batond's (mode 0644)")
            && error.contains(&format!("chmod 0600 {}", database.display())),
        "{error}"
    );
}
