//! Per-node behaviour choices where real BMCs differ, so that drivers learn to
//! cope with each: how resets and power states are answered and reported
//! (both front ends), and Redfish-only choices.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::faults::MAX_DURATION;
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

/// How a BMC reports `PowerState` while power changes (Redfish
/// `PowerState`, IPMI chassis status power bit).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum PowerStateStyle {
    /// `PoweringOn` / `PoweringOff` during transitions (the model's own states).
    #[default]
    Ideal,
    /// `On` until the power drops, `Off` until the power is good — no
    /// transitional states (what OpenBMC's x86-power-control reports): a
    /// server in POST, shutting down or with a hung OS reads `On`.
    Binary,
    /// The state as it was this long ago: the old state for a while after
    /// every change (BMCs that poll the host's power slowly).
    Stale(Duration),
}

impl fmt::Display for PowerStateStyle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PowerStateStyle::Ideal => f.write_str("ideal"),
            PowerStateStyle::Binary => f.write_str("binary"),
            PowerStateStyle::Stale(d) => write!(f, "stale={}", humantime::format_duration(*d)),
        }
    }
}

impl FromStr for PowerStateStyle {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('=') {
            None if s == "ideal" => Ok(PowerStateStyle::Ideal),
            None if s == "binary" => Ok(PowerStateStyle::Binary),
            Some(("stale", d)) => match humantime::parse_duration(d) {
                Ok(d) if d <= MAX_DURATION => Ok(PowerStateStyle::Stale(d)),
                _ => Err(format!(
                    "{d:?} is not a duration of at most 1day (e.g. stale=2s)"
                )),
            },
            _ => Err(format!(
                "{s:?} is not a power state style; use ideal, binary or stale=<duration>"
            )),
        }
    }
}

impl TryFrom<String> for PowerStateStyle {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<PowerStateStyle> for String {
    fn from(style: PowerStateStyle) -> String {
        style.to_string()
    }
}

/// How a power command that the present (transitional) state does not allow
/// is answered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MidTransition {
    /// Refused: Redfish 409 `ActionParameterValueConflict`, IPMI D5h.
    #[default]
    Refuse,
    /// Answered as success (Redfish 204, IPMI 00h) and dropped, as
    /// x86-power-control does ("No action taken").
    Ignore,
}

/// A way a BMC is particular about the boot override `PATCH` (Redfish).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BootPatchQuirk {
    /// Refused while the server is in POST (powering on): 400 with HPE
    /// iLO's `UnableToModifyDuringSystemPOST`. The POST lasts the power-on delay.
    RefuseInPost,
    /// `BootSourceOverrideTarget`, `…Enabled` and `…Mode` all required in
    /// one PATCH (AMI, ASRockRack): 400 `PropertyMissing` otherwise.
    AllRequired,
    /// A PATCH that repeats the current `BootSourceOverrideEnabled` is
    /// refused: 400 `PropertyValueConflict`.
    NoRepeatEnabled,
    /// `BootSourceOverrideEnabled` required in every PATCH: 400
    /// `PropertyMissing` otherwise.
    EnabledRequired,
    /// `Continuous` is not offered (nor accepted): only one-time overrides.
    NoContinuous,
}

/// A way a BMC deviates in its entity tags (Redfish).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EtagQuirk {
    /// Weak tags (`W/"…"`); `If-Match` compares strongly, so only the tag
    /// without `W/` (or `*`) matches, as HPE iLO does.
    Weak,
    /// No `ETag` header: the tag is only the `@odata.etag` property of the body.
    BodyOnly,
    /// A PATCH without `If-Match` is refused: 428 `PreconditionRequired`.
    IfMatchRequired,
    /// The `If-Match` check and the write are not one step (bmcweb): two
    /// PATCHes holding the same tag may both win, the later one silently
    /// overwriting the earlier.
    Racy,
}

/// The message of a full session table (Redfish 503).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionLimitReply {
    /// `Base.1.18.SessionLimitExceeded`.
    #[default]
    Base,
    /// A vendor registry's id (Dell iDRAC's `IDRAC.2.9.RAC0218`, "The
    /// maximum number of user sessions is reached").
    Vendor,
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
    /// How the power state reads during transitions.
    pub power_state_style: PowerStateStyle,
    /// A graceful shutdown the OS has not finished after this long is given
    /// up and the server stays on (OpenBMC: 300 s); `None` waits forever.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Option<Duration>,
    /// Answer to a power command the transition under way does not allow.
    pub mid_transition: MidTransition,
    /// What the boot override PATCH insists on.
    pub boot_patch: Vec<BootPatchQuirk>,
    /// How entity tags deviate; none is strong tags, checked atomically.
    pub etag: Vec<EtagQuirk>,
    /// The message of a full session table.
    pub session_limit_reply: SessionLimitReply,
    /// A kept-alive connection is closed after this many requests (the
    /// last answer says `Connection: close`).
    pub keep_alive_requests: Option<u32>,
    /// A kept-alive connection idle this long is closed, without notice
    /// (a client reusing it just then sees it closed under its request).
    #[serde(with = "humantime_serde")]
    pub keep_alive_idle: Option<Duration>,
}

impl Default for Quirks {
    fn default() -> Self {
        Quirks {
            reset_types: PowerAction::ALL.to_vec(),
            already_in_state: AlreadyInStateReply::default(),
            reset_reply: ResetReply::default(),
            lenient_content_type: false,
            power_state_style: PowerStateStyle::default(),
            shutdown_timeout: None,
            mid_transition: MidTransition::default(),
            boot_patch: Vec::new(),
            etag: Vec::new(),
            session_limit_reply: SessionLimitReply::default(),
            keep_alive_requests: None,
            keep_alive_idle: None,
        }
    }
}

impl Quirks {
    /// Whether this BMC offers `action`.
    pub fn allows(&self, action: PowerAction) -> bool {
        self.reset_types.contains(&action)
    }

    /// What is wrong with these choices, if anything: an empty reset type
    /// list, a duration over a day, a zero keep-alive limit.
    pub fn problem(&self) -> Option<String> {
        if self.reset_types.is_empty() {
            return Some(
                "reset_types must list at least one ResetType (e.g. [\"On\", \"ForceOff\"])".into(),
            );
        }
        let durations = [
            ("shutdown_timeout", self.shutdown_timeout),
            ("keep_alive_idle", self.keep_alive_idle),
        ];
        for (name, value) in durations {
            match value {
                Some(d) if d > MAX_DURATION => {
                    return Some(format!(
                        "{name} {} is too long; use at most 1day",
                        humantime::format_duration(d)
                    ))
                }
                Some(d) if d.is_zero() => return Some(format!("{name} must be more than 0")),
                _ => {}
            }
        }
        (self.keep_alive_requests == Some(0))
            .then(|| "keep_alive_requests must be at least 1".to_owned())
    }

    /// Whether the boot override PATCH has quirk `quirk`.
    pub fn boot_patch(&self, quirk: BootPatchQuirk) -> bool {
        self.boot_patch.contains(&quirk)
    }

    /// Whether the entity tags have quirk `quirk`.
    pub fn etag(&self, quirk: EtagQuirk) -> bool {
        self.etag.contains(&quirk)
    }
}
