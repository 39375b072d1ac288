//! Helpers for the hw-sim tests (`tests/tests/hwsim_*.rs`): start a rack
//! in-process with short delays, HTTP clients for a node's Redfish service
//! and the control API, polling with a deadline, and the interop venv.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use baton_hwsim::{Delays, Node, Rack, RackConfig};
use reqwest::{Client, Method, RequestBuilder, Response};
use serde_json::Value;

/// Test credentials of every simulated BMC.
pub const USER: &str = "admin";
/// Test password.
pub const PASSWORD: &str = "test-password";

/// Longest a test waits for something that must happen.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A config with `nodes` nodes, free ports and short delays.
pub fn config(nodes: usize) -> RackConfig {
    RackConfig {
        nodes,
        credentials: baton_hwsim::Credentials {
            username: USER.into(),
            password: PASSWORD.into(),
        },
        delays: Delays {
            power_on: Duration::from_millis(150),
            power_off: Duration::from_millis(100),
            shutdown: Duration::from_millis(200),
        },
        ..RackConfig::default()
    }
}

/// Starts a rack from `config`, failing the test with the error chain.
pub async fn start(config: RackConfig) -> Rack {
    match Rack::start(config).await {
        Ok(rack) => rack,
        Err(error) => panic!("rack did not start: {}", chain(&error)),
    }
}

/// An error and its sources, joined with ": ".
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// An HTTP client with a 10 s timeout and no connection reuse surprises.
pub fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap_or_else(|e| panic!("HTTP client: {e}"))
}

/// A rack started from `config` over plain HTTP, then one over HTTPS, each
/// with a client that trusts it.
pub async fn plain_and_tls(config: RackConfig) -> Vec<(Rack, Client)> {
    let plain = start(config.clone()).await;
    let tls = start(RackConfig {
        tls: true,
        ..config
    })
    .await;
    let pem = tls
        .ca_certificate_pem()
        .unwrap_or_else(|| panic!("a TLS rack has a CA"));
    let ca = reqwest::Certificate::from_pem(pem.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    let trusting = Client::builder()
        .add_root_certificate(ca)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    vec![(plain, client()), (tls, trusting)]
}

/// A request to `path` on `node`'s Redfish service with basic auth.
pub fn redfish(
    client: &Client,
    rack: &Rack,
    node: &Node,
    method: Method,
    path: &str,
) -> RequestBuilder {
    client
        .request(method, format!("{}{path}", rack.redfish_url(node)))
        .basic_auth(USER, Some(PASSWORD))
}

/// Sends, and returns status and JSON body (`Null` when empty or not JSON).
pub async fn send(request: RequestBuilder) -> (u16, Value) {
    let response = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("request failed: {}", chain(&e)));
    body(response).await
}

/// Status and JSON body of a response.
pub async fn body(response: Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let bytes = response
        .bytes()
        .await
        .unwrap_or_else(|e| panic!("reading body: {e}"));
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// `GET <control>/<path>` as JSON.
pub async fn control_get(client: &Client, rack: &Rack, path: &str) -> Value {
    let (status, json) = send(client.get(control_url(rack, path))).await;
    assert_eq!(status, 200, "GET {path}: {json}");
    json
}

/// The control API URL of `path`.
pub fn control_url(rack: &Rack, path: &str) -> String {
    let base = rack
        .control_url()
        .unwrap_or_else(|| panic!("rack started without a control API"));
    format!("{base}{path}")
}

/// The Base registry message id of a Redfish error body, without the version
/// (`Base.1.18.ResourceNotFound` → `ResourceNotFound`).
pub fn message_key(error: &Value) -> String {
    let id = error["error"]["@Message.ExtendedInfo"][0]["MessageId"]
        .as_str()
        .unwrap_or_default();
    id.rsplit('.').next().unwrap_or_default().to_owned()
}

/// Polls `check` until it yields `Some`, failing the test after [`PATIENCE`].
pub async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// The interop venv's Python: `$BATON_VENV/bin/python`, else `<workspace>/.venv`.
/// Fails the test, saying how to install it, when it is missing.
pub fn venv_python() -> PathBuf {
    let venv = std::env::var_os("BATON_VENV")
        .map_or_else(|| workspace_root().join(".venv"), PathBuf::from);
    let python = venv.join("bin/python");
    assert!(
        python.is_file(),
        "{} not found: run scripts/install-test-deps.sh (or ./test.sh) to install the interop peers",
        python.display()
    );
    python
}
