//! `baton schedule list|add|delete`: cron-scheduled batches
//! (`/v1/schedules`). The servers of a schedule are resolved when it is
//! added (a filter or `--all` is evaluated then, not at each firing).

use clap::{Args, Subcommand, ValueEnum};
use http::Method;
use serde_json::json;

use super::batch::{batch_body, check_type, servers, Selection};
use super::node::path_segment;
use super::values::StopType;
use super::{emit, output, CliError};
use crate::api::types::{ScheduleDocument, ScheduleList};
use crate::client::Client;

#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// List the schedules, with when each fires next.
    #[command(after_help = "Examples:\n  baton schedule list\n  baton --json schedule list")]
    List,
    /// Add a schedule: a cron expression in a time zone and a batch to start each time.
    #[command(after_help = "Examples:\n  \
        baton schedule add --cron '0 22 * * 1-5' --time-zone Europe/Berlin stop --filter power_domain=rack-2\n  \
        baton schedule add --cron '30 6 * * 1-5' --time-zone Europe/Berlin start --filter power_domain=rack-2\n  \
        baton schedule add --cron '0 3 1 * *' reboot --type HARD --servers node-0001,node-0002")]
    Add(AddArgs),
    /// Delete a schedule (jobs it started are kept).
    #[command(after_help = "Examples:\n  baton schedule delete 9a1f…")]
    Delete {
        /// The schedule id.
        schedule: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Operation {
    /// Power off (SOFT by default).
    Stop,
    /// Power on.
    Start,
    /// Restart (SOFT by default).
    Reboot,
}

impl Operation {
    fn api_name(self) -> &'static str {
        match self {
            Operation::Stop => "os-stop",
            Operation::Start => "os-start",
            Operation::Reboot => "reboot",
        }
    }
}

#[derive(Debug, Args)]
pub struct AddArgs {
    /// When: 5 fields (minute hour day month weekday), or 6 with seconds first.
    #[arg(long)]
    pub cron: String,
    /// The IANA time zone the expression is read in.
    #[arg(long, default_value = "UTC")]
    pub time_zone: String,
    /// What each firing does.
    #[arg(value_enum)]
    pub operation: Operation,
    /// How stop and reboot go about it (default SOFT).
    #[arg(long = "type", value_enum, value_name = "TYPE")]
    pub kind: Option<StopType>,
    #[command(flatten)]
    pub which: Selection,
}

pub(super) async fn run(
    client: &Client,
    cmd: &ScheduleCommand,
    json: bool,
) -> Result<(), CliError> {
    match cmd {
        ScheduleCommand::List => {
            let list: ScheduleList = client.get("/v1/schedules").await?;
            emit(json, &list, |l| {
                if l.schedules.is_empty() {
                    "no schedules\n".to_owned()
                } else {
                    output::schedule_table(&l.schedules)
                }
            })
        }
        ScheduleCommand::Add(args) => {
            let operation = args.operation.api_name();
            check_type(operation, args.kind)?;
            let ids = servers(client, &args.which).await?;
            let body = json!({
                "cron": args.cron,
                "time_zone": args.time_zone,
                "batch": batch_body(operation, args.kind, &ids),
            });
            let added: ScheduleDocument = client
                .send_json(Method::POST, "/v1/schedules", &body)
                .await?;
            emit(json, &added, |s| {
                format!(
                    "schedule {} added: {} of {} server(s), next at {}\n",
                    s.schedule_id,
                    operation,
                    ids.len(),
                    s.next_fire.as_deref().unwrap_or("-")
                )
            })
        }
        ScheduleCommand::Delete { schedule } => {
            client
                .request(
                    Method::DELETE,
                    &format!("/v1/schedules/{}", path_segment(schedule)),
                    None,
                )
                .await?
                .into_empty()?;
            if !json {
                println!("deleted schedule {schedule}");
            }
            Ok(())
        }
    }
}
