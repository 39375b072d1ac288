//! Handlers of `/v1/nodes…`: parse the request into a conductor call, render
//! what it returns. Also the listing's query rules (filters and paging).

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use baton_state::{Driver, NodeFilter, PowerState};
use json_patch::Patch;
use serde::de::{DeserializeSeed, SeqAccess, Visitor};
use serde_json::value::RawValue;
use std::cell::Cell;
use uuid::Uuid;

use super::error::{ApiError, ErrorKind};
use super::power::RequestCaller;
use super::request::{
    check_keys, parse_json, query_pairs, read_body, BODY_LIMIT, IMPORT_BODY_LIMIT,
};
use super::types::{
    node_href, ImportResult, NodeList, NodeStates, NodeSummary, NodeView, NEVER_READ,
};
use super::AppState;
use crate::conductor::MAX_IMPORT;
use crate::messages::clip;

/// Default and largest page of a node listing.
pub const DEFAULT_LIMIT: usize = 1000;
pub const MAX_LIMIT: usize = 10_000;

const LIST_PARAMS: [&str; 6] = [
    "limit",
    "marker",
    "power_state",
    "maintenance",
    "driver",
    "power_domain",
];

/// A parsed listing query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    pub filter: NodeFilter,
    pub limit: usize,
    pub marker: Option<Uuid>,
}

impl ListQuery {
    pub fn parse(query: Option<&str>) -> Result<Self, ApiError> {
        let mut parsed = ListQuery {
            filter: NodeFilter::default(),
            limit: DEFAULT_LIMIT,
            marker: None,
        };
        for (key, value) in query_pairs(query, &LIST_PARAMS)? {
            match key.as_str() {
                "limit" => parsed.limit = parse_limit(&value)?,
                "marker" => {
                    parsed.marker = Some(Uuid::parse_str(&value).map_err(|_| {
                        ApiError::bad_request(format!(
                            "marker {:?} is not a node uuid; use the uuid of the last node of the previous page",
                            clip(&value, 64)
                        ))
                    })?);
                }
                "power_state" => parsed.filter.power_state = Some(parse_power_state(&value)?),
                "maintenance" => {
                    parsed.filter.maintenance = Some(parse_bool("maintenance", &value)?);
                }
                "driver" => {
                    parsed.filter.driver = Some(Driver::parse(&value).ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "driver {:?} is unknown; use redfish or ipmi",
                            clip(&value, 64)
                        ))
                    })?);
                }
                _ => {
                    if value.is_empty() {
                        return Err(ApiError::bad_request("power_domain must not be empty"));
                    }
                    parsed.filter.power_domain = Some(value);
                }
            }
        }
        Ok(parsed)
    }

    /// The URL of the page after one ending with `last`.
    fn next_url(&self, base: &str, last: Uuid) -> String {
        let mut pairs: Vec<(&str, String)> = vec![("limit", self.limit.to_string())];
        pairs.push(("marker", last.to_string()));
        if let Some(state) = self.filter.power_state {
            pairs.push((
                "power_state",
                state.map_or(NEVER_READ, PowerState::as_str).to_owned(),
            ));
        }
        if let Some(m) = self.filter.maintenance {
            pairs.push(("maintenance", m.to_string()));
        }
        if let Some(d) = self.filter.driver {
            pairs.push(("driver", d.as_str().to_owned()));
        }
        if let Some(p) = &self.filter.power_domain {
            pairs.push(("power_domain", p.clone()));
        }
        let query = serde_urlencoded::to_string(&pairs).unwrap_or_default();
        format!("{base}?{query}")
    }
}

fn parse_limit(value: &str) -> Result<usize, ApiError> {
    value
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| value.parse::<usize>().ok())
        .flatten()
        .filter(|n| (1..=MAX_LIMIT).contains(n))
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "limit must be a whole number from 1 to {MAX_LIMIT}, got {:?}",
                clip(value, 64)
            ))
        })
}

fn parse_power_state(value: &str) -> Result<Option<PowerState>, ApiError> {
    if value == NEVER_READ {
        return Ok(None);
    }
    PowerState::parse(value).map(Some).ok_or_else(|| {
        ApiError::bad_request(format!(
            "power_state {:?} is unknown; use \"power on\", \"power off\", \"error\" or \"null\"",
            clip(value, 64)
        ))
    })
}

fn parse_bool(key: &str, value: &str) -> Result<bool, ApiError> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(ApiError::bad_request(format!(
            "{key} must be true or false, got {:?}",
            clip(value, 64)
        ))),
    }
}

/// `POST /v1/nodes`.
pub async fn create(
    State(app): State<AppState>,
    RequestCaller(caller): RequestCaller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(&headers, body, BODY_LIMIT).await?;
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return Err(ApiError::bad_request(
            "POST /v1/nodes enrolls one node and takes a JSON object; \
             to enroll several, POST the array to /v1/nodes/import",
        ));
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "the request body is empty; send the node as a JSON object",
        ));
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| {
        ApiError::bad_request("the request body is not UTF-8 text; send the node as JSON")
    })?;
    check_keys(&bytes, "node")?;
    let node = app.conductor.create_node(text, &caller).await?;
    let location = node_href(node.uuid);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(NodeView::from(node)),
    )
        .into_response())
}

/// `POST /v1/nodes/import`.
pub async fn import(
    State(app): State<AppState>,
    RequestCaller(caller): RequestCaller,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<ImportResult>, ApiError> {
    let bytes = read_body(&headers, body, IMPORT_BODY_LIMIT).await?;
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
        return Err(ApiError::bad_request(
            "an import is a JSON array of nodes; to enroll one node, POST the object to /v1/nodes",
        ));
    }
    // Parsing up to 16 MiB is CPU work: keep it off the async workers.
    let entries = tokio::task::spawn_blocking(move || parse_import(&bytes))
        .await
        .map_err(|_| {
            ApiError::new(
                ErrorKind::Internal,
                "the import parser stopped unexpectedly",
            )
        })??;
    let uuids = app.conductor.import_nodes(entries, &caller).await?;
    Ok(Json(ImportResult {
        count: uuids.len(),
        uuids,
    }))
}

/// The entries of an import, each kept as raw JSON for the conductor to
/// parse and validate on its own. Counts while parsing and stops at the
/// first entry past [`MAX_IMPORT`], so a body of millions of tiny entries
/// (`[1,1,1,…]`) costs no more than one of the largest valid import.
fn parse_import(bytes: &[u8]) -> Result<Vec<Box<RawValue>>, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "the request body is empty; send the import as a JSON array of nodes",
        ));
    }
    let too_many = Cell::new(false);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed = ImportEntries {
        too_many: &too_many,
    }
    .deserialize(&mut de)
    .and_then(|entries| de.end().map(|()| entries));
    parsed.map_err(|err| {
        if too_many.get() {
            ApiError::bad_request(format!(
                "an import holds at most {MAX_IMPORT} nodes, this one has more; split it into several imports"
            ))
        } else if err.is_syntax() || err.is_eof() {
            ApiError::bad_request(format!("malformed JSON in import: {err}"))
        } else {
            ApiError::bad_request(format!(
                "invalid import: {}",
                crate::messages::humanize(&err.to_string())
            ))
        }
    })
}

/// Deserializes the top-level array of an import, refusing it at entry
/// `MAX_IMPORT + 1` (and setting `too_many`, to tell that apart from a
/// JSON error).
struct ImportEntries<'a> {
    too_many: &'a Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for ImportEntries<'_> {
    type Value = Vec<Box<RawValue>>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ImportEntries<'_> {
    type Value = Vec<Box<RawValue>>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON array of nodes")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = seq.next_element::<Box<RawValue>>()? {
            if entries.len() == MAX_IMPORT {
                self.too_many.set(true);
                return Err(serde::de::Error::custom("too many entries"));
            }
            entries.push(entry);
        }
        Ok(entries)
    }
}

/// `GET /v1/nodes`.
pub async fn list(
    State(app): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    list_as::<NodeSummary>(app, query, "/v1/nodes").await
}

/// `GET /v1/nodes/detail`.
pub async fn list_detail(
    State(app): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    list_as::<NodeView>(app, query, "/v1/nodes/detail").await
}

async fn list_as<T>(app: AppState, query: Option<String>, base: &str) -> Result<Response, ApiError>
where
    T: From<baton_state::Node> + serde::Serialize,
{
    let query = ListQuery::parse(query.as_deref())?;
    let nodes = app
        .conductor
        .list_nodes(query.filter.clone(), query.limit, query.marker)
        .await?;
    let next = match nodes.last() {
        Some(last) if nodes.len() == query.limit => Some(query.next_url(base, last.uuid)),
        _ => None,
    };
    let nodes: Vec<T> = nodes.into_iter().map(T::from).collect();
    Ok(Json(NodeList { nodes, next }).into_response())
}

/// `GET /v1/nodes/{ident}`.
pub async fn show(
    State(app): State<AppState>,
    Path(ident): Path<String>,
) -> Result<Json<NodeView>, ApiError> {
    Ok(Json(app.conductor.node(&ident).await?.into()))
}

/// `PATCH /v1/nodes/{ident}`.
pub async fn patch(
    State(app): State<AppState>,
    Path(ident): Path<String>,
    RequestCaller(caller): RequestCaller,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<NodeView>, ApiError> {
    let bytes = read_body(&headers, body, BODY_LIMIT).await?;
    let patch: Patch = parse_json(&bytes, "JSON Patch (RFC 6902)")?;
    Ok(Json(
        app.conductor
            .patch_node(&ident, patch, &caller)
            .await?
            .into(),
    ))
}

/// `DELETE /v1/nodes/{ident}`.
pub async fn delete(
    State(app): State<AppState>,
    Path(ident): Path<String>,
    RequestCaller(caller): RequestCaller,
) -> Result<StatusCode, ApiError> {
    app.conductor.delete_node(&ident, &caller).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/nodes/{ident}/states`.
pub async fn states(
    State(app): State<AppState>,
    Path(ident): Path<String>,
) -> Result<Json<NodeStates>, ApiError> {
    let node = app.conductor.node(&ident).await?;
    Ok(Json(NodeStates::from(&node)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paging_defaults_and_bounds() {
        let q = ListQuery::parse(None).unwrap();
        assert_eq!((q.limit, q.marker), (DEFAULT_LIMIT, None));
        assert_eq!(ListQuery::parse(Some("limit=10000")).unwrap().limit, 10_000);
        for bad in [
            "limit=-3",
            "limit=0",
            "limit=10001",
            "limit=ten",
            "limit=",
            "limit=%2B5",
        ] {
            let err = ListQuery::parse(Some(bad)).unwrap_err();
            assert!(
                err.message.starts_with("limit must be"),
                "{bad}: {}",
                err.message
            );
        }
        assert!(ListQuery::parse(Some("marker=nope")).is_err());
    }

    #[test]
    fn filters_parse_strictly() {
        let q = ListQuery::parse(Some(
            "power_state=power+off&maintenance=false&driver=ipmi&power_domain=rack-1",
        ))
        .unwrap();
        assert_eq!(q.filter.power_state, Some(Some(PowerState::Off)));
        assert_eq!(q.filter.maintenance, Some(false));
        assert_eq!(q.filter.driver, Some(Driver::Ipmi));
        assert_eq!(q.filter.power_domain.as_deref(), Some("rack-1"));
        assert_eq!(
            ListQuery::parse(Some("power_state=null"))
                .unwrap()
                .filter
                .power_state,
            Some(None)
        );
        for bad in [
            "power_state=on",
            "maintenance=yes",
            "driver=telnet",
            "power_domain=",
            "colour=red",
        ] {
            assert!(ListQuery::parse(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn imports_are_counted_while_parsed() {
        let ones = format!("[{}1]", "1,".repeat(MAX_IMPORT));
        let err = parse_import(ones.as_bytes()).unwrap_err();
        assert!(
            err.message.contains("at most 10000 nodes"),
            "{}",
            err.message
        );
        let just_enough = format!("[{}1]", "1,".repeat(MAX_IMPORT - 1));
        assert_eq!(
            parse_import(just_enough.as_bytes()).unwrap().len(),
            MAX_IMPORT
        );
        // Broken JSON past the limit is still "too many": parsing stopped.
        let err = parse_import(format!("{ones}garbage").as_bytes()).unwrap_err();
        assert!(err.message.contains("at most"), "{}", err.message);
        for (bad, needle) in [
            ("[1, 2", "malformed JSON"),
            ("[1] [2]", "malformed JSON"),
            (
                "7",
                "invalid import: invalid type: integer `7`, expected a JSON array of nodes",
            ),
            (" ", "empty"),
        ] {
            let err = parse_import(bad.as_bytes()).unwrap_err();
            assert!(err.message.contains(needle), "{bad}: {}", err.message);
        }
    }

    #[test]
    fn next_link_keeps_filters() {
        let q = ListQuery::parse(Some("limit=5&power_state=power+on&power_domain=r+1")).unwrap();
        let last = Uuid::nil();
        let url = q.next_url("/v1/nodes", last);
        assert_eq!(
            url,
            format!("/v1/nodes?limit=5&marker={last}&power_state=power+on&power_domain=r+1")
        );
        assert_eq!(
            ListQuery::parse(url.split_once('?').map(|x| x.1))
                .unwrap()
                .marker,
            Some(last)
        );
    }
}
