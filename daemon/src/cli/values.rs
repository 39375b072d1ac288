//! The closed sets of values CLI flags take (`--driver`, `--power-state`):
//! checked by clap before anything is sent (exit 2, naming the valid ones)
//! and offered by the shell completions. Each maps onto the daemon's own type.

use baton_state::{Driver, PowerState};
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
}
