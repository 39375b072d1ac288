//! The real `batond` binary: config checking, owning its socket (stale
//! sockets replaced, live ones not), clean stop on SIGTERM, and no BMC
//! password in its log even at trace level.
#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::time::Duration;

use baton_tests::daemon::{inventory, workspace_bin, DaemonProcess};
use bytes::Bytes;
use http::Method;
use nix::sys::signal::Signal;

/// At most 18 bytes: an IPMI node gets it with "-2" appended (IPMI: 20).
const PASSWORD: &str = "trace-pw-Hq27s-sec";

#[test]
fn check_config_names_every_bad_key() {
    let dir = tempfile::TempDir::new().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[api]\nsocket = 5\n[conductor]\nworkers = \"many\"\n").unwrap();
    let out = Command::new(workspace_bin("batond"))
        .arg("--check-config")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("api.socket") && err.contains("conductor.workers"),
        "{err}"
    );

    let good = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/batond.toml");
    let out = Command::new(workspace_bin("batond"))
        .arg("--check-config")
        .arg(good)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = Command::new(workspace_bin("batond"))
        .arg("--config")
        .arg(dir.path().join("none.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read config file"));
}

#[tokio::test]
async fn password_never_reaches_the_log_at_trace_level() {
    let dir = tempfile::TempDir::new().unwrap();
    let mut daemon =
        DaemonProcess::start(dir.path(), "[log]\nlevel = \"trace\"\nformat = \"json\"\n").await;
    let client = daemon.client();
    let body = Bytes::from(inventory("t-", 50, PASSWORD).to_string());
    let r = client
        .request(Method::POST, "/v1/nodes/import", Some(body))
        .await
        .unwrap();
    assert!(r.status.is_success());
    let one = serde_json::json!({"name": "solo", "driver": "ipmi",
        "bmc": {"address": "10.0.0.9", "username": "u", "password": PASSWORD}});
    client
        .request(Method::POST, "/v1/nodes", Some(one.to_string().into()))
        .await
        .unwrap();
    let patch =
        format!(r#"[{{"op": "replace", "path": "/bmc/password", "value": "{PASSWORD}-2"}}]"#);
    let r = client
        .request(Method::PATCH, "/v1/nodes/solo", Some(patch.into()))
        .await
        .unwrap();
    assert!(r.status.is_success());
    let bad = format!(
        r#"{{"name": "bad name", "driver": "ipmi", "bmc": {{"address": "a", "username": "u", "password": "{PASSWORD}"}}}}"#
    );
    client
        .request(Method::POST, "/v1/nodes", Some(bad.into()))
        .await
        .unwrap();
    for path in [
        "/v1/nodes/detail",
        "/v1/nodes/solo",
        "/v1/conductor",
        "/metrics",
    ] {
        let r = client.request(Method::GET, path, None).await.unwrap();
        assert!(
            !String::from_utf8_lossy(&r.body).contains(PASSWORD),
            "{path} leaked the password"
        );
    }
    let status = daemon.stop_with(Signal::SIGTERM);
    assert!(status.success(), "{status:?}");
    let log = daemon.log_text();
    assert!(
        log.contains("\"level\":\"TRACE\"") || log.contains("\"level\":\"DEBUG\""),
        "trace logging was on"
    );
    assert!(log.contains("request"), "requests were logged: {log}");
    assert!(!log.contains(PASSWORD), "password found in the log");
    assert!(!daemon.socket.exists(), "SIGTERM removed the socket");
}

#[tokio::test]
async fn a_second_daemon_refuses_a_live_socket_and_a_stale_one_is_replaced() {
    let dir = tempfile::TempDir::new().unwrap();
    let mut first = DaemonProcess::start(dir.path(), "").await;

    let mut second = DaemonProcess::spawn(dir.path(), "");
    let status = second.wait_exit(Duration::from_secs(20));
    assert_eq!(status.code(), Some(1));
    let log = second.log_text();
    assert!(log.contains("already serving"), "{log}");
    let r = first
        .client()
        .request(Method::GET, "/v1", None)
        .await
        .unwrap();
    assert!(r.status.is_success(), "the first daemon still serves");

    // kill -9 leaves the socket file behind; the next start replaces it.
    first.stop_with(Signal::SIGKILL);
    assert!(
        first.socket.exists(),
        "a killed daemon leaves its socket file"
    );
    let third = DaemonProcess::start(dir.path(), "").await;
    let r = third
        .client()
        .request(Method::GET, "/v1/conductor", None)
        .await
        .unwrap();
    assert!(r.status.is_success());
}

#[tokio::test]
async fn a_non_socket_file_is_never_replaced() {
    let dir = tempfile::TempDir::new().unwrap();
    std::fs::write(dir.path().join("baton.sock"), "precious").unwrap();
    let mut daemon = DaemonProcess::spawn(dir.path(), "");
    let status = daemon.wait_exit(Duration::from_secs(20));
    assert_eq!(status.code(), Some(1));
    assert!(
        daemon.log_text().contains("is not a socket"),
        "{}",
        daemon.log_text()
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("baton.sock")).unwrap(),
        "precious"
    );
}

#[tokio::test]
async fn a_second_daemon_cannot_share_the_database() {
    let dir = tempfile::TempDir::new().unwrap();
    let _first = DaemonProcess::start(dir.path(), "").await;
    // Another socket, the same database.
    let config = dir.path().join("second.toml");
    std::fs::write(
        &config,
        format!(
            "[api]\nsocket = {:?}\n[state]\ndatabase = {:?}\n",
            dir.path().join("second.sock").display().to_string(),
            dir.path().join("baton.db").display().to_string()
        ),
    )
    .unwrap();
    let out = Command::new(workspace_bin("batond"))
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use by another process"), "{err}");
    assert!(
        !dir.path().join("second.sock").exists(),
        "the refused daemon removed its socket"
    );
}

#[tokio::test]
async fn sigterm_does_not_wait_forever_for_a_stalled_client() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::TempDir::new().unwrap();
    let mut daemon =
        DaemonProcess::start(dir.path(), "[conductor]\nshutdown_timeout = \"1s\"\n").await;
    // A request that promises a body it never sends.
    let mut stalled = tokio::net::UnixStream::connect(&daemon.socket)
        .await
        .unwrap();
    stalled
        .write_all(b"POST /v1/nodes HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let pid = nix::unistd::Pid::from_raw(i32::try_from(daemon.pid()).unwrap());
    nix::sys::signal::kill(pid, Signal::SIGTERM).unwrap();
    let status = daemon.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "{status:?}");
    assert!(
        daemon
            .log_text()
            .contains("still open after the shutdown timeout"),
        "{}",
        daemon.log_text()
    );
    drop(stalled);
}
