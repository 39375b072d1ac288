//! Request-wide concerns, applied around every route: the `X-Request-Id`
//! header, the error envelope (for our errors and the router's own 404/405),
//! per-route metrics and one log line per request. Bodies are never logged,
//! so BMC passwords cannot reach the log.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::error::{ApiError, ErrorKind};
use super::metrics::Metrics;
use super::types::{ErrorBody, ErrorEnvelope};

/// The request's id (`req-<uuid>`), available to handlers as an extension.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// The route template that served a request, carried back on the response.
#[derive(Debug, Clone)]
struct RouteTag(String);

pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Routes whose handlers read a query string; every other route refuses
/// one, so that a misspelt or misplaced parameter is an error, not a silent
/// no-op.
const QUERY_ROUTES: [&str; 4] = [
    "/v1/nodes",
    "/v1/nodes/detail",
    "/v1/jobs",
    "/v1/nodes/{ident}/os-instance-actions",
];

/// The routes (method and template) whose handlers read a body; any other
/// request with one is refused rather than having its body ignored.
const BODY_ROUTES: [(Method, &str); 10] = [
    (Method::POST, "/v1/nodes"),
    (Method::POST, "/v1/nodes/import"),
    (Method::PATCH, "/v1/nodes/{ident}"),
    (Method::PUT, "/v1/nodes/{ident}/states/power"),
    (Method::PUT, "/v1/nodes/{ident}/states/boot_device"),
    (Method::PUT, "/v1/nodes/{ident}/maintenance"),
    (Method::POST, "/v1/nodes/{ident}/action"),
    (Method::POST, "/v1/baremetalservers/action"),
    (Method::POST, "/v1/{project_id}/baremetalservers/action"),
    (Method::POST, "/v1/schedules"),
];

/// Innermost layer (per route): refuses a query or a body the route does
/// not read, and remembers which route template matched.
pub async fn tag_route(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned());
    if let Some(error) = route.as_deref().and_then(|r| unread_input(&request, r)) {
        let mut response = error.into_response();
        if let Some(route) = route {
            response.extensions_mut().insert(RouteTag(route));
        }
        return response;
    }
    let mut response = next.run(request).await;
    if let Some(route) = route {
        response.extensions_mut().insert(RouteTag(route));
    }
    response
}

/// A query or body that `route` would not read.
fn unread_input(request: &Request, route: &str) -> Option<ApiError> {
    let method = request.method();
    let query = request.uri().query().filter(|q| !q.is_empty());
    if query.is_some() && !QUERY_ROUTES.contains(&route) {
        return Some(ApiError::bad_request(format!(
            "{method} {route} takes no query parameters; remove the `?…` part"
        )));
    }
    let headers = request.headers();
    let has_body = headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|len| len.as_bytes() != b"0");
    let reads_body = BODY_ROUTES.iter().any(|(m, r)| m == method && *r == route);
    (has_body && !reads_body).then(|| {
        ApiError::bad_request(format!(
            "{method} {route} takes no request body; send it without one"
        ))
    })
}

/// Outermost layer: request id, error envelope, metrics, access log.
pub async fn around_request(
    State(metrics): State<Arc<Metrics>>,
    mut request: Request,
    next: Next,
) -> Response {
    let id = format!("req-{}", uuid::Uuid::new_v4());
    request.extensions_mut().insert(RequestId(id.clone()));
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let started = Instant::now();

    let response = next.run(request).await;
    let route = response
        .extensions()
        .get::<RouteTag>()
        .map_or_else(|| "unmatched".to_owned(), |r| r.0.clone());
    let mut response = render_error(response, &id, &method, &path).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }

    let elapsed = started.elapsed();
    let status = response.status();
    metrics.observe(&route, method_label(&method), status.as_u16(), elapsed);
    let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
    if method == Method::GET && status.is_success() {
        tracing::debug!(request_id = %id, %method, %path, status = status.as_u16(), micros, "request");
    } else {
        tracing::info!(request_id = %id, %method, %path, status = status.as_u16(), micros, "request");
    }
    response
}

/// Metrics label of a method: the standard ones, everything else "other"
/// (so made-up methods cannot create label series without bound).
fn method_label(method: &Method) -> &'static str {
    const KNOWN: [Method; 7] = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::OPTIONS,
    ];
    KNOWN
        .iter()
        .find(|m| *m == method)
        .map_or("other", Method::as_str)
}

/// Gives every error response the envelope, keeping its status and headers
/// (such as `Allow` on a 405). Internal errors are logged here, with the
/// request id the caller sees.
async fn render_error(
    mut response: Response,
    request_id: &str,
    method: &Method,
    path: &str,
) -> Response {
    let status = response.status();
    let error = match response.extensions_mut().remove::<ApiError>() {
        Some(error) => error,
        None if status.is_client_error() || status.is_server_error() => {
            let (parts, body) = response.into_parts();
            let text = plain_text_body(&parts.headers, body).await;
            response = Response::from_parts(parts, axum::body::Body::empty());
            router_error(&response, status, method, path, text)
        }
        None => return response,
    };
    if error.kind == ErrorKind::Internal {
        tracing::error!(request_id, %method, path, error = %error.message, "request failed");
    }
    let envelope = ErrorEnvelope {
        error: ErrorBody {
            code: error.kind.code().to_owned(),
            message: error.message,
            request_id: request_id.to_owned(),
        },
    };
    let mut rendered = (error.kind.status(), Json(envelope)).into_response();
    for (name, value) in response.headers() {
        let keep =
            name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH && !value.is_empty();
        if keep {
            rendered.headers_mut().append(name.clone(), value.clone());
        }
    }
    rendered
}

/// The message of a framework rejection (a short `text/plain` body), if any.
async fn plain_text_body(headers: &http::HeaderMap, body: axum::body::Body) -> Option<String> {
    let is_text = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain"));
    if !is_text {
        return None;
    }
    let bytes = axum::body::to_bytes(body, 4096).await.ok()?;
    let text = String::from_utf8_lossy(&bytes).trim().to_owned();
    (!text.is_empty()).then(|| crate::messages::clip(&text, 300))
}

/// An error the router produced itself, described for an operator.
fn router_error(
    response: &Response,
    status: StatusCode,
    method: &Method,
    path: &str,
    text: Option<String>,
) -> ApiError {
    let kind = ErrorKind::from_status(status);
    let message = match kind {
        ErrorKind::MethodNotAllowed => {
            let allowed: Vec<&str> = response
                .headers()
                .get_all(header::ALLOW)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .filter(|v| !v.is_empty())
                .collect();
            let allowed = allowed.join(",");
            format!("{method} is not allowed on {path}; allowed methods: {allowed}")
        }
        ErrorKind::NotFound => not_found_message(path),
        _ if text.is_some() => text.unwrap_or_default(),
        _ => format!(
            "{} {}",
            status.as_u16(),
            status.canonical_reason().unwrap_or("error")
        ),
    };
    ApiError::new(kind, message)
}

pub fn not_found_message(path: &str) -> String {
    format!("no such resource {path}; GET /v1 lists the API's resources")
}
