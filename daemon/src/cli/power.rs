//! `baton node power|boot|action|lock|unlock|maintenance`: changing a node's
//! power, boot device, lock and maintenance through the conductor's routes
//! (`PUT …/states/power`, `PUT …/states/boot_device`, `POST …/action`,
//! `PUT/DELETE …/maintenance`).
//!
//! batond answers a power change with 202 and carries it out afterwards;
//! `--wait` follows it: it polls the node until its operation is no longer
//! the one asked for, then reads the action record, prints the outcome and
//! exits 1 if the record's last event is not a success. Work done while the
//! caller waited (boot device, lock, maintenance) answers 200 with the
//! node's states.

use std::time::Duration;

use bytes::Bytes;
use clap::Args;
use http::{Method, StatusCode};
use serde::Serialize;
use serde_json::{json, Value};

use super::node::{node_path, on_node};
use super::progress::{Spinner, TICK};
use super::values::{ActionArg, BootDeviceArg, PowerArg, StopType, Switch};
use super::{emit, output, CliError};
use crate::api::types::{
    ActionAccepted, BootDeviceRequest, InstanceActionDocument, MaintenanceRequest, NodeStates,
    NodeView, PowerStateRequest,
};
use crate::client::Client;

/// How often `--wait` reads the node.
const POLL: Duration = Duration::from_millis(300);

#[derive(Debug, Args)]
pub struct PowerArgs {
    /// Node name or uuid.
    pub node: String,
    /// What to do.
    #[arg(value_enum)]
    pub verb: PowerArg,
    /// Wait for the outcome (a spinner on a terminal), print it, exit 1 if it failed.
    #[arg(long)]
    pub wait: bool,
    /// Seconds the node may take (default: batond's power_state_change_timeout,
    /// or soft_power_off_timeout for soft-off and soft-reboot).
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub timeout: Option<u64>,
}

#[derive(Debug, Args)]
pub struct BootArgs {
    /// Node name or uuid.
    pub node: String,
    /// The device to boot from.
    #[arg(value_enum)]
    pub device: BootDeviceArg,
    /// Every boot, not only the next one.
    #[arg(long)]
    pub persistent: bool,
}

#[derive(Debug, Args)]
pub struct ActionArgs {
    /// Node name or uuid.
    pub node: String,
    /// The action.
    #[arg(value_enum)]
    pub action: ActionArg,
    /// How os-stop and reboot go about it (default SOFT).
    #[arg(long = "type", value_enum, value_name = "TYPE")]
    pub kind: Option<StopType>,
    /// Why (lock only).
    #[arg(long)]
    pub reason: Option<String>,
    /// For power actions: wait for the outcome, print it, exit 1 if it failed.
    #[arg(long)]
    pub wait: bool,
}

#[derive(Debug, Args)]
pub struct LockArgs {
    /// Node name or uuid.
    pub node: String,
    /// Why, shown to whoever is refused.
    #[arg(long)]
    pub reason: Option<String>,
}

#[derive(Debug, Args)]
pub struct NodeArg {
    /// Node name or uuid.
    pub node: String,
}

#[derive(Debug, Args)]
pub struct MaintenanceArgs {
    /// Node name or uuid.
    pub node: String,
    /// on: enter maintenance; off: leave it.
    #[arg(value_enum)]
    pub switch: Switch,
    /// Why (with on).
    #[arg(long)]
    pub reason: Option<String>,
}

/// What batond answered to a change.
#[derive(Debug)]
enum Reply {
    /// Accepted; the work goes on in batond (202).
    Accepted(ActionAccepted),
    /// Done while we waited (200): the node's states.
    Done(NodeStates),
}

pub(super) async fn power(client: &Client, args: &PowerArgs, json: bool) -> Result<(), CliError> {
    let body = PowerStateRequest {
        target: baton_state::PowerVerb::from(args.verb).as_str().to_owned(),
        timeout: args.timeout,
    };
    let path = format!("{}/states/power", node_path(&args.node));
    let reply = send(client, &args.node, Method::PUT, &path, Some(&body)).await?;
    finish(client, &args.node, reply, args.wait, json).await
}

pub(super) async fn boot(client: &Client, args: &BootArgs, json: bool) -> Result<(), CliError> {
    let body = BootDeviceRequest {
        boot_device: baton_drivers::BootDevice::from(args.device).to_string(),
        persistent: args.persistent,
    };
    let path = format!("{}/states/boot_device", node_path(&args.node));
    let reply = send(client, &args.node, Method::PUT, &path, Some(&body)).await?;
    finish(client, &args.node, reply, false, json).await
}

pub(super) async fn action(client: &Client, args: &ActionArgs, json: bool) -> Result<(), CliError> {
    let body = action_body(args)?;
    post_action(client, &args.node, &body, args.wait, json).await
}

pub(super) async fn lock(client: &Client, args: &LockArgs, json: bool) -> Result<(), CliError> {
    let body = json!({"lock": args.reason.as_ref().map(|r| json!({"reason": r}))});
    post_action(client, &args.node, &body, false, json).await
}

pub(super) async fn unlock(client: &Client, args: &NodeArg, json: bool) -> Result<(), CliError> {
    post_action(client, &args.node, &json!({"unlock": null}), false, json).await
}

pub(super) async fn maintenance(
    client: &Client,
    args: &MaintenanceArgs,
    json: bool,
) -> Result<(), CliError> {
    let path = format!("{}/maintenance", node_path(&args.node));
    let reply = match args.switch {
        Switch::On => {
            let body = MaintenanceRequest {
                reason: args.reason.clone(),
            };
            send(client, &args.node, Method::PUT, &path, Some(&body)).await?
        }
        Switch::Off if args.reason.is_some() => {
            return Err(CliError::Usage(
                "--reason goes with `maintenance NODE on`; leaving maintenance takes none".into(),
            ))
        }
        Switch::Off => send::<()>(client, &args.node, Method::DELETE, &path, None).await?,
    };
    finish(client, &args.node, reply, false, json).await
}

/// The body of `POST …/action`, refusing flags the action does not take.
fn action_body(args: &ActionArgs) -> Result<Value, CliError> {
    let name = args.action.api_name();
    if args.kind.is_some() && !args.action.takes_type() {
        return Err(CliError::Usage(format!(
            "--type goes with os-stop and reboot, not {name}"
        )));
    }
    if args.reason.is_some() && args.action != ActionArg::Lock {
        return Err(CliError::Usage(format!(
            "--reason goes with lock, not {name} (for maintenance: `baton node maintenance NODE on --reason …`)"
        )));
    }
    let arguments = match (args.kind, &args.reason) {
        (Some(kind), _) => json!({"type": kind.api_name()}),
        (None, Some(reason)) => json!({"reason": reason}),
        (None, None) => Value::Null,
    };
    Ok(json!({ name: arguments }))
}

async fn post_action(
    client: &Client,
    node: &str,
    body: &Value,
    wait: bool,
    json: bool,
) -> Result<(), CliError> {
    let path = format!("{}/action", node_path(node));
    let reply = send(client, node, Method::POST, &path, Some(body)).await?;
    finish(client, node, reply, wait, json).await
}

/// Sends a change about `node`; 202 is [`Reply::Accepted`], 200 [`Reply::Done`].
async fn send<B: Serialize>(
    client: &Client,
    node: &str,
    method: Method,
    path: &str,
    body: Option<&B>,
) -> Result<Reply, CliError> {
    let bytes = body
        .map(|b| serde_json::to_vec(b).map(Bytes::from))
        .transpose()
        .map_err(|e| CliError::Usage(format!("cannot encode the request: {e}")))?;
    let result = client.request(method, path, bytes).await.and_then(|raw| {
        if raw.status == StatusCode::ACCEPTED {
            raw.into_json().map(Reply::Accepted)
        } else {
            raw.into_json().map(Reply::Done)
        }
    });
    on_node(client, node, result).await
}

async fn finish(
    client: &Client,
    node: &str,
    reply: Reply,
    wait: bool,
    json: bool,
) -> Result<(), CliError> {
    match reply {
        Reply::Done(states) => emit(json, &states, |s| output::node_states(node, s)),
        Reply::Accepted(accepted) if wait && accepted.target_power_state.is_some() => {
            wait_for(client, node, &accepted, json).await
        }
        Reply::Accepted(accepted) => emit(json, &accepted, |a| output::accepted(node, a)),
    }
}

/// Follows an accepted power operation to its end.
async fn wait_for(
    client: &Client,
    node: &str,
    accepted: &ActionAccepted,
    json: bool,
) -> Result<(), CliError> {
    let target = accepted
        .target_power_state
        .map_or("-", baton_state::PowerState::as_str);
    let mut spinner = Spinner::new(format!("{node}: {} to {target}", accepted.action));
    let view_path = format!("/v1/nodes/{}", accepted.node);
    let view = loop {
        let view: NodeView = client.get(&view_path).await?;
        let Some(op) = view
            .power_operation
            .as_ref()
            .filter(|op| op.request_id == accepted.request_id)
        else {
            break view;
        };
        let status = format!(
            "{}, {}",
            crate::api::types::power_state_key(view.power_state),
            op.phase
        );
        for _ in 0..POLL.as_millis() / TICK.as_millis() {
            spinner.tick(&status);
            tokio::time::sleep(TICK).await;
        }
    };
    spinner.finish();
    let record_path = accepted.links.first().map_or_else(
        || {
            format!(
                "{view_path}/os-instance-actions/{}",
                super::node::path_segment(&accepted.request_id)
            )
        },
        |l| l.href.clone(),
    );
    let record: InstanceActionDocument = client.get(&record_path).await?;
    let action = record.instance_action;
    emit(json, &action, |a| output::outcome(node, &view, a))?;
    if output::action_result(&action) == Some("Success") {
        return Ok(());
    }
    Err(CliError::OperationFailed {
        node: node.to_owned(),
        action: action.action,
        message: action
            .message
            .unwrap_or_else(|| "it ended without a result".to_owned()),
        request_id: action.request_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(action: ActionArg, kind: Option<StopType>, reason: Option<&str>) -> ActionArgs {
        ActionArgs {
            node: "n".into(),
            action,
            kind,
            reason: reason.map(str::to_owned),
            wait: false,
        }
    }

    #[test]
    fn action_bodies_carry_only_what_the_action_takes() {
        let body = |a| action_body(&a).map_err(|e| e.to_string());
        assert_eq!(
            body(args(ActionArg::OsStop, Some(StopType::Soft), None)).unwrap(),
            json!({"os-stop": {"type": "SOFT"}})
        );
        assert_eq!(
            body(args(ActionArg::OsStop, None, None)).unwrap(),
            json!({"os-stop": null})
        );
        assert_eq!(
            body(args(ActionArg::Lock, None, Some("fw"))).unwrap(),
            json!({"lock": {"reason": "fw"}})
        );
        assert_eq!(
            body(args(ActionArg::TriggerCrashDump, None, None)).unwrap(),
            json!({"trigger_crash_dump": null})
        );
        assert!(body(args(ActionArg::OsStart, Some(StopType::Hard), None))
            .unwrap_err()
            .contains("--type goes with os-stop and reboot"));
        assert!(body(args(ActionArg::Reboot, None, Some("x")))
            .unwrap_err()
            .contains("--reason goes with lock"));
    }
}
