//! `baton job show|list|cancel`: the batch jobs (`/v1/jobs…`), and how a
//! finished batch is reported (the failures, and exit code 1 if any job
//! failed).

use clap::{Args, Subcommand, ValueEnum};
use http::Method;

use super::node::path_segment;
use super::{emit, output, CliError};
use crate::api::types::{JobDocument, JobList};
use crate::client::Client;

#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// Show a job: its status, counts and each server's sub-job.
    #[command(after_help = "Examples:\n  \
        baton job show 3f2b…\n  \
        baton job show 3f2b… --failed        # only the sub-jobs that failed\n  \
        baton --json job show 3f2b… | jq '.entities.sub_jobs[] | select(.status == \"FAIL\")'")]
    Show {
        /// The job id (printed when the batch was accepted).
        job: String,
        /// Only the sub-jobs that failed.
        #[arg(long)]
        failed: bool,
    },
    /// List jobs, newest first.
    #[command(after_help = "Examples:\n  \
        baton job list\n  \
        baton job list --status FAIL --operation os-stop --limit 10")]
    List(ListArgs),
    /// Cancel what a job has not started; what has started finishes.
    #[command(after_help = "Examples:\n  baton job cancel 3f2b…")]
    Cancel {
        /// The job id.
        job: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatusArg {
    #[value(name = "INIT", alias = "init")]
    Init,
    #[value(name = "RUNNING", alias = "running")]
    Running,
    #[value(name = "SUCCESS", alias = "success")]
    Success,
    #[value(name = "FAIL", alias = "fail")]
    Fail,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OperationArg {
    #[value(name = "os-stop", alias = "stop")]
    Stop,
    #[value(name = "os-start", alias = "start")]
    Start,
    #[value(name = "reboot")]
    Reboot,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only jobs in this status.
    #[arg(long, value_enum)]
    pub status: Option<StatusArg>,
    /// Only jobs of this operation.
    #[arg(long, value_enum)]
    pub operation: Option<OperationArg>,
    /// At most this many (1 to 1000; default 100).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub limit: Option<u16>,
}

pub(super) async fn run(client: &Client, cmd: &JobCommand, json: bool) -> Result<(), CliError> {
    match cmd {
        JobCommand::Show { job, failed } => {
            let mut doc: JobDocument = client.get(&job_path(job)).await?;
            if *failed {
                if let Some(subs) = doc.entities.sub_jobs.as_mut() {
                    subs.retain(|s| s.status == "FAIL");
                }
            }
            emit(json, &doc, output::job_detail)
        }
        JobCommand::List(args) => {
            let mut pairs: Vec<(&str, String)> = Vec::new();
            if let Some(status) = args.status {
                pairs.push(("status", value_name(&status)));
            }
            if let Some(operation) = args.operation {
                pairs.push(("operation", value_name(&operation)));
            }
            if let Some(limit) = args.limit {
                pairs.push(("limit", limit.to_string()));
            }
            let query = serde_urlencoded::to_string(&pairs).unwrap_or_default();
            let list: JobList = client.get(&format!("/v1/jobs?{query}")).await?;
            emit(json, &list, |l| {
                if l.jobs.is_empty() {
                    "no jobs\n".to_owned()
                } else {
                    output::job_table(&l.jobs)
                }
            })
        }
        JobCommand::Cancel { job } => {
            let doc: JobDocument = client
                .request(Method::POST, &format!("{}/cancel", job_path(job)), None)
                .await?
                .into_json()?;
            emit(json, &doc, |d| {
                format!(
                    "job {}: cancelled what had not started\n{}",
                    d.job_id,
                    output::job_summary(d)
                )
            })
        }
    }
}

fn value_name(value: &impl ValueEnum) -> String {
    value
        .to_possible_value()
        .map(|v| v.get_name().to_owned())
        .unwrap_or_default()
}

fn job_path(job: &str) -> String {
    format!("/v1/jobs/{}", path_segment(job))
}

/// After `--wait`: every failed sub-job in a table, and exit 1 if a job failed.
pub(super) fn report_finished(jobs: &[JobDocument], json: bool) -> Result<(), CliError> {
    if json {
        emit(true, &jobs, |_| String::new())?;
    } else {
        for job in jobs {
            println!("{}", output::job_summary(job).trim_end());
        }
        let failures = output::failure_table(jobs);
        if !failures.is_empty() {
            print!("\n{failures}");
        }
    }
    let failed: u64 = jobs.iter().map(|j| j.entities.sub_jobs_status.fail).sum();
    let total: u64 = jobs.iter().map(|j| j.entities.sub_jobs_total).sum();
    if jobs.iter().any(|j| j.status == "FAIL") {
        return Err(CliError::JobFailed { failed, total });
    }
    Ok(())
}
