//! What the conductor keeps per node beside the operator's spec: the power
//! operation in flight (verb, request, phase), the learned transition times,
//! the sync's failure count — and [`NodeChange`], the one way the API and the
//! conductor change a node's state, with its action-log entries, in one
//! transaction.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::model::{ActionEvent, NewAction, PowerState};

/// The verb a caller asked for. The node's `target_power_state` is the
/// verb's end state; the verb itself says how to get there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PowerVerb {
    #[serde(rename = "power on")]
    On,
    #[serde(rename = "power off")]
    Off,
    #[serde(rename = "soft power off")]
    SoftOff,
    #[serde(rename = "rebooting")]
    Reboot,
    #[serde(rename = "soft rebooting")]
    SoftReboot,
    #[serde(rename = "power cycle")]
    PowerCycle,
}

impl PowerVerb {
    pub const ALL: [PowerVerb; 6] = [
        PowerVerb::On,
        PowerVerb::Off,
        PowerVerb::SoftOff,
        PowerVerb::Reboot,
        PowerVerb::SoftReboot,
        PowerVerb::PowerCycle,
    ];

    /// The name in `PUT /v1/nodes/{ident}/states/power` and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            PowerVerb::On => "power on",
            PowerVerb::Off => "power off",
            PowerVerb::SoftOff => "soft power off",
            PowerVerb::Reboot => "rebooting",
            PowerVerb::SoftReboot => "soft rebooting",
            PowerVerb::PowerCycle => "power cycle",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// The power state the node is in once the verb is done.
    pub fn end_state(self) -> PowerState {
        match self {
            PowerVerb::Off | PowerVerb::SoftOff => PowerState::Off,
            PowerVerb::On | PowerVerb::Reboot | PowerVerb::SoftReboot | PowerVerb::PowerCycle => {
                PowerState::On
            }
        }
    }

    /// True when sending the command again has a second effect (a second
    /// restart), so it must never be re-sent without knowing the first
    /// did not run.
    pub fn is_repeatable(self) -> bool {
        matches!(self, PowerVerb::On | PowerVerb::Off | PowerVerb::SoftOff)
    }
}

/// How far an operation got, as far as the database knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpPhase {
    /// Accepted; no command known to have been sent.
    Queued,
    /// A command that must not run twice may have reached the BMC.
    Sent,
}

impl OpPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            OpPhase::Queued => "queued",
            OpPhase::Sent => "sent",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [OpPhase::Queued, OpPhase::Sent]
            .into_iter()
            .find(|p| p.as_str() == s)
    }
}

/// The power operation a node is being driven through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    pub verb: PowerVerb,
    /// The action record (`req-…`) this operation reports to.
    pub request_id: String,
    /// Set this boot device (next boot only) before the power command
    /// (rescue: `pxe`; unrescue: `disk`).
    pub boot_first: Option<String>,
    /// The caller's own timeout for reaching the state, if it gave one.
    pub timeout: Option<Duration>,
    pub phase: OpPhase,
    pub requested_at: OffsetDateTime,
    /// The batch sub-job this operation carries out, if it is one.
    pub sub_job: Option<String>,
}

/// How long this node's power changes took, learned from its operations;
/// the conductor reads a node first around then.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transitions {
    pub power_on_ms: Option<u32>,
    pub power_off_ms: Option<u32>,
}

/// The conductor's bookkeeping on a node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConductorState {
    pub operation: Option<Operation>,
    /// Consecutive failed power-sync reads (kept across restarts).
    pub sync_failures: u32,
    pub transitions: Transitions,
    /// The recorded power state may be wrong: an operation was interrupted
    /// or reset before the state was read again. The sync never enforces a
    /// state on such a node; the next successful read clears it.
    pub power_state_unsure: bool,
}

/// A lease on a node: which conductor works on it, until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub holder: String,
    pub expires_at: OffsetDateTime,
}

/// Maintenance as one unit: set, reason, and the sync's fault (if the sync,
/// not an operator, put the node there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Maintenance {
    pub on: bool,
    pub reason: Option<String>,
    pub fault: Option<String>,
}

/// The lock as one unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lock {
    pub locked: bool,
    pub reason: Option<String>,
    pub by: Option<String>,
}

/// Column changes to a node's state; `None` leaves a column alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeUpdate {
    pub power_state: Option<Option<PowerState>>,
    /// The target and the operation that reaches it, set or cleared together.
    pub operation: Option<Option<Operation>>,
    pub phase: Option<OpPhase>,
    pub reservation: Option<Option<Reservation>>,
    pub last_error: Option<Option<String>>,
    pub boot_device: Option<Option<String>>,
    pub maintenance: Option<Maintenance>,
    pub lock: Option<Lock>,
    pub sync_failures: Option<u32>,
    pub transitions: Option<Transitions>,
    pub power_state_unsure: Option<bool>,
}

impl NodeUpdate {
    pub fn is_empty(&self) -> bool {
        *self == NodeUpdate::default()
    }
}

/// One change to a node and its action log, committed together.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeChange {
    pub update: NodeUpdate,
    /// A new action record for this node.
    pub action: Option<NewAction>,
    /// Events appended to this node's actions, by request id.
    pub events: Vec<(String, ActionEvent)>,
    /// A note added to one of this node's actions' message, by request id.
    pub action_message: Option<(String, String)>,
    /// The batch sub-job that ends with this change.
    pub sub_job_end: Option<crate::job::SubJobEnd>,
}

impl From<NodeUpdate> for NodeChange {
    fn from(update: NodeUpdate) -> Self {
        NodeChange {
            update,
            ..NodeChange::default()
        }
    }
}
