//! `baton node actions NODE [REQUEST_ID]`: a node's action log
//! (`GET …/os-instance-actions`), every page unless `--limit` is given, or
//! one action with its events.

use clap::Args;
use http::StatusCode;

use super::node::{node_path, on_node, path_segment};
use super::{emit, output, paging, CliError};
use crate::api::types::{InstanceActionDocument, InstanceActionList, NodeView};
use crate::client::{Client, ClientError};

#[derive(Debug, Args)]
pub struct ActionsArgs {
    /// Node name or uuid.
    pub node: String,
    /// Show this action (req-…) with its events instead of the list.
    pub request_id: Option<String>,
    /// Show one page of at most this many actions (1–1000).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1000), conflicts_with = "request_id")]
    pub limit: Option<u16>,
    /// Start after this request id (with --limit): the last one of the previous page.
    #[arg(long, requires = "limit")]
    pub marker: Option<String>,
}

pub(super) async fn run(client: &Client, args: &ActionsArgs, json: bool) -> Result<(), CliError> {
    match &args.request_id {
        Some(id) => show(client, &args.node, id, json).await,
        None => list(client, args, json).await,
    }
}

async fn show(client: &Client, node: &str, request_id: &str, json: bool) -> Result<(), CliError> {
    let path = format!(
        "{}/os-instance-actions/{}",
        node_path(node),
        path_segment(request_id)
    );
    let document: InstanceActionDocument = match client.get(&path).await {
        Err(ClientError::Api { status, .. }) if status == StatusCode::NOT_FOUND => {
            // The node or the action: if the node is there, the API's
            // "action … not found" stands; if not, say so with suggestions.
            let node_result = client.get::<NodeView>(&node_path(node)).await;
            on_node(client, node, node_result).await?;
            client.get(&path).await?
        }
        other => other?,
    };
    emit(json, &document, |d| {
        output::action_detail(&d.instance_action)
    })
}

async fn list(client: &Client, args: &ActionsArgs, json: bool) -> Result<(), CliError> {
    let mut query: Vec<(&str, String)> = Vec::new();
    if let Some(limit) = args.limit {
        query.push(("limit", limit.to_string()));
    }
    if let Some(marker) = &args.marker {
        query.push(("marker", marker.clone()));
    }
    let mut url = format!("{}/os-instance-actions", node_path(&args.node));
    if !query.is_empty() {
        url.push('?');
        url.push_str(&serde_urlencoded::to_string(&query).unwrap_or_default());
    }
    let fetched = paging::fetch::<InstanceActionList>(client, url, args.limit.is_some()).await;
    let page = on_node(client, &args.node, fetched).await?;
    emit(json, &page, |p| output::action_table(&p.instance_actions))?;
    if json {
        return Ok(());
    }
    if let (Some(marker), Some(limit)) =
        (page.next.as_deref().and_then(paging::marker_of), args.limit)
    {
        eprintln!(
            "more actions may follow; next page: baton node actions {} --limit {limit} --marker {marker}",
            paging::shell_word(&args.node)
        );
    } else if page.instance_actions.is_empty() {
        eprintln!("no actions recorded");
    }
    Ok(())
}
