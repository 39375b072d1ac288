//! The action API served on the Unix socket: routes, shared state and the
//! service-level handlers (`/v1`, `/v1/conductor`, `/metrics`). Node handlers
//! live in [`nodes`]; power, boot, maintenance, actions and the action log
//! in [`power`]; request parsing in [`request`]; errors and their HTTP
//! mapping in [`error`]; the envelope, request ids and metrics layers in
//! [`middleware`]. Bodies and responses are the types in [`types`], which the
//! CLI shares.

pub mod error;
pub mod jobs;
pub mod metrics;
pub mod middleware;
pub mod nodes;
pub mod power;
pub mod request;
pub mod roles;
pub mod schedules;
pub mod types;

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, Uri};
use axum::response::IntoResponse;
use axum::routing::{get, post, put};
use axum::{Json, Router};

use crate::conductor::Conductor;
use error::ApiError;
use metrics::Metrics;
use types::{Link, VersionDocument, API_VERSION};

/// What every handler can reach.
#[derive(Clone, Debug)]
pub struct AppState {
    pub conductor: Conductor,
    pub metrics: Arc<Metrics>,
}

/// The whole API as one router.
pub fn router(state: AppState) -> Router {
    let metrics = Arc::clone(&state.metrics);
    let routes = Router::new()
        .route("/v1", get(version))
        .route("/v1/conductor", get(conductor_status))
        .route("/metrics", get(prometheus))
        .route("/v1/nodes", get(nodes::list).post(nodes::create))
        .route("/v1/nodes/detail", get(nodes::list_detail))
        .route("/v1/nodes/import", post(nodes::import))
        .route(
            "/v1/nodes/{ident}",
            get(nodes::show).patch(nodes::patch).delete(nodes::delete),
        )
        .route("/v1/nodes/{ident}/states", get(nodes::states))
        .route("/v1/nodes/{ident}/states/power", put(power::set_power))
        .route(
            "/v1/nodes/{ident}/states/boot_device",
            put(power::set_boot_device),
        )
        .route(
            "/v1/nodes/{ident}/maintenance",
            put(power::enter_maintenance).delete(power::leave_maintenance),
        )
        .route("/v1/nodes/{ident}/action", post(power::action))
        .route(
            "/v1/nodes/{ident}/os-instance-actions",
            get(power::list_actions),
        )
        .route(
            "/v1/nodes/{ident}/os-instance-actions/{request_id}",
            get(power::show_action),
        )
        .route("/v1/baremetalservers/action", post(jobs::batch))
        .route(
            "/v1/{project_id}/baremetalservers/action",
            post(jobs::project_batch),
        )
        .route("/v1/jobs", get(jobs::list))
        .route("/v1/jobs/{job_id}", get(jobs::show))
        .route("/v1/jobs/{job_id}/cancel", post(jobs::cancel))
        .route("/v1/schedules", get(schedules::list).post(schedules::add))
        .route(
            "/v1/schedules/{schedule_id}",
            get(schedules::show).delete(schedules::delete),
        )
        .route_layer(axum::middleware::from_fn(middleware::tag_route))
        .fallback(not_found)
        .with_state(state);
    // The request-wide layer wraps the finished router (as its fallback
    // service) rather than each route, so it sees responses after the router
    // has completed them (e.g. the `Allow` header of a 405).
    Router::new()
        .fallback_service(routes)
        .layer(axum::middleware::from_fn(roles::authorize))
        .layer(axum::middleware::from_fn_with_state(
            metrics,
            middleware::around_request,
        ))
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::not_found(middleware::not_found_message(uri.path()))
}

async fn version() -> Json<VersionDocument> {
    let resource = |path: &str| Link {
        href: format!("/{API_VERSION}/{path}"),
        rel: path.to_owned(),
    };
    Json(VersionDocument {
        id: API_VERSION.into(),
        status: "CURRENT".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        links: Link::self_link(format!("/{API_VERSION}")),
        resources: vec![
            resource("nodes"),
            resource("jobs"),
            resource("schedules"),
            resource("conductor"),
        ],
    })
}

async fn conductor_status(State(app): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(app.conductor.status().await?))
}

async fn prometheus(State(app): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let counts = app.conductor.power_state_counts().await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        app.metrics.render(&counts, &app.conductor.activity()),
    ))
}
