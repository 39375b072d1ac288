//! The one place where failures become HTTP: each [`ErrorKind`] has exactly
//! one status and one fault name (Nova's), and every error of the layers below
//! (store, request parsing) is mapped to a kind here and nowhere else.
//!
//! Handlers return [`ApiError`]; its response carries the kind and message as
//! an extension, and the envelope middleware (`api::middleware`) renders the
//! `{"error": {code, message, request_id}}` body, so framework-generated
//! errors (405, 404) get the same envelope.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use baton_state::StoreError;

use crate::conductor::actions::{bmc_error_kind, BmcErrorKind, Refusal};
use crate::conductor::ConductorError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    BadRequest,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    Conflict,
    NotAcceptable,
    PayloadTooLarge,
    NotImplemented,
    Internal,
    Unavailable,
}

impl ErrorKind {
    pub fn status(self) -> StatusCode {
        match self {
            ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
            ErrorKind::Forbidden => StatusCode::FORBIDDEN,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::NotAcceptable => StatusCode::NOT_ACCEPTABLE,
            ErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::NotImplemented => StatusCode::NOT_IMPLEMENTED,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The fault name in the envelope's `code`.
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::BadRequest => "badRequest",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::NotFound => "itemNotFound",
            ErrorKind::MethodNotAllowed => "methodNotAllowed",
            ErrorKind::Conflict => "conflictingRequest",
            ErrorKind::NotAcceptable => "notAcceptable",
            ErrorKind::PayloadTooLarge => "payloadTooLarge",
            ErrorKind::NotImplemented => "notImplemented",
            ErrorKind::Internal => "internalError",
            ErrorKind::Unavailable => "serviceUnavailable",
        }
    }

    /// The kind for a status produced outside our handlers (by the router or
    /// hyper); statuses we never produce fall back by class.
    pub fn from_status(status: StatusCode) -> Self {
        const ALL: [ErrorKind; 10] = [
            ErrorKind::BadRequest,
            ErrorKind::Forbidden,
            ErrorKind::NotFound,
            ErrorKind::MethodNotAllowed,
            ErrorKind::Conflict,
            ErrorKind::NotAcceptable,
            ErrorKind::PayloadTooLarge,
            ErrorKind::NotImplemented,
            ErrorKind::Internal,
            ErrorKind::Unavailable,
        ];
        ALL.into_iter()
            .find(|k| k.status() == status)
            .unwrap_or(if status.is_server_error() {
                ErrorKind::Internal
            } else {
                ErrorKind::BadRequest
            })
    }
}

/// A failed request: what kind of failure, and a message that says what is
/// wrong and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub kind: ErrorKind,
    pub message: String,
}

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequest, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    pub fn too_large(limit: usize) -> Self {
        Self::new(
            ErrorKind::PayloadTooLarge,
            format!(
                "request body is larger than {} KiB; split it into smaller requests",
                limit / 1024
            ),
        )
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        let kind = match &err {
            StoreError::NodeNotFound { .. }
            | StoreError::ActionNotFound { .. }
            | StoreError::JobNotFound { .. }
            | StoreError::ScheduleNotFound { .. } => ErrorKind::NotFound,
            StoreError::MarkerNotFound { .. }
            | StoreError::UnknownServers(_)
            | StoreError::DuplicateServers(_) => ErrorKind::BadRequest,
            StoreError::DuplicateNames(_) | StoreError::NodeBusy { .. } => ErrorKind::Conflict,
            StoreError::SchemaTooNew { .. }
            | StoreError::Io { .. }
            | StoreError::Open { .. }
            | StoreError::InUse { .. }
            | StoreError::Sqlite(_)
            | StoreError::Corrupt(_)
            | StoreError::Damaged { .. }
            | StoreError::WorkerGone => ErrorKind::Internal,
            StoreError::Unavailable(_) => ErrorKind::Unavailable,
        };
        let hint = match &err {
            StoreError::NodeNotFound { .. } => {
                "; `baton node list` (GET /v1/nodes) lists the enrolled nodes"
            }
            StoreError::MarkerNotFound { .. } => {
                "; use the uuid of the last node of the previous page"
            }
            StoreError::DuplicateNames(_) => "; node names must be unique",
            StoreError::UnknownServers(_) => {
                "; `baton node list` (GET /v1/nodes) lists the enrolled nodes"
            }
            StoreError::DuplicateServers(_) => "; name each server once",
            StoreError::JobNotFound { .. } => "; `baton job list` (GET /v1/jobs) lists the jobs",
            StoreError::ScheduleNotFound { .. } => {
                "; `baton schedule list` (GET /v1/schedules) lists the schedules"
            }
            StoreError::NodeBusy { .. } => "; wait for the operation to finish and retry",
            _ => "",
        };
        ApiError::new(kind, format!("{err}{hint}"))
    }
}

impl From<ConductorError> for ApiError {
    fn from(err: ConductorError) -> Self {
        match err {
            ConductorError::Store(e) => e.into(),
            ConductorError::InvalidNode(_)
            | ConductorError::InvalidImport { .. }
            | ConductorError::ImportTooLarge(_)
            | ConductorError::ImportEmpty
            | ConductorError::InvalidBatch(_)
            | ConductorError::InvalidSchedule(_)
            | ConductorError::Patch(_) => ApiError::bad_request(err.to_string()),
            ConductorError::Refused(Refusal::Conflict(message)) => {
                ApiError::new(ErrorKind::Conflict, message)
            }
            ConductorError::Refused(Refusal::NotAcceptable(message)) => {
                ApiError::new(ErrorKind::NotAcceptable, message)
            }
            ConductorError::Bmc(error) => {
                let kind = match bmc_error_kind(&error) {
                    BmcErrorKind::NotAcceptable => ErrorKind::NotAcceptable,
                    BmcErrorKind::Conflict => ErrorKind::Conflict,
                    BmcErrorKind::Unavailable => ErrorKind::Unavailable,
                    BmcErrorKind::Failed => ErrorKind::Internal,
                };
                ApiError::new(kind, format!("the BMC request failed: {error}"))
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = self.kind.status().into_response();
        response.extensions_mut().insert(self);
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_distinct_status_and_code() {
        let pins = [
            (ErrorKind::BadRequest, 400, "badRequest"),
            (ErrorKind::Forbidden, 403, "forbidden"),
            (ErrorKind::NotFound, 404, "itemNotFound"),
            (ErrorKind::MethodNotAllowed, 405, "methodNotAllowed"),
            (ErrorKind::NotAcceptable, 406, "notAcceptable"),
            (ErrorKind::Conflict, 409, "conflictingRequest"),
            (ErrorKind::PayloadTooLarge, 413, "payloadTooLarge"),
            (ErrorKind::Internal, 500, "internalError"),
            (ErrorKind::NotImplemented, 501, "notImplemented"),
            (ErrorKind::Unavailable, 503, "serviceUnavailable"),
        ];
        for (kind, status, code) in pins {
            assert_eq!(kind.status().as_u16(), status);
            assert_eq!(kind.code(), code);
            assert_eq!(ErrorKind::from_status(kind.status()), kind);
        }
        assert_eq!(
            ErrorKind::from_status(StatusCode::UNSUPPORTED_MEDIA_TYPE),
            ErrorKind::BadRequest
        );
        assert_eq!(
            ErrorKind::from_status(StatusCode::BAD_GATEWAY),
            ErrorKind::Internal
        );
    }

    #[test]
    fn store_errors_map_to_kinds() {
        let cases = [
            (
                StoreError::NodeNotFound { ident: "x".into() },
                ErrorKind::NotFound,
            ),
            (
                StoreError::MarkerNotFound { marker: "m".into() },
                ErrorKind::BadRequest,
            ),
            (StoreError::DuplicateNames(vec![]), ErrorKind::Conflict),
            (
                StoreError::NodeBusy {
                    ident: "x".into(),
                    reason: "r".into(),
                },
                ErrorKind::Conflict,
            ),
            (StoreError::WorkerGone, ErrorKind::Internal),
            (
                StoreError::Unavailable(baton_state::Refusal {
                    path: "/var/lib/baton/baton.db".into(),
                    reason: "database or disk is full".into(),
                    hint: "free space",
                }),
                ErrorKind::Unavailable,
            ),
        ];
        for (err, kind) in cases {
            assert_eq!(ApiError::from(err).kind, kind);
        }
    }
}
