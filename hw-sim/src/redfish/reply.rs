//! Building Redfish replies: JSON bodies with `OData-Version`, a strong `ETag`
//! computed from the body, and the `Allow` header of the resource.

use std::hash::{DefaultHasher, Hash, Hasher};

use bytes::Bytes;
use http::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE, ETAG};
use http::StatusCode;
use http_body_util::Full;
use hyper::Response;
use serde_json::Value;

use super::Reply;

/// A reply with `status`, a JSON `body` and the usual Redfish headers.
pub(crate) fn json(status: StatusCode, body: &Value) -> Reply {
    // Serialising a `Value` cannot fail (all keys are strings).
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    with_headers(
        status,
        Bytes::from(bytes),
        "application/json; charset=utf-8",
    )
}

/// A GET reply: JSON with a strong `ETag` and `Allow`.
pub(crate) fn resource(body: &Value, allow: &'static str) -> Reply {
    let mut reply = json(StatusCode::OK, body);
    let headers = reply.headers_mut();
    if let Ok(tag) = HeaderValue::from_str(&etag(body)) {
        headers.insert(ETAG, tag);
    }
    headers.insert(ALLOW, HeaderValue::from_static(allow));
    reply
}

/// A reply with an XML body (`$metadata`).
pub(crate) fn xml(body: &'static str) -> Reply {
    with_headers(
        StatusCode::OK,
        Bytes::from_static(body.as_bytes()),
        "application/xml; charset=utf-8",
    )
}

/// A reply without a body.
pub(crate) fn empty(status: StatusCode) -> Reply {
    let mut reply = Response::new(Full::new(Bytes::new()));
    *reply.status_mut() = status;
    reply
        .headers_mut()
        .insert("OData-Version", HeaderValue::from_static("4.0"));
    reply
}

fn with_headers(status: StatusCode, body: Bytes, content_type: &'static str) -> Reply {
    let mut reply = Response::new(Full::new(body));
    *reply.status_mut() = status;
    let headers = reply.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert("OData-Version", HeaderValue::from_static("4.0"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    reply
}

/// The strong entity tag of a representation: a hash of its JSON.
pub(crate) fn etag(body: &Value) -> String {
    let mut hasher = DefaultHasher::new();
    body.to_string().hash(&mut hasher);
    format!("\"{:016x}\"", hasher.finish())
}
