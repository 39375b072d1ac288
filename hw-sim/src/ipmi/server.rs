//! The UDP endpoint of one simulated BMC: receive a datagram, play the
//! request-level faults, run the [`Bmc`] engine, send the reply.
//!
//! Per datagram, following the model's front-end steps
//! ([`crate::model`]):
//!
//! 1. `packet_loss` drops the datagram on the way in (not counted: it never
//!    arrived).
//! 2. A permit of the BMC's in-flight bound is taken; with none free the
//!    datagram is dropped, as a saturated BMC would — so a flood costs at
//!    most [`MAX_IN_FLIGHT`] small tasks per BMC, never unbounded memory.
//! 3. A task takes the node's request guard (counts the request, in flight
//!    for `max_concurrent`), pays the latency and `slow`, and learns the
//!    admission: `no_answer` drops, `busy` → C0h, `http_500` → FFh.
//! 4. The engine runs under the BMC's lock (short; no await inside).
//! 5. `garbage` may spoil the reply (cut short, wrong session id); then
//!    `packet_loss` may drop it on the way out; otherwise it is sent.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use tokio::net::UdpSocket;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::bmc::{Bmc, BmcConfig, Incoming, OsEntropy, Service};
use super::session::Timeouts;
use super::wire::MAX_DATAGRAM;
use crate::config::RackConfig;
use crate::model::{Admission, Garbage, Node};
use crate::ports;

/// Datagrams one BMC serves at once; more are dropped.
pub const MAX_IN_FLIGHT: usize = 32;

/// Sessions one BMC holds at once (in any handshake stage) unless configured
/// otherwise.
pub const SESSIONS_PER_BMC: usize = 16;

/// The most sessions Get Session Info can report (a 6-bit count).
pub const MAX_SESSIONS_PER_BMC: usize = 63;

/// A node's UDP port could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("Cannot bind the IPMI endpoint of {node} on {addr}")]
pub struct BindError {
    /// The node.
    pub node: String,
    /// The address.
    pub addr: SocketAddr,
    /// The OS error.
    #[source]
    pub source: io::Error,
}

/// Binds one UDP socket per node when the rack serves IPMI — port
/// `ipmi_base_port + index`, or free ports as [`crate::ports`] picks them,
/// or with one address per node the same port on each — and none otherwise.
pub async fn bind_all(config: &RackConfig) -> Result<Vec<UdpSocket>, BindError> {
    if !config.ipmi {
        return Ok(Vec::new());
    }
    let bound = match config.ipmi_addrs() {
        Some(addrs) => ports::bind_each(&addrs, UdpSocket::bind).await,
        None => {
            let (ip, base) = (config.bind, config.ipmi_base_port);
            ports::bind_many(ip, base, config.nodes, UdpSocket::bind).await
        }
    };
    bound.map_err(|failure| BindError {
        node: config.node_name(failure.index),
        addr: failure.addr,
        source: failure.source,
    })
}

/// The bound port of each node's socket (`None` for every node when the
/// rack serves no IPMI).
pub fn ports(sockets: &[UdpSocket], config: &RackConfig) -> Result<Vec<Option<u16>>, BindError> {
    if sockets.is_empty() {
        return Ok(vec![None; config.nodes]);
    }
    sockets
        .iter()
        .enumerate()
        .map(|(index, socket)| {
            socket
                .local_addr()
                .map(|a| Some(a.port()))
                .map_err(|source| BindError {
                    node: config.node_name(index),
                    addr: SocketAddr::new(config.bind, 0),
                    source,
                })
        })
        .collect()
}

/// Starts serving each node's socket (in node order) until `shutdown`.
pub fn spawn_all(
    nodes: &[Arc<Node>],
    sockets: Vec<UdpSocket>,
    config: &RackConfig,
    shutdown: &CancellationToken,
    tracker: &TaskTracker,
) {
    for (node, socket) in nodes.iter().zip(sockets) {
        let bmc = BmcConfig {
            username: config.credentials.username.clone(),
            session_capacity: config.ipmi_max_sessions,
            timeouts: Timeouts::default(),
            guid: *node.uuid().as_bytes(),
        };
        spawn(socket, Arc::clone(node), bmc, shutdown.clone(), tracker);
    }
}

/// Starts serving `socket` for `node` until `shutdown` is cancelled. The
/// receive loop and every request task are tracked by `tracker`.
pub fn spawn(
    socket: UdpSocket,
    node: Arc<Node>,
    config: BmcConfig,
    shutdown: CancellationToken,
    tracker: &TaskTracker,
) {
    let endpoint = Endpoint {
        socket: Arc::new(socket),
        node,
        bmc: Arc::new(Mutex::new(Bmc::new(config))),
        permits: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
        tracker: tracker.clone(),
    };
    tracker.spawn(endpoint.receive_loop(shutdown));
}

#[derive(Debug, Clone)]
struct Endpoint {
    socket: Arc<UdpSocket>,
    node: Arc<Node>,
    bmc: Arc<Mutex<Bmc>>,
    permits: Arc<Semaphore>,
    tracker: TaskTracker,
}

impl Endpoint {
    async fn receive_loop(self, shutdown: CancellationToken) {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            let received = tokio::select! {
                () = shutdown.cancelled() => return,
                r = self.socket.recv_from(&mut buf) => r,
            };
            let (len, peer) = match received {
                Ok(v) => v,
                Err(e) => {
                    // ICMP errors of earlier sends surface here; keep serving.
                    tracing::debug!(node = self.node.name(), error = %e, "IPMI receive error");
                    tokio::task::yield_now().await;
                    continue;
                }
            };
            if self.node.drop_packet() {
                continue;
            }
            let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() else {
                continue;
            };
            let datagram = buf.get(..len).unwrap_or_default().to_vec();
            let this = self.clone();
            let stop = shutdown.clone();
            self.tracker.spawn(async move {
                // A request still paying its latency (`slow`) gives up when
                // the rack stops, so shutdown never waits on a slow fault.
                tokio::select! {
                    () = this.serve(&datagram, peer) => {}
                    () = stop.cancelled() => {}
                }
                drop(permit);
            });
        }
    }

    async fn serve(&self, datagram: &[u8], peer: SocketAddr) {
        let guard = self.node.begin_request();
        let service = match guard.admit().await {
            Admission::Serve if self.node.faults().garbage == Some(Garbage::WrongTypes) => {
                Service::WrongTypes
            }
            Admission::Serve => Service::Normal,
            // A BMC that is down, or flooded, drops the datagram.
            Admission::NoAnswer | Admission::Unreachable | Admission::TooSoon => return,
            Admission::Busy => Service::Busy,
            Admission::InternalError => Service::Error,
        };
        let mut out = Vec::with_capacity(128);
        let input = Incoming {
            peer,
            now: Instant::now(),
            service,
        };
        let replied = {
            let mut bmc = self.bmc.lock().unwrap_or_else(PoisonError::into_inner);
            let replied = bmc.handle(
                datagram,
                input,
                self.node.as_ref(),
                &mut OsEntropy,
                &mut out,
            );
            self.node.count_ipmi_sessions(bmc.sessions().iter().count());
            replied
        };
        // The request ends when its answer leaves: a client may send its
        // next request the moment it has the answer, before this task runs
        // again, and that must not count as two requests at once.
        drop(guard);
        spoil(&mut out, self.node.faults().garbage);
        if replied && !self.node.drop_packet() {
            if let Err(e) = self.socket.send_to(&out, peer).await {
                tracing::debug!(node = self.node.name(), error = %e, "IPMI send error");
            }
        }
    }
}

/// The `garbage` fault over IPMI: a datagram cut to half its length, or an
/// RMCP+ one whose session id is not the one the client holds. Variants
/// that spoil Redfish only leave the datagram alone.
fn spoil(out: &mut Vec<u8>, garbage: Option<Garbage>) {
    /// Offset of the authentication type after the RMCP header, and of the
    /// session id in an RMCP+ session header.
    const AUTH_TYPE: usize = 4;
    const SESSION_ID: std::ops::Range<usize> = 6..10;
    match garbage {
        Some(Garbage::Truncated) => out.truncate(out.len() / 2),
        Some(Garbage::WrongSession) if out.get(AUTH_TYPE) == Some(&0x06) => {
            if let Some(id) = out.get_mut(SESSION_ID) {
                id.iter_mut().for_each(|b| *b ^= 0x5A);
            }
        }
        _ => {}
    }
}
