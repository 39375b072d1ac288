//! Boot source override of one simulated server, protocol-neutral.
//!
//! The vocabulary is Redfish's (`BootSourceOverrideTarget/Enabled/Mode`); IPMI
//! front ends map Set System Boot Options parameter 5 onto it: pxe 0x04 →
//! [`BootTarget::Pxe`], disk 0x08 → [`BootTarget::Hdd`], cdrom 0x14 →
//! [`BootTarget::Cd`], bios 0x18 → [`BootTarget::BiosSetup`]; the persistent bit
//! → [`BootEnabled::Continuous`], else [`BootEnabled::Once`]; the EFI bit →
//! [`BootMode::Uefi`]. A `Once` override is consumed when the next boot starts.
//!
//! Boot flags written over IPMI also follow the BMC's valid-bit clearing
//! rules (parameter 3, [`ValidBitClearing`]): unless told otherwise, the BMC
//! clears the valid bit when no Chassis Control command arrives within the
//! valid-flag timeout (60 s in the specification) of the flags being set.

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

/// IPMI boot options parameter 3, "BMC boot flag valid bit clearing"
/// (IPMI v2.0 table 28-14). Each set bit means the BMC does *not* clear the
/// boot flags valid bit on that event; bits 7:5 are reserved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ValidBitClearing(u8);

impl ValidBitClearing {
    /// Bit 0: power-up via the power pushbutton or a wake event.
    pub const POWER_BUTTON: u8 = 0x01;
    /// Bit 1: pushbutton reset or soft reset.
    pub const RESET_BUTTON: u8 = 0x02;
    /// Bit 2: reset or power cycle by the watchdog timeout.
    pub const WATCHDOG: u8 = 0x04;
    /// Bit 3: the timeout without a Chassis Control command.
    pub const TIMEOUT: u8 = 0x08;
    /// Bit 4: reset or power cycle caused by PEF.
    pub const PEF: u8 = 0x10;
    const RESERVED: u8 = 0xE0;

    /// Parses the parameter's data byte; `None` when a reserved bit is set.
    pub fn from_byte(byte: u8) -> Option<Self> {
        (byte & Self::RESERVED == 0).then_some(Self(byte))
    }

    /// The parameter's data byte.
    pub fn byte(self) -> u8 {
        self.0
    }

    /// Whether the valid bit survives `event` (one of the bit constants).
    pub fn keeps_valid_on(self, event: u8) -> bool {
        self.0 & event != 0
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
