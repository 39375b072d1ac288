//! Batch jobs as the store holds them: a job (one batch request: stop,
//! start or reboot of up to 1000 servers) and its sub-jobs, one per server,
//! each driven as that node's power operation; the stable failure codes a
//! sub-job ends with; and the cron schedules that create jobs.

use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::operation::PowerVerb;

/// Most servers one batch may name.
pub const MAX_BATCH: usize = 1000;

/// What a batch does, as the BMS API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BatchOperation {
    /// `os-stop`: SOFT (graceful shutdown) or HARD (power off).
    Stop(StopType),
    /// `os-start`: power on.
    Start,
    /// `reboot`: SOFT (graceful restart) or HARD (reset).
    Reboot(StopType),
}

/// How a stop or reboot is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum StopType {
    Soft,
    Hard,
}

impl StopType {
    pub fn as_str(self) -> &'static str {
        match self {
            StopType::Soft => "SOFT",
            StopType::Hard => "HARD",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "SOFT" => Some(StopType::Soft),
            "HARD" => Some(StopType::Hard),
            _ => None,
        }
    }
}

impl BatchOperation {
    /// The action's key in a request body and the job's `operation`.
    pub fn name(self) -> &'static str {
        match self {
            BatchOperation::Stop(_) => "os-stop",
            BatchOperation::Start => "os-start",
            BatchOperation::Reboot(_) => "reboot",
        }
    }

    /// SOFT or HARD, for the operations that have a type.
    pub fn stop_type(self) -> Option<StopType> {
        match self {
            BatchOperation::Stop(t) | BatchOperation::Reboot(t) => Some(t),
            BatchOperation::Start => None,
        }
    }

    /// From a stored name and type.
    pub fn parse(name: &str, stop_type: Option<&str>) -> Option<Self> {
        let typed = || stop_type.and_then(StopType::parse);
        match name {
            "os-stop" => typed().map(BatchOperation::Stop),
            "os-start" => Some(BatchOperation::Start),
            "reboot" => typed().map(BatchOperation::Reboot),
            _ => None,
        }
    }

    /// The power verb each server is driven through.
    pub fn verb(self) -> PowerVerb {
        match self {
            BatchOperation::Stop(StopType::Soft) => PowerVerb::SoftOff,
            BatchOperation::Stop(StopType::Hard) => PowerVerb::Off,
            BatchOperation::Start => PowerVerb::On,
            BatchOperation::Reboot(StopType::Soft) => PowerVerb::SoftReboot,
            BatchOperation::Reboot(StopType::Hard) => PowerVerb::Reboot,
        }
    }
}

impl fmt::Display for BatchOperation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.stop_type() {
            Some(t) => write!(f, "{} {}", self.name(), t.as_str()),
            None => f.write_str(self.name()),
        }
    }
}

/// Where a job or sub-job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum JobStatus {
    /// Accepted, nothing sent yet.
    Init,
    Running,
    Success,
    Fail,
}

impl JobStatus {
    pub const ALL: [JobStatus; 4] = [
        JobStatus::Init,
        JobStatus::Running,
        JobStatus::Success,
        JobStatus::Fail,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Init => "INIT",
            JobStatus::Running => "RUNNING",
            JobStatus::Success => "SUCCESS",
            JobStatus::Fail => "FAIL",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    pub fn is_finished(self) -> bool {
        matches!(self, JobStatus::Success | JobStatus::Fail)
    }
}

/// Why a sub-job failed: a stable code for programs, documented in the
/// README, beside the human `fail_reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FailCode {
    /// The node is locked.
    Locked,
    /// The node is in maintenance.
    Maintenance,
    /// Another power operation holds the node.
    Busy,
    /// The BMC could not be reached or did not answer, after every retry.
    Unreachable,
    /// The BMC refused the credentials.
    Auth,
    /// The BMC cannot do this operation.
    Unsupported,
    /// The node's BMC settings are wrong (TLS, system id…).
    Config,
    /// The BMC answered with an error, after every retry.
    BmcError,
    /// The BMC accepted the command but the state did not show in time.
    Timeout,
    /// The command may have run; its outcome could not be confirmed.
    OutcomeUnknown,
    /// Cancelled before it started.
    Cancelled,
    /// The node's operation was cleared (os-reset_status) or the node deleted.
    Aborted,
}

impl FailCode {
    pub const ALL: [FailCode; 12] = [
        FailCode::Locked,
        FailCode::Maintenance,
        FailCode::Busy,
        FailCode::Unreachable,
        FailCode::Auth,
        FailCode::Unsupported,
        FailCode::Config,
        FailCode::BmcError,
        FailCode::Timeout,
        FailCode::OutcomeUnknown,
        FailCode::Cancelled,
        FailCode::Aborted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FailCode::Locked => "BATON.0101",
            FailCode::Maintenance => "BATON.0102",
            FailCode::Busy => "BATON.0103",
            FailCode::Unreachable => "BATON.0201",
            FailCode::Auth => "BATON.0202",
            FailCode::Unsupported => "BATON.0203",
            FailCode::Config => "BATON.0204",
            FailCode::BmcError => "BATON.0205",
            FailCode::Timeout => "BATON.0301",
            FailCode::OutcomeUnknown => "BATON.0302",
            FailCode::Cancelled => "BATON.0401",
            FailCode::Aborted => "BATON.0402",
        }
    }

    /// A few words for tables and summaries.
    pub fn summary(self) -> &'static str {
        match self {
            FailCode::Locked => "locked",
            FailCode::Maintenance => "in maintenance",
            FailCode::Busy => "busy",
            FailCode::Unreachable => "BMC unreachable",
            FailCode::Auth => "wrong credentials",
            FailCode::Unsupported => "unsupported",
            FailCode::Config => "bad BMC settings",
            FailCode::BmcError => "BMC error",
            FailCode::Timeout => "timed out",
            FailCode::OutcomeUnknown => "outcome unknown",
            FailCode::Cancelled => "cancelled",
            FailCode::Aborted => "aborted",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// A sub-job's failure: its code and what happened, in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub code: FailCode,
    pub reason: String,
}

impl Failure {
    pub fn new(code: FailCode, reason: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
        }
    }
}

/// One server of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubJob {
    pub job_id: String,
    pub node_uuid: Uuid,
    pub node_name: Option<String>,
    /// The node action this sub-job's operation is recorded under.
    pub request_id: String,
    pub status: JobStatus,
    pub begin_time: Option<OffsetDateTime>,
    pub end_time: Option<OffsetDateTime>,
    pub failure: Option<Failure>,
    /// How it ended ("already power off", "reached power off"…).
    pub message: Option<String>,
}

/// Sub-job counts by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SubJobCounts {
    pub init: u64,
    pub running: u64,
    pub success: u64,
    pub fail: u64,
}

impl SubJobCounts {
    pub fn total(&self) -> u64 {
        self.init + self.running + self.success + self.fail
    }
}

/// A batch job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub job_id: String,
    pub operation: BatchOperation,
    pub status: JobStatus,
    /// The request that created it (`req-…`); every node action of the job
    /// is recorded under it.
    pub request_id: String,
    pub project_id: Option<String>,
    pub user_id: Option<String>,
    /// The schedule that fired it, if one did.
    pub schedule_id: Option<String>,
    pub created_at: OffsetDateTime,
    pub begin_time: Option<OffsetDateTime>,
    pub end_time: Option<OffsetDateTime>,
    pub error_code: Option<String>,
    pub fail_reason: Option<String>,
    pub counts: SubJobCounts,
    /// Filled by `get_job`, empty in listings.
    pub sub_jobs: Vec<SubJob>,
}

/// A job to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob {
    pub job_id: String,
    pub operation: BatchOperation,
    pub request_id: String,
    pub project_id: Option<String>,
    pub user_id: Option<String>,
    pub schedule_id: Option<String>,
}

/// How a sub-job ended, written with its node's last change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubJobEnd {
    pub sub_job_id: String,
    /// When its first BMC request went out, if the store has not heard yet.
    pub begin_time: Option<OffsetDateTime>,
    pub outcome: Result<String, Failure>,
}

/// Filters of a job listing; `None` means any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobFilter {
    pub status: Option<JobStatus>,
    pub operation: Option<String>,
}

/// A cron schedule that creates a batch job each time it fires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    pub schedule_id: String,
    pub cron: String,
    /// IANA time zone the cron expression is read in.
    pub time_zone: String,
    /// The batch request body (as `POST /v1/baremetalservers/action` takes).
    pub body: String,
    pub project_id: Option<String>,
    pub user_id: Option<String>,
    pub created_at: OffsetDateTime,
    pub last_fired: Option<OffsetDateTime>,
    pub last_job_id: Option<String>,
}

/// Most ids an error message lists before it says how many more there are.
pub const LISTED_IDS: usize = 100;

/// Ids for an error message: all of them up to [`LISTED_IDS`], then a count.
pub fn list_ids(ids: &[String]) -> String {
    let shown: Vec<&str> = ids.iter().take(LISTED_IDS).map(String::as_str).collect();
    let more = ids.len().saturating_sub(LISTED_IDS);
    if more == 0 {
        shown.join(", ")
    } else {
        format!("{} and {more} more", shown.join(", "))
    }
}
