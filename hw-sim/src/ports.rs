//! Binding one socket per node, on a base port plus index, or on free ports.
//!
//! Free ports for small racks come from the kernel (port 0). For large racks
//! that is slow — the kernel's search for a free ephemeral port degrades
//! sharply past a few thousand listeners (10 000 binds take over 5 s) — and
//! it would crowd the ephemeral range the conductor needs for its own client
//! connections. So racks larger than [`SCAN_ABOVE`] nodes scan upward from a
//! random start in [`SCAN_RANGE`] (below Linux's ephemeral range), skipping
//! ports in use, which binds 10 000 sockets in a fraction of a second.
//! The same helper serves TCP (Redfish) and UDP (IPMI) sockets.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;

use rand::Rng;

/// Racks with more nodes than this get scanned free ports instead of port 0.
pub const SCAN_ABOVE: usize = 256;

/// Ports scanned for large racks: below the default ephemeral range (32768+).
pub const SCAN_RANGE: Range<u16> = 10_000..32_768;

/// A socket that could not be bound: the node index, the address, the error.
#[derive(Debug)]
pub struct BindFailure {
    /// Index of the node whose socket failed.
    pub index: usize,
    /// The address tried (port 0 = a free port).
    pub addr: SocketAddr,
    /// The OS error.
    pub source: io::Error,
}

/// Binds `count` sockets on `ip`: `base + i` when `base` is given, else free
/// ports (see the module docs). `bind_one` binds one address.
pub async fn bind_many<S, F, Fut>(
    ip: IpAddr,
    base: Option<u16>,
    count: usize,
    mut bind_one: F,
) -> Result<Vec<S>, BindFailure>
where
    F: FnMut(SocketAddr) -> Fut,
    Fut: Future<Output = io::Result<S>>,
{
    let mut sockets = Vec::with_capacity(count);
    if base.is_some() || count <= SCAN_ABOVE {
        for index in 0..count {
            let port = base
                .and_then(|b| u16::try_from(usize::from(b) + index).ok())
                .unwrap_or(0);
            let addr = SocketAddr::new(ip, port);
            let socket = bind_one(addr).await.map_err(|source| BindFailure {
                index,
                addr,
                source,
            })?;
            sockets.push(socket);
        }
        return Ok(sockets);
    }
    let span = SCAN_RANGE.end - SCAN_RANGE.start;
    let mut offset = rand::rng().random_range(0..span);
    let mut tried: usize = 0;
    while sockets.len() < count {
        let addr = SocketAddr::new(ip, SCAN_RANGE.start + offset);
        offset = (offset + 1) % span;
        tried += 1;
        match bind_one(addr).await {
            Ok(socket) => sockets.push(socket),
            Err(e) if is_taken(&e) && tried < usize::from(span) => {}
            Err(source) => {
                return Err(BindFailure {
                    index: sockets.len(),
                    addr,
                    source,
                })
            }
        }
    }
    Ok(sockets)
}

/// Binds one socket on each of `addrs`, in order (one address per node).
pub async fn bind_each<S, F, Fut>(
    addrs: &[SocketAddr],
    mut bind_one: F,
) -> Result<Vec<S>, BindFailure>
where
    F: FnMut(SocketAddr) -> Fut,
    Fut: Future<Output = io::Result<S>>,
{
    let mut sockets = Vec::with_capacity(addrs.len());
    for (index, &addr) in addrs.iter().enumerate() {
        let socket = bind_one(addr).await.map_err(|source| BindFailure {
            index,
            addr,
            source,
        })?;
        sockets.push(socket);
    }
    Ok(sockets)
}

fn is_taken(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::AddrInUse | io::ErrorKind::PermissionDenied
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn large_racks_scan_and_skip_taken_ports() {
        let ip = IpAddr::from([127, 0, 0, 1]);
        let sockets = bind_many(ip, None, SCAN_ABOVE + 10, tokio::net::TcpListener::bind).await;
        let sockets = sockets.unwrap_or_else(|f| panic!("bind failed: {:?}", f.source));
        let mut ports: Vec<u16> = sockets
            .iter()
            .filter_map(|s| s.local_addr().ok().map(|a| a.port()))
            .collect();
        assert_eq!(ports.len(), SCAN_ABOVE + 10);
        assert!(ports.iter().all(|p| SCAN_RANGE.contains(p)));
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), SCAN_ABOVE + 10, "ports are distinct");
    }

    #[tokio::test]
    async fn small_racks_use_kernel_ports_and_bases_are_exact() {
        let ip = IpAddr::from([127, 0, 0, 1]);
        let small = bind_many(ip, None, 2, tokio::net::UdpSocket::bind).await;
        assert_eq!(small.map_or(0, |s| s.len()), 2);
        let taken = tokio::net::TcpListener::bind((ip, 0)).await;
        let taken = taken.unwrap_or_else(|e| panic!("{e}"));
        let port = taken.local_addr().map_or(0, |a| a.port());
        let clash = bind_many(ip, Some(port), 1, tokio::net::TcpListener::bind).await;
        assert!(clash.is_err_and(|f| f.index == 0 && f.addr.port() == port));
    }
}
