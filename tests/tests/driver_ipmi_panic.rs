//! A panic inside ipmi-rs becomes a typed error and the driver keeps working.
//!
//! A UDP proxy sits between the driver and a hw-sim IPMI node. While "evil",
//! it rewrites the BMC's RMCP+ Open Session Response to name authentication
//! algorithm RAKP-none and strips RAKP message 2's key-exchange code to match:
//! ipmi-rs 0.6 then reaches its `todo!()` for that algorithm and panics. The
//! driver must answer `SessionFailed`, and — once the proxy relays honestly —
//! the same driver must work again.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use baton_drivers::{build_driver, DriverConfig, DriverError, DriverKind, PowerState};
use baton_hwsim::{Credentials, InitialPower, Rack, RackConfig};

/// RMCP+ session header: payload type at 5, payload length at 14..16,
/// payload from 16.
const PAYLOAD_TYPE: usize = 5;
const PAYLOAD_LEN: usize = 14;
const PAYLOAD: usize = 16;
const OPEN_SESSION_RESPONSE: u8 = 0x11;
const RAKP2: u8 = 0x13;
/// In an Open Session Response payload: the authentication algorithm byte.
const AUTH_ALGORITHM: usize = 16;
/// RAKP message 2 without its key-exchange authentication code.
const RAKP2_FIXED_LEN: usize = 40;

/// Rewrites one BMC → client datagram as described in the module doc.
fn corrupt(packet: &mut Vec<u8>) {
    if packet.len() < PAYLOAD || packet[4] != 0x06 {
        return;
    }
    match packet[PAYLOAD_TYPE] & 0x3F {
        OPEN_SESSION_RESPONSE if packet.len() > PAYLOAD + AUTH_ALGORITHM => {
            packet[PAYLOAD + AUTH_ALGORITHM] = 0x00;
        }
        RAKP2 if packet.len() > PAYLOAD + RAKP2_FIXED_LEN => {
            let len = u16::try_from(RAKP2_FIXED_LEN).unwrap_or(40).to_le_bytes();
            packet[PAYLOAD_LEN..PAYLOAD_LEN + 2].copy_from_slice(&len);
            packet.truncate(PAYLOAD + RAKP2_FIXED_LEN);
        }
        _ => {}
    }
}

/// A relay from a local port to `backend`, optionally corrupting answers.
struct Proxy {
    port: u16,
    evil: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    fn start(backend: SocketAddr) -> std::io::Result<Self> {
        let front = UdpSocket::bind("127.0.0.1:0")?;
        let back = UdpSocket::bind("127.0.0.1:0")?;
        back.connect(backend)?;
        for socket in [&front, &back] {
            socket.set_read_timeout(Some(Duration::from_millis(20)))?;
        }
        let port = front.local_addr()?.port();
        let evil = Arc::new(AtomicBool::new(false));
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
                    let _ = back.send(&buf[..n]);
                }
            }
        });
        let (stop2, evil2) = (stop.clone(), evil.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !stop2.load(Ordering::Relaxed) {
                let Ok(n) = back2.recv(&mut buf) else {
                    continue;
                };
                let mut packet = buf[..n].to_vec();
                if evil2.load(Ordering::Relaxed) {
                    corrupt(&mut packet);
                }
                let to = client.lock().ok().and_then(|c| *c);
                if let Some(to) = to {
                    let _ = front2.send_to(&packet, to);
                }
            }
        });
        Ok(Self { port, evil, stop })
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_ipmi_rs_is_a_typed_error_and_the_driver_recovers() {
    let rack = Rack::start(RackConfig {
        credentials: Credentials {
            username: "admin".into(),
            password: "panic-test-pw".into(),
        },
        initial_power: InitialPower::Off,
        ..RackConfig::default()
    })
    .await
    .unwrap_or_else(|e| panic!("hw-sim: {e}"));
    let node = &rack.nodes()[0];
    let backend = node
        .ipmi_addr()
        .unwrap_or_else(|| panic!("no IPMI endpoint"));
    let proxy = Proxy::start(backend).unwrap_or_else(|e| panic!("proxy: {e}"));

    let mut config = DriverConfig::new(
        DriverKind::Ipmi,
        "127.0.0.1",
        Some(proxy.port),
        "admin",
        "panic-test-pw",
    );
    config.options.call_timeout = Duration::from_secs(5);
    config.options.ipmi_retransmit_interval = Duration::from_millis(300);
    let driver = build_driver(&config).unwrap_or_else(|e| panic!("{e}"));

    proxy.evil.store(true, Ordering::Relaxed);
    for _ in 0..3 {
        match driver.power_state().await {
            Err(e @ DriverError::SessionFailed(_)) => {
                assert!(e.to_string().contains("panicked"), "{e}");
                assert!(e.is_transient());
            }
            other => panic!("want SessionFailed from the ipmi-rs panic, got {other:?}"),
        }
    }

    proxy.evil.store(false, Ordering::Relaxed);
    assert_eq!(driver.power_state().await, Ok(PowerState::Off));
    assert!(driver
        .set_power(baton_drivers::PowerAction::On)
        .await
        .is_ok());
}
