//! A loopback relay between ipmi-rs and the BMC, so that the session open
//! survives lost datagrams.
//!
//! ipmi-rs 0.6 sends each step of the session open (ASF ping, Get Channel
//! Authentication Capabilities, RMCP+ Open Session Request, RAKP 1, RAKP 3)
//! once and waits for its answer; it owns the socket and the handshake's
//! random numbers, so a step it times out on cannot be repeated, only the
//! whole open — at 30 % loss each way a five-step open then succeeds about
//! 3 % of the time. Real consoles resend a step whose answer does not come
//! (ipmitool's lanplus resends the same Open Session Request and RAKP 1/3
//! bytes on each try), so ipmi-rs talks to this relay on loopback instead of
//! to the BMC, and the relay owns the socket the BMC sees:
//!
//! - **While the session opens** ([`Relay::handshake`], a thread next to the
//!   blocking ipmi-rs call), each datagram from ipmi-rs goes to the BMC and is
//!   resent, byte for byte, every `wait` until an answer of the matching kind
//!   comes (ping → pong, IPMI 1.5 request → IPMI 1.5 answer, RMCP+ payload
//!   type n → n + 1). Only the first such answer reaches ipmi-rs; the
//!   duplicates a resend draws, and late answers to earlier steps, are
//!   dropped, since ipmi-rs would take them for the next step's. Resending the
//!   same bytes is what makes a step idempotent: an Open Session Request with
//!   the same console session id names the same half-open session (hw-sim
//!   hands back the one it opened), a RAKP 1 with the same random number asks
//!   for the same challenge. A BMC may still pick a new random number for a
//!   repeated RAKP 1, or refuse a RAKP 3 for a session the first RAKP 3
//!   already activated (OpenBMC and hw-sim answer "invalid session id"): the
//!   RAKP 4 then fails, and [`HandshakeLog::resent_rakp`] tells the caller
//!   that this was the resend's doing, not a wrong password, so it opens a
//!   new session instead of reporting bad credentials.
//! - **Once the session is open**, nothing runs in the background: the
//!   session forwards each request after ipmi-rs wrote it
//!   ([`Relay::forward_request`]) and each BMC datagram before ipmi-rs reads
//!   it ([`Relay::next_answer`]), transparently — retransmitting requests is
//!   the session's business (power commands go out once) — except late
//!   answers to resent handshake steps, which ipmi-rs could not read and
//!   would count as garbage: those are dropped.
//!
//! The relay socket is bound to all addresses of the BMC's family (as
//! ipmi-rs's own socket was) and not connected, so it takes datagrams only
//! from the BMC's address and from the first loopback peer that is not the
//! BMC — ipmi-rs's socket — and ignores everything else. A session costs two
//! sockets (relay and ipmi-rs's) instead of one.

use std::io::{self, ErrorKind};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::pace::Pacer;
use super::session::is_timeout;

/// Largest datagram relayed (ipmi-rs reads into 1024 bytes).
const MAX_DATAGRAM: usize = 2048;

/// Shortest read timeout (a zero timeout is refused by the socket).
const MIN_WAIT: Duration = Duration::from_millis(1);

/// What kind of RMCP datagram this is, enough to pair requests with answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// ASF (presence ping and pong).
    Asf,
    /// IPMI with an IPMI 1.5 session header (pre-session requests).
    Ipmi15,
    /// IPMI 2.0 RMCP+, with its payload type.
    RmcpPlus(u8),
}

impl Kind {
    /// The kind of `datagram`, `None` when it is no RMCP datagram.
    pub(crate) fn of(datagram: &[u8]) -> Option<Self> {
        let [0x06, _, _, class, rest @ ..] = datagram else {
            return None;
        };
        match (class & 0x1F, rest) {
            (0x06, _) => Some(Self::Asf),
            (0x07, [0x06, payload_type, ..]) => Some(Self::RmcpPlus(payload_type & 0x3F)),
            (0x07, [_, ..]) => Some(Self::Ipmi15),
            _ => None,
        }
    }

    /// True for the answers of the session open's steps (pong, IPMI 1.5
    /// pre-session answers, Open Session Response, RAKP 2 and RAKP 4).
    fn is_handshake_answer(self) -> bool {
        matches!(
            self,
            Self::Asf | Self::Ipmi15 | Self::RmcpPlus(OPEN_SESSION_RESPONSE | RAKP2 | RAKP4)
        )
    }

    /// The kind of the answer to a request of this kind: RMCP+ session
    /// setup answers carry the request's payload type plus one (IPMI v2.0
    /// table 13-16: 10h → 11h, 12h → 13h, 14h → 15h).
    fn answer(self) -> Self {
        match self {
            Self::RmcpPlus(payload_type) => Self::RmcpPlus(payload_type.wrapping_add(1)),
            other => other,
        }
    }
}

/// RMCP+ payload types of the session open's messages.
const OPEN_SESSION_RESPONSE: u8 = 0x11;
const RAKP1: u8 = 0x12;
const RAKP2: u8 = 0x13;
const RAKP3: u8 = 0x14;
const RAKP4: u8 = 0x15;

/// What happened while a session opened.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HandshakeLog {
    /// Datagrams resent because their answer did not come in time.
    pub resent: u32,
    /// A RAKP 1 or RAKP 3 was resent: a failed RAKP 4 may be the BMC's
    /// answer to the repetition rather than to a wrong key.
    pub resent_rakp: bool,
    /// Steps whose answer came.
    pub answered: u32,
}

/// The step of the session open whose answer the relay waits for.
#[derive(Debug)]
struct Step {
    datagram: Vec<u8>,
    answer: Option<Kind>,
    sent_at: Instant,
    answered: bool,
}

/// One relay socket between ipmi-rs (on loopback) and one BMC.
#[derive(Debug)]
pub(crate) struct Relay {
    socket: UdpSocket,
    bmc: SocketAddr,
    /// Where ipmi-rs must send: the relay's port on loopback.
    local: SocketAddr,
    /// ipmi-rs's socket, once it sent something.
    client: Option<SocketAddr>,
    /// BMC datagrams handed to ipmi-rs that it has not read yet.
    queued: usize,
    pace: Arc<Pacer>,
}

impl Relay {
    /// A relay for `bmc` on a fresh port, spacing its sends by `pace`.
    pub fn bind(bmc: SocketAddr, pace: Arc<Pacer>) -> io::Result<Self> {
        let (any, loopback): (IpAddr, IpAddr) = match bmc {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED.into(), Ipv4Addr::LOCALHOST.into()),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED.into(), Ipv6Addr::LOCALHOST.into()),
        };
        let socket = UdpSocket::bind((any, 0))?;
        let local = SocketAddr::new(loopback, socket.local_addr()?.port());
        Ok(Self {
            socket,
            bmc,
            local,
            client: None,
            queued: 0,
            pace,
        })
    }

    /// The address ipmi-rs should talk to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Runs `open` (the blocking ipmi-rs session open, talking to
    /// [`Relay::local_addr`]) while a thread relays its steps and resends
    /// each one every `wait` until answered or `deadline`.
    pub fn handshake<T>(
        &mut self,
        wait: Duration,
        deadline: Instant,
        open: impl FnOnce() -> T,
    ) -> io::Result<(T, HandshakeLog)> {
        let stop = AtomicBool::new(false);
        let relay = Handshake {
            socket: self.socket.try_clone()?,
            bmc: self.bmc,
            local: self.local,
            client: None,
            wait,
            deadline,
            log: HandshakeLog::default(),
            pace: self.pace.clone(),
        };
        let waker = self.socket.try_clone()?;
        let (opened, relayed) = std::thread::scope(|scope| {
            let thread = std::thread::Builder::new()
                .name("ipmi-relay".into())
                .spawn_scoped(scope, || relay.run(&stop))?;
            // Stops the relay however `open` ends, a panic included, so the
            // scope does not wait for the deadline.
            let stopper = StopOnDrop {
                stop: &stop,
                waker: &waker,
                local: self.local,
            };
            let opened = open();
            drop(stopper);
            io::Result::Ok((opened, thread.join()))
        })?;
        let (client, log) = match relayed {
            Ok(result) => result?,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        self.client = client;
        Ok((opened, log))
    }

    /// Forwards to the BMC the request ipmi-rs just wrote. BMC datagrams
    /// read on the way are handed to ipmi-rs (they are late answers; the
    /// session matches them as it would have without the relay).
    pub fn forward_request(&mut self, timeout: Duration) -> io::Result<()> {
        let until = super::deadline_after(timeout);
        let mut buffer = [0u8; MAX_DATAGRAM];
        loop {
            match self.recv(&mut buffer, until)? {
                Some((n, from)) if from == self.bmc => self.hand_to_client(&buffer[..n])?,
                Some((n, from)) if self.is_client(from) => {
                    self.pace.before_send();
                    self.socket.send_to(&buffer[..n], self.bmc)?;
                    return Ok(());
                }
                Some(_) => {}
                None => {
                    return Err(io::Error::new(
                        ErrorKind::TimedOut,
                        "the request never reached the relay",
                    ))
                }
            }
        }
    }

    /// Waits up to `timeout` for a BMC datagram and hands it to ipmi-rs;
    /// true when one is waiting there to be read (then call
    /// [`Relay::answer_read`] after reading it).
    pub fn next_answer(&mut self, timeout: Duration) -> io::Result<bool> {
        if self.queued > 0 {
            return Ok(true);
        }
        let until = super::deadline_after(timeout);
        let mut buffer = [0u8; MAX_DATAGRAM];
        loop {
            match self.recv(&mut buffer, until)? {
                Some((n, from)) if from == self.bmc => {
                    self.hand_to_client(&buffer[..n])?;
                    return Ok(true);
                }
                // ipmi-rs sends only when asked to; pass it on all the same.
                Some((n, from)) if self.is_client(from) => {
                    self.pace.before_send();
                    self.socket.send_to(&buffer[..n], self.bmc)?;
                }
                Some(_) => {}
                None => return Ok(false),
            }
        }
    }

    /// ipmi-rs read one datagram (`true`) or found none waiting (`false`:
    /// nothing is queued there any more).
    pub fn answer_read(&mut self, read: bool) {
        self.queued = if read {
            self.queued.saturating_sub(1)
        } else {
            0
        };
    }

    fn hand_to_client(&mut self, datagram: &[u8]) -> io::Result<()> {
        if Kind::of(datagram).is_some_and(Kind::is_handshake_answer) {
            // A late answer to a resent handshake step: ipmi-rs, in session
            // now, could not read it and would count it as garbage.
            tracing::trace!("dropping a late IPMI handshake answer");
            return Ok(());
        }
        if let Some(client) = self.client {
            self.socket.send_to(datagram, client)?;
            self.queued += 1;
        }
        Ok(())
    }

    fn is_client(&self, from: SocketAddr) -> bool {
        self.client == Some(from)
    }

    /// One datagram, or `None` once `until` passed.
    fn recv(&self, buffer: &mut [u8], until: Instant) -> io::Result<Option<(usize, SocketAddr)>> {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        self.socket.set_read_timeout(Some(left.max(MIN_WAIT)))?;
        match self.socket.recv_from(buffer) {
            Ok(received) => Ok(Some(received)),
            Err(e) if is_timeout(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Sets the stop flag and wakes the relay thread with an empty datagram.
#[derive(Debug)]
struct StopOnDrop<'a> {
    stop: &'a AtomicBool,
    waker: &'a UdpSocket,
    local: SocketAddr,
}

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Err(e) = self.waker.send_to(&[], self.local) {
            // The relay then stops at its next timeout.
            tracing::trace!(error = %e, "could not wake the IPMI relay");
        }
    }
}

/// The relay thread's side of [`Relay::handshake`].
#[derive(Debug)]
struct Handshake {
    socket: UdpSocket,
    bmc: SocketAddr,
    local: SocketAddr,
    client: Option<SocketAddr>,
    wait: Duration,
    deadline: Instant,
    log: HandshakeLog,
    pace: Arc<Pacer>,
}

impl Handshake {
    /// Relays until stopped or the deadline passes; returns ipmi-rs's
    /// address and what was resent.
    fn run(mut self, stop: &AtomicBool) -> io::Result<(Option<SocketAddr>, HandshakeLog)> {
        let mut buffer = [0u8; MAX_DATAGRAM];
        let mut step: Option<Step> = None;
        while !stop.load(Ordering::SeqCst) && Instant::now() < self.deadline {
            let resend_at = step
                .as_ref()
                .filter(|s| !s.answered)
                .map(|s| s.sent_at + self.wait);
            let wake_at = resend_at.map_or(self.deadline, |at| at.min(self.deadline));
            let left = wake_at.saturating_duration_since(Instant::now());
            self.socket.set_read_timeout(Some(left.max(MIN_WAIT)))?;
            match self.socket.recv_from(&mut buffer) {
                Ok((n, from)) => self.relay(&buffer[..n], from, &mut step)?,
                Err(e) if is_timeout(&e) => self.resend(&mut step),
                Err(e) => return Err(e),
            }
        }
        Ok((self.client, self.log))
    }

    /// Passes one datagram on: a new step from ipmi-rs to the BMC, the
    /// first answer of the awaited kind from the BMC to ipmi-rs.
    fn relay(
        &mut self,
        datagram: &[u8],
        from: SocketAddr,
        step: &mut Option<Step>,
    ) -> io::Result<()> {
        if from == self.bmc {
            let Some(current) = step.as_mut().filter(|s| !s.answered) else {
                tracing::trace!("dropping a second answer to a resent IPMI handshake step");
                return Ok(());
            };
            if Kind::of(datagram) != current.answer {
                tracing::trace!("dropping an IPMI answer to an earlier handshake step");
                return Ok(());
            }
            current.answered = true;
            self.log.answered += 1;
            if let Some(client) = self.client {
                self.socket.send_to(datagram, client)?;
            }
            return Ok(());
        }
        if !self.claims_client(from) {
            return Ok(());
        }
        self.send_to_bmc(datagram);
        *step = Some(Step {
            datagram: datagram.to_vec(),
            answer: Kind::of(datagram).map(Kind::answer),
            sent_at: Instant::now(),
            answered: false,
        });
        Ok(())
    }

    /// True when `from` is ipmi-rs's socket: the one seen before, or the
    /// first loopback peer other than the BMC and the relay itself (whose
    /// empty datagram only wakes the loop).
    fn claims_client(&mut self, from: SocketAddr) -> bool {
        if let Some(client) = self.client {
            return client == from;
        }
        let is_ipmi_rs = from.ip().is_loopback() && from.port() != self.local.port();
        if is_ipmi_rs {
            self.client = Some(from);
        }
        is_ipmi_rs
    }

    /// Resends the step whose answer is overdue.
    fn resend(&mut self, step: &mut Option<Step>) {
        let Some(current) = step.as_mut().filter(|s| !s.answered) else {
            return;
        };
        if current.sent_at + self.wait > Instant::now() {
            return;
        }
        self.log.resent += 1;
        self.log.resent_rakp |= matches!(
            Kind::of(&current.datagram),
            Some(Kind::RmcpPlus(RAKP1 | RAKP3))
        );
        tracing::trace!(kind = ?Kind::of(&current.datagram), "resending an IPMI handshake step");
        self.send_to_bmc(&current.datagram);
        current.sent_at = Instant::now();
    }

    /// Sends to the BMC; a failed send is a lost datagram (resent later).
    fn send_to_bmc(&self, datagram: &[u8]) {
        self.pace.before_send();
        if let Err(e) = self.socket.send_to(datagram, self.bmc) {
            tracing::debug!(error = %e, "IPMI handshake step not sent; will resend");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_pair_with_their_requests() {
        let ping = [0x06, 0x00, 0xFF, 0x06, 0, 0, 0x11, 0xBE];
        assert_eq!(Kind::of(&ping), Some(Kind::Asf));
        assert_eq!(Kind::of(&ping).map(Kind::answer), Some(Kind::Asf));
        let caps = super::super::preflight::request();
        assert_eq!(Kind::of(&caps), Some(Kind::Ipmi15));
        let open = [0x06, 0x00, 0xFF, 0x07, 0x06, 0x10, 0, 0];
        assert_eq!(
            Kind::of(&open).map(Kind::answer),
            Some(Kind::RmcpPlus(0x11))
        );
        let rakp3_encrypted_bits = [0x06, 0x00, 0xFF, 0x07, 0x06, 0xD4];
        assert_eq!(Kind::of(&rakp3_encrypted_bits), Some(Kind::RmcpPlus(RAKP3)));
        assert_eq!(Kind::of(&[0x06, 0x00]), None);
        assert_eq!(Kind::of(&[0x05, 0x00, 0xFF, 0x07, 0x06, 0x10]), None);
        assert_eq!(Kind::of(&[0x06, 0x00, 0xFF, 0x07]), None);
    }

    /// A BMC on loopback that answers each datagram's `n`-th copy only
    /// (dropping the first `n - 1`), echoing it back with the payload type
    /// raised by one, and counts what it received.
    fn lossy_echo(answer_copy: usize) -> (SocketAddr, std::sync::mpsc::Receiver<Vec<u8>>) {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let address = socket.local_addr().expect("addr");
        let (seen, received) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 512];
            let mut copies = 0;
            while let Ok((n, peer)) = socket.recv_from(&mut buffer) {
                let mut packet = buffer[..n].to_vec();
                if seen.send(packet.clone()).is_err() {
                    return;
                }
                copies += 1;
                if copies % answer_copy == 0 {
                    packet[5] += 1;
                    // Answered twice: the relay must pass on only one.
                    let _ = socket.send_to(&packet, peer);
                    let _ = socket.send_to(&packet, peer);
                }
            }
        });
        (address, received)
    }

    #[test]
    fn a_step_is_resent_until_answered_and_answered_once() {
        let (bmc, seen) = lossy_echo(3);
        let mut relay = Relay::bind(bmc, Arc::default()).expect("relay");
        let console = UdpSocket::bind("127.0.0.1:0").expect("console");
        console.connect(relay.local_addr()).expect("connect");
        console
            .set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let deadline = super::super::deadline_after(Duration::from_secs(5));
        let open_session = [0x06, 0x00, 0xFF, 0x07, 0x06, 0x10, 0xAB];
        let ((first, second), log) = relay
            .handshake(Duration::from_millis(20), deadline, || {
                console.send(&open_session).expect("send");
                let mut buffer = [0u8; 64];
                let first = console.recv(&mut buffer).map(|n| buffer[..n].to_vec());
                console
                    .set_read_timeout(Some(Duration::from_millis(100)))
                    .expect("timeout");
                let second = console.recv(&mut buffer).map(|n| buffer[..n].to_vec());
                (first, second)
            })
            .expect("handshake");
        let answer = [0x06, 0x00, 0xFF, 0x07, 0x06, 0x11, 0xAB];
        assert_eq!(first.expect("an answer"), answer);
        assert!(second.is_err(), "the duplicate answer reached ipmi-rs");
        let copies: Vec<_> = seen.try_iter().collect();
        assert_eq!(copies, vec![open_session.to_vec(); 3]);
        assert_eq!(log.resent, 2);
        assert!(!log.resent_rakp);
    }
}
