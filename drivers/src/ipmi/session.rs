//! One RMCP+ session with one BMC, driven synchronously on the blocking pool.
//!
//! Opening a session (IPMI v2.0 §13.14–13.24, done by ipmi-rs, after
//! [`preflight`] checked that the BMC offers IPMI 2.0):
//! ASF presence ping → Get Channel Authentication Capabilities → RMCP+ Open
//! Session (cipher suite 3: RAKP-HMAC-SHA1, HMAC-SHA1-96, AES-CBC-128) →
//! RAKP 1/2 → RAKP 3/4. Then this module sends Set Session Privilege Level
//! (Administrator), which ipmi-rs does not. ipmi-rs talks to the BMC through
//! a [`Relay`] that resends each handshake step, byte for byte, until its
//! answer comes: every try waits twice as long as the BMC took to answer the
//! preflight, at least one retransmit interval ([`answer_wait`]), and the
//! session keeps that wait as its retransmit interval. When the BMC answers
//! a resent RAKP message with a failed RAKP 4 (see [`super::relay`]), the
//! whole open starts again, at most [`OPEN_ATTEMPTS`] times, and the session
//! that opens closes the one the BMC activated for the failed try.
//!
//! Requests whose [`Effect`] allows it are retransmitted every `retransmit`
//! until an answer with the request's NetFn/command arrives or the deadline
//! passes; power commands that run again each time they arrive are sent once
//! and waited for until the deadline. Other datagrams (garbage, answers to
//! other commands) are ignored.
//!
//! A late answer must never confirm a later command: ipmi-rs 0.6 hides the
//! IPMB sequence number, so answers can be matched by NetFn/command only, and
//! a retransmitted request may draw a second answer that arrives after the
//! first was taken, as may one that went unanswered. Once a request on a
//! session went out more than once or drew no answer, the session (and its
//! socket, where such answers queue) carries no further command or setting
//! with that NetFn/command: those get a fresh session. Reads still use it,
//! so that a lossy link does not open a session per read and fill the BMC's
//! session table; a read may then get the answer to the previous read of the
//! same thing, at most a retransmission old, never one from before a command.
//! A command sent once goes out on a reused session only after a read of a
//! kind with no answer outstanding (a [`Session::probe`]) was answered, so
//! that no late answer can pass for the proof that the session is alive.
//!
//! The password reaches ipmi-rs zero-padded to the 20 bytes of an IPMI 2.0
//! key. RAKP's HMAC-SHA1 pads its key with zeros anyway, so RMCP+ sees the
//! same key; but ipmi-rs's IPMI 1.5 fallback refuses passwords over 16 bytes
//! before it sends anything, so even a BMC that answers "IPMI 2.0" to
//! [`preflight`] and "IPMI 1.5 only" to ipmi-rs's own question never
//! receives Activate Session with the password in it.

use std::io::ErrorKind;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipmi_rs::connection::{IpmiConnection, LogicalUnit, Message, Request, RequestTargetAddress};
use ipmi_rs::rmcp::{
    ActivationError, ParseSessionResponseError, RakpMessage2ErrorStatusCode,
    RakpMessage2ParseError, Rmcp, RmcpIpmiError, RmcpIpmiReceiveError, V1_5ActivationError,
    V2_0ActivationError,
};
use ipmi_rs::IpmiError;

use super::commands::{self, Effect, Raw};
use super::pace::Pacer;
use super::preflight;
use super::relay::{HandshakeLog, Relay};
use crate::{DriverError, Secret};

/// Re-open a session after this many requests, far below the 2^32 where
/// ipmi-rs would panic on the sequence-number wrap.
const MAX_REQUESTS_PER_SESSION: u64 = 1 << 30;

/// Session opens tried per call when the BMC refused a resent RAKP step.
/// Each such refusal follows a lost RAKP 4, so the BMC activated a session
/// this console cannot use (ipmi-rs kept its keys); the session that does
/// open closes it (`Session::close_orphans`). At 30 % loss each way about three opens in
/// ten need another; eight tries fail about once in 15 000 opens there.
const OPEN_ATTEMPTS: u32 = 8;

/// Tries (per request) spent closing a session before leaving it to expire.
const CLOSE_TRIES: u32 = 3;

/// On a reused session, give up after at least this many unanswered tries
/// and re-open (the BMC may have dropped the session) ...
const STALE_TRIES: u32 = 4;
/// ... and after at most this many, however lossy the link has been.
const MAX_STALE_TRIES: u32 = 12;
/// ... in between, after as many as a live session on a link that loses
/// what this one lost would leave unanswered only this rarely: taking a
/// live session for dead costs a whole open, which on a lossy link is ten
/// exchanges and more.
const TAKEN_FOR_DEAD: f64 = 0.01;

/// Where and how to open sessions with one BMC.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// `host:port`.
    pub address: String,
    pub username: String,
    pub password: Secret,
    pub retransmit: Duration,
    /// The call deadline, for error messages.
    pub call_timeout: Duration,
    /// Spaces every datagram to the BMC ([`super::pace`]).
    pub pace: Arc<Pacer>,
}

/// Why an exchange failed.
#[derive(Debug)]
pub(crate) enum ExchangeError {
    /// The session seems dead: re-open and try again if time allows.
    Stale,
    /// A final error.
    Failed(DriverError),
}

impl From<DriverError> for ExchangeError {
    fn from(e: DriverError) -> Self {
        Self::Failed(e)
    }
}

/// An open, privileged RMCP+ session.
#[derive(Debug)]
pub(crate) struct Session {
    target: Target,
    rmcp: Rmcp,
    /// Carries every datagram between ipmi-rs and the BMC.
    relay: Relay,
    requests: u64,
    last_used: Instant,
    /// How long one try waits for its answer ([`answer_wait`]).
    wait: Duration,
    /// NetFn/command of the requests that went out more than once or went
    /// unanswered: another answer to them may still arrive, so the session
    /// carries no further command or setting of these kinds (module doc).
    late: Vec<Kind>,
    /// This session's handle, once Get Session Info named it.
    handle: Option<u8>,
    /// Unreadable datagrams from the BMC since its last readable answer.
    unreadable: usize,
    /// Tries sent on this session (handshake steps included) and how many
    /// drew their answer: the link's loss, for [`Session::stale_tries`].
    tries_sent: u32,
    tries_answered: u32,
    /// Relay ports of this call's earlier opens whose RAKP 4 was lost after
    /// the BMC activated their session ([`Session::close_orphans`]).
    orphans: Vec<u16>,
}

impl Session {
    /// Opens a session, retrying lost exchanges until `deadline`.
    pub fn open(target: &Target, deadline: Instant) -> Result<Self, DriverError> {
        let answered_in = preflight::require_ipmi2(target, deadline)?;
        let wait = answer_wait(target, answered_in);
        let bmc = preflight::resolve(target)?;
        let key = rakp_key(&target.password);
        let mut attempts = 0;
        let mut orphans = Vec::new();
        let (rmcp, relay, log) = loop {
            attempts += 1;
            let again = attempts < OPEN_ATTEMPTS && Instant::now() < deadline;
            match activate(target, bmc, &key, wait, deadline) {
                Ok(opened) => break opened,
                Err(Retry::Orphaned(port)) if again => orphans.push(port),
                Err(Retry::Lost) if again => {}
                Err(Retry::Lost | Retry::Orphaned(_)) => {
                    return Err(timeout("open session", target))
                }
                Err(Retry::Fatal(e)) => return Err(e),
            }
        };
        let mut session = Self {
            target: target.clone(),
            rmcp,
            relay,
            wait,
            requests: 0,
            last_used: Instant::now(),
            late: Vec::new(),
            handle: None,
            unreadable: 0,
            tries_sent: log.answered.saturating_add(log.resent),
            tries_answered: log.answered,
            orphans: Vec::new(),
        };
        let unused = AtomicBool::new(false);
        match session.exchange(&commands::set_privilege_admin(), deadline, None, &unused) {
            Ok(_) => {
                session.orphans = orphans;
                Ok(session)
            }
            Err(ExchangeError::Stale) => Err(timeout("set privilege", target)),
            Err(ExchangeError::Failed(DriverError::Bmc { code, .. })) => Err(
                commands::privilege_error(u8::try_from(code).unwrap_or(0xFF)),
            ),
            Err(ExchangeError::Failed(e)) => Err(e),
        }
    }

    /// True when the session may be used again.
    pub fn reusable(&self, idle: Duration) -> bool {
        self.requests < MAX_REQUESTS_PER_SESSION && self.last_used.elapsed() < idle
    }

    /// Asks the BMC to close this session, so its slot in the BMC's small
    /// session table is free at once rather than after the BMC's idle
    /// timeout (a driver that replaces sessions would otherwise fill it).
    /// ipmi-rs hides the session id, so Get Session Info names the handle
    /// and Close Session goes by handle. Best effort, a few tries at most:
    /// a BMC that does not answer keeps the session until it expires.
    pub fn close(mut self, deadline: Instant) {
        let bound = self.close_bound(deadline);
        let unused = AtomicBool::new(false);
        let handle = self.handle.or_else(|| {
            match self.exchange(&commands::get_session_info(), bound, None, &unused) {
                Ok(data) => data.first().copied().filter(|handle| *handle != 0),
                Err(_) => None,
            }
        });
        let closed = handle
            .map(|handle| self.exchange(&commands::close_session(handle), bound, None, &unused));
        if !matches!(closed, Some(Ok(_))) {
            tracing::debug!(bmc = %self.target.address, "IPMI session not closed; the BMC will expire it");
        }
    }

    /// How long closing may take: a few tries, within the call deadline.
    fn close_bound(&self, deadline: Instant) -> Instant {
        deadline.min(super::deadline_after(self.wait.saturating_mul(CLOSE_TRIES)))
    }

    /// Closes the sessions the BMC activated for earlier opens of this call
    /// whose RAKP 4 was lost (the BMC refused the resent RAKP 3): only the
    /// lost RAKP 4 would have let the driver use them, so without this each
    /// holds a slot until the BMC's idle timeout. They are found among the
    /// active sessions by the console address the BMC saw: this session's
    /// IP with the port of a failed open's relay, or this session's own port
    /// (something in between, a NAT or a relay, shows every open from one
    /// port) — never this session itself. Walked from the last index down,
    /// so a close does not shift the indices still to be read. Best effort:
    /// the session holds Administrator privilege, which closing another
    /// session needs.
    pub fn close_orphans(&mut self, deadline: Instant) {
        let ports = std::mem::take(&mut self.orphans);
        if ports.is_empty() {
            return;
        }
        let bound = self.close_bound(deadline);
        let unused = AtomicBool::new(false);
        let own = self.exchange(&commands::get_session_info(), bound, None, &unused);
        let Some(me) = own.ok().as_deref().and_then(commands::parse_session_info) else {
            return;
        };
        self.handle = Some(me.handle);
        for index in (1..=me.active).rev() {
            let info = self.exchange(&commands::get_session_info_at(index), bound, None, &unused);
            let Some(other) = info.ok().as_deref().and_then(commands::parse_session_info) else {
                continue;
            };
            let orphan = other.handle != me.handle
                && other.ip == me.ip
                && (other.port == me.port || ports.contains(&other.port));
            if orphan {
                let closed =
                    self.exchange(&commands::close_session(other.handle), bound, None, &unused);
                tracing::debug!(bmc = %self.target.address, handle = other.handle, closed = closed.is_ok(), "closing a session left by a lost RAKP 4");
            }
        }
    }

    /// Unanswered tries after which a reused session is taken for dead:
    /// more on a link that has been losing datagrams (see
    /// [`TAKEN_FOR_DEAD`]).
    pub fn stale_tries(&self) -> u32 {
        stale_tries(self.tries_sent, self.tries_answered)
    }

    /// True when `request` may go out on this session: a read always, a
    /// command or setting only while no late answer of its kind can arrive,
    /// and a command sent once only while a [`Session::probe`] is left to
    /// show first that the BMC still answers (module doc).
    pub fn fit_for(&self, request: &Raw) -> bool {
        match request.effect {
            Effect::Read => true,
            Effect::Once => !self.may_answer_late(request) && self.probe().is_some(),
            Effect::Setting | Effect::IdempotentPower => !self.may_answer_late(request),
        }
    }

    /// A read no late answer can pass for: its answer shows that the BMC
    /// answers on this session now. Any read the BMC must implement will
    /// do, so several are tried in turn as lossy exchanges use them up.
    pub fn probe(&self) -> Option<Raw> {
        [
            commands::get_chassis_status(),
            commands::get_device_id(),
            commands::get_session_info(),
        ]
        .into_iter()
        .find(|probe| !self.may_answer_late(probe))
    }

    fn may_answer_late(&self, request: &Raw) -> bool {
        self.late.contains(&Kind::of(request))
    }

    fn expect_late_answer(&mut self, request: &Raw) {
        let kind = Kind::of(request);
        if !self.late.contains(&kind) {
            self.late.push(kind);
        }
    }

    /// Sends `request` and returns the answer's data after a zero completion
    /// code. `max_tries` bounds the tries of a retransmitted request (`None`:
    /// until the deadline); a request sent [`commands::Effect::Once`] goes out once and
    /// its answer is awaited until the deadline. `sent` is raised before a
    /// power command first goes out, so the caller knows its outcome is
    /// unknown when no answer comes.
    pub fn exchange(
        &mut self,
        request: &Raw,
        deadline: Instant,
        max_tries: Option<u32>,
        sent: &AtomicBool,
    ) -> Result<Vec<u8>, ExchangeError> {
        let mut tries = 0;
        loop {
            if Instant::now() >= deadline || (tries > 0 && !request.effect.retransmits()) {
                if tries > 0 {
                    // Its answer may still come, after the session is reused.
                    self.expect_late_answer(request);
                }
                return Err(ExchangeError::Failed(timeout("IPMI request", &self.target)));
            }
            if max_tries.is_some_and(|max| tries >= max) {
                return Err(ExchangeError::Stale);
            }
            tries += 1;
            if tries > 1 {
                self.expect_late_answer(request);
            }
            if request.effect.changes_power() {
                sent.store(true, Ordering::SeqCst);
            }
            self.send(request)?;
            self.tries_sent = self.tries_sent.saturating_add(1);
            let wait_until_deadline = !request.effect.retransmits();
            if let Some(answer) = self.await_answer(request, deadline, wait_until_deadline)? {
                self.tries_answered = self.tries_answered.saturating_add(1);
                tracing::trace!(
                    netfn = request.netfn,
                    cmd = request.cmd,
                    tries,
                    "IPMI answer"
                );
                self.last_used = Instant::now();
                return answer_data(request, &answer).map_err(ExchangeError::Failed);
            }
            tracing::trace!(
                netfn = request.netfn,
                cmd = request.cmd,
                tries,
                "IPMI answer late"
            );
        }
    }

    fn send(&mut self, request: &Raw) -> Result<(), DriverError> {
        self.requests += 1;
        let message = Message::new_raw(request.netfn, request.cmd, request.data.clone());
        let mut request = Request::new(message, RequestTargetAddress::Bmc(LogicalUnit::Zero));
        self.rmcp
            .send(&mut request)
            .map_err(|e| DriverError::SessionFailed(format!("IPMI send failed: {e:?}")))?;
        self.relay
            .forward_request(self.wait)
            .map_err(|e| DriverError::SessionFailed(format!("IPMI send failed: {e}")))
    }

    /// Waits up to one retransmit interval (or, with `until_deadline`, up to
    /// the deadline) for the answer to `request`; `None` when it did not come.
    fn await_answer(
        &mut self,
        request: &Raw,
        deadline: Instant,
        until_deadline: bool,
    ) -> Result<Option<Vec<u8>>, DriverError> {
        let try_ends = if until_deadline {
            deadline
        } else {
            deadline.min(super::deadline_after(self.wait))
        };
        loop {
            let left = try_ends.saturating_duration_since(Instant::now());
            let arrived = self
                .relay
                .next_answer(left)
                .map_err(|e| DriverError::Unreachable {
                    address: self.target.address.clone(),
                    reason: e.to_string(),
                })?;
            if !arrived {
                return Ok(None);
            }
            let received = self.rmcp.recv();
            let nothing_there = matches!(&received,
                Err(RmcpIpmiError::Receive(RmcpIpmiReceiveError::Io(e))) if is_timeout(e));
            self.relay.answer_read(!nothing_there);
            match received {
                Ok(response) => {
                    self.unreadable = 0;
                    let netfn = response.netfn_raw() & !1;
                    if netfn == request.netfn && response.cmd() == request.cmd {
                        let mut answer = vec![response.cc()];
                        answer.extend_from_slice(response.data());
                        return Ok(Some(answer));
                    }
                    tracing::trace!(
                        netfn,
                        cmd = response.cmd(),
                        "ignoring unrelated IPMI answer"
                    );
                }
                // Handed over but not there: counted as read, wait on.
                Err(RmcpIpmiError::Receive(RmcpIpmiReceiveError::Io(e))) if is_timeout(&e) => {}
                Err(RmcpIpmiError::Receive(RmcpIpmiReceiveError::Io(e))) => {
                    return Err(DriverError::Unreachable {
                        address: self.target.address.clone(),
                        reason: e.to_string(),
                    })
                }
                Err(other) => {
                    // One may be a stray; several in a row are a BMC that
                    // answers garbage (cut short, another session's id).
                    self.unreadable += 1;
                    if self.unreadable >= super::UNREADABLE_ANSWERS {
                        return Err(DriverError::InvalidResponse(format!(
                            "the BMC answered only with datagrams that cannot be read: {other:?}"
                        )));
                    }
                    tracing::trace!(error = ?other, "ignoring unreadable IPMI datagram");
                }
            }
        }
    }
}

/// The NetFn/command pair by which answers are matched to requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Kind {
    netfn: u8,
    cmd: u8,
}

impl Kind {
    fn of(request: &Raw) -> Self {
        Self {
            netfn: request.netfn,
            cmd: request.cmd,
        }
    }
}

/// One try at opening a session: ipmi-rs runs the handshake through a fresh
/// [`Relay`] (a fresh port, so no answer to an earlier try can reach it),
/// which resends each step every `wait`; ipmi-rs itself waits for each
/// answer until the deadline.
fn activate(
    target: &Target,
    bmc: std::net::SocketAddr,
    key: &[u8],
    wait: Duration,
    deadline: Instant,
) -> Result<(Rmcp, Relay, HandshakeLog), Retry> {
    let unreachable = |e: std::io::Error| {
        Retry::Fatal(DriverError::Unreachable {
            address: target.address.clone(),
            reason: e.to_string(),
        })
    };
    let mut relay = Relay::bind(bmc, target.pace.clone()).map_err(unreachable)?;
    let port = relay.local_addr().port();
    let patience = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1));
    let mut rmcp = Rmcp::new(relay.local_addr(), patience).map_err(unreachable)?;
    let (activated, log) = relay
        .handshake(wait, deadline, || {
            rmcp.activate(true, Some(&target.username), Some(key))
        })
        .map_err(|e| Retry::Fatal(DriverError::SessionFailed(format!("IPMI relay: {e}"))))?;
    if log.resent > 0 {
        tracing::debug!(bmc = %target.address, resent = log.resent, "IPMI handshake steps resent");
    }
    match activated {
        Ok(()) => Ok((rmcp, relay, log)),
        Err(e) => Err(activation_error(target, &e, log, port)),
    }
}

/// [`Session::stale_tries`] for a session that sent `sent` tries of which
/// `answered` drew their answer. The fraction lost is estimated with one
/// lost and three answered tries added (so a short history says little and
/// leans towards a clean link, where [`STALE_TRIES`] is plenty), and
/// the tries are as many as leave a live session unanswered with a chance
/// of [`TAKEN_FOR_DEAD`] at that loss.
fn stale_tries(sent: u32, answered: u32) -> u32 {
    let lost = f64::from(sent.saturating_sub(answered).saturating_add(1))
        / f64::from(sent.saturating_add(4));
    let tries = (TAKEN_FOR_DEAD.ln() / lost.ln()).ceil();
    if tries.is_finite() && tries < f64::from(MAX_STALE_TRIES) {
        // In range, so the cast cannot truncate.
        (tries as u32).max(STALE_TRIES)
    } else {
        MAX_STALE_TRIES
    }
}

/// How long each try of a handshake step, and later of a request, waits for
/// its answer: the retransmit interval, or twice what the BMC took to answer
/// the preflight when that is longer — resending every interval to a BMC
/// slower than that would only queue up copies it answers late. At most the
/// call deadline.
fn answer_wait(target: &Target, answered_in: Duration) -> Duration {
    target
        .retransmit
        .max(answered_in.saturating_mul(2))
        .min(target.call_timeout.max(target.retransmit))
}

/// The password as the 20-byte IPMI 2.0 key, zero-padded (see the module
/// doc: equal for RAKP, too long for ipmi-rs's IPMI 1.5 fallback).
/// `IpmiDriver::new` refuses passwords over 20 bytes.
fn rakp_key(password: &Secret) -> [u8; KEY_LEN] {
    let mut key = [0u8; KEY_LEN];
    for (slot, byte) in key.iter_mut().zip(password.expose().as_bytes()) {
        *slot = *byte;
    }
    key
}

/// Length of an IPMI 2.0 user key (K_UID).
const KEY_LEN: usize = 20;

/// The data after a zero completion code, or the completion code's error.
pub(crate) fn answer_data(request: &Raw, answer: &[u8]) -> Result<Vec<u8>, DriverError> {
    match answer.split_first() {
        Some((0, data)) => Ok(data.to_vec()),
        Some((code, _)) => Err(commands::completion_error(request, *code)),
        None => Err(DriverError::InvalidResponse("empty IPMI answer".into())),
    }
}

pub(super) fn is_timeout(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

fn timeout(operation: &'static str, target: &Target) -> DriverError {
    tracing::debug!(bmc = %target.address, operation, "IPMI BMC did not answer");
    DriverError::Timeout {
        operation,
        deadline: target.call_timeout,
    }
}

/// How a failed session open should continue.
enum Retry {
    /// The open did not complete in time: try the whole open again.
    Lost,
    /// A resent RAKP step spoilt it after the BMC activated the session
    /// for the console at this port: try again, then close that session.
    Orphaned(u16),
    /// Give up with this error.
    Fatal(DriverError),
}

/// The socket error behind an activation error, if it was one.
fn activation_io_error(error: &ActivationError) -> Option<&std::io::Error> {
    use V2_0ActivationError as V2;
    match error {
        ActivationError::BindSocket(e)
        | ActivationError::PingSend(e)
        | ActivationError::PongReceive(e) => Some(e),
        ActivationError::GetChannelAuthenticationCapabilities(IpmiError::Connection(
            RmcpIpmiError::Receive(RmcpIpmiReceiveError::Io(e)),
        ))
        | ActivationError::V2_0(
            V2::OpenSessionResponseReceive(RmcpIpmiReceiveError::Io(e))
            | V2::RakpMessage2Receive(RmcpIpmiReceiveError::Io(e))
            | V2::RakpMessage4Receive(RmcpIpmiReceiveError::Io(e)),
        ) => Some(e),
        _ => None,
    }
}

/// RMCP+ status code "insufficient resources for session creation".
const INSUFFICIENT_RESOURCES: u8 = 0x01;

/// True when `code` (an ipmi-rs status type it does not export) is `raw`.
fn is_status<T: TryFrom<u8> + PartialEq>(code: &T, raw: u8) -> bool {
    T::try_from(raw).is_ok_and(|known| known == *code)
}

/// Classifies an ipmi-rs activation error: a timed-out receive (only at the
/// deadline, the relay resends until then) or a RAKP 4 failure after a
/// resent RAKP message (the BMC's answer to the repetition, see
/// [`super::relay`]) is worth a new open — the latter naming the relay's
/// `port`, from which the BMC saw the session it activated — another socket
/// error means unreachable, other RAKP refusals are authentication errors.
fn activation_error(
    target: &Target,
    error: &ActivationError,
    log: HandshakeLog,
    port: u16,
) -> Retry {
    use V2_0ActivationError as V2;
    let rakp4_failed = matches!(
        error,
        ActivationError::V2_0(
            V2::RakpMessage4Parse(_)
                | V2::RakpMessage4Validate(_)
                | V2::RakpMessage4InvalidIntegrityCheckValue
        )
    );
    if log.resent_rakp && rakp4_failed {
        tracing::debug!(bmc = %target.address, "RAKP 4 refused after a resent RAKP message; opening again");
        return Retry::Orphaned(port);
    }
    if let Some(e) = activation_io_error(error) {
        if is_timeout(e) {
            return Retry::Lost;
        }
        return Retry::Fatal(DriverError::Unreachable {
            address: target.address.clone(),
            reason: e.to_string(),
        });
    }
    let reason = format!("{error:?}");
    let fatal = match error {
        // A full session table: the BMC will have room again later.
        ActivationError::V2_0(V2::OpenSessionResponseParse(
            ParseSessionResponseError::HaveErrorCode(Ok(code)),
        )) if is_status(code, INSUFFICIENT_RESOURCES) => DriverError::Busy {
            message: format!("RMCP+ session refused: {reason}"),
            retry_after: None,
        },
        ActivationError::V2_0(V2::RakpMessage2Parse(RakpMessage2ParseError::ErrorStatusCode(
            RakpMessage2ErrorStatusCode::Common(_),
        ))) => DriverError::Busy {
            message: format!("RMCP+ session refused: {reason}"),
            retry_after: None,
        },
        ActivationError::V2_0(
            V2::RakpMessage2Parse(_)
            | V2::ServerAuthenticationFailed
            | V2::RakpMessage4InvalidIntegrityCheckValue
            | V2::RakpMessage4Parse(_),
        ) => DriverError::Auth(format!(
            "RMCP+ authentication failed for user {:?}: {reason}",
            target.username
        )),
        // Only reachable when the BMC said "no IPMI 2.0" to ipmi-rs after
        // saying the opposite to the preflight: the padded key stopped the
        // IPMI 1.5 fallback before anything was sent.
        ActivationError::V1_5(V1_5ActivationError::PasswordTooLong) => DriverError::Unsupported(
            "IPMI 2.0 (RMCP+): the BMC offered only IPMI 1.5 sessions, which would expose \
             the password; none was opened"
                .into(),
        ),
        ActivationError::IpmiNotSupported | ActivationError::NoSupportedIpmiLANVersions => {
            DriverError::Unsupported(format!("IPMI 2.0 over LAN: {reason}"))
        }
        _ => DriverError::InvalidResponse(format!("RMCP+ session open failed: {reason}")),
    };
    Retry::Fatal(fatal)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target {
            address: "127.0.0.1:623".into(),
            username: "admin".into(),
            password: Secret::new("pw"),
            retransmit: Duration::from_secs(1),
            call_timeout: Duration::from_secs(5),
            pace: Arc::default(),
        }
    }

    fn open_session_refused(status: u8) -> ActivationError {
        ActivationError::V2_0(V2_0ActivationError::OpenSessionResponseParse(
            ParseSessionResponseError::HaveErrorCode(
                TryFrom::try_from(status).map_err(|()| status),
            ),
        ))
    }

    #[test]
    fn a_bmc_slower_than_the_interval_is_waited_for() {
        let target = target();
        let fast = Duration::from_millis(3);
        assert_eq!(answer_wait(&target, fast), target.retransmit);
        let slow = Duration::from_millis(1500);
        assert_eq!(answer_wait(&target, slow), Duration::from_secs(3));
        let slower = Duration::from_secs(4);
        assert_eq!(answer_wait(&target, slower), target.call_timeout);
    }

    #[test]
    fn a_lossy_link_gives_a_reused_session_more_tries() {
        assert_eq!(stale_tries(0, 0), STALE_TRIES, "no history");
        assert_eq!(stale_tries(40, 40), STALE_TRIES, "a clean link");
        // 30 % lost each way: about one try in two goes unanswered.
        assert_eq!(stale_tries(40, 20), 7);
        assert_eq!(stale_tries(40, 2), MAX_STALE_TRIES, "almost all lost");
        assert_eq!(stale_tries(u32::MAX, 0), MAX_STALE_TRIES);
        assert_eq!(stale_tries(u32::MAX, u32::MAX), STALE_TRIES);
    }

    #[test]
    fn a_full_session_table_is_busy_not_an_invalid_response() {
        let Retry::Fatal(error) = activation_error(
            &target(),
            &open_session_refused(0x01),
            HandshakeLog::default(),
            0,
        ) else {
            panic!("a refusal is not a lost datagram");
        };
        assert!(matches!(error, DriverError::Busy { .. }), "{error:?}");
        assert!(error.is_transient());
        // No matching cipher suite stays a final error.
        let Retry::Fatal(error) = activation_error(
            &target(),
            &open_session_refused(0x11),
            HandshakeLog::default(),
            0,
        ) else {
            panic!("a refusal is not a lost datagram");
        };
        assert!(!error.is_transient(), "{error:?}");
    }
}
