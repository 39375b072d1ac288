//! Engine tests: the whole RMCP+ exchange between [`super::client`] and
//! [`super::bmc::Bmc`] over a real model node, without sockets, plus the
//! decoder fuzz test (random and mutated datagrams must never panic).
//!
//! The fuzz test runs `BATON_IPMI_FUZZ_CASES` cases (default 2000); for the
//! long run see the README's IPMI section.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use uuid::Uuid;

use super::bmc::{Bmc, BmcConfig, Incoming, OsEntropy, Service};
use super::client::{ClientError, Handshake, Session};
use super::commands::cc;
use super::crypto::{CipherSuite, SUPPORTED_SUITES};
use super::rakp::status;
use super::session::Timeouts;
use crate::model::{
    BootEnabled, BootMode, BootTarget, Credentials, Delays, Endpoints, FaultSetting, Node,
    NodeIdentity, NodeSettings, PowerState, Quirks,
};

const PEER: SocketAddr = SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 40000);

fn node(powered_on: bool) -> Arc<Node> {
    let settings = Arc::new(NodeSettings {
        latency: Duration::ZERO,
        delays: Delays {
            power_on: Duration::ZERO,
            power_off: Duration::ZERO,
            shutdown: Duration::ZERO,
        },
        power_cycle_off: Duration::from_secs(1),
        credentials: Credentials {
            username: "admin".into(),
            password: "secret".into(),
        },
        boot_flag_valid_timeout: Duration::from_secs(60),
    });
    let identity = NodeIdentity {
        index: 0,
        name: "node-0000".into(),
        power_domain: "pdu-00".into(),
        uuid: Uuid::nil(),
    };
    let endpoints = Endpoints {
        address: PEER.ip(),
        redfish_port: 1,
        ipmi_port: Some(2),
    };
    Arc::new(Node::new(
        identity,
        endpoints,
        settings,
        powered_on,
        Quirks::default(),
    ))
}

fn bmc(capacity: usize) -> Bmc {
    Bmc::new(BmcConfig {
        username: "admin".into(),
        session_capacity: capacity,
        timeouts: Timeouts::default(),
        guid: [0x42; 16],
    })
}

struct Rig {
    bmc: Bmc,
    node: Arc<Node>,
    service: Service,
}

impl Rig {
    fn new(powered_on: bool) -> Self {
        Self {
            bmc: bmc(4),
            node: node(powered_on),
            service: Service::Normal,
        }
    }

    fn send(&mut self, dgram: &[u8]) -> Option<Vec<u8>> {
        self.send_at(dgram, Instant::now())
    }

    fn send_at(&mut self, dgram: &[u8], now: Instant) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        let input = Incoming {
            peer: PEER,
            now,
            service: self.service,
        };
        self.bmc
            .handle(dgram, input, self.node.as_ref(), &mut OsEntropy, &mut out)
            .then_some(out)
    }

    fn connect_as(&mut self, suite: CipherSuite, password: &str) -> Result<Session, ClientError> {
        let mut hs = Handshake::new(suite, "admin", password);
        let rsp = self
            .send(&hs.open_session_request())
            .ok_or(ClientError::Unexpected)?;
        let rakp1 = hs.on_open_session_response(&rsp)?;
        let rakp2 = self.send(&rakp1).ok_or(ClientError::Unexpected)?;
        let rakp3 = hs.on_rakp2(&rakp2)?;
        let rakp4 = self.send(&rakp3).ok_or(ClientError::Unexpected)?;
        hs.on_rakp4(&rakp4)
    }

    fn connect(&mut self, suite: CipherSuite) -> Session {
        let mut s = self.connect_as(suite, "secret").expect("session opens");
        let (code, data) = self.call(&mut s, 0x06, 0x3B, &[0x04]);
        assert_eq!((code, data), (cc::OK, vec![0x04]), "raise to Administrator");
        s
    }

    fn call(&mut self, s: &mut Session, netfn: u8, cmd: u8, data: &[u8]) -> (u8, Vec<u8>) {
        let mut req = Vec::new();
        s.request(netfn, cmd, data, &mut req);
        let rsp = self.send(&req).expect("BMC answers");
        let r = s.response(&rsp).expect("response opens");
        assert_eq!((r.netfn, r.cmd), (netfn | 1, cmd));
        (r.cc, r.data.to_vec())
    }
}

fn sessionless_v15(netfn: u8, cmd: u8, data: &[u8]) -> Vec<u8> {
    let mut msg = Vec::new();
    super::wire::encode_request(netfn, cmd, 1, data, &mut msg);
    let mut out = Vec::new();
    super::wire::encode_v15(&msg, &mut out);
    out
}

#[test]
fn auth_caps_announce_ipmi_2_only() {
    let mut rig = Rig::new(true);
    let rsp = rig
        .send(&sessionless_v15(0x06, 0x38, &[0x8E, 0x04]))
        .expect("answers");
    // RMCP(4) + v1.5 header(10) + rsp header(3) + rs,seq,cmd(3) + cc
    let body = &rsp[14..];
    let r = super::wire::decode_response(body).expect("decodes");
    assert_eq!(r.cc, cc::OK);
    assert_eq!(r.data, &[0x01, 0x80, 0x04, 0x02, 0, 0, 0, 0]);
}

#[test]
fn both_suites_serve_chassis_commands() {
    for suite in SUPPORTED_SUITES {
        let mut rig = Rig::new(false);
        let mut s = rig.connect(suite);
        assert_eq!(
            rig.call(&mut s, 0x00, 0x01, &[]).1[0] & 1,
            0,
            "{suite:?} off"
        );
        assert_eq!(rig.call(&mut s, 0x00, 0x02, &[0x01]).0, cc::OK);
        assert!(rig.node.power_state().is_powered());
        let status = rig.call(&mut s, 0x00, 0x01, &[]).1;
        assert_eq!(status[0] & 1, 1);
        assert_eq!(status[1] & 0x10, 0x10, "last power-on via IPMI");
        assert_eq!(rig.node.counters().power_commands, 1);
    }
}

#[test]
fn user_privilege_cannot_control_power() {
    let mut rig = Rig::new(true);
    let mut s = rig
        .connect_as(CipherSuite::Suite3, "secret")
        .expect("opens");
    assert_eq!(
        rig.call(&mut s, 0x00, 0x02, &[0x00]).0,
        cc::INSUFFICIENT_PRIVILEGE
    );
    assert_eq!(rig.node.power_state(), PowerState::On);
    assert_eq!(rig.call(&mut s, 0x00, 0x01, &[]).0, cc::OK);
}

#[test]
fn wrong_password_fails_at_rakp2_and_rakp3() {
    let mut rig = Rig::new(true);
    assert_eq!(
        rig.connect_as(CipherSuite::Suite17, "nope").err(),
        Some(ClientError::Rakp2Hmac)
    );
    // A console that ignores the bad RAKP 2 and proves a wrong key gets 0Fh.
    let mut hs = Handshake::new(CipherSuite::Suite3, "admin", "nope");
    let rsp = rig.send(&hs.open_session_request()).expect("answers");
    let rakp1 = hs.on_open_session_response(&rsp).expect("opens");
    rig.send(&rakp1).expect("answers");
    let bmc_id = rig
        .bmc
        .sessions()
        .iter()
        .last()
        .expect("half-open session")
        .bmc_id;
    let mut payload = vec![0x03, 0, 0, 0];
    payload.extend_from_slice(&bmc_id.to_le_bytes());
    payload.extend_from_slice(&[0; 20]);
    let mut rakp3 = Vec::new();
    super::sealed::plain(super::wire::payload::RAKP3, 0, &payload, &mut rakp3);
    let rakp4 = rig.send(&rakp3).expect("answers");
    assert_eq!(reply_status(&rakp4), status::INVALID_INTEGRITY_CHECK);
    assert!(
        rig.bmc.sessions().iter().all(|s| s.bmc_id != bmc_id),
        "failed session is gone"
    );
}

/// The status byte of a handshake reply.
fn reply_status(dgram: &[u8]) -> u8 {
    let Ok(super::wire::Datagram::V20(p)) = super::wire::decode_datagram(dgram) else {
        panic!("not an RMCP+ reply")
    };
    p.payload[1]
}

#[test]
fn unknown_user_and_unsupported_suite_are_refused_with_status() {
    let mut rig = Rig::new(true);
    let mut hs = Handshake::new(CipherSuite::Suite3, "root", "secret");
    let rsp = rig.send(&hs.open_session_request()).expect("answers");
    let rakp1 = hs.on_open_session_response(&rsp).expect("opens");
    let rakp2 = rig.send(&rakp1).expect("answers");
    assert_eq!(
        hs.on_rakp2(&rakp2).err(),
        Some(ClientError::Status(status::UNAUTHORIZED_NAME))
    );

    // Suite 1 (SHA1, no integrity, no confidentiality) is not offered.
    let mut req = Handshake::new(CipherSuite::Suite3, "admin", "secret").open_session_request();
    let integrity_alg = 4 + 12 + 8 + 8 + 4;
    req[integrity_alg] = 0;
    let rsp = rig.send(&req).expect("answers");
    assert_eq!(reply_status(&rsp), status::NO_CIPHER_SUITE_MATCH);
    assert_eq!(rig.bmc.sessions().iter().count(), 0);
}

#[test]
fn wrong_credentials_fault_refuses_the_configured_password() {
    let mut rig = Rig::new(true);
    rig.node.apply_fault(FaultSetting::WrongCredentials);
    assert_eq!(
        rig.connect_as(CipherSuite::Suite3, "secret").err(),
        Some(ClientError::Rakp2Hmac)
    );
}

#[test]
fn session_table_is_bounded() {
    let mut rig = Rig::new(true);
    for _ in 0..4 {
        rig.connect(CipherSuite::Suite3);
    }
    let err = rig.connect_as(CipherSuite::Suite3, "secret").err();
    assert_eq!(err, Some(ClientError::Status(status::NO_RESOURCES)));
}

#[test]
fn replayed_and_tampered_packets_are_dropped() {
    let mut rig = Rig::new(true);
    let mut s = rig.connect(CipherSuite::Suite3);
    let mut req = Vec::new();
    s.request(0x00, 0x02, &[0x00], &mut req);
    assert!(rig.send(&req).is_some());
    assert!(rig.send(&req).is_none(), "replay");
    s.request(0x00, 0x01, &[], &mut req);
    let mut tampered = req.clone();
    let at = tampered.len() - 20;
    tampered[at] ^= 1;
    assert!(rig.send(&tampered).is_none(), "tampered");
    assert!(rig.send(&req).is_some(), "the genuine packet still passes");
    assert_eq!(rig.node.counters().power_commands, 1);
}

#[test]
fn idle_sessions_expire_and_retransmitted_open_reuses_the_slot() {
    let mut rig = Rig::new(true);
    let mut s = rig.connect(CipherSuite::Suite3);
    let mut req = Vec::new();
    s.request(0x00, 0x01, &[], &mut req);
    let later = Instant::now() + Duration::from_secs(61);
    assert!(rig.send_at(&req, later).is_none(), "idle session expired");
    assert_eq!(rig.bmc.sessions().iter().count(), 0);

    let hs = Handshake::new(CipherSuite::Suite3, "admin", "secret");
    let first = rig.send(&hs.open_session_request()).expect("answers");
    let again = rig.send(&hs.open_session_request()).expect("answers");
    assert_eq!(first, again, "same session for a retransmitted request");
    assert_eq!(rig.bmc.sessions().iter().count(), 1);
}

#[test]
fn close_session_frees_the_slot() {
    let mut rig = Rig::new(true);
    let mut s = rig.connect(CipherSuite::Suite17);
    let id = s.bmc_id().to_le_bytes();
    assert_eq!(rig.call(&mut s, 0x06, 0x3C, &id).0, cc::OK);
    assert_eq!(rig.bmc.sessions().iter().count(), 0);
    let mut req = Vec::new();
    s.request(0x00, 0x01, &[], &mut req);
    assert!(rig.send(&req).is_none(), "closed session is gone");
}

#[test]
fn boot_flags_follow_the_model() {
    let mut rig = Rig::new(true);
    let mut s = rig.connect(CipherSuite::Suite3);
    assert_eq!(rig.call(&mut s, 0x00, 0x08, &[0x00, 0x01]).0, cc::OK);
    assert_eq!(
        rig.call(&mut s, 0x00, 0x08, &[0x00, 0x01]).0,
        cc::SET_IN_PROGRESS
    );
    assert_eq!(
        rig.call(&mut s, 0x00, 0x08, &[0x05, 0xE0, 0x04, 0, 0, 0]).0,
        cc::OK
    );
    assert_eq!(rig.call(&mut s, 0x00, 0x08, &[0x00, 0x00]).0, cc::OK);
    let boot = rig.node.boot_override();
    assert_eq!(
        (boot.target, boot.enabled, boot.mode),
        (BootTarget::Pxe, BootEnabled::Continuous, BootMode::Uefi)
    );
    let (code, data) = rig.call(&mut s, 0x00, 0x09, &[0x05, 0, 0]);
    assert_eq!(
        (code, data),
        (cc::OK, vec![0x01, 0x05, 0xE0, 0x04, 0, 0, 0])
    );
    assert_eq!(
        rig.call(&mut s, 0x00, 0x08, &[0x05, 0x80, 0x0C, 0, 0, 0]).0,
        cc::INVALID_DATA
    );
    assert_eq!(
        rig.call(&mut s, 0x00, 0x08, &[0x05, 0x80]).0,
        cc::LENGTH_INVALID
    );
    assert_eq!(
        rig.call(&mut s, 0x00, 0x09, &[0x08, 0, 0]).0,
        cc::PARAMETER_NOT_SUPPORTED
    );
}

/// Sets boot option `param` to `value` and reads it back with `set_selector`.
fn set_and_get(rig: &mut Rig, s: &mut Session, param: u8, value: &[u8], get: u8) -> Vec<u8> {
    let mut set = vec![param];
    set.extend_from_slice(value);
    assert_eq!(rig.call(s, 0x00, 0x08, &set).0, cc::OK, "set {param}");
    let (code, data) = rig.call(s, 0x00, 0x09, &[param, get, 0]);
    assert_eq!(code, cc::OK, "get {param}");
    assert_eq!(&data[..2], &[0x01, param], "version and selector");
    data[2..].to_vec()
}

#[test]
fn boot_options_1_2_3_6_7_are_stored_and_length_checked() {
    let mut rig = Rig::new(true);
    let mut s = rig.connect(CipherSuite::Suite17);
    assert_eq!(set_and_get(&mut rig, &mut s, 1, &[0x42], 0), [0x42]);
    assert_eq!(set_and_get(&mut rig, &mut s, 2, &[0x03], 0), [0x03]);
    assert_eq!(set_and_get(&mut rig, &mut s, 3, &[0x08], 0), [0x08]);
    assert_eq!(
        rig.node.valid_bit_clearing().byte(),
        0x08,
        "the model has it"
    );
    let info = [0x01, 1, 2, 3, 4, 5, 6, 7, 8];
    assert_eq!(set_and_get(&mut rig, &mut s, 6, &info, 0), info);
    let block2 = set_and_get(&mut rig, &mut s, 7, &[2, 0xAA, 0xBB], 2);
    assert_eq!(block2[..3], [2, 0xAA, 0xBB]);
    assert_eq!(block2.len(), 17, "selector and a whole block");
    let block0 = rig.call(&mut s, 0x00, 0x09, &[7, 0, 0]).1;
    assert_eq!(block0[2..], [0; 17], "other blocks untouched");
    let refused: [(&[u8], u8); 12] = [
        (&[1], cc::LENGTH_INVALID),
        (&[1, 0, 0], cc::LENGTH_EXCEEDED),
        (&[2, 0x04], cc::INVALID_DATA),
        (&[3], cc::LENGTH_INVALID),
        (&[3, 0x08, 0], cc::LENGTH_EXCEEDED),
        (&[3, 0x20], cc::INVALID_DATA),
        (&[6, 1, 2, 3, 4, 5, 6, 7, 8], cc::LENGTH_INVALID),
        (&[6, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10], cc::LENGTH_EXCEEDED),
        (&[7, 0], cc::LENGTH_INVALID),
        (
            &[
                7, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17,
            ],
            cc::LENGTH_EXCEEDED,
        ),
        (&[7, 5, 1], cc::PARAMETER_OUT_OF_RANGE),
        (&[0x08, 0], cc::PARAMETER_NOT_SUPPORTED),
    ];
    for (request, code) in refused {
        assert_eq!(
            rig.call(&mut s, 0x00, 0x08, request).0,
            code,
            "{request:02x?}"
        );
    }
    assert_eq!(
        rig.call(&mut s, 0x00, 0x09, &[7, 5, 0]).0,
        cc::PARAMETER_OUT_OF_RANGE
    );
    assert_eq!(
        rig.node.valid_bit_clearing().byte(),
        0x08,
        "refusals change nothing"
    );
}

#[test]
fn completion_codes_for_bad_requests_and_faults() {
    let mut rig = Rig::new(true);
    let mut s = rig.connect(CipherSuite::Suite3);
    assert_eq!(rig.call(&mut s, 0x06, 0x99, &[]).0, cc::INVALID_COMMAND);
    assert_eq!(rig.call(&mut s, 0x00, 0x02, &[]).0, cc::LENGTH_INVALID);
    assert_eq!(rig.call(&mut s, 0x00, 0x01, &[1]).0, cc::LENGTH_EXCEEDED);
    assert_eq!(rig.call(&mut s, 0x00, 0x02, &[0x09]).0, cc::INVALID_DATA);
    rig.service = Service::Busy;
    assert_eq!(rig.call(&mut s, 0x00, 0x01, &[]).0, cc::BUSY);
    rig.service = Service::Normal;
    assert_eq!(rig.call(&mut s, 0x0A, 0x40, &[]).0, cc::OK);
    let (code, info) = rig.call(&mut s, 0x06, 0x3D, &[0x00]);
    assert_eq!(code, cc::OK);
    assert_eq!(
        (info.len(), info[2], info[4]),
        (18, 1, 4),
        "one active admin session"
    );
}

/// The response of a session-less v1.5 request: (completion code, data).
fn sessionless_call(rig: &mut Rig, netfn: u8, cmd: u8, data: &[u8]) -> (u8, Vec<u8>) {
    let rsp = rig
        .send(&sessionless_v15(netfn, cmd, data))
        .expect("answers");
    let r = super::wire::decode_response(&rsp[14..]).expect("decodes");
    (r.cc, r.data.to_vec())
}

#[test]
fn cipher_suites_are_listed_in_16_byte_pages() {
    let mut rig = Rig::new(true);
    let (code, page0) = sessionless_call(&mut rig, 0x06, 0x54, &[0x0E, 0x00, 0x80]);
    assert_eq!(code, cc::OK);
    assert_eq!(
        page0,
        [0x01, 0xC0, 3, 0x01, 0x41, 0x81, 0xC0, 17, 0x03, 0x44, 0x81]
    );
    let (_, page1) = sessionless_call(&mut rig, 0x06, 0x54, &[0x0E, 0x00, 0x81]);
    assert_eq!(page1, [0x01], "short page: end of list");
    let (_, algs) = sessionless_call(&mut rig, 0x06, 0x54, &[0x0E, 0x00, 0x00]);
    assert_eq!(algs, [0x01, 0x01, 0x41, 0x81, 0x03, 0x44]);
    assert_eq!(
        sessionless_call(&mut rig, 0x06, 0x54, &[0x05, 0x00, 0x80]).0,
        cc::INVALID_DATA
    );
}

#[test]
fn outside_a_session_only_session_setup_commands_run() {
    let mut rig = Rig::new(true);
    assert_eq!(
        sessionless_call(&mut rig, 0x06, 0x01, &[]).0,
        cc::INSUFFICIENT_PRIVILEGE
    );
    assert_eq!(
        sessionless_call(&mut rig, 0x00, 0x02, &[0x00]).0,
        cc::INSUFFICIENT_PRIVILEGE
    );
    assert_eq!(rig.node.power_state(), PowerState::On);
    assert_eq!(
        sessionless_call(&mut rig, 0x06, 0x37, &[]),
        (cc::OK, vec![0x42; 16])
    );
}

#[test]
fn sessions_are_listed_and_closed_by_handle() {
    let mut rig = Rig::new(true);
    let mut admin = rig.connect(CipherSuite::Suite3);
    let mut user = rig
        .connect_as(CipherSuite::Suite17, "secret")
        .expect("opens");
    let (_, by_index) = rig.call(&mut admin, 0x06, 0x3D, &[0x02]);
    assert_eq!(
        (by_index[0], by_index[2], by_index[4]),
        (2, 2, 2),
        "2nd session, user level"
    );
    let mut by_id = vec![0xFF];
    by_id.extend_from_slice(&admin.bmc_id().to_le_bytes());
    assert_eq!(rig.call(&mut user, 0x06, 0x3D, &by_id).1[0], 1);
    // A User session may not close another session; Administrator may.
    assert_eq!(
        rig.call(&mut user, 0x06, 0x3C, &[0, 0, 0, 0, 1]).0,
        cc::INSUFFICIENT_PRIVILEGE
    );
    assert_eq!(rig.call(&mut admin, 0x06, 0x3C, &[0, 0, 0, 0, 2]).0, cc::OK);
    assert_eq!(
        rig.call(&mut admin, 0x06, 0x3C, &[0, 0, 0, 0, 2]).0,
        cc::INVALID_SESSION_HANDLE
    );
    assert_eq!(
        rig.call(&mut admin, 0x06, 0x3C, &[9, 9, 9, 9]).0,
        cc::INVALID_SESSION_ID
    );
    assert_eq!(
        rig.call(&mut admin, 0x06, 0x3B, &[0x05]).0,
        cc::PRIV_NOT_AVAILABLE
    );
}

#[test]
fn ping_gets_a_pong() {
    let mut rig = Rig::new(true);
    let rsp = rig
        .send(&[6, 0, 0xFF, 6, 0, 0, 0x11, 0xBE, 0x80, 9, 0, 0])
        .expect("pong");
    assert_eq!(rsp[8..10], [0x40, 9]);
}

fn fuzz_cases() -> u32 {
    std::env::var("BATON_IPMI_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

/// Valid datagrams of every kind, to mutate; the protected one belongs
/// to the session `s` of `rig`.
fn seeds(rig: &mut Rig, s: &mut Session) -> Vec<Vec<u8>> {
    let mut hs = Handshake::new(CipherSuite::Suite17, "admin", "secret");
    let open = hs.open_session_request();
    let rsp = rig.send(&open).unwrap_or_default();
    let rakp1 = hs.on_open_session_response(&rsp).unwrap_or_default();
    let mut req = Vec::new();
    s.request(0x00, 0x08, &[0x05, 0x80, 0x04, 0, 0, 0], &mut req);
    vec![
        open,
        rakp1,
        req,
        sessionless_v15(0x06, 0x38, &[0x8E, 0x04]),
        vec![6, 0, 0xFF, 6, 0, 0, 0x11, 0xBE, 0x80, 9, 0, 0],
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: fuzz_cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn decoder_never_panics_on_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut rig = Rig::new(true);
        rig.send(&bytes);
        let _ = super::wire::decode_datagram(&bytes);
        let _ = super::wire::decode_request(&bytes);
    }

    #[test]
    fn engine_never_panics_on_mutated_packets(
        which in 0usize..5,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut rig = Rig::new(true);
        let mut s = rig.connect(CipherSuite::Suite3);
        let seeds = seeds(&mut rig, &mut s);
        let mut pkt = seeds[which].clone();
        for (at, byte) in edits {
            let i = at.index(pkt.len());
            pkt[i] = byte;
        }
        if truncate {
            pkt.truncate(cut.index(pkt.len() + 1));
        }
        rig.send(&pkt);
        // The BMC still serves the established session afterwards.
        prop_assert_eq!(rig.call(&mut s, 0x00, 0x01, &[]).0, cc::OK);
    }
}

#[test]
fn a_command_mid_transition_is_refused_or_ignored_per_the_quirk() {
    let mut rig = Rig::new(true);
    let mut s = rig.connect(CipherSuite::Suite3);
    // A power cycle holds the power off for 1 s: a hard reset then is not possible.
    assert_eq!(rig.call(&mut s, 0x00, 0x02, &[0x02]).0, cc::OK);
    assert_eq!(
        rig.call(&mut s, 0x00, 0x02, &[0x03]).0,
        cc::NOT_IN_PRESENT_STATE
    );
    let mut quirks = rig.node.quirks();
    quirks.mid_transition = crate::model::MidTransition::Ignore;
    rig.node.set_quirks(quirks);
    let boots = rig.node.counters().boots;
    assert_eq!(rig.call(&mut s, 0x00, 0x02, &[0x03]).0, cc::OK, "ignored");
    assert_eq!(rig.node.counters().boots, boots, "and nothing done");
    assert_eq!(rig.node.power_state(), PowerState::Off);
}

#[test]
fn chassis_status_follows_the_power_state_style() {
    let mut rig = Rig::new(true);
    let mut s = rig.connect(CipherSuite::Suite3);
    let mut quirks = rig.node.quirks();
    quirks.power_state_style = crate::model::PowerStateStyle::Stale(Duration::from_secs(3600));
    rig.node.set_quirks(quirks);
    assert_eq!(rig.call(&mut s, 0x00, 0x02, &[0x00]).0, cc::OK);
    assert_eq!(rig.node.power_state(), PowerState::Off);
    let status = rig.call(&mut s, 0x00, 0x01, &[]).1;
    assert_eq!(status[0] & 1, 1, "a stale BMC still reports the power on");
}

#[test]
fn drop_sessions_ends_every_ipmi_session() {
    let mut rig = Rig::new(true);
    let mut s = rig.connect(CipherSuite::Suite3);
    assert_eq!(rig.call(&mut s, 0x00, 0x01, &[]).0, cc::OK);
    rig.node.apply_fault(FaultSetting::DropSessions);
    let mut req = Vec::new();
    s.request(0x00, 0x01, &[], &mut req);
    assert_eq!(
        rig.send(&req),
        None,
        "the session is gone: dropped silently"
    );
    assert_eq!(rig.bmc.sessions().iter().count(), 0);
    let mut again = rig.connect(CipherSuite::Suite3);
    assert_eq!(rig.call(&mut again, 0x00, 0x01, &[]).0, cc::OK);
}
