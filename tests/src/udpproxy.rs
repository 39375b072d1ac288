//! A UDP relay between an IPMI driver and a BMC for fault tests: every
//! datagram from the client goes to the BMC (seen by an optional observer);
//! each answer passes through a rewrite function that may change it, drop it
//! or delay it (to corrupt handshakes, lose answers, answer late…).

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What to do with one BMC → client datagram (after any change in place).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send it on now.
    Pass,
    /// Drop it.
    Drop,
    /// Send it on after this long, without holding up the datagrams behind it.
    Delay(Duration),
}

/// Decides the fate of each BMC → client datagram.
pub type Rewrite = Box<dyn FnMut(&mut Vec<u8>) -> Verdict + Send>;

/// Sees each client → BMC datagram before it is sent on.
pub type Observe = Box<dyn FnMut(&[u8]) + Send>;

/// A running relay; stops when dropped.
#[derive(Debug)]
pub struct UdpProxy {
    /// Local port the driver should talk to.
    pub port: u16,
    stop: Arc<AtomicBool>,
}

impl UdpProxy {
    /// Relays from a free local port to `backend`, passing answers through
    /// `rewrite`.
    pub fn start(backend: SocketAddr, rewrite: Rewrite) -> std::io::Result<Self> {
        Self::observed(backend, rewrite, Box::new(|_| {}))
    }

    /// [`UdpProxy::start`], showing each client → BMC datagram to `observe`.
    pub fn observed(
        backend: SocketAddr,
        mut rewrite: Rewrite,
        mut observe: Observe,
    ) -> std::io::Result<Self> {
        let front = UdpSocket::bind("127.0.0.1:0")?;
        let back = UdpSocket::bind("127.0.0.1:0")?;
        back.connect(backend)?;
        for socket in [&front, &back] {
            socket.set_read_timeout(Some(Duration::from_millis(20)))?;
        }
        let port = front.local_addr()?.port();
        let stop = Arc::new(AtomicBool::new(false));
        let client: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
        let (front2, back2) = (front.try_clone()?, back.try_clone()?);
        let (stop1, client1) = (stop.clone(), client.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !stop1.load(Ordering::Relaxed) {
                if let Ok((n, from)) = front.recv_from(&mut buf) {
                    if let Ok(mut c) = client1.lock() {
                        *c = Some(from);
                    }
                    observe(&buf[..n]);
                    let _ = back.send(&buf[..n]);
                }
            }
        });
        let stop2 = stop.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !stop2.load(Ordering::Relaxed) {
                let Ok(n) = back2.recv(&mut buf) else {
                    continue;
                };
                let mut packet = buf[..n].to_vec();
                let verdict = rewrite(&mut packet);
                let Some(to) = client.lock().ok().and_then(|c| *c) else {
                    continue;
                };
                match verdict {
                    Verdict::Pass => {
                        let _ = front2.send_to(&packet, to);
                    }
                    Verdict::Drop => {}
                    Verdict::Delay(delay) => {
                        let Ok(front) = front2.try_clone() else {
                            continue;
                        };
                        std::thread::spawn(move || {
                            std::thread::sleep(delay);
                            let _ = front.send_to(&packet, to);
                        });
                    }
                }
            }
        });
        Ok(Self { port, stop })
    }
}

impl Drop for UdpProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
