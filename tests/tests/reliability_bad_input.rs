//! The bad-input matrix: the real `batond` on its Unix socket, a hw-sim
//! rack behind it, and a table of malformed requests on every route —
//! truncated and invalid JSON, wrong types, unknown fields, huge numbers,
//! bad `limit` and `timeout` values, empty and 10 000-element arrays,
//! control characters in names, path traversal in idents, duplicate keys,
//! nesting bombs, odd content types, HTTP/1.0, pipelining, malformed HTTP
//! that hyper refuses before routing — then slow-loris clients and a
//! thousand connections at once.
//!
//! Every answer must be a 4xx with the error envelope (code, message, and
//! a request id equal to the `X-Request-Id` header), or a clean close; the
//! few well-formed but unusual requests (HTTP/1.0, pipelining) must be
//! served. Nothing may answer 5xx, batond's stderr may show no panic, the
//! BMCs may see no command, and the database dump must be the same before
//! and after. The test prints how many cases it tried and how many 5xx it
//! saw; README's "Reliability" section quotes those figures.
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use baton_hwsim::{ExportDriver, Rack};
use baton_tests::daemon::{wait_until, DaemonProcess};
use baton_tests::hwsim;
use futures::stream::{self, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// Longest any one case may take to be answered or closed (a case that
/// hangs fails; the cases are far quicker).
const CASE_DEADLINE: Duration = Duration::from_secs(15);
/// batond's `api.header_timeout` here: short, so that clients that never
/// finish their headers are closed within the test's time.
const HEADER_TIMEOUT: &str = "1s";

/// What a case must get back.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Expect {
    /// One 4xx with the error envelope.
    Error,
    /// One 4xx with the error envelope, or the connection closed without an
    /// answer (input that leaves nothing to answer, e.g. a body that never
    /// ends).
    ErrorOrClose,
    /// A clean close with no answer, or a 4xx with the envelope.
    Closed,
    /// A success (well-formed requests in unusual form).
    Success,
}

/// One request (or several, pipelined) as the bytes sent on a fresh
/// connection, and what each must get.
#[derive(Clone, Debug)]
struct Case {
    name: String,
    bytes: Vec<u8>,
    expect: Vec<Expect>,
    /// Shut the write side after sending, so that a body or head that is
    /// cut short ends instead of waiting for more.
    half_close: bool,
}

impl Case {
    fn raw(name: impl Into<String>, bytes: impl Into<Vec<u8>>, expect: Expect) -> Self {
        Self {
            name: name.into(),
            bytes: bytes.into(),
            expect: vec![expect],
            half_close: false,
        }
    }

    /// A further answer expected on the same connection (pipelining).
    fn then(mut self, expect: Expect) -> Self {
        self.expect.push(expect);
        self
    }

    fn half_closed(mut self) -> Self {
        self.half_close = true;
        self
    }
}

/// An HTTP/1.1 request with `Connection: close`, a length, and an optional
/// content type.
fn request(method: &str, path: &str, content_type: Option<&str>, body: &[u8]) -> Vec<u8> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    if let Some(ct) = content_type {
        let _ = write!(head, "Content-Type: {ct}\r\n");
    }
    if !body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH") {
        let _ = write!(head, "Content-Length: {}\r\n", body.len());
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

fn json_case(name: impl Into<String>, method: &str, path: &str, body: &[u8]) -> Case {
    Case::raw(
        name,
        request(method, path, Some("application/json"), body),
        Expect::Error,
    )
}

fn get_case(name: impl Into<String>, path: &str) -> Case {
    Case::raw(name, request("GET", path, None, b""), Expect::Error)
}

/// One parsed response.
#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Splits what the server sent into responses; `Err` when the bytes are
/// not a sequence of complete HTTP/1.1 responses.
fn parse_responses(mut data: &[u8]) -> Result<Vec<Response>, String> {
    let mut responses = Vec::new();
    while !data.is_empty() {
        let end = find(data, b"\r\n\r\n").ok_or("a response head without its end")?;
        let head = std::str::from_utf8(&data[..end]).map_err(|e| e.to_string())?;
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad status line {status_line:?}"))?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
            .collect();
        let mut response = Response {
            status,
            headers,
            body: Vec::new(),
        };
        data = &data[end + 4..];
        if let Some(len) = response.header("content-length") {
            let len: usize = len.parse().map_err(|_| "bad content-length")?;
            if data.len() < len {
                return Err(format!("a body of {} bytes, {len} announced", data.len()));
            }
            response.body = data[..len].to_vec();
            data = &data[len..];
        } else if response
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
        {
            loop {
                let line_end = find(data, b"\r\n").ok_or("a chunk without its size")?;
                let size = std::str::from_utf8(&data[..line_end]).map_err(|e| e.to_string())?;
                let size = usize::from_str_radix(size.trim(), 16).map_err(|e| e.to_string())?;
                data = &data[line_end + 2..];
                if size == 0 {
                    data = data.get(2..).ok_or("a chunked body without its end")?;
                    break;
                }
                response
                    .body
                    .extend_from_slice(data.get(..size).ok_or("a short chunk")?);
                data = data.get(size + 2..).ok_or("a chunk without its end")?;
            }
        } else if status != 204 && status != 304 && !(100..200).contains(&status) {
            response.body = data.to_vec();
            data = &[];
        }
        // An interim answer (100 Continue) is not the request's answer.
        if !(100..200).contains(&status) {
            responses.push(response);
        }
    }
    Ok(responses)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Sends a case on a fresh connection and reads until batond closes it.
async fn send(socket: &Path, case: &Case) -> Result<Vec<u8>, String> {
    let mut stream = UnixStream::connect(socket)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    // The server may answer and close before it has read everything (a 413
    // on the declared length): a failed write is then not an error.
    let _ = stream.write_all(&case.bytes).await;
    if case.half_close {
        let _ = stream.shutdown().await;
    }
    let mut received = Vec::new();
    let read = tokio::time::timeout(CASE_DEADLINE, async {
        let mut chunk = [0_u8; 16 * 1024];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) => return Ok(()),
                Ok(n) => received.extend_from_slice(&chunk[..n]),
                // A reset after the answer counts as a close.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(()),
                Err(e) => return Err(format!("read: {e}")),
            }
        }
    })
    .await;
    match read {
        Ok(Ok(())) => Ok(received),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(format!(
            "neither answered nor closed within {CASE_DEADLINE:?} (got {} bytes)",
            received.len()
        )),
    }
}

/// Checks an error response: 4xx, JSON envelope, request id as in the
/// header.
fn check_envelope(r: &Response) -> Result<(), String> {
    if !(400..500).contains(&r.status) {
        return Err(format!("status {}, not 4xx", r.status));
    }
    let header_id = r.header("x-request-id").ok_or("no X-Request-Id header")?;
    let v: Value = serde_json::from_slice(&r.body).map_err(|e| {
        format!(
            "body is not the JSON envelope ({e}): {:?}",
            String::from_utf8_lossy(&r.body)
        )
    })?;
    let error = &v["error"];
    let code = error["code"].as_str().ok_or("envelope without code")?;
    let message = error["message"]
        .as_str()
        .ok_or("envelope without message")?;
    let request_id = error["request_id"].as_str().ok_or("envelope without id")?;
    if code.is_empty() || message.is_empty() {
        return Err(format!("empty code or message: {v}"));
    }
    if request_id != header_id || !request_id.starts_with("req-") {
        return Err(format!(
            "request id {request_id:?} in the body, {header_id:?} in the header"
        ));
    }
    Ok(())
}

/// Tally of what the cases got.
#[derive(Default)]
struct Tally {
    responses: AtomicUsize,
    server_errors: AtomicUsize,
    closes: AtomicUsize,
}

/// Runs one case; returns what was wrong with the answer, if anything.
async fn run_case(socket: &Path, case: &Case, tally: &Tally) -> Result<(), String> {
    let received = send(socket, case).await?;
    let responses = parse_responses(&received)?;
    tally
        .responses
        .fetch_add(responses.len(), Ordering::Relaxed);
    let server_errors = responses.iter().filter(|r| r.status >= 500).count();
    tally
        .server_errors
        .fetch_add(server_errors, Ordering::Relaxed);
    if responses.len() > case.expect.len() {
        return Err(format!(
            "{} responses, {} expected",
            responses.len(),
            case.expect.len()
        ));
    }
    for (i, expect) in case.expect.iter().enumerate() {
        let Some(r) = responses.get(i) else {
            tally.closes.fetch_add(1, Ordering::Relaxed);
            return match expect {
                Expect::ErrorOrClose | Expect::Closed => Ok(()),
                _ => Err(format!("closed before answer {} ({expect:?})", i + 1)),
            };
        };
        let checked = match expect {
            Expect::Success if (200..300).contains(&r.status) => Ok(()),
            Expect::Success => Err(format!(
                "status {}, success expected: {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            )),
            Expect::Error | Expect::ErrorOrClose | Expect::Closed => check_envelope(r),
        };
        checked.map_err(|e| format!("answer {}: {e}", i + 1))?;
    }
    Ok(())
}

/// Bodies that are wrong for any JSON route.
fn garbage_bodies() -> Vec<(&'static str, Vec<u8>)> {
    let mut bodies: Vec<(&'static str, Vec<u8>)> = vec![
        ("truncated object", br#"{"target": "power o"#.to_vec()),
        ("truncated after colon", br#"{"a":"#.to_vec()),
        ("lone brace", b"{".to_vec()),
        ("not JSON", b"power off please".to_vec()),
        ("single quotes", b"{'target': 'power off'}".to_vec()),
        ("JSON null", b"null".to_vec()),
        ("a number", b"42".to_vec()),
        ("a string", br#""power off""#.to_vec()),
        ("trailing garbage", br#"{"x": 1} trailing"#.to_vec()),
        ("two documents", br#"{"x": 1}{"x": 2}"#.to_vec()),
        ("invalid UTF-8", b"{\"x\": \"\xff\xfe\xfd\"}".to_vec()),
        ("byte-order mark", b"\xef\xbb\xbf{\"x\": 1}".to_vec()),
        ("NUL byte", b"{\"x\":\x00 1}".to_vec()),
        ("huge exponent", b"1e999999".to_vec()),
        (
            "huge integer",
            b"123456789012345678901234567890123456789".to_vec(),
        ),
        ("unknown field only", br#"{"surprise": true}"#.to_vec()),
        ("lone surrogate", br#"{"x": "\ud800"}"#.to_vec()),
    ];
    bodies.push(("array nesting bomb", "[".repeat(100_000).into_bytes()));
    bodies.push((
        "object nesting bomb",
        r#"{"a":"#.repeat(50_000).into_bytes(),
    ));
    bodies.push((
        "closed nesting bomb",
        format!("{}{}", "[".repeat(5_000), "]".repeat(5_000)).into_bytes(),
    ));
    bodies
}

/// The routes that take a JSON body, with a node, job or schedule that
/// exists where the path needs one.
fn body_routes(node: &str) -> Vec<(&'static str, String)> {
    vec![
        ("POST", "/v1/nodes".to_owned()),
        ("POST", "/v1/nodes/import".to_owned()),
        ("PATCH", format!("/v1/nodes/{node}")),
        ("PUT", format!("/v1/nodes/{node}/states/power")),
        ("PUT", format!("/v1/nodes/{node}/states/boot_device")),
        ("PUT", format!("/v1/nodes/{node}/maintenance")),
        ("POST", format!("/v1/nodes/{node}/action")),
        ("POST", "/v1/baremetalservers/action".to_owned()),
        ("POST", "/v1/proj-1/baremetalservers/action".to_owned()),
        ("POST", "/v1/schedules".to_owned()),
    ]
}

/// Every JSON route with every garbage body, an empty body (where one is
/// required), a declared length past the limit, and a wrong content type.
fn body_cases(node: &str) -> Vec<Case> {
    let mut cases = Vec::new();
    for (method, path) in body_routes(node) {
        for (what, body) in garbage_bodies() {
            cases.push(json_case(
                format!("{method} {path}: {what}"),
                method,
                &path,
                &body,
            ));
        }
        if !path.ends_with("/maintenance") {
            cases.push(json_case(
                format!("{method} {path}: empty body"),
                method,
                &path,
                b"",
            ));
        }
        let declared = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 99999999999\r\n\r\n{{"
        );
        cases.push(Case::raw(
            format!("{method} {path}: declared length past the limit"),
            declared,
            Expect::Error,
        ));
        let overflow = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 99999999999999999999999\r\n\r\n{{"
        );
        cases.push(Case::raw(
            format!("{method} {path}: content length overflowing u64"),
            overflow,
            Expect::Error,
        ));
        cases.push(Case::raw(
            format!("{method} {path}: form content type, garbage body"),
            request(
                method,
                &path,
                Some("application/x-www-form-urlencoded"),
                b"a=1&b=2",
            ),
            Expect::Error,
        ));
        cases.push(Case::raw(
            format!("{method} {path}: body cut short, then EOF"),
            format!(
                "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 100\r\n\r\n{{\"a\": 1"
            ),
            Expect::ErrorOrClose,
        )
        .half_closed());
    }
    cases
}

/// Wrong types, unknown fields, bad values and array sizes, route by route.
fn field_cases(node: &str, job: &str) -> Vec<Case> {
    let power = format!("/v1/nodes/{node}/states/power");
    let boot = format!("/v1/nodes/{node}/states/boot_device");
    let maintenance = format!("/v1/nodes/{node}/maintenance");
    let action = format!("/v1/nodes/{node}/action");
    let patch = format!("/v1/nodes/{node}");
    let batch = "/v1/baremetalservers/action";
    let mut bodies: Vec<(&str, String, String)> = Vec::new();
    let mut add = |method: &'static str, path: &str, body: Value| {
        bodies.push((method, path.to_owned(), body.to_string()));
    };
    // PUT states/power: targets and timeouts.
    for target in [
        json!(1),
        json!(null),
        json!([]),
        json!({}),
        json!("power sideways"),
        json!("POWER OFF"),
        json!("power off\u{0000}"),
    ] {
        add("PUT", &power, json!({ "target": target }));
    }
    for timeout in [
        json!(-1),
        json!(0),
        json!(1e308),
        json!(-1e308),
        json!(18_446_744_073_709_551_615_u64),
        json!(4_294_967_296_u64),
        json!("30"),
        json!(1.5),
        json!(true),
        json!([30]),
    ] {
        add(
            "PUT",
            &power,
            json!({ "target": "power off", "timeout": timeout }),
        );
    }
    add(
        "PUT",
        &power,
        json!({ "target": "power off", "speed": "fast" }),
    );
    // An array of the fields in order must not be read as the object.
    add("PUT", &power, json!(["power off", 30]));
    add("PUT", &power, json!({ "timeout": 30 }));
    // PUT boot_device.
    add("PUT", &boot, json!({ "boot_device": "floppy" }));
    add(
        "PUT",
        &boot,
        json!({ "boot_device": "pxe", "persistent": "yes" }),
    );
    add("PUT", &boot, json!({ "persistent": true }));
    add("PUT", &boot, json!({ "boot_device": ["pxe"] }));
    add("PUT", &boot, json!(["pxe", false]));
    add(
        "PUT",
        &boot,
        json!({ "boot_device": "pxe", "mode": "uefi" }),
    );
    // PUT maintenance.
    add("PUT", &maintenance, json!({ "reason": 42 }));
    add("PUT", &maintenance, json!({ "reason": "line\nbreak" }));
    add("PUT", &maintenance, json!({ "reason": "\u{1b}[2Jclear" }));
    add("PUT", &maintenance, json!({ "reason": "x".repeat(5000) }));
    add(
        "PUT",
        &maintenance,
        json!({ "reason": "ok", "until": "tomorrow" }),
    );
    add("PUT", &maintenance, json!([]));
    // POST action.
    for body in [
        json!({}),
        json!({"os-start": null, "os-stop": {"type": "HARD"}}),
        json!({"os-explode": null}),
        json!({"os-stop": {"type": "MEDIUM"}}),
        json!({"os-stop": {"type": 1}}),
        json!({"reboot": "HARD"}),
        json!({"reboot": {"type": "HARD", "force": true}}),
        json!({"lock": {"reason": 42}}),
        json!({"lock": {"reason": "a\u{0007}bell"}}),
        json!({"os-start": {"servers": []}}),
        json!({"trigger_crash_dump": {"now": true}}),
        json!({"os-reset_status": "now"}),
        json!([{"os-start": null}]),
    ] {
        add("POST", &action, body);
    }
    // PATCH: JSON Patch documents.
    let many_ops: Vec<Value> = (0..10_000)
        .map(|i| json!({"op": "add", "path": format!("/extra/k{i}"), "value": i}))
        .collect();
    for body in [
        json!({"op": "replace", "path": "/name", "value": "x"}),
        json!([{"op": "explode", "path": "/name"}]),
        json!([{"op": "replace", "path": "/uuid", "value": "x"}]),
        json!([{"op": "replace", "path": "/power_state", "value": "power on"}]),
        json!([{"op": "replace", "path": "/../../etc/passwd", "value": "x"}]),
        json!([{"op": "replace", "path": "/bmc/port", "value": "eighty"}]),
        json!([{"op": "replace", "path": "/bmc/port", "value": 70000}]),
        json!([{"op": "replace", "path": "/bmc/port", "value": -1}]),
        json!([{"op": "replace", "path": "/name", "value": "bad\nname"}]),
        json!([{"op": "replace", "path": "/name", "value": "../../etc"}]),
        json!([{"op": "replace", "path": "/name", "value": ".."}]),
        json!([{"op": "replace", "path": "/name", "value": "nöde"}]),
        json!([{"op": "move", "from": "/nothing", "path": "/extra/x"}]),
        json!([{"op": "test", "path": "/name", "value": "someone-else"}]),
        json!([{"op": "replace", "path": "/name"}]),
        json!([{"op": "replace", "value": 1}]),
        json!([{"op": "add", "path": "/extra/deep", "value": nest(40)}]),
        json!(many_ops),
    ] {
        add("PATCH", &patch, body);
    }
    // POST /v1/nodes: names and fields.
    let node = |name: Value| {
        json!({"name": name, "driver": "redfish",
               "bmc": {"address": "127.0.0.1", "username": "admin", "password": "pw"}})
    };
    for name in [
        json!(""),
        json!("bad\nname"),
        json!("nul\u{0000}"),
        json!("tab\tname"),
        json!("\u{202e}evil"),
        json!("emoji-\u{1f4a5}"),
        json!("a/b"),
        json!("../../etc/passwd"),
        json!("."),
        json!(".."),
        json!("detail"),
        json!("x".repeat(300)),
        json!(42),
        json!(["a"]),
        json!("0f8e1a6e-4d5c-4b3a-9e2f-1a2b3c4d5e6f"),
    ] {
        add("POST", "/v1/nodes", node(name));
    }
    for body in [
        json!({"name": "n-x", "driver": "REDFISH", "bmc": {"address": "h", "username": "u", "password": "p"}}),
        json!({"name": "n-x", "driver": "redfish", "bmc": {"address": "h", "port": 70000, "username": "u", "password": "p"}}),
        json!({"name": "n-x", "driver": "redfish", "bmc": {"address": "h", "port": -1, "username": "u", "password": "p"}}),
        json!({"name": "n-x", "driver": "redfish", "bmc": {"address": "h", "port": 1e3, "username": "u", "password": "p"}}),
        json!({"name": "n-x", "driver": "redfish", "bmc": {"address": "", "username": "u", "password": "p"}}),
        json!({"name": "n-x", "driver": "redfish", "bmc": {"address": "h", "username": "u", "password": 42}}),
        json!({"name": "n-x", "driver": "redfish", "bmc": {"address": "h", "username": "u", "password": "******"}}),
        json!({"name": "n-x", "driver": "redfish", "bmc": {"address": "h", "username": "u", "password": "p", "ca_file": "../../etc/shadow"}}),
        json!({"name": "n-x", "driver": "ipmi", "bmc": {"address": "h\u{0000}", "username": "u", "password": "p"}}),
        json!({"name": "n-x", "driver": "redfish", "bmc": {"address": "h", "username": "u", "password": "p"}, "extra": nest(40)}),
        json!({"name": "n-x", "driver": "redfish", "bmc": {"address": "h", "username": "u", "password": "p"}, "power_state": "power on"}),
        json!({"name": "n-x", "driver": "redfish"}),
        json!({"name": "n-x", "driver": "redfish", "bmc": ["h", 443, "u", "p"]}),
        json!(["n-x", "redfish", {"address": "h", "username": "u", "password": "p"}]),
    ] {
        add("POST", "/v1/nodes", body);
    }
    // POST /v1/nodes/import: sizes and entries.
    let entry = |i: usize| node(json!(format!("imp-{i}")));
    add("POST", "/v1/nodes/import", json!([]));
    add(
        "POST",
        "/v1/nodes/import",
        Value::Array((0..10_001).map(|_| json!(1)).collect()),
    );
    let mut ten_thousand: Vec<Value> = (0..10_000).map(entry).collect();
    ten_thousand[9_999] = node(json!("bad\u{0007}"));
    add("POST", "/v1/nodes/import", Value::Array(ten_thousand));
    add("POST", "/v1/nodes/import", json!([entry(1), entry(1)]));
    add(
        "POST",
        "/v1/nodes/import",
        json!([entry(1), {"name": "imp-2"}]),
    );
    add("POST", "/v1/nodes/import", json!([[entry(1)]]));
    // Batches.
    let ids = |n: usize| -> Vec<Value> {
        (0..n)
            .map(|i| json!({"id": format!("ghost-{i}")}))
            .collect()
    };
    for body in [
        json!({"os-stop": {"type": "HARD", "servers": []}}),
        json!({"os-stop": {"type": "HARD", "servers": ids(10_000)}}),
        json!({"os-stop": {"type": "HARD", "servers": {"id": node_name(0)}}}),
        json!({"os-stop": {"type": "HARD", "servers": [{"id": 42}]}}),
        json!({"os-stop": {"type": "HARD", "servers": [{"id": "../../etc/passwd"}]}}),
        json!({"os-stop": {"type": "HARD", "servers": [{"id": "a\u{0000}b"}]}}),
        json!({"os-stop": {"type": "HARD", "servers": [{"id": node_name(0)}, {"id": node_name(0)}]}}),
        json!({"os-stop": {"type": "HARD", "servers": [{"id": node_name(0), "extra": 1}]}}),
        json!({"os-stop": {"type": "GENTLE", "servers": [{"id": node_name(0)}]}}),
        json!({"os-start": {"servers": [{"id": node_name(0)}]}, "reboot": {"servers": [{"id": node_name(1)}]}}),
        json!({"os-hibernate": {"servers": [{"id": node_name(0)}]}}),
        json!({"os-start": null}),
        json!({"os-start": {"servers": [node_name(0)]}}),
    ] {
        add("POST", batch, body);
    }
    // Schedules.
    let stop = json!({"os-stop": {"type": "HARD", "servers": [{"id": node_name(0)}]}});
    for body in [
        json!({"cron": "* * *", "batch": stop}),
        json!({"cron": "61 * * * *", "batch": stop}),
        json!({"cron": vec!["*"; 100].join(" "), "batch": stop}),
        json!({"cron": "0 2 * * *", "time_zone": "Mars/Olympus_Mons", "batch": stop}),
        json!({"cron": "0 2 * * *", "time_zone": "../../../etc/passwd", "batch": stop}),
        json!({"cron": "0 2 * * *"}),
        json!({"cron": 42, "batch": stop}),
        json!({"cron": "0 2 * * *", "batch": {"os-stop": {"servers": [{"id": "ghost"}]}}}),
        json!({"cron": "0 2 * * *", "batch": stop, "enabled": false}),
        json!(["0 2 * * *", "UTC", stop]),
        json!({"cron": "0 2 * * *", "batch": {"os-stop": [stop["os-stop"]["servers"]]}}),
    ] {
        add("POST", "/v1/schedules", body);
    }
    let mut cases: Vec<Case> = bodies
        .into_iter()
        .map(|(method, path, body)| {
            let label: String = body.chars().take(80).collect();
            json_case(
                format!("{method} {path}: {label}"),
                method,
                &path,
                body.as_bytes(),
            )
        })
        .collect();
    // Duplicate keys: the second must not silently win over the first.
    for (method, path, body) in [
        (
            "PUT",
            power.as_str(),
            r#"{"target": "power off", "target": "power on"}"#,
        ),
        (
            "PUT",
            boot.as_str(),
            r#"{"boot_device": "pxe", "boot_device": "disk"}"#,
        ),
        (
            "POST",
            action.as_str(),
            r#"{"os-stop": {"type": "HARD", "type": "SOFT"}}"#,
        ),
        (
            "POST",
            batch,
            r#"{"os-stop": {"servers": [], "servers": [{"id": "x"}]}}"#,
        ),
        (
            "POST",
            "/v1/nodes",
            r#"{"name": "dup-1", "name": "dup-2", "driver": "redfish", "bmc": {"address": "h", "username": "u", "password": "p"}}"#,
        ),
    ] {
        cases.push(json_case(
            format!("{method} {path}: duplicate key"),
            method,
            path,
            body.as_bytes(),
        ));
    }
    let cancel = format!("/v1/jobs/{job}/cancel");
    cases.push(json_case(
        "cancel with a body",
        "POST",
        &cancel,
        br#"{"force": true}"#,
    ));
    cases
}

/// The name hw-sim (and the import) gives node `i`.
fn node_name(i: usize) -> String {
    format!("node-{i:04}")
}

fn nest(depth: usize) -> Value {
    (0..depth).fold(json!(1), |inner, _| json!({ "n": inner }))
}

/// Query strings on the listing routes.
fn query_cases(node: &str) -> Vec<Case> {
    let lists = [
        "/v1/nodes".to_owned(),
        "/v1/nodes/detail".to_owned(),
        "/v1/jobs".to_owned(),
        format!("/v1/nodes/{node}/os-instance-actions"),
    ];
    let queries = [
        "limit=-1",
        "limit=0",
        "limit=99999999999999999999999",
        "limit=18446744073709551616",
        "limit=abc",
        "limit=1.5",
        "limit=",
        "limit=1e3",
        "limit=10001",
        "limit=5&limit=6",
        "marker=not-a-marker",
        "marker=..%2F..%2Fetc%2Fpasswd",
        "no_such_filter=1",
        "limit=%zz",
        "limit=1%00",
    ];
    let mut cases = Vec::new();
    for list in &lists {
        for query in queries {
            cases.push(get_case(
                format!("GET {list}?{query}"),
                &format!("{list}?{query}"),
            ));
        }
    }
    for query in ["power_state=sideways", "maintenance=maybe", "driver=telnet"] {
        cases.push(get_case(
            format!("GET /v1/nodes?{query}"),
            &format!("/v1/nodes?{query}"),
        ));
    }
    for query in ["status=DONE", "operation=explode"] {
        cases.push(get_case(
            format!("GET /v1/jobs?{query}"),
            &format!("/v1/jobs?{query}"),
        ));
    }
    let actions = format!("/v1/nodes/{node}/os-instance-actions");
    for query in [
        "changes-since=yesterday",
        "changes-since=%2B999999-01-01T00:00:00Z",
        "changes-before=2026-13-45T99:99:99Z",
    ] {
        cases.push(get_case(
            format!("GET {actions}?{query}"),
            &format!("{actions}?{query}"),
        ));
    }
    cases.push(get_case(
        "GET /v1/schedules?limit=-1",
        "/v1/schedules?limit=-1",
    ));
    cases.push(get_case("GET /v1?verbose=1", "/v1?verbose=1"));
    cases
}

/// Idents that are not nodes (or jobs, schedules, actions): traversal,
/// encodings, control characters, sizes.
fn ident_cases(node: &str) -> Vec<Case> {
    let idents = [
        "..%2F..%2Fetc%2Fpasswd",
        "%2E%2E",
        "..%5C..%5Cwindows",
        "%00",
        "nul%00byte",
        "%FF%FE",
        "%E2%80%AE",
        "%F0%9F%92%A5",
        "%0D%0AX-Injected:%201",
        "%25",
        &"x".repeat(10_000),
    ];
    let mut cases = Vec::new();
    for ident in idents {
        let short: String = ident.chars().take(24).collect();
        for (method, suffix) in [
            ("GET", ""),
            ("GET", "/states"),
            ("DELETE", ""),
            ("PUT", "/states/power"),
        ] {
            let path = format!("/v1/nodes/{ident}{suffix}");
            let body: &[u8] = if method == "PUT" {
                br#"{"target": "power off"}"#
            } else {
                b""
            };
            cases.push(Case::raw(
                format!("{method} /v1/nodes/{short}{suffix}"),
                request(method, &path, Some("application/json"), body),
                Expect::Error,
            ));
        }
        cases.push(get_case(
            format!("GET /v1/jobs/{short}"),
            &format!("/v1/jobs/{ident}"),
        ));
        cases.push(get_case(
            format!("GET /v1/schedules/{short}"),
            &format!("/v1/schedules/{ident}"),
        ));
        cases.push(get_case(
            format!("GET os-instance-actions/{short}"),
            &format!("/v1/nodes/{node}/os-instance-actions/{ident}"),
        ));
    }
    // Dot segments sent raw: hyper does not normalise them, and no route
    // may be reached through them.
    for path in [
        "/v1/nodes/../../etc/passwd".to_owned(),
        format!("/v1/nodes/{node}/../../../v1/nodes"),
        "/v1/nodes/./detail/..".to_owned(),
        "//v1//nodes".to_owned(),
        "/v1/nodes/%2e%2e/%2e%2e/v1".to_owned(),
    ] {
        cases.push(Case::raw(
            format!("DELETE {path}"),
            request("DELETE", &path, None, b""),
            Expect::Error,
        ));
    }
    cases.push(Case::raw(
        "POST cancel of an unknown job",
        request("POST", "/v1/jobs/ghost/cancel", None, b""),
        Expect::Error,
    ));
    cases.push(Case::raw(
        "DELETE an unknown schedule",
        request("DELETE", "/v1/schedules/..%2F..", None, b""),
        Expect::Error,
    ));
    cases
}

/// Wrong methods on every route.
fn method_cases(node: &str) -> Vec<Case> {
    let pairs = [
        ("DELETE", "/v1".to_owned()),
        ("POST", "/v1/conductor".to_owned()),
        ("PUT", "/metrics".to_owned()),
        ("PUT", "/v1/nodes".to_owned()),
        ("POST", "/v1/nodes/detail".to_owned()),
        ("GET", "/v1/nodes/import".to_owned()),
        ("POST", format!("/v1/nodes/{node}")),
        ("DELETE", format!("/v1/nodes/{node}/states")),
        ("GET", format!("/v1/nodes/{node}/states/power")),
        ("POST", format!("/v1/nodes/{node}/states/boot_device")),
        ("GET", format!("/v1/nodes/{node}/maintenance")),
        ("GET", format!("/v1/nodes/{node}/action")),
        ("DELETE", format!("/v1/nodes/{node}/os-instance-actions")),
        ("GET", "/v1/baremetalservers/action".to_owned()),
        ("PATCH", "/v1/jobs".to_owned()),
        ("GET", "/v1/jobs/x/cancel".to_owned()),
        ("PUT", "/v1/schedules".to_owned()),
        ("BREW", "/v1".to_owned()),
        ("get", "/v1".to_owned()),
        ("CONNECT", "/v1".to_owned()),
        ("TRACE", "/v1/nodes".to_owned()),
    ];
    pairs
        .into_iter()
        .map(|(method, path)| {
            Case::raw(
                format!("{method} {path}"),
                request(method, &path, None, b""),
                Expect::Error,
            )
        })
        .collect()
}

/// HTTP itself: versions, framing, headers, pipelining, bytes that are not
/// HTTP at all.
fn http_cases(node: &str) -> Vec<Case> {
    let ok = "GET /v1 HTTP/1.1\r\nHost: x\r\n\r\n";
    let close = "GET /v1/nodes/ghost HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let bad_post = format!(
        "POST /v1/nodes/{node}/action HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n{{\"a\":"
    );
    let many_headers: String = (0..200).map(|i| format!("X-H{i}: v\r\n")).collect();
    let big_header = format!("X-Big: {}\r\n", "a".repeat(500_000));
    let long_uri = format!("/v1/nodes/{}", "a".repeat(70_000));
    let mut cases = vec![
        Case::raw("HTTP/1.0 GET", "GET /v1 HTTP/1.0\r\n\r\n", Expect::Success),
        Case::raw(
            "HTTP/1.0 keep-alive GET",
            "GET /v1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /v1/nodes/ghost HTTP/1.0\r\n\r\n",
            Expect::Success,
        )
        .then(Expect::Error),
        Case::raw(
            "HTTP/1.0 POST with a bad body",
            format!("POST /v1/nodes/{node}/action HTTP/1.0\r\nContent-Length: 2\r\n\r\n{{}}"),
            Expect::Error,
        ),
        Case::raw(
            "HTTP/1.0 POST without a length",
            format!("POST /v1/nodes/{node}/action HTTP/1.0\r\n\r\n{{\"reboot\":"),
            Expect::ErrorOrClose,
        )
        .half_closed(),
        Case {
            name: "pipelined: ok, bad body, unknown node".into(),
            bytes: format!("{ok}{bad_post}{close}").into_bytes(),
            expect: vec![Expect::Success, Expect::Error, Expect::Error],
            half_close: false,
        },
        Case {
            name: "pipelined: ok, then a malformed request line".into(),
            bytes: format!("{ok}GET /v1 HTTP/1.1 extra\r\nHost: x\r\n\r\n").into_bytes(),
            expect: vec![Expect::Success, Expect::Error],
            half_close: false,
        },
        Case {
            name: "pipelined: 50 requests in one write".into(),
            bytes: format!("{}{close}", ok.repeat(49)).into_bytes(),
            expect: [vec![Expect::Success; 49], vec![Expect::Error]].concat(),
            half_close: false,
        },
        Case::raw("HTTP/1.1 without Host", "GET /v1 HTTP/1.1\r\nConnection: close\r\n\r\n", Expect::Success),
        Case::raw("HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", Expect::Closed),
        Case::raw("HTTP/9.9", "GET /v1 HTTP/9.9\r\nHost: x\r\n\r\n", Expect::Error),
        Case::raw("HTTP/0.9 request line", "GET /v1\r\n\r\n", Expect::Error),
        Case::raw("request line with four parts", "GET /v1 HTTP/1.1 x\r\nHost: x\r\n\r\n", Expect::Error),
        Case::raw("method with a bad character", "G@T /v1 HTTP/1.1\r\nHost: x\r\n\r\n", Expect::Error),
        Case::raw("space in the path", "GET /v1/no des HTTP/1.1\r\nHost: x\r\n\r\n", Expect::Error),
        Case::raw("NUL in the path", "GET /v1\0 HTTP/1.1\r\nHost: x\r\n\r\n", Expect::Error),
        Case::raw("DEL in the path", "GET /v1\x7f HTTP/1.1\r\nHost: x\r\n\r\n", Expect::Error),
        Case::raw("raw UTF-8 in the path", "GET /v1/nodes/n\u{f6}de HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", Expect::Error),
        Case::raw("raw invalid UTF-8 in the path", b"GET /v1/nodes/\xff\xfe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(), Expect::Error),
        Case::raw("absolute-form URI", "GET http://evil.example/v1/nodes/ghost HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", Expect::Error),
        Case::raw("asterisk-form URI", "OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", Expect::Error),
        Case::raw("empty path", "GET  HTTP/1.1\r\nHost: x\r\n\r\n", Expect::Error),
        Case::raw("header without a colon", "GET /v1 HTTP/1.1\r\nHost x\r\n\r\n", Expect::Error),
        Case::raw("header name with a space", "GET /v1 HTTP/1.1\r\nBad Header: x\r\n\r\n", Expect::Error),
        Case::raw("header value with NUL", "GET /v1 HTTP/1.1\r\nX-A: a\0b\r\n\r\n", Expect::Error),
        Case::raw("obsolete line folding", "GET /v1 HTTP/1.1\r\nX-A: a\r\n b\r\n\r\n", Expect::Error),
        Case::raw("bare LF line ends", "GET /v1/nodes/ghost HTTP/1.1\nHost: x\nConnection: close\n\n", Expect::Error),
        Case::raw("bare CR", "GET /v1 HTTP/1.1\rHost: x\r\r", Expect::ErrorOrClose).half_closed(),
        Case::raw(
            "content length not a number",
            format!("POST /v1/nodes/{node}/action HTTP/1.1\r\nContent-Length: abc\r\n\r\n{{}}"),
            Expect::Error,
        ),
        Case::raw(
            "negative content length",
            format!("POST /v1/nodes/{node}/action HTTP/1.1\r\nContent-Length: -1\r\n\r\n{{}}"),
            Expect::Error,
        ),
        Case::raw(
            "two different content lengths",
            format!("POST /v1/nodes/{node}/action HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{{}}"),
            Expect::Error,
        ),
        Case::raw(
            "content length and chunked",
            format!("POST /v1/nodes/{node}/action HTTP/1.1\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n2\r\n{{}}\r\n0\r\n\r\n"),
            Expect::Error,
        ),
        Case::raw(
            "unknown transfer coding",
            format!("POST /v1/nodes/{node}/action HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n{{}}"),
            Expect::Error,
        ),
        Case::raw(
            "chunked then gzip",
            format!("POST /v1/nodes/{node}/action HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n{{}}"),
            Expect::Error,
        ),
        Case::raw(
            "bad chunk size",
            format!("POST /v1/nodes/{node}/action HTTP/1.1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\n{{}}\r\n0\r\n\r\n"),
            Expect::ErrorOrClose,
        ),
        Case::raw(
            "chunk size overflowing",
            format!("POST /v1/nodes/{node}/action HTTP/1.1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nFFFFFFFFFFFFFFFFFF\r\n{{}}\r\n0\r\n\r\n"),
            Expect::ErrorOrClose,
        ),
        Case::raw(
            "chunked body with a bad JSON",
            format!("POST /v1/nodes/{node}/action HTTP/1.1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\n{{\"a\r\n0\r\n\r\n"),
            Expect::Error,
        ),
        Case::raw(
            "Expect: 100-continue with a bad body",
            format!("POST /v1/nodes/{node}/action HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\nConnection: close\r\n\r\n[]"),
            Expect::Error,
        ),
        Case::raw(
            "Expect: something else",
            format!("POST /v1/nodes/{node}/action HTTP/1.1\r\nExpect: 200-ok\r\nContent-Length: 2\r\nConnection: close\r\n\r\n[]"),
            Expect::Error,
        ),
        Case::raw("200 headers", format!("GET /v1/nodes/ghost HTTP/1.1\r\n{many_headers}Connection: close\r\n\r\n"), Expect::Error),
        Case::raw("a 500 KB header", format!("GET /v1 HTTP/1.1\r\n{big_header}\r\n"), Expect::Error),
        Case::raw("a 70 KB URI", format!("GET {long_uri} HTTP/1.1\r\nConnection: close\r\n\r\n"), Expect::Error),
        Case::raw("Upgrade: websocket", "GET /v1/nodes/ghost HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade, close\r\n\r\n", Expect::Error),
        Case::raw("TLS client hello", b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03".to_vec(), Expect::ErrorOrClose).half_closed(),
        Case::raw("binary noise", (0..=255_u8).cycle().take(4096).collect::<Vec<u8>>(), Expect::ErrorOrClose),
        Case::raw("only CRLFs", "\r\n\r\n\r\n\r\n", Expect::ErrorOrClose).half_closed(),
        Case::raw("head cut short, then EOF", "GET /v1 HTTP/1.1\r\nHost: x", Expect::ErrorOrClose).half_closed(),
        Case::raw("nothing at all, then EOF", "", Expect::Closed).half_closed(),
        Case::raw("a head that never ends", "GET /v1 HTTP/1.1\r\nHost: x\r\n", Expect::Closed),
    ];
    // Content types that are not JSON, on bodies batond must still judge
    // as JSON (it takes curl's default form type), and on a GET.
    let action = format!("/v1/nodes/{node}/action");
    for ct in [
        "text/plain",
        "multipart/form-data; boundary=x",
        "application/xml",
        "application/json; charset=latin1",
        "\u{0}",
    ] {
        cases.push(Case::raw(
            format!("content type {ct:?} with a bad body"),
            request("POST", &action, Some(ct), b"<reboot type=\"HARD\"/>"),
            Expect::Error,
        ));
    }
    cases.push(Case::raw(
        "content type text/plain on GET",
        request("GET", "/v1/nodes/ghost", Some("text/plain"), b""),
        Expect::Error,
    ));
    cases.push(Case::raw(
        "GET with a body",
        request(
            "GET",
            "/v1/nodes/ghost",
            Some("application/json"),
            b"{\"x\": 1}",
        ),
        Expect::Error,
    ));
    cases
}

/// A rack of four nodes, batond on it (sweeps off for the test's length),
/// the inventory imported and one finished job and one schedule stored,
/// so that every route has something real to refuse changes to.
async fn setup(dir: &Path) -> (Rack, DaemonProcess, String) {
    let rack = hwsim::start(baton_hwsim::RackConfig {
        ipmi: true,
        ..hwsim::config(4)
    })
    .await;
    let conductor =
        "[conductor]\npower_state_change_timeout = \"5s\"\nbmc_timeout = \"2s\"\nmax_retries = 1\n\
                     [sync]\ninterval = \"1h\"\nrecovery_interval = \"1h\"\n";
    let batond = DaemonProcess::start_with_api(
        dir,
        &format!("header_timeout = {HEADER_TIMEOUT:?}\nwrite_timeout = \"5s\""),
        conductor,
    )
    .await;
    let client = batond.client();
    let inventory = dir.join("inventory.json");
    rack.write_inventory(&inventory, ExportDriver::Mixed)
        .unwrap();
    let body = std::fs::read(&inventory).unwrap();
    let r = client
        .request(http::Method::POST, "/v1/nodes/import", Some(body.into()))
        .await
        .unwrap();
    assert_eq!(r.status.as_u16(), 200, "{:?}", r.body);
    let batch = json!({"os-stop": {"type": "HARD", "servers": [{"id": node_name(0)}, {"id": node_name(1)}]}});
    let r = client
        .request(
            http::Method::POST,
            "/v1/baremetalservers/action",
            Some(batch.to_string().into()),
        )
        .await
        .unwrap();
    assert_eq!(r.status.as_u16(), 200, "{:?}", r.body);
    let job: Value = serde_json::from_slice(&r.body).unwrap();
    let job = job["job_id"].as_str().unwrap().to_owned();
    wait_until(
        "the setup batch to finish",
        Duration::from_secs(30),
        || async {
            let v: Value = client.get(&format!("/v1/jobs/{job}")).await.ok()?;
            matches!(v["status"].as_str(), Some("SUCCESS")).then_some(())
        },
    )
    .await;
    let schedule = json!({"cron": "0 3 1 1 *", "batch": batch});
    let r = client
        .request(
            http::Method::POST,
            "/v1/schedules",
            Some(schedule.to_string().into()),
        )
        .await
        .unwrap();
    assert_eq!(r.status.as_u16(), 201, "{:?}", r.body);
    (rack, batond, job)
}

/// Every row of every table, as text, in a stable order.
fn dump(db: &Path) -> String {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut out = String::new();
    for table in tables {
        let mut stmt = conn
            .prepare(&format!("SELECT * FROM \"{table}\" ORDER BY 1"))
            .unwrap();
        let columns = stmt.column_count();
        let rows = stmt
            .query_map([], |row| {
                (0..columns)
                    .map(|i| row.get_ref(i).map(|v| format!("{v:?}")))
                    .collect::<Result<Vec<_>, _>>()
            })
            .unwrap();
        for row in rows {
            let _ = writeln!(out, "{table}: {}", row.unwrap().join(" | "));
        }
    }
    out
}

fn power_commands(rack: &Rack) -> u64 {
    rack.nodes()
        .iter()
        .map(|n| n.counters().power_commands)
        .sum()
}

fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
}

/// The matrix: every case on its own connection, a few at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_matrix() {
    raise_fd_limit();
    let dir = tempfile::tempdir().unwrap();
    let (rack, batond, job) = setup(dir.path()).await;
    let node = node_name(2);
    let db = dir.path().join("baton.db");
    let before = dump(&db);
    let commands_before = power_commands(&rack);

    let mut cases = body_cases(&node);
    cases.extend(field_cases(&node, &job));
    cases.extend(query_cases(&node));
    cases.extend(ident_cases(&node));
    cases.extend(method_cases(&node));
    cases.extend(http_cases(&node));
    let tried = cases.len();
    let tally = Arc::new(Tally::default());
    let socket = batond.socket.clone();
    let failures: Vec<String> = stream::iter(cases)
        .map(|case| {
            let (socket, tally) = (socket.clone(), Arc::clone(&tally));
            async move {
                run_case(&socket, &case, &tally)
                    .await
                    .err()
                    .map(|e| format!("{}: {e}", case.name))
            }
        })
        .buffer_unordered(16)
        .filter_map(|f| async move { f })
        .collect()
        .await;

    let server_errors = tally.server_errors.load(Ordering::Relaxed);
    println!(
        "bad-input matrix: {tried} cases tried, {} responses, {} clean closes, {server_errors} × 5xx",
        tally.responses.load(Ordering::Relaxed),
        tally.closes.load(Ordering::Relaxed),
    );
    assert!(
        failures.is_empty(),
        "{} of {tried} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(server_errors, 0);
    assert!(tried >= 150, "only {tried} cases");
    assert_still_serving(&batond).await;
    assert_eq!(
        power_commands(&rack),
        commands_before,
        "a BMC got a command"
    );
    let after = dump(&db);
    assert_same_state(&before, &after);
    assert_no_panic(&batond);
    drop(batond);
    rack.shutdown().await;
}

fn assert_same_state(before: &str, after: &str) {
    if before != after {
        let gone: Vec<&str> = before.lines().filter(|l| !after.contains(l)).collect();
        let new: Vec<&str> = after.lines().filter(|l| !before.contains(l)).collect();
        panic!(
            "the database changed:\nrows gone or changed:\n{}\nrows new or changed:\n{}",
            gone.join("\n"),
            new.join("\n")
        );
    }
}

fn assert_no_panic(batond: &DaemonProcess) {
    let log = batond.log_text();
    assert!(!log.contains("panicked"), "batond panicked:\n{log}");
}

async fn assert_still_serving(batond: &DaemonProcess) {
    let v: Value = batond.client().get("/v1").await.unwrap();
    assert_eq!(v["id"], "v1");
}

/// Clients that send their headers or body one byte a second hold neither
/// a request worker nor other clients up: ordinary requests are answered
/// meanwhile, and batond closes the slow ones (headers after
/// `api.header_timeout`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_loris_clients_block_no_one() {
    raise_fd_limit();
    let dir = tempfile::tempdir().unwrap();
    let (rack, batond, _job) = setup(dir.path()).await;
    let socket = batond.socket.clone();
    let db = dir.path().join("baton.db");
    let before = dump(&db);

    // Heads are cut off by the header timeout; bodies end after a few
    // bytes with the client shutting its side (batond's own body deadline
    // is 30 s, longer than this test should run).
    let slow_head = "GET /v1/nodes HTTP/1.1\r\nHost: localhost\r\nX-Slow: 1\r\n\r\n";
    let slow_body_head = "POST /v1/nodes/import HTTP/1.1\r\nHost: x\r\nContent-Length: 60\r\n\r\n";
    let mut slow = Vec::new();
    for i in 0..200 {
        let socket = socket.clone();
        slow.push(tokio::spawn(async move {
            let mut stream = UnixStream::connect(&socket).await.unwrap();
            let (prefix, drip): (&str, &[u8]) = if i % 2 == 0 {
                ("", slow_head.as_bytes())
            } else {
                (slow_body_head, b"[{\"na")
            };
            stream.write_all(prefix.as_bytes()).await.unwrap();
            for byte in drip {
                if stream.write_all(&[*byte]).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            let _ = stream.shutdown().await;
            // What batond did with the slow client: closed it (after an
            // answer or none); a read that neither ends nor fails within
            // the deadline is a connection batond holds on to.
            let mut answer = Vec::new();
            let ended = tokio::time::timeout(CASE_DEADLINE, stream.read_to_end(&mut answer))
                .await
                .is_ok();
            (i, ended, answer)
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Meanwhile, ordinary requests are served, one after the other.
    let client = batond.client();
    for i in 0..30 {
        let path = if i % 2 == 0 {
            "/v1/nodes"
        } else {
            "/v1/conductor"
        };
        let r = tokio::time::timeout(CASE_DEADLINE, client.request(http::Method::GET, path, None))
            .await
            .unwrap_or_else(|_| panic!("request {i} was held up behind the slow clients"))
            .unwrap();
        assert_eq!(r.status.as_u16(), 200);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut server_errors = 0;
    for task in slow {
        let (i, ended, answer) = task.await.unwrap();
        assert!(ended, "slow client {i} was never closed");
        if let Ok(responses) = parse_responses(&answer) {
            server_errors += responses.iter().filter(|r| r.status >= 500).count();
            for r in &responses {
                assert!(r.status < 500, "{r:?}");
            }
        }
    }
    assert_eq!(server_errors, 0);
    assert_eq!(dump(&db), before);
    assert_still_serving(&batond).await;
    assert_no_panic(&batond);
    drop(batond);
    rack.shutdown().await;
}

/// A thousand connections at once, each with a bad request: every one is
/// answered with a 4xx and the envelope, none with 5xx.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_connections_at_once() {
    raise_fd_limit();
    let dir = tempfile::tempdir().unwrap();
    let (rack, batond, _job) = setup(dir.path()).await;
    let socket = batond.socket.clone();
    let db = dir.path().join("baton.db");
    let before = dump(&db);

    let mut streams = Vec::new();
    for _ in 0..1000 {
        streams.push(UnixStream::connect(&socket).await.unwrap());
    }
    let node = node_name(3);
    let bodies = [
        request(
            "PUT",
            &format!("/v1/nodes/{node}/states/power"),
            None,
            br#"{"target": 7}"#,
        ),
        request("GET", "/v1/nodes?limit=-1", None, b""),
        request("POST", "/v1/baremetalservers/action", None, b"{"),
        request("GET", "/v1/nodes/..%2F..%2Fetc%2Fpasswd", None, b""),
    ];
    let tally = Arc::new(Tally::default());
    let tasks: Vec<_> = streams
        .into_iter()
        .enumerate()
        .map(|(i, mut stream)| {
            let bytes = bodies[i % bodies.len()].clone();
            let tally = Arc::clone(&tally);
            tokio::spawn(async move {
                stream.write_all(&bytes).await.unwrap();
                let mut answer = Vec::new();
                tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut answer))
                    .await
                    .unwrap_or_else(|_| panic!("connection {i} got no answer"))
                    .unwrap();
                let responses = parse_responses(&answer).unwrap();
                assert_eq!(responses.len(), 1, "connection {i}");
                tally.responses.fetch_add(1, Ordering::Relaxed);
                if responses[0].status >= 500 {
                    tally.server_errors.fetch_add(1, Ordering::Relaxed);
                }
                check_envelope(&responses[0]).unwrap_or_else(|e| panic!("connection {i}: {e}"));
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    println!(
        "1000 concurrent connections: {} answered, {} × 5xx",
        tally.responses.load(Ordering::Relaxed),
        tally.server_errors.load(Ordering::Relaxed)
    );
    assert_eq!(tally.server_errors.load(Ordering::Relaxed), 0);
    assert_eq!(dump(&db), before);
    assert_still_serving(&batond).await;
    assert_no_panic(&batond);
    drop(batond);
    rack.shutdown().await;
}
