//! The raw IPMI chassis and session commands the driver sends (ipmi-rs 0.6
//! has none of them) and the completion-code rules, as pure encode/decode
//! functions (IPMI v2.0 rev 1.1, chapters 22 and 28).

use crate::{BootDevice, BootSetting, DriverError, PowerAction, PowerState};

/// NetFn App.
pub(crate) const NETFN_APP: u8 = 0x06;
/// NetFn Chassis.
pub(crate) const NETFN_CHASSIS: u8 = 0x00;

/// What sending a request twice does at the BMC, which decides whether it
/// may be retransmitted and what a lost answer means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Effect {
    /// A read: retransmitted until answered; a lost answer is a timeout.
    Read,
    /// A setting that ends the same however often it is received:
    /// retransmitted until answered; a lost answer is a timeout (retry).
    Setting,
    /// A power command the BMC may receive twice without harm (power on,
    /// hard off): retransmitted until answered, but once it went out a lost
    /// answer leaves the power state unknown.
    IdempotentPower,
    /// A power command that runs again each time it is received (cycle,
    /// hard reset, NMI, soft off): sent exactly once, never retransmitted;
    /// a lost answer leaves the outcome unknown.
    Once,
}

impl Effect {
    /// Whether the request may be sent again when its answer is late.
    pub fn retransmits(self) -> bool {
        self != Self::Once
    }

    /// Whether, once sent, a missing answer means "outcome unknown" rather
    /// than a plain timeout.
    pub fn changes_power(self) -> bool {
        matches!(self, Self::IdempotentPower | Self::Once)
    }
}

/// One raw request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Raw {
    pub netfn: u8,
    pub cmd: u8,
    pub data: Vec<u8>,
    pub effect: Effect,
}

/// Set Session Privilege Level (App 0x3B) to Administrator (4): ipmi-rs
/// opens sessions at the spec's initial User level.
pub(crate) fn set_privilege_admin() -> Raw {
    Raw {
        netfn: NETFN_APP,
        cmd: 0x3B,
        data: vec![0x04],
        effect: Effect::Setting,
    }
}

/// Completion codes of Set Session Privilege Level that refuse the level
/// itself (IPMI v2.0 §22.18: 80h not available for this user, 81h above the
/// user's or channel's limit; D4h insufficient privilege). Every other code
/// (busy, out of space, time-out…) says nothing about the credentials.
const PRIVILEGE_REFUSED: [u8; 3] = [0x80, 0x81, 0xD4];

/// The error for a non-zero completion code of Set Session Privilege Level:
/// [`DriverError::Auth`] for a refusal of the level, the usual mapping of
/// [`completion_error`] (transient or not) for anything else.
pub(crate) fn privilege_error(code: u8) -> DriverError {
    if PRIVILEGE_REFUSED.contains(&code) {
        DriverError::Auth(format!(
            "the user cannot have Administrator privilege (completion code {code:#04x})"
        ))
    } else {
        completion_error(&set_privilege_admin(), code)
    }
}

/// Get Device ID (App 0x01), which every BMC implements.
pub(crate) fn get_device_id() -> Raw {
    Raw {
        netfn: NETFN_APP,
        cmd: 0x01,
        data: Vec::new(),
        effect: Effect::Read,
    }
}

/// Get Session Info (App 0x3D) for the session it arrives on (index 0):
/// the answer starts with the session handle.
pub(crate) fn get_session_info() -> Raw {
    get_session_info_at(0)
}

/// Get Session Info (App 0x3D) of the `index`-th active session (0: the
/// session this request comes on; IPMI v2.0 §22.20).
pub(crate) fn get_session_info_at(index: u8) -> Raw {
    Raw {
        netfn: NETFN_APP,
        cmd: 0x3D,
        data: vec![index],
        effect: Effect::Read,
    }
}

/// What Get Session Info says of one active session on a LAN channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SessionInfo {
    pub handle: u8,
    /// Sessions active on the BMC now.
    pub active: u8,
    /// The remote console's address as the BMC sees it.
    pub ip: [u8; 4],
    pub port: u16,
}

/// Parses Get Session Info's answer (after the completion code): handle,
/// possible and active counts, user, privilege, channel, then for an
/// 802.3 LAN channel the console's IP, MAC and port (LS byte first).
/// `None` for a slot without an active session or a non-LAN session.
pub(crate) fn parse_session_info(data: &[u8]) -> Option<SessionInfo> {
    let [handle, _, active, _, _, _, a, b, c, d, _, _, _, _, _, _, port_lo, port_hi, ..] = *data
    else {
        return None;
    };
    (handle != 0).then_some(SessionInfo {
        handle,
        active: active & 0x3F,
        ip: [a, b, c, d],
        port: u16::from_le_bytes([port_lo, port_hi]),
    })
}

/// Close Session (App 0x3C) by handle: session id 0 says "use the handle
/// that follows" (IPMI v2.0 §22.19), since ipmi-rs hides the session id.
pub(crate) fn close_session(handle: u8) -> Raw {
    Raw {
        netfn: NETFN_APP,
        cmd: 0x3C,
        data: vec![0, 0, 0, 0, handle],
        effect: Effect::Setting,
    }
}

/// Get Chassis Status (Chassis 0x01).
pub(crate) fn get_chassis_status() -> Raw {
    Raw {
        netfn: NETFN_CHASSIS,
        cmd: 0x01,
        data: Vec::new(),
        effect: Effect::Read,
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
    // On and hard off end in the same state however often they arrive (a
    // second one is a no-op or a "not in this state" answer); the others
    // start a new reset, cycle, dump or shutdown each time.
    let effect = match code {
        CONTROL_ON | CONTROL_OFF => Effect::IdempotentPower,
        _ => Effect::Once,
    };
    Raw {
        netfn: NETFN_CHASSIS,
        cmd: 0x02,
        data: vec![code],
        effect,
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

/// BMC boot flag valid bit clearing (parameter 3 of Set System Boot Options).
const BOOT_FLAG_CLEARING: u8 = 0x03;
/// Parameter 3, bit 3 (IPMI v2.0 table 28-14): do not clear the boot flags
/// valid bit when no Chassis Control command arrives within 60 s of the
/// flags being set. The other bits stay 0: the valid bit is still cleared on
/// a reset the BMC did not order (PEF, watchdog, power button).
const KEEP_VALID_WITHOUT_CHASSIS_CONTROL: u8 = 0x08;

/// Set System Boot Options (Chassis 0x08), parameter 3: keep the boot
/// override valid past the 60-second timeout, so a reboot ordered minutes
/// after `set_boot_device` still boots from the chosen device (as Ironic's
/// IPMI driver does with `raw 0x00 0x08 0x03 0x08`).
pub(crate) fn keep_boot_flags_valid() -> Raw {
    Raw {
        netfn: NETFN_CHASSIS,
        cmd: 0x08,
        data: vec![BOOT_FLAG_CLEARING, KEEP_VALID_WITHOUT_CHASSIS_CONTROL],
        effect: Effect::Setting,
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
        effect: Effect::Setting,
    }
}

/// Get System Boot Options (Chassis 0x09), parameter 5.
pub(crate) fn get_boot_flags() -> Raw {
    Raw {
        netfn: NETFN_CHASSIS,
        cmd: 0x09,
        data: vec![BOOT_FLAGS, 0, 0],
        effect: Effect::Read,
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
    fn the_boot_flag_clearing_request_keeps_the_flags_past_60_s() {
        let request = keep_boot_flags_valid();
        assert_eq!((request.netfn, request.cmd), (0x00, 0x08));
        assert_eq!(request.data, vec![0x03, 0x08]);
    }

    #[test]
    fn only_a_privilege_refusal_on_set_session_privilege_is_auth() {
        for code in [0x80, 0x81, 0xD4] {
            assert!(
                matches!(privilege_error(code), DriverError::Auth(_)),
                "{code:#x}"
            );
        }
        for code in [0xC3, 0xCE, 0xCF, 0xD5, 0xFF] {
            let error = privilege_error(code);
            assert!(
                matches!(
                    error,
                    DriverError::Bmc {
                        transient: true,
                        ..
                    }
                ),
                "{code:#x}: {error:?}"
            );
        }
        assert!(matches!(privilege_error(0xC0), DriverError::Busy { .. }));
        assert!(matches!(privilege_error(0xD1), DriverError::Busy { .. }));
    }

    #[test]
    fn only_on_and_hard_off_are_retransmitted() {
        let effect = |a| power_control(a).map(|r| r.effect);
        assert_eq!(effect(PowerAction::On), Some(Effect::IdempotentPower));
        assert_eq!(effect(PowerAction::Off), Some(Effect::IdempotentPower));
        for action in [
            PowerAction::PowerCycle,
            PowerAction::Reboot,
            PowerAction::SoftOff,
        ] {
            assert_eq!(effect(action), Some(Effect::Once), "{action}");
        }
        assert_eq!(nmi().effect, Effect::Once);
        assert!(!Effect::Once.retransmits());
        assert!(Effect::IdempotentPower.changes_power());
        assert!(!get_chassis_status().effect.changes_power());
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
