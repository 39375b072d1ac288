//! Boot source override of one simulated server, protocol-neutral.
//!
//! The vocabulary is Redfish's (`BootSourceOverrideTarget/Enabled/Mode`); IPMI
//! front ends map Set System Boot Options parameter 5 onto it: pxe 0x04 →
//! [`BootTarget::Pxe`], disk 0x08 → [`BootTarget::Hdd`], cdrom 0x14 →
//! [`BootTarget::Cd`], bios 0x18 → [`BootTarget::BiosSetup`]; the persistent bit
//! → [`BootEnabled::Continuous`], else [`BootEnabled::Once`]; the EFI bit →
//! [`BootMode::Uefi`]. A `Once` override is consumed when the next boot starts.

use serde::{Deserialize, Serialize};

/// Where the next boot goes (`BootSourceOverrideTarget`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BootTarget {
    /// No override: the normal boot order.
    #[default]
    None,
    /// Network boot.
    Pxe,
    /// Local disk.
    Hdd,
    /// Optical / virtual media.
    Cd,
    /// Firmware setup.
    BiosSetup,
    /// USB device.
    Usb,
}

impl BootTarget {
    /// Every target, in the order Redfish lists allowable values.
    pub const ALL: [BootTarget; 6] = [
        BootTarget::None,
        BootTarget::Pxe,
        BootTarget::Hdd,
        BootTarget::Cd,
        BootTarget::BiosSetup,
        BootTarget::Usb,
    ];

    /// The Redfish spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            BootTarget::None => "None",
            BootTarget::Pxe => "Pxe",
            BootTarget::Hdd => "Hdd",
            BootTarget::Cd => "Cd",
            BootTarget::BiosSetup => "BiosSetup",
            BootTarget::Usb => "Usb",
        }
    }
}

/// How long an override lasts (`BootSourceOverrideEnabled`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BootEnabled {
    /// No override.
    #[default]
    Disabled,
    /// For the next boot only.
    Once,
    /// Until changed.
    Continuous,
}

impl BootEnabled {
    /// Every value, in the order Redfish lists allowable values.
    pub const ALL: [BootEnabled; 3] = [
        BootEnabled::Disabled,
        BootEnabled::Once,
        BootEnabled::Continuous,
    ];

    /// The Redfish spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            BootEnabled::Disabled => "Disabled",
            BootEnabled::Once => "Once",
            BootEnabled::Continuous => "Continuous",
        }
    }
}

/// Firmware boot mode (`BootSourceOverrideMode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BootMode {
    /// BIOS / CSM.
    Legacy,
    /// UEFI (the default of current servers).
    #[default]
    #[serde(rename = "UEFI")]
    Uefi,
}

impl BootMode {
    /// Every mode, in the order Redfish lists allowable values.
    pub const ALL: [BootMode; 2] = [BootMode::Legacy, BootMode::Uefi];

    /// The Redfish spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            BootMode::Legacy => "Legacy",
            BootMode::Uefi => "UEFI",
        }
    }
}

/// The boot source override as a whole.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BootOverride {
    /// Target device.
    pub target: BootTarget,
    /// Once, continuous or disabled.
    pub enabled: BootEnabled,
    /// Legacy or UEFI.
    pub mode: BootMode,
}

impl BootOverride {
    /// The device a boot starting now uses: the override's target while one is
    /// enabled, else `None` (the normal boot order).
    pub fn effective_target(&self) -> BootTarget {
        match self.enabled {
            BootEnabled::Disabled => BootTarget::None,
            BootEnabled::Once | BootEnabled::Continuous => self.target,
        }
    }

    /// Applies the start of a boot: a `Once` override is consumed.
    /// Returns the device the boot used.
    pub(crate) fn consume_for_boot(&mut self) -> BootTarget {
        let used = self.effective_target();
        if self.enabled == BootEnabled::Once {
            self.enabled = BootEnabled::Disabled;
            self.target = BootTarget::None;
        }
        used
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn once_is_consumed_continuous_is_kept() {
        let mut once = BootOverride {
            target: BootTarget::Pxe,
            enabled: BootEnabled::Once,
            mode: BootMode::Uefi,
        };
        assert_eq!(once.consume_for_boot(), BootTarget::Pxe);
        assert_eq!(once.enabled, BootEnabled::Disabled);
        assert_eq!(once.consume_for_boot(), BootTarget::None);

        let mut continuous = BootOverride {
            enabled: BootEnabled::Continuous,
            ..once
        };
        continuous.target = BootTarget::Cd;
        assert_eq!(continuous.consume_for_boot(), BootTarget::Cd);
        assert_eq!(continuous.consume_for_boot(), BootTarget::Cd);
    }
}
