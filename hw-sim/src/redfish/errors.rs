//! Redfish error replies: `{"error": {"code", "message", "@Message.ExtendedInfo":
//! [...]}}` with message ids and texts from the DMTF Base message registry.

use http::header::{HeaderValue, ALLOW, CONNECTION, RETRY_AFTER, WWW_AUTHENTICATE};
use http::StatusCode;
use serde_json::{json, Value};

use super::{reply, Reply};
use crate::model::{SessionLimitReply, BUSY_RETRY_AFTER};

/// The Base registry version the message ids name.
const BASE: &str = "Base.1.18";

/// HPE iLO's message registry, for the messages only iLO sends.
const ILO: &str = "iLO.2.15";

/// Dell iDRAC's message registry.
const IDRAC: &str = "IDRAC.2.9";

/// One registry message (Base unless said otherwise) with its arguments.
#[derive(Debug)]
pub(crate) struct Message {
    registry: &'static str,
    key: &'static str,
    text: String,
    args: Vec<String>,
    resolution: &'static str,
}

impl Message {
    fn new(key: &'static str, text: String, args: &[&str], resolution: &'static str) -> Message {
        Message {
            registry: BASE,
            key,
            text,
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            resolution,
        }
    }

    /// The same message from a vendor's registry.
    fn in_registry(self, registry: &'static str) -> Message {
        Message { registry, ..self }
    }

    fn id(&self) -> String {
        format!("{}.{}", self.registry, self.key)
    }

    fn to_json(&self) -> Value {
        json!({
            "@odata.type": "#Message.v1_1_2.Message",
            "MessageId": self.id(),
            "Message": self.text,
            "MessageArgs": self.args,
            "MessageSeverity": "Critical",
            "Severity": "Critical",
            "Resolution": self.resolution,
        })
    }
}

/// An error reply with one message.
pub(crate) fn error(status: StatusCode, message: &Message) -> Reply {
    let body = json!({
        "error": {
            "code": message.id(),
            "message": message.text,
            "@Message.ExtendedInfo": [message.to_json()],
        }
    });
    reply::json(status, &body)
}

pub(crate) fn resource_not_found(kind: &str, name: &str) -> Reply {
    let m = Message::new(
        "ResourceNotFound",
        format!("The requested resource of type {kind} named '{name}' was not found."),
        &[kind, name],
        "Provide a valid resource identifier and resubmit the request.",
    );
    error(StatusCode::NOT_FOUND, &m)
}

pub(crate) fn method_not_allowed(allow: &'static str) -> Reply {
    let m = Message::new(
        "OperationNotAllowed",
        format!("The HTTP method is not allowed on this resource; allowed: {allow}."),
        &[],
        "None.",
    );
    let mut reply = error(StatusCode::METHOD_NOT_ALLOWED, &m);
    reply
        .headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    reply
}

pub(crate) fn unauthorized(uri: &str) -> Reply {
    let m = Message::new(
        "ResourceAtUriUnauthorized",
        format!("While accessing the resource at '{uri}', the service received an authorization error 'unauthorized'."),
        &[uri, "unauthorized"],
        "Send valid credentials with HTTP basic authentication, or an X-Auth-Token from SessionService/Sessions.",
    );
    let mut reply = error(StatusCode::UNAUTHORIZED, &m);
    reply.headers_mut().insert(
        WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"baton-hwsim\""),
    );
    reply
}

pub(crate) fn internal_error() -> Reply {
    let m = Message::new(
        "InternalError",
        "The request failed due to an internal service error.  The service is still operational."
            .into(),
        &[],
        "Resubmit the request.  If the problem persists, consider resetting the service.",
    );
    error(StatusCode::INTERNAL_SERVER_ERROR, &m)
}

pub(crate) fn busy() -> Reply {
    let secs = BUSY_RETRY_AFTER.as_secs().max(1).to_string();
    let m = Message::new(
        "ServiceTemporarilyUnavailable",
        format!("The service is temporarily unavailable.  Retry in {secs} seconds."),
        &[&secs],
        "Wait for the indicated retry duration and retry the operation.",
    );
    let mut reply = error(StatusCode::SERVICE_UNAVAILABLE, &m);
    if let Ok(v) = HeaderValue::from_str(&secs) {
        reply.headers_mut().insert(RETRY_AFTER, v);
    }
    reply
}

pub(crate) fn payload_too_large() -> Reply {
    let m = Message::new(
        "GeneralError",
        format!("The request body is larger than {} bytes.", super::MAX_BODY),
        &[],
        "Send a smaller request body.",
    );
    error(StatusCode::PAYLOAD_TOO_LARGE, &m)
}

pub(crate) fn body_timeout() -> Reply {
    let m = Message::new(
        "GeneralError",
        format!(
            "The request body did not arrive within {} seconds.",
            super::server::BODY_READ_TIMEOUT.as_secs()
        ),
        &[],
        "Send the whole request body at once and resubmit the request.",
    );
    let mut reply = error(StatusCode::REQUEST_TIMEOUT, &m);
    // The rest of the body may still arrive; the connection cannot be reused.
    reply
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    reply
}

pub(crate) fn malformed_body() -> Reply {
    let m = Message::new(
        "MalformedJSON",
        "The request body submitted was malformed JSON and could not be parsed by the receiving service.".into(),
        &[],
        "Ensure that the request body is valid JSON and resubmit the request.",
    );
    error(StatusCode::BAD_REQUEST, &m)
}

pub(crate) fn action_parameter_missing(action: &str, param: &str) -> Reply {
    let m = Message::new(
        "ActionParameterMissing",
        format!("The action {action} requires the parameter {param} to be present in the request body."),
        &[action, param],
        "Supply the action with the required parameter in the request body when the request is resubmitted.",
    );
    error(StatusCode::BAD_REQUEST, &m)
}

pub(crate) fn action_parameter_unknown(action: &str, param: &str) -> Reply {
    let m = Message::new(
        "ActionParameterUnknown",
        format!("The action {action} was submitted with the invalid parameter {param}."),
        &[action, param],
        "Correct the invalid parameter and resubmit the request if the operation failed.",
    );
    error(StatusCode::BAD_REQUEST, &m)
}

pub(crate) fn action_parameter_type(value: &str, param: &str, action: &str) -> Reply {
    let m = Message::new(
        "ActionParameterValueTypeError",
        format!("The value '{value}' for the parameter {param} in the action {action} is of a different type than the parameter can accept."),
        &[value, param, action],
        "Correct the value for the parameter in the request body and resubmit the request if the operation failed.",
    );
    error(StatusCode::BAD_REQUEST, &m)
}

pub(crate) fn action_parameter_not_in_list(value: &str, param: &str, action: &str) -> Reply {
    let m = Message::new(
        "ActionParameterValueNotInList",
        format!("The value '{value}' for the parameter {param} in the action {action} is not in the list of acceptable values."),
        &[value, param, action],
        "Choose a value from the enumeration list that the implementation can support and resubmit the request if the operation failed.",
    );
    error(StatusCode::BAD_REQUEST, &m)
}

pub(crate) fn action_parameter_conflict(param: &str, value: &str, why: &str) -> Reply {
    let m = Message::new(
        "ActionParameterValueConflict",
        format!("The parameter '{param}' with the requested value of '{value}' does not meet the constraints of the implementation: {why}."),
        &[param, value],
        "Retry once the system has finished its power transition, or choose a value allowed in the present power state.",
    );
    error(StatusCode::CONFLICT, &m)
}

pub(crate) fn no_operation(status: StatusCode, what: &str) -> Reply {
    let m = Message::new(
        "NoOperation",
        format!("The request did not result in any changes because {what}."),
        &[],
        "None.",
    );
    error(status, &m)
}

pub(crate) fn property_unknown(property: &str) -> Reply {
    let m = Message::new(
        "PropertyUnknown",
        format!("The property {property} is not in the list of valid properties for the resource."),
        &[property],
        "Remove the unknown property from the request body and resubmit the request if the operation failed.",
    );
    error(StatusCode::BAD_REQUEST, &m)
}

pub(crate) fn property_not_writable(property: &str) -> Reply {
    let m = Message::new(
        "PropertyNotWritable",
        format!("The property {property} is a read only property and cannot be assigned a value."),
        &[property],
        "Remove the property from the request body and resubmit the request if the operation failed.",
    );
    error(StatusCode::BAD_REQUEST, &m)
}

pub(crate) fn property_value_not_in_list(value: &str, property: &str) -> Reply {
    let m = Message::new(
        "PropertyValueNotInList",
        format!("The value '{value}' for the property {property} is not in the list of acceptable values."),
        &[value, property],
        "Choose a value from the enumeration list that the implementation can support and resubmit the request if the operation failed.",
    );
    error(StatusCode::BAD_REQUEST, &m)
}

pub(crate) fn property_value_type(value: &str, property: &str) -> Reply {
    let m = Message::new(
        "PropertyValueTypeError",
        format!("The value '{value}' for the property {property} is of a different type than the property can accept."),
        &[value, property],
        "Correct the value for the property in the request body and resubmit the request if the operation failed.",
    );
    error(StatusCode::BAD_REQUEST, &m)
}

pub(crate) fn precondition_failed() -> Reply {
    let m = Message::new(
        "PreconditionFailed",
        "The ETag supplied did not match the ETag required to change this resource.".into(),
        &[],
        "Try the operation again using the appropriate ETag.",
    );
    error(StatusCode::PRECONDITION_FAILED, &m)
}

pub(crate) fn create_missing_property(property: &str) -> Reply {
    let m = Message::new(
        "CreateFailedMissingReqProperties",
        format!("The create operation failed because the required property {property} was missing from the request."),
        &[property],
        "Correct the body to include the required property with a valid value and resubmit the request if the operation failed.",
    );
    error(StatusCode::BAD_REQUEST, &m)
}

/// A full session table: 503 with the Base message or, per the
/// `session_limit_reply` quirk, iDRAC's.
pub(crate) fn session_limit(reply: SessionLimitReply) -> Reply {
    let m = match reply {
        SessionLimitReply::Base => Message::new(
            "SessionLimitExceeded",
            "The session establishment failed due to the number of simultaneous sessions exceeding the limit of the implementation.".into(),
            &[],
            "Reduce the number of other sessions before trying to establish the session or increase the limit of simultaneous sessions, if supported.",
        ),
        SessionLimitReply::Vendor => Message::new(
            "RAC0218",
            "The maximum number of user sessions is reached.".into(),
            &[],
            "Close one or more sessions and retry the operation.",
        )
        .in_registry(IDRAC),
    };
    error(StatusCode::SERVICE_UNAVAILABLE, &m)
}

/// A boot override PATCH while the server is in POST (HPE iLO: 400).
pub(crate) fn unable_during_post() -> Reply {
    let m = Message::new(
        "UnableToModifyDuringSystemPOST",
        "The value for the property cannot be changed while the server is in POST.".into(),
        &[],
        "Wait for the server to complete POST, or power it off, and retry the operation.",
    )
    .in_registry(ILO);
    error(StatusCode::BAD_REQUEST, &m)
}

/// A required property left out of a PATCH.
pub(crate) fn property_missing(property: &str) -> Reply {
    let m = Message::new(
        "PropertyMissing",
        format!("The property {property} is a required property and must be included in the request."),
        &[property],
        "Ensure that the property is in the request body and has a valid value and resubmit the request if the operation failed.",
    );
    error(StatusCode::BAD_REQUEST, &m)
}

/// A property written with the value it already has, where the BMC refuses that.
pub(crate) fn property_value_conflict(property: &str, value: &str) -> Reply {
    let m = Message::new(
        "PropertyValueConflict",
        format!("The property '{property}' could not be written because its value '{value}' is the present one."),
        &[property, value],
        "Leave the property out of the request, or change it, and resubmit the request.",
    );
    error(StatusCode::BAD_REQUEST, &m)
}

/// A PATCH without `If-Match` where the BMC requires one (428).
pub(crate) fn precondition_required() -> Reply {
    let m = Message::new(
        "PreconditionRequired",
        "A precondition header or annotation is required to change this resource.".into(),
        &[],
        "Try the operation again using an If-Match or If-None-Match header and appropriate ETag.",
    );
    error(StatusCode::PRECONDITION_REQUIRED, &m)
}

/// A request asking for an OData version other than 4.0 (DSP0266: 412).
pub(crate) fn odata_version_unsupported(asked: &str) -> Reply {
    let m = Message::new(
        "GeneralError",
        format!("The OData-Version '{asked}' requested is not supported; this service supports OData-Version 4.0."),
        &[],
        "Send OData-Version: 4.0, or no OData-Version header, and resubmit the request.",
    );
    error(StatusCode::PRECONDITION_FAILED, &m)
}

/// A `$` query parameter the service does not support (DSP0266: 501).
pub(crate) fn query_parameter_unsupported(name: &str) -> Reply {
    let m = Message::new(
        "QueryParameterUnsupported",
        format!("The query parameter '{name}' is not supported."),
        &[name],
        "Correct or remove the query parameter and resubmit the request; the service root's ProtocolFeaturesSupported lists what is supported.",
    );
    error(StatusCode::NOT_IMPLEMENTED, &m)
}

/// A `$top` or `$skip` value that is not a non-negative integer.
pub(crate) fn query_parameter_value_type(value: &str, name: &str) -> Reply {
    let m = Message::new(
        "QueryParameterValueTypeError",
        format!("The value '{value}' for the query parameter {name} is of a different type than the parameter can accept."),
        &[value, name],
        "Correct the value for the query parameter in the request and resubmit the request if the operation failed.",
    );
    error(StatusCode::BAD_REQUEST, &m)
}

/// A POST or PATCH body not sent as JSON (bmcweb: 400).
pub(crate) fn unrecognized_request_body() -> Reply {
    let m = Message::new(
        "UnrecognizedRequestBody",
        "The service detected a malformed request body that it was unable to interpret.".into(),
        &[],
        "Send the body as JSON with Content-Type: application/json and resubmit the request.",
    );
    error(StatusCode::BAD_REQUEST, &m)
}
