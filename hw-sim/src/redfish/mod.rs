//! The Redfish front end: one HTTP(S) service per node, shaped by the DMTF
//! schemas, serving the node's [`Node`] model.
//!
//! A request goes through these steps ([`handle`]):
//! 1. `begin_request` + `admit` on the node: counts the request, pays latency,
//!    plays request-level faults (`no_answer` holds the request until shutdown
//!    and then drops the connection; `http_500` → 500; `busy` → 503 +
//!    `Retry-After`; `min_interval` → 503 too; an unreachable BMC —
//!    `bmc_reboot`, `link_flap_on_power` — closes the connection unanswered).
//!    Sessions made before a `drop_sessions` or `bmc_reboot` are dropped.
//! 2. The body is read (at most [`MAX_BODY`] bytes, within a few seconds, else
//!    413 / 408) and the path resolved to a
//!    [`router::Resource`]; unknown paths → 404 `ResourceNotFound`, wrong
//!    methods → 405 with `Allow`.
//! 3. Authentication, except for the service root, `$metadata`, the OData
//!    service document and session creation: `X-Auth-Token` of a live session,
//!    else HTTP basic; otherwise 401 with `WWW-Authenticate`.
//! 4. The resource's handler renders JSON (with `ETag`) or performs the action
//!    (`ComputerSystem.Reset`, boot override `PATCH` with `If-Match`, session
//!    create/delete), answering errors in the Redfish format with Base
//!    registry message ids.
//! 5. A node with the `garbage` fault spoils the answer on its way out
//!    ([`garbage`]).

mod actions;
mod errors;
mod garbage;
mod metadata;
mod query;
mod reply;
mod resources;
mod router;
mod server;
mod sessions;

pub use sessions::MAX_SESSIONS;
mod tasks;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::model::Node;

pub(crate) use server::NoAnswer;

/// Largest request body accepted.
pub const MAX_BODY: usize = 64 * 1024;

/// The reply type of every handler.
pub(crate) type Reply = Response<Full<Bytes>>;

/// What every node's Redfish service shares.
#[derive(Clone)]
pub(crate) struct Shared {
    tls: Option<TlsAcceptor>,
    session_timeout: Duration,
    max_sessions: usize,
    cancel: CancellationToken,
    tasks: TaskTracker,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("tls", &self.tls.is_some())
            .field("session_timeout", &self.session_timeout)
            .finish_non_exhaustive()
    }
}

impl Shared {
    pub(crate) fn new(
        tls: Option<TlsAcceptor>,
        session_timeout: Duration,
        max_sessions: usize,
        cancel: CancellationToken,
        tasks: TaskTracker,
    ) -> Shared {
        Shared {
            tls,
            session_timeout,
            max_sessions,
            cancel,
            tasks,
        }
    }
}

/// One node's Redfish service: the model plus Redfish-only state.
#[derive(Debug)]
pub(crate) struct Bmc {
    node: Arc<Node>,
    sessions: sessions::Sessions,
    tasks: tasks::Tasks,
    shared: Shared,
}

/// Starts serving `node` on `listener`.
pub(crate) fn spawn(node: Arc<Node>, listener: TcpListener, shared: &Shared) {
    let bmc = Arc::new(Bmc {
        node,
        sessions: sessions::Sessions::new(shared.session_timeout, shared.max_sessions),
        tasks: tasks::Tasks::default(),
        shared: shared.clone(),
    });
    shared.tasks.spawn(server::accept_loop(bmc, listener));
}

/// Serves one request (see the module docs for the steps). When the rack
/// stops, a request still paying its latency (`slow`) or waiting for the rest
/// of its body gives up without a reply, so that shutdown never waits on a
/// slow fault or a client that stopped sending.
pub(crate) async fn handle(
    bmc: Arc<Bmc>,
    request: Request<hyper::body::Incoming>,
) -> Result<Reply, NoAnswer> {
    let cancel = bmc.shared.cancel.clone();
    tokio::select! {
        reply = serve(&bmc, request) => reply,
        () = cancel.cancelled() => Err(NoAnswer),
    }
}

async fn serve(bmc: &Bmc, request: Request<hyper::body::Incoming>) -> Result<Reply, NoAnswer> {
    let guard = bmc.node.begin_request();
    match guard.admit().await {
        crate::model::Admission::Serve => {}
        crate::model::Admission::NoAnswer => {
            // Held until the rack stops (`handle` gives up then).
            return std::future::pending().await;
        }
        crate::model::Admission::InternalError => return Ok(errors::internal_error()),
        crate::model::Admission::Busy | crate::model::Admission::TooSoon => {
            return Ok(errors::busy())
        }
        // The connection is reset without a reply.
        crate::model::Admission::Unreachable => return Err(NoAnswer),
    }
    // `drop_sessions` / `bmc_reboot`: tokens made before are no longer valid.
    bmc.sessions.drop_before(bmc.node.session_epoch());
    let (parts, body) = request.into_parts();
    let body = match server::read_body(body).await {
        Ok(body) => body,
        Err(reply) => return Ok(*reply),
    };
    let reply = router::route(bmc, &parts, &body).await;
    drop(guard);
    Ok(reply)
}
