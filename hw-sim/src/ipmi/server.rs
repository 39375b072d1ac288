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
//! 5. `packet_loss` may drop the reply on the way out; otherwise it is sent.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use tokio::net::UdpSocket;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::bmc::{Bmc, BmcConfig, Incoming, OsEntropy, Service};
use super::wire::MAX_DATAGRAM;
use crate::model::{Admission, Node};

/// Datagrams one BMC serves at once; more are dropped.
pub const MAX_IN_FLIGHT: usize = 32;

/// Binds the UDP socket of one BMC (port 0 = a free port).
pub async fn bind(addr: SocketAddr) -> io::Result<UdpSocket> {
    UdpSocket::bind(addr).await
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
            self.tracker.spawn(async move {
                this.serve(&datagram, peer).await;
                drop(permit);
            });
        }
    }

    async fn serve(&self, datagram: &[u8], peer: SocketAddr) {
        let guard = self.node.begin_request();
        let service = match guard.admit().await {
            Admission::Serve => Service::Normal,
            Admission::NoAnswer => return,
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
            bmc.handle(
                datagram,
                input,
                self.node.as_ref(),
                &mut OsEntropy,
                &mut out,
            )
        };
        if replied && !self.node.drop_packet() {
            if let Err(e) = self.socket.send_to(&out, peer).await {
                tracing::debug!(node = self.node.name(), error = %e, "IPMI send error");
            }
        }
        drop(guard);
    }
}
