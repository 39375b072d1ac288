//! A small sans-IO RMCP+ client: the remote-console side of the handshake
//! and of protected requests, for the bench and the engine's tests.
//!
//! It is not a driver (baton's drivers use their own IPMI stack, so that a
//! bug cannot hide by being mirrored on both sides); interoperability is
//! proven with ipmitool. Steps, as in [`super::rakp`] from the other end:
//! Open Session Request → check the response names our suite; RAKP 1 →
//! verify RAKP 2's HMAC with the password; RAKP 3 → verify RAKP 4's ICV
//! with the SIK; then [`Session`] seals requests and opens responses with
//! K1/K2, with its own replay window for the BMC's sequence numbers.

use thiserror::Error;

use super::crypto::{mac_eq, user_key, CipherSuite, Digest, SessionKeys};
use super::rakp::status;
use super::sealed::{self, OpenError};
use super::session::ReplayWindow;
use super::wire::{self, payload, Datagram, Reader, Response, WireError};

/// Why the client gave up.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum ClientError {
    /// A reply did not decode.
    #[error("Malformed reply")]
    Wire(#[from] WireError),
    /// A reply of another kind than expected arrived.
    #[error("Unexpected reply")]
    Unexpected,
    /// The BMC refused with an RMCP+ status code.
    #[error("BMC refused the session with RMCP+ status {0:#04x}")]
    Status(u8),
    /// RAKP 2's key exchange code does not verify: wrong password.
    #[error("RAKP 2 HMAC does not verify (wrong password?)")]
    Rakp2Hmac,
    /// RAKP 4's integrity check value does not verify.
    #[error("RAKP 4 integrity check value does not verify")]
    Rakp4Icv,
    /// A protected reply was refused.
    #[error("Protected reply refused")]
    Open(#[from] OpenError),
    /// A reply reused a sequence number.
    #[error("Replayed reply")]
    Replay,
}

/// The remote console's side of a handshake in progress.
#[derive(Debug, Clone)]
pub struct Handshake {
    suite: CipherSuite,
    key: [u8; 20],
    username: Vec<u8>,
    role: u8,
    console_id: u32,
    console_random: [u8; 16],
    bmc_id: u32,
    bmc_random: [u8; 16],
    guid: [u8; 16],
}

impl Handshake {
    /// Starts a handshake for `username`/`password` at Administrator level
    /// (name-only lookup), with fresh random ids.
    pub fn new(suite: CipherSuite, username: &str, password: &str) -> Self {
        Self {
            suite,
            key: user_key(password),
            username: username.as_bytes().iter().copied().take(16).collect(),
            role: 0x14,
            console_id: rand::random::<u32>() | 1,
            console_random: rand::random(),
            bmc_id: 0,
            bmc_random: [0; 16],
            guid: [0; 16],
        }
    }

    /// The Open Session Request datagram.
    pub fn open_session_request(&self) -> Vec<u8> {
        let mut p = vec![0x01, 0x04, 0, 0];
        p.extend_from_slice(&self.console_id.to_le_bytes());
        let (a, i, c) = self.suite.algorithms();
        for (kind, alg) in [(0u8, a), (1, i), (2, c)] {
            p.extend_from_slice(&[kind, 0, 0, 8, alg, 0, 0, 0]);
        }
        datagram(payload::OPEN_SESSION_REQUEST, &p)
    }

    /// Takes the Open Session Response; returns the RAKP 1 datagram.
    pub fn on_open_session_response(&mut self, dgram: &[u8]) -> Result<Vec<u8>, ClientError> {
        let body = expect(dgram, payload::OPEN_SESSION_RESPONSE)?;
        let mut r = Reader::new(body, "Open Session Response");
        let [_tag, code, _max, _] = r.array()?;
        check(code)?;
        if r.u32_le()? != self.console_id {
            return Err(ClientError::Unexpected);
        }
        self.bmc_id = r.u32_le()?;
        let mut p = vec![0x02, 0, 0, 0];
        p.extend_from_slice(&self.bmc_id.to_le_bytes());
        p.extend_from_slice(&self.console_random);
        p.extend_from_slice(&[self.role, 0, 0, self.username.len() as u8]);
        p.extend_from_slice(&self.username);
        Ok(datagram(payload::RAKP1, &p))
    }

    /// Takes RAKP 2; returns the RAKP 3 datagram.
    pub fn on_rakp2(&mut self, dgram: &[u8]) -> Result<Vec<u8>, ClientError> {
        let body = expect(dgram, payload::RAKP2)?;
        let mut r = Reader::new(body, "RAKP 2");
        let [_tag, code, _, _] = r.array()?;
        check(code)?;
        r.take(4)?;
        self.bmc_random = r.array()?;
        self.guid = r.array()?;
        let expected = self.suite.hmac(
            &self.key,
            &[
                &self.console_id.to_le_bytes(),
                &self.bmc_id.to_le_bytes(),
                &self.console_random,
                &self.bmc_random,
                &self.guid,
                &[self.role, self.username.len() as u8],
                &self.username,
            ],
        );
        if !mac_eq(expected.as_bytes(), r.rest()) {
            return Err(ClientError::Rakp2Hmac);
        }
        let code = self.suite.hmac(
            &self.key,
            &[
                &self.bmc_random,
                &self.console_id.to_le_bytes(),
                &[self.role, self.username.len() as u8],
                &self.username,
            ],
        );
        let mut p = vec![0x03, status::OK, 0, 0];
        p.extend_from_slice(&self.bmc_id.to_le_bytes());
        p.extend_from_slice(code.as_bytes());
        Ok(datagram(payload::RAKP3, &p))
    }

    fn sik(&self) -> Digest {
        self.suite.hmac(
            &self.key,
            &[
                &self.console_random,
                &self.bmc_random,
                &[self.role, self.username.len() as u8],
                &self.username,
            ],
        )
    }

    /// Takes RAKP 4; returns the established session.
    pub fn on_rakp4(self, dgram: &[u8]) -> Result<Session, ClientError> {
        let body = expect(dgram, payload::RAKP4)?;
        let mut r = Reader::new(body, "RAKP 4");
        let [_tag, code, _, _] = r.array()?;
        check(code)?;
        r.take(4)?;
        let sik = self.sik();
        let icv = self.suite.hmac(
            sik.as_bytes(),
            &[&self.console_random, &self.bmc_id.to_le_bytes(), &self.guid],
        );
        if !mac_eq(icv.truncated(self.suite.auth_code_len()), r.rest()) {
            return Err(ClientError::Rakp4Icv);
        }
        Ok(Session {
            keys: SessionKeys::derive(self.suite, &sik),
            bmc_id: self.bmc_id,
            console_id: self.console_id,
            seq: 0,
            rq_seq: 0,
            window: ReplayWindow::default(),
            plain: Vec::new(),
        })
    }
}

fn check(code: u8) -> Result<(), ClientError> {
    if code == status::OK {
        Ok(())
    } else {
        Err(ClientError::Status(code))
    }
}

fn datagram(payload_type: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + payload.len());
    sealed::plain(payload_type, 0, payload, &mut out);
    out
}

fn expect(dgram: &[u8], payload_type: u8) -> Result<&[u8], ClientError> {
    match wire::decode_datagram(dgram)? {
        Datagram::V20(p) if p.payload_type == payload_type && !p.encrypted => Ok(p.payload),
        _ => Err(ClientError::Unexpected),
    }
}

/// An established session, remote-console side.
#[derive(Debug)]
pub struct Session {
    keys: SessionKeys,
    bmc_id: u32,
    console_id: u32,
    seq: u32,
    rq_seq: u8,
    window: ReplayWindow,
    plain: Vec<u8>,
}

impl Session {
    /// The BMC's id of this session.
    pub fn bmc_id(&self) -> u32 {
        self.bmc_id
    }

    /// Writes a protected request datagram into `out`; returns its rqSeq.
    pub fn request(&mut self, netfn: u8, cmd: u8, data: &[u8], out: &mut Vec<u8>) -> u8 {
        self.seq = self.seq.wrapping_add(1).max(1);
        self.rq_seq = (self.rq_seq + 1) & 0x3F;
        let mut msg = Vec::with_capacity(8 + data.len());
        wire::encode_request(netfn, cmd, self.rq_seq, data, &mut msg);
        out.clear();
        sealed::seal(
            &self.keys,
            payload::IPMI,
            self.bmc_id,
            self.seq,
            &msg,
            sealed::random_iv(),
            out,
        );
        self.rq_seq
    }

    /// Opens a protected response datagram.
    pub fn response(&mut self, dgram: &[u8]) -> Result<Response<'_>, ClientError> {
        let Datagram::V20(p) = wire::decode_datagram(dgram)? else {
            return Err(ClientError::Unexpected);
        };
        if p.payload_type != payload::IPMI || p.session_id != self.console_id {
            return Err(ClientError::Unexpected);
        }
        sealed::open(&self.keys, &p, &mut self.plain)?;
        if !self.window.accept(p.session_seq) {
            return Err(ClientError::Replay);
        }
        Ok(wire::decode_response(&self.plain)?)
    }
}
