//! Parse → act → respond for one Redfish request, in DSP0266's order: an
//! `OData-Version` other than 4.0 is refused (412), the path is resolved to a
//! [`Resource`], the method checked against what the resource allows (405 with
//! `Allow` otherwise), the caller authenticated unless the resource is public
//! (401), a GET or HEAD whose `If-None-Match` names the current ETag answered
//! 304 Not Modified, a POST or PATCH body without a JSON `Content-Type` refused (400,
//! unless the node's `lenient_content_type` quirk), the query checked (a `$` parameter the service does not support is
//! 501, a bad `$top`/`$skip` value 400), and the request handed to the
//! resource's renderer or action.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::request::Parts;
use http::{HeaderMap, Method};

use super::query::Query;
use super::resources::{self as res, ACCOUNTS, ROLES, SESSIONS, TASKS};
use super::{actions, errors, metadata, query, reply, Bmc, Reply};

/// Every resource a node serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Resource<'a> {
    Versions,
    Root,
    ODataService,
    Metadata,
    Systems,
    System,
    Reset,
    ResetInfo,
    ChassisCollection,
    Chassis,
    Managers,
    Manager,
    SessionService,
    Sessions,
    /// `Sessions/Members`: a POST there creates a session (DSP0266).
    SessionMembers,
    Session(&'a str),
    AccountService,
    Accounts,
    Account(&'a str),
    Roles,
    Role(&'a str),
    TaskService,
    Tasks,
    Task(&'a str),
    TaskMonitor(&'a str),
}

impl Resource<'_> {
    /// The methods this resource answers (the `Allow` header).
    fn allow(self) -> &'static str {
        match self {
            Resource::System => "GET, HEAD, PATCH",
            Resource::Reset => "POST",
            Resource::Sessions => "GET, HEAD, POST",
            Resource::SessionMembers => "POST",
            Resource::Session(_) => "GET, HEAD, DELETE",
            _ => "GET, HEAD",
        }
    }

    fn allows(self, method: &Method) -> bool {
        let name = method.as_str();
        self.allow().split(", ").any(|m| m == name)
    }

    /// Resources readable without credentials, as the Redfish spec requires.
    fn is_public(self, method: &Method) -> bool {
        match self {
            Resource::Versions | Resource::Root | Resource::ODataService | Resource::Metadata => {
                true
            }
            Resource::Sessions | Resource::SessionMembers => method == Method::POST,
            _ => false,
        }
    }
}

/// Resolves a request path (trailing `/` ignored, `%24` read as `$`).
pub(crate) fn resolve(path: &str) -> Option<Resource<'_>> {
    let path = path.trim_end_matches('/');
    if path == "/redfish" {
        return Some(Resource::Versions);
    }
    let rest = path.strip_prefix("/redfish/v1")?;
    let segments: Vec<&str> = rest.split('/').skip(1).collect();
    if rest.is_empty() {
        return Some(Resource::Root);
    }
    let resource = match segments.as_slice() {
        ["odata"] => Resource::ODataService,
        ["$metadata" | "%24metadata"] => Resource::Metadata,
        ["Systems"] => Resource::Systems,
        ["Systems", "1"] => Resource::System,
        ["Systems", "1", "Actions", "ComputerSystem.Reset"] => Resource::Reset,
        ["Systems", "1", "ResetActionInfo"] => Resource::ResetInfo,
        ["Chassis"] => Resource::ChassisCollection,
        ["Chassis", "1"] => Resource::Chassis,
        ["Managers"] => Resource::Managers,
        ["Managers", "1"] => Resource::Manager,
        ["SessionService"] => Resource::SessionService,
        ["SessionService", "Sessions"] => Resource::Sessions,
        ["SessionService", "Sessions", "Members"] => Resource::SessionMembers,
        ["SessionService", "Sessions", id] if !id.is_empty() => Resource::Session(id),
        ["AccountService"] => Resource::AccountService,
        ["AccountService", "Accounts"] => Resource::Accounts,
        ["AccountService", "Accounts", id] if !id.is_empty() => Resource::Account(id),
        ["AccountService", "Roles"] => Resource::Roles,
        ["AccountService", "Roles", id] if !id.is_empty() => Resource::Role(id),
        ["TaskService"] => Resource::TaskService,
        ["TaskService", "Tasks"] => Resource::Tasks,
        ["TaskService", "Tasks", id] if !id.is_empty() => Resource::Task(id),
        ["TaskService", "TaskMonitors", id] if !id.is_empty() => Resource::TaskMonitor(id),
        _ => return None,
    };
    Some(resource)
}

/// Serves one request whose body has been read.
pub(crate) async fn route(bmc: &Bmc, parts: &Parts, body: &Bytes) -> Reply {
    if let Some(asked) = unsupported_odata_version(&parts.headers) {
        return errors::odata_version_unsupported(&asked);
    }
    let path = parts.uri.path();
    let Some(resource) = resolve(path) else {
        return errors::resource_not_found("Resource", path);
    };
    if !resource.allows(&parts.method) {
        return errors::method_not_allowed(resource.allow());
    }
    if !resource.is_public(&parts.method) && !authorized(bmc, &parts.headers) {
        return errors::unauthorized(path);
    }
    let has_body = matches!(parts.method, Method::POST | Method::PATCH);
    if has_body && !is_json(&parts.headers) && !bmc.node.quirks().lenient_content_type {
        return errors::unrecognized_request_body();
    }
    let query = match query::parse(parts.uri.query()) {
        Ok(query) => query,
        Err(error) => return error.reply(),
    };
    match parts.method {
        Method::GET | Method::HEAD => get(bmc, resource, &query, &parts.headers),
        Method::POST if matches!(resource, Resource::Sessions | Resource::SessionMembers) => {
            actions::create_session(bmc, body)
        }
        Method::POST => actions::reset(bmc, body),
        Method::PATCH => actions::patch_system(bmc, &parts.headers, body).await,
        Method::DELETE => match resource {
            Resource::Session(id) => actions::delete_session(bmc, id),
            _ => errors::method_not_allowed(resource.allow()),
        },
        _ => errors::method_not_allowed(resource.allow()),
    }
}

/// The `OData-Version` a request asks for, when it is not 4.0 — the only
/// version this service speaks (DSP0266: 412 Precondition Failed).
fn unsupported_odata_version(headers: &HeaderMap) -> Option<String> {
    let asked = headers.get("OData-Version")?;
    let text = String::from_utf8_lossy(asked.as_bytes());
    (text.trim() != "4.0").then(|| text.into_owned())
}

/// Whether the request's `Content-Type` is JSON (`application/json`, any
/// parameters such as `charset`).
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
}

fn get(bmc: &Bmc, resource: Resource<'_>, query: &Query, headers: &HeaderMap) -> Reply {
    let allow = resource.allow();
    let body = match resource {
        Resource::Versions => res::versions(),
        Resource::Root => res::service_root(bmc),
        Resource::ODataService => res::odata_service(),
        Resource::Metadata => return reply::xml(metadata::METADATA),
        Resource::Systems => res::collection(
            "ComputerSystemCollection",
            "Computer System Collection",
            res::SYSTEMS,
            &[res::SYSTEM.to_owned()],
        ),
        Resource::System => res::system(bmc),
        Resource::ResetInfo => res::reset_action_info(bmc),
        Resource::ChassisCollection => res::collection(
            "ChassisCollection",
            "Chassis Collection",
            res::CHASSIS_COLLECTION,
            &[res::CHASSIS.to_owned()],
        ),
        Resource::Chassis => res::chassis(bmc),
        Resource::Managers => res::collection(
            "ManagerCollection",
            "Manager Collection",
            res::MANAGERS,
            &[res::MANAGER.to_owned()],
        ),
        Resource::Manager => res::manager(bmc),
        Resource::SessionService => res::session_service(bmc),
        Resource::Sessions => {
            let members: Vec<String> = bmc
                .sessions
                .ids()
                .into_iter()
                .map(|id| format!("{SESSIONS}/{id}"))
                .collect();
            res::collection(
                "SessionCollection",
                "Session Collection",
                SESSIONS,
                &members,
            )
        }
        Resource::Session(id) => match bmc.sessions.get(id) {
            Some(session) => res::session(&session.id, &session.username),
            None => return errors::resource_not_found("Session", id),
        },
        Resource::TaskService => res::task_service(),
        Resource::Tasks => {
            let members: Vec<String> = bmc
                .tasks
                .ids()
                .into_iter()
                .map(|id| format!("{TASKS}/{id}"))
                .collect();
            res::collection("TaskCollection", "Task Collection", TASKS, &members)
        }
        Resource::AccountService => res::account_service(),
        Resource::Accounts => res::collection(
            "ManagerAccountCollection",
            "Accounts Collection",
            ACCOUNTS,
            &[res::ACCOUNT.to_owned()],
        ),
        Resource::Account(id) => match res::account(bmc, id) {
            Some(account) => account,
            None => return errors::resource_not_found("ManagerAccount", id),
        },
        Resource::Roles => res::collection(
            "RoleCollection",
            "Roles Collection",
            ROLES,
            &res::ROLE_PRIVILEGES
                .iter()
                .map(|(role, _)| format!("{ROLES}/{role}"))
                .collect::<Vec<_>>(),
        ),
        Resource::Role(id) => match res::role(id) {
            Some(role) => role,
            None => return errors::resource_not_found("Role", id),
        },
        Resource::Task(id) => match actions::task(bmc, id) {
            Some(task) => res::task(&task),
            None => return errors::resource_not_found("Task", id),
        },
        Resource::TaskMonitor(id) => return actions::task_monitor(bmc, id),
        Resource::Reset | Resource::SessionMembers => return errors::method_not_allowed(allow),
    };
    let body = query.apply(body);
    let style = bmc.node.with_quirks(reply::TagStyle::of);
    if reply::none_match(headers.get(http::header::IF_NONE_MATCH), &body) {
        return reply::not_modified(&body, style);
    }
    reply::resource(&body, allow, style)
}

/// A live session token (`X-Auth-Token`) or valid basic credentials. While
/// the `wrong_credentials` fault is set, existing sessions are refused too
/// (as after a password rotation that revokes sessions).
fn authorized(bmc: &Bmc, headers: &HeaderMap) -> bool {
    if let Some(token) = headers.get("X-Auth-Token").and_then(|v| v.to_str().ok()) {
        if bmc.sessions.authenticate(token).is_some() && !bmc.node.faults().wrong_credentials {
            return true;
        }
    }
    basic_credentials(headers)
        .is_some_and(|(user, password)| bmc.node.check_credentials(&user, &password))
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_paths() {
        assert_eq!(resolve("/redfish/v1/"), Some(Resource::Root));
        assert_eq!(resolve("/redfish/v1"), Some(Resource::Root));
        assert_eq!(resolve("/redfish"), Some(Resource::Versions));
        assert_eq!(resolve("/redfish/v1/Systems/1/"), Some(Resource::System));
        assert_eq!(
            resolve("/redfish/v1/SessionService/Sessions/7"),
            Some(Resource::Session("7"))
        );
        assert_eq!(resolve("/redfish/v1/%24metadata"), Some(Resource::Metadata));
        assert_eq!(
            resolve("/redfish/v1/SessionService/Sessions/Members"),
            Some(Resource::SessionMembers)
        );
        assert_eq!(
            resolve("/redfish/v1/AccountService/Roles/ReadOnly"),
            Some(Resource::Role("ReadOnly"))
        );
        assert_eq!(resolve("/redfish/v1/Systems/2"), None);
        assert_eq!(resolve("/redfish/v1//Systems"), None);
        assert_eq!(resolve("/other"), None);
    }

    #[test]
    fn methods_and_public_resources() {
        assert!(Resource::System.allows(&Method::PATCH));
        assert!(!Resource::System.allows(&Method::DELETE));
        assert!(Resource::Root.is_public(&Method::GET));
        assert!(Resource::Sessions.is_public(&Method::POST));
        assert!(!Resource::Sessions.is_public(&Method::GET));
    }
}
