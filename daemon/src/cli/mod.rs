//! The `baton` admin CLI: argument parsing (clap), one function per command,
//! and the mapping of failures to exit codes:
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | the API answered with an error (its message and request id go to stderr) |
//! | 2 | usage error (bad arguments, unreadable input file) |
//! | 3 | batond cannot be reached (socket missing, permission denied, nothing listening) |

mod output;

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand};
use clap_complete::Shell;
use http::Method;
use serde::Serialize;

use crate::api::types::{ConductorStatus, ImportResult, NodeList, NodeSummary, NodeView};
use crate::client::{Client, ClientError};
use crate::config::DEFAULT_SOCKET;

#[derive(Debug, Parser)]
#[command(
    name = "baton",
    version,
    about = "Admin CLI for batond, the bare-metal conductor"
)]
pub struct Cli {
    /// batond's API socket.
    #[arg(long, global = true, env = "BATON_SOCKET", default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// Print the API's JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Enroll, list, show, change and remove nodes.
    #[command(subcommand)]
    Node(NodeCommand),
    /// The conductor's health.
    #[command(subcommand)]
    Conductor(ConductorCommand),
    /// Print a shell completion script.
    Completions {
        #[arg(value_enum)]
        shell: Shell,
    },
}

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// List nodes (all pages, unless --limit is given).
    List(ListArgs),
    /// Show one node (by name or uuid).
    Show { node: String },
    /// Enroll one node.
    Create(Box<CreateArgs>),
    /// Enroll every node of a JSON inventory file ("-" for stdin), all or none.
    Import { file: PathBuf },
    /// Change fields: PATH=VALUE, e.g. power_domain=rack-2 bmc/port=623 extra/owner=lab.
    /// VALUE is read as JSON when it parses (623, true, null, "quoted"), else as text.
    Set {
        node: String,
        #[arg(required = true, value_name = "PATH=VALUE")]
        changes: Vec<String>,
    },
    /// Remove optional fields, e.g. power_domain extra/owner.
    Unset {
        node: String,
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<String>,
    },
    /// Remove nodes from baton (the servers are not touched).
    Delete {
        #[arg(required = true)]
        nodes: Vec<String>,
    },
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only nodes in this power state ("power on", "power off", "error", "null").
    #[arg(long)]
    pub power_state: Option<String>,
    /// Only nodes in (true) or out of (false) maintenance.
    #[arg(long)]
    pub maintenance: Option<bool>,
    /// Only nodes with this driver (redfish, ipmi).
    #[arg(long)]
    pub driver: Option<String>,
    /// Only nodes in this power domain.
    #[arg(long)]
    pub power_domain: Option<String>,
    /// Show one page of at most this many nodes.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Start after this node uuid (with --limit).
    #[arg(long, requires = "limit")]
    pub marker: Option<String>,
    /// Show every field (the detail listing).
    #[arg(long)]
    pub long: bool,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    #[arg(long)]
    pub name: Option<String>,
    /// redfish or ipmi.
    #[arg(long)]
    pub driver: String,
    /// BMC host name or IP address.
    #[arg(long)]
    pub address: String,
    /// BMC port (default 443 for redfish, 623 for ipmi).
    #[arg(long)]
    pub port: Option<u16>,
    #[arg(long)]
    pub username: String,
    /// BMC password; prefer the environment variable, which other users cannot see.
    #[arg(long, env = "BATON_BMC_PASSWORD", hide_env_values = true)]
    pub password: String,
    /// Redfish system id (discovered when the BMC has exactly one system).
    #[arg(long)]
    pub system_id: Option<String>,
    /// Do not verify the BMC's TLS certificate.
    #[arg(long)]
    pub insecure: bool,
    /// CA bundle to verify the BMC's certificate with.
    #[arg(long)]
    pub ca_file: Option<String>,
    #[arg(long)]
    pub power_domain: Option<String>,
    /// Free-form KEY=VALUE stored in the node's extra (repeatable).
    #[arg(long = "extra", value_name = "KEY=VALUE")]
    pub extra: Vec<String>,
}

/// What a command failed with.
#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("{0}")]
    Usage(String),
}

impl CliError {
    fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => 2,
            CliError::Client(e) if e.is_unreachable() => 3,
            CliError::Client(_) => 1,
        }
    }
}

/// Runs the CLI with the process's arguments; returns the exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Completions { shell } = cli.command {
        clap_complete::generate(shell, &mut Cli::command(), "baton", &mut std::io::stdout());
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("baton: cannot start: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(&cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            report(&err, cli.json);
            ExitCode::from(err.exit_code())
        }
    }
}

/// Errors go to stderr: a line for people, or with `--json` the API's error
/// envelope (or one of the same shape) so scripts can read it.
fn report(err: &CliError, json: bool) {
    if !json {
        eprintln!("baton: {err}");
        return;
    }
    let (code, message, request_id) = match err {
        CliError::Client(ClientError::Api {
            code,
            message,
            request_id,
            ..
        }) => (code.clone(), message.clone(), Some(request_id.clone())),
        CliError::Client(e) if e.is_unreachable() => {
            ("unreachable".to_owned(), e.to_string(), None)
        }
        other => ("cliError".to_owned(), other.to_string(), None),
    };
    let envelope =
        serde_json::json!({"error": {"code": code, "message": message, "request_id": request_id}});
    eprintln!("{envelope}");
}

async fn run(cli: &Cli) -> Result<(), CliError> {
    let client = Client::new(&cli.socket);
    match &cli.command {
        Command::Node(cmd) => node_command(&client, cmd, cli.json).await,
        Command::Conductor(ConductorCommand::Status) => {
            let status: ConductorStatus = client.get("/v1/conductor").await?;
            emit(cli.json, &status, output::conductor_status)
        }
        Command::Completions { .. } => Ok(()),
    }
}

#[derive(Debug, Subcommand)]
pub enum ConductorCommand {
    /// Version, uptime, node counts, process and database figures.
    Status,
}

async fn node_command(client: &Client, cmd: &NodeCommand, json: bool) -> Result<(), CliError> {
    match cmd {
        NodeCommand::List(args) => list(client, args, json).await,
        NodeCommand::Show { node } => {
            let view: NodeView = client.get(&node_path(node)).await?;
            emit(json, &view, output::node_detail)
        }
        NodeCommand::Create(args) => {
            let body = create_body(args)?;
            let view: NodeView = client.send_json(Method::POST, "/v1/nodes", &body).await?;
            emit(json, &view, output::node_detail)
        }
        NodeCommand::Import { file } => {
            let entries = read_inventory(file)?;
            let result: ImportResult = client
                .send_json(Method::POST, "/v1/nodes/import", &entries)
                .await?;
            emit(json, &result, |r| format!("imported {} nodes\n", r.count))
        }
        NodeCommand::Set { node, changes } => {
            let ops = changes
                .iter()
                .map(|c| set_op(c))
                .collect::<Result<Vec<_>, _>>()?;
            let view: NodeView = client
                .send_json(Method::PATCH, &node_path(node), &ops)
                .await?;
            emit(json, &view, output::node_detail)
        }
        NodeCommand::Unset { node, paths } => {
            let ops: Vec<_> = paths
                .iter()
                .map(|p| serde_json::json!({"op": "remove", "path": pointer(p)}))
                .collect();
            let view: NodeView = client
                .send_json(Method::PATCH, &node_path(node), &ops)
                .await?;
            emit(json, &view, output::node_detail)
        }
        NodeCommand::Delete { nodes } => {
            for node in nodes {
                client
                    .request(Method::DELETE, &node_path(node), None)
                    .await?
                    .into_empty()?;
                if !json {
                    println!("deleted {node}");
                }
            }
            Ok(())
        }
    }
}

async fn list(client: &Client, args: &ListArgs, json: bool) -> Result<(), CliError> {
    let mut query: Vec<(&str, String)> = Vec::new();
    if let Some(v) = &args.power_state {
        query.push(("power_state", v.clone()));
    }
    if let Some(v) = args.maintenance {
        query.push(("maintenance", v.to_string()));
    }
    if let Some(v) = &args.driver {
        query.push(("driver", v.clone()));
    }
    if let Some(v) = &args.power_domain {
        query.push(("power_domain", v.clone()));
    }
    if let Some(v) = args.limit {
        query.push(("limit", v.to_string()));
    }
    if let Some(v) = &args.marker {
        query.push(("marker", v.clone()));
    }
    let base = if args.long {
        "/v1/nodes/detail"
    } else {
        "/v1/nodes"
    };
    let encoded = serde_urlencoded::to_string(&query).unwrap_or_default();
    let first = if encoded.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{encoded}")
    };
    let single_page = args.limit.is_some();
    if args.long {
        let nodes: Vec<NodeView> = fetch_pages(client, first, single_page).await?;
        emit(json, &nodes, |n| output::node_table_long(n))
    } else {
        let nodes: Vec<NodeSummary> = fetch_pages(client, first, single_page).await?;
        emit(json, &nodes, |n| output::node_table(n))
    }
}

/// Follows `next` links until the listing ends (or only the first page).
async fn fetch_pages<T: serde::de::DeserializeOwned>(
    client: &Client,
    first: String,
    single_page: bool,
) -> Result<Vec<T>, CliError> {
    let mut connection = client.connect().await?;
    let mut all = Vec::new();
    let mut url = Some(first);
    while let Some(current) = url.take() {
        let page: NodeList<T> = connection
            .request(Method::GET, &current, None)
            .await?
            .into_json()?;
        all.extend(page.nodes);
        if !single_page {
            url = page.next;
        }
    }
    Ok(all)
}

fn emit<T: Serialize>(
    json: bool,
    value: &T,
    human: impl FnOnce(&T) -> String,
) -> Result<(), CliError> {
    if json {
        let text =
            serde_json::to_string_pretty(value).map_err(|e| CliError::Usage(e.to_string()))?;
        println!("{text}");
    } else {
        print!("{}", human(value));
    }
    Ok(())
}

fn node_path(ident: &str) -> String {
    let encoded: String = form_urlencoded_segment(ident);
    format!("/v1/nodes/{encoded}")
}

/// Percent-encodes a path segment (names are restricted, but a typo should
/// give "not found", not a malformed request).
fn form_urlencoded_segment(s: &str) -> String {
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

/// `bmc/port` or `/bmc/port` → `/bmc/port`.
fn pointer(path: &str) -> String {
    format!("/{}", path.trim_start_matches('/'))
}

fn set_op(change: &str) -> Result<serde_json::Value, CliError> {
    let (path, raw) = change.split_once('=').ok_or_else(|| {
        CliError::Usage(format!(
            "{change:?} is not PATH=VALUE (e.g. power_domain=rack-2)"
        ))
    })?;
    if path.trim_start_matches('/').is_empty() {
        return Err(CliError::Usage(format!("{change:?} has an empty PATH")));
    }
    let value =
        serde_json::from_str(raw).unwrap_or_else(|_| serde_json::Value::String(raw.to_owned()));
    Ok(serde_json::json!({"op": "add", "path": pointer(path), "value": value}))
}

fn create_body(args: &CreateArgs) -> Result<serde_json::Value, CliError> {
    let mut extra = serde_json::Map::new();
    for kv in &args.extra {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| CliError::Usage(format!("--extra {kv:?} is not KEY=VALUE")))?;
        extra.insert(k.to_owned(), serde_json::Value::String(v.to_owned()));
    }
    Ok(serde_json::json!({
        "name": args.name,
        "driver": args.driver,
        "power_domain": args.power_domain,
        "extra": extra,
        "bmc": {
            "address": args.address,
            "port": args.port,
            "username": args.username,
            "password": args.password,
            "system_id": args.system_id,
            "verify_tls": !args.insecure,
            "ca_file": args.ca_file,
        }
    }))
}

fn read_inventory(file: &PathBuf) -> Result<serde_json::Value, CliError> {
    let mut text = String::new();
    let read = if file.as_os_str() == "-" {
        std::io::stdin().read_to_string(&mut text).map(|_| ())
    } else {
        std::fs::read_to_string(file).map(|t| text = t)
    };
    read.map_err(|e| CliError::Usage(format!("cannot read {}: {e}", file.display())))?;
    serde_json::from_str(&text)
        .map_err(|e| CliError::Usage(format!("{} is not valid JSON: {e}", file.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_values_are_json_when_they_parse() {
        assert_eq!(set_op("bmc/port=623").unwrap()["value"], 623);
        assert_eq!(set_op("/maintenance=true").unwrap()["value"], true);
        assert_eq!(set_op("name=node-1").unwrap()["value"], "node-1");
        assert_eq!(set_op("name=\"123\"").unwrap()["value"], "123");
        assert_eq!(set_op("extra/a=").unwrap()["value"], "");
        assert_eq!(set_op("bmc/port=623").unwrap()["path"], "/bmc/port");
        assert!(set_op("power_domain").is_err());
        assert!(set_op("=x").is_err());
    }

    #[test]
    fn node_paths_are_encoded() {
        assert_eq!(node_path("n-1"), "/v1/nodes/n-1");
        assert_eq!(node_path("a b/c"), "/v1/nodes/a%20b%2Fc");
    }

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
