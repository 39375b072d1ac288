//! Harness for crash tests of the real `batond` binary ([`DaemonProcess`])
//! against an in-process hw-sim rack: import the rack, start and follow
//! batches through the socket, check the database as a crash left it, and
//! judge each node's power commands across a `kill -9` from hw-sim's
//! counters.

use std::path::Path;
use std::time::Duration;

use baton_hwsim::{ExportDriver, PowerState, Rack};
use batond::api::types::{JobCreated, JobDocument};
use batond::client::Client;
use bytes::Bytes;
use http::Method;

use crate::daemon::{wait_until, DaemonProcess};

/// Sends a request and expects `200`; returns the body.
pub async fn request_ok(
    client: &Client,
    method: Method,
    path: &str,
    body: Option<String>,
) -> Bytes {
    let r = client
        .request(method, path, body.map(Bytes::from))
        .await
        .unwrap_or_else(|e| panic!("{path}: batond did not answer: {e}"));
    assert_eq!(r.status.as_u16(), 200, "{path}: {:?}", r.body);
    r.body
}

/// Imports the whole rack (even nodes Redfish, odd ones IPMI).
pub async fn import(rack: &Rack, daemon: &DaemonProcess) {
    let path = daemon.dir.join("inventory.json");
    rack.write_inventory(&path, ExportDriver::Mixed)
        .unwrap_or_else(|e| panic!("inventory: {e}"));
    let body = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("inventory: {e}"));
    request_ok(
        &daemon.client(),
        Method::POST,
        "/v1/nodes/import",
        Some(body),
    )
    .await;
}

/// Starts a batch; returns its job id.
pub async fn post_batch(client: &Client, body: &serde_json::Value) -> String {
    let created = request_ok(
        client,
        Method::POST,
        "/v1/baremetalservers/action",
        Some(body.to_string()),
    )
    .await;
    serde_json::from_slice::<JobCreated>(&created)
        .unwrap_or_else(|e| panic!("job created: {e}"))
        .job_id
}

/// `GET /v1/jobs/{job_id}`.
pub async fn job(client: &Client, job_id: &str) -> JobDocument {
    let body = request_ok(client, Method::GET, &format!("/v1/jobs/{job_id}"), None).await;
    serde_json::from_slice(&body).unwrap_or_else(|e| panic!("job document: {e}"))
}

/// Waits until the job is SUCCESS or FAIL.
pub async fn finished_job(client: &Client, job_id: &str, patience: Duration) -> JobDocument {
    wait_until(&format!("job {job_id} to finish"), patience, || async {
        let j = job(client, job_id).await;
        matches!(j.status.as_str(), "SUCCESS" | "FAIL").then_some(j)
    })
    .await
}

/// Runs a batch to its end.
pub async fn run_batch(
    daemon: &DaemonProcess,
    body: &serde_json::Value,
    patience: Duration,
) -> JobDocument {
    let client = daemon.client();
    let job_id = post_batch(&client, body).await;
    finished_job(&client, &job_id, patience).await
}

/// `{"servers": [{"id": name}, …]}` entries for every node of the rack.
pub fn servers(rack: &Rack) -> Vec<serde_json::Value> {
    rack.nodes()
        .iter()
        .map(|n| serde_json::json!({ "id": n.name() }))
        .collect()
}

/// `PRAGMA integrity_check` of a database, as text (`"ok"` when sound).
pub fn integrity(db: &Path) -> String {
    let conn =
        rusqlite::Connection::open(db).unwrap_or_else(|e| panic!("open {}: {e}", db.display()));
    conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap_or_else(|e| panic!("integrity_check of {}: {e}", db.display()))
}

/// What one node's BMC had seen when batond was killed (read once the dead
/// batond's last requests had landed).
#[derive(Debug, Clone, Copy)]
pub struct AtKill {
    pub commands: u64,
    /// The node was already in the state being driven to.
    pub reached: bool,
}

/// Every node's [`AtKill`] for a drive towards `target`.
pub fn at_kill(rack: &Rack, target: PowerState) -> Vec<AtKill> {
    rack.nodes()
        .iter()
        .map(|n| AtKill {
            commands: n.counters().power_commands,
            reached: n.power_state() == target,
        })
        .collect()
}

/// How many nodes of the rack are in `target` (settled).
pub fn reached(rack: &Rack, target: PowerState) -> usize {
    rack.nodes()
        .iter()
        .filter(|n| n.power_state() == target)
        .count()
}

/// What is wrong with node `i` after a hard power on/off that a kill
/// interrupted, if anything. It must be in `target`, have been commanded
/// when `commanded` says it needed to be, and:
/// - a node that had reached `target` at the kill got no further command;
/// - one on its way got at most one more, and only if it is an IPMI node
///   (odd index in a mixed inventory): IPMI reports the old state until the
///   power changes, while Redfish shows the transition, so a Redfish node
///   on its way is left alone. A hard on/off is idempotent.
pub fn hard_power_problem(
    rack: &Rack,
    i: usize,
    target: PowerState,
    kill: AtKill,
    commanded: bool,
) -> Option<String> {
    let node = &rack.nodes()[i];
    let commands = node.counters().power_commands;
    let state = node.power_state();
    let on_its_way = kill.commands >= 1 && !kill.reached;
    let most = kill.commands.max(u64::from(commanded)) + u64::from(i % 2 == 1 && on_its_way);
    let least = u64::from(commanded);
    let fine = state == target
        && (least..=most).contains(&commands)
        && (!kill.reached || commands == kill.commands);
    (!fine).then(|| {
        format!(
            "{}: {state:?}, {commands} power command(s); at the kill {kill:?}",
            node.name()
        )
    })
}

/// Every node's problem (see [`hard_power_problem`]), as lines.
pub fn hard_power_problems(
    rack: &Rack,
    target: PowerState,
    kills: &[AtKill],
    commanded: bool,
) -> Vec<String> {
    kills
        .iter()
        .enumerate()
        .filter_map(|(i, kill)| hard_power_problem(rack, i, target, *kill, commanded))
        .collect()
}
