//! The IPMI driver against BMCs that answer late, lose answers, fail
//! temporarily or lie about their IPMI version: what the BMC saw (hw-sim
//! counters, a scripted BMC's log) must match what the driver reported.
//!
//! - A late answer is never taken for the next command's.
//! - Power cycle, hard reset and NMI go out once, however late the answer.
//! - A power command whose answer is lost is `OutcomeUnknown`, not a
//!   retryable timeout.
//! - A command sent once goes out only on a session the BMC still answers,
//!   and a late answer to an earlier read cannot pass for that check.
//! - A read answered on its second try does not cost the next command a new
//!   session, nor does a read that timed out cost the next read one.
//! - A temporary failure of Set Session Privilege is not "bad credentials".
//! - A BMC answering "IPMI 2.0" to the driver's check and "IPMI 1.5 only" to
//!   ipmi-rs never receives the password.
//! - A BMC slower than the retransmit interval still gets a session.
//! - A boot override set over IPMI does not expire before the reboot.
//! - `close()` frees the session's slot in the BMC's session table.

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use baton_drivers::{
    build_driver, BootDevice, DriverConfig, DriverError, DriverKind, PowerAction, PowerDriver,
    PowerState,
};
use baton_hwsim::{BootTarget, CounterSnapshot, Faults, Node, Rack, RackConfig};
use baton_tests::hwsim::{self, wait_for, PASSWORD, USER};
use baton_tests::udpproxy::{UdpProxy, Verdict};

/// A driver for `port` on loopback with the given timing.
fn driver(port: u16, retransmit_ms: u64, timeout_ms: u64) -> Arc<dyn PowerDriver> {
    let mut config = DriverConfig::new(DriverKind::Ipmi, "127.0.0.1", Some(port), USER, PASSWORD);
    config.options.ipmi_retransmit_interval = Duration::from_millis(retransmit_ms);
    config.options.call_timeout = Duration::from_millis(timeout_ms);
    build_driver(&config).unwrap_or_else(|e| panic!("driver: {e}"))
}

/// A one-node rack serving IPMI, powered on.
async fn rack() -> Rack {
    hwsim::start(hwsim::config(1)).await
}

fn ipmi_port(node: &Node) -> u16 {
    node.ipmi_addr()
        .unwrap_or_else(|| panic!("no IPMI endpoint"))
        .port()
}

fn set_faults(node: &Node, faults: Faults) {
    node.set_faults(faults)
        .unwrap_or_else(|e| panic!("faults: {e}"));
}

fn slow(ms: u64) -> Faults {
    Faults {
        slow: Some(Duration::from_millis(ms)),
        ..Faults::default()
    }
}

/// The node's counters once every datagram it received has been served
/// (late retransmissions included) and its power settled on.
async fn settled_counters(node: &Node) -> CounterSnapshot {
    wait_for("the BMC to serve everything and power on", || async {
        let counters = node.counters();
        let on = node.power_state() == baton_hwsim::PowerState::On;
        (counters.in_flight == 0 && on).then_some(counters)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_answer_is_never_taken_for_the_next_command() {
    let rack = rack().await;
    let node = &rack.nodes()[0];
    let driver = driver(ipmi_port(node), 200, 2_000);
    assert_eq!(driver.power_state().await, Ok(PowerState::On));

    // Answers take 300 ms: hard off goes out twice, the first answer ends the
    // call, the second is still on its way.
    set_faults(node, slow(300));
    assert_eq!(driver.set_power(PowerAction::Off).await, Ok(()));
    // Then the BMC stops answering: the next command cannot be confirmed.
    set_faults(
        node,
        Faults {
            no_answer: true,
            ..Faults::default()
        },
    );
    let result = driver.set_power(PowerAction::On).await;
    assert!(
        matches!(result, Err(DriverError::Timeout { .. })),
        "power on must not be confirmed by the late answer to power off: {result:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_that_run_again_are_sent_once_however_late_the_answer() {
    let rack = rack().await;
    let node = &rack.nodes()[0];
    // Answers inside a session come 250 ms late (2.5 retransmit intervals);
    // the handshake stays fast, so sessions keep the 100 ms interval.
    let rewrite = Box::new(|packet: &mut Vec<u8>| {
        if in_session_id(packet).is_some() {
            Verdict::Delay(Duration::from_millis(250))
        } else {
            Verdict::Pass
        }
    });
    let proxy = UdpProxy::start(
        node.ipmi_addr()
            .unwrap_or_else(|| panic!("no IPMI endpoint")),
        rewrite,
    )
    .unwrap_or_else(|e| panic!("proxy: {e}"));
    let driver = driver(proxy.port, 100, 3_000);
    assert_eq!(driver.power_state().await, Ok(PowerState::On));
    node.reset_counters();

    assert_eq!(driver.inject_nmi().await, Ok(()));
    settled_counters(node).await;
    assert_eq!(driver.set_power(PowerAction::PowerCycle).await, Ok(()));
    settled_counters(node).await;
    assert_eq!(driver.set_power(PowerAction::Reboot).await, Ok(()));
    let counters = wait_for("the reset to boot the node", || async {
        let counters = settled_counters(node).await;
        (counters.boots >= 2).then_some(counters)
    })
    .await;
    assert_eq!(counters.crash_dumps, 1, "{counters:?}");
    assert_eq!(
        counters.power_commands, 3,
        "one NMI, one cycle, one reset: {counters:?}"
    );
    assert_eq!(counters.boots, 2, "{counters:?}");
}

/// Answers the proxy still lets through; `UNLIMITED` for all.
const UNLIMITED: i64 = i64::MAX;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_power_command_whose_answer_is_lost_is_outcome_unknown_and_sent_once() {
    let rack = rack().await;
    let node = &rack.nodes()[0];
    let allowed = Arc::new(AtomicI64::new(UNLIMITED));
    let allowed_relay = allowed.clone();
    let rewrite = Box::new(move |_: &mut Vec<u8>| {
        let left = allowed_relay.load(Ordering::SeqCst);
        let pass =
            left == UNLIMITED || (left > 0 && allowed_relay.fetch_sub(1, Ordering::SeqCst) > 0);
        if pass {
            Verdict::Pass
        } else {
            Verdict::Drop
        }
    });
    let proxy = UdpProxy::start(
        node.ipmi_addr()
            .unwrap_or_else(|| panic!("no IPMI endpoint")),
        rewrite,
    )
    .unwrap_or_else(|e| panic!("proxy: {e}"));
    let driver = driver(proxy.port, 100, 1_000);
    assert_eq!(driver.power_state().await, Ok(PowerState::On));

    // The read that checks the session is answered, the cycle's answer lost.
    node.reset_counters();
    allowed.store(1, Ordering::SeqCst);
    let result = driver.set_power(PowerAction::PowerCycle).await;
    assert!(
        matches!(&result, Err(e @ DriverError::OutcomeUnknown { .. }) if !e.is_transient()),
        "{result:?}"
    );
    let counters = wait_for("the cycle to boot the node", || async {
        let counters = settled_counters(node).await;
        (counters.boots == 1).then_some(counters)
    })
    .await;
    assert_eq!(counters.power_commands, 1, "sent once: {counters:?}");

    // Power on may be retransmitted, but once sent it is unconfirmed too.
    // (A fresh session: the cycle's answer may still come on the old one.)
    allowed.store(UNLIMITED, Ordering::SeqCst);
    driver.close().await;
    assert_eq!(driver.power_state().await, Ok(PowerState::On));
    allowed.store(0, Ordering::SeqCst);
    let result = driver.set_power(PowerAction::On).await;
    assert!(
        matches!(result, Err(DriverError::OutcomeUnknown { .. })),
        "{result:?}"
    );
    // With no session, nothing is sent: a plain, retryable timeout.
    let result = driver.inject_nmi().await;
    assert!(
        matches!(result, Err(DriverError::Timeout { .. })),
        "{result:?}"
    );
    assert_eq!(settled_counters(node).await.crash_dumps, 0);
}

/// In-session RMCP+ datagrams: format byte 0x06, payload type 0 (an IPMI
/// message); the session id the BMC addresses sits at 6..10.
fn in_session_id(packet: &[u8]) -> Option<[u8; 4]> {
    match packet {
        [_, _, _, _, 0x06, ty, a, b, c, d, ..] if ty & 0x3F == 0 => Some([*a, *b, *c, *d]),
        _ => None,
    }
}

/// A proxy to `node`'s BMC that, once the flag it returns is set, drops the
/// BMC's answers on the first session, as if the BMC had dropped that
/// session (new sessions work); the `late`-th answer on that session (1:
/// Set Session Privilege's) comes 500 ms late instead, whatever the flag.
fn forgetting_proxy(node: &Node, late: Option<usize>) -> (UdpProxy, Arc<AtomicBool>) {
    let forget = Arc::new(AtomicBool::new(false));
    let forget_relay = forget.clone();
    let mut first = None;
    let mut answers = 0;
    let rewrite = Box::new(move |packet: &mut Vec<u8>| {
        let Some(id) = in_session_id(packet) else {
            return Verdict::Pass;
        };
        if id != *first.get_or_insert(id) {
            return Verdict::Pass;
        }
        answers += 1;
        if Some(answers) == late {
            Verdict::Delay(Duration::from_millis(500))
        } else if forget_relay.load(Ordering::SeqCst) {
            Verdict::Drop
        } else {
            Verdict::Pass
        }
    });
    let proxy = UdpProxy::start(
        node.ipmi_addr()
            .unwrap_or_else(|| panic!("no IPMI endpoint")),
        rewrite,
    )
    .unwrap_or_else(|e| panic!("proxy: {e}"));
    (proxy, forget)
}

/// Makes the BMC forget the driver's session, then has the driver reset
/// the node: the reset must go out once, on a session the BMC answers.
async fn reset_once_after_the_bmc_forgot(
    node: &Node,
    driver: &dyn PowerDriver,
    forget: &AtomicBool,
) {
    forget.store(true, Ordering::SeqCst);
    node.reset_counters();
    assert_eq!(driver.set_power(PowerAction::Reboot).await, Ok(()));
    let counters = settled_counters(node).await;
    assert_eq!(counters.power_commands, 1, "{counters:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_sent_once_does_not_go_out_on_a_session_the_bmc_dropped() {
    let rack = rack().await;
    let node = &rack.nodes()[0];
    let (proxy, forget) = forgetting_proxy(node, None);
    let driver = driver(proxy.port, 100, 3_000);
    assert_eq!(driver.power_state().await, Ok(PowerState::On));
    reset_once_after_the_bmc_forgot(node, driver.as_ref(), &forget).await;
}

/// A tap on the way to `node`'s BMC that drops as many in-session answers
/// as its first counter says (`UNLIMITED`: all) and counts the RMCP+ Open
/// Session Requests the driver sends in its second.
fn session_tap(node: &Node) -> (UdpProxy, Arc<AtomicI64>, Arc<AtomicI64>) {
    let to_drop = Arc::new(AtomicI64::new(0));
    let opens = Arc::new(AtomicI64::new(0));
    let (dropping, counting) = (to_drop.clone(), opens.clone());
    let proxy = UdpProxy::observed(
        node.ipmi_addr()
            .unwrap_or_else(|| panic!("no IPMI endpoint")),
        Box::new(move |packet: &mut Vec<u8>| {
            let left = dropping.load(Ordering::SeqCst);
            let drop = in_session_id(packet).is_some()
                && (left == UNLIMITED || (left > 0 && dropping.fetch_sub(1, Ordering::SeqCst) > 0));
            if drop {
                Verdict::Drop
            } else {
                Verdict::Pass
            }
        }),
        Box::new(move |datagram: &[u8]| {
            if matches!(datagram, [0x06, _, _, 0x07, 0x06, ty, ..] if ty & 0x3F == 0x10) {
                counting.fetch_add(1, Ordering::SeqCst);
            }
        }),
    )
    .unwrap_or_else(|e| panic!("tap: {e}"));
    (proxy, to_drop, opens)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retransmitted_read_leaves_the_session_fit_for_commands() {
    let rack = rack().await;
    let node = &rack.nodes()[0];
    let (proxy, to_drop, opens) = session_tap(node);
    let driver = driver(proxy.port, 300, 3_000);
    assert_eq!(driver.power_state().await, Ok(PowerState::On));
    // The next read is answered on its second try: a late answer to Get
    // Chassis Status may still come, but none to a reset can.
    to_drop.store(1, Ordering::SeqCst);
    assert_eq!(driver.power_state().await, Ok(PowerState::On));
    node.reset_counters();
    assert_eq!(driver.set_power(PowerAction::Reboot).await, Ok(()));
    assert_eq!(
        opens.load(Ordering::SeqCst),
        1,
        "the reset went out on the first session"
    );
    let counters = wait_for("the reset to boot the node", || async {
        let counters = settled_counters(node).await;
        (counters.boots == 1).then_some(counters)
    })
    .await;
    assert_eq!(counters.power_commands, 1, "{counters:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_that_timed_out_keeps_its_session_for_the_next_call() {
    let rack = rack().await;
    let node = &rack.nodes()[0];
    let (proxy, to_drop, opens) = session_tap(node);
    // The deadline comes before a reused session's tries run out (4 × 250
    // ms), so the read times out rather than re-opening.
    let driver = driver(proxy.port, 250, 900);
    assert_eq!(driver.power_state().await, Ok(PowerState::On));
    // A lossy spell eats every try of a read ...
    to_drop.store(UNLIMITED, Ordering::SeqCst);
    let result = driver.power_state().await;
    assert!(
        matches!(result, Err(DriverError::Timeout { .. })),
        "{result:?}"
    );
    // ... and once it passes, the session still answers: no new open.
    to_drop.store(0, Ordering::SeqCst);
    assert_eq!(driver.power_state().await, Ok(PowerState::On));
    assert_eq!(opens.load(Ordering::SeqCst), 1, "sessions opened");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_status_answer_does_not_pass_for_the_check_before_a_command() {
    let rack = rack().await;
    let node = &rack.nodes()[0];
    // In-session answers on the first session: the 1st is Set Session
    // Privilege's, the 2nd the first read's; the 3rd, the second read's
    // first try, comes after its retransmission was answered.
    let (proxy, forget) = forgetting_proxy(node, Some(3));
    let driver = driver(proxy.port, 300, 3_000);
    assert_eq!(driver.power_state().await, Ok(PowerState::On));
    assert_eq!(driver.power_state().await, Ok(PowerState::On));
    // The late Get Chassis Status answer arrives while the driver checks
    // the session before the reset: it must check with another read, find
    // the session dead, and send the reset on a new one.
    reset_once_after_the_bmc_forgot(node, driver.as_ref(), &forget).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_temporary_failure_on_set_session_privilege_is_not_an_auth_error() {
    let rack = rack().await;
    let node = &rack.nodes()[0];
    let driver = driver(ipmi_port(node), 100, 2_000);
    // Every in-session command, Set Session Privilege first, answers FFh.
    set_faults(
        node,
        Faults {
            http_500: true,
            ..Faults::default()
        },
    );
    let result = driver.power_state().await;
    assert!(
        matches!(&result, Err(e @ DriverError::Bmc { code: 0xFF, .. }) if e.is_transient()),
        "{result:?}"
    );
    set_faults(
        node,
        Faults {
            busy: true,
            ..Faults::default()
        },
    );
    let result = driver.power_state().await;
    assert!(
        matches!(result, Err(DriverError::Busy { .. })),
        "{result:?}"
    );
    set_faults(node, Faults::default());
    assert_eq!(driver.power_state().await, Ok(PowerState::On));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bmc_slower_than_the_retransmit_interval_gets_a_session() {
    let rack = rack().await;
    let node = &rack.nodes()[0];
    // Every answer, handshake included, takes 2.5 retransmit intervals.
    set_faults(node, slow(250));
    let driver = driver(ipmi_port(node), 100, 8_000);
    assert_eq!(driver.power_state().await, Ok(PowerState::On));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_sessions_free_the_bmcs_session_table() {
    let rack = rack().await;
    let node = &rack.nodes()[0];
    let driver = driver(ipmi_port(node), 100, 2_000);
    // hw-sim holds 16 sessions and expires idle ones after 60 s.
    for round in 0..20 {
        assert_eq!(
            driver.power_state().await,
            Ok(PowerState::On),
            "round {round}"
        );
        driver.close().await;
    }
}

/// IPMI v2.0 28.12: a BMC clears the boot flags valid bit when no Chassis
/// Control command comes within 60 s (here hw-sim's shortened
/// `boot_flag_valid_timeout`) unless boot options parameter 3 says not to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_boot_override_outlives_the_valid_bit_timeout() {
    let timeout = Duration::from_millis(300);
    let rack = hwsim::start(RackConfig {
        boot_flag_valid_timeout: timeout,
        ..hwsim::config(1)
    })
    .await;
    let node = &rack.nodes()[0];
    let driver = driver(ipmi_port(node), 100, 3_000);
    assert_eq!(driver.set_boot_device(BootDevice::Pxe, false).await, Ok(()));
    tokio::time::sleep(timeout * 3).await;
    assert_eq!(
        driver.boot_device().await.map(|b| b.device),
        Ok(Some(BootDevice::Pxe))
    );
    assert_eq!(node.counters().boot_flags_expired, 0);
    let boots = node.counters().boots;
    assert_eq!(driver.set_power(PowerAction::PowerCycle).await, Ok(()));
    wait_for("the boot of the power cycle", || async {
        (node.counters().boots > boots).then_some(())
    })
    .await;
    assert_eq!(node.last_boot(), BootTarget::Pxe);
}

/// The IPMI two's-complement checksum.
fn checksum(bytes: &[u8]) -> u8 {
    bytes
        .iter()
        .fold(0u8, |sum, b| sum.wrapping_add(*b))
        .wrapping_neg()
}

/// A pre-session IPMI 1.5 answer (auth type none) from the BMC to App
/// command `cmd`, completion code 0, with `data`.
fn app_answer(cmd: u8, rq_seq: u8, data: &[u8]) -> Vec<u8> {
    let head = [0x81, 0x07 << 2];
    let mut message = head.to_vec();
    message.push(checksum(&head));
    let mut body = vec![0x20, rq_seq, cmd, 0x00];
    body.extend_from_slice(data);
    body.push(checksum(&body));
    message.extend_from_slice(&body);
    let mut packet = vec![0x06, 0x00, 0xFF, 0x07, 0x00, 0, 0, 0, 0, 0, 0, 0, 0];
    packet.push(u8::try_from(message.len()).unwrap_or(0));
    packet.extend_from_slice(&message);
    packet
}

/// The ASF pong of a BMC that supports IPMI.
fn pong(tag: u8) -> Vec<u8> {
    let mut packet = vec![
        0x06, 0x00, 0xFF, 0x06, 0x00, 0x00, 0x11, 0xBE, 0x40, tag, 0x00, 0x10,
    ];
    packet.extend_from_slice(&[0, 0, 0x11, 0xBE, 0, 0, 0, 0, 0x81, 0x00, 0, 0, 0, 0, 0, 0]);
    packet
}

/// A BMC that says "IPMI 2.0" to the first Get Channel Authentication
/// Capabilities and "IPMI 1.5 only, straight password" to every later one,
/// hands out session challenges, and reports every datagram it receives.
fn two_faced_bmc() -> (u16, mpsc::Receiver<Vec<u8>>) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind: {e}"));
    let port = socket.local_addr().map_or(0, |a| a.port());
    let (seen, received) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buffer = [0u8; 512];
        let mut capability_answers = 0;
        while let Ok((n, peer)) = socket.recv_from(&mut buffer) {
            let packet = buffer[..n].to_vec();
            let answer = match packet.as_slice() {
                // ASF presence ping.
                [0x06, _, _, 0x06, _, _, _, _, 0x80, tag, ..] => Some(pong(*tag)),
                // Pre-session App request: rqSeq at 18, command at 19.
                [0x06, _, _, 0x07, 0x00, rest @ ..] if rest.len() > 15 => {
                    let (rq_seq, cmd) = (packet[18], packet[19]);
                    match cmd {
                        0x38 => {
                            capability_answers += 1;
                            let extended = if capability_answers == 1 { 0x03 } else { 0x01 };
                            Some(app_answer(
                                cmd,
                                rq_seq,
                                &[0x01, 0x90, 0x04, extended, 0, 0, 0, 0],
                            ))
                        }
                        0x39 => {
                            let mut data = vec![0x11, 0x22, 0x33, 0x44];
                            data.extend_from_slice(&[0xAB; 16]);
                            Some(app_answer(cmd, rq_seq, &data))
                        }
                        _ => None,
                    }
                }
                _ => None,
            };
            if seen.send(packet).is_err() {
                return;
            }
            if let Some(answer) = answer {
                let _ = socket.send_to(&answer, peer);
            }
        }
    });
    (port, received)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bmc_that_changes_its_answer_to_ipmi_1_5_never_gets_the_password() {
    let (port, received) = two_faced_bmc();
    let driver = driver(port, 100, 2_000);
    let result = driver.power_state().await;
    assert!(
        matches!(&result, Err(DriverError::Unsupported(m)) if m.contains("IPMI 1.5")),
        "{result:?}"
    );
    let packets: Vec<Vec<u8>> = received.try_iter().collect();
    assert!(
        packets.iter().filter(|p| p.get(19) == Some(&0x38)).count() >= 2,
        "ipmi-rs asked for the capabilities itself"
    );
    for packet in &packets {
        assert!(
            !packet
                .windows(PASSWORD.len())
                .any(|w| w == PASSWORD.as_bytes()),
            "the password went out: {packet:02x?}"
        );
        assert_ne!(packet.get(19), Some(&0x39), "no IPMI 1.5 session challenge");
    }
}
