//! `baton batch stop|start|reboot`: one batch over many servers
//! (`POST /v1/baremetalservers/action`), the servers named on the command
//! line, in a file, by a node-list filter or all of them. More than 1000
//! servers are sent as several jobs of at most 1000 each. `--wait` follows
//! the jobs with a progress bar (plain lines without a terminal), then
//! prints the failures and exits 1 if any job failed.

use std::collections::HashSet;
use std::io::Read;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use http::Method;
use serde::Serialize;
use serde_json::{json, Value};

use super::paging;
use super::progress::Bar;
use super::values::StopType;
use super::{emit, output, CliError};
use crate::api::types::{JobCreated, JobDocument, NodeList, NodeSummary};
use crate::client::Client;

/// Most servers one job takes (the API's limit).
const JOB_SIZE: usize = baton_state::MAX_BATCH;
/// How often `--wait` reads the jobs.
const POLL: Duration = Duration::from_millis(250);
/// How often `--wait` prints a progress line when stderr is not a terminal.
const PLAIN_EVERY: Duration = Duration::from_secs(2);

#[derive(Debug, Subcommand)]
pub enum BatchCommand {
    /// Power servers off: SOFT (graceful shutdown, the default) or HARD.
    #[command(after_help = "Examples:\n  \
        baton batch stop --all --wait\n  \
        baton batch stop --type HARD --filter power_domain=rack-1 --wait\n  \
        baton batch stop --servers node-0001,node-0002")]
    Stop(BatchArgs),
    /// Power servers on.
    #[command(after_help = "Examples:\n  \
        baton batch start --all --wait\n  \
        baton batch start --file servers.txt        # one name or uuid per line")]
    Start(BatchArgs),
    /// Restart servers: SOFT (graceful, the default) or HARD (reset).
    #[command(after_help = "Examples:\n  \
        baton batch reboot --type HARD --filter power_domain=rack-2 --wait")]
    Reboot(BatchArgs),
}

#[derive(Debug, Args)]
pub struct BatchArgs {
    /// How stop and reboot go about it (default SOFT; start has no type).
    #[arg(long = "type", value_enum, value_name = "TYPE")]
    pub kind: Option<StopType>,
    #[command(flatten)]
    pub which: Selection,
    /// Record this project id on the jobs and actions (the BMS API's /v1/{project_id}/…).
    #[arg(long, value_name = "ID")]
    pub project: Option<String>,
    /// Follow the jobs to the end with a progress bar; exit 1 if any failed.
    #[arg(long)]
    pub wait: bool,
}

/// Which servers: exactly one way of naming them.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["servers", "file", "filter", "all"])))]
pub struct Selection {
    /// Servers by name or uuid, comma-separated.
    #[arg(long, value_delimiter = ',', value_name = "IDS")]
    pub servers: Vec<String>,
    /// A file with one server name or uuid per line ("-": stdin; '#' starts a comment).
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Every node matching KEY=VALUE, as `baton node list` filters them:
    /// power_domain, driver, power_state, maintenance (repeatable: all must match).
    #[arg(long, value_name = "KEY=VALUE")]
    pub filter: Vec<String>,
    /// Every enrolled node.
    #[arg(long)]
    pub all: bool,
}

/// What the command prints with `--json`.
#[derive(Debug, Serialize)]
struct Started {
    jobs: Vec<String>,
    servers: usize,
}

pub(super) async fn run(client: &Client, cmd: &BatchCommand, json: bool) -> Result<(), CliError> {
    let (operation, args) = match cmd {
        BatchCommand::Stop(a) => ("os-stop", a),
        BatchCommand::Start(a) => ("os-start", a),
        BatchCommand::Reboot(a) => ("reboot", a),
    };
    check_type(operation, args.kind)?;
    let servers = servers(client, &args.which).await?;
    let path = match &args.project {
        Some(project) => format!(
            "/v1/{}/baremetalservers/action",
            super::node::path_segment(project)
        ),
        None => "/v1/baremetalservers/action".to_owned(),
    };
    let mut jobs = Vec::new();
    for chunk in servers.chunks(JOB_SIZE) {
        let body = batch_body(operation, args.kind, chunk);
        let created: JobCreated = client.send_json(Method::POST, &path, &body).await?;
        if !json {
            eprintln!(
                "job {} accepted: {operation} of {} server(s)",
                created.job_id,
                chunk.len()
            );
        }
        jobs.push(created.job_id);
    }
    if !args.wait {
        let started = Started {
            jobs: jobs.clone(),
            servers: servers.len(),
        };
        return emit(json, &started, |s| {
            let follow: Vec<String> = s
                .jobs
                .iter()
                .map(|j| format!("baton job show {j}"))
                .collect();
            format!("follow with: {}\n", follow.join("; "))
        });
    }
    let finished = follow(client, &jobs, json).await?;
    super::job::report_finished(&finished, json)
}

/// Start has no type.
pub(super) fn check_type(operation: &str, kind: Option<StopType>) -> Result<(), CliError> {
    if operation == "os-start" && kind.is_some() {
        return Err(CliError::Usage(
            "--type applies to stop and reboot only; start has no type".into(),
        ));
    }
    Ok(())
}

/// The body of `POST /v1/baremetalservers/action` for these servers.
pub(super) fn batch_body(operation: &str, kind: Option<StopType>, ids: &[String]) -> Value {
    let ids: Vec<_> = ids.iter().map(|id| json!({"id": id})).collect();
    let mut action = json!({"servers": ids});
    if let Some(kind) = kind {
        action["type"] = json!(kind.api_name());
    }
    json!({ operation: action })
}

/// The servers the arguments name, each once, in the order given; at
/// least one.
pub(super) async fn servers(client: &Client, args: &Selection) -> Result<Vec<String>, CliError> {
    let mut ids: Vec<String> = args.servers.iter().map(|s| s.trim().to_owned()).collect();
    if let Some(file) = &args.file {
        ids.extend(read_ids(file)?);
    }
    if args.all || !args.filter.is_empty() {
        ids.extend(matching_nodes(client, &args.filter).await?);
    }
    ids.retain(|id| !id.is_empty());
    let mut seen = HashSet::new();
    ids.retain(|id| seen.insert(id.clone()));
    if ids.is_empty() {
        return Err(CliError::Usage("no server matches; nothing to do".into()));
    }
    Ok(ids)
}

fn read_ids(file: &PathBuf) -> Result<Vec<String>, CliError> {
    let mut text = String::new();
    let read = if file.as_os_str() == "-" {
        std::io::stdin().read_to_string(&mut text)
    } else {
        std::fs::File::open(file).and_then(|mut f| f.read_to_string(&mut text))
    };
    read.map_err(|e| CliError::Usage(format!("cannot read {}: {e}", file.display())))?;
    Ok(text
        .lines()
        .map(|line| line.split('#').next().unwrap_or_default().trim().to_owned())
        .filter(|line| !line.is_empty())
        .collect())
}

const FILTER_KEYS: [&str; 4] = ["power_domain", "driver", "power_state", "maintenance"];

/// The uuids of the nodes matching every filter (all nodes without one).
async fn matching_nodes(client: &Client, filters: &[String]) -> Result<Vec<String>, CliError> {
    let mut pairs = Vec::new();
    for filter in filters {
        let Some((key, value)) = filter.split_once('=') else {
            return Err(CliError::Usage(format!(
                "--filter {filter:?} is not KEY=VALUE; e.g. --filter power_domain=rack-1"
            )));
        };
        if !FILTER_KEYS.contains(&key) {
            return Err(CliError::Usage(format!(
                "--filter key {key:?} is unknown; use one of {}",
                FILTER_KEYS.join(", ")
            )));
        }
        pairs.push((key.to_owned(), value.to_owned()));
    }
    let query = serde_urlencoded::to_string(&pairs).unwrap_or_default();
    let url = if query.is_empty() {
        "/v1/nodes".to_owned()
    } else {
        format!("/v1/nodes?{query}")
    };
    let list: NodeList<NodeSummary> = paging::fetch(client, url, false).await?;
    Ok(list.nodes.into_iter().map(|n| n.uuid.to_string()).collect())
}

/// Reads the jobs until every one has ended, drawing progress; returns
/// them as they ended.
async fn follow(
    client: &Client,
    jobs: &[String],
    json: bool,
) -> Result<Vec<JobDocument>, CliError> {
    let mut bar = Bar::new();
    let started = Instant::now();
    let mut last_plain = Instant::now();
    loop {
        let mut connection = client.connect().await?;
        let mut current = Vec::with_capacity(jobs.len());
        for id in jobs {
            let job: JobDocument = connection
                .request(Method::GET, &format!("/v1/jobs/{id}"), None)
                .await?
                .into_json()?;
            current.push(job);
        }
        let progress = output::job_progress(&current);
        let done = current
            .iter()
            .all(|j| matches!(j.status.as_str(), "SUCCESS" | "FAIL"));
        if !json {
            if bar.is_drawn() {
                bar.draw(&progress, started.elapsed());
            } else if done || last_plain.elapsed() >= PLAIN_EVERY {
                eprintln!("{}", output::progress_line(&progress, started.elapsed()));
                last_plain = Instant::now();
            }
        }
        if done {
            bar.finish();
            return Ok(current);
        }
        tokio::time::sleep(POLL).await;
    }
}
