//! The five fuzzed surfaces, one entry each, shared by the `cargo fuzz`
//! targets in `fuzz/` and their stable equivalent in the test suite
//! (`tests/tests/fuzz_surfaces.rs`): whatever the bytes, each entry must
//! return without a panic, and the checks here (no 5xx, no overrun
//! deadline, no password in an error, …) must hold.
//!
//! - [`ApiTarget`]: bytes written as they are to batond's Unix socket (an
//!   in-process daemon on a throwaway store), the answer read to the close.
//! - [`config`]: bytes as a config file.
//! - [`patch`]: bytes as the body of `PATCH /v1/nodes/{ident}`, applied to
//!   a node by the conductor's patch rules.
//! - [`RedfishTarget`]: bytes as the raw HTTP answers of a scripted BMC to
//!   the Redfish driver's requests.
//! - [`ipmi`]: bytes as IPMI answers, decoded as the IPMI driver does.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use baton_drivers::{
    BootDevice, DriverConfig, DriverError, DriverFactory, DriverKind, PowerAction, PowerDriver,
};
use baton_state::{Node, NodeSpec, MASK};
use batond::config::Config;
use http::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UnixStream};

use crate::daemon::TestDaemon;

/// The BMC password of every node and driver here: an error that shows it
/// (when the input did not carry it) is a leak.
pub const PASSWORD: &str = "fz-Pa55w0rd-Qx7";

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Splits `bytes` at every `separator`.
fn split<'a>(bytes: &'a [u8], separator: &[u8]) -> Vec<&'a [u8]> {
    let mut parts = Vec::new();
    let mut rest = bytes;
    while let Some(at) = rest.windows(separator.len()).position(|w| w == separator) {
        parts.push(&rest[..at]);
        rest = &rest[at + separator.len()..];
    }
    parts.push(rest);
    parts
}

// ---------------------------------------------------------------- the API

/// Longest batond may take to answer an input and close: far more than any
/// request needs; an input still open after it hangs the daemon.
const ANSWER_DEADLINE: Duration = Duration::from_secs(20);

/// batond in-process on a throwaway store, with two nodes (`n1` Redfish,
/// `n2` IPMI) whose BMCs are loopback ports nothing serves, so requests
/// that name them reach the conductor and fail fast.
#[derive(Debug)]
pub struct ApiTarget {
    daemon: TestDaemon,
}

impl ApiTarget {
    pub async fn start() -> Self {
        let daemon = TestDaemon::start_with(|config| {
            // Headers cut short close within a second, not ten.
            config.api.header_timeout = Duration::from_secs(1);
            config.sync.interval = Duration::from_secs(3600);
            config.conductor.bmc_timeout = Duration::from_millis(500);
            config.conductor.max_retries = 0;
            config.conductor.power_state_change_timeout = Duration::from_secs(1);
            config.conductor.soft_power_off_timeout = Duration::from_secs(1);
        })
        .await;
        let port = unserved_port();
        for (name, driver) in [("n1", "redfish"), ("n2", "ipmi")] {
            let node = serde_json::json!({
                "name": name,
                "driver": driver,
                "power_domain": "rack-1",
                "bmc": {"address": "127.0.0.1", "port": port, "username": "admin", "password": PASSWORD}
            });
            let answer = daemon
                .call(Method::POST, "/v1/nodes", Some(&node.to_string()))
                .await;
            assert_eq!(answer.status.as_u16(), 201, "node {name} enrolled");
        }
        Self { daemon }
    }

    pub fn socket(&self) -> &Path {
        self.daemon.socket()
    }

    /// Writes `input` on a fresh connection, closes the sending side and
    /// reads what batond sends until it closes; checks it with
    /// [`check_answer`]. Panics when batond neither answers nor closes
    /// within [`ANSWER_DEADLINE`].
    pub async fn send(&self, input: &[u8]) -> Vec<u8> {
        let exchange = async {
            let mut stream = UnixStream::connect(self.socket())
                .await
                .expect("connect to batond");
            // batond may close before reading everything (a refused head):
            // what it answered is still there to read.
            let _ = stream.write_all(input).await;
            let _ = stream.shutdown().await;
            let mut answer = Vec::new();
            let _ = stream.read_to_end(&mut answer).await;
            answer
        };
        let answer = tokio::time::timeout(ANSWER_DEADLINE, exchange)
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "batond neither answered nor closed within {ANSWER_DEADLINE:?}: {:?}",
                    String::from_utf8_lossy(input)
                )
            });
        check_answer(input, &answer);
        answer
    }

    pub async fn stop(self) {
        self.daemon.stop().await;
    }
}

/// A loopback TCP port with nothing listening (bound, then released).
fn unserved_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Panics when any answer in `answer` (several, when requests were
/// pipelined) has a 5xx status that is not a BMC's failure passed on
/// ("the BMC request failed: …", 503 or 500 by design), or shows the BMC
/// password.
pub fn check_answer(input: &[u8], answer: &[u8]) {
    let text = String::from_utf8_lossy(answer);
    let heads: Vec<usize> = text
        .match_indices("HTTP/1.")
        .map(|(at, _)| at)
        .filter(|at| *at == 0 || text[..*at].ends_with('\n'))
        .collect();
    for (i, at) in heads.iter().enumerate() {
        let one = &text[*at..heads.get(i + 1).copied().unwrap_or(text.len())];
        let server_error = one.get(9..10) == Some("5");
        if server_error && !one.contains(r#""message":"the BMC request failed: "#) {
            panic!(
                "batond answered 5xx to {:?}:\n{text}",
                String::from_utf8_lossy(input)
            );
        }
    }
    if !contains(input, PASSWORD.as_bytes()) {
        assert!(
            !text.contains(PASSWORD),
            "an answer shows the BMC password:\n{text}"
        );
    }
}

/// Whether `input` could make batond talk to a BMC other than the two
/// loopback ones [`ApiTarget`] enrolls: a node's BMC can only be named
/// through a `bmc` key or path, written out or hidden behind a JSON escape
/// or a chunked body. The cargo-fuzz target runs every input in a network
/// namespace of its own; the stable tests, which share the host's network,
/// send only inputs for which this is false.
pub fn may_name_a_bmc(input: &[u8]) -> bool {
    let lower = input.to_ascii_lowercase();
    contains(&lower, b"bmc") || contains(&lower, b"chunked") || input.contains(&b'\\')
}

// ------------------------------------------------------------- the config

/// Parses `input` as batond's config file. A refused file must name at
/// least one problem; an accepted one must read back the same once
/// written out again.
pub fn config(input: &[u8]) {
    let Ok(text) = std::str::from_utf8(input) else {
        return; // Config::load refuses non-UTF-8 when reading the file.
    };
    match Config::parse(text) {
        Err(problems) => assert!(
            !problems.is_empty(),
            "a refused config names no problem: {text:?}"
        ),
        Ok(config) => {
            let written = toml::to_string(&config).expect("an accepted config writes out");
            let again = Config::parse(&written).unwrap_or_else(|p| {
                panic!("{text:?} was accepted, written out as {written:?} it is refused: {p:?}")
            });
            assert_eq!(again, config, "{text:?} does not read back as written");
        }
    }
}

// ---------------------------------------------------------- JSON Patch

/// The node every patch applies to: named, in maintenance with a reason,
/// with a stored password and some `extra`.
fn patch_node() -> Node {
    let spec: NodeSpec = serde_json::from_value(serde_json::json!({
        "name": "n1", "driver": "redfish", "power_domain": "rack-1",
        "maintenance": true, "maintenance_reason": "disk swap",
        "extra": {"rack": "r1", "slots": [1, 2, {"u": 3}]},
        "bmc": {"address": "10.0.0.1", "username": "root", "password": PASSWORD}
    }))
    .expect("the patched node is valid");
    Node::enrolled(spec)
}

/// Reads `input` as `PATCH /v1/nodes/{ident}` does and applies it by the
/// conductor's rules, with and without a default BMC password. The
/// outcome must be a valid node or an error that does not show the
/// password; the password stays unless the patch names `bmc`, and never
/// becomes the placeholder the rules put in its place.
pub fn patch(input: &[u8]) {
    let Ok(patch) = batond::api::request::parse_json::<json_patch::Patch>(input, "JSON Patch")
    else {
        return;
    };
    let sent = strings_in(&serde_json::to_value(&patch).unwrap_or_default());
    let node = patch_node();
    let names_password = sent.iter().any(|s| s.contains(PASSWORD));
    for default_password in [false, true] {
        match batond::conductor::patch::apply(&node, &patch, default_password) {
            Err(error) => {
                let shown = error.to_string();
                assert!(
                    names_password || !shown.contains(PASSWORD),
                    "a refused patch shows the password: {shown}"
                );
            }
            Ok(spec) => check_patched(input, &sent, &spec),
        }
    }
}

/// Every string in `value` (keys and values, JSON escapes decoded): what
/// a patch sent, whichever way it was written.
fn strings_in(value: &serde_json::Value) -> Vec<String> {
    let mut strings = Vec::new();
    let mut stack = vec![value];
    while let Some(value) = stack.pop() {
        match value {
            serde_json::Value::String(s) => strings.push(s.clone()),
            serde_json::Value::Array(items) => stack.extend(items),
            serde_json::Value::Object(map) => {
                strings.extend(map.keys().cloned());
                stack.extend(map.values());
            }
            _ => {}
        }
    }
    strings
}

/// `sent`: the strings of the patch (see [`strings_in`]).
fn check_patched(input: &[u8], sent: &[String], spec: &NodeSpec) {
    let problems = spec.validate();
    assert!(
        problems.is_empty(),
        "the patch {:?} made an invalid node: {problems:?}",
        String::from_utf8_lossy(input)
    );
    let password = spec.bmc.password.as_ref().map(baton_state::Secret::expose);
    if !sent.iter().any(|s| s.contains("bmc")) {
        assert_eq!(
            password,
            Some(PASSWORD),
            "a patch without /bmc lost the password"
        );
    }
    if let Some(password) = password {
        assert!(
            !password.starts_with(MASK) || sent.iter().any(|s| s == password),
            "the password became {password:?}, which the patch did not send"
        );
    }
    let size = serde_json::to_vec(spec).map_or(usize::MAX, |v| v.len());
    assert!(
        size <= batond::conductor::patch::MAX_DOCUMENT_BYTES,
        "a patch made a node of {size} bytes"
    );
}

// ------------------------------------------------------------- Redfish

/// Separates the BMC's answers in a Redfish input.
pub const ANSWER_SEPARATOR: &[u8] = b"\n~~~\n";
/// The Redfish driver's call deadline here (in the paused clock of the
/// runtime [`RedfishTarget`] runs on, so waits cost no real time).
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// What the scripted BMC answers once the input's answers are used up.
const NOT_FOUND: &[u8] = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n";

/// The runtime [`RedfishTarget`] runs on: one thread, clock paused.
pub fn redfish_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("a tokio runtime")
}

/// A scripted BMC on loopback that answers each request with the next of
/// the input's raw answers (bytes written as they are, then the connection
/// closed), and the Redfish driver that talks to it.
///
/// Runs on a current-thread runtime with the clock paused: every exchange
/// is on loopback, so the runtime is idle only while the driver waits on a
/// timer (a retry pause, a task poll), and then the clock jumps ahead.
#[derive(Debug)]
pub struct RedfishTarget {
    factory: DriverFactory,
    port: u16,
    answers: Arc<Mutex<VecDeque<Vec<u8>>>>,
}

impl RedfishTarget {
    /// Starts the scripted BMC; call inside the runtime that runs
    /// [`RedfishTarget::run`].
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the scripted BMC");
        let port = listener.local_addr().expect("its address").port();
        let answers: Arc<Mutex<VecDeque<Vec<u8>>>> = Arc::default();
        let queue = Arc::clone(&answers);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(answer_one(stream, Arc::clone(&queue)));
            }
        });
        Self {
            factory: DriverFactory::new(),
            port,
            answers,
        }
    }

    /// Runs two driver calls (picked by the first byte's nibbles) and a
    /// logout against the answers in the rest of `input`. Each call must
    /// end within its deadline, and no error may show the password.
    pub async fn run(&self, input: &[u8]) {
        let Some((calls, rest)) = input.split_first() else {
            return;
        };
        *self.answers.lock().unwrap_or_else(PoisonError::into_inner) =
            split(rest, ANSWER_SEPARATOR)
                .into_iter()
                .map(<[u8]>::to_vec)
                .collect();
        let mut config = DriverConfig::new(
            DriverKind::Redfish,
            "http://127.0.0.1",
            Some(self.port),
            "admin",
            PASSWORD,
        );
        config.options.call_timeout = CALL_TIMEOUT;
        config.options.connect_timeout = Duration::from_secs(1);
        let driver = self.factory.build(&config).expect("the driver builds");
        let names_password = contains(input, PASSWORD.as_bytes());
        for call in [calls & 0x0F, calls >> 4] {
            let outcome = tokio::time::timeout(CALL_TIMEOUT * 2, redfish_call(&*driver, call))
                .await
                .unwrap_or_else(|_| {
                    panic!("Redfish call {call} overran its {CALL_TIMEOUT:?} deadline")
                });
            if let Err(error) = outcome {
                let shown = error.to_string();
                assert!(
                    names_password || !shown.contains(PASSWORD),
                    "a Redfish error shows the password: {shown}"
                );
            }
        }
        tokio::time::timeout(CALL_TIMEOUT * 2, driver.close())
            .await
            .expect("the logout overran its deadline");
    }
}

/// One driver call, picked by `call`.
async fn redfish_call(driver: &dyn PowerDriver, call: u8) -> Result<(), DriverError> {
    match call % 10 {
        0 => driver.power_state().await.map(drop),
        1 => driver.set_power(PowerAction::On).await,
        2 => driver.set_power(PowerAction::SoftOff).await,
        3 => driver.set_power(PowerAction::PowerCycle).await,
        4 => driver.set_power(PowerAction::SoftReboot).await,
        5 => driver.boot_device().await.map(drop),
        6 => driver.set_boot_device(BootDevice::Pxe, true).await,
        7 => driver.inject_nmi().await,
        8 => driver.validate().await,
        _ => driver.capabilities().await.map(drop),
    }
}

/// Reads one request (head, then as many body bytes as it declares) and
/// answers it with the next scripted answer, then closes.
async fn answer_one(mut stream: TcpStream, answers: Arc<Mutex<VecDeque<Vec<u8>>>>) {
    let mut request = Vec::new();
    let mut buffer = [0_u8; 4096];
    let body_start = loop {
        if let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buffer[..n]),
        }
    };
    let head = String::from_utf8_lossy(&request[..body_start]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while request.len() < body_start + length {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buffer[..n]),
        }
    }
    let answer = answers
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .pop_front()
        .unwrap_or_else(|| NOT_FOUND.to_vec());
    let _ = stream.write_all(&answer).await;
    let _ = stream.shutdown().await;
}

// ---------------------------------------------------------------- IPMI

/// Decodes `input` as the IPMI driver decodes what a BMC sends (see
/// [`baton_drivers::fuzzing::ipmi_answer`]).
pub fn ipmi(input: &[u8]) {
    std::hint::black_box(baton_drivers::fuzzing::ipmi_answer(input));
}
