//! The closed sets of values CLI flags and arguments take (`--driver`,
//! `--power-state`, power verbs, boot devices, actions): checked by clap
//! before anything is sent (exit 2, naming the valid ones) and offered by
//! the shell completions. Each maps onto the daemon's own type or name.

use baton_drivers::BootDevice;
use baton_state::{Driver, PowerState, PowerVerb};
use clap::ValueEnum;

/// `--driver`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DriverArg {
    /// Redfish over HTTPS (or http:// in the address).
    Redfish,
    /// IPMI v2.0 over LAN (RMCP+).
    Ipmi,
}

impl From<DriverArg> for Driver {
    fn from(arg: DriverArg) -> Self {
        match arg {
            DriverArg::Redfish => Driver::Redfish,
            DriverArg::Ipmi => Driver::Ipmi,
        }
    }
}

/// `--power-state` of `node list`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PowerStateArg {
    /// Powered on ("power on").
    #[value(alias = "power on")]
    On,
    /// Powered off ("power off").
    #[value(alias = "power off")]
    Off,
    /// The last read failed.
    Error,
    /// Never read yet.
    Null,
}

impl PowerStateArg {
    /// The API's spelling of the filter.
    pub fn api_value(self) -> &'static str {
        match self {
            PowerStateArg::On => PowerState::On.as_str(),
            PowerStateArg::Off => PowerState::Off.as_str(),
            PowerStateArg::Error => PowerState::Error.as_str(),
            PowerStateArg::Null => crate::api::types::NEVER_READ,
        }
    }
}

/// The verb of `node power`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PowerArg {
    /// Power on ("power on").
    On,
    /// Hard power off ("power off").
    Off,
    /// Hard restart ("rebooting").
    Reboot,
    /// Ask the OS to shut down ("soft power off"); hard off after the
    /// conductor's soft_power_off_timeout when soft_off_fallback is set.
    SoftOff,
    /// Ask the OS to restart ("soft rebooting").
    SoftReboot,
    /// Off, then on again ("power cycle").
    Cycle,
}

impl From<PowerArg> for PowerVerb {
    fn from(arg: PowerArg) -> Self {
        match arg {
            PowerArg::On => PowerVerb::On,
            PowerArg::Off => PowerVerb::Off,
            PowerArg::Reboot => PowerVerb::Reboot,
            PowerArg::SoftOff => PowerVerb::SoftOff,
            PowerArg::SoftReboot => PowerVerb::SoftReboot,
            PowerArg::Cycle => PowerVerb::PowerCycle,
        }
    }
}

/// The device of `node boot`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BootDeviceArg {
    /// Network boot.
    Pxe,
    /// The local disk.
    Disk,
    /// The optical drive (or virtual media CD).
    Cdrom,
    /// The firmware setup screen.
    Bios,
}

impl From<BootDeviceArg> for BootDevice {
    fn from(arg: BootDeviceArg) -> Self {
        match arg {
            BootDeviceArg::Pxe => BootDevice::Pxe,
            BootDeviceArg::Disk => BootDevice::Disk,
            BootDeviceArg::Cdrom => BootDevice::Cdrom,
            BootDeviceArg::Bios => BootDevice::Bios,
        }
    }
}

/// The actions of `POST /v1/nodes/{ident}/action`, by their API names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ActionArg {
    /// Power on.
    #[value(name = "os-start")]
    OsStart,
    /// Power off: --type SOFT (the default: the OS shuts down) or HARD.
    #[value(name = "os-stop")]
    OsStop,
    /// Restart: --type SOFT (the default) or HARD.
    Reboot,
    /// Diagnostic interrupt (NMI), for a crash dump.
    #[value(name = "trigger_crash_dump", alias = "trigger-crash-dump")]
    TriggerCrashDump,
    /// Refuse power and boot actions until unlocked (--reason).
    Lock,
    /// Allow power and boot actions again.
    Unlock,
    /// Boot once from the network, then restart.
    Rescue,
    /// Boot from disk again, then restart.
    Unrescue,
    /// Admin: clear a stuck target, error and lease.
    #[value(name = "os-reset_status", alias = "os-reset-status")]
    OsResetStatus,
}

impl ActionArg {
    /// The action's key in the request body.
    pub fn api_name(self) -> &'static str {
        match self {
            ActionArg::OsStart => "os-start",
            ActionArg::OsStop => "os-stop",
            ActionArg::Reboot => "reboot",
            ActionArg::TriggerCrashDump => "trigger_crash_dump",
            ActionArg::Lock => "lock",
            ActionArg::Unlock => "unlock",
            ActionArg::Rescue => "rescue",
            ActionArg::Unrescue => "unrescue",
            ActionArg::OsResetStatus => "os-reset_status",
        }
    }

    /// Whether the action takes `--type`.
    pub fn takes_type(self) -> bool {
        matches!(self, ActionArg::OsStop | ActionArg::Reboot)
    }
}

/// `--type` of os-stop and reboot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StopType {
    /// Ask the OS (graceful).
    #[value(name = "SOFT", alias = "soft")]
    Soft,
    /// At once, without asking the OS.
    #[value(name = "HARD", alias = "hard")]
    Hard,
}

impl StopType {
    pub fn api_name(self) -> &'static str {
        match self {
            StopType::Soft => "SOFT",
            StopType::Hard => "HARD",
        }
    }
}

/// `on` or `off` (of `node maintenance`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Switch {
    /// Enter.
    On,
    /// Leave.
    Off,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_driver_and_power_state_has_a_value() {
        let drivers: Vec<Driver> = DriverArg::value_variants()
            .iter()
            .map(|d| Driver::from(*d))
            .collect();
        assert_eq!(drivers, Driver::ALL);
        for d in DriverArg::value_variants() {
            let name = d.to_possible_value().unwrap();
            assert_eq!(name.get_name(), Driver::from(*d).as_str());
        }
        let states: Vec<&str> = PowerStateArg::value_variants()
            .iter()
            .map(|p| p.api_value())
            .collect();
        for s in PowerState::ALL {
            assert!(states.contains(&s.as_str()), "{s:?}");
        }
        assert_eq!(
            PowerStateArg::from_str("power on", false).unwrap(),
            PowerStateArg::On
        );
    }

    #[test]
    fn every_power_verb_and_boot_device_has_a_value() {
        let verbs: Vec<PowerVerb> = PowerArg::value_variants()
            .iter()
            .map(|v| PowerVerb::from(*v))
            .collect();
        assert_eq!(verbs.len(), PowerVerb::ALL.len());
        for verb in PowerVerb::ALL {
            assert!(verbs.contains(&verb), "{verb:?}");
        }
        let devices: Vec<BootDevice> = BootDeviceArg::value_variants()
            .iter()
            .map(|d| BootDevice::from(*d))
            .collect();
        assert_eq!(devices, BootDevice::ALL);
        for d in BootDeviceArg::value_variants() {
            let name = d.to_possible_value().unwrap();
            assert_eq!(name.get_name(), BootDevice::from(*d).to_string());
        }
    }

    /// The CLI's action names are the API's: each is accepted by the
    /// daemon's own parser, with `--type` where it takes one.
    #[test]
    fn every_action_is_one_the_api_parses() {
        for action in ActionArg::value_variants() {
            let name = action.to_possible_value().unwrap();
            assert_eq!(name.get_name(), action.api_name());
            let args = if action.takes_type() {
                serde_json::json!({"type": StopType::Hard.api_name()})
            } else {
                serde_json::Value::Null
            };
            let body = serde_json::json!({ action.api_name(): args });
            assert!(crate::api::power::parse_action(&body).is_ok(), "{body}");
        }
    }
}
