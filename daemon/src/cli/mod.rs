//! The `baton` admin CLI: argument parsing (clap), the commands (`node`:
//! enrollment and listing; `power`: power, boot, actions, lock, maintenance;
//! `log`: the action log; `batch`: batches; `job`: their jobs), and the mapping of failures to exit codes:
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | the API answered with an error (its message and request id go to stderr), an operation waited for (`--wait`) failed, some nodes of a multi-node command failed, or a batch followed with `--wait` had failed servers |
//! | 2 | usage error (bad arguments, unreadable input file) |
//! | 3 | batond cannot be reached (socket missing, not a socket, permission denied, nothing listening) |
//!
//! The CLI shares the daemon's request and response types (`crate::api::types`).

mod batch;
mod fields;
mod job;
mod log;
mod node;
mod output;
mod paging;
mod power;
mod progress;
mod schedule;
mod suggest;
mod values;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use clap_complete::Shell;
use serde::Serialize;

use crate::api::types::ConductorStatus;
use crate::client::{Client, ClientError};
use crate::config::DEFAULT_SOCKET;

pub use node::NodeCommand;

#[derive(Debug, Parser)]
#[command(
    name = "baton",
    version,
    about = "Admin CLI for batond, the bare-metal conductor",
    after_help = "Examples:\n  \
        export BATON_SOCKET=$PWD/demo/baton.sock\n  \
        baton node list\n  \
        baton --json node show node-0001\n  \
        baton conductor status"
)]
pub struct Cli {
    /// batond's API socket (api.socket in batond's config).
    #[arg(long, global = true, env = "BATON_SOCKET", default_value = DEFAULT_SOCKET)]
    pub socket: std::path::PathBuf,
    /// Print the API's JSON instead of tables (errors: the error envelope on stderr).
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Enroll, list, show, change and remove nodes; change their power, boot
    /// device, lock and maintenance; read their action log.
    #[command(subcommand)]
    Node(NodeCommand),
    /// Stop, start or reboot many servers as one job (up to 1000 per job).
    #[command(subcommand)]
    Batch(batch::BatchCommand),
    /// Show, list and cancel batch jobs.
    #[command(subcommand)]
    Job(job::JobCommand),
    /// Batches started by cron schedules.
    #[command(subcommand)]
    Schedule(schedule::ScheduleCommand),
    /// The conductor's health.
    #[command(subcommand)]
    Conductor(ConductorCommand),
    /// Print a shell completion script.
    #[command(after_help = "Examples:\n  \
        source <(baton completions bash)\n  \
        baton completions bash > /etc/bash_completion.d/baton\n  \
        baton completions zsh > \"${fpath[1]}/_baton\"")]
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: Shell,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConductorCommand {
    /// Version, uptime, node counts, process and database figures.
    #[command(after_help = "Examples:\n  baton conductor status\n  baton --json conductor status")]
    Status,
}

/// What a command failed with.
#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("{0}")]
    Usage(String),
    #[error("node {ident} not found{hint}; `baton node list` lists the enrolled nodes (HTTP 404, itemNotFound, request {request_id})", hint = did_you_mean(.suggestions))]
    NodeNotFound {
        ident: String,
        suggestions: Vec<String>,
        request_id: String,
    },
    /// A power operation followed with `--wait` ended without reaching its state.
    #[error("node {node}: {action} failed: {message} (request {request_id}; `baton node actions {node} {request_id}` shows its events)")]
    OperationFailed {
        node: String,
        action: String,
        message: String,
        request_id: String,
    },
    /// A multi-node command that reported each failure as it went.
    #[error("{failed} of {total} nodes failed")]
    SomeFailed { failed: usize, total: usize },
    /// A batch followed with `--wait` ended with failed sub-jobs.
    #[error("{failed} of {total} servers failed (the table above says why)")]
    JobFailed { failed: u64, total: u64 },
}

fn did_you_mean(suggestions: &[String]) -> String {
    if suggestions.is_empty() {
        String::new()
    } else {
        format!("; did you mean {}?", suggest::or_list(suggestions))
    }
}

impl CliError {
    fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => 2,
            CliError::Client(e) if e.is_unreachable() => 3,
            CliError::Client(_)
            | CliError::NodeNotFound { .. }
            | CliError::OperationFailed { .. }
            | CliError::SomeFailed { .. }
            | CliError::JobFailed { .. } => 1,
        }
    }

    /// The error as the API's envelope (code, message, request id), for `--json`.
    fn envelope(&self) -> serde_json::Value {
        let (code, request_id) = match self {
            CliError::Client(ClientError::Api {
                code, request_id, ..
            }) => (code.as_str(), Some(request_id.as_str())),
            CliError::NodeNotFound { request_id, .. } => {
                ("itemNotFound", Some(request_id.as_str()))
            }
            CliError::OperationFailed { request_id, .. } => {
                ("operationFailed", Some(request_id.as_str()))
            }
            CliError::Client(e) if e.is_unreachable() => ("unreachable", None),
            CliError::SomeFailed { .. } | CliError::JobFailed { .. } => ("partialFailure", None),
            CliError::Client(_) | CliError::Usage(_) => ("cliError", None),
        };
        let message = match self {
            CliError::Client(ClientError::Api { message, .. }) => message.clone(),
            other => other.to_string(),
        };
        serde_json::json!({"error": {"code": code, "message": message, "request_id": request_id}})
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
    if json {
        eprintln!("{}", err.envelope());
    } else {
        eprintln!("baton: {err}");
    }
}

async fn run(cli: &Cli) -> Result<(), CliError> {
    let client = Client::new(&cli.socket);
    match &cli.command {
        Command::Node(cmd) => node::run(&client, cmd, cli.json).await,
        Command::Batch(cmd) => batch::run(&client, cmd, cli.json).await,
        Command::Job(cmd) => job::run(&client, cmd, cli.json).await,
        Command::Schedule(cmd) => schedule::run(&client, cmd, cli.json).await,
        Command::Conductor(ConductorCommand::Status) => {
            let status: ConductorStatus = client.get("/v1/conductor").await?;
            emit(cli.json, &status, output::conductor_status)
        }
        Command::Completions { .. } => Ok(()),
    }
}

/// Prints `value` as pretty JSON, or as `human` renders it.
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

/// The command tree, for tests that check every command documents itself.
pub fn command() -> clap::Command {
    Cli::command()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn not_found_names_cli_commands() {
        let err = CliError::NodeNotFound {
            ident: "node-001".into(),
            suggestions: vec!["node-0001".into()],
            request_id: "req-1".into(),
        };
        let text = err.to_string();
        assert!(
            text.contains("did you mean node-0001?") && text.contains("`baton node list`"),
            "{text}"
        );
        assert!(!text.contains("/v1/"), "{text}");
        assert_eq!(err.envelope()["error"]["code"], "itemNotFound");
    }
}
