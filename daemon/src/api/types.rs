//! The API's request and response bodies. The `baton` CLI deserializes the
//! daemon's answers with these same types, so the two cannot drift apart.

use std::collections::BTreeMap;

use baton_state::{Bmc, Driver, Node, PowerState};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The API's one major version.
pub const API_VERSION: &str = "v1";

/// A link to a resource, as in the OpenStack APIs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub href: String,
    pub rel: String,
}

impl Link {
    pub fn self_link(href: String) -> Vec<Link> {
        vec![Link {
            href,
            rel: "self".into(),
        }]
    }
}

/// `GET /v1`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionDocument {
    pub id: String,
    pub status: String,
    /// batond's own version.
    pub version: String,
    pub links: Vec<Link>,
    /// The resources this version serves.
    pub resources: Vec<Link>,
}

/// A node as the API shows it. `bmc.password` is always `"******"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeView {
    pub uuid: Uuid,
    pub name: Option<String>,
    pub driver: Driver,
    pub bmc: Bmc,
    pub power_domain: Option<String>,
    pub power_state: Option<PowerState>,
    pub target_power_state: Option<PowerState>,
    pub boot_device: Option<String>,
    pub maintenance: bool,
    pub maintenance_reason: Option<String>,
    pub fault: Option<String>,
    pub locked: bool,
    pub lock_reason: Option<String>,
    pub locked_by: Option<String>,
    pub last_error: Option<String>,
    pub reservation: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub extra: serde_json::Map<String, serde_json::Value>,
    pub links: Vec<Link>,
}

/// A node in a plain (non-detail) listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSummary {
    pub uuid: Uuid,
    pub name: Option<String>,
    pub driver: Driver,
    pub power_domain: Option<String>,
    pub power_state: Option<PowerState>,
    pub target_power_state: Option<PowerState>,
    pub maintenance: bool,
    pub links: Vec<Link>,
}

/// `GET /v1/nodes` (`T` = [`NodeSummary`]) and `/v1/nodes/detail`
/// (`T` = [`NodeView`]). `next` is the URL of the following page, present
/// when this page is full.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeList<T> {
    pub nodes: Vec<T>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// `POST /v1/nodes/import`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportResult {
    pub count: usize,
    pub uuids: Vec<Uuid>,
}

/// `GET /v1/nodes/{ident}/states`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStates {
    pub power_state: Option<PowerState>,
    pub target_power_state: Option<PowerState>,
    pub boot_device: Option<String>,
    pub maintenance: bool,
    pub maintenance_reason: Option<String>,
    pub fault: Option<String>,
    pub locked: bool,
    pub last_error: Option<String>,
}

/// `GET /v1/conductor`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConductorStatus {
    pub version: String,
    pub hostname: String,
    pub started_at: String,
    pub uptime_seconds: u64,
    pub workers: WorkerStatus,
    pub nodes: NodeCounts,
    pub process: ProcessStatus,
    pub database: DatabaseStatus,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerStatus {
    pub max: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeCounts {
    pub total: u64,
    /// Keyed by power state; `"null"` counts nodes never read.
    pub by_power_state: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessStatus {
    pub pid: u32,
    pub rss_bytes: u64,
    /// Share of one core since the previous status call (or start-up).
    pub cpu_percent: f32,
    pub cpu_seconds: f64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseStatus {
    pub path: String,
    pub size_bytes: u64,
    pub schema_version: i64,
}

/// The error envelope every failed request gets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorEnvelope {
    pub error: ErrorBody,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
    pub request_id: String,
}

/// The key used for nodes whose power state was never read.
pub const NEVER_READ: &str = "null";

pub fn power_state_key(state: Option<PowerState>) -> &'static str {
    state.map_or(NEVER_READ, PowerState::as_str)
}

pub(crate) fn node_href(uuid: Uuid) -> String {
    format!("/{API_VERSION}/nodes/{uuid}")
}

fn timestamp(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

impl From<Node> for NodeView {
    fn from(node: Node) -> Self {
        let spec = node.spec;
        Self {
            uuid: node.uuid,
            name: spec.name,
            driver: spec.driver,
            bmc: spec.bmc,
            power_domain: spec.power_domain,
            power_state: node.power_state,
            target_power_state: node.target_power_state,
            boot_device: node.boot_device,
            maintenance: spec.maintenance,
            maintenance_reason: spec.maintenance_reason,
            fault: node.fault,
            locked: node.locked,
            lock_reason: node.lock_reason,
            locked_by: node.locked_by,
            last_error: node.last_error,
            reservation: node.reservation,
            created_at: timestamp(node.created_at),
            updated_at: timestamp(node.updated_at),
            extra: spec.extra,
            links: Link::self_link(node_href(node.uuid)),
        }
    }
}

impl From<Node> for NodeSummary {
    fn from(node: Node) -> Self {
        Self {
            uuid: node.uuid,
            name: node.spec.name,
            driver: node.spec.driver,
            power_domain: node.spec.power_domain,
            power_state: node.power_state,
            target_power_state: node.target_power_state,
            maintenance: node.spec.maintenance,
            links: Link::self_link(node_href(node.uuid)),
        }
    }
}

impl From<&Node> for NodeStates {
    fn from(node: &Node) -> Self {
        Self {
            power_state: node.power_state,
            target_power_state: node.target_power_state,
            boot_device: node.boot_device.clone(),
            maintenance: node.spec.maintenance,
            maintenance_reason: node.spec.maintenance_reason.clone(),
            fault: node.fault.clone(),
            locked: node.locked,
            last_error: node.last_error.clone(),
        }
    }
}
