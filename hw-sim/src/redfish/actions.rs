//! The Redfish operations that change something: `ComputerSystem.Reset`, the
//! boot override `PATCH` (with `If-Match`), session create/delete, and the
//! task monitors of 202 replies. Each parses its body strictly and answers
//! what is wrong with a Base registry message.

// The error side of these results is the finished reply, built at most once
// per request; boxing it would only add an allocation.
#![allow(clippy::result_large_err)]

use bytes::Bytes;
use http::header::{HeaderValue, IF_MATCH, LOCATION, RETRY_AFTER};
use http::{HeaderMap, StatusCode};
use serde_json::{Map, Value};

use super::resources::{self as res, SESSIONS, TASK_MONITORS};
use super::tasks::Task;
use super::{errors, reply, Bmc, Reply};
use crate::model::{
    AlreadyInStateReply, BootEnabled, BootMode, BootOverride, BootPatchQuirk, BootTarget,
    CommandOutcome, EtagQuirk, NodeStatus, PowerAction, PowerState, Quirks, ResetReply,
};

const RESET: &str = "ComputerSystem.Reset";

/// Seconds a client should wait between task monitor polls.
const TASK_RETRY_AFTER: &str = "1";

fn parse_object(body: &Bytes) -> Result<Map<String, Value>, Reply> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(errors::malformed_body()),
    }
}

/// `POST .../Actions/ComputerSystem.Reset` with `{"ResetType": "..."}`.
pub(crate) fn reset(bmc: &Bmc, body: &Bytes) -> Reply {
    let mut params = match parse_object(body) {
        Ok(params) => params,
        Err(reply) => return reply,
    };
    let Some(value) = params.remove("ResetType") else {
        return errors::action_parameter_missing(RESET, "ResetType");
    };
    if let Some(unknown) = params.keys().next() {
        return errors::action_parameter_unknown(RESET, unknown);
    }
    let Value::String(name) = value else {
        return errors::action_parameter_type(&value.to_string(), "ResetType", RESET);
    };
    let quirks = bmc.node.quirks();
    let action = match PowerAction::parse(&name) {
        Some(action) if quirks.allows(action) => action,
        _ => return errors::action_parameter_not_in_list(&name, "ResetType", RESET),
    };
    match bmc.node.power_command(action) {
        Ok(CommandOutcome::Applied | CommandOutcome::Ignored) => accepted(bmc, action),
        Ok(CommandOutcome::AlreadyInState) => already(bmc, action, quirks.already_in_state),
        Err(refused) => errors::action_parameter_conflict(
            "ResetType",
            &name,
            &format!("the system is {}", res::power_state(refused.state)),
        ),
    }
}

fn accepted(bmc: &Bmc, action: PowerAction) -> Reply {
    match bmc.node.quirks().reset_reply {
        ResetReply::NoContent => reply::empty(StatusCode::NO_CONTENT),
        ResetReply::Task => {
            let id = bmc.tasks.create(action);
            let reply = match task(bmc, &id) {
                Some(t) => reply::json(StatusCode::ACCEPTED, &res::task(&t)),
                None => reply::empty(StatusCode::ACCEPTED),
            };
            with_task_headers(reply, &id)
        }
    }
}

fn already(bmc: &Bmc, action: PowerAction, answer: AlreadyInStateReply) -> Reply {
    let state = res::power_state(bmc.node.reported_power_state());
    let what = format!("the system is already {state} for ResetType {action}");
    match answer {
        AlreadyInStateReply::Ok => accepted(bmc, action),
        AlreadyInStateReply::Conflict => errors::no_operation(StatusCode::CONFLICT, &what),
        AlreadyInStateReply::BadRequest => errors::no_operation(StatusCode::BAD_REQUEST, &what),
    }
}

/// Task `id`, completed once the node's power has settled.
pub(crate) fn task(bmc: &Bmc, id: &str) -> Option<Task> {
    let settled = matches!(bmc.node.power_state(), PowerState::On | PowerState::Off);
    bmc.tasks.get(id, settled)
}

/// `GET .../TaskMonitors/{id}`: 202 while running, 204 when done.
pub(crate) fn task_monitor(bmc: &Bmc, id: &str) -> Reply {
    match task(bmc, id) {
        None => errors::resource_not_found("TaskMonitor", id),
        Some(t) if t.ended.is_some() => reply::empty(StatusCode::NO_CONTENT),
        Some(t) => with_task_headers(reply::json(StatusCode::ACCEPTED, &res::task(&t)), &t.id),
    }
}

fn with_task_headers(mut reply: Reply, id: &str) -> Reply {
    let headers = reply.headers_mut();
    if let Ok(location) = HeaderValue::from_str(&format!("{TASK_MONITORS}/{id}")) {
        headers.insert(LOCATION, location);
    }
    headers.insert(RETRY_AFTER, HeaderValue::from_static(TASK_RETRY_AFTER));
    reply
}

/// `PATCH /redfish/v1/Systems/1`: only the `Boot` override properties are
/// writable; `If-Match` must carry the current `ETag` (or `*`). The ETag
/// check and the write are one step on the node, so of two clients patching
/// with the same ETag only the first wins; the other gets 412 — unless the
/// node's `racy` ETag quirk splits them, as bmcweb does. The node's boot
/// patch quirks add their refusals.
pub(crate) async fn patch_system(bmc: &Bmc, headers: &HeaderMap, body: &Bytes) -> Reply {
    let patch = match parse_object(body) {
        Ok(patch) => patch,
        Err(reply) => return reply,
    };
    let quirks = bmc.node.quirks();
    if quirks.etag(EtagQuirk::IfMatchRequired) && !headers.contains_key(IF_MATCH) {
        return errors::precondition_required();
    }
    if quirks.boot_patch(BootPatchQuirk::RefuseInPost)
        && bmc.node.power_state() == PowerState::PoweringOn
    {
        return errors::unable_during_post();
    }
    let outcome = if quirks.etag(EtagQuirk::Racy) {
        racy_patch(bmc, headers, &patch).await
    } else {
        bmc.node.update_boot_override(|status| {
            let current = res::system_of(bmc, status);
            match patched_boot(&current, status, headers, &patch) {
                Ok(boot) => (Some(boot), Ok(())),
                Err(reply) => (None, Err(reply)),
            }
        })
    };
    match outcome {
        Ok(()) => reply::resource(
            &res::system(bmc),
            "GET, HEAD, PATCH",
            reply::TagStyle::of(&quirks),
        ),
        Err(reply) => reply,
    }
}

/// How long a `racy` BMC takes between checking `If-Match` and writing.
const RACE_WINDOW: std::time::Duration = std::time::Duration::from_millis(200);

/// Check, then write a while later from what was read: a PATCH that comes
/// in between, holding the same ETag, also passes the check, and the later
/// write wins.
async fn racy_patch(
    bmc: &Bmc,
    headers: &HeaderMap,
    patch: &Map<String, Value>,
) -> Result<(), Reply> {
    let status = bmc.node.status();
    let current = res::system_of(bmc, &status);
    let boot = patched_boot(&current, &status, headers, patch)?;
    tokio::time::sleep(RACE_WINDOW).await;
    bmc.node.set_boot_override(boot);
    Ok(())
}

/// The boot override `patch` makes of the node's, if `If-Match` (when
/// sent) names the ETag of `current`, every property is a writable one
/// with a valid value, and the node's boot patch quirks are satisfied.
fn patched_boot(
    current: &Value,
    status: &NodeStatus,
    headers: &HeaderMap,
    patch: &Map<String, Value>,
) -> Result<BootOverride, Reply> {
    if let Some(if_match) = headers.get(IF_MATCH) {
        let tag = reply::etag(current);
        let matches = if_match
            .to_str()
            .is_ok_and(|v| v.split(',').map(str::trim).any(|t| t == "*" || t == tag));
        if !matches {
            return Err(errors::precondition_failed());
        }
    }
    let mut boot = status.boot_override;
    for (key, value) in patch {
        match key.as_str() {
            "Boot" => apply_boot(&mut boot, value, &status.quirks)?,
            other if current.get(other).is_some() => {
                return Err(errors::property_not_writable(other))
            }
            other => return Err(errors::property_unknown(other)),
        }
    }
    check_boot_patch(patch.get("Boot"), status, &boot)?;
    Ok(boot)
}

/// The boot patch quirks' demands on the `Boot` object of a PATCH.
fn check_boot_patch(
    fields: Option<&Value>,
    status: &NodeStatus,
    boot: &BootOverride,
) -> Result<(), Reply> {
    let quirks = &status.quirks;
    let has = |name: &str| fields.is_some_and(|f| f.get(name).is_some());
    let required: &[&str] = if quirks.boot_patch(BootPatchQuirk::AllRequired) {
        &[ENABLED, TARGET, MODE]
    } else if quirks.boot_patch(BootPatchQuirk::EnabledRequired) {
        &[ENABLED]
    } else {
        &[]
    };
    if let Some(missing) = required.iter().find(|name| !has(name)) {
        return Err(errors::property_missing(&format!("Boot/{missing}")));
    }
    let repeated = has(ENABLED) && boot.enabled == status.boot_override.enabled;
    if repeated && quirks.boot_patch(BootPatchQuirk::NoRepeatEnabled) {
        return Err(errors::property_value_conflict(
            ENABLED,
            boot.enabled.as_str(),
        ));
    }
    Ok(())
}

const TARGET: &str = "BootSourceOverrideTarget";
const ENABLED: &str = "BootSourceOverrideEnabled";
const MODE: &str = "BootSourceOverrideMode";

fn apply_boot(boot: &mut BootOverride, value: &Value, quirks: &Quirks) -> Result<(), Reply> {
    let Value::Object(fields) = value else {
        return Err(errors::property_value_type(&value.to_string(), "Boot"));
    };
    let enabled: Vec<BootEnabled> = res::allowed_boot_enabled(quirks).collect();
    for (key, value) in fields {
        match key.as_str() {
            TARGET => boot.target = pick(key, value, &BootTarget::ALL, BootTarget::as_str)?,
            ENABLED => boot.enabled = pick(key, value, &enabled, BootEnabled::as_str)?,
            MODE => boot.mode = pick(key, value, &BootMode::ALL, BootMode::as_str)?,
            other => return Err(errors::property_unknown(&format!("Boot/{other}"))),
        }
    }
    Ok(())
}

/// The enum value named by a JSON string, or the Redfish error saying why not.
fn pick<T: Copy>(
    property: &str,
    value: &Value,
    all: &[T],
    name: impl Fn(T) -> &'static str,
) -> Result<T, Reply> {
    let Value::String(s) = value else {
        return Err(errors::property_value_type(&value.to_string(), property));
    };
    all.iter()
        .copied()
        .find(|v| name(*v) == s)
        .ok_or_else(|| errors::property_value_not_in_list(s, property))
}

/// `POST /redfish/v1/SessionService/Sessions` with `{"UserName", "Password"}`.
pub(crate) fn create_session(bmc: &Bmc, body: &Bytes) -> Reply {
    let fields = match parse_object(body) {
        Ok(fields) => fields,
        Err(reply) => return reply,
    };
    let text = |key: &str| fields.get(key).and_then(Value::as_str);
    let Some(username) = text("UserName") else {
        return errors::create_missing_property("UserName");
    };
    let Some(password) = text("Password") else {
        return errors::create_missing_property("Password");
    };
    if let Some(unknown) = fields
        .keys()
        .find(|k| !matches!(k.as_str(), "UserName" | "Password"))
    {
        return errors::property_unknown(unknown);
    }
    if !bmc.node.check_credentials(username, password) {
        return errors::unauthorized(SESSIONS);
    }
    let Some(created) = bmc.sessions.create(username) else {
        tracing::debug!(
            node = bmc.node.name(),
            limit = bmc.shared.max_sessions,
            "session limit reached"
        );
        return errors::session_limit(bmc.node.with_quirks(|q| q.session_limit_reply));
    };
    let body = res::session(&created.id, username);
    let mut reply = reply::json(StatusCode::CREATED, &body);
    let headers = reply.headers_mut();
    if let Ok(token) = HeaderValue::from_str(&created.token) {
        headers.insert("X-Auth-Token", token);
    }
    if let Ok(location) = HeaderValue::from_str(&format!("{SESSIONS}/{}", created.id)) {
        headers.insert(LOCATION, location);
    }
    reply
}

/// `DELETE /redfish/v1/SessionService/Sessions/{id}`.
pub(crate) fn delete_session(bmc: &Bmc, id: &str) -> Reply {
    if bmc.sessions.delete(id) {
        reply::empty(StatusCode::NO_CONTENT)
    } else {
        errors::resource_not_found("Session", id)
    }
}
