//! Who may do what on the socket. The kernel tells batond who is calling
//! (`SO_PEERCRED`: uid and gid of the connecting process); the caller's
//! groups are that gid plus the user's groups in the group database (as
//! `usermod -aG` sets them). From those, [`Access`] gives the caller a
//! [`Role`]:
//!
//! - **admin**: uid 0, batond's own uid, or a member of `auth.admin_groups`
//!   — everything, schedules included (a schedule acts on its own, long
//!   after its author);
//! - **operator**: `auth.operator_groups` — power actions, boot device,
//!   maintenance, lock/unlock, batches, job cancel, and reads;
//! - **reader**: `auth.reader_groups` — reads (GET/HEAD, `/metrics` too);
//! - anyone else: 403 `forbidden`, naming the role needed.
//!
//! What a request needs is decided here and only here: [`required`] by
//! method and path pattern (a route added later falls under its rules —
//! reads for GET, admin for anything not listed), and [`action_role`] for
//! the one route whose body decides (`os-reset_status` is admin only).

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};

use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::{ApiError, ErrorKind};
use crate::conductor::actions::NodeAction;
use crate::config::{AuthConfig, ConfigProblem};

/// What a caller may do; each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Reader,
    Operator,
    Admin,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

/// Requests an operator may make besides reads: `(method, path pattern)`,
/// where `*` is one path segment.
const OPERATOR_ROUTES: [(Method, &str); 8] = [
    (Method::PUT, "/v1/nodes/*/states/power"),
    (Method::PUT, "/v1/nodes/*/states/boot_device"),
    (Method::PUT, "/v1/nodes/*/maintenance"),
    (Method::DELETE, "/v1/nodes/*/maintenance"),
    (Method::POST, "/v1/nodes/*/action"),
    (Method::POST, "/v1/baremetalservers/action"),
    (Method::POST, "/v1/*/baremetalservers/action"),
    (Method::POST, "/v1/jobs/*/cancel"),
];

/// The role a request needs, by method and path: reads need a reader, the
/// [`OPERATOR_ROUTES`] an operator, anything else an admin.
pub fn required(method: &Method, path: &str) -> Role {
    if method == Method::GET || method == Method::HEAD {
        return Role::Reader;
    }
    let operator = OPERATOR_ROUTES
        .iter()
        .any(|(m, pattern)| m == method && matches(pattern, path));
    if operator {
        Role::Operator
    } else {
        Role::Admin
    }
}

/// The role a node action needs (`POST /v1/nodes/{ident}/action`):
/// clearing a stuck operation is an admin's call.
pub fn action_role(action: &NodeAction) -> Role {
    match action {
        NodeAction::ResetStatus => Role::Admin,
        _ => Role::Operator,
    }
}

/// True when `path` has the segments of `pattern` (`*` matches any one).
fn matches(pattern: &str, path: &str) -> bool {
    let path = path.strip_suffix('/').unwrap_or(path);
    let mut want = pattern.split('/');
    let mut have = path.split('/');
    loop {
        match (want.next(), have.next()) {
            (None, None) => return true,
            (Some("*"), Some(seg)) if !seg.is_empty() => {}
            (Some(w), Some(h)) if w == h => {}
            _ => return false,
        }
    }
}

/// The caller on the other end of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub uid: u32,
    pub gid: u32,
    /// The user's name, when the user database knows the uid.
    pub name: Option<String>,
    /// `gid` and the user's groups in the group database.
    pub groups: BTreeSet<u32>,
}

impl Peer {
    /// Looks up the caller's name and groups (blocking: NSS).
    pub fn lookup(uid: u32, gid: u32) -> Self {
        let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .ok()
            .flatten();
        let mut groups = BTreeSet::from([gid]);
        if let Some(user) = &user {
            if let Ok(name) = std::ffi::CString::new(user.name.as_str()) {
                let listed = nix::unistd::getgrouplist(&name, nix::unistd::Gid::from_raw(gid));
                groups.extend(
                    listed
                        .unwrap_or_default()
                        .into_iter()
                        .map(nix::unistd::Gid::as_raw),
                );
            }
        }
        Self {
            uid,
            gid,
            name: user.map(|u| u.name),
            groups,
        }
    }

    fn describe(&self) -> String {
        match &self.name {
            Some(name) => format!("uid {} ({name})", self.uid),
            None => format!("uid {}", self.uid),
        }
    }
}

/// The role groups, resolved to gids.
#[derive(Debug, Clone, Default)]
pub struct Access {
    admin: Groups,
    operator: Groups,
    reader: Groups,
    own_uid: u32,
}

#[derive(Debug, Clone, Default)]
struct Groups {
    names: Vec<String>,
    gids: BTreeSet<u32>,
}

/// The sysusers groups: when one is missing (the snippet was not applied,
/// e.g. a development machine), it is skipped with a warning rather than
/// failing the default config.
const SYSUSERS_GROUPS: [&str; 3] = ["baton-admins", "baton-operators", "baton-readers"];

impl Access {
    /// Resolves the groups of `[auth]`; an unknown group is a problem,
    /// except the sysusers ones (see [`SYSUSERS_GROUPS`]).
    pub fn resolve(auth: &AuthConfig) -> Result<Self, Vec<ConfigProblem>> {
        let mut problems = Vec::new();
        let mut groups = |key: &str, names: &[String]| {
            let mut resolved = Groups::default();
            for name in names {
                match lookup_group(name) {
                    Some(gid) => {
                        resolved.names.push(name.clone());
                        resolved.gids.insert(gid);
                    }
                    None if SYSUSERS_GROUPS.contains(&name.as_str()) => tracing::warn!(
                        group = %name,
                        key,
                        "group does not exist; nobody gets its role (create it with systemd-sysusers)"
                    ),
                    None => problems.push(ConfigProblem {
                        key: key.to_owned(),
                        reason: format!("group {name:?} does not exist; create it (groupadd {name}) or remove it"),
                    }),
                }
            }
            resolved
        };
        let access = Self {
            admin: groups("auth.admin_groups", &auth.admin_groups),
            operator: groups("auth.operator_groups", &auth.operator_groups),
            reader: groups("auth.reader_groups", &auth.reader_groups),
            own_uid: nix::unistd::geteuid().as_raw(),
        };
        if problems.is_empty() {
            Ok(access)
        } else {
            Err(problems)
        }
    }

    /// The caller's highest role, if any.
    pub fn role_of(&self, peer: &Peer) -> Option<Role> {
        let member = |groups: &Groups| !groups.gids.is_disjoint(&peer.groups);
        if peer.uid == 0 || peer.uid == self.own_uid || member(&self.admin) {
            Some(Role::Admin)
        } else if member(&self.operator) {
            Some(Role::Operator)
        } else if member(&self.reader) {
            Some(Role::Reader)
        } else {
            None
        }
    }

    /// True when the uid is admin whatever its groups (no lookup needed).
    pub fn always_admin(&self, uid: u32) -> bool {
        uid == 0 || uid == self.own_uid
    }

    /// Who holds `role`, for a 403 message.
    fn holders(&self, role: Role) -> String {
        let mut groups: Vec<&str> = Vec::new();
        for (r, g) in [
            (Role::Reader, &self.reader),
            (Role::Operator, &self.operator),
            (Role::Admin, &self.admin),
        ] {
            if r >= role {
                groups.extend(g.names.iter().map(String::as_str));
            }
        }
        if groups.is_empty() {
            "root".to_owned()
        } else {
            format!("root or a member of {}", groups.join(", "))
        }
    }

    /// The 403 for a caller whose role is below `needed`.
    fn refusal(&self, peer: &Peer, has: Option<Role>, needed: Role, what: &str) -> ApiError {
        let has = has.map_or_else(
            || "no role".to_owned(),
            |r| format!("the {} role", r.name()),
        );
        ApiError::new(
            ErrorKind::Forbidden,
            format!(
                "{} has {has}; {what} needs the {} role ({})",
                peer.describe(),
                needed.name(),
                self.holders(needed)
            ),
        )
    }
}

fn lookup_group(name: &str) -> Option<u32> {
    nix::unistd::Group::from_name(name)
        .ok()
        .flatten()
        .map(|g| g.gid.as_raw())
}

/// The role groups in effect; a reload swaps them.
#[derive(Debug, Clone, Default)]
pub struct SharedAccess(Arc<RwLock<Arc<Access>>>);

impl SharedAccess {
    pub fn new(access: Access) -> Self {
        Self(Arc::new(RwLock::new(Arc::new(access))))
    }

    pub fn current(&self) -> Arc<Access> {
        Arc::clone(
            &self
                .0
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    pub fn replace(&self, access: Access) {
        *self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(access);
    }
}

/// The caller's role, for handlers whose body decides what they need.
#[derive(Debug, Clone)]
pub struct Granted {
    peer: Peer,
    role: Role,
    access: Arc<Access>,
}

impl Granted {
    /// Refuses unless the caller holds `needed` for `what`.
    pub fn require(&self, needed: Role, what: &str) -> Result<(), ApiError> {
        if self.role >= needed {
            Ok(())
        } else {
            Err(self
                .access
                .refusal(&self.peer, Some(self.role), needed, what))
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Granted {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        parts.extensions.get::<Granted>().cloned().ok_or_else(|| {
            ApiError::new(
                ErrorKind::Internal,
                "the request has no caller role; the router is missing its authorize layer",
            )
        })
    }
}

/// Middleware: refuses a request the caller's role does not cover. The
/// accept loop puts the [`Peer`] and the [`Access`] in effect on each
/// request; without them nobody is let through.
pub async fn authorize(mut request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let needed = required(&method, &path);
    let (Some(peer), Some(access)) = (
        request.extensions().get::<Peer>().cloned(),
        request.extensions().get::<Arc<Access>>().cloned(),
    ) else {
        return ApiError::new(
            ErrorKind::Forbidden,
            "batond cannot tell who is calling (no peer credentials on the socket); nothing is allowed",
        )
        .into_response();
    };
    let role = access.role_of(&peer);
    match role {
        Some(role) if role >= needed => {
            request
                .extensions_mut()
                .insert(Granted { peer, role, access });
            next.run(request).await
        }
        _ => access
            .refusal(&peer, role, needed, &format!("{method} {path}"))
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_classified_by_method_and_pattern() {
        let cases = [
            (Method::GET, "/v1/nodes", Role::Reader),
            (Method::HEAD, "/metrics", Role::Reader),
            (Method::GET, "/v1/anything/added/later", Role::Reader),
            (Method::PUT, "/v1/nodes/n1/states/power", Role::Operator),
            (
                Method::PUT,
                "/v1/nodes/n1/states/boot_device",
                Role::Operator,
            ),
            (Method::PUT, "/v1/nodes/n1/maintenance", Role::Operator),
            (Method::DELETE, "/v1/nodes/n1/maintenance", Role::Operator),
            (Method::POST, "/v1/nodes/n1/action", Role::Operator),
            (Method::POST, "/v1/baremetalservers/action", Role::Operator),
            (
                Method::POST,
                "/v1/proj-1/baremetalservers/action",
                Role::Operator,
            ),
            (Method::POST, "/v1/jobs/j1/cancel", Role::Operator),
            (Method::POST, "/v1/schedules", Role::Admin),
            (Method::DELETE, "/v1/schedules/s1", Role::Admin),
            (Method::POST, "/v1/nodes", Role::Admin),
            (Method::POST, "/v1/nodes/import", Role::Admin),
            (Method::PATCH, "/v1/nodes/n1", Role::Admin),
            (Method::DELETE, "/v1/nodes/n1", Role::Admin),
            (Method::PUT, "/v1/nodes/n1/states", Role::Admin),
            (Method::POST, "/v1/nodes//action", Role::Admin),
            (Method::POST, "/v1/nodes/n1/action/extra", Role::Admin),
            (Method::POST, "/v1/new-route", Role::Admin),
            (Method::OPTIONS, "/v1/nodes", Role::Admin),
        ];
        for (method, path, role) in cases {
            assert_eq!(required(&method, path), role, "{method} {path}");
        }
        assert_eq!(action_role(&NodeAction::ResetStatus), Role::Admin);
        assert_eq!(action_role(&NodeAction::Unlock), Role::Operator);
    }

    fn access() -> Access {
        let groups = |gid: u32, name: &str| Groups {
            names: vec![name.into()],
            gids: BTreeSet::from([gid]),
        };
        Access {
            admin: groups(10, "ops-admins"),
            operator: groups(20, "ops"),
            reader: groups(30, "viewers"),
            own_uid: 999,
        }
    }

    fn peer(uid: u32, groups: &[u32]) -> Peer {
        Peer {
            uid,
            gid: groups.first().copied().unwrap_or(5000),
            name: None,
            groups: groups.iter().copied().collect(),
        }
    }

    #[test]
    fn roles_come_from_uid_and_groups() {
        let access = access();
        assert_eq!(access.role_of(&peer(0, &[])), Some(Role::Admin));
        assert_eq!(access.role_of(&peer(999, &[])), Some(Role::Admin));
        assert_eq!(access.role_of(&peer(1000, &[30, 10])), Some(Role::Admin));
        assert_eq!(access.role_of(&peer(1000, &[20, 30])), Some(Role::Operator));
        assert_eq!(access.role_of(&peer(1000, &[30])), Some(Role::Reader));
        assert_eq!(access.role_of(&peer(1000, &[40])), None);
        let refusal = access.refusal(
            &peer(1000, &[30]),
            Some(Role::Reader),
            Role::Operator,
            "PUT /x",
        );
        assert_eq!(refusal.kind, ErrorKind::Forbidden);
        assert_eq!(
            refusal.message,
            "uid 1000 has the reader role; PUT /x needs the operator role (root or a member of ops, ops-admins)"
        );
    }

    #[test]
    fn unknown_groups_are_config_problems_but_missing_sysusers_groups_are_not() {
        let auth = AuthConfig {
            admin_groups: vec!["root".into(), "baton-admins".into()],
            operator_groups: vec!["no-such-group-xyz".into()],
            reader_groups: vec![],
        };
        let problems = Access::resolve(&auth).unwrap_err();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].key, "auth.operator_groups");
        assert!(problems[0]
            .reason
            .contains("\"no-such-group-xyz\" does not exist"));
        let ok = AuthConfig {
            operator_groups: vec![],
            ..auth
        };
        let access = Access::resolve(&ok).unwrap();
        assert!(access.admin.gids.contains(&0));
    }
}
