//! Connection handling of a node's Redfish endpoint: the accept loop, the
//! optional TLS handshake, HTTP/1.1 keep-alive serving with hyper (closed
//! after so many requests, or when idle, per the node's keep-alive quirks),
//! bounded body reading, the `garbage` fault's spoiled answers, and graceful
//! stop on the rack's cancellation.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, CONNECTION};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use super::{errors, garbage, handle, Bmc, Reply, MAX_BODY};

/// Longest time a client may take to finish the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest time a client may take to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest time a client may take to send a request's body (at most
/// [`MAX_BODY`] bytes). A client that stops half-way is answered 408 instead
/// of holding the connection, and the request's place in `in_flight`, forever.
pub(crate) const BODY_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// The `no_answer` fault: the request is dropped without a reply.
#[derive(Debug)]
pub(crate) struct NoAnswer;

impl std::fmt::Display for NoAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("no_answer fault: request dropped without a reply")
    }
}

impl std::error::Error for NoAnswer {}

/// Accepts connections until the rack stops.
pub(crate) async fn accept_loop(bmc: Arc<Bmc>, listener: TcpListener) {
    loop {
        let accepted = tokio::select! {
            () = bmc.shared.cancel.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _peer)) if bmc.node.is_unreachable() => {
                bmc.node.count_connection();
                reset(stream);
            }
            Ok((stream, _peer)) => {
                bmc.node.count_connection();
                // Nagle only delays small replies; failing to disable it is harmless.
                let _ = stream.set_nodelay(true);
                bmc.shared
                    .tasks
                    .spawn(serve_connection(Arc::clone(&bmc), stream));
            }
            Err(error) => {
                // Out of file descriptors or similar: back off instead of spinning.
                tracing::warn!(node = bmc.node.name(), %error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Closes a connection with a reset, as a BMC that is down (or whose link
/// is) leaves its clients.
fn reset(stream: TcpStream) {
    // A zero linger turns the close into an RST (and never blocks the drop).
    if let Err(error) = stream.set_zero_linger() {
        tracing::debug!(%error, "cannot reset a connection");
    }
    drop(stream);
}

async fn serve_connection(bmc: Arc<Bmc>, stream: TcpStream) {
    let Some(acceptor) = bmc.shared.tls.clone() else {
        return serve_http(bmc, stream).await;
    };
    let handshake = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream));
    let tls = tokio::select! {
        () = bmc.shared.cancel.cancelled() => return,
        tls = handshake => tls,
    };
    match tls {
        Ok(Ok(stream)) => serve_http(bmc, stream).await,
        Ok(Err(error)) => tracing::debug!(node = bmc.node.name(), %error, "TLS handshake failed"),
        Err(_) => tracing::debug!(node = bmc.node.name(), "TLS handshake timed out"),
    }
}

async fn serve_http<I>(bmc: Arc<Bmc>, io: I)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let cancel = bmc.shared.cancel.clone();
    let (max_requests, idle) = bmc
        .node
        .with_quirks(|q| (q.keep_alive_requests, q.keep_alive_idle));
    let activity = Arc::new(Activity::new(max_requests));
    let seen = Arc::clone(&activity);
    let service = service_fn(move |request| {
        let (bmc, seen) = (Arc::clone(&bmc), Arc::clone(&seen));
        async move {
            seen.begin();
            let node = Arc::clone(&bmc.node);
            let reply = handle(bmc, request).await;
            let last = seen.end();
            let mut reply = garbage::spoil(reply?, node.faults().garbage).await;
            if last {
                reply
                    .headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
            }
            Ok::<_, NoAnswer>(reply)
        }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(true)
        .serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(error) = result {
                tracing::trace!(%error, "Redfish connection ended");
            }
        }
        () = activity.idle_for(idle) => {
            // Dropping the connection closes it, without a word to the client.
            tracing::trace!("Redfish connection closed when idle (keep_alive_idle quirk)");
        }
        () = cancel.cancelled() => {
            conn.as_mut().graceful_shutdown();
            // In-flight requests finish (no_answer ones give up on cancel).
            let _ = conn.await;
        }
    }
}

/// What one connection is doing, for the keep-alive quirks (fixed when
/// the connection opens: a quirk changed later applies to new connections).
#[derive(Debug)]
struct Activity {
    /// Close after this many requests.
    max_requests: Option<u32>,
    state: Mutex<ActivityState>,
}

#[derive(Debug)]
struct ActivityState {
    in_flight: u32,
    served: u32,
    last: Instant,
}

impl Activity {
    fn new(max_requests: Option<u32>) -> Activity {
        Activity {
            max_requests,
            state: Mutex::new(ActivityState {
                in_flight: 0,
                served: 0,
                last: Instant::now(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ActivityState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn begin(&self) {
        self.lock().in_flight += 1;
    }

    /// A request was answered; whether it was the last this connection takes.
    fn end(&self) -> bool {
        let mut state = self.lock();
        state.in_flight = state.in_flight.saturating_sub(1);
        state.served = state.served.saturating_add(1);
        state.last = Instant::now();
        self.max_requests.is_some_and(|max| state.served >= max)
    }

    /// Resolves once the connection has been idle for `idle` (never
    /// without a limit).
    async fn idle_for(&self, idle: Option<Duration>) {
        let Some(idle) = idle else {
            return std::future::pending().await;
        };
        loop {
            let (busy, last) = {
                let state = self.lock();
                (state.in_flight > 0, state.last)
            };
            if !busy && last.elapsed() >= idle {
                return;
            }
            let wake = if busy {
                Instant::now() + idle
            } else {
                last + idle
            };
            tokio::time::sleep_until(wake).await;
        }
    }
}

/// Reads the whole body, refusing more than [`MAX_BODY`] bytes or a body
/// that takes longer than [`BODY_READ_TIMEOUT`].
pub(crate) async fn read_body(body: Incoming) -> Result<Bytes, Box<Reply>> {
    let read = tokio::time::timeout(BODY_READ_TIMEOUT, Limited::new(body, MAX_BODY).collect());
    match read.await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(error)) if error.is::<http_body_util::LengthLimitError>() => {
            Err(Box::new(errors::payload_too_large()))
        }
        Ok(Err(_)) => Err(Box::new(errors::malformed_body())),
        Err(_) => Err(Box::new(errors::body_timeout())),
    }
}
