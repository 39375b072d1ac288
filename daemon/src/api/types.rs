//! The API's request and response bodies. The `baton` CLI deserializes the
//! daemon's answers with these same types, so the two cannot drift apart.

use std::collections::BTreeMap;

use baton_state::{Bmc, Driver, Node, PowerState};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use crate::conductor::stats::SweepReport;

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
    /// The power operation in flight, if any.
    #[serde(default)]
    pub power_operation: Option<PowerOperationView>,
    #[serde(default)]
    pub learned_transitions: LearnedTransitions,
    /// Consecutive failed power-sync reads.
    #[serde(default)]
    pub sync_failures: u32,
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
    pub operations: OperationStatus,
    /// BMC requests since start-up, by protocol and result.
    pub bmc_requests: Vec<BmcRequestCount>,
    /// The last power-sync sweep and the last recovery sweep, when run.
    pub last_sweeps: Vec<SweepReport>,
    pub nodes: NodeCounts,
    pub process: ProcessStatus,
    pub database: DatabaseStatus,
}

/// The bounded pool of BMC requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerStatus {
    pub max: u32,
    /// Requests on the wire now.
    pub busy: u64,
    /// Requests waiting for their BMC's turn or a free worker.
    pub waiting: u64,
}

/// Power operations: nodes in transition now, and those finished since
/// start-up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperationStatus {
    pub in_flight: u64,
    pub succeeded: u64,
    pub failed: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BmcRequestCount {
    /// `redfish` or `ipmi`.
    pub protocol: String,
    /// `ok`, or the kind of the driver error.
    pub result: String,
    pub count: u64,
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
    /// Why the database refuses writes (file deleted or replaced, disk
    /// full, read-only file system…) and what to do; `null` while it takes
    /// them.
    #[serde(default)]
    pub writes_refused: Option<String>,
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
            power_operation: node.conductor.operation.map(|op| PowerOperationView {
                verb: op.verb.as_str().to_owned(),
                request_id: op.request_id,
                requested_at: timestamp(op.requested_at),
                phase: op.phase.as_str().to_owned(),
            }),
            learned_transitions: LearnedTransitions {
                power_on_seconds: seconds(node.conductor.transitions.power_on_ms),
                power_off_seconds: seconds(node.conductor.transitions.power_off_ms),
            },
            sync_failures: node.conductor.sync_failures,
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

/// `PUT /v1/nodes/{ident}/states/power`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PowerStateRequest {
    /// `power on`, `power off`, `rebooting`, `soft power off`,
    /// `soft rebooting` or `power cycle`.
    pub target: String,
    /// Seconds the node may take to reach the state (default: the
    /// conductor's `power_state_change_timeout`, or `soft_power_off_timeout`
    /// for soft verbs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
}

/// `PUT /v1/nodes/{ident}/states/boot_device`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootDeviceRequest {
    /// `pxe`, `disk`, `cdrom` or `bios`.
    pub boot_device: String,
    /// Every boot, not only the next one.
    #[serde(default)]
    pub persistent: bool,
}

/// `PUT /v1/nodes/{ident}/maintenance`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The answer to an accepted action (202): where its record is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionAccepted {
    pub request_id: String,
    pub node: Uuid,
    pub action: String,
    pub target_power_state: Option<PowerState>,
    pub links: Vec<Link>,
}

/// One entry of `GET /v1/nodes/{ident}/os-instance-actions` (Nova's fields).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceAction {
    pub action: String,
    pub instance_uuid: Uuid,
    pub request_id: String,
    pub user_id: Option<String>,
    /// The caller's user name, when its uid resolved to one.
    #[serde(default)]
    pub user_name: Option<String>,
    pub project_id: Option<String>,
    pub start_time: String,
    pub updated_at: String,
    pub message: Option<String>,
    /// The batch sub-job this action carried out, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_job_id: Option<String>,
    pub events: Vec<InstanceActionEvent>,
}

/// One step of an action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceActionEvent {
    pub event: String,
    pub start_time: String,
    pub finish_time: Option<String>,
    /// `Success` or `Error`; `null` while running.
    pub result: Option<String>,
    pub traceback: Option<String>,
    pub host: Option<String>,
}

/// `GET /v1/nodes/{ident}/os-instance-actions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceActionList {
    #[serde(rename = "instanceActions")]
    pub instance_actions: Vec<InstanceAction>,
    /// The next page, when this one is full.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// `GET /v1/nodes/{ident}/os-instance-actions/{request_id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceActionDocument {
    #[serde(rename = "instanceAction")]
    pub instance_action: InstanceAction,
}

/// The conductor's view of a node's power operation, in the node view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PowerOperationView {
    /// The verb asked for (`rebooting`, `soft power off`, …).
    pub verb: String,
    pub request_id: String,
    pub requested_at: String,
    /// `queued`, or `sent` once a command that must not run twice may have
    /// reached the BMC.
    pub phase: String,
}

/// How long this node's power changes took, as learned from its
/// operations; the conductor reads the node first around then.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LearnedTransitions {
    pub power_on_seconds: Option<f64>,
    pub power_off_seconds: Option<f64>,
}

pub(crate) fn action_href(node: Uuid, request_id: &str) -> String {
    format!("/{API_VERSION}/nodes/{node}/os-instance-actions/{request_id}")
}

impl From<baton_state::Action> for InstanceAction {
    fn from(action: baton_state::Action) -> Self {
        Self {
            action: action.action,
            instance_uuid: action.node_uuid,
            request_id: action.request_id,
            user_id: action.user_id,
            user_name: action.user_name,
            project_id: action.project_id,
            start_time: timestamp(action.start_time),
            updated_at: timestamp(action.updated_at),
            message: action.message,
            sub_job_id: action.sub_job_id,
            events: action
                .events
                .into_iter()
                .map(|e| InstanceActionEvent {
                    event: e.event,
                    start_time: timestamp(e.start_time),
                    finish_time: e.finish_time.map(timestamp),
                    result: e.result.map(|r| r.as_str().to_owned()),
                    traceback: e.traceback,
                    host: e.host,
                })
                .collect(),
        }
    }
}

fn seconds(ms: Option<u32>) -> Option<f64> {
    ms.map(|ms| f64::from(ms) / 1000.0)
}

/// `POST /v1/baremetalservers/action`: the job that carries the batch out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobCreated {
    pub job_id: String,
}

/// `GET /v1/jobs/{job_id}` (the BMS API's task status), and each entry of
/// `GET /v1/jobs` (without `sub_jobs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobDocument {
    pub job_id: String,
    /// `baremetalBatchOperate`.
    pub job_type: String,
    /// `os-stop`, `os-start` or `reboot`.
    pub operation: String,
    /// `SOFT` or `HARD`, for stop and reboot.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub stop_type: Option<String>,
    /// `INIT`, `RUNNING`, `SUCCESS` or `FAIL`.
    pub status: String,
    pub begin_time: Option<String>,
    pub end_time: Option<String>,
    pub error_code: Option<String>,
    pub fail_reason: Option<String>,
    pub request_id: String,
    pub project_id: Option<String>,
    pub user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_id: Option<String>,
    pub created_at: String,
    pub entities: JobEntities,
}

/// A job's sub-jobs, and how many stand where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobEntities {
    pub sub_jobs_total: u64,
    /// Sub-jobs per status: `INIT`, `RUNNING`, `SUCCESS`, `FAIL`.
    pub sub_jobs_status: SubJobStatusCounts,
    /// Present in `GET /v1/jobs/{job_id}`, left out of listings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_jobs: Option<Vec<SubJobDocument>>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub struct SubJobStatusCounts {
    pub init: u64,
    pub running: u64,
    pub success: u64,
    pub fail: u64,
}

/// One server of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubJobDocument {
    pub job_id: String,
    /// `baremetalSingleOperate`.
    pub job_type: String,
    pub status: String,
    pub begin_time: Option<String>,
    pub end_time: Option<String>,
    pub entities: SubJobEntities,
    pub error_code: Option<String>,
    pub fail_reason: Option<String>,
    /// How it ended when it succeeded ("already power off"…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The node action (`GET /v1/nodes/{server_id}/os-instance-actions/{request_id}`).
    pub request_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubJobEntities {
    pub server_id: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
}

/// `GET /v1/jobs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobList {
    pub jobs: Vec<JobDocument>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

pub const BATCH_JOB_TYPE: &str = "baremetalBatchOperate";
pub const SINGLE_JOB_TYPE: &str = "baremetalSingleOperate";

impl From<baton_state::Job> for JobDocument {
    fn from(job: baton_state::Job) -> Self {
        let counts = job.counts;
        let sub_jobs = if job.sub_jobs.is_empty() {
            None
        } else {
            Some(job.sub_jobs.into_iter().map(SubJobDocument::from).collect())
        };
        Self {
            job_id: job.job_id,
            job_type: BATCH_JOB_TYPE.into(),
            operation: job.operation.name().into(),
            stop_type: job.operation.stop_type().map(|t| t.as_str().into()),
            status: job.status.as_str().into(),
            begin_time: job.begin_time.map(timestamp),
            end_time: job.end_time.map(timestamp),
            error_code: job.error_code,
            fail_reason: job.fail_reason,
            request_id: job.request_id,
            project_id: job.project_id,
            user_id: job.user_id,
            schedule_id: job.schedule_id,
            created_at: timestamp(job.created_at),
            entities: JobEntities {
                sub_jobs_total: counts.total(),
                sub_jobs_status: SubJobStatusCounts {
                    init: counts.init,
                    running: counts.running,
                    success: counts.success,
                    fail: counts.fail,
                },
                sub_jobs,
            },
        }
    }
}

impl From<baton_state::SubJob> for SubJobDocument {
    fn from(sub: baton_state::SubJob) -> Self {
        Self {
            job_id: sub.job_id,
            job_type: SINGLE_JOB_TYPE.into(),
            status: sub.status.as_str().into(),
            begin_time: sub.begin_time.map(timestamp),
            end_time: sub.end_time.map(timestamp),
            entities: SubJobEntities {
                server_id: sub.node_uuid,
                server_name: sub.node_name,
            },
            error_code: sub.failure.as_ref().map(|f| f.code.as_str().into()),
            fail_reason: sub.failure.map(|f| f.reason),
            message: sub.message,
            request_id: sub.request_id,
        }
    }
}

/// `POST /v1/schedules` (201), `GET /v1/schedules[/{id}]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleDocument {
    pub schedule_id: String,
    /// 5 fields (minute hour day month weekday), or 6 with seconds first.
    pub cron: String,
    /// The IANA zone the expression is read in.
    pub time_zone: String,
    /// The batch body each firing posts.
    pub batch: serde_json::Value,
    pub project_id: Option<String>,
    pub user_id: Option<String>,
    pub created_at: String,
    pub last_fired: Option<String>,
    /// The job the last firing created.
    pub last_job_id: Option<String>,
    /// When it fires next (UTC).
    pub next_fire: Option<String>,
}

/// `GET /v1/schedules`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleList {
    pub schedules: Vec<ScheduleDocument>,
}

impl ScheduleDocument {
    pub fn new(s: baton_state::Schedule, next_fire: Option<chrono::DateTime<chrono::Utc>>) -> Self {
        Self {
            batch: serde_json::from_str(&s.body).unwrap_or(serde_json::Value::Null),
            schedule_id: s.schedule_id,
            cron: s.cron,
            time_zone: s.time_zone,
            project_id: s.project_id,
            user_id: s.user_id,
            created_at: timestamp(s.created_at),
            last_fired: s.last_fired.map(timestamp),
            last_job_id: s.last_job_id,
            next_fire: next_fire.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        }
    }
}
