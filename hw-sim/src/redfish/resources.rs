//! JSON representations of the Redfish resources a node serves, shaped by the
//! DMTF schemas (versions named in `@odata.type` match `$metadata`).

use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::tasks::Task;
use super::Bmc;
use crate::model::{
    BootEnabled, BootMode, BootPatchQuirk, BootTarget, NodeStatus, PowerAction, PowerState, Quirks,
};

/// The Redfish protocol version claimed.
pub(crate) const REDFISH_VERSION: &str = "1.21.0";

pub(crate) const ROOT: &str = "/redfish/v1";
pub(crate) const SYSTEMS: &str = "/redfish/v1/Systems";
pub(crate) const SYSTEM: &str = "/redfish/v1/Systems/1";
pub(crate) const RESET_TARGET: &str = "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset";
pub(crate) const RESET_INFO: &str = "/redfish/v1/Systems/1/ResetActionInfo";
pub(crate) const CHASSIS_COLLECTION: &str = "/redfish/v1/Chassis";
pub(crate) const CHASSIS: &str = "/redfish/v1/Chassis/1";
pub(crate) const MANAGERS: &str = "/redfish/v1/Managers";
pub(crate) const MANAGER: &str = "/redfish/v1/Managers/1";
pub(crate) const SESSION_SERVICE: &str = "/redfish/v1/SessionService";
pub(crate) const SESSIONS: &str = "/redfish/v1/SessionService/Sessions";
pub(crate) const ACCOUNT_SERVICE: &str = "/redfish/v1/AccountService";
pub(crate) const ACCOUNTS: &str = "/redfish/v1/AccountService/Accounts";
pub(crate) const ACCOUNT: &str = "/redfish/v1/AccountService/Accounts/1";
pub(crate) const ROLES: &str = "/redfish/v1/AccountService/Roles";
pub(crate) const TASK_SERVICE: &str = "/redfish/v1/TaskService";
pub(crate) const TASKS: &str = "/redfish/v1/TaskService/Tasks";
pub(crate) const TASK_MONITORS: &str = "/redfish/v1/TaskService/TaskMonitors";

fn link(path: &str) -> Value {
    json!({ "@odata.id": path })
}

fn context(type_name: &str) -> String {
    format!("/redfish/v1/$metadata#{type_name}")
}

fn status_ok() -> Value {
    json!({ "State": "Enabled", "Health": "OK" })
}

/// The Redfish `PowerState` word for a model state.
pub(crate) fn power_state(state: PowerState) -> &'static str {
    match state {
        PowerState::Off => "Off",
        PowerState::PoweringOn => "PoweringOn",
        PowerState::On => "On",
        PowerState::ShuttingDown => "PoweringOff",
    }
}

/// `GET /redfish`: the version document.
pub(crate) fn versions() -> Value {
    json!({ "v1": "/redfish/v1/" })
}

/// `GET /redfish/v1`: the service root.
pub(crate) fn service_root(bmc: &Bmc) -> Value {
    json!({
        "@odata.type": "#ServiceRoot.v1_21_0.ServiceRoot",
        "@odata.id": ROOT,
        "@odata.context": context("ServiceRoot.ServiceRoot"),
        "Id": "RootService",
        "Name": "Root Service",
        "RedfishVersion": REDFISH_VERSION,
        "UUID": bmc.node.uuid().to_string(),
        "Vendor": "baton",
        "Product": "baton-hwsim simulated BMC",
        "ProtocolFeaturesSupported": {
            "ExcerptQuery": false,
            "ExpandQuery": { "ExpandAll": false, "Levels": false, "Links": false, "NoLinks": false },
            "FilterQuery": false,
            "OnlyMemberQuery": false,
            "SelectQuery": false,
            "TopSkipQuery": true,
        },
        "Systems": link(SYSTEMS),
        "Chassis": link(CHASSIS_COLLECTION),
        "Managers": link(MANAGERS),
        "SessionService": link(SESSION_SERVICE),
        "AccountService": link(ACCOUNT_SERVICE),
        "Tasks": link(TASK_SERVICE),
        "Links": { "Sessions": link(SESSIONS) },
    })
}

/// `GET /redfish/v1/odata`: the OData service document.
pub(crate) fn odata_service() -> Value {
    let entry = |name: &str, url: &str| json!({ "name": name, "kind": "Singleton", "url": url });
    json!({
        "@odata.context": "/redfish/v1/$metadata",
        "value": [
            entry("Service", "/redfish/v1/"),
            entry("Systems", SYSTEMS),
            entry("Chassis", CHASSIS_COLLECTION),
            entry("Managers", MANAGERS),
            entry("SessionService", SESSION_SERVICE),
            entry("AccountService", ACCOUNT_SERVICE),
            entry("TaskService", TASK_SERVICE),
            entry("Sessions", SESSIONS),
        ],
    })
}

/// A resource collection.
pub(crate) fn collection(kind: &str, name: &str, path: &str, members: &[String]) -> Value {
    let members: Vec<Value> = members.iter().map(|m| link(m)).collect();
    json!({
        "@odata.type": format!("#{kind}.{kind}"),
        "@odata.id": path,
        "@odata.context": context(&format!("{kind}.{kind}")),
        "Name": name,
        "Members@odata.count": members.len(),
        "Members": members,
    })
}

/// `GET /redfish/v1/Systems/1`: the computer system.
pub(crate) fn system(bmc: &Bmc) -> Value {
    system_of(bmc, &bmc.node.status())
}

/// The `ResetType` values a node offers, in the schema's order.
fn allowed_reset_types(quirks: &Quirks) -> Vec<&'static str> {
    PowerAction::ALL
        .into_iter()
        .filter(|a| quirks.allows(*a))
        .map(PowerAction::as_str)
        .collect()
}

/// The `BootSourceOverrideEnabled` values a node offers (no `Continuous`
/// under the `no_continuous` boot patch quirk).
pub(crate) fn allowed_boot_enabled(quirks: &Quirks) -> impl Iterator<Item = BootEnabled> + '_ {
    BootEnabled::ALL.into_iter().filter(|e| {
        *e != BootEnabled::Continuous || !quirks.boot_patch(BootPatchQuirk::NoContinuous)
    })
}

/// The `ComputerSystem` of a node whose status was taken as `status`.
pub(crate) fn system_of(bmc: &Bmc, status: &NodeStatus) -> Value {
    let node = &bmc.node;
    let boot = status.boot_override;
    let allowed = allowed_reset_types(&status.quirks);
    let enabled_values: Vec<&str> = allowed_boot_enabled(&status.quirks)
        .map(BootEnabled::as_str)
        .collect();
    json!({
        "@odata.type": "#ComputerSystem.v1_22_0.ComputerSystem",
        "@odata.id": SYSTEM,
        "@odata.context": context("ComputerSystem.ComputerSystem"),
        "Id": "1",
        "Name": node.name(),
        "SystemType": "Physical",
        "Manufacturer": "baton",
        "Model": "hwsim",
        "SerialNumber": format!("SIM{:06}", node.index()),
        "UUID": node.uuid().to_string(),
        "HostName": node.name(),
        "PowerState": power_state(status.reported_power_state),
        "Status": status_ok(),
        "ProcessorSummary": { "Count": 2, "Model": "Simulated CPU" },
        "MemorySummary": { "TotalSystemMemoryGiB": 256 },
        "Boot": {
            "BootSourceOverrideEnabled": boot.enabled.as_str(),
            "BootSourceOverrideEnabled@Redfish.AllowableValues": enabled_values,
            "BootSourceOverrideTarget": boot.target.as_str(),
            "BootSourceOverrideTarget@Redfish.AllowableValues":
                BootTarget::ALL.map(BootTarget::as_str),
            "BootSourceOverrideMode": boot.mode.as_str(),
            "BootSourceOverrideMode@Redfish.AllowableValues": BootMode::ALL.map(BootMode::as_str),
        },
        "Actions": {
            "#ComputerSystem.Reset": {
                "target": RESET_TARGET,
                "ResetType@Redfish.AllowableValues": allowed,
                "@Redfish.ActionInfo": RESET_INFO,
            }
        },
        "Links": {
            "Chassis": [link(CHASSIS)],
            "ManagedBy": [link(MANAGER)],
        },
    })
}

/// `GET /redfish/v1/Systems/1/ResetActionInfo`.
pub(crate) fn reset_action_info(bmc: &Bmc) -> Value {
    let allowed = allowed_reset_types(&bmc.node.quirks());
    json!({
        "@odata.type": "#ActionInfo.v1_4_0.ActionInfo",
        "@odata.id": RESET_INFO,
        "@odata.context": context("ActionInfo.ActionInfo"),
        "Id": "ResetActionInfo",
        "Name": "Reset Action Info",
        "Parameters": [{
            "Name": "ResetType",
            "Required": true,
            "DataType": "String",
            "AllowableValues": allowed,
        }],
    })
}

/// `GET /redfish/v1/Chassis/1`.
pub(crate) fn chassis(bmc: &Bmc) -> Value {
    json!({
        "@odata.type": "#Chassis.v1_25_0.Chassis",
        "@odata.id": CHASSIS,
        "@odata.context": context("Chassis.Chassis"),
        "Id": "1",
        "Name": format!("{} chassis", bmc.node.name()),
        "ChassisType": "RackMount",
        "Manufacturer": "baton",
        "Model": "hwsim",
        "PowerState": power_state(bmc.node.reported_power_state()),
        "Status": status_ok(),
        "Links": {
            "ComputerSystems": [link(SYSTEM)],
            "ManagedBy": [link(MANAGER)],
        },
    })
}

/// `GET /redfish/v1/Managers/1`.
pub(crate) fn manager(bmc: &Bmc) -> Value {
    json!({
        "@odata.type": "#Manager.v1_19_0.Manager",
        "@odata.id": MANAGER,
        "@odata.context": context("Manager.Manager"),
        "Id": "1",
        "Name": "Simulated BMC",
        "ManagerType": "BMC",
        "FirmwareVersion": concat!("hwsim-", env!("CARGO_PKG_VERSION")),
        "UUID": bmc.node.uuid().to_string(),
        "PowerState": "On",
        "Status": status_ok(),
        "Links": {
            "ManagerForServers": [link(SYSTEM)],
            "ManagerForChassis": [link(CHASSIS)],
        },
    })
}

/// `GET /redfish/v1/SessionService`.
pub(crate) fn session_service(bmc: &Bmc) -> Value {
    json!({
        "@odata.type": "#SessionService.v1_1_9.SessionService",
        "@odata.id": SESSION_SERVICE,
        "@odata.context": context("SessionService.SessionService"),
        "Id": "SessionService",
        "Name": "Session Service",
        "ServiceEnabled": true,
        "SessionTimeout": bmc.sessions.timeout().as_secs(),
        "Status": status_ok(),
        "Sessions": link(SESSIONS),
    })
}

/// `GET /redfish/v1/SessionService/Sessions/{id}`.
pub(crate) fn session(id: &str, username: &str) -> Value {
    json!({
        "@odata.type": "#Session.v1_7_0.Session",
        "@odata.id": format!("{SESSIONS}/{id}"),
        "@odata.context": context("Session.Session"),
        "Id": id,
        "Name": "User Session",
        "UserName": username,
    })
}

/// The predefined Redfish roles and their privileges (DSP0266 "Roles").
pub(crate) const ROLE_PRIVILEGES: [(&str, &[&str]); 3] = [
    (
        "Administrator",
        &[
            "Login",
            "ConfigureManager",
            "ConfigureUsers",
            "ConfigureSelf",
            "ConfigureComponents",
        ],
    ),
    (
        "Operator",
        &["Login", "ConfigureSelf", "ConfigureComponents"],
    ),
    ("ReadOnly", &["Login", "ConfigureSelf"]),
];

/// `GET /redfish/v1/AccountService`. Accounts are read-only here: the one
/// configured BMC user, with the Administrator role.
pub(crate) fn account_service() -> Value {
    json!({
        "@odata.type": "#AccountService.v1_18_1.AccountService",
        "@odata.id": ACCOUNT_SERVICE,
        "@odata.context": context("AccountService.AccountService"),
        "Id": "AccountService",
        "Name": "Account Service",
        "ServiceEnabled": true,
        "Status": status_ok(),
        "MinPasswordLength": 1,
        "MaxPasswordLength": 64,
        "AccountLockoutThreshold": 0,
        "AccountLockoutDuration": 0,
        "LocalAccountAuth": "Enabled",
        "Accounts": link(ACCOUNTS),
        "Roles": link(ROLES),
    })
}

/// `GET /redfish/v1/AccountService/Accounts/{id}`: only account 1 exists.
pub(crate) fn account(bmc: &Bmc, id: &str) -> Option<Value> {
    (id == "1").then(|| {
        json!({
            "@odata.type": "#ManagerAccount.v1_14_1.ManagerAccount",
            "@odata.id": ACCOUNT,
            "@odata.context": context("ManagerAccount.ManagerAccount"),
            "Id": "1",
            "Name": "User Account",
            "UserName": bmc.node.credentials().username,
            "Password": Value::Null,
            "RoleId": "Administrator",
            "Enabled": true,
            "Locked": false,
            "AccountTypes": ["Redfish", "IPMI"],
            "Links": { "Role": link(&format!("{ROLES}/Administrator")) },
        })
    })
}

/// `GET /redfish/v1/AccountService/Roles/{id}`: the predefined roles.
pub(crate) fn role(id: &str) -> Option<Value> {
    let (name, privileges) = ROLE_PRIVILEGES.iter().find(|(name, _)| *name == id)?;
    Some(json!({
        "@odata.type": "#Role.v1_3_3.Role",
        "@odata.id": format!("{ROLES}/{name}"),
        "@odata.context": context("Role.Role"),
        "Id": name,
        "Name": format!("{name} Role"),
        "RoleId": name,
        "IsPredefined": true,
        "AssignedPrivileges": privileges,
    }))
}

/// `GET /redfish/v1/TaskService`.
pub(crate) fn task_service() -> Value {
    json!({
        "@odata.type": "#TaskService.v1_2_0.TaskService",
        "@odata.id": TASK_SERVICE,
        "@odata.context": context("TaskService.TaskService"),
        "Id": "TaskService",
        "Name": "Task Service",
        "ServiceEnabled": true,
        "CompletedTaskOverWritePolicy": "Oldest",
        "LifeCycleEventOnTaskStateChange": false,
        "Status": status_ok(),
        "Tasks": link(TASKS),
    })
}

fn rfc3339(t: std::time::SystemTime) -> String {
    OffsetDateTime::from(t).format(&Rfc3339).unwrap_or_default()
}

/// `GET /redfish/v1/TaskService/Tasks/{id}`.
pub(crate) fn task(task: &Task) -> Value {
    let mut body = json!({
        "@odata.type": "#Task.v1_7_0.Task",
        "@odata.id": format!("{TASKS}/{}", task.id),
        "@odata.context": context("Task.Task"),
        "Id": task.id,
        "Name": format!("ComputerSystem.Reset {}", task.action),
        "TaskState": if task.ended.is_some() { "Completed" } else { "Running" },
        "TaskStatus": "OK",
        "StartTime": rfc3339(task.started),
        "TaskMonitor": format!("{TASK_MONITORS}/{}", task.id),
        "PercentComplete": if task.ended.is_some() { 100 } else { 50 },
        "Messages": [],
    });
    if let (Some(ended), Some(obj)) = (task.ended, body.as_object_mut()) {
        obj.insert("EndTime".into(), Value::String(rfc3339(ended)));
    }
    body
}
