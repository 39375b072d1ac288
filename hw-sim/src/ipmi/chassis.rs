//! The narrow interface between IPMI command handlers and the power model,
//! and the mapping of IPMI chassis encodings onto the model's vocabulary.
//!
//! Handlers see a node only through [`Chassis`]; [`crate::model::Node`]
//! implements it, and unit tests may use any other implementation.
//! Encodings (IPMI v2.0 section 28):
//!
//! - Chassis Control (28.3) data byte: 0 power down → `ForceOff`, 1 power up
//!   → `On`, 2 power cycle → `PowerCycle`, 3 hard reset → `ForceRestart`,
//!   4 pulse diagnostic interrupt → `Nmi`, 5 soft shutdown → `GracefulShutdown`.
//! - Boot flags, parameter 5 of the system boot options (28.13, table
//!   28-14): byte 1 bit 7 valid, bit 6 persistent, bit 5 EFI; byte 2 bits
//!   5:2 device selector — 1 PXE, 2 disk, 5 CD/DVD, 6 BIOS setup, 15
//!   primary removable media (USB here).

use crate::model::{
    BootEnabled, BootMode, BootOverride, BootTarget, CommandOutcome, Node, NotInPresentState,
    PowerAction, PowerState, ValidBitClearing,
};

/// What IPMI command handlers may read and do on a simulated server.
pub trait Chassis: Send + Sync {
    /// The power state now, as the BMC reports it (its power state style).
    fn power_state(&self) -> PowerState;
    /// Runs a Chassis Control command (counted by the model; `stuck`
    /// applies there); its arrival stops the boot flags' valid-bit timer.
    fn chassis_control(&self, action: PowerAction) -> Result<CommandOutcome, NotInPresentState>;
    /// Boots started so far (to tell whether the last power-on was ours).
    fn boots(&self) -> u64;
    /// The boot source override.
    fn boot_override(&self) -> BootOverride;
    /// Replaces the boot flags (parameter 5); valid flags start the
    /// valid-bit timer.
    fn set_boot_flags(&self, boot: BootOverride);
    /// Boot options parameter 3.
    fn valid_bit_clearing(&self) -> ValidBitClearing;
    /// Replaces boot options parameter 3.
    fn set_valid_bit_clearing(&self, clearing: ValidBitClearing);
    /// The password the BMC holds now for `username`, if it knows the user.
    fn password_for(&self, username: &str) -> Option<String>;
    /// Bumped each time every session is invalidated (`drop_sessions`,
    /// `bmc_reboot`).
    fn session_epoch(&self) -> u64;
}

impl Chassis for Node {
    fn power_state(&self) -> PowerState {
        Node::reported_power_state(self)
    }

    fn chassis_control(&self, action: PowerAction) -> Result<CommandOutcome, NotInPresentState> {
        Node::chassis_control(self, action)
    }

    fn boots(&self) -> u64 {
        self.counters().boots
    }

    fn boot_override(&self) -> BootOverride {
        Node::boot_override(self)
    }

    fn set_boot_flags(&self, boot: BootOverride) {
        Node::set_boot_flags(self, boot);
    }

    fn valid_bit_clearing(&self) -> ValidBitClearing {
        Node::valid_bit_clearing(self)
    }

    fn set_valid_bit_clearing(&self, clearing: ValidBitClearing) {
        Node::set_valid_bit_clearing(self, clearing);
    }

    fn password_for(&self, username: &str) -> Option<String> {
        Node::password_for(self, username)
    }

    fn session_epoch(&self) -> u64 {
        Node::session_epoch(self)
    }
}

/// The power action of a Chassis Control data byte, if defined.
pub fn control_action(byte: u8) -> Option<PowerAction> {
    match byte & 0x0F {
        0 => Some(PowerAction::ForceOff),
        1 => Some(PowerAction::On),
        2 => Some(PowerAction::PowerCycle),
        3 => Some(PowerAction::ForceRestart),
        4 => Some(PowerAction::Nmi),
        5 => Some(PowerAction::GracefulShutdown),
        _ => None,
    }
}

/// Whether an applied action powers the node on (for the chassis status
/// "last power-on via IPMI command" bit).
pub fn starts_boot(action: PowerAction) -> bool {
    matches!(
        action,
        PowerAction::On
            | PowerAction::ForceOn
            | PowerAction::PowerCycle
            | PowerAction::ForceRestart
    )
}

const BOOT_VALID: u8 = 0x80;
const BOOT_PERSISTENT: u8 = 0x40;
const BOOT_EFI: u8 = 0x20;

fn device_selector(target: BootTarget) -> u8 {
    match target {
        BootTarget::None => 0x0,
        BootTarget::Pxe => 0x1,
        BootTarget::Hdd => 0x2,
        BootTarget::Cd => 0x5,
        BootTarget::BiosSetup => 0x6,
        BootTarget::Usb => 0xF,
    }
}

fn target_of(selector: u8) -> Option<BootTarget> {
    match selector {
        0x0 => Some(BootTarget::None),
        0x1 => Some(BootTarget::Pxe),
        0x2 => Some(BootTarget::Hdd),
        0x5 => Some(BootTarget::Cd),
        0x6 => Some(BootTarget::BiosSetup),
        0xF => Some(BootTarget::Usb),
        _ => None,
    }
}

/// Encodes the override as the 5 data bytes of boot options parameter 5.
pub fn encode_boot_flags(boot: &BootOverride) -> [u8; 5] {
    let mut byte1 = match boot.enabled {
        BootEnabled::Disabled => 0,
        BootEnabled::Once => BOOT_VALID,
        BootEnabled::Continuous => BOOT_VALID | BOOT_PERSISTENT,
    };
    if boot.mode == BootMode::Uefi {
        byte1 |= BOOT_EFI;
    }
    [byte1, device_selector(boot.target) << 2, 0, 0, 0]
}

/// Decodes parameter 5's data bytes; `None` for a device selector this BMC
/// cannot boot from. A cleared valid bit means "no override".
pub fn decode_boot_flags(data: &[u8; 5]) -> Option<BootOverride> {
    let mode = if data[0] & BOOT_EFI != 0 {
        BootMode::Uefi
    } else {
        BootMode::Legacy
    };
    if data[0] & BOOT_VALID == 0 {
        return Some(BootOverride {
            target: BootTarget::None,
            enabled: BootEnabled::Disabled,
            mode,
        });
    }
    let target = target_of((data[1] >> 2) & 0x0F)?;
    let enabled = if data[0] & BOOT_PERSISTENT != 0 {
        BootEnabled::Continuous
    } else {
        BootEnabled::Once
    };
    Some(BootOverride {
        target,
        enabled,
        mode,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_flags_roundtrip_for_every_target() {
        for target in BootTarget::ALL {
            for enabled in [BootEnabled::Once, BootEnabled::Continuous] {
                for mode in BootMode::ALL {
                    let b = BootOverride {
                        target,
                        enabled,
                        mode,
                    };
                    assert_eq!(decode_boot_flags(&encode_boot_flags(&b)), Some(b));
                }
            }
        }
    }

    #[test]
    fn issue_device_bytes_map_to_targets() {
        let dev = |byte2| decode_boot_flags(&[0x80, byte2, 0, 0, 0]).map(|b| b.target);
        assert_eq!(dev(0x04), Some(BootTarget::Pxe));
        assert_eq!(dev(0x08), Some(BootTarget::Hdd));
        assert_eq!(dev(0x14), Some(BootTarget::Cd));
        assert_eq!(dev(0x18), Some(BootTarget::BiosSetup));
        assert_eq!(dev(0x0C), None); // hard drive, safe mode
    }

    #[test]
    fn control_bytes_map_to_actions() {
        assert_eq!(control_action(0), Some(PowerAction::ForceOff));
        assert_eq!(control_action(5), Some(PowerAction::GracefulShutdown));
        assert_eq!(control_action(6), None);
    }
}
