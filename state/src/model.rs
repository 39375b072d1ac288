//! The typed records the store keeps: nodes (with their BMC credentials),
//! actions and action events, plus the one validation path every node spec
//! goes through, whether it comes from the API, an import file or hw-sim's
//! exported inventory.

use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

/// A secret (BMC password). Its `Debug`, `Display` and `Serialize` print
/// `******`, so it cannot leak through logs or responses by accident; the
/// real value is reachable only through [`Secret::expose`].
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

/// What a secret is shown as, everywhere.
pub const MASK: &str = "******";

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The real value, for the code that must send it to a BMC or store it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(MASK)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // `any`, not `string`: serde_json's `Value` would otherwise report a
        // wrong type itself, quoting the value.
        d.deserialize_any(SecretVisitor)
    }
}

/// Accepts a string; refuses anything else without echoing it (serde's
/// default message would quote a numeric password: "invalid type: integer
/// `123456`").
struct SecretVisitor;

impl SecretVisitor {
    fn refuse<E: serde::de::Error>(&self, kind: &str) -> E {
        E::invalid_type(serde::de::Unexpected::Other(kind), self)
    }
}

impl serde::de::Visitor<'_> for SecretVisitor {
    type Value = Secret;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the password as a string in quotes")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Secret, E> {
        Ok(Secret(v.to_owned()))
    }

    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Secret, E> {
        Ok(Secret(v))
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Secret, E> {
        Err(self.refuse("a boolean"))
    }

    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Secret, E> {
        Err(self.refuse("a number"))
    }

    fn visit_i128<E: serde::de::Error>(self, _: i128) -> Result<Secret, E> {
        Err(self.refuse("a number"))
    }

    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Secret, E> {
        Err(self.refuse("a number"))
    }

    fn visit_u128<E: serde::de::Error>(self, _: u128) -> Result<Secret, E> {
        Err(self.refuse("a number"))
    }

    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Secret, E> {
        Err(self.refuse("a number"))
    }

    fn visit_char<E: serde::de::Error>(self, v: char) -> Result<Secret, E> {
        Ok(Secret(v.to_string()))
    }

    fn visit_bytes<E: serde::de::Error>(self, _: &[u8]) -> Result<Secret, E> {
        Err(self.refuse("bytes"))
    }
}

/// How baton talks to a node's BMC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Driver {
    Redfish,
    Ipmi,
}

impl Driver {
    pub const ALL: [Driver; 2] = [Driver::Redfish, Driver::Ipmi];

    pub fn as_str(self) -> &'static str {
        match self {
            Driver::Redfish => "redfish",
            Driver::Ipmi => "ipmi",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.as_str() == s)
    }

    /// The BMC port used when a node does not name one.
    pub fn default_port(self) -> u16 {
        match self {
            Driver::Redfish => 443,
            Driver::Ipmi => 623,
        }
    }
}

impl fmt::Display for Driver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A power state as Ironic names it. `None` (JSON `null`) means "never read".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PowerState {
    #[serde(rename = "power on")]
    On,
    #[serde(rename = "power off")]
    Off,
    #[serde(rename = "error")]
    Error,
}

impl PowerState {
    pub const ALL: [PowerState; 3] = [PowerState::On, PowerState::Off, PowerState::Error];

    pub fn as_str(self) -> &'static str {
        match self {
            PowerState::On => "power on",
            PowerState::Off => "power off",
            PowerState::Error => "error",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

impl fmt::Display for PowerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The BMC part of a node: where it is and how to log in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bmc {
    pub address: String,
    /// `None` means the driver's default port (443 for Redfish, 623 for IPMI).
    #[serde(default)]
    pub port: Option<u16>,
    pub username: String,
    /// The password, stored in the database. `None` when it comes from
    /// `password_file` or from batond's default BMC password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    /// An absolute path batond reads the password from (instead of storing
    /// it), when it builds the node's driver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<String>,
    /// Redfish system id; discovered when the BMC has exactly one system.
    #[serde(default)]
    pub system_id: Option<String>,
    #[serde(default = "default_true")]
    pub verify_tls: bool,
    #[serde(default)]
    pub ca_file: Option<String>,
}

fn default_true() -> bool {
    true
}

/// The fields of a node an operator sets: what `POST /v1/nodes` takes, one
/// entry of an import, and what a JSON Patch may change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    #[serde(default)]
    pub name: Option<String>,
    pub driver: Driver,
    pub bmc: Bmc,
    #[serde(default)]
    pub power_domain: Option<String>,
    #[serde(default)]
    pub maintenance: bool,
    #[serde(default)]
    pub maintenance_reason: Option<String>,
    #[serde(default)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// One thing wrong with a node spec: the JSON path of the field and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: &'static str,
    pub reason: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

const MAX_NAME_LEN: usize = 255;
const MAX_TEXT_LEN: usize = 1024;

impl NodeSpec {
    /// Every rule a node spec must satisfy; returns all violations, not just
    /// the first.
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let mut fail = |field: &'static str, reason: String| {
            errors.push(FieldError { field, reason });
        };
        if let Some(name) = &self.name {
            if let Err(reason) = check_name(name) {
                fail("name", reason);
            }
        }
        if let Err(reason) = check_address(self.driver, &self.bmc.address) {
            fail("bmc.address", reason);
        }
        if self.bmc.port == Some(0) {
            fail("bmc.port", "must be between 1 and 65535".into());
        }
        if self.bmc.username.is_empty() {
            fail("bmc.username", "must not be empty".into());
        }
        check_text(&mut fail, "bmc.username", &self.bmc.username);
        check_password(&mut fail, self.driver, &self.bmc);
        if let Some(system_id) = &self.bmc.system_id {
            if self.driver != Driver::Redfish {
                fail("bmc.system_id", "only applies to the redfish driver".into());
            }
            if system_id.is_empty()
                || system_id.contains(['/', '?', '#'])
                || system_id.len() > MAX_NAME_LEN
            {
                fail(
                    "bmc.system_id",
                    "must be a Redfish system id such as \"1\" or \"System.Embedded.1\" (no '/', '?', '#')".into(),
                );
            }
        }
        if let Some(system_id) = &self.bmc.system_id {
            check_text(&mut fail, "bmc.system_id", system_id);
        }
        if let Some(ca_file) = &self.bmc.ca_file {
            check_text(&mut fail, "bmc.ca_file", ca_file);
            if !ca_file.starts_with('/') {
                fail(
                    "bmc.ca_file",
                    format!("must be an absolute path, got {ca_file:?}"),
                );
            }
        }
        if let Some(domain) = &self.power_domain {
            if domain.is_empty() {
                fail(
                    "power_domain",
                    "must not be empty; omit it or use null for none".into(),
                );
            }
            check_text(&mut fail, "power_domain", domain);
        }
        if let Err(reason) = check_extra(&self.extra) {
            fail("extra", reason);
        }
        if let Some(reason) = &self.maintenance_reason {
            check_text(&mut fail, "maintenance_reason", reason);
            if !self.maintenance {
                fail(
                    "maintenance_reason",
                    "can only be set while maintenance is true".into(),
                );
            }
        }
        errors
    }

    /// Refuses a spec that names no password (neither `bmc.password` nor
    /// `bmc.password_file`) when batond has no default BMC password to use
    /// in its place.
    pub fn require_password(&self) -> Option<FieldError> {
        (self.bmc.password.is_none() && self.bmc.password_file.is_none()).then(|| FieldError {
            field: "bmc.password",
            reason: "is missing: give bmc.password or bmc.password_file (batond has no default \
                     BMC password; see the bmc.default_password_credential config key)"
                .into(),
        })
    }

    /// The port to reach the BMC on, applying the driver's default.
    pub fn bmc_port(&self) -> u16 {
        self.bmc.port.unwrap_or_else(|| self.driver.default_port())
    }
}

/// Longest password IPMI 2.0 (RAKP) can carry.
const MAX_IPMI_PASSWORD: usize = 20;

/// `bmc.password` and `bmc.password_file`: at most one of them, the
/// password not the mask, the file an absolute path.
fn check_password(fail: &mut impl FnMut(&'static str, String), driver: Driver, bmc: &Bmc) {
    if let Some(password) = &bmc.password {
        let len = password.expose().len();
        if driver == Driver::Ipmi && len > MAX_IPMI_PASSWORD {
            // Accepted, it would fail every operation on the node.
            fail(
                "bmc.password",
                format!("is {len} bytes; IPMI passwords are at most {MAX_IPMI_PASSWORD} bytes"),
            );
        }
        if password.expose() == MASK {
            fail(
                "bmc.password",
                format!(
                    "is the mask {MASK} that responses show in its place; send the real password"
                ),
            );
        }
        if password.expose().len() > MAX_TEXT_LEN {
            fail(
                "bmc.password",
                format!("is longer than {MAX_TEXT_LEN} bytes"),
            );
        }
    }
    let Some(file) = &bmc.password_file else {
        return;
    };
    if bmc.password.is_some() {
        fail(
            "bmc.password_file",
            "is given together with bmc.password; give only one of them (remove /bmc/password \
             in the same patch to switch to a file)"
                .into(),
        );
    }
    check_text(fail, "bmc.password_file", file);
    if !file.starts_with('/') {
        fail(
            "bmc.password_file",
            format!("must be an absolute path, got {file:?}"),
        );
    }
}

/// Free text shown in tables and logs: bounded, and without control
/// characters (which would let a value rewrite an operator's terminal).
fn check_text(fail: &mut impl FnMut(&'static str, String), field: &'static str, value: &str) {
    if value.len() > MAX_TEXT_LEN {
        fail(field, format!("is longer than {MAX_TEXT_LEN} bytes"));
    }
    if value.chars().any(char::is_control) {
        fail(
            field,
            "must not contain control characters (newlines, tabs, escapes)".into(),
        );
    }
}

/// Largest `extra` (as JSON) and deepest nesting it may have.
pub const MAX_EXTRA_BYTES: usize = 64 * 1024;
pub const MAX_EXTRA_DEPTH: usize = 16;

fn check_extra(extra: &serde_json::Map<String, serde_json::Value>) -> Result<(), String> {
    fn depth(value: &serde_json::Value) -> usize {
        match value {
            serde_json::Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
            serde_json::Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
            _ => 0,
        }
    }
    let deepest = 1 + extra.values().map(depth).max().unwrap_or(0);
    if deepest > MAX_EXTRA_DEPTH {
        return Err(format!(
            "is nested {deepest} levels deep; at most {MAX_EXTRA_DEPTH} are allowed"
        ));
    }
    let size = serde_json::to_vec(extra).map_or(usize::MAX, |v| v.len());
    if size > MAX_EXTRA_BYTES {
        return Err(format!(
            "is {size} bytes as JSON; at most {} KiB are allowed",
            MAX_EXTRA_BYTES / 1024
        ));
    }
    Ok(())
}

/// Path segments under `/v1/nodes/` that are routes, not nodes.
const RESERVED_NAMES: [&str; 2] = ["detail", "import"];

/// Names are identifiers in URLs and CLI arguments: RFC 3986 unreserved
/// characters only, and never something that parses as a UUID (that would
/// make `/v1/nodes/{ident}` ambiguous).
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(format!("must be 1 to {MAX_NAME_LEN} characters"));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~')))
    {
        return Err(format!(
            "contains {bad:?}; use letters, digits, '-', '.', '_' and '~' only"
        ));
    }
    if name == "." || name == ".." {
        // HTTP clients resolve dot segments before sending (curl turns
        // /v1/nodes/.. into /v1), so such a node could never be addressed.
        return Err(format!(
            "{name:?} is a path segment of its own in URLs; pick another name"
        ));
    }
    if RESERVED_NAMES.contains(&name) {
        return Err(format!(
            "{name:?} is reserved by the API (/v1/nodes/{name}); pick another name"
        ));
    }
    if Uuid::parse_str(name).is_ok() {
        return Err("must not be a UUID (names and uuids share /v1/nodes/{ident})".into());
    }
    Ok(())
}

/// A BMC address: a host name, IPv4 or IPv6 literal. Redfish addresses may
/// carry the scheme (`http://` or `https://`, the default), as in Ironic.
fn check_address(driver: Driver, address: &str) -> Result<(), String> {
    let host = match (driver, address.split_once("://")) {
        (_, None) => address,
        (Driver::Redfish, Some(("http" | "https", host))) => host,
        (Driver::Redfish, Some(_)) => {
            return Err(format!(
                "{address:?} has an unknown scheme; use https:// (the default) or http://"
            ))
        }
        (Driver::Ipmi, Some(_)) => {
            return Err(format!(
                "must be a host name or IP address, not a URL ({address:?})"
            ))
        }
    };
    // An IPv6 literal may be written in URL brackets: "[fe80::1]".
    let host = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(inner) if inner.parse::<std::net::Ipv6Addr>().is_ok() => inner,
        _ => host,
    };
    if host.contains(['/', ':']) && host.parse::<std::net::IpAddr>().is_err() {
        return Err(format!(
            "{address:?} must name only the host; put the port in bmc.port"
        ));
    }
    check_host(host)
}

fn check_host(address: &str) -> Result<(), String> {
    if address.is_empty() {
        return Err("must not be empty".into());
    }
    if address.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    let valid_hostname = address.len() <= 253
        && address.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if valid_hostname {
        Ok(())
    } else {
        Err(format!(
            "{address:?} is not a valid host name or IP address"
        ))
    }
}

/// A node as the store holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub uuid: Uuid,
    pub spec: NodeSpec,
    pub power_state: Option<PowerState>,
    /// The end state being driven to; `None` when nothing is pending.
    pub target_power_state: Option<PowerState>,
    pub boot_device: Option<String>,
    pub fault: Option<String>,
    pub locked: bool,
    pub lock_reason: Option<String>,
    pub locked_by: Option<String>,
    pub last_error: Option<String>,
    /// The conductor (host name) holding the node, with the lease expiry.
    pub reservation: Option<String>,
    pub reservation_expires_at: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    /// The conductor's bookkeeping (operation in flight, learned timings…).
    pub conductor: crate::operation::ConductorState,
}

impl Node {
    /// A node as enrollment would make it from `spec`, before anything
    /// happened to it: no state, no operation, not locked. For tests and
    /// fuzzing, which need a `Node` without a database.
    pub fn enrolled(spec: NodeSpec) -> Self {
        let now = OffsetDateTime::now_utc();
        Self {
            uuid: Uuid::new_v4(),
            spec,
            power_state: None,
            target_power_state: None,
            boot_device: None,
            fault: None,
            locked: false,
            lock_reason: None,
            locked_by: None,
            last_error: None,
            reservation: None,
            reservation_expires_at: None,
            created_at: now,
            updated_at: now,
            conductor: crate::operation::ConductorState::default(),
        }
    }

    /// Why the node cannot be changed or deleted right now, if it cannot.
    pub fn busy_reason(&self) -> Option<String> {
        self.busy_reason_at(OffsetDateTime::now_utc())
    }

    /// The reservation that holds the node at `now`: an expired lease (left
    /// by a conductor that stopped or crashed) holds nothing.
    pub fn live_reservation(&self, now: OffsetDateTime) -> Option<&str> {
        let expired = self.reservation_expires_at.is_some_and(|at| at <= now);
        self.reservation.as_deref().filter(|_| !expired)
    }

    /// [`Node::busy_reason`] as of `now`.
    pub fn busy_reason_at(&self, now: OffsetDateTime) -> Option<String> {
        if let Some(holder) = self.live_reservation(now) {
            return Some(format!("reserved by conductor {holder}"));
        }
        self.target_power_state
            .map(|t| format!("a power operation to {t:?} is in flight", t = t.as_str()))
    }
}

/// How a caller names a node: by uuid or by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeIdent {
    Uuid(Uuid),
    Name(String),
}

impl NodeIdent {
    pub fn parse(s: &str) -> Self {
        match Uuid::parse_str(s) {
            Ok(u) => NodeIdent::Uuid(u),
            Err(_) => NodeIdent::Name(s.to_owned()),
        }
    }
}

impl fmt::Display for NodeIdent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeIdent::Uuid(u) => write!(f, "{u}"),
            NodeIdent::Name(n) => f.write_str(n),
        }
    }
}

/// Filters of a node listing; `None` means "any".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeFilter {
    /// `Some(None)` selects nodes whose power state was never read.
    pub power_state: Option<Option<PowerState>>,
    pub maintenance: Option<bool>,
    pub driver: Option<Driver>,
    pub power_domain: Option<String>,
}

/// Node counts per power state (`None` = never read).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PowerStateCounts {
    pub counts: Vec<(Option<PowerState>, u64)>,
}

impl PowerStateCounts {
    pub fn get(&self, state: Option<PowerState>) -> u64 {
        self.counts
            .iter()
            .find(|(s, _)| *s == state)
            .map_or(0, |(_, n)| *n)
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().map(|(_, n)| n).sum()
    }
}

/// Outcome of one action event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventResult {
    Success,
    Error,
}

impl EventResult {
    pub fn as_str(self) -> &'static str {
        match self {
            EventResult::Success => "Success",
            EventResult::Error => "Error",
        }
    }
}

/// A new entry in the action log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAction {
    pub request_id: String,
    pub node_uuid: Uuid,
    pub action: String,
    pub user_id: Option<String>,
    /// The caller's user name, when its uid resolved to one.
    pub user_name: Option<String>,
    pub message: Option<String>,
    /// The project of a BMS-API caller (`/v1/{project_id}/…`).
    pub project_id: Option<String>,
    /// The batch sub-job this action belongs to.
    pub sub_job_id: Option<String>,
}

/// One step of an action (e.g. `bmc_power_off`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionEvent {
    pub event: String,
    pub start_time: OffsetDateTime,
    pub finish_time: Option<OffsetDateTime>,
    pub result: Option<EventResult>,
    pub traceback: Option<String>,
    pub host: Option<String>,
}

impl ActionEvent {
    /// A step that started at `start_time` and ended now, failed with
    /// `error` or succeeded, on conductor `host`.
    pub fn finished(
        event: &str,
        start_time: OffsetDateTime,
        error: Option<String>,
        host: &str,
    ) -> Self {
        Self {
            event: event.to_owned(),
            start_time,
            finish_time: Some(OffsetDateTime::now_utc()),
            result: Some(if error.is_some() {
                EventResult::Error
            } else {
                EventResult::Success
            }),
            traceback: error,
            host: Some(host.to_owned()),
        }
    }
}

/// Bounds on when actions were last updated (`changes-since`,
/// `changes-before`), both inclusive; `None` is open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpdatedWindow {
    pub since: Option<OffsetDateTime>,
    pub before: Option<OffsetDateTime>,
}

impl UpdatedWindow {
    pub fn contains(&self, t: OffsetDateTime) -> bool {
        self.since.is_none_or(|s| t >= s) && self.before.is_none_or(|b| t <= b)
    }
}

/// An entry of the action log (the instance-actions of the API), with events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    pub request_id: String,
    pub node_uuid: Uuid,
    pub action: String,
    pub user_id: Option<String>,
    pub user_name: Option<String>,
    pub start_time: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub message: Option<String>,
    pub project_id: Option<String>,
    pub sub_job_id: Option<String>,
    pub events: Vec<ActionEvent>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> NodeSpec {
        serde_json::from_value(serde_json::json!({
            "name": "node-1",
            "driver": "redfish",
            "bmc": {"address": "10.0.0.1", "username": "admin", "password": "pw"}
        }))
        .unwrap()
    }

    #[test]
    fn a_minimal_spec_is_valid_with_defaults() {
        let s = spec();
        assert!(s.validate().is_empty());
        assert!(s.bmc.verify_tls);
        assert_eq!(s.bmc_port(), 443);
    }

    #[test]
    fn dot_segments_are_not_names() {
        for name in [".", ".."] {
            assert!(check_name(name).is_err(), "{name}");
        }
        assert!(check_name("...").is_ok());
        assert!(check_name(".hidden").is_ok());
    }

    #[test]
    fn validation_reports_every_bad_field() {
        let mut s = spec();
        s.name = Some("bad name".into());
        s.driver = Driver::Ipmi;
        s.bmc.address = "https://x".into();
        s.bmc.username.clear();
        s.bmc.system_id = Some("1".into());
        let fields: Vec<_> = s.validate().into_iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            ["name", "bmc.address", "bmc.username", "bmc.system_id"]
        );
    }

    #[test]
    fn text_and_extra_are_bounded() {
        let mut s = spec();
        s.power_domain = Some("a\u{1b}[2J\nb".into());
        s.bmc.username = "ad\0min".into();
        let mut deep = serde_json::json!(1);
        for _ in 0..20 {
            deep = serde_json::json!([deep]);
        }
        s.extra.insert("deep".into(), deep);
        let fields: Vec<_> = s.validate().into_iter().map(|e| e.field).collect();
        assert_eq!(fields, ["bmc.username", "power_domain", "extra"]);
        let mut s = spec();
        s.extra
            .insert("big".into(), "x".repeat(MAX_EXTRA_BYTES).into());
        assert_eq!(s.validate()[0].field, "extra");
    }

    fn reserved_node(expires_at: Option<OffsetDateTime>) -> Node {
        Node {
            reservation: Some("conductor-a".into()),
            reservation_expires_at: expires_at,
            ..Node::enrolled(spec())
        }
    }

    #[test]
    fn an_expired_reservation_holds_nothing() {
        let now = OffsetDateTime::now_utc();
        let minute = time::Duration::minutes(1);
        let live = reserved_node(Some(now + minute));
        assert_eq!(
            live.busy_reason_at(now).as_deref(),
            Some("reserved by conductor conductor-a")
        );
        let expired = reserved_node(Some(now - minute));
        assert_eq!(expired.busy_reason_at(now), None);
        assert_eq!(expired.busy_reason(), None);
        // Expiring exactly now is expired; without an expiry it holds.
        assert_eq!(reserved_node(Some(now)).busy_reason_at(now), None);
        assert!(reserved_node(None).busy_reason_at(now).is_some());
        let mut moving = reserved_node(Some(now - minute));
        moving.target_power_state = Some(PowerState::Off);
        assert!(moving.busy_reason_at(now).unwrap().contains("power off"));
    }

    #[test]
    fn names_that_are_uuids_are_refused() {
        let mut s = spec();
        s.name = Some(Uuid::new_v4().to_string());
        assert_eq!(s.validate()[0].field, "name");
    }

    #[test]
    fn a_password_of_the_wrong_type_is_not_echoed() {
        for password in [
            serde_json::json!(31_415_926),
            serde_json::json!(-31_415_926),
            serde_json::json!(31.415_926),
            serde_json::json!(31_415_926_000_000_000_000_000_u128 as f64),
        ] {
            let err = serde_json::from_value::<Bmc>(serde_json::json!(
                {"address": "h", "username": "u", "password": password}
            ))
            .unwrap_err()
            .to_string();
            assert!(!err.contains("31415926") && !err.contains("31.4"), "{err}");
            assert!(err.contains("expected the password as a string"), "{err}");
        }
        let err = serde_json::from_str::<Bmc>(
            r#"{"address": "h", "username": "u", "password": 314159260000000000000000000}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(!err.contains("31415926") && !err.contains("31.4"), "{err}");
    }

    #[test]
    fn the_mask_is_not_a_password() {
        let mut s = spec();
        s.bmc.password = Some(Secret::new(MASK));
        let errors = s.validate();
        assert_eq!(errors[0].field, "bmc.password");
        assert!(errors[0].reason.contains("send the real password"));
    }

    #[test]
    fn secret_never_prints() {
        let s = spec();
        let shown = format!("{s:?} {}", serde_json::to_string(&s).unwrap());
        assert!(!shown.contains("\"pw\""), "{shown}");
        assert!(shown.contains(MASK));
        assert_eq!(s.bmc.password.as_ref().map(Secret::expose), Some("pw"));
    }

    #[test]
    fn ipmi_passwords_fit_rakp() {
        let mut s = spec();
        s.driver = Driver::Ipmi;
        s.bmc.password = Some(Secret::new("x".repeat(20)));
        assert!(s.validate().is_empty());
        s.bmc.password = Some(Secret::new("x".repeat(21)));
        let errors = s.validate();
        assert_eq!(errors[0].field, "bmc.password");
        assert!(errors[0].reason.contains("at most 20 bytes"), "{errors:?}");
        s.driver = Driver::Redfish;
        assert!(s.validate().is_empty(), "Redfish has no such limit");
    }

    #[test]
    fn password_and_password_file_exclude_each_other() {
        let mut s = spec();
        s.bmc.password_file = Some("/etc/baton/bmc/node-1".into());
        let errors = s.validate();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].field, "bmc.password_file");
        assert!(errors[0].reason.contains("only one"), "{errors:?}");
        s.bmc.password = None;
        assert!(s.validate().is_empty());
        assert_eq!(s.require_password(), None);
        s.bmc.password_file = Some("relative/pw".into());
        let errors = s.validate();
        assert_eq!(errors[0].field, "bmc.password_file");
        assert!(errors[0].reason.contains("absolute"), "{errors:?}");
        s.bmc.password_file = None;
        assert!(s.validate().is_empty(), "neither is valid on its own");
        let missing = s.require_password().unwrap();
        assert_eq!(missing.field, "bmc.password");
        assert!(missing.reason.contains("bmc.password_file"), "{missing}");
    }

    #[test]
    fn redfish_addresses_may_carry_a_scheme() {
        assert!(check_address(Driver::Redfish, "http://127.0.0.1").is_ok());
        assert!(check_address(Driver::Redfish, "https://bmc-1.lab").is_ok());
        assert!(check_address(Driver::Redfish, "ftp://bmc").is_err());
        assert!(check_address(Driver::Redfish, "https://bmc:8443").is_err());
        assert!(check_address(Driver::Redfish, "https://bmc/redfish").is_err());
        assert!(check_address(Driver::Ipmi, "http://bmc").is_err());
        assert!(check_address(Driver::Ipmi, "fe80::1").is_ok());
        assert!(check_address(Driver::Redfish, "https://[fe80::1]").is_ok());
        assert!(check_address(Driver::Ipmi, "[::1]").is_ok());
        assert!(check_address(Driver::Ipmi, "[bmc]").is_err());
    }

    #[test]
    fn host_rules() {
        assert!(check_host("bmc-1.rack2.example").is_ok());
        assert!(check_host("::1").is_ok());
        assert!(check_host("bad_host").is_err());
        assert!(check_host("-x").is_err());
    }
}
