//! Handlers of `/v1/schedules…`: cron-scheduled batches — add, list, show,
//! delete.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::error::ApiError;
use super::power::RequestCaller;
use super::request::{check_keys, check_object, read_body, BODY_LIMIT};
use super::types::{ScheduleDocument, ScheduleList};
use super::AppState;

/// `POST /v1/schedules` → 201 with `Location`.
pub async fn add(
    State(app): State<AppState>,
    RequestCaller(caller): RequestCaller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(&headers, body, BODY_LIMIT).await?;
    check_object(&bytes, "schedule")?;
    check_keys(&bytes, "schedule")?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| ApiError::bad_request("the request body is not UTF-8 JSON"))?;
    let schedule = app.conductor.add_schedule(text, &caller, None).await?;
    let next = app.conductor.next_fire(&schedule.schedule_id);
    let location = format!("/v1/schedules/{}", schedule.schedule_id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(ScheduleDocument::new(schedule, next)),
    )
        .into_response())
}

/// `GET /v1/schedules`.
pub async fn list(State(app): State<AppState>) -> Result<Json<ScheduleList>, ApiError> {
    let schedules = app
        .conductor
        .list_schedules()
        .await?
        .into_iter()
        .map(|s| {
            let next = app.conductor.next_fire(&s.schedule_id);
            ScheduleDocument::new(s, next)
        })
        .collect();
    Ok(Json(ScheduleList { schedules }))
}

/// `GET /v1/schedules/{id}`.
pub async fn show(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ScheduleDocument>, ApiError> {
    let schedule = app.conductor.store().get_schedule(id.clone()).await?;
    Ok(Json(ScheduleDocument::new(
        schedule,
        app.conductor.next_fire(&id),
    )))
}

/// `DELETE /v1/schedules/{id}` → 204.
pub async fn delete(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    app.conductor.delete_schedule(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}
