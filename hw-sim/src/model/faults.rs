//! Faults a simulated BMC can be given, and how they are named and chosen.
//!
//! [`Faults`] is the set a node carries (the control API's JSON object, e.g.
//! `{"slow": "1500ms", "busy": true}`). [`FaultSetting`] is one fault with its
//! value as the CLI and `POST /faults` name it (`busy`, `slow=1500ms`,
//! `packet_loss=0.3`). [`pick_fraction`] chooses a seeded random subset of nodes.
//!
//! What each fault means for a front end:
//! - `no_answer`: accept the request (TCP connection / UDP packet) and never reply.
//! - `http_500`: Redfish answers 500; IPMI answers completion code 0xFF (unspecified).
//! - `busy`: Redfish answers 503 with `Retry-After`; IPMI answers 0xC0 (node busy).
//! - `slow`: extra latency on every request.
//! - `wrong_credentials`: the BMC no longer accepts the configured password.
//! - `stuck`: power commands are accepted and ignored.
//! - `hung_os`: a graceful shutdown never finishes.
//! - `flapping`: the power changes out of band at random.
//! - `packet_loss`: fraction of UDP packets dropped (IPMI only).
//! - `link_flap_on_power=D`: after each power change the BMC is unreachable
//!   for D (UDP dropped, TCP reset), as a NIC shared with the host is while
//!   the host boots.
//! - `min_interval=D`: a request sooner than D after the last one served is
//!   refused (Redfish 503 busy) or dropped (IPMI), as BMCs that crash when
//!   flooded.
//! - `garbage=V`: every answer is malformed, as [`Garbage`] variant V says
//!   (invalid JSON, wrong types, truncated or oversized Redfish bodies;
//!   truncated RMCP+ packets or wrong session ids over IPMI).
//!
//! Two settings are events rather than lasting faults ([`FaultSetting::is_event`]):
//! `drop_sessions` invalidates every session and token once, as a BMC
//! reboot does, and `bmc_reboot=D` also makes the BMC unreachable for D.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

/// The faults one node carries. Absent fields are "healthy".
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Accept, never reply.
    #[serde(skip_serializing_if = "is_false")]
    pub no_answer: bool,
    /// Internal server error on every request.
    #[serde(skip_serializing_if = "is_false")]
    pub http_500: bool,
    /// "Busy, retry later" on every request.
    #[serde(skip_serializing_if = "is_false")]
    pub busy: bool,
    /// Extra latency per request (`"1500ms"`).
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub slow: Option<Duration>,
    /// The configured password is refused.
    #[serde(skip_serializing_if = "is_false")]
    pub wrong_credentials: bool,
    /// Power commands accepted and ignored.
    #[serde(skip_serializing_if = "is_false")]
    pub stuck: bool,
    /// Graceful shutdown never finishes.
    #[serde(skip_serializing_if = "is_false")]
    pub hung_os: bool,
    /// Power changes out of band at random.
    #[serde(skip_serializing_if = "is_false")]
    pub flapping: bool,
    /// Fraction (0.0–1.0) of UDP packets dropped (IPMI).
    #[serde(skip_serializing_if = "is_zero")]
    pub packet_loss: f64,
    /// Unreachable for this long after each power change.
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub link_flap_on_power: Option<Duration>,
    /// Requests sooner than this after the last one served are refused.
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub min_interval: Option<Duration>,
    /// Every answer malformed this way.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub garbage: Option<Garbage>,
}

/// How a `garbage` BMC spoils its answers. Each variant spoils one
/// protocol; the other one keeps answering well.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Garbage {
    /// Redfish: a 200 whose body is not JSON.
    InvalidJson,
    /// Redfish: JSON of the right shape with every value of the wrong type
    /// (strings become numbers, numbers strings, arrays objects…); IPMI:
    /// commands answer success without their data.
    WrongTypes,
    /// Redfish: the body stops halfway through its announced length and the
    /// connection closes; IPMI: every datagram cut to half its length.
    Truncated,
    /// Redfish: a 2 MiB body, past what a client should buffer.
    Oversized,
    /// IPMI: answers carry a session id other than the client's.
    WrongSession,
}

impl Garbage {
    /// Every variant, in the order the docs list them.
    pub const ALL: [Garbage; 5] = [
        Garbage::InvalidJson,
        Garbage::WrongTypes,
        Garbage::Truncated,
        Garbage::Oversized,
        Garbage::WrongSession,
    ];

    /// The name used in `garbage=<name>`.
    pub fn name(self) -> &'static str {
        match self {
            Garbage::InvalidJson => "invalid_json",
            Garbage::WrongTypes => "wrong_types",
            Garbage::Truncated => "truncated",
            Garbage::Oversized => "oversized",
            Garbage::WrongSession => "wrong_session",
        }
    }
}

impl fmt::Display for Garbage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(f: &f64) -> bool {
    *f == 0.0
}

impl Faults {
    /// Checks values that serde cannot: `packet_loss` within 0.0–1.0 and
    /// `slow` at most [`MAX_DURATION`].
    pub fn validate(&self) -> Result<(), FaultError> {
        check_fraction("packet_loss", self.packet_loss)?;
        let durations = [
            ("slow", self.slow),
            ("link_flap_on_power", self.link_flap_on_power),
            ("min_interval", self.min_interval),
        ];
        for (name, value) in durations {
            if let Some(d) = value.filter(|d| *d > MAX_DURATION) {
                return Err(too_long(name, d));
            }
        }
        Ok(())
    }

    /// Whether no fault is set.
    pub fn is_healthy(&self) -> bool {
        *self == Faults::default()
    }

    /// Sets one fault, leaving the others as they are.
    pub fn apply(&mut self, setting: FaultSetting) {
        match setting {
            FaultSetting::NoAnswer => self.no_answer = true,
            FaultSetting::Http500 => self.http_500 = true,
            FaultSetting::Busy => self.busy = true,
            FaultSetting::Slow(d) => self.slow = Some(d),
            FaultSetting::WrongCredentials => self.wrong_credentials = true,
            FaultSetting::Stuck => self.stuck = true,
            FaultSetting::HungOs => self.hung_os = true,
            FaultSetting::Flapping => self.flapping = true,
            FaultSetting::PacketLoss(f) => self.packet_loss = f,
            FaultSetting::LinkFlapOnPower(d) => self.link_flap_on_power = Some(d),
            FaultSetting::MinInterval(d) => self.min_interval = Some(d),
            FaultSetting::Garbage(g) => self.garbage = Some(g),
            // Events, played by the node when applied; nothing lasts.
            FaultSetting::DropSessions | FaultSetting::BmcReboot(_) => {}
        }
    }
}

/// One fault with its value, as named on the command line and in `POST /faults`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FaultSetting {
    /// `no_answer`
    NoAnswer,
    /// `http_500`
    Http500,
    /// `busy`
    Busy,
    /// `slow=<duration>` (e.g. `slow=1500ms`)
    Slow(Duration),
    /// `wrong_credentials`
    WrongCredentials,
    /// `stuck`
    Stuck,
    /// `hung_os`
    HungOs,
    /// `flapping`
    Flapping,
    /// `packet_loss=<fraction>` (e.g. `packet_loss=0.3`)
    PacketLoss(f64),
    /// `link_flap_on_power=<duration>`
    LinkFlapOnPower(Duration),
    /// `min_interval=<duration>`
    MinInterval(Duration),
    /// `garbage=<variant>` (e.g. `garbage=truncated`)
    Garbage(Garbage),
    /// `drop_sessions`: an event — every session and token invalidated once.
    DropSessions,
    /// `bmc_reboot=<duration>`: an event — sessions gone, unreachable for the duration.
    BmcReboot(Duration),
}

impl FaultSetting {
    /// Whether this setting happens once when applied instead of lasting.
    pub fn is_event(self) -> bool {
        matches!(
            self,
            FaultSetting::DropSessions | FaultSetting::BmcReboot(_)
        )
    }
}

/// The longest `slow` fault, latency or power transition time a rack takes
/// (one day): longer ones are refused with a message, never left to overflow
/// the clock arithmetic of a request or a transition.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);

/// The fault names, for messages.
pub const FAULT_NAMES: &str = "no_answer, http_500, busy, slow=<duration>, wrong_credentials, \
                               stuck, hung_os, flapping, packet_loss=<fraction>, \
                               link_flap_on_power=<duration>, min_interval=<duration>, \
                               garbage=<invalid_json|wrong_types|truncated|oversized|wrong_session>, \
                               drop_sessions, bmc_reboot=<duration>";

/// A fault name, value or fraction that does not parse.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum FaultError {
    /// Unknown fault name.
    #[error("Unknown fault {0:?}; valid faults: {FAULT_NAMES}")]
    UnknownFault(String),
    /// A fault that needs a value got none, or one that takes none got one.
    #[error("Fault {name:?} {problem}; write it as {usage}")]
    BadValue {
        /// The fault.
        name: String,
        /// What is wrong.
        problem: String,
        /// How to write it.
        usage: &'static str,
    },
    /// A fraction outside 0.0–1.0.
    #[error("{what} must be a number from 0.0 to 1.0, got {value}")]
    BadFraction {
        /// Which field.
        what: &'static str,
        /// The value given.
        value: f64,
    },
}

/// Checks that `value` is a fraction within 0.0–1.0.
pub fn check_fraction(what: &'static str, value: f64) -> Result<(), FaultError> {
    if (0.0..=1.0).contains(&value) {
        Ok(())
    } else {
        Err(FaultError::BadFraction { what, value })
    }
}

impl FromStr for FaultSetting {
    type Err = FaultError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, value) = match s.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim())),
            None => (s.trim(), None),
        };
        FaultSetting::from_parts(name, value)
    }
}

impl FaultSetting {
    /// Builds a setting from a name and an optional value (`"slow"`, `Some("1500ms")`).
    pub fn from_parts(name: &str, value: Option<&str>) -> Result<FaultSetting, FaultError> {
        let flag = |setting| match value {
            None => Ok(setting),
            Some(_) => Err(bad_value(name, "takes no value", "just its name")),
        };
        match name {
            "no_answer" => flag(FaultSetting::NoAnswer),
            "http_500" => flag(FaultSetting::Http500),
            "busy" => flag(FaultSetting::Busy),
            "wrong_credentials" => flag(FaultSetting::WrongCredentials),
            "stuck" => flag(FaultSetting::Stuck),
            "hung_os" => flag(FaultSetting::HungOs),
            "flapping" => flag(FaultSetting::Flapping),
            "drop_sessions" => flag(FaultSetting::DropSessions),
            "slow" => parse_duration("slow", value).map(FaultSetting::Slow),
            "link_flap_on_power" => {
                parse_duration("link_flap_on_power", value).map(FaultSetting::LinkFlapOnPower)
            }
            "min_interval" => parse_duration("min_interval", value).map(FaultSetting::MinInterval),
            "bmc_reboot" => parse_duration("bmc_reboot", value).map(FaultSetting::BmcReboot),
            "packet_loss" => parse_loss(value).map(FaultSetting::PacketLoss),
            "garbage" => parse_garbage(value).map(FaultSetting::Garbage),
            other => Err(FaultError::UnknownFault(other.to_owned())),
        }
    }
}

fn bad_value(name: &str, problem: &str, usage: &'static str) -> FaultError {
    FaultError::BadValue {
        name: name.to_owned(),
        problem: problem.to_owned(),
        usage,
    }
}

fn parse_duration(name: &'static str, value: Option<&str>) -> Result<Duration, FaultError> {
    let usage = duration_usage(name);
    let raw = value.ok_or_else(|| bad_value(name, "needs a duration", usage))?;
    let d = humantime::parse_duration(raw)
        .map_err(|e| bad_value(name, &format!("has a bad duration {raw:?} ({e})"), usage))?;
    if d > MAX_DURATION {
        return Err(too_long(name, d));
    }
    Ok(d)
}

fn duration_usage(name: &str) -> &'static str {
    match name {
        "slow" => "slow=<duration>, e.g. slow=1500ms",
        "link_flap_on_power" => "link_flap_on_power=<duration>, e.g. link_flap_on_power=2s",
        "min_interval" => "min_interval=<duration>, e.g. min_interval=100ms",
        _ => "bmc_reboot=<duration>, e.g. bmc_reboot=30s",
    }
}

fn too_long(name: &str, d: Duration) -> FaultError {
    bad_value(
        name,
        &format!(
            "is too long ({}; at most {})",
            humantime::format_duration(d),
            humantime::format_duration(MAX_DURATION)
        ),
        duration_usage(name),
    )
}

fn parse_garbage(value: Option<&str>) -> Result<Garbage, FaultError> {
    const USAGE: &str =
        "garbage=<variant>: invalid_json, wrong_types, truncated, oversized or wrong_session";
    let raw = value.ok_or_else(|| bad_value("garbage", "needs a variant", USAGE))?;
    Garbage::ALL
        .into_iter()
        .find(|g| g.name() == raw)
        .ok_or_else(|| bad_value("garbage", &format!("has an unknown variant {raw:?}"), USAGE))
}

fn parse_loss(value: Option<&str>) -> Result<f64, FaultError> {
    const USAGE: &str = "packet_loss=<fraction>, e.g. packet_loss=0.3";
    let raw = value.ok_or_else(|| bad_value("packet_loss", "needs a fraction", USAGE))?;
    let f: f64 = raw
        .parse()
        .map_err(|_| bad_value("packet_loss", &format!("has a bad number {raw:?}"), USAGE))?;
    check_fraction("packet_loss", f)?;
    Ok(f)
}

impl fmt::Display for FaultSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FaultSetting::NoAnswer => f.write_str("no_answer"),
            FaultSetting::Http500 => f.write_str("http_500"),
            FaultSetting::Busy => f.write_str("busy"),
            FaultSetting::Slow(d) => write!(f, "slow={}", humantime::format_duration(*d)),
            FaultSetting::WrongCredentials => f.write_str("wrong_credentials"),
            FaultSetting::Stuck => f.write_str("stuck"),
            FaultSetting::HungOs => f.write_str("hung_os"),
            FaultSetting::Flapping => f.write_str("flapping"),
            FaultSetting::PacketLoss(x) => write!(f, "packet_loss={x}"),
            FaultSetting::LinkFlapOnPower(d) => {
                write!(f, "link_flap_on_power={}", humantime::format_duration(*d))
            }
            FaultSetting::MinInterval(d) => {
                write!(f, "min_interval={}", humantime::format_duration(*d))
            }
            FaultSetting::Garbage(g) => write!(f, "garbage={g}"),
            FaultSetting::DropSessions => f.write_str("drop_sessions"),
            FaultSetting::BmcReboot(d) => {
                write!(f, "bmc_reboot={}", humantime::format_duration(*d))
            }
        }
    }
}

/// Picks `round(fraction × count)` distinct indices out of `0..count`,
/// deterministically for a given `seed`, in ascending order.
pub fn pick_fraction(count: usize, fraction: f64, seed: u64) -> Result<Vec<usize>, FaultError> {
    check_fraction("fraction", fraction)?;
    // Rounding a product of a fraction ≤ 1.0 and a node count is exact enough
    // and never exceeds `count`.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let take = ((count as f64) * fraction).round() as usize;
    let mut indices: Vec<usize> = (0..count).collect();
    indices.shuffle(&mut StdRng::seed_from_u64(seed));
    indices.truncate(take.min(count));
    indices.sort_unstable();
    Ok(indices)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_values() {
        assert_eq!("busy".parse(), Ok(FaultSetting::Busy));
        assert_eq!(
            "slow=1500ms".parse(),
            Ok(FaultSetting::Slow(Duration::from_millis(1500)))
        );
        assert_eq!(
            "packet_loss=0.25".parse(),
            Ok(FaultSetting::PacketLoss(0.25))
        );
        assert!(matches!(
            "slow".parse::<FaultSetting>(),
            Err(FaultError::BadValue { .. })
        ));
        assert!(matches!(
            "busy=1".parse::<FaultSetting>(),
            Err(FaultError::BadValue { .. })
        ));
        assert!(matches!(
            "packet_loss=2".parse::<FaultSetting>(),
            Err(FaultError::BadFraction { .. })
        ));
        assert!(matches!(
            "slow=18446744073709551615s".parse::<FaultSetting>(),
            Err(FaultError::BadValue { .. })
        ));
        assert_eq!(
            "slow=1day".parse(),
            Ok(FaultSetting::Slow(MAX_DURATION)),
            "the longest slow fault is still taken"
        );
        assert_eq!(
            "garbage=wrong_session".parse(),
            Ok(FaultSetting::Garbage(Garbage::WrongSession))
        );
        for g in Garbage::ALL {
            let setting = FaultSetting::Garbage(g);
            assert_eq!(setting.to_string().parse(), Ok(setting));
        }
        assert!("garbage".parse::<FaultSetting>().is_err());
        assert!("garbage=confetti".parse::<FaultSetting>().is_err());
        let f: Faults = serde_json::from_str(r#"{"garbage": "oversized"}"#).unwrap_or_default();
        assert_eq!(f.garbage, Some(Garbage::Oversized));
        assert!(matches!(
            "melting".parse::<FaultSetting>(),
            Err(FaultError::UnknownFault(_))
        ));
    }

    #[test]
    fn faults_json_round_trip_and_rejects_unknown() {
        let f: Faults = serde_json::from_str(r#"{"slow": "1500ms", "busy": true}"#)
            .unwrap_or_else(|e| panic!("valid faults must parse: {e}"));
        assert_eq!(f.slow, Some(Duration::from_millis(1500)));
        assert!(f.busy && !f.stuck);
        let back = serde_json::to_value(&f).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, serde_json::json!({"slow": "1s 500ms", "busy": true}));
        assert!(serde_json::from_str::<Faults>(r#"{"bussy": true}"#).is_err());
        let endless: Faults = serde_json::from_str(r#"{"slow": "18446744073709551615s"}"#)
            .unwrap_or_else(|e| panic!("a long duration parses: {e}"));
        assert!(matches!(
            endless.validate(),
            Err(FaultError::BadValue { .. })
        ));
        assert!(Faults::default().is_healthy());
    }

    #[test]
    fn fraction_is_seeded_and_sized() {
        let a = pick_fraction(100, 0.1, 7).unwrap_or_default();
        let b = pick_fraction(100, 0.1, 7).unwrap_or_default();
        let c = pick_fraction(100, 0.1, 8).unwrap_or_default();
        assert_eq!(a.len(), 10);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(
            pick_fraction(5, 1.0, 1).unwrap_or_default(),
            vec![0, 1, 2, 3, 4]
        );
        assert!(pick_fraction(5, 1.5, 1).is_err());
    }
}
