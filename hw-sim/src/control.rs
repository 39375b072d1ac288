//! The control API: HTTP/JSON on its own port, for tests and operators to see
//! every node's state and counters, set faults and quirks, and flip power out
//! of band. Handlers parse the request into typed values (unknown fields are
//! refused), act on the [`RackState`], and render JSON; every refusal is a 4xx
//! with `{"error": "<what is wrong and what to do>"}`.
//!
//! | method & path | what |
//! |---|---|
//! | `GET /` | summary: node count, nodes per power state, stats, routes |
//! | `GET /nodes` · `GET /nodes/{name}` | node status (state, ports, boot override, faults, quirks, counters) |
//! | `PUT /nodes/{name}/faults` · `DELETE /nodes/{name}/faults` | replace · clear a node's faults |
//! | `POST /nodes/{name}/faults` | `{"fault", "value"}`: add one fault, or play an event (`drop_sessions`, `bmc_reboot`) |
//! | `PUT /nodes/{name}/quirks` | replace a node's behaviour choices |
//! | `POST /nodes/{name}/power` | `{"state": "on"\|"off"}`: out-of-band power change |
//! | `POST /faults` · `DELETE /faults` | `{"fraction", "fault", "seed"}`: fault a seeded fraction · clear all faults |
//! | `GET /stats` · `POST /stats/reset` | totals · zero every counter |

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::error::Error;
use crate::model::{FaultSetting, Faults, Node, Quirks};
use crate::rack::RackState;

type Shared = Arc<RackState>;

/// A refused control request: status and message.
#[derive(Debug)]
struct Refusal(StatusCode, String);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<JsonRejection> for Refusal {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::MissingJsonContentType(_) => Refusal(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Send the body as JSON with Content-Type: application/json".into(),
            ),
            other => Refusal(
                StatusCode::BAD_REQUEST,
                format!("Bad JSON body: {}", other.body_text()),
            ),
        }
    }
}

type Answer = Result<Json<Value>, Refusal>;

/// Starts serving the control API on `listener`; returns its address.
pub(crate) fn spawn(
    state: Shared,
    listener: TcpListener,
    cancel: CancellationToken,
    tasks: &TaskTracker,
) -> Result<SocketAddr, Error> {
    let addr = listener.local_addr().map_err(|source| Error::Bind {
        what: "control API".into(),
        addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        source,
    })?;
    let app = router(state);
    tasks.spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(cancel.cancelled_owned());
        if let Err(error) = serve.await {
            tracing::error!(%error, "control API stopped");
        }
    });
    Ok(addr)
}

fn router(state: Shared) -> Router {
    Router::new()
        .route("/", get(summary))
        .route("/nodes", get(list_nodes))
        .route("/nodes/{name}", get(show_node))
        .route(
            "/nodes/{name}/faults",
            put(set_faults).post(add_fault).delete(clear_faults),
        )
        .route("/nodes/{name}/quirks", put(set_quirks))
        .route("/nodes/{name}/power", post(set_power))
        .route("/faults", post(fault_fraction).delete(clear_all_faults))
        .route("/stats", get(stats))
        .route("/stats/reset", post(reset_stats))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

async fn not_found() -> Refusal {
    Refusal(
        StatusCode::NOT_FOUND,
        "No such control route; see GET / for the routes".into(),
    )
}

async fn method_not_allowed() -> Refusal {
    Refusal(
        StatusCode::METHOD_NOT_ALLOWED,
        "Method not allowed on this route; see GET / for the routes".into(),
    )
}

fn find<'a>(state: &'a RackState, name: &str) -> Result<&'a Arc<Node>, Refusal> {
    state.node(name).ok_or_else(|| {
        let nodes = state.nodes();
        let range = match (nodes.first(), nodes.last()) {
            (Some(first), Some(last)) => format!("{}..{}", first.name(), last.name()),
            _ => "none".into(),
        };
        Refusal(
            StatusCode::NOT_FOUND,
            format!("No node named {name:?}; nodes are {range}"),
        )
    })
}

fn to_json<T: serde::Serialize>(value: &T) -> Answer {
    serde_json::to_value(value).map(Json).map_err(|e| {
        Refusal(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("Cannot render: {e}"),
        )
    })
}

async fn summary(State(state): State<Shared>) -> Answer {
    let mut per_state: BTreeMap<&'static str, usize> = BTreeMap::new();
    for node in state.nodes() {
        *per_state.entry(node.power_state().as_str()).or_default() += 1;
    }
    let config = state.config();
    Ok(Json(json!({
        "nodes": state.nodes().len(),
        "power_states": per_state,
        "stats": state.stats(),
        "tls": config.tls,
        "ipmi": config.ipmi,
        "latency": humantime::format_duration(config.latency).to_string(),
        "boot_flag_valid_timeout":
            humantime::format_duration(config.boot_flag_valid_timeout).to_string(),
        "routes": [
            "GET /", "GET /nodes", "GET /nodes/{name}",
            "PUT /nodes/{name}/faults", "POST /nodes/{name}/faults",
            "DELETE /nodes/{name}/faults",
            "PUT /nodes/{name}/quirks", "POST /nodes/{name}/power",
            "POST /faults", "DELETE /faults", "GET /stats", "POST /stats/reset",
        ],
    })))
}

async fn list_nodes(State(state): State<Shared>) -> Answer {
    let all: Vec<_> = state.nodes().iter().map(|n| n.status()).collect();
    to_json(&all)
}

async fn show_node(State(state): State<Shared>, Path(name): Path<String>) -> Answer {
    to_json(&find(&state, &name)?.status())
}

async fn set_faults(
    State(state): State<Shared>,
    Path(name): Path<String>,
    body: Result<Json<Faults>, JsonRejection>,
) -> Answer {
    let node = find(&state, &name)?;
    let Json(faults) = body?;
    node.set_faults(faults)
        .map_err(|e| Refusal(StatusCode::BAD_REQUEST, e.to_string()))?;
    to_json(&node.status())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultRequest {
    fault: String,
    #[serde(default)]
    value: Option<Value>,
}

async fn add_fault(
    State(state): State<Shared>,
    Path(name): Path<String>,
    body: Result<Json<FaultRequest>, JsonRejection>,
) -> Answer {
    let node = find(&state, &name)?;
    let Json(request) = body?;
    let setting = parse_setting(&request.fault, request.value.as_ref())?;
    node.apply_fault(setting);
    to_json(&node.status())
}

async fn clear_faults(State(state): State<Shared>, Path(name): Path<String>) -> Answer {
    let node = find(&state, &name)?;
    node.set_faults(Faults::default())
        .map_err(|e| Refusal(StatusCode::BAD_REQUEST, e.to_string()))?;
    to_json(&node.status())
}

async fn set_quirks(
    State(state): State<Shared>,
    Path(name): Path<String>,
    body: Result<Json<Quirks>, JsonRejection>,
) -> Answer {
    let node = find(&state, &name)?;
    let Json(quirks) = body?;
    if let Some(problem) = quirks.problem() {
        return Err(Refusal(StatusCode::BAD_REQUEST, problem));
    }
    node.set_quirks(quirks);
    to_json(&node.status())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PowerRequest {
    state: PowerWord,
}

#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
enum PowerWord {
    On,
    Off,
}

async fn set_power(
    State(state): State<Shared>,
    Path(name): Path<String>,
    body: Result<Json<PowerRequest>, JsonRejection>,
) -> Answer {
    let node = find(&state, &name)?;
    let Json(request) = body?;
    node.set_power_out_of_band(matches!(request.state, PowerWord::On));
    to_json(&node.status())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FractionRequest {
    fraction: f64,
    fault: String,
    #[serde(default)]
    value: Option<Value>,
    #[serde(default)]
    seed: u64,
}

fn parse_setting(fault: &str, value: Option<&Value>) -> Result<FaultSetting, Refusal> {
    let bad = |e: crate::model::FaultError| Refusal(StatusCode::BAD_REQUEST, e.to_string());
    match value {
        None => fault.parse().map_err(bad),
        Some(Value::String(s)) => FaultSetting::from_parts(fault, Some(s)).map_err(bad),
        Some(Value::Number(n)) => {
            FaultSetting::from_parts(fault, Some(&n.to_string())).map_err(bad)
        }
        Some(other) => Err(Refusal(
            StatusCode::BAD_REQUEST,
            format!("value must be a string or a number, got {other}"),
        )),
    }
}

async fn fault_fraction(
    State(state): State<Shared>,
    body: Result<Json<FractionRequest>, JsonRejection>,
) -> Answer {
    let Json(request) = body?;
    let setting = parse_setting(&request.fault, request.value.as_ref())?;
    let nodes = state
        .apply_fault_fraction(setting, request.fraction, request.seed)
        .map_err(|e| Refusal(StatusCode::BAD_REQUEST, e.to_string()))?;
    Ok(Json(json!({
        "fault": setting.to_string(),
        "count": nodes.len(),
        "nodes": nodes,
    })))
}

async fn clear_all_faults(State(state): State<Shared>) -> Answer {
    for node in state.nodes() {
        node.set_faults(Faults::default())
            .map_err(|e| Refusal(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    }
    Ok(Json(json!({ "cleared": state.nodes().len() })))
}

async fn stats(State(state): State<Shared>) -> Answer {
    to_json(&state.stats())
}

async fn reset_stats(State(state): State<Shared>) -> Answer {
    state.reset_stats();
    to_json(&state.stats())
}
