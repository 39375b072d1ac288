//! The IPMI driver opens sessions through packet loss: with hw-sim's
//! `packet_loss` at 30 % (each way), every one of many fresh session opens
//! succeeds, because each handshake step is resent — the same bytes again,
//! as ipmitool does — rather than the whole open started over (a five-step
//! open survives 30 % loss each way about 3 % of the time). A tap between
//! driver and BMC sees the resent Open Session Request, RAKP 1 and RAKP 3
//! messages; hw-sim's counters show it received more than a loss-free run
//! needs, and never more power commands than the driver sent.
//!
//! hw-sim draws its losses from an unseeded generator, so the run differs
//! each time; the bounds below hold with overwhelming probability with the
//! fix (each step gets tens of tries within the deadline) and fail every
//! time without it (no handshake message is ever sent twice). Deterministic
//! cases pin the rules: a lost Open Session Response or RAKP 2 draws exactly
//! one resend of the same bytes; a late answer to a resent step is not taken
//! for the next step's; and a lost RAKP 4 — whose resent RAKP 3 hw-sim
//! refuses, as OpenBMC does — leads to a second open, not to "bad
//! credentials". An open slower than the call's deadline goes on for the
//! next call, which then needs no open of its own, and the late answers to
//! its resent steps are not taken for garbage.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use baton_drivers::{build_driver, DriverConfig, DriverError, DriverKind, PowerDriver};
use baton_hwsim::{Faults, Node, RackConfig};
use baton_tests::hwsim::{self, PASSWORD, USER};
use baton_tests::udpproxy::{UdpProxy, Verdict};

/// Drivers working at once, each through its own tap, so the run is short.
const LANES: usize = 4;
/// Fresh session opens per lane for a read, then one for an NMI.
const READS_PER_LANE: usize = 5;
const OPENS: usize = LANES * (READS_PER_LANE + 1);

/// Datagrams a loss-free open + Get Chassis Status + close sends: preflight,
/// ping, capabilities, Open Session, RAKP 1, RAKP 3, Set Session Privilege,
/// Get Chassis Status, Get Session Info, Close Session.
const LOSS_FREE_DATAGRAMS: u64 = 10;

/// The retransmit interval of the lossy run: short, so it is quick.
const FAST: Duration = Duration::from_millis(20);

/// The retransmit interval where the test counts exact resends: far longer
/// than hw-sim takes to answer even on a loaded machine, so that only the
/// answers the test drops cause resends.
const STEADY: Duration = Duration::from_millis(300);

/// RMCP+ payload types of the handshake messages.
const OPEN_SESSION_REQUEST: u8 = 0x10;
const OPEN_SESSION_RESPONSE: u8 = 0x11;
const RAKP1: u8 = 0x12;
const RAKP2: u8 = 0x13;
const RAKP3: u8 = 0x14;
const RAKP4: u8 = 0x15;

/// The RMCP+ payload type of a datagram, if it is RMCP+.
fn payload_type(datagram: &[u8]) -> Option<u8> {
    match datagram {
        [0x06, _, _, 0x07, 0x06, payload_type, ..] => Some(payload_type & 0x3F),
        _ => None,
    }
}

/// How often each distinct datagram of `payload_type` was sent.
fn copies(seen: &[Vec<u8>], payload_type_wanted: u8) -> Vec<usize> {
    let of_type: Vec<_> = seen
        .iter()
        .filter(|d| payload_type(d) == Some(payload_type_wanted))
        .collect();
    let distinct: HashSet<_> = of_type.iter().collect();
    distinct
        .into_iter()
        .map(|d| of_type.iter().filter(|o| *o == d).count())
        .collect()
}

/// A driver through `port` retransmitting every `retransmit`, with
/// `timeout` per call.
fn driver(port: u16, retransmit: Duration, timeout: Duration) -> Arc<dyn PowerDriver> {
    let mut config = DriverConfig::new(DriverKind::Ipmi, "127.0.0.1", Some(port), USER, PASSWORD);
    config.options.ipmi_retransmit_interval = retransmit;
    config.options.call_timeout = timeout;
    build_driver(&config).unwrap_or_else(|e| panic!("driver: {e}"))
}

fn lose(node: &Node, fraction: f64) {
    node.set_faults(Faults {
        packet_loss: fraction,
        ..Faults::default()
    })
    .unwrap_or_else(|e| panic!("faults: {e}"));
}

/// A tap on the way to `bmc` that records what the driver sends into `seen`.
fn tap(bmc: SocketAddr, seen: &Arc<Mutex<Vec<Vec<u8>>>>) -> UdpProxy {
    tap_with(bmc, seen, &[])
}

/// [`tap`] that also gives the first BMC answer of each RMCP+ payload type
/// in `first` its verdict (drop or delay).
fn tap_with(bmc: SocketAddr, seen: &Arc<Mutex<Vec<Vec<u8>>>>, first: &[(u8, Verdict)]) -> UdpProxy {
    let log = seen.clone();
    let mut pending = first.to_vec();
    UdpProxy::observed(
        bmc,
        Box::new(move |answer| {
            let kind = payload_type(answer);
            match pending.iter().position(|(k, _)| Some(*k) == kind) {
                Some(at) => pending.remove(at).1,
                None => Verdict::Pass,
            }
        }),
        Box::new(move |datagram| {
            log.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(datagram.to_vec());
        }),
    )
    .unwrap_or_else(|e| panic!("tap: {e}"))
}

/// One lane: [`READS_PER_LANE`] fresh drivers read the power state, then
/// one sends an NMI. Returns whether the NMI was confirmed.
async fn lane(lane: usize, port: u16) -> bool {
    for round in 0..READS_PER_LANE {
        let driver = driver(port, FAST, Duration::from_secs(4));
        let state = driver.power_state().await;
        assert!(state.is_ok(), "lane {lane}, open {round}: {state:?}");
        driver.close().await;
    }
    let driver = driver(port, FAST, Duration::from_secs(4));
    let confirmed = match driver.inject_nmi().await {
        Ok(()) => true,
        Err(DriverError::OutcomeUnknown { .. }) => false,
        Err(e) => panic!("lane {lane}: an NMI is confirmed or of unknown outcome: {e:?}"),
    };
    driver.close().await;
    confirmed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_open_through_thirty_percent_packet_loss_by_resending_steps() {
    // Room for the sessions a lost RAKP 4 or Close Session leaves behind
    // until hw-sim expires them.
    let config = RackConfig {
        ipmi_max_sessions: 63,
        ..hwsim::config(1)
    };
    let rack = hwsim::start(config).await;
    let node = &rack.nodes()[0];
    let bmc = node
        .ipmi_addr()
        .unwrap_or_else(|| panic!("no IPMI endpoint"));
    let seen: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let taps: Vec<_> = (0..LANES).map(|_| tap(bmc, &seen)).collect();
    lose(node, 0.3);
    let before = node.counters();
    let lanes: Vec<_> = taps
        .iter()
        .enumerate()
        .map(|(i, tap)| tokio::spawn(lane(i, tap.port)))
        .collect();
    let mut confirmed = Vec::new();
    for lane in lanes {
        match lane.await {
            Ok(nmi_confirmed) => confirmed.push(nmi_confirmed),
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
    let after = node.counters();
    lose(node, 0.0);

    let seen = seen.lock().unwrap_or_else(PoisonError::into_inner).clone();
    for (name, kind) in [
        ("Open Session Request", OPEN_SESSION_REQUEST),
        ("RAKP 1", RAKP1),
        ("RAKP 3", RAKP3),
    ] {
        let copies = copies(&seen, kind);
        assert!(
            copies.iter().any(|n| *n > 1),
            "no {name} was resent: {copies:?}"
        );
        if kind == OPEN_SESSION_REQUEST {
            // Whole opens start again only when the BMC refused a resent
            // RAKP 3 (a lost RAKP 4): about one open in three.
            assert!(
                copies.len() <= 3 * OPENS,
                "{} session opens for {OPENS} calls",
                copies.len()
            );
        }
    }
    let received = after.requests - before.requests;
    let needed = LOSS_FREE_DATAGRAMS * u64::try_from(OPENS).unwrap_or(u64::MAX);
    assert!(
        received > needed,
        "hw-sim received {received} datagrams, no more than a loss-free run's {needed}"
    );
    let nmis = after.power_commands - before.power_commands;
    let sent = u64::try_from(LANES).unwrap_or(u64::MAX);
    let confirmed = confirmed.iter().filter(|c| **c).count();
    let confirmed = u64::try_from(confirmed).unwrap_or(u64::MAX);
    assert!(
        nmis <= sent && nmis >= confirmed,
        "{nmis} NMIs arrived for {sent} sent, {confirmed} confirmed"
    );
}

/// A one-node rack without faults, and a tap to it that treats the first
/// answer of each payload type in `first` as given.
async fn rack_and_tap(
    first: &[(u8, Verdict)],
) -> (baton_hwsim::Rack, UdpProxy, Arc<Mutex<Vec<Vec<u8>>>>) {
    let rack = hwsim::start(hwsim::config(1)).await;
    let bmc = rack.nodes()[0]
        .ipmi_addr()
        .unwrap_or_else(|| panic!("no IPMI endpoint"));
    let seen: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let tap = tap_with(bmc, &seen, first);
    (rack, tap, seen)
}

fn sorted_copies(seen: &Arc<Mutex<Vec<Vec<u8>>>>, kind: u8) -> Vec<usize> {
    let seen = seen.lock().unwrap_or_else(PoisonError::into_inner).clone();
    let mut copies = copies(&seen, kind);
    copies.sort_unstable();
    copies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_handshake_answer_draws_one_resend_of_the_same_step() {
    let lost = [
        (OPEN_SESSION_RESPONSE, Verdict::Drop),
        (RAKP2, Verdict::Drop),
    ];
    let (_rack, tap, seen) = rack_and_tap(&lost).await;
    let driver = driver(tap.port, STEADY, Duration::from_secs(5));
    let state = driver.power_state().await;
    assert!(state.is_ok(), "{state:?}");
    // One open, its first two steps each sent twice with the same bytes.
    assert_eq!(sorted_copies(&seen, OPEN_SESSION_REQUEST), vec![2]);
    assert_eq!(sorted_copies(&seen, RAKP1), vec![2]);
    assert_eq!(sorted_copies(&seen, RAKP3), vec![1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_resent_rakp3_opens_again_instead_of_failing_authentication() {
    let (rack, tap, seen) = rack_and_tap(&[(RAKP4, Verdict::Drop)]).await;
    let driver = driver(tap.port, STEADY, Duration::from_secs(5));
    let state = driver.power_state().await;
    assert!(
        state.is_ok(),
        "a lost RAKP 4 is not bad credentials: {state:?}"
    );
    // The first open's RAKP 3 went out twice (hw-sim refused the copy: the
    // first had activated the session), then a second open succeeded.
    assert_eq!(sorted_copies(&seen, OPEN_SESSION_REQUEST), vec![1, 1]);
    assert_eq!(sorted_copies(&seen, RAKP3), vec![1, 2]);
    // The session the first open activated was closed from the second,
    // after the call's answer: the BMC holds the driver's one session, then
    // none.
    let node = &rack.nodes()[0];
    hwsim::wait_for("the orphan to be closed", || async {
        (node.counters().ipmi_sessions == 1).then_some(())
    })
    .await;
    driver.close().await;
    assert_eq!(node.counters().ipmi_sessions, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_answer_to_a_resent_step_is_not_taken_for_the_next_steps() {
    // The first Open Session Response comes two intervals late, after the
    // resend (one interval in) was answered, while RAKP 1 waits for its
    // second resend (three intervals in; its first two answers are lost):
    // ipmi-rs would read it as RAKP 2 and give up.
    let late = Verdict::Delay(STEADY * 2);
    let first = [
        (OPEN_SESSION_RESPONSE, late),
        (RAKP2, Verdict::Drop),
        (RAKP2, Verdict::Drop),
    ];
    let (_rack, tap, seen) = rack_and_tap(&first).await;
    let driver = driver(tap.port, STEADY, Duration::from_secs(5));
    let state = driver.power_state().await;
    assert!(state.is_ok(), "{state:?}");
    assert_eq!(sorted_copies(&seen, OPEN_SESSION_REQUEST), vec![2]);
    assert_eq!(sorted_copies(&seen, RAKP1), vec![3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_cut_short_by_the_deadline_goes_on_for_the_next_call() {
    let rack = hwsim::start(hwsim::config(1)).await;
    let bmc = rack.nodes()[0]
        .ipmi_addr()
        .unwrap_or_else(|| panic!("no IPMI endpoint"));
    // Every Open Session Response takes 1.2 s, so an open takes longer than
    // a 1 s call; the answers to its resends come after the session is open.
    let seen: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let log = seen.clone();
    let tap = UdpProxy::observed(
        bmc,
        Box::new(|answer: &mut Vec<u8>| {
            if payload_type(answer) == Some(OPEN_SESSION_RESPONSE) {
                Verdict::Delay(Duration::from_millis(1200))
            } else {
                Verdict::Pass
            }
        }),
        Box::new(move |datagram: &[u8]| {
            log.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(datagram.to_vec());
        }),
    )
    .unwrap_or_else(|e| panic!("tap: {e}"));
    let driver = driver(tap.port, STEADY, Duration::from_secs(1));
    let first = driver.power_state().await;
    assert!(
        matches!(first, Err(DriverError::Timeout { .. })),
        "{first:?}"
    );
    // The open finished after the deadline; the next call uses its session.
    let second = driver.power_state().await;
    assert!(second.is_ok(), "{second:?}");
    // The answers to the resent Open Session Requests arrive on the open
    // session: late handshake answers, not garbage.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let third = driver.power_state().await;
    assert!(third.is_ok(), "{third:?}");
    let opens = sorted_copies(&seen, OPEN_SESSION_REQUEST).len();
    assert_eq!(opens, 1, "sessions opened");
    driver.close().await;
}
