//! `baton node …`: enroll (create, import), list, show, change (set, unset)
//! and remove (delete) nodes; the power, boot, action, lock, maintenance and
//! action-log commands live in `power` and `log`. A node is named by its
//! name or uuid; a name that is not enrolled gets the closest enrolled names
//! as suggestions.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use clap::{Args, Subcommand, ValueEnum};
use http::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

use super::fields::{self, Change, PASSWORD_ENV};
use super::power::{ActionArgs, BootArgs, LockArgs, MaintenanceArgs, NodeArg, PowerArgs};
use super::values::{DriverArg, PowerStateArg};
use super::{emit, log, output, paging, power, suggest, CliError};
use crate::api::types::{ImportResult, NodeList, NodeSummary, NodeView};
use crate::client::{Client, ClientError, RawResponse};

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// List nodes (all pages, unless --limit is given).
    #[command(after_help = "Examples:\n  \
        baton node list\n  \
        baton node list --driver ipmi --power-domain rack-1 --long\n  \
        baton node list --power-state off --maintenance false\n  \
        baton node list --limit 100                       # one page; the next page's command goes to stderr\n  \
        baton --json node list --limit 100 | jq -r '.next' # present while more pages may follow")]
    List(ListArgs),
    /// Show one node (by name or uuid).
    #[command(after_help = "Examples:\n  \
        baton node show node-0001\n  \
        baton --json node show 6f1c2d3e-0000-4000-8000-000000000001")]
    Show {
        /// Node name or uuid.
        node: String,
    },
    /// Enroll one node. The BMC password comes from BATON_BMC_PASSWORD or stdin (--password-stdin),
    /// or is not stored: --password-file or --default-password.
    #[command(after_help = "Examples:\n  \
        BATON_BMC_PASSWORD=... baton node create --name web-1 --driver redfish \\\n      \
            --address 10.1.0.5 --username admin --power-domain rack-a --extra owner=ops\n  \
        pass show bmc/web-2 | baton node create --name web-2 --driver ipmi \\\n      \
            --address 10.1.0.6 --username admin --password-stdin\n  \
        baton node create --name web-3 --driver ipmi --address 10.1.0.7 --username admin \\\n      \
            --password-file /etc/baton/bmc/web-3")]
    Create(Box<CreateArgs>),
    /// Enroll every node of a JSON inventory file (an array), all or none.
    #[command(after_help = "Examples:\n  \
        baton node import demo/spare.json\n  \
        baton-hwsim --nodes 4 --export-inventory rack.json & baton node import rack.json\n  \
        cat nodes.json | baton node import -")]
    Import {
        /// The inventory: a JSON array of nodes as `baton --json node show` prints them
        /// (without uuid and states); "-" reads stdin.
        file: PathBuf,
    },
    /// Change fields: PATH=VALUE, e.g. power_domain=rack-2 bmc/port=623 extra/owner=lab.
    #[command(
        after_help = "Text fields (name, driver, power_domain, maintenance_reason, bmc/address, \
bmc/username, bmc/system_id, bmc/ca_file) take VALUE as text, bmc/port a port number, maintenance \
and bmc/verify_tls true or false; under extra/ (and for whole objects) VALUE is JSON when it \
parses (7, true, [\"a\"], \"quoted\"), else text. The BMC password is never an argument: name the \
bare path bmc/password to read it from BATON_BMC_PASSWORD, or use --password-stdin.\n\n\
Examples:\n  \
        baton node set web-1 bmc/port=8443 extra/slot=7\n  \
        baton node set web-1 name=web-01 power_domain=2\n  \
        BATON_BMC_PASSWORD=... baton node set web-1 bmc/password\n  \
        pass show bmc/web-1 | baton node set web-1 --password-stdin"
    )]
    Set(SetArgs),
    /// Remove optional fields, e.g. power_domain extra/owner.
    #[command(after_help = "Examples:\n  \
        baton node unset web-1 power_domain\n  \
        baton node unset web-1 extra/owner extra/slot")]
    Unset {
        /// Node name or uuid.
        node: String,
        /// Fields to remove (power_domain, maintenance_reason, bmc/port, extra/KEY, …).
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<String>,
    },
    /// Remove nodes from baton (the servers are not touched). Goes on past
    /// nodes it cannot delete, reports each, and exits 1 if any failed.
    #[command(after_help = "Examples:\n  \
        baton node delete web-1\n  \
        baton node delete spare-0000 spare-0001 spare-0002")]
    Delete {
        /// Node names or uuids.
        #[arg(required = true)]
        nodes: Vec<String>,
    },
    /// Change a node's power: on, off, reboot, soft-off, soft-reboot, cycle.
    /// batond accepts the change and carries it out; --wait follows it to
    /// its end (exit 1 if it failed).
    #[command(after_help = "Examples:\n  \
        baton node power node-0001 off\n  \
        baton node power node-0001 on --wait\n  \
        baton node power node-0001 soft-off --wait --timeout 300\n  \
        baton node actions node-0001                 # how it went")]
    Power(PowerArgs),
    /// Set the device the node boots from next (or always, with --persistent).
    #[command(after_help = "Examples:\n  \
        baton node boot node-0001 pxe\n  \
        baton node boot node-0001 disk --persistent")]
    Boot(BootArgs),
    /// Run one action of the server-action API (os-start, os-stop, reboot, …).
    #[command(after_help = "Examples:\n  \
        baton node action node-0001 os-stop --type SOFT\n  \
        baton node action node-0001 reboot --type HARD --wait\n  \
        baton node action node-0001 rescue            # one network boot, then restart\n  \
        baton node action node-0001 trigger_crash_dump\n  \
        baton node action node-0001 os-reset_status   # admin: clear a stuck operation")]
    Action(ActionArgs),
    /// Lock a node: power and boot actions are refused until it is unlocked.
    #[command(after_help = "Examples:\n  \
        baton node lock node-0001 --reason \"firmware update\"")]
    Lock(LockArgs),
    /// Unlock a node.
    #[command(after_help = "Examples:\n  baton node unlock node-0001")]
    Unlock(NodeArg),
    /// Put a node in maintenance (on) or take it out (off); power and boot
    /// actions are refused while it is in.
    #[command(after_help = "Examples:\n  \
        baton node maintenance node-0001 on --reason \"replacing a DIMM\"\n  \
        baton node maintenance node-0001 off")]
    Maintenance(MaintenanceArgs),
    /// A node's action log (every power change, lock, maintenance, sync
    /// correction), or one action with its events.
    #[command(after_help = "Examples:\n  \
        baton node actions node-0001\n  \
        baton node actions node-0001 req-7d2c6a8e-5d0c-4a4e-9a51-1b2f3c4d5e6f\n  \
        baton --json node actions node-0001 --limit 20")]
    Actions(log::ActionsArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only nodes in this power state.
    #[arg(long, value_enum)]
    pub power_state: Option<PowerStateArg>,
    /// Only nodes in (true) or out of (false) maintenance.
    #[arg(long)]
    pub maintenance: Option<bool>,
    /// Only nodes with this driver.
    #[arg(long, value_enum)]
    pub driver: Option<DriverArg>,
    /// Only nodes in this power domain (e.g. rack-1).
    #[arg(long)]
    pub power_domain: Option<String>,
    /// Show one page of at most this many nodes (1–10000).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=10_000))]
    pub limit: Option<u16>,
    /// Start after this node uuid (with --limit): the last uuid of the previous page.
    #[arg(long, requires = "limit")]
    pub marker: Option<String>,
    /// Show every field (the detail listing).
    #[arg(long)]
    pub long: bool,
}

/// Where the BMC password comes from when it is set.
#[derive(Debug, Args)]
pub struct PasswordArgs {
    /// Read the BMC password from stdin (a trailing newline is dropped) instead of BATON_BMC_PASSWORD.
    #[arg(long)]
    pub password_stdin: bool,
    /// Refused: a password on the command line is visible to every user (ps);
    /// use BATON_BMC_PASSWORD or --password-stdin.
    #[arg(long, hide = true, value_name = "PASSWORD")]
    pub password: Option<String>,
}

impl PasswordArgs {
    /// The password from stdin or the environment; refuses one given on argv.
    fn read(&self) -> Result<String, CliError> {
        if self.password.is_some() {
            return Err(CliError::Usage(format!(
                "--password is not accepted: other users can read command lines; \
                 set {PASSWORD_ENV} or pipe the password to --password-stdin"
            )));
        }
        fields::read_password(self.password_stdin).map_err(CliError::Usage)
    }
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// A unique name (letters, digits, "-", "_", "."); the node is addressed by it or its uuid.
    #[arg(long)]
    pub name: Option<String>,
    /// How batond talks to the BMC.
    #[arg(long, value_enum)]
    pub driver: DriverArg,
    /// BMC host name or IP address (Redfish: may start with http:// or https://).
    #[arg(long)]
    pub address: String,
    /// BMC port (default 443 for redfish, 623 for ipmi).
    #[arg(long)]
    pub port: Option<u16>,
    /// BMC user name.
    #[arg(long)]
    pub username: String,
    #[command(flatten)]
    pub password: PasswordArgs,
    /// Store no password: batond reads it from this file (an absolute path on batond's host,
    /// readable by its user) when it builds the node's driver.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["password_stdin", "default_password"])]
    pub password_file: Option<String>,
    /// Store no password: batond uses its default BMC password (the bmc-password systemd
    /// credential).
    #[arg(long, conflicts_with = "password_stdin")]
    pub default_password: bool,
    /// Redfish system id (discovered when the BMC has exactly one system).
    #[arg(long)]
    pub system_id: Option<String>,
    /// Do not verify the BMC's TLS certificate.
    #[arg(long)]
    pub insecure: bool,
    /// CA bundle to verify the BMC's certificate with.
    #[arg(long)]
    pub ca_file: Option<String>,
    /// Power domain (rack, PDU) the node belongs to, e.g. rack-1.
    #[arg(long)]
    pub power_domain: Option<String>,
    /// KEY=VALUE stored in the node's extra, VALUE read as `set extra/KEY=VALUE` reads it (repeatable).
    #[arg(long = "extra", value_name = "KEY=VALUE")]
    pub extra: Vec<String>,
}

#[derive(Debug, Args)]
pub struct SetArgs {
    /// Node name or uuid.
    pub node: String,
    /// PATH=VALUE changes; the bare path bmc/password sets the password from BATON_BMC_PASSWORD.
    #[arg(value_name = "PATH=VALUE", required_unless_present = "password_stdin")]
    pub changes: Vec<String>,
    #[command(flatten)]
    pub password: PasswordArgs,
}

pub(super) async fn run(client: &Client, cmd: &NodeCommand, json: bool) -> Result<(), CliError> {
    match cmd {
        NodeCommand::List(args) => list(client, args, json).await,
        NodeCommand::Show { node } => {
            let view: NodeView = on_node(client, node, client.get(&node_path(node)).await).await?;
            emit(json, &view, output::node_detail)
        }
        NodeCommand::Create(args) => {
            let body = create_body(args)?;
            let view: NodeView = client.send_json(Method::POST, "/v1/nodes", &body).await?;
            emit(json, &view, output::node_detail)
        }
        NodeCommand::Import { file } => {
            let body = read_inventory(file)?;
            let result: ImportResult = client
                .request(Method::POST, "/v1/nodes/import", Some(body))
                .await?
                .into_json()?;
            emit(json, &result, |r| format!("imported {} nodes\n", r.count))
        }
        NodeCommand::Set(args) => {
            let ops = set_ops(args)?;
            patch(client, &args.node, &ops, json).await
        }
        NodeCommand::Unset { node, paths } => {
            let ops: Vec<_> = paths
                .iter()
                .map(|p| json!({"op": "remove", "path": fields::pointer(p)}))
                .collect();
            patch(client, node, &ops, json).await
        }
        NodeCommand::Delete { nodes } => delete(client, nodes, json).await,
        NodeCommand::Power(args) => power::power(client, args, json).await,
        NodeCommand::Boot(args) => power::boot(client, args, json).await,
        NodeCommand::Action(args) => power::action(client, args, json).await,
        NodeCommand::Lock(args) => power::lock(client, args, json).await,
        NodeCommand::Unlock(args) => power::unlock(client, args, json).await,
        NodeCommand::Maintenance(args) => power::maintenance(client, args, json).await,
        NodeCommand::Actions(args) => log::run(client, args, json).await,
    }
}

async fn patch(client: &Client, node: &str, ops: &[Value], json: bool) -> Result<(), CliError> {
    let result = client
        .send_json(Method::PATCH, &node_path(node), &ops)
        .await;
    let view: NodeView = on_node(client, node, result).await?;
    emit(json, &view, output::node_detail)
}

/// Deletes each node in turn, reporting each; one that cannot be deleted
/// does not stop the rest (batond being unreachable does).
async fn delete(client: &Client, nodes: &[String], json: bool) -> Result<(), CliError> {
    let mut deleted = Vec::new();
    let mut failed = Vec::new();
    for node in nodes {
        let result = client
            .request(Method::DELETE, &node_path(node), None)
            .await
            .and_then(RawResponse::into_empty);
        match on_node(client, node, result).await {
            Ok(()) => {
                if !json {
                    println!("deleted {node}");
                }
                deleted.push(node.as_str());
            }
            Err(err) if err.exit_code() == 3 => return Err(err),
            Err(err) => {
                if !json {
                    eprintln!("baton: {err}");
                }
                failed.push(json!({"node": node, "error": err.envelope()["error"]}));
            }
        }
    }
    if json {
        emit(true, &json!({"deleted": deleted, "failed": failed}), |_| {
            String::new()
        })?;
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(CliError::SomeFailed {
            failed: failed.len(),
            total: nodes.len(),
        })
    }
}

/// The result of a request about node `ident`, with "not found" turned into
/// a message that suggests enrolled names close to it.
pub(super) async fn on_node<T>(
    client: &Client,
    ident: &str,
    result: Result<T, impl Into<CliError>>,
) -> Result<T, CliError> {
    match result.map_err(Into::into) {
        Err(CliError::Client(ClientError::Api {
            status, request_id, ..
        })) if status == StatusCode::NOT_FOUND => Err(CliError::NodeNotFound {
            ident: ident.to_owned(),
            suggestions: similar_names(client, ident).await,
            request_id,
        }),
        other => other,
    }
}

/// Enrolled names close to `ident` (none when the listing fails: the
/// suggestion is a courtesy, the "not found" stands on its own).
async fn similar_names(client: &Client, ident: &str) -> Vec<String> {
    let url = format!("/v1/nodes?limit={}", crate::api::nodes::MAX_LIMIT);
    match paging::fetch::<NodeList<NodeSummary>>(client, url, false).await {
        Ok(list) => suggest::similar(ident, list.nodes.iter().filter_map(|n| n.name.as_deref())),
        Err(_) => Vec::new(),
    }
}

async fn list(client: &Client, args: &ListArgs, json: bool) -> Result<(), CliError> {
    let first = list_url(args);
    if args.long {
        list_as::<NodeView>(client, args, first, json, output::node_table_long).await
    } else {
        list_as::<NodeSummary>(client, args, first, json, output::node_table).await
    }
}

async fn list_as<T: DeserializeOwned + Serialize>(
    client: &Client,
    args: &ListArgs,
    first: String,
    json: bool,
    table: fn(&[T]) -> String,
) -> Result<(), CliError> {
    let page: NodeList<T> = paging::fetch(client, first, args.limit.is_some()).await?;
    emit(json, &page, |p| table(&p.nodes))?;
    if json {
        return Ok(());
    }
    if let Some(marker) = page.next.as_deref().and_then(paging::marker_of) {
        eprintln!(
            "more nodes may follow; next page: {}",
            next_page_command(args, &marker)
        );
    } else if page.nodes.is_empty() {
        eprintln!("no nodes");
    }
    Ok(())
}

fn list_url(args: &ListArgs) -> String {
    let base = if args.long {
        "/v1/nodes/detail"
    } else {
        "/v1/nodes"
    };
    let query = filter_pairs(args)
        .into_iter()
        .chain(args.limit.map(|v| ("limit", v.to_string())))
        .chain(args.marker.clone().map(|v| ("marker", v)));
    let encoded = serde_urlencoded::to_string(query.collect::<Vec<_>>()).unwrap_or_default();
    if encoded.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{encoded}")
    }
}

/// The listing's filters as API query pairs.
fn filter_pairs(args: &ListArgs) -> Vec<(&'static str, String)> {
    let mut pairs = Vec::new();
    if let Some(v) = args.power_state {
        pairs.push(("power_state", v.api_value().to_owned()));
    }
    if let Some(v) = args.maintenance {
        pairs.push(("maintenance", v.to_string()));
    }
    if let Some(v) = args.driver {
        pairs.push(("driver", baton_state::Driver::from(v).as_str().to_owned()));
    }
    if let Some(v) = &args.power_domain {
        pairs.push(("power_domain", v.clone()));
    }
    pairs
}

/// The command that lists the page after the one ending with `marker`.
fn next_page_command(args: &ListArgs, marker: &str) -> String {
    let mut words = vec!["baton node list".to_owned()];
    for (key, value) in filter_pairs(args) {
        let value = match key {
            "power_state" => args
                .power_state
                .and_then(|p| p.to_possible_value())
                .map_or(value, |p| p.get_name().to_owned()),
            _ => value,
        };
        words.push(format!(
            "--{} {}",
            key.replace('_', "-"),
            paging::shell_word(&value)
        ));
    }
    if let Some(limit) = args.limit {
        words.push(format!("--limit {limit}"));
    }
    words.push(format!("--marker {marker}"));
    if args.long {
        words.push("--long".to_owned());
    }
    words.join(" ")
}

pub(super) fn node_path(ident: &str) -> String {
    format!("/v1/nodes/{}", path_segment(ident))
}

/// Percent-encodes a path segment (names are restricted, but a typo should
/// give "not found", not a malformed request).
pub(super) fn path_segment(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn set_ops(args: &SetArgs) -> Result<Vec<Value>, CliError> {
    let mut ops = Vec::new();
    let mut wants_password = args.password.password_stdin || args.password.password.is_some();
    for arg in &args.changes {
        match fields::parse_change(arg).map_err(CliError::Usage)? {
            Change::Set { path, value } => {
                // A node has a password or a password file, not both:
                // setting the file drops the stored password.
                if path == fields::PASSWORD_FILE_PATH {
                    ops.push(add_op(fields::PASSWORD_PATH, Value::Null));
                }
                ops.push(add_op(&path, value));
            }
            Change::Password => wants_password = true,
        }
    }
    if wants_password {
        let password = args.password.read()?;
        ops.push(add_op(fields::PASSWORD_FILE_PATH, Value::Null));
        ops.push(add_op(fields::PASSWORD_PATH, Value::String(password)));
    }
    Ok(ops)
}

/// `add` replaces an existing member and creates a missing one (`extra/new`).
fn add_op(path: &str, value: Value) -> Value {
    let mut op = json!({"op": "add", "path": fields::pointer(path)});
    op["value"] = value;
    op
}

fn create_body(args: &CreateArgs) -> Result<Value, CliError> {
    let extra = args
        .extra
        .iter()
        .map(|kv| fields::parse_extra(kv))
        .collect::<Result<serde_json::Map<_, _>, _>>()
        .map_err(CliError::Usage)?;
    let mut bmc = json!({
        "address": args.address,
        "port": args.port,
        "username": args.username,
        "system_id": args.system_id,
        "verify_tls": !args.insecure,
        "ca_file": args.ca_file,
    });
    if let Some(file) = &args.password_file {
        bmc["password_file"] = json!(file);
    } else if !args.default_password {
        bmc["password"] = json!(args.password.read()?);
    }
    Ok(json!({
        "name": args.name,
        "driver": baton_state::Driver::from(args.driver),
        "power_domain": args.power_domain,
        "extra": extra,
        "bmc": bmc,
    }))
}

/// Reads an inventory and checks that it is a JSON array before sending it
/// as it is: a single node (an object) is pointed at `baton node create`.
fn read_inventory(file: &Path) -> Result<Bytes, CliError> {
    let text = if file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text).map(|_| text)
    } else {
        std::fs::read_to_string(file)
    }
    .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", file.display())))?;
    serde_json::from_str::<serde::de::IgnoredAny>(&text)
        .map_err(|e| CliError::Usage(format!("{} is not valid JSON: {e}", file.display())))?;
    match text.trim_start().as_bytes().first() {
        Some(b'[') => Ok(Bytes::from(text)),
        Some(b'{') => Err(CliError::Usage(format!(
            "{} holds one node (a JSON object), but an inventory is a JSON array: \
             put [ ] around it, or enroll the node with `baton node create`",
            file.display()
        ))),
        _ => Err(CliError::Usage(format!(
            "{} is not an inventory: expected a JSON array of nodes",
            file.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list_args(f: impl FnOnce(&mut ListArgs)) -> ListArgs {
        let mut args = ListArgs {
            power_state: None,
            maintenance: None,
            driver: None,
            power_domain: None,
            limit: None,
            marker: None,
            long: false,
        };
        f(&mut args);
        args
    }

    #[test]
    fn node_paths_are_encoded() {
        assert_eq!(node_path("n-1"), "/v1/nodes/n-1");
        assert_eq!(node_path("a b/c"), "/v1/nodes/a%20b%2Fc");
    }

    #[test]
    fn list_urls_carry_the_api_spelling() {
        let args = list_args(|a| {
            a.power_state = Some(PowerStateArg::On);
            a.driver = Some(DriverArg::Ipmi);
            a.limit = Some(5);
        });
        assert_eq!(
            list_url(&args),
            "/v1/nodes?power_state=power+on&driver=ipmi&limit=5"
        );
        assert_eq!(list_url(&list_args(|a| a.long = true)), "/v1/nodes/detail");
    }

    #[test]
    fn the_next_page_command_repeats_the_filters() {
        let args = list_args(|a| {
            a.power_state = Some(PowerStateArg::Off);
            a.power_domain = Some("rack 1".into());
            a.limit = Some(2);
            a.long = true;
        });
        let next = "/v1/nodes/detail?limit=2&marker=abc&power_state=power+off";
        assert_eq!(paging::marker_of(next).as_deref(), Some("abc"));
        assert_eq!(
            next_page_command(&args, "abc"),
            "baton node list --power-state off --power-domain 'rack 1' --limit 2 --marker abc --long"
        );
    }
}
