//! No BMC password anywhere: Redfish and IPMI hw-sim nodes enrolled with
//! one distinctive password — stored (single create, CLI create, import),
//! in a `password_file`, and as the default from the systemd credential —
//! are driven through every path, errors included (wrong credentials,
//! an unreachable BMC, bad requests and patches, a batch, the power sync),
//! with `log.level = "trace"`. Then every response body, every CLI output,
//! batond's whole log and the action records in the database are searched
//! for the password and for what a protocol could leak in its place: its
//! base64 (alone and as Redfish basic auth) and hex forms, and a piece of
//! it (a value cut short).
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::time::Duration;

use baton_hwsim::{ExportDriver, FaultSetting, Faults, Rack};
use baton_tests::daemon::{baton_with, wait_until, DaemonProcess};
use batond::client::Client;
use http::Method;
use nix::sys::signal::Signal;
use serde_json::{json, Value};

const USER: &str = "admin";
/// At most 20 bytes: IPMI's limit.
const PASSWORD: &str = "NoLeak-Zq9XkV-Pw7";

/// The forms of the password that must never appear.
fn forbidden() -> Vec<String> {
    vec![
        PASSWORD.to_owned(),
        // A value cut short (a clipped message, a masked copy).
        PASSWORD[4..14].to_owned(),
        base64(format!("{USER}:{PASSWORD}").as_bytes()),
        base64(PASSWORD.as_bytes()),
        hex(PASSWORD.as_bytes()),
        hex(PASSWORD.as_bytes()).to_uppercase(),
    ]
}

/// Standard base64 without its padding (a prefix of the padded form, and
/// of any longer text encoded with it at a 3-byte boundary).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
        }
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Everything collected, with where it came from.
#[derive(Default)]
struct Seen(Vec<(String, String)>);

impl Seen {
    fn add(&mut self, source: impl Into<String>, text: impl Into<String>) {
        self.0.push((source.into(), text.into()));
    }

    fn assert_clean(&self) {
        let forbidden = forbidden();
        for (source, text) in &self.0 {
            for form in &forbidden {
                assert!(
                    !text.contains(form.as_str()),
                    "{source} holds the password (as {form:?}):\n{}",
                    excerpt(text, form)
                );
            }
        }
    }
}

fn excerpt(text: &str, form: &str) -> String {
    let at = text.find(form).unwrap_or(0);
    let start = text[..at]
        .char_indices()
        .rev()
        .nth(300)
        .map_or(0, |(i, _)| i);
    text[start..].chars().take(700).collect()
}

async fn call(
    client: &Client,
    seen: &mut Seen,
    method: Method,
    path: &str,
    body: Option<String>,
) -> (u16, Value) {
    let response = client
        .request(method.clone(), path, body.map(Into::into))
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&response.body).into_owned();
    seen.add(format!("{method} {path}"), text.clone());
    (
        response.status.as_u16(),
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

fn cli(socket: &Path, seen: &mut Seen, args: &[&str], stdin: Option<&str>) -> i32 {
    let env = [("BATON_BMC_PASSWORD", PASSWORD)];
    let (code, out, err) = baton_with(socket, args, &env, stdin);
    seen.add(format!("baton {}", args.join(" ")), format!("{out}\n{err}"));
    code
}

fn write_secret(path: &Path, contents: &str) {
    std::fs::write(path, contents).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// Waits until no node has a power operation in flight.
async fn settle(client: &Client) {
    wait_until(
        "every operation to end",
        Duration::from_secs(60),
        || async {
            let nodes: Value = client.get("/v1/nodes/detail").await.ok()?;
            nodes["nodes"]
                .as_array()?
                .iter()
                .all(|n| n["target_power_state"].is_null())
                .then_some(())
        },
    )
    .await;
}

/// The rack's inventory, entry `i` changed by `change`.
fn entries(rack: &Rack, dir: &Path) -> Vec<Value> {
    let path = dir.join("inventory.json");
    rack.write_inventory(&path, ExportDriver::Mixed).unwrap();
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[tokio::test]
async fn no_password_in_responses_logs_records_or_cli_output() {
    let dir = tempfile::TempDir::new().unwrap();
    let mut config = baton_tests::hwsim::config(6);
    config.credentials.username = USER.into();
    config.credentials.password = PASSWORD.into();
    config.ipmi = true;
    let rack = baton_tests::hwsim::start(config).await;
    let creds = dir.path().join("creds");
    std::fs::create_dir(&creds).unwrap();
    write_secret(&creds.join("bmc-password"), &format!("{PASSWORD}\n"));
    let pw_file = dir.path().join("bmc-pw");
    write_secret(&pw_file, PASSWORD);
    let mut daemon = DaemonProcess::start_with_env(
        dir.path(),
        "[conductor]\npower_state_change_timeout = \"5s\"\nbmc_timeout = \"1s\"\nmax_retries = 1\n\
         [sync]\ninterval = \"2s\"\nrecovery_interval = \"2s\"\nmax_failures = 2\n\
         [log]\nlevel = \"trace\"\n",
        &[("CREDENTIALS_DIRECTORY", creds.as_path())],
    )
    .await;
    let client = daemon.client();
    let socket = daemon.socket.clone();
    let mut seen = Seen::default();

    // Enrollment: even nodes Redfish, odd ones IPMI.
    let mut inventory = entries(&rack, dir.path());
    let names: Vec<String> = inventory
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_owned())
        .collect();
    let single = inventory.remove(0);
    let (status, _) = call(
        &client,
        &mut seen,
        Method::POST,
        "/v1/nodes",
        Some(single.to_string()),
    )
    .await;
    assert_eq!(status, 201);
    // node 1 from its file, node 2 and 3 from the credential.
    inventory[0]["bmc"]
        .as_object_mut()
        .unwrap()
        .remove("password");
    inventory[0]["bmc"]["password_file"] = json!(pw_file);
    for entry in &mut inventory[1..3] {
        entry["bmc"].as_object_mut().unwrap().remove("password");
    }
    // An invalid import (a bad name) first: refused, entries quoted back.
    let mut bad = inventory.clone();
    bad[3]["name"] = json!("bad name");
    let (status, _) = call(
        &client,
        &mut seen,
        Method::POST,
        "/v1/nodes/import",
        Some(json!(bad).to_string()),
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = call(
        &client,
        &mut seen,
        Method::POST,
        "/v1/nodes/import",
        Some(json!(inventory).to_string()),
    )
    .await;
    assert_eq!(status, 200);
    // Unreachable BMCs: nothing listens there.
    let code = cli(
        &socket,
        &mut seen,
        &[
            "node",
            "create",
            "--name",
            "gone-rf",
            "--driver",
            "redfish",
            "--address",
            "http://127.0.0.1",
            "--port",
            "1",
            "--username",
            USER,
        ],
        None,
    );
    assert_eq!(code, 0);
    let gone_ipmi = json!({"name": "gone-ipmi", "driver": "ipmi",
        "bmc": {"address": "127.0.0.1", "port": 9, "username": USER, "password": PASSWORD}});
    call(
        &client,
        &mut seen,
        Method::POST,
        "/v1/nodes",
        Some(gone_ipmi.to_string()),
    )
    .await;

    // Bad requests carrying the password.
    for body in [
        json!({"name": "bad name", "driver": "ipmi", "bmc": {"address": "h", "username": "u", "password": PASSWORD}}),
        json!({"name": "both", "driver": "ipmi", "bmc": {"address": "h", "username": "u", "password": PASSWORD, "password_file": "/x"}}),
        json!({"name": "extra-key", "driver": "ipmi", "bmc": {"address": "h", "username": "u", "password": PASSWORD, "pasword": PASSWORD}}),
    ] {
        let (status, _) = call(
            &client,
            &mut seen,
            Method::POST,
            "/v1/nodes",
            Some(body.to_string()),
        )
        .await;
        assert_eq!(status, 400);
    }
    call(
        &client,
        &mut seen,
        Method::POST,
        "/v1/nodes",
        Some(format!("{{\"password\": \"{PASSWORD}\"")),
    )
    .await;
    let n0 = &names[0];
    for patch in [
        json!([{"op": "test", "path": "/bmc/password", "value": PASSWORD}]),
        json!([{"op": "copy", "from": "/bmc/password", "path": "/name"}]),
        json!([{"op": "replace", "path": "/bmc/password", "value": PASSWORD}, {"op": "replace", "path": "/uuid", "value": PASSWORD}]),
        json!([{"op": "replace", "path": "/bmc/port", "value": "x"}, {"op": "replace", "path": "/bmc/password", "value": PASSWORD}]),
        json!([{"op": "add", "path": "/bmc/password_file", "value": "relative/pw"}]),
    ] {
        let (status, _) = call(
            &client,
            &mut seen,
            Method::PATCH,
            &format!("/v1/nodes/{n0}"),
            Some(patch.to_string()),
        )
        .await;
        assert_eq!(status, 400, "{patch}");
    }
    let (status, _) = call(
        &client,
        &mut seen,
        Method::PATCH,
        &format!("/v1/nodes/{n0}"),
        Some(json!([{"op": "replace", "path": "/bmc/password", "value": PASSWORD}]).to_string()),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        cli(
            &socket,
            &mut seen,
            &["node", "set", n0, "bmc/password"],
            None
        ),
        0
    );
    assert_ne!(
        cli(
            &socket,
            &mut seen,
            &["node", "set", n0, &format!("bmc/password={PASSWORD}")],
            None
        ),
        0
    );
    assert_eq!(
        cli(
            &socket,
            &mut seen,
            &["node", "set", &names[3], "--password-stdin"],
            Some(&format!("{PASSWORD}\n"))
        ),
        0
    );

    // Power through every driver, then with wrong credentials.
    for name in names
        .iter()
        .chain(["gone-rf".to_owned(), "gone-ipmi".to_owned()].iter())
    {
        call(
            &client,
            &mut seen,
            Method::PUT,
            &format!("/v1/nodes/{name}/states/power"),
            Some(json!({"target": "power off"}).to_string()),
        )
        .await;
    }
    settle(&client).await;
    for name in &names[..2] {
        rack.node(name)
            .unwrap()
            .apply_fault(FaultSetting::WrongCredentials);
    }
    // A reload re-reads the file and the credential, and drops node 1's
    // driver (its IPMI session predates the fault).
    let reloads = || daemon.log_text().matches("default BMC password").count();
    let before = reloads();
    let pid = nix::unistd::Pid::from_raw(i32::try_from(daemon.pid()).unwrap());
    nix::sys::signal::kill(pid, Signal::SIGHUP).unwrap();
    wait_until("the reload", Duration::from_secs(30), || async {
        (reloads() > before).then_some(())
    })
    .await;
    for name in &names[..2] {
        call(
            &client,
            &mut seen,
            Method::PUT,
            &format!("/v1/nodes/{name}/states/power"),
            Some(json!({"target": "power on"}).to_string()),
        )
        .await;
    }
    settle(&client).await;
    for name in &names[..2] {
        let (_, node) = call(
            &client,
            &mut seen,
            Method::GET,
            &format!("/v1/nodes/{name}"),
            None,
        )
        .await;
        assert!(
            node["last_error"]
                .as_str()
                .unwrap_or_default()
                .contains("credentials"),
            "{node}"
        );
    }
    // The sync reads every idle node, failing ones too (and puts them in
    // maintenance after two failures).
    wait_until(
        "a sync sweep to fail on the wrong credentials",
        Duration::from_secs(30),
        || async {
            let node: Value = client.get(&format!("/v1/nodes/{}", names[1])).await.ok()?;
            (node["fault"] == "power failure").then_some(())
        },
    )
    .await;
    for name in &names[..2] {
        rack.node(name)
            .unwrap()
            .set_faults(Faults::default())
            .unwrap();
    }

    // A batch over every node, and the server-action API.
    let servers: Vec<Value> = names.iter().map(|n| json!({"id": n})).collect();
    let (status, job) = call(
        &client,
        &mut seen,
        Method::POST,
        "/v1/baremetalservers/action",
        Some(json!({"os-start": {"servers": servers}}).to_string()),
    )
    .await;
    assert_eq!(status, 200, "{job}");
    call(
        &client,
        &mut seen,
        Method::POST,
        &format!("/v1/nodes/{}/action", names[4]),
        Some(json!({"reboot": {"type": "HARD"}}).to_string()),
    )
    .await;
    settle(&client).await;

    // Every read.
    let job_id = job["job_id"].as_str().unwrap().to_owned();
    for path in [
        "/v1",
        "/v1/nodes",
        "/v1/nodes/detail",
        "/v1/conductor",
        "/metrics",
        "/v1/jobs",
        &format!("/v1/jobs/{job_id}"),
    ] {
        call(&client, &mut seen, Method::GET, path, None).await;
    }
    for name in names
        .iter()
        .chain(["gone-rf".to_owned(), "gone-ipmi".to_owned()].iter())
    {
        call(
            &client,
            &mut seen,
            Method::GET,
            &format!("/v1/nodes/{name}"),
            None,
        )
        .await;
        call(
            &client,
            &mut seen,
            Method::GET,
            &format!("/v1/nodes/{name}/states"),
            None,
        )
        .await;
        let (_, actions) = call(
            &client,
            &mut seen,
            Method::GET,
            &format!("/v1/nodes/{name}/os-instance-actions"),
            None,
        )
        .await;
        for action in actions["instanceActions"].as_array().unwrap() {
            let id = action["request_id"].as_str().unwrap();
            call(
                &client,
                &mut seen,
                Method::GET,
                &format!("/v1/nodes/{name}/os-instance-actions/{id}"),
                None,
            )
            .await;
        }
        cli(&socket, &mut seen, &["node", "show", name], None);
        cli(&socket, &mut seen, &["--json", "node", "show", name], None);
        cli(&socket, &mut seen, &["node", "actions", name], None);
    }
    for args in [
        &["node", "list"][..],
        &["--json", "node", "list"],
        &["job", "list"],
        &["job", "show", &job_id],
        &["conductor", "status"],
        &["--json", "conductor", "status"],
    ] {
        cli(&socket, &mut seen, args, None);
    }
    let status = daemon.stop_with(Signal::SIGTERM);
    assert!(status.success(), "{status:?}");

    // The log, at trace level, and the action records in the database.
    let log = daemon.log_text();
    assert!(log.contains("TRACE"), "trace logging was on");
    assert!(log.contains("config reloaded"), "the reload ran");
    seen.add("batond's log", log);
    let db = rusqlite::Connection::open(dir.path().join("baton.db")).unwrap();
    for (table, sql) in [
        ("actions", "SELECT * FROM actions"),
        ("action_events", "SELECT * FROM action_events"),
        ("jobs", "SELECT * FROM jobs"),
        ("sub_jobs", "SELECT * FROM sub_jobs"),
        (
            "nodes (but the password column)",
            "SELECT last_error, fault, maintenance_reason, \
          bmc_password_file, extra FROM nodes",
        ),
    ] {
        let mut stmt = db.prepare(sql).unwrap();
        let columns = stmt.column_count();
        let rows: Vec<String> = stmt
            .query_map([], |row| {
                Ok((0..columns)
                    .map(|i| format!("{:?}", row.get_ref(i).unwrap()))
                    .collect::<Vec<_>>()
                    .join(" | "))
            })
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert!(!rows.is_empty() || table == "nodes", "{table} has rows");
        seen.add(format!("database table {table}"), rows.join("\n"));
    }
    // The stored password is there, so the search would see it.
    let stored: String = db
        .query_row(
            "SELECT bmc_password FROM nodes WHERE name = ?1",
            [n0],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(stored, PASSWORD);
    seen.assert_clean();
}

#[test]
fn base64_matches_the_rfc_4648_examples() {
    for (plain, encoded) in [
        ("f", "Zg"),
        ("fo", "Zm8"),
        ("foo", "Zm9v"),
        ("foobar", "Zm9vYmFy"),
        ("admin:pw", "YWRtaW46cHc"),
    ] {
        assert_eq!(base64(plain.as_bytes()), encoded);
    }
}
