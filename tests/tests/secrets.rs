//! Where a node's BMC password comes from: stored with the node, read from
//! its `bmc.password_file` when the driver is built, or batond's default
//! from the systemd credential in `$CREDENTIALS_DIRECTORY` — checked
//! against hw-sim BMCs that accept only the right password, through the
//! real `batond` binary (reloads are SIGHUP).
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use baton_hwsim::{ExportDriver, Rack};
use baton_tests::daemon::{baton, baton_with, wait_until, DaemonProcess};
use batond::client::Client;
use http::Method;
use nix::sys::signal::Signal;
use serde_json::{json, Value};

/// The simulated BMCs' password.
const PASSWORD: &str = "Sekr3t-pwfile-7Qz";

/// Short timeouts, no sweeps.
const FAST: &str = "[conductor]\npower_state_change_timeout = \"5s\"\nbmc_timeout = \"2s\"\n\
    max_retries = 1\n[sync]\ninterval = \"1h\"\nrecovery_interval = \"1h\"\n";

async fn rack(nodes: usize) -> Rack {
    let mut config = baton_tests::hwsim::config(nodes);
    config.credentials.password = PASSWORD.into();
    config.ipmi = true;
    baton_tests::hwsim::start(config).await
}

/// Writes `contents` to `path` with `mode`.
fn write_secret(path: &Path, contents: &str, mode: u32) {
    std::fs::write(path, contents).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The rack's inventory (even nodes Redfish, odd ones IPMI).
fn inventory(rack: &Rack, dir: &Path) -> Vec<Value> {
    let path = dir.join("inventory.json");
    rack.write_inventory(&path, ExportDriver::Mixed).unwrap();
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `entry` with its password replaced by `password_file`, or dropped.
fn without_password(mut entry: Value, password_file: Option<&Path>) -> Value {
    let bmc = entry["bmc"].as_object_mut().unwrap();
    bmc.remove("password");
    if let Some(file) = password_file {
        bmc.insert("password_file".into(), json!(file));
    }
    entry
}

async fn call(client: &Client, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let response = client
        .request(method, path, body.map(|b| b.to_string().into()))
        .await
        .unwrap();
    let value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
    (response.status.as_u16(), value)
}

/// Asks for `target` on `node` and waits for the operation to end; returns
/// the node as it ended.
async fn power(client: &Client, node: &str, target: &str) -> Value {
    let (status, body) = call(
        client,
        Method::PUT,
        &format!("/v1/nodes/{node}/states/power"),
        Some(json!({"target": target})),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    wait_until(
        "the power operation to end",
        Duration::from_secs(30),
        || async {
            let (_, node) = call(client, Method::GET, &format!("/v1/nodes/{node}"), None).await;
            node["target_power_state"].is_null().then_some(node)
        },
    )
    .await
}

/// Sends SIGHUP and waits until the reload has set the default BMC
/// password again (its log line, at info, comes after).
async fn reload(daemon: &DaemonProcess) {
    let lines = || daemon.log_text().matches("default BMC password").count();
    let before = lines();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(daemon.pid()).unwrap()),
        Signal::SIGHUP,
    )
    .unwrap();
    wait_until("the reload", Duration::from_secs(30), || async {
        (lines() > before).then_some(())
    })
    .await;
}

fn creds_dir(dir: &Path) -> PathBuf {
    let creds = dir.join("creds");
    std::fs::create_dir(&creds).unwrap();
    creds
}

/// Nodes with a password file and nodes with none (using the credential)
/// power on through both protocols; the BMCs booted them. A driver keeps
/// the password it read until a reload; after one, a changed file is read
/// again (wrong password: the BMC refuses, `last_error` says so), and a
/// missing file fails the operation with the key, the path and the fix —
/// tried again, without a reload, at the next operation.
#[tokio::test]
async fn nodes_use_their_password_file_or_the_default_credential() {
    let dir = tempfile::TempDir::new().unwrap();
    let rack = rack(4).await;
    let creds = creds_dir(dir.path());
    write_secret(&creds.join("bmc-password"), &format!("{PASSWORD}\n"), 0o400);
    let files: Vec<PathBuf> = (0..2).map(|i| dir.path().join(format!("pw-{i}"))).collect();
    for file in &files {
        write_secret(file, &format!("{PASSWORD}\n"), 0o600);
    }
    let mut daemon = DaemonProcess::start_with_env(
        dir.path(),
        FAST,
        &[("CREDENTIALS_DIRECTORY", creds.as_path())],
    )
    .await;
    let client = daemon.client();
    let entries: Vec<Value> = inventory(&rack, dir.path())
        .into_iter()
        .enumerate()
        .map(|(i, e)| without_password(e, files.get(i).map(PathBuf::as_path)))
        .collect();
    let names: Vec<String> = entries
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_owned())
        .collect();
    let (status, body) = call(
        &client,
        Method::POST,
        "/v1/nodes/import",
        Some(json!(entries)),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    let (_, shown) = call(
        &client,
        Method::GET,
        &format!("/v1/nodes/{}", names[0]),
        None,
    )
    .await;
    assert_eq!(shown["bmc"]["password_file"], json!(files[0]), "{shown}");
    assert!(shown["bmc"].get("password").is_none(), "{shown}");
    let (_, shown) = call(
        &client,
        Method::GET,
        &format!("/v1/nodes/{}", names[2]),
        None,
    )
    .await;
    assert!(shown["bmc"].get("password").is_none() && shown["bmc"].get("password_file").is_none());

    let seen = |name: &str| rack.node(name).unwrap().counters();
    for name in &names {
        let node = power(&client, name, "power off").await;
        assert_eq!(node["power_state"], "power off", "{name}: {node}");
        assert!(node["last_error"].is_null(), "{name}: {node}");
        assert_eq!(seen(name).power_offs, 1, "{name}'s BMC powered it off");
    }

    // A new password in the file is not read until a reload.
    write_secret(&files[0], "not-the-password\n", 0o600);
    let node = power(&client, &names[0], "power on").await;
    assert_eq!(node["power_state"], "power on", "{node}");
    assert_eq!(seen(&names[0]).boots, 1);
    reload(&daemon).await;
    let node = power(&client, &names[0], "power off").await;
    let error = node["last_error"].as_str().unwrap_or_default();
    // The advice names the file and the reload, not `baton node set`.
    assert!(
        error.contains("refused the credentials")
            && error.contains(&format!("bmc.password_file {}", files[0].display()))
            && error.contains("reload"),
        "{node}"
    );
    assert_eq!(
        seen(&names[0]).power_offs,
        1,
        "refused: no second power off"
    );

    // A missing file (IPMI node, built anew after the reload).
    std::fs::remove_file(&files[1]).unwrap();
    let node = power(&client, &names[1], "power on").await;
    let error = node["last_error"].as_str().unwrap_or_default();
    assert!(
        error.contains("bmc.password_file")
            && error.contains(files[1].to_str().unwrap())
            && error.contains("does not exist"),
        "{node}"
    );
    assert_eq!(seen(&names[1]).boots, 0);
    write_secret(&files[1], PASSWORD, 0o600);
    let node = power(&client, &names[1], "power on").await;
    assert_eq!(node["power_state"], "power on", "{node}");
    assert_eq!(seen(&names[1]).boots, 1);

    let status = daemon.stop_with(Signal::SIGTERM);
    assert!(status.success(), "{status:?}");
}

/// Without a default, a node must bring a password or a file; with both it
/// is refused too. Once the credential appears, a reload makes it the
/// default and such nodes can be enrolled.
#[tokio::test]
async fn a_node_needs_a_password_unless_a_default_is_loaded() {
    let dir = tempfile::TempDir::new().unwrap();
    let creds = creds_dir(dir.path());
    let mut daemon = DaemonProcess::start_with_env(
        dir.path(),
        "",
        &[("CREDENTIALS_DIRECTORY", creds.as_path())],
    )
    .await;
    let client = daemon.client();
    let bare = json!({"name": "bare", "driver": "ipmi",
        "bmc": {"address": "127.0.0.1", "username": "admin"}});
    let (status, body) = call(&client, Method::POST, "/v1/nodes", Some(bare.clone())).await;
    assert_eq!(status, 400, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("bmc.password:") && message.contains("bmc.password_file"),
        "{message}"
    );
    let both = json!({"name": "both", "driver": "ipmi", "bmc": {"address": "127.0.0.1",
        "username": "admin", "password": PASSWORD, "password_file": "/etc/baton/pw"}});
    let (status, body) = call(&client, Method::POST, "/v1/nodes", Some(both)).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("bmc.password_file:"));
    assert!(!body.to_string().contains(PASSWORD), "{body}");

    let stored = json!({"name": "stored", "driver": "ipmi",
        "bmc": {"address": "127.0.0.1", "username": "admin", "password": PASSWORD}});
    assert_eq!(
        call(&client, Method::POST, "/v1/nodes", Some(stored))
            .await
            .0,
        201
    );
    let remove = json!([{"op": "remove", "path": "/bmc/password"}]);
    let (status, body) = call(
        &client,
        Method::PATCH,
        "/v1/nodes/stored",
        Some(remove.clone()),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let to_file = json!([{"op": "remove", "path": "/bmc/password"},
        {"op": "add", "path": "/bmc/password_file", "value": "/etc/baton/pw"}]);
    let (status, body) = call(&client, Method::PATCH, "/v1/nodes/stored", Some(to_file)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["bmc"]["password_file"], "/etc/baton/pw", "{body}");
    assert!(body["bmc"].get("password").is_none(), "{body}");

    write_secret(&creds.join("bmc-password"), PASSWORD, 0o400);
    reload(&daemon).await;
    let (status, body) = call(&client, Method::POST, "/v1/nodes", Some(bare)).await;
    assert_eq!(status, 201, "{body}");

    // The CLI enrolls without a stored password, either way.
    let create = |name: &str, how: &[&str]| {
        let mut args = vec!["node", "create", "--name", name, "--driver", "ipmi"];
        args.extend(["--address", "127.0.0.1", "--username", "admin"]);
        args.extend(how);
        baton(&daemon.socket, &args)
    };
    let (code, _, err) = create("cli-default", &["--default-password"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = create("cli-file", &["--password-file", "/etc/baton/bmc/cli-file"]);
    assert_eq!(code, 0, "{err}");
    let (_, shown, _) = baton(&daemon.socket, &["node", "show", "cli-file"]);
    assert!(
        shown.contains("from file /etc/baton/bmc/cli-file"),
        "{shown}"
    );
    let (_, shown, _) = baton(&daemon.socket, &["node", "show", "cli-default"]);
    assert!(shown.contains("batond's default"), "{shown}");
    // `set` switches between a stored password and a file either way.
    let (code, _, err) = baton(
        &daemon.socket,
        &["node", "set", "cli-file", "--password-stdin"],
    );
    assert_ne!(code, 0, "no stdin: {err}");
    let (code, _, err) = baton_with(
        &daemon.socket,
        &["node", "set", "cli-file", "--password-stdin"],
        &[],
        Some("pw-from-stdin\n"),
    );
    assert_eq!(code, 0, "{err}");
    let (_, shown, _) = baton(&daemon.socket, &["node", "show", "cli-file"]);
    assert!(shown.contains("******"), "{shown}");
    let (code, _, err) = baton(
        &daemon.socket,
        &[
            "node",
            "set",
            "cli-file",
            "bmc/password_file=/etc/baton/bmc/again",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let (_, shown, _) = baton(&daemon.socket, &["node", "show", "cli-file"]);
    assert!(shown.contains("from file /etc/baton/bmc/again"), "{shown}");
    let (code, _, err) = create("cli-none", &[]);
    assert_ne!(code, 0, "no password anywhere is a usage error");
    assert!(err.contains("BATON_BMC_PASSWORD"), "{err}");
    let status = daemon.stop_with(Signal::SIGTERM);
    assert!(status.success(), "{status:?}");
    assert!(daemon.log_text().contains("default BMC password loaded"));
}

/// A credential that is there but unusable (readable by everyone) stops
/// the start with a message naming it and the fix, not the password.
#[tokio::test]
async fn an_unusable_credential_stops_the_start() {
    let dir = tempfile::TempDir::new().unwrap();
    let creds = creds_dir(dir.path());
    write_secret(&creds.join("bmc-password"), PASSWORD, 0o644);
    let mut daemon = DaemonProcess::spawn_with_env(
        dir.path(),
        "[log]\nlevel = \"trace\"\n",
        &[("CREDENTIALS_DIRECTORY", creds.as_path())],
    );
    let status = daemon.wait_exit(Duration::from_secs(20));
    assert_eq!(status.code(), Some(1));
    let log = daemon.log_text();
    assert!(
        log.contains("credential bmc-password") && log.contains("chmod o-rwx"),
        "{log}"
    );
    assert!(!log.contains(PASSWORD), "{log}");
}
