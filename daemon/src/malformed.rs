//! Answers for requests hyper refuses before they reach the router.
//!
//! hyper answers a request it cannot parse — a malformed request line or
//! header (400), a URI too long (414), headers too large (431) — on its own,
//! with a bare status line, no body and no request id, and then closes the
//! connection. It offers no hook to shape that answer, so
//! [`crate::connections::DeadlineIo`] recognises it on its way out (a 4xx
//! head without `x-request-id`, which every answer of ours carries) and
//! writes [`answer`] instead: the same status with the error envelope and a
//! request id, logged like any other request.

use crate::api::error::ErrorKind;
use crate::api::middleware::REQUEST_ID_HEADER;
use crate::api::types::{ErrorBody, ErrorEnvelope};

/// The statuses hyper sends by itself for input it cannot parse.
const REFUSALS: [(&[u8], &str); 3] = [
    (
        b"400",
        "malformed HTTP request: the request line or a header could not be parsed; \
         send a well-formed HTTP/1.1 request",
    ),
    (
        b"414",
        "the request URI is too long; shorten its path and query",
    ),
    (
        b"431",
        "the request headers are too large; send fewer or shorter headers",
    ),
];

/// If `head` is hyper's own answer to a request it could not parse, the
/// answer batond sends in its place; `None` for everything else.
pub fn answer(head: &[u8]) -> Option<Vec<u8>> {
    let message = refusal_message(head)?;
    let status = &head[9..12];
    let request_id = format!("req-{}", uuid::Uuid::new_v4());
    let reason = std::str::from_utf8(status)
        .ok()
        .and_then(|s| s.parse::<u16>().ok())
        .and_then(|s| http::StatusCode::from_u16(s).ok())
        .unwrap_or(http::StatusCode::BAD_REQUEST);
    let kind = ErrorKind::from_status(reason);
    tracing::info!(
        request_id = %request_id,
        status = reason.as_u16(),
        "request refused before routing: {message}"
    );
    let envelope = ErrorEnvelope {
        error: ErrorBody {
            code: kind.code().to_owned(),
            message: message.to_owned(),
            request_id: request_id.clone(),
        },
    };
    let body = serde_json::to_vec(&envelope).ok()?;
    let mut bytes = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         {REQUEST_ID_HEADER}: {request_id}\r\nconnection: close\r\n\r\n",
        reason.as_u16(),
        reason.canonical_reason().unwrap_or("Bad Request"),
        body.len()
    )
    .into_bytes();
    bytes.extend_from_slice(&body);
    Some(bytes)
}

/// The message for `head` when it is one of hyper's own refusals: a whole
/// response head with a refusal status and no request id.
fn refusal_message(head: &[u8]) -> Option<&'static str> {
    if !(head.starts_with(b"HTTP/1.1 ") || head.starts_with(b"HTTP/1.0 ")) {
        return None;
    }
    let status = head.get(9..12)?;
    let (_, message) = REFUSALS.iter().find(|(code, _)| *code == status)?;
    let end = head.windows(4).position(|w| w == b"\r\n\r\n")?;
    let ours = head[..end]
        .split(|b| *b == b'\n')
        .any(|line| starts_with_ignore_case(line, REQUEST_ID_HEADER.as_bytes()));
    (!ours).then_some(*message)
}

fn starts_with_ignore_case(line: &[u8], prefix: &[u8]) -> bool {
    line.len() >= prefix.len() && line[..prefix.len()].eq_ignore_ascii_case(prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hyper_refusals_get_the_envelope() {
        let hyper = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        let answer = String::from_utf8(answer(hyper).unwrap()).unwrap();
        assert!(
            answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "{answer}"
        );
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        let id = head
            .lines()
            .find_map(|l| l.strip_prefix("x-request-id: "))
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"]["code"], "badRequest");
        assert_eq!(v["error"]["request_id"], id);
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let long = b"HTTP/1.1 431 Request Header Fields Too Large\r\n\r\n";
        let answer = String::from_utf8(super::answer(long).unwrap()).unwrap();
        assert!(answer.contains("headers are too large"), "{answer}");
    }

    #[test]
    fn our_own_answers_and_bodies_pass_through() {
        let ours =
            b"HTTP/1.1 400 Bad Request\r\nX-Request-Id: req-1\r\ncontent-length: 2\r\n\r\n{}";
        assert!(answer(ours).is_none());
        assert!(answer(b"HTTP/1.1 200 OK\r\n\r\n").is_none());
        assert!(answer(b"HTTP/1.1 404 Not Found\r\n\r\n").is_none());
        assert!(answer(b"{\"error\": 1}").is_none());
        assert!(
            answer(b"HTTP/1.1 400 Bad Req").is_none(),
            "an incomplete head"
        );
    }
}
