//! Turning raw request parts into typed input: bodies read under a size
//! limit and parsed as JSON with messages that name the bad field, and query
//! strings parsed strictly (unknown parameters are errors, not ignored).

use axum::body::Body;
use axum::http::{header, HeaderMap};
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// Largest body of an ordinary request.
pub const BODY_LIMIT: usize = 1024 * 1024;
/// Largest body of `POST /v1/nodes/import`.
pub const IMPORT_BODY_LIMIT: usize = 16 * 1024 * 1024;

/// Reads the whole body, refusing it (413) as soon as it passes `limit`.
pub async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<bytes::Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(ApiError::too_large(limit));
    }
    let read = tokio::time::timeout(BODY_READ_TIMEOUT, axum::body::to_bytes(body, limit))
        .await
        .map_err(|_| {
            ApiError::bad_request(format!(
                "the request body did not arrive within {} s; send it whole",
                BODY_READ_TIMEOUT.as_secs()
            ))
        })?;
    read.map_err(|err| {
        if is_length_limit(&err) {
            ApiError::too_large(limit)
        } else {
            ApiError::bad_request(format!("could not read the request body: {err}"))
        }
    })
}

/// Longest a client may take to send a body once its headers are in.
pub const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

fn is_length_limit(err: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = e.source();
    }
    false
}

/// Parses a JSON body into `T`, naming the offending field on failure.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(format!(
            "the request body is empty; send {what} as JSON"
        )));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de)
        .map_err(|err| ApiError::bad_request(describe_json_error(&err, what)))?;
    de.end()
        .map_err(|err| ApiError::bad_request(format!("trailing data after {what}: {err}")))?;
    check_keys(bytes, what)?;
    Ok(value)
}

/// Parses a JSON object body into `T`. serde would also fill a struct from
/// an array of its fields in order (`["power off", 30]`), which no client
/// means: anything but an object is refused first.
pub fn parse_object<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, ApiError> {
    check_object(bytes, what)?;
    parse_json(bytes, what)
}

/// Refuses a non-empty body that is not a JSON object.
pub fn check_object(bytes: &[u8], what: &str) -> Result<(), ApiError> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_some_and(|b| *b != b'{') {
        return Err(ApiError::bad_request(format!(
            "{what} must be a JSON object ({{\"key\": value, …}})"
        )));
    }
    Ok(())
}

/// Refuses a JSON document in which an object names a key twice (and says
/// nothing of malformed JSON, which the caller's own parse reports): serde_json
/// would keep the last value silently (`{"type": "HARD", "type": "SOFT"}`
/// is a soft stop), where the sender may have meant the first.
pub fn check_keys(bytes: &[u8], what: &str) -> Result<(), ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize::<_, UniqueKeys>(&mut de) {
        // Malformed JSON is the real parser's to describe.
        Err(err) if err.inner().is_data() => {
            Err(ApiError::bad_request(describe_json_error(&err, what)))
        }
        _ => Ok(()),
    }
}

/// A JSON value read only to check that no object repeats a key.
struct UniqueKeys;

impl<'de> serde::Deserialize<'de> for UniqueKeys {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(UniqueKeysVisitor)
    }
}

struct UniqueKeysVisitor;

impl<'de> serde::de::Visitor<'de> for UniqueKeysVisitor {
    type Value = UniqueKeys;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }

    fn visit_i64<E>(self, _: i64) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }

    fn visit_u64<E>(self, _: u64) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }

    fn visit_f64<E>(self, _: f64) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }

    fn visit_str<E>(self, _: &str) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }

    fn visit_unit<E>(self) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<UniqueKeys, A::Error> {
        while seq.next_element::<UniqueKeys>()?.is_some() {}
        Ok(UniqueKeys)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<UniqueKeys, A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if seen.contains(&key) {
                return Err(serde::de::Error::custom(format!(
                    "duplicate field `{}`: a key is given more than once; give each key once",
                    crate::messages::clip(&key, 64)
                )));
            }
            map.next_value::<UniqueKeys>()?;
            seen.insert(key);
        }
        Ok(UniqueKeys)
    }
}

/// A JSON error as an operator should read it: where, and what was wrong.
pub fn describe_json_error(
    err: &serde_path_to_error::Error<serde_json::Error>,
    what: &str,
) -> String {
    let inner = err.inner();
    let path = err.path().to_string();
    if inner.is_syntax() || inner.is_eof() {
        return format!("malformed JSON in {what}: {inner}");
    }
    let location = if path == "." {
        String::new()
    } else {
        format!(" at `{path}`")
    };
    format!(
        "invalid {what}{location}: {}",
        strip_position(&inner.to_string())
    )
}

/// serde_json appends " at line 1 column 57"; the path says it better.
fn strip_position(message: &str) -> &str {
    message
        .rfind(" at line ")
        .map_or(message, |at| &message[..at])
}

/// Parses a query string into `(key, value)` pairs, refusing keys not in
/// `allowed`, and repeated keys.
pub fn query_pairs(
    query: Option<&str>,
    allowed: &[&str],
) -> Result<Vec<(String, String)>, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query.unwrap_or(""))
        .map_err(|e| ApiError::bad_request(format!("malformed query string: {e}")))?;
    let mut seen: Vec<&str> = Vec::new();
    for (key, _) in &pairs {
        if !allowed.contains(&key.as_str()) {
            return Err(ApiError::bad_request(format!(
                "unknown query parameter `{}`; this endpoint accepts: {}",
                crate::messages::clip(key, 64),
                allowed.join(", ")
            )));
        }
        if seen.contains(&key.as_str()) {
            return Err(ApiError::bad_request(format!(
                "query parameter `{key}` is given more than once; give it once"
            )));
        }
        seen.push(key);
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Sample {
        a: u32,
        inner: Option<Inner>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        b: bool,
    }

    #[test]
    fn json_errors_name_the_field() {
        let err =
            parse_json::<Sample>(br#"{"a": 1, "inner": {"b": "yes"}}"#, "a sample").unwrap_err();
        assert_eq!(
            err.message,
            "invalid a sample at `inner.b`: invalid type: string \"yes\", expected a boolean"
        );
        let err = parse_json::<Sample>(br#"{"a": 1, "zzz": 2}"#, "a sample").unwrap_err();
        assert!(
            err.message.contains("unknown field `zzz`"),
            "{}",
            err.message
        );
        let err = parse_json::<Sample>(br#"{"a": 1"#, "a sample").unwrap_err();
        assert!(err.message.starts_with("malformed JSON"), "{}", err.message);
        let err = parse_json::<Sample>(b"  ", "a sample").unwrap_err();
        assert!(err.message.contains("empty"), "{}", err.message);
        let err = parse_json::<Sample>(br#"{"a": 1} {}"#, "a sample").unwrap_err();
        assert!(err.message.contains("trailing"), "{}", err.message);
    }

    #[test]
    fn objects_are_not_read_from_arrays() {
        let err = parse_object::<Sample>(br#"[1, null]"#, "a sample").unwrap_err();
        assert!(
            err.message.contains("must be a JSON object"),
            "{}",
            err.message
        );
        assert!(parse_json::<Sample>(br#"[1, null]"#, "a sample").is_ok());
        assert!(parse_object::<Sample>(br#" {"a": 1}"#, "a sample").is_ok());
        let body = br#"{"a": 1, "inner": {"b": true, "b": false}}"#;
        let err = parse_json::<serde_json::Value>(body, "a sample").unwrap_err();
        assert_eq!(
            err.message,
            "invalid a sample at `inner`: duplicate field `b`: a key is given more than once; give each key once"
        );
        assert!(check_keys(br#"[{"a": 1}, {"a": 2}]"#, "x").is_ok());
        let err = parse_object::<Sample>(b"", "a sample").unwrap_err();
        assert!(err.message.contains("empty"), "{}", err.message);
    }

    #[test]
    fn queries_are_strict() {
        let pairs = query_pairs(Some("limit=5&marker=x"), &["limit", "marker"]).unwrap();
        assert_eq!(pairs.len(), 2);
        assert!(query_pairs(Some("limt=5"), &["limit"])
            .unwrap_err()
            .message
            .contains("`limt`"));
        assert!(query_pairs(Some("limit=5&limit=6"), &["limit"]).is_err());
        assert!(query_pairs(None, &["limit"]).unwrap().is_empty());
    }
}
