//! Entry points for the fuzz targets in `fuzz/` and their stable
//! equivalents in the test suite: not part of the drivers' API.
//!
//! The IPMI driver's own decoding of what a BMC sends is private (the
//! RMCP+ session layer below it is ipmi-rs's): [`ipmi_answer`] runs those
//! decoders on arbitrary bytes exactly as the driver does. The Redfish
//! driver needs no such door: its fuzz target drives the public
//! [`crate::RedfishDriver`] against a scripted BMC.

use crate::ipmi::commands::{self, Raw};
use crate::ipmi::{preflight, relay, session};
use crate::{BootDevice, PowerAction};

/// The requests whose answers the driver decodes, in the order the first
/// byte of [`ipmi_answer`]'s input picks them.
fn requests() -> Vec<Raw> {
    let mut requests = vec![
        commands::get_chassis_status(),
        commands::get_boot_flags(),
        commands::get_session_info(),
        commands::set_privilege_admin(),
        commands::nmi(),
        commands::keep_boot_flags_valid(),
        commands::close_session(1),
    ];
    requests.extend(
        PowerAction::ALL
            .into_iter()
            .filter_map(commands::power_control),
    );
    requests.extend(
        BootDevice::ALL
            .into_iter()
            .map(|device| commands::set_boot_flags(device, true, false)),
    );
    requests
}

/// Decodes `input` as the IPMI driver decodes a BMC's bytes, and returns
/// what it made of them. The whole input is read as a datagram (its RMCP
/// kind, as the session relay pairs answers with requests, and as the
/// answer to the pre-session Get Channel Authentication Capabilities);
/// then its first byte picks a request and the rest is read as that
/// request's answer (completion code, then data) — Get Chassis Status,
/// Get System Boot Options and Get Session Info answers are parsed further,
/// Set Session Privilege Level's completion codes mapped as at login.
pub fn ipmi_answer(input: &[u8]) -> String {
    let kind = relay::Kind::of(input);
    let preflight = preflight::parse(input);
    let Some((selector, answer)) = input.split_first() else {
        return format!("kind {kind:?}, pre-session {preflight:?}, no answer");
    };
    let requests = requests();
    let request = &requests[usize::from(*selector) % requests.len()];
    let decoded = match session::answer_data(request, answer) {
        Err(error) => format!("{error} (transient: {})", error.is_transient()),
        Ok(data) => match (request.netfn, request.cmd) {
            (commands::NETFN_CHASSIS, 0x01) => {
                format!("{:?}", commands::parse_chassis_status(&data))
            }
            (commands::NETFN_CHASSIS, 0x09) => format!("{:?}", commands::parse_boot_flags(&data)),
            (commands::NETFN_APP, 0x3D) => format!("{:?}", commands::parse_session_info(&data)),
            _ => format!("accepted, {} bytes of data", data.len()),
        },
    };
    let privilege = answer
        .first()
        .filter(|code| **code != 0)
        .map(|code| commands::privilege_error(*code).to_string());
    format!("kind {kind:?}, pre-session {preflight:?}, answer {decoded}, privilege {privilege:?}")
}
