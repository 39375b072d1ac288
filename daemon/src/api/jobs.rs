//! Handlers of the batch API: `POST /v1/baremetalservers/action` (also
//! under `/v1/{project_id}/…`, as the public BMS API), and `/v1/jobs…` —
//! show, list (with its filters and paging) and cancel.

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::Json;
use baton_state::{JobFilter, JobStatus};

use super::error::ApiError;
use super::power::RequestCaller;
use super::request::{check_keys, query_pairs, read_body, BODY_LIMIT};
use super::types::{JobCreated, JobDocument, JobList};
use super::AppState;
use crate::conductor::batch::parse_batch;
use crate::messages::clip;

/// Default and largest page of a job listing.
pub const DEFAULT_JOBS: usize = 100;
pub const MAX_JOBS: usize = 1000;

const OPERATIONS: [&str; 3] = ["os-stop", "os-start", "reboot"];

/// `POST /v1/baremetalservers/action`.
pub async fn batch(
    State(app): State<AppState>,
    RequestCaller(caller): RequestCaller,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<JobCreated>, ApiError> {
    start(app, caller, None, headers, body).await
}

/// `POST /v1/{project_id}/baremetalservers/action`.
pub async fn project_batch(
    State(app): State<AppState>,
    Path(project_id): Path<String>,
    RequestCaller(caller): RequestCaller,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<JobCreated>, ApiError> {
    if project_id.is_empty()
        || project_id.len() > 64
        || !project_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(ApiError::bad_request(format!(
            "project id {:?} is not valid; use up to 64 letters, digits, '-' or '_'",
            clip(&project_id, 64)
        )));
    }
    start(app, caller, Some(project_id), headers, body).await
}

async fn start(
    app: AppState,
    caller: crate::conductor::actions::Caller,
    project_id: Option<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<JobCreated>, ApiError> {
    let bytes = read_body(&headers, body, BODY_LIMIT).await?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| ApiError::bad_request("the request body is not UTF-8 JSON"))?;
    if text.trim().is_empty() {
        return Err(ApiError::bad_request(
            "the request body is empty; send a batch such as {\"os-stop\": {\"type\": \"SOFT\", \"servers\": [{\"id\": \"node-1\"}]}}",
        ));
    }
    let request = parse_batch(text)?;
    check_keys(&bytes, "batch")?;
    let job_id = app
        .conductor
        .start_batch(request, &caller, project_id, None)
        .await?;
    Ok(Json(JobCreated { job_id }))
}

/// `GET /v1/jobs/{job_id}`.
pub async fn show(
    State(app): State<AppState>,
    Path(job_id): Path<String>,
) -> Result<Json<JobDocument>, ApiError> {
    Ok(Json(app.conductor.job(&job_id).await?.into()))
}

/// `POST /v1/jobs/{job_id}/cancel`.
pub async fn cancel(
    State(app): State<AppState>,
    Path(job_id): Path<String>,
) -> Result<Json<JobDocument>, ApiError> {
    Ok(Json(app.conductor.cancel_job(&job_id).await?.into()))
}

/// A parsed job listing query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobQuery {
    pub filter: JobFilter,
    pub limit: usize,
    pub marker: Option<String>,
}

impl JobQuery {
    pub fn parse(query: Option<&str>) -> Result<Self, ApiError> {
        let mut parsed = JobQuery {
            filter: JobFilter::default(),
            limit: DEFAULT_JOBS,
            marker: None,
        };
        for (key, value) in query_pairs(query, &["status", "operation", "limit", "marker"])? {
            match key.as_str() {
                "status" => {
                    parsed.filter.status = Some(JobStatus::parse(&value).ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "status {:?} is unknown; use INIT, RUNNING, SUCCESS or FAIL",
                            clip(&value, 32)
                        ))
                    })?);
                }
                "operation" => {
                    if !OPERATIONS.contains(&value.as_str()) {
                        return Err(ApiError::bad_request(format!(
                            "operation {:?} is unknown; use {}",
                            clip(&value, 32),
                            OPERATIONS.join(", ")
                        )));
                    }
                    parsed.filter.operation = Some(value);
                }
                "limit" => {
                    parsed.limit = value
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=MAX_JOBS).contains(n))
                        .ok_or_else(|| {
                            ApiError::bad_request(format!(
                                "limit must be a whole number from 1 to {MAX_JOBS}, got {:?}",
                                clip(&value, 32)
                            ))
                        })?;
                }
                _ => parsed.marker = Some(value),
            }
        }
        Ok(parsed)
    }

    fn next_url(&self, last: &str) -> String {
        let mut pairs = vec![
            ("limit", self.limit.to_string()),
            ("marker", last.to_owned()),
        ];
        if let Some(status) = self.filter.status {
            pairs.push(("status", status.as_str().to_owned()));
        }
        if let Some(operation) = &self.filter.operation {
            pairs.push(("operation", operation.clone()));
        }
        format!(
            "/v1/jobs?{}",
            serde_urlencoded::to_string(&pairs).unwrap_or_default()
        )
    }
}

/// `GET /v1/jobs`: newest first.
pub async fn list(
    State(app): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<JobList>, ApiError> {
    let query = JobQuery::parse(query.as_deref())?;
    let jobs = app
        .conductor
        .jobs(query.filter.clone(), query.limit, query.marker.clone())
        .await?;
    let next = jobs
        .last()
        .filter(|_| jobs.len() == query.limit)
        .map(|last| query.next_url(&last.job_id));
    Ok(Json(JobList {
        jobs: jobs.into_iter().map(JobDocument::from).collect(),
        next,
    }))
}
