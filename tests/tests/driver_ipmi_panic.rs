//! A panic inside ipmi-rs becomes a typed error and the driver keeps working.
//!
//! A UDP proxy sits between the driver and a hw-sim IPMI node. While "evil",
//! it rewrites the BMC's RMCP+ Open Session Response to name authentication
//! algorithm RAKP-none and strips RAKP message 2's key-exchange code to match:
//! ipmi-rs 0.6 then reaches its `todo!()` for that algorithm and panics. The
//! driver must answer `SessionFailed`, and — once the proxy relays honestly —
//! the same driver must work again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use baton_drivers::{build_driver, DriverConfig, DriverError, DriverKind, PowerState};
use baton_hwsim::{Credentials, InitialPower, Rack, RackConfig};
use baton_tests::udpproxy::{UdpProxy, Verdict};

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
    let evil = Arc::new(AtomicBool::new(false));
    let evil_relay = evil.clone();
    let rewrite = Box::new(move |packet: &mut Vec<u8>| {
        if evil_relay.load(Ordering::Relaxed) {
            corrupt(packet);
        }
        Verdict::Pass
    });
    let proxy = UdpProxy::start(backend, rewrite).unwrap_or_else(|e| panic!("proxy: {e}"));

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

    evil.store(true, Ordering::Relaxed);
    for _ in 0..3 {
        match driver.power_state().await {
            Err(e @ DriverError::SessionFailed(_)) => {
                assert!(e.to_string().contains("panicked"), "{e}");
                assert!(e.is_transient());
            }
            other => panic!("want SessionFailed from the ipmi-rs panic, got {other:?}"),
        }
    }

    evil.store(false, Ordering::Relaxed);
    assert_eq!(driver.power_state().await, Ok(PowerState::Off));
    assert!(driver
        .set_power(baton_drivers::PowerAction::On)
        .await
        .is_ok());
}
