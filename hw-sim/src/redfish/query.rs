//! Redfish query parameters (DSP0266 "Query parameters").
//!
//! The service supports `$top` and `$skip` on collections, as the service
//! root's `ProtocolFeaturesSupported` declares (`TopSkipQuery: true`, every
//! other query feature false). A parameter that starts with `$` and is not
//! one of those is answered 501 Not Implemented with
//! `QueryParameterUnsupported`; a `$top`/`$skip` that is not a non-negative
//! integer is 400 `QueryParameterValueTypeError`. Parameters without `$`
//! (`only`, `excerpt`, anything else) are ignored, as the specification
//! requires of unsupported ones. On a resource that is not a collection,
//! `$top` and `$skip` change nothing.

use serde_json::Value;

use super::{errors, Reply};

/// A query the service refuses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum QueryError {
    /// A `$` parameter the service does not support (501).
    Unsupported(String),
    /// A `$top`/`$skip` value that is not a non-negative integer (400).
    BadValue {
        /// The parameter.
        name: String,
        /// The value sent.
        value: String,
    },
}

impl QueryError {
    /// The Redfish error reply.
    pub(crate) fn reply(&self) -> Reply {
        match self {
            QueryError::Unsupported(name) => errors::query_parameter_unsupported(name),
            QueryError::BadValue { name, value } => errors::query_parameter_value_type(value, name),
        }
    }
}

/// The paging a request asked for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Query {
    /// `$top`: at most this many members.
    top: Option<usize>,
    /// `$skip`: leave out this many members first.
    skip: usize,
}

/// Parses a request's query string.
pub(crate) fn parse(query: Option<&str>) -> Result<Query, QueryError> {
    let mut parsed = Query::default();
    let pairs = query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty());
    for pair in pairs {
        let (raw_name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = match raw_name.strip_prefix("%24") {
            Some(rest) => format!("${rest}"),
            None => raw_name.to_owned(),
        };
        match name.as_str() {
            "$top" => parsed.top = Some(count(&name, value)?),
            "$skip" => parsed.skip = count(&name, value)?,
            other if other.starts_with('$') => {
                return Err(QueryError::Unsupported(other.to_owned()))
            }
            _ => {}
        }
    }
    Ok(parsed)
}

fn count(name: &str, value: &str) -> Result<usize, QueryError> {
    value.parse().map_err(|_| QueryError::BadValue {
        name: name.to_owned(),
        value: value.to_owned(),
    })
}

impl Query {
    /// `body` with `$skip` and `$top` applied to its `Members`, if it is a
    /// collection. `Members@odata.count` stays the whole collection's size.
    pub(crate) fn apply(&self, mut body: Value) -> Value {
        if let Some(Value::Array(members)) = body.get_mut("Members") {
            let kept: Vec<Value> = members
                .drain(..)
                .skip(self.skip)
                .take(self.top.unwrap_or(usize::MAX))
                .collect();
            *members = kept;
        }
        body
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn status(query: &str) -> u16 {
        match parse(Some(query)) {
            Ok(_) => 200,
            Err(error) => error.reply().status().as_u16(),
        }
    }

    #[test]
    fn dollar_parameters_are_supported_or_501() {
        assert_eq!(status("$top=1&$skip=2"), 200);
        assert_eq!(status("%24top=1"), 200);
        assert_eq!(status("only&excerpt&anything=else"), 200);
        assert_eq!(status("$expand=."), 501);
        assert_eq!(status("%24select=Name"), 501);
        assert_eq!(status("$filter=Id eq 1"), 501);
        assert_eq!(status("$top=-1"), 400);
        assert_eq!(status("$skip=x"), 400);
    }

    #[test]
    fn top_and_skip_page_the_members() {
        let body = json!({"Members": [1, 2, 3, 4], "Members@odata.count": 4});
        let query = parse(Some("$skip=1&$top=2")).unwrap_or_default();
        assert_eq!(
            query.apply(body.clone()),
            json!({"Members": [2, 3], "Members@odata.count": 4})
        );
        let singleton = json!({"Id": "1"});
        assert_eq!(query.apply(singleton.clone()), singleton);
        assert_eq!(Query::default().apply(body.clone()), body);
    }
}
