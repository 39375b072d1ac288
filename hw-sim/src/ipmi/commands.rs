//! IPMI commands the simulated BMC answers: parse the request data, act on
//! the BMC state or the [`Chassis`], build the response data and completion
//! code.
//!
//! [`Command`] is the whole list; one exhaustive `match` gives each command
//! its privilege (IPMI v2.0 appendix G) and whether it is allowed outside a
//! session. Commands and sections:
//!
//! - App (netFn 06h): Get Device ID 01h (20.1), Get System GUID 37h (22.14),
//!   Get Channel Authentication Capabilities 38h (22.13, with the v2.0
//!   extended data), Set Session Privilege Level 3Bh (22.18), Close Session
//!   3Ch (22.19), Get Session Info 3Dh (22.20), Get Channel Cipher Suites
//!   54h (22.15).
//! - Chassis (netFn 00h): Get Chassis Status 01h (28.2), Chassis Control 02h
//!   (28.3), Set / Get System Boot Options 08h / 09h (28.12, 28.13;
//!   parameters 0 to 7, see [`super::boot`]).
//! - Storage (netFn 0Ah): Get SEL Info 40h (31.2; the SEL is empty).
//!
//! Completion codes (5.2): C1h unknown command, C7h request too short or of
//! a wrong length, C8h too long, C9h parameter out of range, CCh invalid
//! data field, D4h insufficient
//! privilege, D5h not possible in the present state, C0h busy (fault).

use std::net::SocketAddr;

use super::chassis::{self, Chassis};
use super::session::{Privilege, SessionTable};
use crate::model::CommandOutcome;

/// Completion codes (table 5-2) and command-specific ones used here.
pub mod cc {
    /// Command completed normally.
    pub const OK: u8 = 0x00;
    /// Node busy.
    pub const BUSY: u8 = 0xC0;
    /// Invalid command.
    pub const INVALID_COMMAND: u8 = 0xC1;
    /// Request data length invalid.
    pub const LENGTH_INVALID: u8 = 0xC7;
    /// Request data field length limit exceeded.
    pub const LENGTH_EXCEEDED: u8 = 0xC8;
    /// Parameter out of range.
    pub const PARAMETER_OUT_OF_RANGE: u8 = 0xC9;
    /// Invalid data field in request.
    pub const INVALID_DATA: u8 = 0xCC;
    /// Insufficient privilege level.
    pub const INSUFFICIENT_PRIVILEGE: u8 = 0xD4;
    /// Command not supported in present state.
    pub const NOT_IN_PRESENT_STATE: u8 = 0xD5;
    /// Unspecified error.
    pub const UNSPECIFIED: u8 = 0xFF;
    /// Boot options: parameter not supported.
    pub const PARAMETER_NOT_SUPPORTED: u8 = 0x80;
    /// Boot options: "set in progress" while not in "set complete".
    pub const SET_IN_PROGRESS: u8 = 0x81;
    /// Set Session Privilege Level: level not available for this user.
    pub const PRIV_NOT_AVAILABLE: u8 = 0x80;
    /// Set Session Privilege Level: level exceeds the user or channel limit.
    pub const PRIV_EXCEEDS_LIMIT: u8 = 0x81;
    /// Close Session: invalid session id.
    pub const INVALID_SESSION_ID: u8 = 0x87;
    /// Close Session: invalid session handle.
    pub const INVALID_SESSION_HANDLE: u8 = 0x88;
}

const NETFN_CHASSIS: u8 = 0x00;
const NETFN_APP: u8 = 0x06;
const NETFN_STORAGE: u8 = 0x0A;
/// The LAN channel number this BMC reports.
pub const LAN_CHANNEL: u8 = 0x01;

/// Every command this BMC implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// App 01h.
    GetDeviceId,
    /// App 37h.
    GetSystemGuid,
    /// App 38h.
    GetChannelAuthCapabilities,
    /// App 3Bh.
    SetSessionPrivilegeLevel,
    /// App 3Ch.
    CloseSession,
    /// App 3Dh.
    GetSessionInfo,
    /// App 54h.
    GetChannelCipherSuites,
    /// Chassis 01h.
    GetChassisStatus,
    /// Chassis 02h.
    ChassisControl,
    /// Chassis 08h.
    SetSystemBootOptions,
    /// Chassis 09h.
    GetSystemBootOptions,
    /// Storage 40h.
    GetSelInfo,
}

impl Command {
    /// The command addressed by (netFn, cmd), if implemented.
    pub fn identify(netfn: u8, cmd: u8) -> Option<Self> {
        Some(match (netfn, cmd) {
            (NETFN_APP, 0x01) => Self::GetDeviceId,
            (NETFN_APP, 0x37) => Self::GetSystemGuid,
            (NETFN_APP, 0x38) => Self::GetChannelAuthCapabilities,
            (NETFN_APP, 0x3B) => Self::SetSessionPrivilegeLevel,
            (NETFN_APP, 0x3C) => Self::CloseSession,
            (NETFN_APP, 0x3D) => Self::GetSessionInfo,
            (NETFN_APP, 0x54) => Self::GetChannelCipherSuites,
            (NETFN_CHASSIS, 0x01) => Self::GetChassisStatus,
            (NETFN_CHASSIS, 0x02) => Self::ChassisControl,
            (NETFN_CHASSIS, 0x08) => Self::SetSystemBootOptions,
            (NETFN_CHASSIS, 0x09) => Self::GetSystemBootOptions,
            (NETFN_STORAGE, 0x40) => Self::GetSelInfo,
            _ => return None,
        })
    }

    /// Lowest session privilege that may run the command (appendix G);
    /// `None` = also allowed outside a session.
    pub fn privilege(self) -> Option<Privilege> {
        match self {
            Self::GetSystemGuid
            | Self::GetChannelAuthCapabilities
            | Self::GetChannelCipherSuites => None,
            Self::SetSessionPrivilegeLevel | Self::CloseSession => Some(Privilege::Callback),
            Self::GetDeviceId
            | Self::GetSessionInfo
            | Self::GetChassisStatus
            | Self::GetSelInfo => Some(Privilege::User),
            Self::ChassisControl | Self::SetSystemBootOptions | Self::GetSystemBootOptions => {
                Some(Privilege::Operator)
            }
        }
    }

    /// Whether the busy / error faults apply (everything but ending a session).
    pub fn affected_by_faults(self) -> bool {
        self != Self::CloseSession
    }
}

/// The "set in progress" state of the boot options (parameter 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SetProgress {
    /// 00b set complete.
    #[default]
    Complete,
    /// 01b set in progress.
    InProgress,
}

/// IPMI-only state of one BMC (what the power model has no word for).
#[derive(Debug)]
pub struct BmcState {
    /// The session table.
    pub sessions: SessionTable,
    /// The boot options only IPMI keeps (parameters 0, 1, 2, 4, 6, 7).
    pub boot: super::boot::BootOptions,
    /// The model's boot count right after the last power-on this BMC's
    /// IPMI side caused; equal to the current count = "last power-on via
    /// IPMI command".
    pub ipmi_boot_mark: Option<u64>,
    /// The BMC's GUID.
    pub guid: [u8; 16],
}

/// Who is asking: the session (if any) the request came in.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    /// BMC session id, or `None` outside a session.
    pub session_id: Option<u32>,
    /// Operating privilege of that session.
    pub privilege: Option<Privilege>,
    /// Remote console address.
    pub peer: SocketAddr,
}

/// A command's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// Completion code.
    pub cc: u8,
    /// Response data after the completion code.
    pub data: Vec<u8>,
    /// Close the caller's session after sending this answer.
    pub close_session: bool,
}

impl Answer {
    fn ok(data: Vec<u8>) -> Self {
        Self {
            cc: cc::OK,
            data,
            close_session: false,
        }
    }

    /// An answer with only a completion code.
    pub fn code(cc: u8) -> Self {
        Self {
            cc,
            data: Vec::new(),
            close_session: false,
        }
    }
}

/// Checks the request data length: `min..=max` bytes (C7h short, C8h long).
pub(super) fn length(data: &[u8], min: usize, max: usize) -> Result<(), Answer> {
    if data.len() < min {
        Err(Answer::code(cc::LENGTH_INVALID))
    } else if data.len() > max {
        Err(Answer::code(cc::LENGTH_EXCEEDED))
    } else {
        Ok(())
    }
}

/// Runs `command` for `caller`: privilege first, then the handler.
pub fn execute(
    command: Command,
    data: &[u8],
    caller: &Caller,
    state: &mut BmcState,
    node: &dyn Chassis,
) -> Answer {
    let allowed = match (command.privilege(), caller.privilege) {
        (None, _) => true,
        (Some(need), Some(have)) => have >= need,
        (Some(_), None) => false,
    };
    if !allowed {
        return Answer::code(cc::INSUFFICIENT_PRIVILEGE);
    }
    run(command, data, caller, state, node).unwrap_or_else(|a| a)
}

fn run(
    command: Command,
    data: &[u8],
    caller: &Caller,
    state: &mut BmcState,
    node: &dyn Chassis,
) -> Result<Answer, Answer> {
    match command {
        Command::GetDeviceId => get_device_id(data),
        Command::GetSystemGuid => length(data, 0, 0).map(|()| Answer::ok(state.guid.to_vec())),
        Command::GetChannelAuthCapabilities => get_channel_auth_caps(data),
        Command::GetChannelCipherSuites => get_channel_cipher_suites(data),
        Command::SetSessionPrivilegeLevel => {
            set_session_privilege(data, caller, &mut state.sessions)
        }
        Command::CloseSession => close_session(data, caller, &mut state.sessions),
        Command::GetSessionInfo => get_session_info(data, caller, &state.sessions),
        Command::GetChassisStatus => get_chassis_status(data, state, node),
        Command::ChassisControl => chassis_control(data, state, node),
        Command::SetSystemBootOptions => super::boot::set(data, state, node),
        Command::GetSystemBootOptions => super::boot::get(data, state, node),
        Command::GetSelInfo => get_sel_info(data),
    }
}

fn get_device_id(data: &[u8]) -> Result<Answer, Answer> {
    length(data, 0, 0)?;
    Ok(Answer::ok(vec![
        0x20, // device id
        0x01, // device revision, no SDRs
        0x01, // firmware major, normal operation
        0x00, // firmware minor (BCD)
        0x02, // IPMI version 2.0
        0x84, // chassis device | SEL device
        0x00, 0x00, 0x00, // manufacturer id (none registered)
        0x53, 0x48, // product id "HS"
    ]))
}

fn check_channel(byte: u8) -> Result<(), Answer> {
    match byte & 0x0F {
        0x0E | LAN_CHANNEL => Ok(()),
        _ => Err(Answer::code(cc::INVALID_DATA)),
    }
}

fn get_channel_auth_caps(data: &[u8]) -> Result<Answer, Answer> {
    length(data, 2, 2)?;
    check_channel(data[0])?;
    if !(1..=5).contains(&(data[1] & 0x0F)) {
        return Err(Answer::code(cc::INVALID_DATA));
    }
    let v2 = data[0] & 0x80 != 0;
    // No IPMI v1.5 authentication types; non-null user names; per-message
    // and user-level authentication enabled; Kg at its default.
    let (auth_types, extended) = if v2 { (0x80, 0x02) } else { (0x00, 0x00) };
    Ok(Answer::ok(vec![
        LAN_CHANNEL,
        auth_types,
        0x04,
        extended,
        0,
        0,
        0,
        0,
    ]))
}

fn get_channel_cipher_suites(data: &[u8]) -> Result<Answer, Answer> {
    length(data, 3, 3)?;
    check_channel(data[0])?;
    if data[1] > 0x01 {
        return Err(Answer::code(cc::INVALID_DATA)); // IPMI and SOL payloads only
    }
    let records = if data[2] & 0x80 != 0 {
        super::rakp::cipher_suite_records()
    } else {
        super::rakp::algorithm_list()
    };
    let index = usize::from(data[2] & 0x3F) * 16;
    let chunk = records.get(index..).unwrap_or(&[]);
    let mut out = vec![LAN_CHANNEL];
    out.extend_from_slice(&chunk[..chunk.len().min(16)]);
    Ok(Answer::ok(out))
}

fn set_session_privilege(
    data: &[u8],
    caller: &Caller,
    sessions: &mut SessionTable,
) -> Result<Answer, Answer> {
    length(data, 1, 1)?;
    let session = caller.session_id.and_then(|id| sessions.get_mut(id));
    let Some(session) = session else {
        return Err(Answer::code(cc::INSUFFICIENT_PRIVILEGE));
    };
    let requested = data[0] & 0x0F;
    if requested == 0 {
        return Ok(Answer::ok(vec![session.privilege as u8]));
    }
    let Some(level) = Privilege::from_nibble(requested) else {
        return Err(Answer::code(cc::PRIV_NOT_AVAILABLE));
    };
    if level > session.max_privilege {
        return Err(Answer::code(cc::PRIV_EXCEEDS_LIMIT));
    }
    session.privilege = level;
    Ok(Answer::ok(vec![level as u8]))
}

fn close_session(
    data: &[u8],
    caller: &Caller,
    sessions: &mut SessionTable,
) -> Result<Answer, Answer> {
    length(data, 4, 5)?;
    let id = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
    let target = if id != 0 {
        sessions
            .iter()
            .find(|s| s.bmc_id == id)
            .map(|s| s.bmc_id)
            .ok_or(Answer::code(cc::INVALID_SESSION_ID))?
    } else {
        let handle = *data.get(4).ok_or(Answer::code(cc::LENGTH_INVALID))?;
        sessions
            .by_handle(handle)
            .map(|s| s.bmc_id)
            .ok_or(Answer::code(cc::INVALID_SESSION_HANDLE))?
    };
    if Some(target) == caller.session_id {
        return Ok(Answer {
            close_session: true,
            ..Answer::ok(Vec::new())
        });
    }
    if caller.privilege < Some(Privilege::Administrator) {
        return Err(Answer::code(cc::INSUFFICIENT_PRIVILEGE));
    }
    sessions.close(target);
    Ok(Answer::ok(Vec::new()))
}

fn get_session_info(
    data: &[u8],
    caller: &Caller,
    sessions: &SessionTable,
) -> Result<Answer, Answer> {
    length(data, 1, 5)?;
    let found = match data[0] {
        0x00 => caller
            .session_id
            .and_then(|id| sessions.iter().find(|s| s.bmc_id == id)),
        0xFF => {
            length(data, 5, 5)?;
            let id = u32::from_le_bytes([data[1], data[2], data[3], data[4]]);
            sessions.iter().find(|s| s.bmc_id == id)
        }
        0xFE => {
            length(data, 2, 2)?;
            sessions.by_handle(data[1])
        }
        n if n <= 0x3F => sessions
            .iter()
            .filter(|s| s.is_active())
            .nth(usize::from(n) - 1),
        _ => return Err(Answer::code(cc::INVALID_DATA)),
    };
    let capacity = u8::try_from(sessions.capacity()).unwrap_or(0x3F) & 0x3F;
    let active = u8::try_from(sessions.active_count()).unwrap_or(0x3F) & 0x3F;
    let Some(s) = found.filter(|s| s.is_active()) else {
        return Ok(Answer::ok(vec![0, capacity, active]));
    };
    let mut out = vec![
        s.handle,
        capacity,
        active,
        0x02,
        s.privilege as u8,
        0x10 | LAN_CHANNEL,
    ];
    match s.peer {
        SocketAddr::V4(v4) => out.extend_from_slice(&v4.ip().octets()),
        SocketAddr::V6(_) => out.extend_from_slice(&[0; 4]),
    }
    out.extend_from_slice(&[0; 6]); // console MAC: not known over UDP
    out.extend_from_slice(&s.peer.port().to_le_bytes());
    Ok(Answer::ok(out))
}

fn get_chassis_status(data: &[u8], state: &BmcState, node: &dyn Chassis) -> Result<Answer, Answer> {
    length(data, 0, 0)?;
    let powered = u8::from(node.power_state().is_powered());
    // Restore policy 00b (stays off after AC loss): the simulated rack never
    // loses AC, so that is what the node would do.
    let last_event = if state.ipmi_boot_mark == Some(node.boots()) {
        0x10
    } else {
        0x00
    };
    Ok(Answer::ok(vec![powered, last_event, 0x00]))
}

fn chassis_control(
    data: &[u8],
    state: &mut BmcState,
    node: &dyn Chassis,
) -> Result<Answer, Answer> {
    length(data, 1, 1)?;
    let action = chassis::control_action(data[0]).ok_or(Answer::code(cc::INVALID_DATA))?;
    match node.chassis_control(action) {
        Ok(CommandOutcome::Applied) => {
            if chassis::starts_boot(action) {
                state.ipmi_boot_mark = Some(node.boots());
            }
            Ok(Answer::ok(Vec::new()))
        }
        Ok(CommandOutcome::AlreadyInState | CommandOutcome::Ignored) => Ok(Answer::ok(Vec::new())),
        Err(_) => Err(Answer::code(cc::NOT_IN_PRESENT_STATE)),
    }
}

fn get_sel_info(data: &[u8]) -> Result<Answer, Answer> {
    length(data, 0, 0)?;
    let mut out = vec![0x51]; // SEL version 1.5 (also used by IPMI 2.0)
    out.extend_from_slice(&0u16.to_le_bytes()); // entries
    out.extend_from_slice(&0u16.to_le_bytes()); // free space: the SEL keeps nothing
    out.extend_from_slice(&u32::MAX.to_le_bytes()); // last addition: none
    out.extend_from_slice(&u32::MAX.to_le_bytes()); // last erase: none
    out.push(0x00); // no optional SEL commands
    Ok(Answer::ok(out))
}
