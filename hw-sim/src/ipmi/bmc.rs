//! The IPMI LAN engine of one simulated BMC: one datagram in, at most one
//! datagram out. No sockets and no clocks of its own, so it can be driven
//! by the UDP server, unit tests and the decoder fuzz test alike.
//!
//! Dispatch of a datagram (IPMI v2.0 section 13):
//!
//! 1. Decode RMCP and the session header ([`super::wire`]); anything that
//!    does not decode is dropped silently, as 13.6 asks.
//! 2. ASF Presence Ping → Pong (13.2).
//! 3. Session-less IPMI messages, in IPMI v1.5 or v2.0 framing with session
//!    id 0: only the commands allowed outside a session (Get Channel
//!    Authentication Capabilities, Get Channel Cipher Suites, Get System
//!    GUID) run; others answer D4h. The reply uses the request's framing.
//! 4. Open Session / RAKP 1 / RAKP 3 → [`super::rakp`].
//! 5. IPMI messages inside a session: the session must be active, the
//!    packet encrypted and authenticated with a valid AuthCode and a fresh
//!    sequence number ([`super::sealed`], [`super::session`]); otherwise the
//!    packet is dropped. The command runs at the session's privilege and the
//!    answer is sealed with the session's keys; Close Session of the own
//!    session removes it after the answer is built.
//!
//! Request-level faults arrive as a [`Service`]: under `busy` (C0h) or an
//! internal error (FFh) every in-session command except Close Session
//! answers that completion code; session setup keeps working, so a client
//! sees the code the way it would from a real BMC.

use std::net::SocketAddr;
use std::time::Instant;

use super::boot::BootOptions;
use super::chassis::Chassis;
use super::commands::{self, cc, Answer, BmcState, Caller, Command};
use super::rakp::{self, Account, Entropy};
use super::sealed;
use super::session::{Privilege, SessionTable, Stage, Timeouts};
use super::wire::{self, payload, Datagram, Request, V20Packet};

/// Settings of one BMC's IPMI side.
#[derive(Debug, Clone)]
pub struct BmcConfig {
    /// The user name the BMC knows (its password comes from the model).
    pub username: String,
    /// Session slots (1..=63).
    pub session_capacity: usize,
    /// Session timeouts.
    pub timeouts: Timeouts,
    /// The BMC's GUID (the system UUID's bytes).
    pub guid: [u8; 16],
}

/// How the request-level faults want this datagram served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// Serve normally.
    Normal,
    /// `busy`: commands answer C0h.
    Busy,
    /// `http_500`'s IPMI face: commands answer FFh.
    Error,
    /// `garbage=wrong_types`'s IPMI face: commands answer success with data
    /// of the wrong length (none at all).
    WrongTypes,
}

/// Randomness from the thread's CSPRNG.
#[derive(Debug, Default, Clone, Copy)]
pub struct OsEntropy;

impl Entropy for OsEntropy {
    fn session_id(&mut self) -> u32 {
        rand::random()
    }

    fn random16(&mut self) -> [u8; 16] {
        rand::random()
    }
}

/// The IPMI state of one BMC.
#[derive(Debug)]
pub struct Bmc {
    username: String,
    state: BmcState,
    /// The node's session epoch the table was last checked against.
    session_epoch: u64,
}

/// The inputs of one datagram besides its bytes.
#[derive(Debug, Clone, Copy)]
pub struct Incoming {
    /// Sender.
    pub peer: SocketAddr,
    /// Arrival time.
    pub now: Instant,
    /// Fault-driven service mode.
    pub service: Service,
}

impl Bmc {
    /// A BMC with no sessions.
    pub fn new(config: BmcConfig) -> Self {
        Self {
            username: config.username,
            state: BmcState {
                sessions: SessionTable::new(config.session_capacity, config.timeouts),
                boot: BootOptions::default(),
                ipmi_boot_mark: None,
                guid: config.guid,
            },
            session_epoch: 0,
        }
    }

    /// The session table (for inspection).
    pub fn sessions(&self) -> &SessionTable {
        &self.state.sessions
    }

    /// Handles one datagram; returns whether a reply was written to `out`.
    pub fn handle(
        &mut self,
        datagram: &[u8],
        input: Incoming,
        node: &dyn Chassis,
        entropy: &mut dyn Entropy,
        out: &mut Vec<u8>,
    ) -> bool {
        out.clear();
        let epoch = node.session_epoch();
        if epoch != self.session_epoch {
            // `drop_sessions` / `bmc_reboot`: every session is gone.
            self.state.sessions.clear();
            self.session_epoch = epoch;
        }
        self.state.sessions.expire(input.now);
        match wire::decode_datagram(datagram) {
            Ok(Datagram::AsfPing { rmcp_seq, tag }) => {
                wire::encode_pong(rmcp_seq, tag, out);
                true
            }
            Ok(Datagram::V15 { message }) => {
                self.sessionless(message, input, node, out, Framing::V15)
            }
            Ok(Datagram::V20(p)) => self.v20(&p, input, node, entropy, out),
            Err(_) => false,
        }
    }

    fn v20(
        &mut self,
        p: &V20Packet<'_>,
        input: Incoming,
        node: &dyn Chassis,
        entropy: &mut dyn Entropy,
        out: &mut Vec<u8>,
    ) -> bool {
        let unprotected = !p.encrypted && !p.authenticated;
        match (p.payload_type, p.session_id) {
            (payload::IPMI, 0) if unprotected => {
                self.sessionless(p.payload, input, node, out, Framing::V20)
            }
            (payload::IPMI, id) if id != 0 => self.in_session(p, input, node, out),
            (payload::OPEN_SESSION_REQUEST | payload::RAKP1 | payload::RAKP3, 0) if unprotected => {
                self.handshake(p, input, node, entropy, out)
            }
            _ => false,
        }
    }

    fn handshake(
        &mut self,
        p: &V20Packet<'_>,
        input: Incoming,
        node: &dyn Chassis,
        entropy: &mut dyn Entropy,
        out: &mut Vec<u8>,
    ) -> bool {
        let table = &mut self.state.sessions;
        let (now, peer) = (input.now, input.peer);
        let reply = if p.payload_type == payload::OPEN_SESSION_REQUEST {
            rakp::open_session(p.payload, peer, table, entropy, now).map(Some)
        } else {
            // The password the BMC holds now (wrong_credentials changes it).
            let password = node.password_for(&self.username).unwrap_or_default();
            let account = Account {
                username: &self.username,
                password: &password,
                max_privilege: Privilege::Administrator,
                guid: self.state.guid,
            };
            match p.payload_type {
                payload::RAKP1 => rakp::rakp1(p.payload, table, &account, entropy, now).map(Some),
                _ => rakp::rakp3(p.payload, table, &account, now),
            }
        };
        match reply {
            Ok(Some(r)) => {
                sealed::plain(r.payload_type, 0, &r.payload, out);
                true
            }
            Ok(None) | Err(_) => false,
        }
    }

    fn sessionless(
        &mut self,
        message: &[u8],
        input: Incoming,
        node: &dyn Chassis,
        out: &mut Vec<u8>,
        framing: Framing,
    ) -> bool {
        let Ok(req) = wire::decode_request(message) else {
            return false;
        };
        let caller = Caller {
            session_id: None,
            privilege: None,
            peer: input.peer,
        };
        let answer = self.answer(&req, &caller, input.service, node);
        let mut msg = Vec::with_capacity(16 + answer.data.len());
        wire::encode_response(&req, answer.cc, &answer.data, &mut msg);
        match framing {
            Framing::V15 => wire::encode_v15(&msg, out),
            Framing::V20 => sealed::plain(payload::IPMI, 0, &msg, out),
        }
        true
    }

    fn in_session(
        &mut self,
        p: &V20Packet<'_>,
        input: Incoming,
        node: &dyn Chassis,
        out: &mut Vec<u8>,
    ) -> bool {
        let Some(session) = self.state.sessions.get_mut(p.session_id) else {
            return false;
        };
        let Stage::Active(keys) = &session.stage else {
            return false;
        };
        let keys = (**keys).clone();
        let mut plain = Vec::with_capacity(p.payload.len());
        if sealed::open(&keys, p, &mut plain).is_err() || !session.window.accept(p.session_seq) {
            return false;
        }
        session.last_seen = input.now;
        let (console_id, seq) = (session.console_id, session.next_out_seq());
        let caller = Caller {
            session_id: Some(p.session_id),
            privilege: Some(session.privilege),
            peer: input.peer,
        };
        let Ok(req) = wire::decode_request(&plain) else {
            return false;
        };
        let answer = self.answer(&req, &caller, input.service, node);
        let mut msg = Vec::with_capacity(16 + answer.data.len());
        wire::encode_response(&req, answer.cc, &answer.data, &mut msg);
        sealed::seal(
            &keys,
            payload::IPMI,
            console_id,
            seq,
            &msg,
            sealed::random_iv(),
            out,
        );
        if answer.close_session {
            self.state.sessions.close(p.session_id);
        }
        true
    }

    fn answer(
        &mut self,
        req: &Request<'_>,
        caller: &Caller,
        service: Service,
        node: &dyn Chassis,
    ) -> Answer {
        let Some(command) = Command::identify(req.netfn, req.cmd) else {
            return Answer::code(cc::INVALID_COMMAND);
        };
        let in_session = caller.session_id.is_some();
        match service {
            Service::Busy if in_session && command.affected_by_faults() => Answer::code(cc::BUSY),
            Service::Error if in_session && command.affected_by_faults() => {
                Answer::code(cc::UNSPECIFIED)
            }
            Service::WrongTypes if in_session && command.affected_by_faults() => {
                Answer::code(cc::OK)
            }
            _ => commands::execute(command, req.data, caller, &mut self.state, node),
        }
    }
}

/// The framing a session-less request came in, which its reply reuses.
#[derive(Debug, Clone, Copy)]
enum Framing {
    V15,
    V20,
}
