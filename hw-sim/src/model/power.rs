//! The power state machine of one simulated server, independent of any protocol.
//!
//! States, in the control API's words: `off`, `powering on`, `on`,
//! `shutting down`. A power-on takes the power-on delay; a hard off takes the
//! power-off delay; a graceful shutdown takes the OS's shutdown delay, or never
//! finishes while the OS is hung. As real BMCs do it (x86-power-control, the
//! IPMI specification):
//!
//! - a hard reset (`ForceRestart`, IPMI hard reset) is a warm reset: a reset
//!   pulse that reboots the host while power stays on, so the state never
//!   leaves `on` (a reset during power-on restarts the power-on);
//! - a power cycle drops power at once, reports `off` for the cycle's
//!   off-hold (IPMI asks at least 1 s), then powers on; another cycle during
//!   the hold is accepted and restarts it, a hard off cancels the power-on;
//! - a graceful restart shuts the OS down and powers on again.
//!
//! Time is evaluated lazily: a transition stores when it ends, and every read
//! first *settles* the machine up to "now". No task or timer exists per node,
//! which is what lets one process hold 10 000 nodes. All instants are
//! `tokio::time::Instant`, so tests may pause and advance time.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// Observable power state of a node (the control API's vocabulary).
///
/// A hard power-off in progress is also reported as `shutting down`; Redfish
/// front ends render both as `PoweringOff`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PowerState {
    /// No power to the host.
    #[serde(rename = "off")]
    Off,
    /// Power applied, firmware and OS booting.
    #[serde(rename = "powering on")]
    PoweringOn,
    /// Host up.
    #[serde(rename = "on")]
    On,
    /// Graceful shutdown (OS) or hard power-off in progress.
    #[serde(rename = "shutting down")]
    ShuttingDown,
}

impl PowerState {
    /// The control API's word for this state.
    pub fn as_str(self) -> &'static str {
        match self {
            PowerState::Off => "off",
            PowerState::PoweringOn => "powering on",
            PowerState::On => "on",
            PowerState::ShuttingDown => "shutting down",
        }
    }

    /// Whether the power rail is on (the host draws power) in this state.
    pub fn is_powered(self) -> bool {
        !matches!(self, PowerState::Off)
    }
}

impl fmt::Display for PowerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A power command, protocol-neutral. The names are Redfish's `ResetType`
/// values; IPMI front ends map Chassis Control onto them: power down (0) →
/// [`PowerAction::ForceOff`], power up (1) → [`PowerAction::On`], power cycle (2)
/// → [`PowerAction::PowerCycle`], hard reset (3) → [`PowerAction::ForceRestart`],
/// diagnostic interrupt (4) → [`PowerAction::Nmi`], soft off (5) →
/// [`PowerAction::GracefulShutdown`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PowerAction {
    /// Power on (boot).
    On,
    /// Power on; the same as `On` for this model.
    ForceOn,
    /// Cut power after the power-off delay.
    ForceOff,
    /// Ask the OS to shut down; takes the shutdown delay, never ends when hung.
    GracefulShutdown,
    /// Ask the OS to reboot: graceful shutdown, then power on.
    GracefulRestart,
    /// Hard reset: off (power-off delay), then power on.
    ForceRestart,
    /// Power cycle: off (power-off delay), then power on.
    PowerCycle,
    /// Diagnostic interrupt: the OS records a crash dump.
    Nmi,
    /// The power button: off → power on; on → graceful shutdown.
    PushPowerButton,
}

impl PowerAction {
    /// Every action, in the order Redfish lists `ResetType` values.
    pub const ALL: [PowerAction; 9] = [
        PowerAction::On,
        PowerAction::ForceOff,
        PowerAction::GracefulShutdown,
        PowerAction::GracefulRestart,
        PowerAction::ForceRestart,
        PowerAction::ForceOn,
        PowerAction::PowerCycle,
        PowerAction::Nmi,
        PowerAction::PushPowerButton,
    ];

    /// The Redfish `ResetType` spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            PowerAction::On => "On",
            PowerAction::ForceOn => "ForceOn",
            PowerAction::ForceOff => "ForceOff",
            PowerAction::GracefulShutdown => "GracefulShutdown",
            PowerAction::GracefulRestart => "GracefulRestart",
            PowerAction::ForceRestart => "ForceRestart",
            PowerAction::PowerCycle => "PowerCycle",
            PowerAction::Nmi => "Nmi",
            PowerAction::PushPowerButton => "PushPowerButton",
        }
    }

    /// Parses a Redfish `ResetType` spelling (exact, case-sensitive as in the schema).
    pub fn parse(s: &str) -> Option<PowerAction> {
        PowerAction::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

impl fmt::Display for PowerAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Transition times of the power model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delays {
    /// Off → on.
    pub power_on: Duration,
    /// Hard off (ForceOff, and the off half of a cycle or hard reset).
    pub power_off: Duration,
    /// Graceful shutdown: the OS's time to shut down.
    pub shutdown: Duration,
}

/// Internal phase: a state plus, for transitions, when it ends and what follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    Off,
    On,
    PoweringOn {
        until: Instant,
    },
    PoweringOff {
        until: Instant,
        /// Graceful (OS shutdown): does not finish while the OS is hung.
        graceful: bool,
        /// Power on again once off (graceful restart).
        then_on: bool,
        /// When the BMC gives a graceful shutdown up and the server stays
        /// on (the `shutdown_timeout` quirk); `None`: it waits forever.
        gives_up: Option<Instant>,
    },
    /// The off-hold of a power cycle: power is off; it comes back at `until`.
    CycleOff {
        until: Instant,
    },
}

/// What settling the machine observed, so the owner can count boots and offs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Settled {
    pub boots_started: u32,
    pub offs_reached: u32,
}

impl Phase {
    pub(crate) fn state(self) -> PowerState {
        match self {
            Phase::Off | Phase::CycleOff { .. } => PowerState::Off,
            Phase::On => PowerState::On,
            Phase::PoweringOn { .. } => PowerState::PoweringOn,
            Phase::PoweringOff { .. } => PowerState::ShuttingDown,
        }
    }

    /// When this phase next changes on its own, if it does: a hung graceful
    /// shutdown changes only when the BMC gives it up.
    pub(crate) fn next_change(self, hung_os: bool) -> Option<Instant> {
        match self {
            Phase::Off | Phase::On => None,
            Phase::PoweringOn { until } | Phase::CycleOff { until } => Some(until),
            Phase::PoweringOff {
                until,
                graceful,
                gives_up,
                ..
            } => {
                let end = (!(graceful && hung_os)).then_some(until);
                match (end, gives_up.filter(|_| graceful)) {
                    (Some(end), Some(g)) => Some(end.min(g)),
                    (end, g) => end.or(g),
                }
            }
        }
    }

    /// Advances through every transition that ended by `now`. A graceful
    /// shutdown does not end while `hung_os` holds; one the BMC gives up
    /// before it ends leaves the server on.
    pub(crate) fn settle(&mut self, now: Instant, delays: &Delays, hung_os: bool) -> Settled {
        let mut seen = Settled::default();
        loop {
            match *self {
                Phase::PoweringOn { until } if until <= now => *self = Phase::On,
                Phase::PoweringOff {
                    until,
                    graceful: true,
                    gives_up: Some(g),
                    ..
                } if g <= now && (hung_os || g < until) => *self = Phase::On,
                Phase::CycleOff { until } if until <= now => {
                    seen.boots_started += 1;
                    *self = Phase::PoweringOn {
                        until: until + delays.power_on,
                    };
                }
                Phase::PoweringOff {
                    until,
                    graceful,
                    then_on,
                    ..
                } if until <= now && !(graceful && hung_os) => {
                    seen.offs_reached += 1;
                    *self = if then_on {
                        seen.boots_started += 1;
                        Phase::PoweringOn {
                            until: until + delays.power_on,
                        }
                    } else {
                        Phase::Off
                    };
                }
                _ => return seen,
            }
        }
    }
}

/// How a power command was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandOutcome {
    /// The command started a transition (or recorded an NMI).
    Applied,
    /// The node already is (or is already heading) where the command leads;
    /// nothing changed. Front ends answer per the node's quirks (200/409/400).
    AlreadyInState,
    /// The node has the `stuck` fault: the command was accepted and ignored.
    /// Front ends answer success, as the broken BMC would.
    Ignored,
}

/// A power command that the present state does not allow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{action} is not possible while the node is {state}")]
pub struct NotInPresentState {
    /// The refused command.
    pub action: PowerAction,
    /// The state that refused it.
    pub state: PowerState,
}

/// What an applied command did at once, beyond the next phase: so that the
/// owner counts a warm reset's boot and a power cycle's loss of power.
pub(crate) fn immediate_effects(before: Phase, action: PowerAction, after: Phase) -> Settled {
    let warm_reset = action == PowerAction::ForceRestart;
    let power_dropped = before.state().is_powered() && !after.state().is_powered();
    Settled {
        boots_started: u32::from(warm_reset || matches!(after, Phase::PoweringOn { .. })),
        offs_reached: u32::from(power_dropped && matches!(after, Phase::CycleOff { .. })),
    }
}

/// The effect of `action` on a settled phase: the next phase, or why not.
/// `Ok(None)` means "already in that state". `cycle_hold` is how long a
/// power cycle keeps the power off.
pub(crate) fn transition(
    phase: Phase,
    action: PowerAction,
    now: Instant,
    delays: &Delays,
    cycle_hold: Duration,
) -> Result<Option<Phase>, NotInPresentState> {
    let state = phase.state();
    let refuse = Err(NotInPresentState { action, state });
    let power_on = Phase::PoweringOn {
        until: now + delays.power_on,
    };
    let hard_off = Phase::PoweringOff {
        until: now + delays.power_off,
        graceful: false,
        then_on: false,
        gives_up: None,
    };
    let soft_off = |then_on| Phase::PoweringOff {
        until: now + delays.shutdown,
        graceful: true,
        then_on,
        gives_up: None,
    };
    let cycle_off = Phase::CycleOff {
        until: now + cycle_hold,
    };
    use PowerState as S;
    match (action, phase) {
        // A cycle during a cycle's off-hold restarts the hold; a hard off
        // cancels the power-on that would follow.
        (PowerAction::PowerCycle, Phase::CycleOff { .. }) => return Ok(Some(cycle_off)),
        (PowerAction::ForceOff, Phase::CycleOff { .. }) => return Ok(Some(Phase::Off)),
        _ => {}
    }
    match (action, state) {
        (PowerAction::On | PowerAction::ForceOn, S::Off) => Ok(Some(power_on)),
        (PowerAction::On | PowerAction::ForceOn, S::On | S::PoweringOn) => Ok(None),
        (PowerAction::On | PowerAction::ForceOn, S::ShuttingDown) => refuse,

        (PowerAction::ForceOff, S::Off) => Ok(None),
        (PowerAction::ForceOff, S::ShuttingDown) if is_hard_off(phase) => Ok(None),
        (PowerAction::ForceOff, _) => Ok(Some(hard_off)),

        (PowerAction::GracefulShutdown, S::Off | S::ShuttingDown) => Ok(None),
        (PowerAction::GracefulShutdown, S::On) => Ok(Some(soft_off(false))),
        (PowerAction::GracefulShutdown, S::PoweringOn) => refuse,

        (PowerAction::GracefulRestart, S::On) => Ok(Some(soft_off(true))),
        // Warm reset: power stays on; a reset in POST starts POST again.
        (PowerAction::ForceRestart, S::On) => Ok(Some(Phase::On)),
        (PowerAction::ForceRestart, S::PoweringOn) => Ok(Some(power_on)),
        (PowerAction::PowerCycle, S::On | S::PoweringOn) => Ok(Some(cycle_off)),
        (PowerAction::GracefulRestart | PowerAction::ForceRestart | PowerAction::PowerCycle, _) => {
            refuse
        }

        (PowerAction::Nmi, S::On) => Ok(Some(phase)),
        (PowerAction::Nmi, _) => refuse,

        (PowerAction::PushPowerButton, S::Off) => Ok(Some(power_on)),
        (PowerAction::PushPowerButton, S::On) => Ok(Some(soft_off(false))),
        (PowerAction::PushPowerButton, _) => refuse,
    }
}

fn is_hard_off(phase: Phase) -> bool {
    matches!(
        phase,
        Phase::PoweringOff {
            graceful: false,
            then_on: false,
            ..
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOLD: Duration = Duration::from_secs(1);

    fn delays() -> Delays {
        Delays {
            power_on: Duration::from_secs(2),
            power_off: Duration::from_secs(1),
            shutdown: Duration::from_secs(5),
        }
    }

    #[test]
    fn force_off_then_settles_off() {
        let now = Instant::now();
        let next = transition(Phase::On, PowerAction::ForceOff, now, &delays(), HOLD);
        let Ok(Some(mut phase)) = next else {
            panic!("ForceOff from on must start a transition: {next:?}");
        };
        assert_eq!(phase.state(), PowerState::ShuttingDown);
        phase.settle(now + Duration::from_millis(999), &delays(), false);
        assert_eq!(phase.state(), PowerState::ShuttingDown);
        let seen = phase.settle(now + Duration::from_secs(1), &delays(), false);
        assert_eq!(phase, Phase::Off);
        assert_eq!(seen.offs_reached, 1);
    }

    #[test]
    fn a_power_cycle_holds_off_then_boots_and_a_second_one_is_accepted() {
        let now = Instant::now();
        let Ok(Some(mut phase)) =
            transition(Phase::On, PowerAction::PowerCycle, now, &delays(), HOLD)
        else {
            panic!("cycle from on must start a transition");
        };
        assert_eq!(phase.state(), PowerState::Off, "power drops at once");
        assert_eq!(
            immediate_effects(Phase::On, PowerAction::PowerCycle, phase),
            Settled {
                boots_started: 0,
                offs_reached: 1
            }
        );
        let half = now + Duration::from_millis(500);
        phase.settle(half, &delays(), false);
        let Ok(Some(again)) = transition(phase, PowerAction::PowerCycle, half, &delays(), HOLD)
        else {
            panic!("a cycle during the off-hold is accepted");
        };
        assert_eq!(
            immediate_effects(phase, PowerAction::PowerCycle, again),
            Settled::default(),
            "no second power loss"
        );
        phase = again;
        let seen = phase.settle(now + Duration::from_millis(1499), &delays(), false);
        assert_eq!((phase.state(), seen), (PowerState::Off, Settled::default()));
        let seen = phase.settle(now + Duration::from_millis(1500), &delays(), false);
        assert_eq!(phase.state(), PowerState::PoweringOn);
        assert_eq!((seen.offs_reached, seen.boots_started), (0, 1));
        phase.settle(now + Duration::from_secs(4), &delays(), false);
        assert_eq!(phase, Phase::On);
        // Off during the hold stays off.
        let Ok(Some(held)) = transition(Phase::On, PowerAction::PowerCycle, now, &delays(), HOLD)
        else {
            panic!("cycle from on");
        };
        let Ok(Some(mut off)) = transition(held, PowerAction::ForceOff, now, &delays(), HOLD)
        else {
            panic!("ForceOff cancels the power-on");
        };
        off.settle(now + Duration::from_secs(60), &delays(), false);
        assert_eq!(off, Phase::Off);
    }

    #[test]
    fn a_hard_reset_is_warm_and_a_second_one_is_accepted() {
        let now = Instant::now();
        for _ in 0..2 {
            let next = transition(Phase::On, PowerAction::ForceRestart, now, &delays(), HOLD);
            assert_eq!(next, Ok(Some(Phase::On)), "power never leaves on");
            assert_eq!(
                immediate_effects(Phase::On, PowerAction::ForceRestart, Phase::On),
                Settled {
                    boots_started: 1,
                    offs_reached: 0
                }
            );
        }
        let booting = Phase::PoweringOn { until: now };
        let later = now + Duration::from_secs(1);
        assert_eq!(
            transition(booting, PowerAction::ForceRestart, later, &delays(), HOLD),
            Ok(Some(Phase::PoweringOn {
                until: later + Duration::from_secs(2)
            })),
            "a reset in POST starts POST again"
        );
    }

    #[test]
    fn hung_os_blocks_graceful_shutdown_but_not_force_off() {
        let now = Instant::now();
        let Ok(Some(mut phase)) = transition(
            Phase::On,
            PowerAction::GracefulShutdown,
            now,
            &delays(),
            HOLD,
        ) else {
            panic!("graceful shutdown from on must start a transition");
        };
        phase.settle(now + Duration::from_secs(3600), &delays(), true);
        assert_eq!(phase.state(), PowerState::ShuttingDown);
        let later = now + Duration::from_secs(3600);
        let Ok(Some(mut phase)) = transition(phase, PowerAction::ForceOff, later, &delays(), HOLD)
        else {
            panic!("ForceOff must override a hung shutdown");
        };
        phase.settle(later + Duration::from_secs(1), &delays(), true);
        assert_eq!(phase, Phase::Off);
    }

    #[test]
    fn already_in_state_and_refusals() {
        let now = Instant::now();
        let d = delays();
        assert_eq!(
            transition(Phase::On, PowerAction::On, now, &d, HOLD),
            Ok(None)
        );
        assert_eq!(
            transition(Phase::Off, PowerAction::ForceOff, now, &d, HOLD),
            Ok(None)
        );
        assert_eq!(
            transition(Phase::Off, PowerAction::GracefulShutdown, now, &d, HOLD),
            Ok(None)
        );
        for action in [
            PowerAction::Nmi,
            PowerAction::GracefulRestart,
            PowerAction::ForceRestart,
            PowerAction::PowerCycle,
        ] {
            assert_eq!(
                transition(Phase::Off, action, now, &d, HOLD),
                Err(NotInPresentState {
                    action,
                    state: PowerState::Off
                })
            );
        }
    }

    #[test]
    fn reset_type_names_round_trip() {
        for action in PowerAction::ALL {
            assert_eq!(PowerAction::parse(action.as_str()), Some(action));
        }
        assert_eq!(PowerAction::parse("on"), None);
    }
}
