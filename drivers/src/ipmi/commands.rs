//! The raw IPMI chassis and session commands the driver sends (ipmi-rs 0.6
//! has none of them) and the completion-code rules, as pure encode/decode
//! functions (IPMI v2.0 rev 1.1, chapters 22 and 28).

use crate::{BootDevice, BootSetting, DriverError, PowerAction, PowerState};

/// NetFn App.
pub(crate) const NETFN_APP: u8 = 0x06;
/// NetFn Chassis.
pub(crate) const NETFN_CHASSIS: u8 = 0x00;

/// One raw request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Raw {
    pub netfn: u8,
    pub cmd: u8,
    pub data: Vec<u8>,
}

/// Set Session Privilege Level (App 0x3B) to Administrator (4): ipmi-rs
/// opens sessions at the spec's initial User level.
pub(crate) fn set_privilege_admin() -> Raw {
    Raw {
        netfn: NETFN_APP,
        cmd: 0x3B,
        data: vec![0x04],
    }
}

/// Get Chassis Status (Chassis 0x01).
pub(crate) fn get_chassis_status() -> Raw {
    Raw {
        netfn: NETFN_CHASSIS,
        cmd: 0x01,
        data: Vec::new(),
    }
}

/// Chassis Control (Chassis 0x02) codes.
const CONTROL_OFF: u8 = 0x00;
const CONTROL_ON: u8 = 0x01;
const CONTROL_CYCLE: u8 = 0x02;
const CONTROL_RESET: u8 = 0x03;
const CONTROL_NMI: u8 = 0x04;
const CONTROL_SOFT_OFF: u8 = 0x05;

fn chassis_control(code: u8) -> Raw {
    Raw {
        netfn: NETFN_CHASSIS,
        cmd: 0x02,
        data: vec![code],
    }
}

/// The Chassis Control request for a power action. IPMI has no "soft reboot":
/// `None` for it.
pub(crate) fn power_control(action: PowerAction) -> Option<Raw> {
    let code = match action {
        PowerAction::On => CONTROL_ON,
        PowerAction::Off => CONTROL_OFF,
        PowerAction::SoftOff => CONTROL_SOFT_OFF,
        PowerAction::Reboot => CONTROL_RESET,
        PowerAction::PowerCycle => CONTROL_CYCLE,
        PowerAction::SoftReboot => return None,
    };
    Some(chassis_control(code))
}

/// Chassis Control: diagnostic interrupt.
pub(crate) fn nmi() -> Raw {
    chassis_control(CONTROL_NMI)
}

/// Boot flags (parameter 5) of Get/Set System Boot Options.
const BOOT_FLAGS: u8 = 0x05;
const BOOT_VALID: u8 = 0x80;
const BOOT_PERSISTENT: u8 = 0x40;
const BOOT_EFI: u8 = 0x20;

fn boot_device_code(device: BootDevice) -> u8 {
    match device {
        BootDevice::Pxe => 0x04,
        BootDevice::Disk => 0x08,
        BootDevice::Cdrom => 0x14,
        BootDevice::Bios => 0x18,
    }
}

/// Set System Boot Options (Chassis 0x08), parameter 5, valid bit set.
pub(crate) fn set_boot_flags(device: BootDevice, persistent: bool, efi: bool) -> Raw {
    let mut flags = BOOT_VALID;
    if persistent {
        flags |= BOOT_PERSISTENT;
    }
    if efi {
        flags |= BOOT_EFI;
    }
    Raw {
        netfn: NETFN_CHASSIS,
        cmd: 0x08,
        data: vec![BOOT_FLAGS, flags, boot_device_code(device), 0, 0, 0],
    }
}

/// Get System Boot Options (Chassis 0x09), parameter 5.
pub(crate) fn get_boot_flags() -> Raw {
    Raw {
        netfn: NETFN_CHASSIS,
        cmd: 0x09,
        data: vec![BOOT_FLAGS, 0, 0],
    }
}

/// Reads a Get Chassis Status answer (data after the completion code).
pub(crate) fn parse_chassis_status(data: &[u8]) -> Result<PowerState, DriverError> {
    match data.first() {
        Some(state) if state & 0x01 == 1 => Ok(PowerState::On),
        Some(_) => Ok(PowerState::Off),
        None => Err(DriverError::InvalidResponse(
            "empty Get Chassis Status answer".into(),
        )),
    }
}

/// Reads a Get System Boot Options (parameter 5) answer.
pub(crate) fn parse_boot_flags(data: &[u8]) -> Result<BootSetting, DriverError> {
    let [_version, selector, flags, device, ..] = data else {
        return Err(DriverError::InvalidResponse(format!(
            "boot flags answer too short: {data:02x?}"
        )));
    };
    if selector & 0x7F != BOOT_FLAGS {
        return Err(DriverError::InvalidResponse(format!(
            "boot options answer for parameter {selector:#04x}, asked for 5"
        )));
    }
    let device = match (flags & BOOT_VALID != 0, (device >> 2) & 0x0F) {
        (false, _) | (true, 0) => None,
        (true, 1) => Some(BootDevice::Pxe),
        (true, 2) => Some(BootDevice::Disk),
        (true, 5) => Some(BootDevice::Cdrom),
        (true, 6) => Some(BootDevice::Bios),
        (true, other) => {
            return Err(DriverError::Unsupported(format!(
                "boot device selector {other:#x}"
            )))
        }
    };
    Ok(BootSetting {
        device,
        persistent: device.is_some() && flags & BOOT_PERSISTENT != 0,
    })
}

/// The error for a non-zero completion code of `request`.
pub(crate) fn completion_error(request: &Raw, code: u8) -> DriverError {
    let what = format!(
        "NetFn {:#04x} command {:#04x} answered completion code {code:#04x}",
        request.netfn, request.cmd
    );
    match code {
        0xC0 => DriverError::Busy {
            message: format!("{what} (node busy)"),
            retry_after: None,
        },
        0xD0..=0xD2 => DriverError::Busy {
            message: format!("{what} (BMC in update mode or initialising)"),
            retry_after: None,
        },
        0xC1 | 0xCC => DriverError::Unsupported(format!("{what} (invalid command or data)")),
        0x80 if request.netfn == NETFN_CHASSIS && matches!(request.cmd, 0x08 | 0x09) => {
            DriverError::Unsupported(format!("{what} (boot parameter not supported)"))
        }
        0xD4 => DriverError::Auth(format!("{what} (insufficient privilege)")),
        0xC3 | 0xCE | 0xCF | 0xD5 | 0xFF => DriverError::Bmc {
            code: code.into(),
            message: what,
            transient: true,
        },
        _ => DriverError::Bmc {
            code: code.into(),
            message: what,
            transient: false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chassis_control_codes_match_the_spec() {
        let code = |a| power_control(a).map(|r| r.data[0]);
        assert_eq!(code(PowerAction::Off), Some(0));
        assert_eq!(code(PowerAction::On), Some(1));
        assert_eq!(code(PowerAction::PowerCycle), Some(2));
        assert_eq!(code(PowerAction::Reboot), Some(3));
        assert_eq!(code(PowerAction::SoftOff), Some(5));
        assert_eq!(code(PowerAction::SoftReboot), None);
        assert_eq!(nmi().data, vec![4]);
    }

    #[test]
    fn boot_flags_round_trip() {
        for device in BootDevice::ALL {
            for persistent in [false, true] {
                let set = set_boot_flags(device, persistent, false);
                let mut answer = vec![0x01, 0x05];
                answer.extend_from_slice(&set.data[1..]);
                let got = parse_boot_flags(&answer);
                assert_eq!(
                    got,
                    Ok(BootSetting {
                        device: Some(device),
                        persistent
                    })
                );
            }
        }
        assert_eq!(set_boot_flags(BootDevice::Pxe, false, false).data[2], 0x04);
        assert_eq!(set_boot_flags(BootDevice::Bios, true, true).data[1], 0xE0);
        let none = parse_boot_flags(&[0x01, 0x05, 0x00, 0x04, 0, 0, 0]);
        assert_eq!(none.map(|b| b.device), Ok(None));
        assert!(parse_boot_flags(&[0x01]).is_err());
    }

    #[test]
    fn completion_codes_classify() {
        let req = get_chassis_status();
        assert!(matches!(
            completion_error(&req, 0xC0),
            DriverError::Busy { .. }
        ));
        assert!(matches!(completion_error(&req, 0xD4), DriverError::Auth(_)));
        assert!(completion_error(&req, 0xC3).is_transient());
        assert!(!completion_error(&req, 0xC1).is_transient());
        for code in [0xD0, 0xD1, 0xD2] {
            let error = completion_error(&req, code);
            assert!(matches!(error, DriverError::Busy { .. }), "{code:#x}");
            assert!(error.is_transient(), "{code:#x}");
        }
        assert!(matches!(
            completion_error(&get_boot_flags(), 0x80),
            DriverError::Unsupported(_)
        ));
        assert!(matches!(
            completion_error(&req, 0x80),
            DriverError::Bmc {
                transient: false,
                ..
            }
        ));
        assert_eq!(parse_chassis_status(&[0x61, 0, 0]), Ok(PowerState::On));
        assert_eq!(parse_chassis_status(&[0x60, 0, 0]), Ok(PowerState::Off));
    }
}
