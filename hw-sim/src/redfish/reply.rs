//! Building Redfish replies: JSON bodies with `OData-Version` and
//! `Cache-Control`, and for a resource an `ETag` computed from the body
//! (strong, unless the node's `etag` quirks make it weak or body-only), the `Allow` header, and the `Link: <schema>; rel=describedby`
//! header naming the JSON schema of its `@odata.type` (DSP0266 "Link header").

use std::hash::{DefaultHasher, Hash, Hasher};

use bytes::Bytes;
use http::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE, ETAG, LINK};
use http::StatusCode;
use http_body_util::Full;
use hyper::Response;
use serde_json::Value;

use super::Reply;
use crate::model::{EtagQuirk, Quirks};

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

/// Where the DMTF publishes the JSON schemas.
const SCHEMA_BASE: &str = "http://redfish.dmtf.org/schemas/v1";

/// How a BMC gives its entity tags (its `etag` quirks).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct TagStyle {
    /// `W/"…"` instead of `"…"`.
    pub weak: bool,
    /// Only as `@odata.etag` in the body, no `ETag` header.
    pub body_only: bool,
}

impl TagStyle {
    pub(crate) fn of(quirks: &Quirks) -> TagStyle {
        TagStyle {
            weak: quirks.etag(EtagQuirk::Weak),
            body_only: quirks.etag(EtagQuirk::BodyOnly),
        }
    }

    /// The tag of `body` as this BMC writes it.
    pub(crate) fn tag(self, body: &Value) -> String {
        let strong = etag(body);
        if self.weak {
            format!("W/{strong}")
        } else {
            strong
        }
    }
}

/// A GET reply: JSON with an `ETag` (as `style` says), `Allow` and `Link`.
pub(crate) fn resource(body: &Value, allow: &'static str, style: TagStyle) -> Reply {
    let tag = style.tag(body);
    let mut reply = if style.body_only {
        let mut tagged = body.clone();
        if let Some(fields) = tagged.as_object_mut() {
            fields.insert("@odata.etag".into(), Value::String(tag.clone()));
        }
        json(StatusCode::OK, &tagged)
    } else {
        json(StatusCode::OK, body)
    };
    let headers = reply.headers_mut();
    if !style.body_only {
        if let Ok(tag) = HeaderValue::from_str(&tag) {
            headers.insert(ETAG, tag);
        }
    }
    if let Some(link) = schema_link(body).and_then(|l| HeaderValue::from_str(&l).ok()) {
        headers.insert(LINK, link);
    }
    headers.insert(ALLOW, HeaderValue::from_static(allow));
    reply
}

/// Whether an `If-None-Match` header names the current tag of `body` (or
/// is `*`): DSP0266 then answers a GET or HEAD 304 Not Modified. The
/// comparison is weak, as RFC 7232 asks: `W/"x"` matches `"x"`.
pub(crate) fn none_match(header: Option<&HeaderValue>, body: &Value) -> bool {
    let Some(listed) = header.and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let current = etag(body);
    listed
        .split(',')
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == "*" || t == current)
}

/// 304 Not Modified: no body, the headers a 200 would have had that a
/// cache needs (`ETag`, `Cache-Control`).
pub(crate) fn not_modified(body: &Value, style: TagStyle) -> Reply {
    let mut reply = empty(StatusCode::NOT_MODIFIED);
    let headers = reply.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if !style.body_only {
        if let Ok(tag) = HeaderValue::from_str(&style.tag(body)) {
            headers.insert(ETAG, tag);
        }
    }
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

/// The `Link` header value naming the JSON schema of `body`'s
/// `@odata.type`: `#ComputerSystem.v1_22_0.ComputerSystem` is described by
/// `ComputerSystem.v1_22_0.json` (the versioned schema, as DSP0266 asks),
/// an unversioned collection type by its unversioned schema.
pub(crate) fn schema_link(body: &Value) -> Option<String> {
    let odata_type = body.get("@odata.type")?.as_str()?.strip_prefix('#')?;
    let (namespace, _type_name) = odata_type.rsplit_once('.')?;
    Some(format!("<{SCHEMA_BASE}/{namespace}.json>; rel=describedby"))
}

/// The strong entity tag of a representation: a hash of its JSON.
pub(crate) fn etag(body: &Value) -> String {
    let mut hasher = DefaultHasher::new();
    body.to_string().hash(&mut hasher);
    format!("\"{:016x}\"", hasher.finish())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn link_names_the_versioned_schema() {
        let system = json!({"@odata.type": "#ComputerSystem.v1_22_0.ComputerSystem"});
        assert_eq!(
            schema_link(&system).as_deref(),
            Some(
                "<http://redfish.dmtf.org/schemas/v1/ComputerSystem.v1_22_0.json>; rel=describedby"
            )
        );
        let members = json!({"@odata.type": "#RoleCollection.RoleCollection"});
        assert_eq!(
            schema_link(&members).as_deref(),
            Some("<http://redfish.dmtf.org/schemas/v1/RoleCollection.json>; rel=describedby")
        );
        assert_eq!(schema_link(&json!({"v1": "/redfish/v1/"})), None);
    }
}
