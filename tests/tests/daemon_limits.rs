//! batond under hostile or careless input, end to end over the socket:
//! bodies nested too deep, patches that would nest a node without bound,
//! passwords that must not be echoed or replaced by the mask, huge imports —
//! each answered with a clear 4xx while the daemon keeps serving; and
//! connections that would exhaust descriptors or memory: bursts of large
//! listings under a low open-file limit, half-open connections, clients
//! that never read.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use baton_tests::daemon::{inventory, node_json, wait_until, DaemonProcess, TestDaemon};
use batond::api::types::ErrorEnvelope;
use batond::client::RawResponse;
use http::{Method, StatusCode};
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::UnixStream;

const PASSWORD: &str = "pw-Lm4-kept-secret";

fn error_message(r: &RawResponse) -> String {
    let envelope: ErrorEnvelope = serde_json::from_slice(&r.body)
        .unwrap_or_else(|e| panic!("not an error envelope ({e}): {:?}", r.body));
    envelope.error.message
}

fn assert_bad_request(r: &RawResponse, needle: &str) -> String {
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.body);
    let message = error_message(r);
    assert!(message.contains(needle), "{message:?} lacks {needle:?}");
    message
}

async fn assert_still_serving(d: &TestDaemon) {
    let version = d.call(Method::GET, "/v1", None).await;
    assert_eq!(version.status, StatusCode::OK);
}

/// The node as the store holds it, read beside the running daemon.
async fn stored_node(d: &TestDaemon, ident: &str) -> baton_state::Node {
    let options = baton_state::StoreOptions {
        exclusive: false,
        ..Default::default()
    };
    let store = baton_state::Store::open(d.dir.path().join("state/baton.db"), options)
        .await
        .unwrap();
    store
        .get_node(baton_state::NodeIdent::parse(ident))
        .await
        .unwrap()
}

async fn enroll(d: &TestDaemon, name: &str) {
    let body = node_json(name, PASSWORD).to_string();
    let created = d.call(Method::POST, "/v1/nodes", Some(&body)).await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
}

#[tokio::test]
async fn copies_that_double_the_nesting_are_refused() {
    let d = TestDaemon::start().await;
    enroll(&d, "n1").await;
    // From 10 levels, each copy of /extra/a into the innermost object of its
    // own chain doubles the nesting; ten of them would reach 10 240.
    let mut chain = serde_json::json!({});
    for _ in 0..10 {
        chain = serde_json::json!({ "a": chain });
    }
    let mut ops = vec![serde_json::json!({"op": "add", "path": "/extra/a", "value": chain})];
    let mut depth = 10;
    for _ in 0..10 {
        let inside = "/a".repeat(depth);
        ops.push(serde_json::json!({"op": "copy", "from": "/extra/a", "path": format!("/extra/a{inside}")}));
        depth *= 2;
    }
    let body = serde_json::Value::Array(ops).to_string();
    let r = d.call(Method::PATCH, "/v1/nodes/n1", Some(&body)).await;
    assert_bad_request(&r, "operation 1 nests the node more than 17 levels deep");
    assert_still_serving(&d).await;
    assert!(stored_node(&d, "n1").await.spec.extra.is_empty());
    d.stop().await;
}

#[tokio::test]
async fn bodies_nested_too_deep_are_refused_on_every_route() {
    let d = TestDaemon::start().await;
    enroll(&d, "n1").await;
    let arrays = "[".repeat(100_000);
    let objects = r#"{"a":"#.repeat(100_000);
    let node_with =
        |deep: &str| format!(r#"{{"name": "x", "driver": "ipmi", "extra": {{"k": {deep}"#);
    let cases = [
        (Method::POST, "/v1/nodes", node_with(&arrays)),
        (Method::POST, "/v1/nodes", node_with(&objects)),
        // Whole (closed) so that the error is the nesting, not the end.
        (
            Method::POST,
            "/v1/nodes/import",
            format!("{arrays}{}", "]".repeat(100_000)),
        ),
        (
            Method::POST,
            "/v1/nodes/import",
            format!("[{}1{}}}}}]", node_with(&objects), "}".repeat(100_000)),
        ),
        (
            Method::PATCH,
            "/v1/nodes/n1",
            format!(r#"[{{"op": "add", "path": "/extra/k", "value": {arrays}"#),
        ),
        (
            Method::PATCH,
            "/v1/nodes/n1",
            format!(r#"[{{"op": "add", "path": "/extra/k", "value": {objects}"#),
        ),
    ];
    for (method, path, body) in cases {
        let r = d.call(method.clone(), path, Some(&body)).await;
        assert_eq!(
            r.status,
            StatusCode::BAD_REQUEST,
            "{method} {path}: {:?}",
            r.body
        );
        let message = error_message(&r);
        assert!(
            message.contains("recursion limit"),
            "{method} {path}: {message}"
        );
        assert_still_serving(&d).await;
    }
    d.stop().await;
}

#[tokio::test]
async fn a_password_of_the_wrong_type_is_never_echoed() {
    let d = TestDaemon::start().await;
    enroll(&d, "n1").await;
    let mut node = node_json("n2", PASSWORD);
    node["bmc"]["password"] = serde_json::json!(31_415_926);
    let mut as_float = node_json("n3", PASSWORD);
    as_float["bmc"]["password"] = serde_json::json!(31_415_926.5);
    let cases = [
        (Method::POST, "/v1/nodes", node.to_string()),
        (Method::POST, "/v1/nodes/import", serde_json::json!([node, as_float]).to_string()),
        (
            Method::PATCH,
            "/v1/nodes/n1",
            r#"[{"op": "replace", "path": "/bmc/password", "value": 31415926}]"#.to_owned(),
        ),
        (
            Method::PATCH,
            "/v1/nodes/n1",
            r#"[{"op": "replace", "path": "/bmc", "value": {"address": "h", "username": "u", "password": 31415926}}]"#.to_owned(),
        ),
    ];
    for (method, path, body) in cases {
        let r = d.call(method.clone(), path, Some(&body)).await;
        let message = assert_bad_request(&r, "bmc.password");
        assert!(!message.contains("31415926"), "{method} {path}: {message}");
        assert!(
            message.contains("expected the password as a string"),
            "{message}"
        );
    }
    d.stop().await;
}

#[tokio::test]
async fn the_mask_sent_back_keeps_the_password() {
    let d = TestDaemon::start().await;
    enroll(&d, "n1").await;
    let shown = d.call(Method::GET, "/v1/nodes/n1", None).await;
    let mut bmc: serde_json::Value =
        serde_json::from_slice::<serde_json::Value>(&shown.body).unwrap()["bmc"].clone();
    assert_eq!(bmc["password"], "******");
    bmc["port"] = 9443.into();
    let body = serde_json::json!([{"op": "replace", "path": "/bmc", "value": bmc}]).to_string();
    let r = d.call(Method::PATCH, "/v1/nodes/n1", Some(&body)).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let stored = stored_node(&d, "n1").await;
    assert_eq!(stored.spec.bmc.port, Some(9443));
    assert_eq!(stored.spec.bmc.password.clone().unwrap().expose(), PASSWORD);

    // Enrolling with the mask has no password to keep: refused.
    let masked = node_json("n2", "******").to_string();
    let r = d.call(Method::POST, "/v1/nodes", Some(&masked)).await;
    assert_bad_request(&r, "send the real password");
    d.stop().await;
}

/// Peak resident memory of a process (`VmHWM`), in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib * 1024
}

#[tokio::test]
async fn a_huge_import_is_refused_while_parsing_and_others_are_served() {
    let dir = tempfile::TempDir::new().unwrap();
    let batond = DaemonProcess::start(dir.path(), "").await;
    let client = batond.client();
    // Just under the 16 MiB import limit: 8 million entries.
    let entries = (16 * 1024 * 1024 - 2) / 2;
    let mut body = String::with_capacity(16 * 1024 * 1024);
    body.push('[');
    body.push_str(&"1,".repeat(entries - 1));
    body.push_str("1]");
    let body = bytes::Bytes::from(body);
    let imports: Vec<_> = (0..2)
        .map(|_| {
            let (client, body) = (client.clone(), body.clone());
            tokio::spawn(async move {
                client
                    .request(Method::POST, "/v1/nodes/import", Some(body))
                    .await
                    .unwrap()
            })
        })
        .collect();
    // The API keeps answering while the imports are parsed.
    while !imports.iter().all(tokio::task::JoinHandle::is_finished) {
        let version = client.request(Method::GET, "/v1", None).await.unwrap();
        assert_eq!(version.status, StatusCode::OK);
    }
    for import in imports {
        let r = import.await.unwrap();
        assert_bad_request(&r, "an import holds at most 10000 nodes, this one has more");
    }
    // Parsing stopped at entry 10 001: memory stays near the two bodies
    // (16 MiB each), not the hundreds of MiB eight million entries take.
    let peak = peak_rss(batond.pid());
    assert!(
        peak < 200 * 1024 * 1024,
        "batond peaked at {} MiB",
        peak >> 20
    );
}

async fn import_nodes(batond: &DaemonProcess, count: usize) {
    let body = bytes::Bytes::from(inventory("n-", count, PASSWORD).to_string());
    let r = batond
        .client()
        .request(Method::POST, "/v1/nodes/import", Some(body))
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
}

/// Descriptors batond has open now.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// Sockets batond has open now (its listener and client connections).
fn open_sockets(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().starts_with("socket:"))
        .count()
}

/// Sets a running process's open-file limit with util-linux `prlimit`.
fn limit_open_files(pid: u32, limit: u32) {
    let status = std::process::Command::new("prlimit")
        .arg(format!("--pid={pid}"))
        .arg(format!("--nofile={limit}:{limit}"))
        .status()
        .expect("prlimit (util-linux) runs");
    assert!(status.success());
}

#[tokio::test]
async fn a_burst_of_large_listings_under_a_low_fd_limit_gets_no_errors() {
    let dir = tempfile::TempDir::new().unwrap();
    let batond = DaemonProcess::start_with_api(dir.path(), "max_connections = 64", "").await;
    import_nodes(&batond, 200).await;
    // Room for the 64 connections and the 8 pooled database readers (two
    // descriptors each: database and log), but not for a database
    // connection per request.
    let in_use = u32::try_from(open_fds(batond.pid())).unwrap();
    limit_open_files(batond.pid(), in_use + 64 + 2 * 8 + 8);
    let client = batond.client();
    let lists: Vec<_> = (0..300)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                client
                    .request(Method::GET, "/v1/nodes/detail?limit=10000", None)
                    .await
            })
        })
        .collect();
    for list in lists {
        let r = list.await.unwrap().unwrap();
        assert_eq!(
            r.status,
            StatusCode::OK,
            "{:?}",
            String::from_utf8_lossy(&r.body)
        );
        let nodes = serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["nodes"]
            .as_array()
            .map(Vec::len);
        assert_eq!(nodes, Some(200));
    }
}

#[tokio::test]
async fn half_open_connections_do_not_starve_a_request() {
    let dir = tempfile::TempDir::new().unwrap();
    // Headers may take 10 minutes: only the connection limit's closing of
    // idle connections can make room for the request below.
    let batond = DaemonProcess::start_with_api(
        dir.path(),
        "max_connections = 16\nheader_timeout = \"10m\"",
        "",
    )
    .await;
    let mut half_open = Vec::new();
    for _ in 0..40 {
        let mut stream = UnixStream::connect(&batond.socket).await.unwrap();
        stream
            .write_all(b"GET /v1 HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        half_open.push(stream);
    }
    let version = tokio::time::timeout(
        Duration::from_secs(60),
        batond.client().request(Method::GET, "/v1", None),
    )
    .await
    .expect("a request is served beside 40 half-open connections")
    .unwrap();
    assert_eq!(version.status, StatusCode::OK);
    // The limit holds: all but 16 (one of them the request's) were closed.
    let closed = half_open
        .iter()
        .filter(|s| matches!(s.try_read(&mut [0; 64]), Ok(0) | Err(_) if !matches!(s.try_read(&mut [0; 1]), Err(ref e) if e.kind() == std::io::ErrorKind::WouldBlock)))
        .count();
    assert!(
        closed >= 40 - 16,
        "only {closed} half-open connections were closed"
    );
}

#[tokio::test]
async fn clients_that_never_read_are_disconnected() {
    let dir = tempfile::TempDir::new().unwrap();
    let batond = DaemonProcess::start_with_api(dir.path(), "write_timeout = \"300ms\"", "").await;
    import_nodes(&batond, 2000).await;
    let baseline = open_sockets(batond.pid());
    let mut stalled = Vec::new();
    for _ in 0..20 {
        let mut stream = UnixStream::connect(&batond.socket).await.unwrap();
        stream
            .write_all(b"GET /v1/nodes/detail?limit=10000 HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        stalled.push(stream);
    }
    // Each reply (about 1.5 MB) fills the socket buffer and stops; batond
    // gives up on it and closes its end (the client keeps its own open).
    for stream in &stalled {
        wait_until(
            "batond to close the connection of a client that never reads",
            Duration::from_secs(30),
            || async {
                let ready = stream.ready(Interest::READABLE).await.ok()?;
                ready.is_read_closed().then_some(())
            },
        )
        .await;
    }
    wait_until(
        "batond to release the connections' sockets",
        Duration::from_secs(30),
        || async { (open_sockets(batond.pid()) <= baseline).then_some(()) },
    )
    .await;
    let version = batond
        .client()
        .request(Method::GET, "/v1", None)
        .await
        .unwrap();
    assert_eq!(version.status, StatusCode::OK);
    drop(stalled);
}
