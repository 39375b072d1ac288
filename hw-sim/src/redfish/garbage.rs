//! The `garbage` fault on Redfish: an answer, once rendered, spoiled the way
//! the node's [`Garbage`] variant says — a body that is not JSON, one whose
//! values all have the wrong type, one that stops halfway through its
//! announced length (the connection then closes), or one of 2 MiB. The
//! status and headers stay, so a client learns nothing from them.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_LENGTH};
use http_body_util::{BodyExt, Either, Full};
use hyper::body::{Body, Frame};
use hyper::Response;
use serde_json::Value;

use super::Reply;
use crate::model::Garbage;

/// The body of an answer that may be spoiled.
pub(crate) type MaybeSpoiled = Either<Full<Bytes>, Cut>;

/// Size of an `oversized` body.
pub(crate) const OVERSIZED: usize = 2 * 1024 * 1024;

/// `reply` as a node with `garbage` sends it. The variant that spoils IPMI
/// only, and answers without a body, pass through.
pub(crate) async fn spoil(reply: Reply, garbage: Option<Garbage>) -> Response<MaybeSpoiled> {
    let Some(garbage) = garbage.filter(|g| *g != Garbage::WrongSession) else {
        return reply.map(Either::Left);
    };
    let (mut parts, body) = reply.into_parts();
    let bytes = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(never) => match never {},
    };
    if bytes.is_empty() {
        return Response::from_parts(parts, Either::Left(Full::new(bytes)));
    }
    let spoiled = match garbage {
        Garbage::InvalidJson => Bytes::from_static(
            b"{\"PowerState\": On, \"Status\": {\"State\": Enabled,}, <html>BMC error</html>",
        ),
        Garbage::WrongTypes => {
            let value = serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null);
            Bytes::from(serde_json::to_vec(&wrong_types(value)).unwrap_or_default())
        }
        Garbage::Oversized => {
            let mut big = bytes.to_vec();
            // Whitespace after the document keeps it JSON, only too long.
            big.resize(OVERSIZED.max(big.len()), b' ');
            Bytes::from(big)
        }
        Garbage::Truncated => {
            let announced = bytes.len();
            parts
                .headers
                .insert(CONTENT_LENGTH, HeaderValue::from(announced));
            let half = bytes.slice(..announced / 2);
            return Response::from_parts(parts, Either::Right(Cut::new(half)));
        }
        Garbage::WrongSession => bytes,
    };
    parts.headers.remove(CONTENT_LENGTH);
    Response::from_parts(parts, Either::Left(Full::new(spoiled)))
}

/// Every value of the wrong type, keys kept: strings become numbers,
/// numbers and booleans strings, arrays objects.
fn wrong_types(value: Value) -> Value {
    match value {
        Value::String(_) => Value::from(42),
        Value::Number(n) => Value::String(n.to_string()),
        Value::Bool(b) => Value::String(b.to_string()),
        Value::Null => Value::from(false),
        Value::Array(items) => Value::Object(
            items
                .into_iter()
                .enumerate()
                .map(|(i, v)| (i.to_string(), wrong_types(v)))
                .collect(),
        ),
        Value::Object(map) => {
            Value::Object(map.into_iter().map(|(k, v)| (k, wrong_types(v))).collect())
        }
    }
}

/// A body that sends its one part and then fails, so that hyper closes the
/// connection short of the announced length. It fails a moment after the
/// part, once hyper has flushed the head and the part (failing at once
/// would drop them unsent).
#[derive(Debug)]
pub(crate) struct Cut {
    part: Option<Bytes>,
    pause: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Cut {
    fn new(part: Bytes) -> Cut {
        Cut {
            part: Some(part),
            pause: None,
        }
    }
}

/// How long a cut body waits between its part and its end.
const CUT_PAUSE: std::time::Duration = std::time::Duration::from_millis(50);

impl Body for Cut {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        if let Some(part) = self.part.take() {
            return Poll::Ready(Some(Ok(Frame::data(part))));
        }
        let pause = self
            .pause
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(CUT_PAUSE)));
        std::task::ready!(pause.as_mut().poll(cx));
        Poll::Ready(Some(Err(std::io::Error::other(
            "garbage fault: body cut short",
        ))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_types_keeps_keys_and_changes_every_type() {
        let spoiled = wrong_types(serde_json::json!({
            "PowerState": "On", "Members": [{"@odata.id": "/x"}], "Count": 1, "Ok": true
        }));
        assert_eq!(
            spoiled,
            serde_json::json!({
                "PowerState": 42, "Members": {"0": {"@odata.id": 42}}, "Count": "1", "Ok": "true"
            })
        );
    }
}
