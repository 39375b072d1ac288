//! The parts of the Redfish data model the driver reads and writes, as small
//! pure functions over JSON: links, power states, `ResetType` choice, boot
//! override names and error bodies. Unit-tested without a BMC.

use reqwest::StatusCode;
use serde_json::Value;

use crate::{BootDevice, DriverError, PowerAction, PowerState};

/// The service root path.
pub(crate) const SERVICE_ROOT: &str = "/redfish/v1/";

/// The `@odata.id` at `pointer` (a JSON pointer to the link object).
pub(crate) fn link(body: &Value, pointer: &str) -> Option<String> {
    body.pointer(pointer)?
        .get("@odata.id")?
        .as_str()
        .map(str::to_owned)
}

/// The session collection of a service root (`Links.Sessions`).
pub(crate) fn sessions_path(root: &Value) -> Option<String> {
    link(root, "/Links/Sessions")
}

/// The `@odata.etag` property, used when the ETag header is absent.
pub(crate) fn odata_etag(body: &Value) -> Option<String> {
    body.get("@odata.etag")?.as_str().map(str::to_owned)
}

/// The member links of a collection.
pub(crate) fn members(collection: &Value) -> Vec<String> {
    collection
        .get("Members")
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|m| m.get("@odata.id")?.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// A string property, or an invalid-response error naming it.
pub(crate) fn required_str<'a>(body: &'a Value, name: &str) -> Result<&'a str, DriverError> {
    body.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| DriverError::InvalidResponse(format!("ComputerSystem has no {name}")))
}

/// A `ComputerSystem`'s `PowerState`. `Paused` counts as on: the server has power.
pub(crate) fn power_state(system: &Value) -> Result<PowerState, DriverError> {
    match required_str(system, "PowerState")? {
        "On" | "Paused" => Ok(PowerState::On),
        "Off" => Ok(PowerState::Off),
        "PoweringOn" => Ok(PowerState::PoweringOn),
        "PoweringOff" => Ok(PowerState::PoweringOff),
        other => Err(DriverError::InvalidResponse(format!(
            "unknown PowerState {other:?}"
        ))),
    }
}

/// The `ResetType` values to try for an action, best first.
fn reset_candidates(action: PowerAction) -> &'static [&'static str] {
    match action {
        PowerAction::On => &["On", "ForceOn"],
        PowerAction::Off => &["ForceOff"],
        PowerAction::SoftOff => &["GracefulShutdown"],
        PowerAction::Reboot => &["ForceRestart", "PowerCycle"],
        PowerAction::SoftReboot => &["GracefulRestart"],
        PowerAction::PowerCycle => &["PowerCycle", "ForceRestart"],
    }
}

/// The reset types every Redfish service is assumed to accept when it does
/// not list `ResetType@Redfish.AllowableValues` (Ironic's assumption too).
const DEFAULT_RESET_TYPES: [&str; 6] = [
    "On",
    "ForceOff",
    "GracefulShutdown",
    "ForceRestart",
    "GracefulRestart",
    "Nmi",
];

/// The `ResetType` to send for `action`, chosen from what the BMC allows.
pub(crate) fn choose_reset_type<'a>(action: PowerAction, allowed: &[String]) -> Option<&'a str> {
    reset_candidates(action)
        .iter()
        .find(|c| allowed.iter().any(|a| a == *c))
        .copied()
}

/// True when the BMC allows an NMI.
pub(crate) fn allows_nmi(allowed: &[String]) -> bool {
    allowed.iter().any(|a| a == "Nmi")
}

/// The allowable values listed under `property@Redfish.AllowableValues` in `body`.
pub(crate) fn allowable(body: &Value, property: &str) -> Option<Vec<String>> {
    let values = body
        .get(format!("{property}@Redfish.AllowableValues"))?
        .as_array()?;
    Some(
        values
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
    )
}

/// The allowable values of an `ActionInfo` resource's parameter.
pub(crate) fn action_info_allowable(info: &Value, parameter: &str) -> Option<Vec<String>> {
    info.get("Parameters")?
        .as_array()?
        .iter()
        .find(|p| p.get("Name").and_then(Value::as_str) == Some(parameter))?
        .get("AllowableValues")?
        .as_array()
        .map(|values| {
            values
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
}

/// The default reset types, owned.
pub(crate) fn default_reset_types() -> Vec<String> {
    DEFAULT_RESET_TYPES
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
}

/// Redfish `BootSourceOverrideTarget` for a device.
pub(crate) fn boot_target(device: BootDevice) -> &'static str {
    match device {
        BootDevice::Pxe => "Pxe",
        BootDevice::Disk => "Hdd",
        BootDevice::Cdrom => "Cd",
        BootDevice::Bios => "BiosSetup",
    }
}

/// The device for a `BootSourceOverrideTarget`; `Ok(None)` for `None`.
pub(crate) fn boot_device(target: &str) -> Result<Option<BootDevice>, DriverError> {
    match target {
        "None" => Ok(None),
        "Pxe" => Ok(Some(BootDevice::Pxe)),
        "Hdd" => Ok(Some(BootDevice::Disk)),
        "Cd" => Ok(Some(BootDevice::Cdrom)),
        "BiosSetup" => Ok(Some(BootDevice::Bios)),
        other => Err(DriverError::Unsupported(format!(
            "boot override target {other:?}"
        ))),
    }
}

/// The `MessageId`s of a Redfish error body (`error.@Message.ExtendedInfo`).
pub(crate) fn message_ids(body: &Value) -> Vec<String> {
    body.pointer("/error/@Message.ExtendedInfo")
        .and_then(Value::as_array)
        .map(|infos| {
            infos
                .iter()
                .filter_map(|i| i.get("MessageId")?.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// True when the body carries a message id ending in `name`
/// (`Base.1.8.ActionParameterValueConflict` matches `ActionParameterValueConflict`).
pub(crate) fn has_message(body: &Value, name: &str) -> bool {
    message_ids(body)
        .iter()
        .any(|id| id.rsplit('.').next() == Some(name))
}

/// A one-line message for an error answer: the Redfish error message and its
/// extended messages, or the HTTP reason.
pub(crate) fn error_message(body: &Value, status: StatusCode) -> String {
    let mut parts: Vec<String> = Vec::new();
    if let Some(message) = body.pointer("/error/message").and_then(Value::as_str) {
        parts.push(message.to_owned());
    }
    if let Some(infos) = body
        .pointer("/error/@Message.ExtendedInfo")
        .and_then(Value::as_array)
    {
        parts.extend(infos.iter().filter_map(|i| {
            let text = i.get("Message").or_else(|| i.get("MessageId"))?;
            text.as_str().map(str::to_owned)
        }));
    }
    if let Some(text) = body.as_str() {
        parts.push(text.to_owned());
    }
    if parts.is_empty() {
        parts.push(status.canonical_reason().unwrap_or("error").to_owned());
    }
    format!("HTTP {}: {}", status.as_u16(), parts.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn reset_type_follows_allowable_values() {
        let only_force = strings(&["ForceOn", "ForceOff", "ForceRestart"]);
        assert_eq!(
            choose_reset_type(PowerAction::On, &only_force),
            Some("ForceOn")
        );
        assert_eq!(
            choose_reset_type(PowerAction::PowerCycle, &only_force),
            Some("ForceRestart")
        );
        assert_eq!(choose_reset_type(PowerAction::SoftOff, &only_force), None);
        let full = strings(&["On", "ForceOn", "PowerCycle", "ForceRestart"]);
        assert_eq!(choose_reset_type(PowerAction::On, &full), Some("On"));
        assert_eq!(
            choose_reset_type(PowerAction::PowerCycle, &full),
            Some("PowerCycle")
        );
    }

    /// The `ResetType` a BMC listing every value gets for `action`.
    fn preferred(action: PowerAction) -> &'static str {
        match action {
            PowerAction::On => "On",
            PowerAction::Off => "ForceOff",
            PowerAction::SoftOff => "GracefulShutdown",
            PowerAction::Reboot => "ForceRestart",
            PowerAction::SoftReboot => "GracefulRestart",
            PowerAction::PowerCycle => "PowerCycle",
        }
    }

    #[test]
    fn every_action_has_its_reset_type_and_never_a_harder_or_softer_one() {
        let every = strings(&[
            "On",
            "ForceOn",
            "ForceOff",
            "GracefulShutdown",
            "GracefulRestart",
            "ForceRestart",
            "PowerCycle",
            "Nmi",
            "PushPowerButton",
        ]);
        for action in PowerAction::ALL {
            assert_eq!(
                choose_reset_type(action, &every),
                Some(preferred(action)),
                "{action:?}"
            );
            // Offered alone, the preferred type is still chosen.
            let alone = strings(&[preferred(action)]);
            assert_eq!(
                choose_reset_type(action, &alone),
                Some(preferred(action)),
                "{action:?}"
            );
        }
        // A graceful request never becomes a hard one, nor the reverse.
        let hard = strings(&["On", "ForceOff", "ForceRestart", "PowerCycle", "Nmi"]);
        assert_eq!(choose_reset_type(PowerAction::SoftOff, &hard), None);
        assert_eq!(choose_reset_type(PowerAction::SoftReboot, &hard), None);
        let soft = strings(&[
            "On",
            "GracefulShutdown",
            "GracefulRestart",
            "PushPowerButton",
        ]);
        assert_eq!(choose_reset_type(PowerAction::Off, &soft), None);
        assert_eq!(choose_reset_type(PowerAction::Reboot, &soft), None);
        assert_eq!(choose_reset_type(PowerAction::PowerCycle, &soft), None);
        // Restarts stand in for each other: both are a hard restart.
        let no_cycle = strings(&["ForceRestart"]);
        assert_eq!(
            choose_reset_type(PowerAction::PowerCycle, &no_cycle),
            Some("ForceRestart")
        );
        let only_cycle = strings(&["PowerCycle"]);
        assert_eq!(
            choose_reset_type(PowerAction::Reboot, &only_cycle),
            Some("PowerCycle")
        );
        assert_eq!(
            choose_reset_type(PowerAction::On, &strings(&["ForceOn"])),
            Some("ForceOn")
        );
        assert!(PowerAction::ALL.into_iter().all(|a| choose_reset_type(
            a,
            &strings(&["Nmi", "PushPowerButton"])
        )
        .is_none()));
    }

    #[test]
    fn power_states_map_and_unknown_is_invalid() {
        let state = |s: &str| power_state(&json!({"PowerState": s}));
        assert_eq!(state("PoweringOn"), Ok(PowerState::PoweringOn));
        assert_eq!(state("Off"), Ok(PowerState::Off));
        assert!(matches!(
            state("Sideways"),
            Err(DriverError::InvalidResponse(_))
        ));
        assert!(power_state(&json!({})).is_err());
    }

    #[test]
    fn error_bodies_give_message_ids_and_text() {
        let body = json!({"error": {"code": "Base.1.8.GeneralError", "message": "failed",
            "@Message.ExtendedInfo": [{"MessageId": "Base.1.8.ActionParameterValueConflict",
                                       "Message": "conflict"}]}});
        assert!(has_message(&body, "ActionParameterValueConflict"));
        assert!(!has_message(&body, "Conflict"));
        let text = error_message(&body, StatusCode::CONFLICT);
        assert_eq!(text, "HTTP 409: failed; conflict");
    }

    #[test]
    fn boot_targets_round_trip() {
        for device in BootDevice::ALL {
            assert_eq!(boot_device(boot_target(device)), Ok(Some(device)));
        }
        assert_eq!(boot_device("None"), Ok(None));
        assert!(boot_device("UefiShell").is_err());
    }
}
