//! The node API end to end over the Unix socket: enrollment, listing and
//! paging, JSON Patch, deletion, health and metrics — and every bad input
//! answered with a 4xx and the error envelope, never a 5xx.
#![allow(clippy::unwrap_used)]

use baton_tests::daemon::{inventory, node_json, TestDaemon};
use batond::api::types::{
    ConductorStatus, ErrorEnvelope, ImportResult, NodeList, NodeSummary, NodeView,
};
use batond::client::RawResponse;
use http::{Method, StatusCode};

const PASSWORD: &str = "pw-Zq8vX1-never-shown";

fn json(r: &RawResponse) -> serde_json::Value {
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", r.body))
}

/// Asserts an error answer: status, fault code, envelope request id equal to
/// the header, and that the message contains `needle`.
fn assert_error(r: &RawResponse, status: u16, code: &str, needle: &str) {
    assert_eq!(r.status.as_u16(), status, "{:?}", r.body);
    let envelope: ErrorEnvelope = serde_json::from_slice(&r.body).expect("error envelope");
    assert_eq!(envelope.error.code, code);
    assert!(
        envelope.error.message.contains(needle),
        "message {:?} lacks {needle:?}",
        envelope.error.message
    );
    assert_eq!(Some(&envelope.error.request_id), r.request_id.as_ref());
}

fn assert_request_id(r: &RawResponse) {
    let id = r.request_id.as_deref().expect("X-Request-Id header");
    let uuid = id.strip_prefix("req-").expect("req- prefix");
    uuid::Uuid::parse_str(uuid).expect("uuid after req-");
}

#[tokio::test]
async fn create_show_patch_delete_a_node() {
    let d = TestDaemon::start().await;
    let body = node_json("node-a", PASSWORD).to_string();
    let created = d.call(Method::POST, "/v1/nodes", Some(&body)).await;
    assert_eq!(created.status, StatusCode::CREATED);
    assert_request_id(&created);
    let view: NodeView = serde_json::from_slice(&created.body).unwrap();
    assert_eq!(
        created.headers[http::header::LOCATION],
        format!("/v1/nodes/{}", view.uuid).as_str()
    );
    assert_eq!(view.bmc.password.clone().unwrap().expose(), "******");
    assert!(view.bmc.verify_tls);
    assert_eq!(view.power_state, None);

    for ident in ["node-a".to_owned(), view.uuid.to_string()] {
        let shown = d
            .call(Method::GET, &format!("/v1/nodes/{ident}"), None)
            .await;
        assert_eq!(shown.status, StatusCode::OK);
        assert_eq!(json(&shown)["uuid"], view.uuid.to_string());
    }

    let patch = r#"[{"op": "replace", "path": "/power_domain", "value": "rack-9"},
                    {"op": "add", "path": "/extra/owner", "value": "lab"},
                    {"op": "replace", "path": "/bmc/port", "value": 9443}]"#;
    let patched = d.call(Method::PATCH, "/v1/nodes/node-a", Some(patch)).await;
    assert_eq!(patched.status, StatusCode::OK, "{:?}", patched.body);
    let v = json(&patched);
    assert_eq!(v["power_domain"], "rack-9");
    assert_eq!(v["extra"]["owner"], "lab");
    assert_eq!(v["bmc"]["port"], 9443);
    assert_eq!(v["bmc"]["password"], "******");
    let stored = d.daemon_node("node-a").await;
    assert_eq!(
        stored.spec.bmc.password.clone().unwrap().expose(),
        PASSWORD,
        "patch kept the password"
    );

    let states = d.call(Method::GET, "/v1/nodes/node-a/states", None).await;
    assert_eq!(json(&states)["power_state"], serde_json::Value::Null);
    assert_eq!(json(&states)["maintenance"], false);

    let deleted = d.call(Method::DELETE, "/v1/nodes/node-a", None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_request_id(&deleted);
    let gone = d.call(Method::GET, "/v1/nodes/node-a", None).await;
    assert_error(&gone, 404, "itemNotFound", "node-a");
    d.stop().await;
}

trait NodeLookup {
    async fn daemon_node(&self, ident: &str) -> baton_state::Node;
}

impl NodeLookup for TestDaemon {
    async fn daemon_node(&self, ident: &str) -> baton_state::Node {
        // Read-only inspection beside the running daemon, which holds the
        // database's exclusive lock.
        let options = baton_state::StoreOptions {
            exclusive: false,
            ..Default::default()
        };
        let store = baton_state::Store::open(self.dir.path().join("state/baton.db"), options)
            .await
            .unwrap();
        store
            .get_node(baton_state::NodeIdent::parse(ident))
            .await
            .unwrap()
    }
}

/// method, path, body, expected status, fault code, text in the message.
type BadCase<'a> = (Method, &'a str, Option<String>, u16, &'a str, &'a str);

#[tokio::test]
async fn bad_inputs_get_4xx_with_the_envelope() {
    let d = TestDaemon::start().await;
    let ok = node_json("taken", PASSWORD).to_string();
    assert_eq!(
        d.call(Method::POST, "/v1/nodes", Some(&ok)).await.status,
        StatusCode::CREATED
    );

    let three_mb = format!("{{\"name\": \"{}\"}}", "x".repeat(3 * 1024 * 1024));
    let cases: Vec<BadCase> = vec![
        (Method::POST, "/v1/nodes", Some(r#"{"name": "a", "driver": "#.into()), 400, "badRequest", "malformed JSON"),
        (
            Method::POST,
            "/v1/nodes",
            Some(r#"{"driver": "telnet", "bmc": {"address": "a", "username": "u", "password": "p"}}"#.into()),
            400,
            "badRequest",
            "unknown variant `telnet`",
        ),
        (Method::POST, "/v1/nodes", Some(inventory("n", 2, PASSWORD).to_string()), 400, "badRequest", "/v1/nodes/import"),
        (
            Method::POST,
            "/v1/nodes",
            Some(r#"{"driver": "ipmi", "colour": "red", "bmc": {"address": "a", "username": "u", "password": "p"}}"#.into()),
            400,
            "badRequest",
            "unknown field `colour`",
        ),
        (
            Method::POST,
            "/v1/nodes",
            Some(r#"{"driver": "ipmi", "bmc": {"address": "a", "port": "x", "username": "u", "password": "p"}}"#.into()),
            400,
            "badRequest",
            "bmc.port",
        ),
        (
            Method::POST,
            "/v1/nodes",
            Some(r#"{"driver": "ipmi", "bmc": {"address": "https://a", "username": "", "password": "p"}}"#.into()),
            400,
            "badRequest",
            "bmc.address",
        ),
        (Method::POST, "/v1/nodes", Some(String::new()), 400, "badRequest", "empty"),
        (Method::POST, "/v1/nodes", Some(ok.clone()), 409, "conflictingRequest", "\"taken\""),
        (Method::POST, "/v1/nodes", Some(three_mb), 413, "payloadTooLarge", "larger than"),
        (Method::GET, "/v1/nodes/missing", None, 404, "itemNotFound", "missing"),
        (Method::GET, "/v1/nodes/missing/states", None, 404, "itemNotFound", "missing"),
        (Method::DELETE, "/v1/nodes/missing", None, 404, "itemNotFound", "missing"),
        (Method::GET, "/v2/servers", None, 404, "itemNotFound", "/v2/servers"),
        (Method::DELETE, "/v1/conductor", None, 405, "methodNotAllowed", "allowed methods: GET"),
        (Method::PUT, "/v1/nodes", None, 405, "methodNotAllowed", "POST"),
        (
            Method::PATCH,
            "/v1/nodes/taken",
            Some(r#"[{"op": "replace", "path": "/uuid", "value": "x"}]"#.into()),
            400,
            "badRequest",
            "/uuid is read-only",
        ),
        (
            Method::PATCH,
            "/v1/nodes/taken",
            Some(r#"[{"op": "replace", "path": "/power_state", "value": "power on"}]"#.into()),
            400,
            "badRequest",
            "/power_state is read-only",
        ),
        (
            Method::PATCH,
            "/v1/nodes/taken",
            Some(r#"[{"op": "add", "path": "/target_power_state", "value": "power on"}]"#.into()),
            400,
            "badRequest",
            "/target_power_state is read-only",
        ),
        (
            Method::PATCH,
            "/v1/nodes/taken",
            Some(r#"[{"op": "replace", "path": "/reservation", "value": "me"}]"#.into()),
            400,
            "badRequest",
            "/reservation is read-only",
        ),
        (Method::PATCH, "/v1/nodes/taken", Some(r#"{"op": "replace"}"#.into()), 400, "badRequest", "JSON Patch"),
        (Method::PATCH, "/v1/nodes/taken", Some("[]".into()), 400, "badRequest", "empty"),
        (
            Method::PATCH,
            "/v1/nodes/taken",
            Some(r#"[{"op": "replace", "path": "/driver", "value": "telnet"}]"#.into()),
            400,
            "badRequest",
            "driver",
        ),
        (
            Method::PATCH,
            "/v1/nodes/taken",
            Some(r#"[{"op": "copy", "from": "/bmc", "path": "/extra/b"}]"#.into()),
            400,
            "badRequest",
            "/bmc/password is write-only",
        ),
        (
            Method::PATCH,
            "/v1/nodes/taken",
            Some(r#"[{"op": "test", "path": "/bmc/password", "value": "guess"}]"#.into()),
            400,
            "badRequest",
            "write-only",
        ),
        (
            Method::POST,
            "/v1/nodes",
            Some(r#"{"name": "a", "name": "b", "driver": "ipmi", "bmc": {"address": "a", "username": "u", "password": "p"}}"#.into()),
            400,
            "badRequest",
            "duplicate field `name`",
        ),
        (
            Method::POST,
            "/v1/nodes",
            Some(r#"{"driver": "ipmi", "bmc": ["h", 623, "u", "p", null, true, null]}"#.into()),
            400,
            "badRequest",
            "bmc: expected an object",
        ),
        (
            Method::POST,
            "/v1/nodes",
            Some(r#"{"driver": "ipmi", "power_domain": "a\u001b[2Jb", "bmc": {"address": "a", "username": "u", "password": "p"}}"#.into()),
            400,
            "badRequest",
            "control characters",
        ),
        (Method::GET, "/v1/nodes/%FF%FE", None, 400, "badRequest", "UTF-8"),
        (Method::GET, "/v1/nodes?limit=-3", None, 400, "badRequest", "limit"),
        (Method::GET, "/v1/nodes/detail?limit=10001", None, 400, "badRequest", "limit"),
        (Method::GET, "/v1/nodes?marker=nope", None, 400, "badRequest", "marker"),
        (Method::GET, "/v1/nodes?marker=00000000-0000-0000-0000-000000000000", None, 400, "badRequest", "marker"),
        (Method::GET, "/v1/nodes?power_state=on", None, 400, "badRequest", "power_state"),
        (Method::GET, "/v1/nodes?sort=name", None, 400, "badRequest", "`sort`"),
        (Method::POST, "/v1/nodes/import", Some("[]".into()), 400, "badRequest", "empty"),
        (Method::POST, "/v1/nodes/import", Some(ok.clone()), 400, "badRequest", "JSON array"),
    ];
    for (method, path, body, status, code, needle) in cases {
        let r = d.call(method.clone(), path, body.as_deref()).await;
        assert!(r.status.as_u16() < 500, "{method} {path}: {}", r.status);
        assert_error(&r, status, code, needle);
    }
    let r = d.call(Method::DELETE, "/v1/conductor", None).await;
    assert_eq!(r.headers[http::header::ALLOW], "GET,HEAD");

    let metrics = d.call(Method::GET, "/metrics", None).await;
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(
        text.contains(
            "baton_api_requests_total{route=\"/v1/nodes\",method=\"POST\",status=\"409\"} 1"
        ),
        "errors are counted under their route: {text}"
    );

    let nodes: NodeList<NodeSummary> =
        serde_json::from_slice(&d.call(Method::GET, "/v1/nodes", None).await.body).unwrap();
    assert_eq!(nodes.nodes.len(), 1, "no bad request enrolled anything");
    d.stop().await;
}

#[tokio::test]
async fn import_is_all_or_nothing_and_lists_every_bad_entry() {
    let d = TestDaemon::start().await;
    let ok = node_json("taken", PASSWORD).to_string();
    d.call(Method::POST, "/v1/nodes", Some(&ok)).await;

    let mut entries = inventory("imp-", 6, PASSWORD);
    entries[1]["driver"] = "telnet".into();
    entries[3]["name"] = "taken".into();
    entries[4]["bmc"]["address"] = "".into();
    entries[5]["name"] = "imp-0".into();
    entries[2]["bmc"] = serde_json::json!(["h", 623, "u", "p"]);
    let r = d
        .call(Method::POST, "/v1/nodes/import", Some(&entries.to_string()))
        .await;
    assert_error(&r, 400, "badRequest", "nothing was imported");
    let message = json(&r)["error"]["message"].as_str().unwrap().to_owned();
    for needle in [
        "[1] \"imp-1\"",
        "[3] \"taken\"",
        "[4] \"imp-4\"",
        "[5] \"imp-0\"",
    ] {
        assert!(message.contains(needle), "{needle} missing from {message}");
    }
    assert!(!message.contains("[0]"), "{message}");

    let list: NodeList<NodeSummary> =
        serde_json::from_slice(&d.call(Method::GET, "/v1/nodes", None).await.body).unwrap();
    assert_eq!(list.nodes.len(), 1, "nothing imported");

    let duplicate_keys = r#"[{"name": "d1", "name": "d2", "driver": "ipmi",
        "bmc": {"address": "a", "username": "u", "password": "p"}}]"#;
    let r = d
        .call(Method::POST, "/v1/nodes/import", Some(duplicate_keys))
        .await;
    assert_error(&r, 400, "badRequest", "duplicate field `name`");

    let big = format!("[{}]", "0,".repeat(9 * 1024 * 1024));
    let r = d.call(Method::POST, "/v1/nodes/import", Some(&big)).await;
    assert_error(&r, 413, "payloadTooLarge", "16384 KiB");
    d.stop().await;
}

#[tokio::test]
async fn ten_thousand_nodes_import_list_and_page() {
    let d = TestDaemon::start().await;
    let entries = inventory("bulk-", 10_000, PASSWORD);
    let r = d
        .call(Method::POST, "/v1/nodes/import", Some(&entries.to_string()))
        .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{:?}",
        String::from_utf8_lossy(&r.body)
    );
    let result: ImportResult = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(result.count, 10_000);
    assert_eq!(result.uuids.len(), 10_000);

    let page = d.call(Method::GET, "/v1/nodes/detail?limit=5", None).await;
    let page: NodeList<NodeView> = serde_json::from_slice(&page.body).unwrap();
    assert_eq!(page.nodes.len(), 5);
    assert_eq!(page.nodes[0].name.as_deref(), Some("bulk-0"));
    let next = page.next.expect("a full page has a next link");
    assert_eq!(
        next,
        format!("/v1/nodes/detail?limit=5&marker={}", page.nodes[4].uuid)
    );
    let second: NodeList<NodeView> =
        serde_json::from_slice(&d.call(Method::GET, &next, None).await.body).unwrap();
    assert_eq!(second.nodes[0].name.as_deref(), Some("bulk-5"));

    // Default page size is 1000; walking the next links visits every node once.
    let mut url = Some("/v1/nodes".to_owned());
    let mut seen = std::collections::HashSet::new();
    let mut pages = 0;
    while let Some(u) = url {
        let r = d.call(Method::GET, &u, None).await;
        assert!(!String::from_utf8_lossy(&r.body).contains(PASSWORD));
        let list: NodeList<NodeSummary> = serde_json::from_slice(&r.body).unwrap();
        pages += 1;
        seen.extend(list.nodes.iter().map(|n| n.uuid));
        url = list.next;
    }
    assert_eq!(seen.len(), 10_000);
    assert!(pages >= 10);

    let filtered = d
        .call(
            Method::GET,
            "/v1/nodes?driver=ipmi&power_state=null&maintenance=false",
            None,
        )
        .await;
    let filtered: NodeList<NodeSummary> = serde_json::from_slice(&filtered.body).unwrap();
    assert!(filtered.nodes.is_empty());
    let by_domain = d
        .call(Method::GET, "/v1/nodes?power_domain=rack-1&limit=3", None)
        .await;
    assert_eq!(json(&by_domain)["nodes"].as_array().unwrap().len(), 3);

    let detail = d
        .call(Method::GET, "/v1/nodes/detail?limit=10000", None)
        .await;
    let text = String::from_utf8_lossy(&detail.body);
    assert!(!text.contains(PASSWORD), "password leaked in a listing");
    assert_eq!(text.matches("\"******\"").count(), 10_000);

    let status: ConductorStatus =
        serde_json::from_slice(&d.call(Method::GET, "/v1/conductor", None).await.body).unwrap();
    assert_eq!(status.nodes.total, 10_000);
    assert_eq!(status.nodes.by_power_state["null"], 10_000);
    assert_eq!(status.nodes.by_power_state["power on"], 0);
    assert!(status.process.rss_bytes > 0);
    assert!(status.database.size_bytes > 0);
    assert!(status.database.path.ends_with("baton.db"));

    let metrics = d.call(Method::GET, "/metrics", None).await;
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(
        text.contains("baton_nodes{power_state=\"null\"} 10000"),
        "{text}"
    );
    assert!(
        text.contains(
            "baton_api_requests_total{route=\"/v1/nodes/import\",method=\"POST\",status=\"200\"} 1"
        ),
        "{text}"
    );
    assert!(
        text.contains("baton_api_request_duration_seconds_bucket{route=\"/v1/nodes\",le=\"+Inf\"}")
    );
    d.stop().await;
}

#[tokio::test]
async fn version_document_and_request_ids() {
    let d = TestDaemon::start().await;
    let r = d.call(Method::GET, "/v1", None).await;
    assert_request_id(&r);
    let v = json(&r);
    assert_eq!(v["id"], "v1");
    assert_eq!(v["status"], "CURRENT");
    let a = d.call(Method::GET, "/v1", None).await;
    assert_ne!(a.request_id, r.request_id, "every response has its own id");
    let e = d.call(Method::GET, "/nope", None).await;
    assert_request_id(&e);
    d.stop().await;
}

#[tokio::test]
async fn shutdown_removes_the_socket() {
    let d = TestDaemon::start().await;
    let socket = d.socket().to_owned();
    assert!(socket.exists());
    d.stop().await;
    assert!(!socket.exists());
}

#[tokio::test]
async fn hwsim_inventories_import_as_exported() {
    use baton_hwsim::{ExportDriver, Rack, RackConfig};
    let rack = Rack::start(RackConfig {
        nodes: 6,
        ..RackConfig::default()
    })
    .await
    .unwrap();
    let d = TestDaemon::start().await;
    for (driver, prefix) in [(ExportDriver::Mixed, "mixed"), (ExportDriver::Ipmi, "ipmi")] {
        let mut entries = serde_json::to_value(rack.inventory(driver, None).unwrap()).unwrap();
        for entry in entries.as_array_mut().unwrap() {
            let name = entry["name"].as_str().unwrap().to_owned();
            entry["name"] = format!("{prefix}-{name}").into();
        }
        let r = d
            .call(Method::POST, "/v1/nodes/import", Some(&entries.to_string()))
            .await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "{}",
            String::from_utf8_lossy(&r.body)
        );
    }
    let redfish = d
        .call(Method::GET, "/v1/nodes/detail?driver=redfish", None)
        .await;
    let redfish: NodeList<NodeView> = serde_json::from_slice(&redfish.body).unwrap();
    assert_eq!(redfish.nodes.len(), 3);
    assert!(redfish.nodes[0].bmc.address.starts_with("http://"));
    d.stop().await;
    rack.shutdown().await;
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let d = TestDaemon::start().await;
    let mut stream = tokio::net::UnixStream::connect(d.socket()).await.unwrap();
    stream
        .write_all(b"GET /v1 HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    // batond gives up on the headers (after 10 s) and closes the connection;
    // the 60 s bound only keeps a broken build from hanging the suite.
    let mut buf = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        stream.read_to_end(&mut buf),
    )
    .await;
    assert!(read.is_ok(), "the connection was still open after 60 s");
    assert!(!String::from_utf8_lossy(&buf).contains("200 OK"));
    d.stop().await;
}
