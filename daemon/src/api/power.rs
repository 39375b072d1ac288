//! Handlers of a node's power, boot and action routes and of its action
//! log: `PUT …/states/power`, `PUT …/states/boot_device`,
//! `PUT/DELETE …/maintenance`, `POST …/action`,
//! `GET …/os-instance-actions[/{request_id}]`. Each parses its request
//! into a [`NodeAction`] and renders what the conductor returns.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{FromRequestParts, Path, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use baton_drivers::BootDevice;
use baton_state::PowerVerb;
use baton_state::UpdatedWindow;
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::error::ApiError;
use super::middleware::RequestId;
use super::request::{parse_object, query_pairs, read_body, BODY_LIMIT};
use super::types::{
    action_href, ActionAccepted, BootDeviceRequest, InstanceAction, InstanceActionDocument,
    InstanceActionList, Link, MaintenanceRequest, NodeStates, PowerStateRequest,
};
use super::AppState;
use crate::conductor::actions::{ActionOutcome, Caller, NodeAction};
use crate::messages::clip;

/// The uid of the process on the other end of the socket, when known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerUid(pub u32);

/// Longest timeout a caller may give a power operation.
const MAX_TIMEOUT_SECS: u64 = 24 * 3600;

/// The caller of a request, for its action record: the request id the
/// middleware gave it and the peer uid the accept loop read from the socket.
#[derive(Debug, Clone)]
pub struct RequestCaller(pub Caller);

impl<S: Send + Sync> FromRequestParts<S> for RequestCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let request_id = parts.extensions.get::<RequestId>().ok_or_else(|| {
            ApiError::new(
                super::error::ErrorKind::Internal,
                "the request has no request id; the router is missing its middleware",
            )
        })?;
        Ok(Self(Caller {
            request_id: request_id.0.clone(),
            user_id: parts.extensions.get::<PeerUid>().map(|p| p.0.to_string()),
            user_name: parts
                .extensions
                .get::<crate::api::roles::Peer>()
                .and_then(|p| p.name.clone()),
        }))
    }
}

fn valid_targets() -> String {
    PowerVerb::ALL
        .iter()
        .map(|v| format!("{:?}", v.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Parses a `states/power` body into the action it asks for.
pub fn parse_power_request(request: &PowerStateRequest) -> Result<NodeAction, ApiError> {
    let verb = PowerVerb::parse(&request.target).ok_or_else(|| {
        ApiError::bad_request(format!(
            "target {:?} is not a power state; use one of {}",
            clip(&request.target, 64),
            valid_targets()
        ))
    })?;
    let timeout = match request.timeout {
        None => None,
        Some(secs) if (1..=MAX_TIMEOUT_SECS).contains(&secs) => Some(Duration::from_secs(secs)),
        Some(secs) => {
            return Err(ApiError::bad_request(format!(
                "timeout {secs} is out of range; give seconds from 1 to {MAX_TIMEOUT_SECS}"
            )))
        }
    };
    Ok(NodeAction::Power { verb, timeout })
}

const ACTIONS: [&str; 9] = [
    "os-start",
    "os-stop",
    "reboot",
    "trigger_crash_dump",
    "lock",
    "unlock",
    "rescue",
    "unrescue",
    "os-reset_status",
];

/// Parses a `POST …/action` body: exactly one action, as in Nova's
/// server-action API.
pub fn parse_action(body: &Value) -> Result<NodeAction, ApiError> {
    let valid = || ACTIONS.join(", ");
    let Some(map) = body.as_object() else {
        return Err(ApiError::bad_request(format!(
            "the body must be a JSON object with one action, such as {{\"os-stop\": {{\"type\": \"SOFT\"}}}}; actions: {}",
            valid()
        )));
    };
    let mut entries = map.iter();
    let (Some((name, args)), None) = (entries.next(), entries.next()) else {
        return Err(ApiError::bad_request(format!(
            "the body must hold exactly one action, it holds {}; actions: {}",
            map.len(),
            valid()
        )));
    };
    let action = match name.as_str() {
        "os-start" => {
            no_args(name, args)?;
            NodeAction::Power {
                verb: PowerVerb::On,
                timeout: None,
            }
        }
        "os-stop" => NodeAction::Power {
            verb: if soft(name, args)? {
                PowerVerb::SoftOff
            } else {
                PowerVerb::Off
            },
            timeout: None,
        },
        "reboot" => NodeAction::Power {
            verb: if soft(name, args)? {
                PowerVerb::SoftReboot
            } else {
                PowerVerb::Reboot
            },
            timeout: None,
        },
        "trigger_crash_dump" => {
            no_args(name, args)?;
            NodeAction::CrashDump
        }
        "lock" => NodeAction::Lock {
            reason: reason(name, args)?,
        },
        "unlock" => {
            no_args(name, args)?;
            NodeAction::Unlock
        }
        "rescue" => {
            no_args(name, args)?;
            NodeAction::Rescue
        }
        "unrescue" => {
            no_args(name, args)?;
            NodeAction::Unrescue
        }
        "os-reset_status" => {
            no_args(name, args)?;
            NodeAction::ResetStatus
        }
        other => {
            return Err(ApiError::bad_request(format!(
                "unknown action {:?}; actions: {}",
                clip(other, 64),
                valid()
            )))
        }
    };
    Ok(action)
}

/// `null` or `{}`.
fn no_args(name: &str, args: &Value) -> Result<(), ApiError> {
    match args {
        Value::Null => Ok(()),
        Value::Object(m) if m.is_empty() => Ok(()),
        _ => Err(ApiError::bad_request(format!(
            "{name} takes no arguments; send {{\"{name}\": null}}"
        ))),
    }
}

/// The object of an action, refusing keys other than `allowed`.
fn args_object<'a>(
    name: &str,
    args: &'a Value,
    allowed: &[&str],
) -> Result<Option<&'a serde_json::Map<String, Value>>, ApiError> {
    match args {
        Value::Null => Ok(None),
        Value::Object(m) => {
            if let Some(key) = m.keys().find(|k| !allowed.contains(&k.as_str())) {
                return Err(ApiError::bad_request(format!(
                    "{name} has no argument {:?}; it takes: {}",
                    clip(key, 64),
                    allowed.join(", ")
                )));
            }
            Ok(Some(m))
        }
        _ => Err(ApiError::bad_request(format!(
            "{name} takes an object, such as {{\"{name}\": {{\"{}\": …}}}}",
            allowed.first().copied().unwrap_or("type")
        ))),
    }
}

/// `{"type": "SOFT"|"HARD"}`; SOFT when absent, as in the BMS API.
fn soft(name: &str, args: &Value) -> Result<bool, ApiError> {
    let Some(map) = args_object(name, args, &["type"])? else {
        return Ok(true);
    };
    match map.get("type") {
        None => Ok(true),
        Some(Value::String(t)) if t == "SOFT" => Ok(true),
        Some(Value::String(t)) if t == "HARD" => Ok(false),
        Some(other) => Err(ApiError::bad_request(format!(
            "{name} type {} is not valid; use \"SOFT\" or \"HARD\"",
            clip(&other.to_string(), 64)
        ))),
    }
}

fn reason(name: &str, args: &Value) -> Result<Option<String>, ApiError> {
    let Some(map) = args_object(name, args, &["reason"])? else {
        return Ok(None);
    };
    match map.get("reason") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(r)) => check_reason(r).map(Some),
        Some(_) => Err(ApiError::bad_request(format!(
            "{name} reason must be a string"
        ))),
    }
}

fn check_reason(reason: &str) -> Result<String, ApiError> {
    if reason.len() > 1024 || reason.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "reason must be at most 1024 bytes of text without control characters",
        ));
    }
    Ok(reason.to_owned())
}

/// Renders a conductor's answer: 202 with `Location` of the action record
/// for work that goes on, 200 with the node's states for work done.
fn render(outcome: ActionOutcome, action: &str) -> Response {
    match outcome {
        ActionOutcome::Accepted { node, request_id } => {
            let href = action_href(node.uuid, &request_id);
            (
                StatusCode::ACCEPTED,
                [(header::LOCATION, href.clone())],
                Json(ActionAccepted {
                    request_id,
                    node: node.uuid,
                    action: action.to_owned(),
                    target_power_state: node.target_power_state,
                    links: Link::self_link(href),
                }),
            )
                .into_response()
        }
        ActionOutcome::Done { node, .. } => Json(NodeStates::from(&node)).into_response(),
    }
}

async fn act(
    app: &AppState,
    ident: &str,
    action: NodeAction,
    caller: Caller,
) -> Result<Response, ApiError> {
    let name = action.name();
    let outcome = app.conductor.act(ident, action, caller).await?;
    Ok(render(outcome, name))
}

/// `PUT /v1/nodes/{ident}/states/power`.
pub async fn set_power(
    State(app): State<AppState>,
    Path(ident): Path<String>,
    RequestCaller(caller): RequestCaller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(&headers, body, BODY_LIMIT).await?;
    let request: PowerStateRequest = parse_object(&bytes, "power state request")?;
    let action = parse_power_request(&request)?;
    act(&app, &ident, action, caller).await
}

/// `PUT /v1/nodes/{ident}/states/boot_device`.
pub async fn set_boot_device(
    State(app): State<AppState>,
    Path(ident): Path<String>,
    RequestCaller(caller): RequestCaller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(&headers, body, BODY_LIMIT).await?;
    let request: BootDeviceRequest = parse_object(&bytes, "boot device request")?;
    let device = crate::conductor::actions::boot_device(&request.boot_device).ok_or_else(|| {
        let valid: Vec<String> = BootDevice::ALL.iter().map(ToString::to_string).collect();
        ApiError::bad_request(format!(
            "boot_device {:?} is unknown; use one of {}",
            clip(&request.boot_device, 64),
            valid.join(", ")
        ))
    })?;
    let action = NodeAction::SetBootDevice {
        device,
        persistent: request.persistent,
    };
    act(&app, &ident, action, caller).await
}

/// `PUT /v1/nodes/{ident}/maintenance`.
pub async fn enter_maintenance(
    State(app): State<AppState>,
    Path(ident): Path<String>,
    RequestCaller(caller): RequestCaller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(&headers, body, BODY_LIMIT).await?;
    let request: MaintenanceRequest = if bytes.iter().all(u8::is_ascii_whitespace) {
        MaintenanceRequest::default()
    } else {
        parse_object(&bytes, "maintenance request")?
    };
    let reason = request.reason.as_deref().map(check_reason).transpose()?;
    let action = NodeAction::Maintenance { reason };
    act(&app, &ident, action, caller).await
}

/// `DELETE /v1/nodes/{ident}/maintenance`.
pub async fn leave_maintenance(
    State(app): State<AppState>,
    Path(ident): Path<String>,
    RequestCaller(caller): RequestCaller,
) -> Result<Response, ApiError> {
    let action = NodeAction::EndMaintenance;
    act(&app, &ident, action, caller).await
}

/// `POST /v1/nodes/{ident}/action`.
pub async fn action(
    State(app): State<AppState>,
    Path(ident): Path<String>,
    RequestCaller(caller): RequestCaller,
    granted: super::roles::Granted,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(&headers, body, BODY_LIMIT).await?;
    let value: Value = parse_object(&bytes, "action")?;
    let action = parse_action(&value)?;
    granted.require(super::roles::action_role(&action), action.name())?;
    act(&app, &ident, action, caller).await
}

const ACTION_LIST_PARAMS: [&str; 4] = ["limit", "marker", "changes-since", "changes-before"];
/// Largest page of an action log.
const MAX_ACTIONS: usize = 1000;

/// A parsed action-log query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionQuery {
    pub limit: usize,
    pub marker: Option<String>,
    pub window: UpdatedWindow,
}

impl ActionQuery {
    pub fn parse(query: Option<&str>) -> Result<Self, ApiError> {
        let mut parsed = ActionQuery {
            limit: MAX_ACTIONS,
            marker: None,
            window: UpdatedWindow::default(),
        };
        for (key, value) in query_pairs(query, &ACTION_LIST_PARAMS)? {
            match key.as_str() {
                "limit" => {
                    parsed.limit = value
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=MAX_ACTIONS).contains(n))
                        .ok_or_else(|| {
                            ApiError::bad_request(format!(
                                "limit must be a whole number from 1 to {MAX_ACTIONS}, got {:?}",
                                clip(&value, 64)
                            ))
                        })?;
                }
                "marker" => parsed.marker = Some(value),
                "changes-since" => parsed.window.since = Some(parse_time(&key, &value)?),
                _ => parsed.window.before = Some(parse_time(&key, &value)?),
            }
        }
        Ok(parsed)
    }

    /// The query of the page after one ending with `last`.
    fn next_query(&self, last: &str) -> String {
        let mut pairs = vec![
            ("limit", self.limit.to_string()),
            ("marker", last.to_owned()),
        ];
        for (key, at) in [
            ("changes-since", self.window.since),
            ("changes-before", self.window.before),
        ] {
            if let Some(at) = at.and_then(|t| t.format(&Rfc3339).ok()) {
                pairs.push((key, at));
            }
        }
        serde_urlencoded::to_string(&pairs).unwrap_or_default()
    }
}

fn parse_time(key: &str, value: &str) -> Result<OffsetDateTime, ApiError> {
    OffsetDateTime::parse(value, &Rfc3339).map_err(|_| {
        ApiError::bad_request(format!(
            "{key} {:?} is not an ISO 8601 time; use e.g. 2026-12-01T10:00:00Z",
            clip(value, 64)
        ))
    })
}

/// `GET /v1/nodes/{ident}/os-instance-actions`.
pub async fn list_actions(
    State(app): State<AppState>,
    Path(ident): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<InstanceActionList>, ApiError> {
    let query = ActionQuery::parse(query.as_deref())?;
    let (node, actions) = app
        .conductor
        .actions(&ident, query.limit, query.marker.clone(), query.window)
        .await?;
    let full = actions.len() == query.limit;
    let next = actions.last().filter(|_| full).map(|last| {
        format!(
            "/v1/nodes/{}/os-instance-actions?{}",
            node.uuid,
            query.next_query(&last.request_id)
        )
    });
    let instance_actions = actions.into_iter().map(InstanceAction::from).collect();
    Ok(Json(InstanceActionList {
        instance_actions,
        next,
    }))
}

/// `GET /v1/nodes/{ident}/os-instance-actions/{request_id}`.
pub async fn show_action(
    State(app): State<AppState>,
    Path((ident, request_id)): Path<(String, String)>,
) -> Result<Json<InstanceActionDocument>, ApiError> {
    let action = app.conductor.action(&ident, &request_id).await?;
    Ok(Json(InstanceActionDocument {
        instance_action: action.into(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn actions_parse_into_their_verbs() {
        let cases = [
            (
                json!({"os-start": null}),
                NodeAction::Power {
                    verb: PowerVerb::On,
                    timeout: None,
                },
            ),
            (
                json!({"os-stop": null}),
                NodeAction::Power {
                    verb: PowerVerb::SoftOff,
                    timeout: None,
                },
            ),
            (
                json!({"os-stop": {"type": "HARD"}}),
                NodeAction::Power {
                    verb: PowerVerb::Off,
                    timeout: None,
                },
            ),
            (
                json!({"reboot": {"type": "SOFT"}}),
                NodeAction::Power {
                    verb: PowerVerb::SoftReboot,
                    timeout: None,
                },
            ),
            (
                json!({"reboot": {"type": "HARD"}}),
                NodeAction::Power {
                    verb: PowerVerb::Reboot,
                    timeout: None,
                },
            ),
            (json!({"trigger_crash_dump": null}), NodeAction::CrashDump),
            (
                json!({"lock": {"reason": "firmware"}}),
                NodeAction::Lock {
                    reason: Some("firmware".into()),
                },
            ),
            (json!({"unlock": null}), NodeAction::Unlock),
            (json!({"rescue": {}}), NodeAction::Rescue),
            (json!({"unrescue": null}), NodeAction::Unrescue),
            (json!({"os-reset_status": {}}), NodeAction::ResetStatus),
        ];
        for (body, want) in cases {
            assert_eq!(parse_action(&body).unwrap(), want, "{body}");
        }
    }

    #[test]
    fn bad_actions_say_what_is_valid() {
        for (body, says) in [
            (json!({}), "exactly one action"),
            (
                json!({"os-start": null, "os-stop": null}),
                "exactly one action",
            ),
            (json!({"os-explode": null}), "os-reset_status"),
            (
                json!({"os-stop": {"type": "GENTLE"}}),
                "\"SOFT\" or \"HARD\"",
            ),
            (json!({"os-stop": {"kind": "HARD"}}), "takes: type"),
            (json!({"os-stop": "HARD"}), "takes an object"),
            (json!({"unlock": {"now": true}}), "takes no arguments"),
            (json!(["os-start"]), "JSON object"),
            (json!({"lock": {"reason": 5}}), "must be a string"),
        ] {
            let err = parse_action(&body).unwrap_err();
            assert_eq!(err.kind, super::super::error::ErrorKind::BadRequest);
            assert!(err.message.contains(says), "{body}: {}", err.message);
        }
    }

    #[test]
    fn power_targets_are_checked() {
        let ok = parse_power_request(&PowerStateRequest {
            target: "soft power off".into(),
            timeout: Some(90),
        })
        .unwrap();
        assert_eq!(
            ok,
            NodeAction::Power {
                verb: PowerVerb::SoftOff,
                timeout: Some(Duration::from_secs(90))
            }
        );
        let bad = parse_power_request(&PowerStateRequest {
            target: "on".into(),
            timeout: None,
        })
        .unwrap_err();
        assert!(
            bad.message.contains("\"power on\", \"power off\""),
            "{}",
            bad.message
        );
        assert!(parse_power_request(&PowerStateRequest {
            target: "power on".into(),
            timeout: Some(0)
        })
        .is_err());
    }

    #[test]
    fn action_queries_are_strict() {
        let q = ActionQuery::parse(Some("limit=5&changes-since=2026-01-01T00:00:00Z")).unwrap();
        assert_eq!(q.limit, 5);
        assert!(q.window.since.is_some());
        assert_eq!(
            q.next_query("req-9"),
            "limit=5&marker=req-9&changes-since=2026-01-01T00%3A00%3A00Z"
        );
        assert!(ActionQuery::parse(Some("limit=0")).is_err());
        assert!(ActionQuery::parse(Some("changes-since=yesterday")).is_err());
        assert!(ActionQuery::parse(Some("sort=asc")).is_err());
    }
}
