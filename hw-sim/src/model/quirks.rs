//! Per-node behaviour choices where real BMCs differ, so that drivers learn to
//! cope with each. Today they concern the Redfish front end; an IPMI front end
//! may add its own fields here.

use serde::{Deserialize, Serialize};

use super::power::PowerAction;

/// How a reset to the state the node is already in is answered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum AlreadyInStateReply {
    /// Success, as for any accepted reset (most BMCs).
    #[default]
    #[serde(rename = "ok")]
    Ok,
    /// 409 Conflict with a Base message (some BMCs).
    #[serde(rename = "409")]
    Conflict,
    /// 400 Bad Request with a Base message (some BMCs).
    #[serde(rename = "400")]
    BadRequest,
}

/// How an accepted `ComputerSystem.Reset` is answered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResetReply {
    /// 204 No Content.
    #[default]
    #[serde(rename = "204")]
    NoContent,
    /// 202 Accepted with a task monitor in `Location` and `Retry-After`.
    #[serde(rename = "202")]
    Task,
}

/// The behaviour choices of one node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Quirks {
    /// The `ResetType` values this BMC allows (Redfish
    /// `ResetType@Redfish.AllowableValues`); others are refused with
    /// `ActionParameterValueNotInList`.
    pub reset_types: Vec<PowerAction>,
    /// Answer to a reset to the present state.
    pub already_in_state: AlreadyInStateReply,
    /// Answer to an accepted reset.
    pub reset_reply: ResetReply,
    /// Accept a POST or PATCH body without `Content-Type: application/json`
    /// (by default it is 400 `UnrecognizedRequestBody`, as bmcweb answers).
    pub lenient_content_type: bool,
}

impl Default for Quirks {
    fn default() -> Self {
        Quirks {
            reset_types: PowerAction::ALL.to_vec(),
            already_in_state: AlreadyInStateReply::default(),
            reset_reply: ResetReply::default(),
            lenient_content_type: false,
        }
    }
}

impl Quirks {
    /// Whether this BMC offers `action`.
    pub fn allows(&self, action: PowerAction) -> bool {
        self.reset_types.contains(&action)
    }
}
