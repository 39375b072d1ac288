//! The BMC's table of RMCP+ sessions: bounded, with idle timeout and replay
//! protection.
//!
//! A session goes through three states (IPMI v2.0 13.15, 13.17–13.23):
//!
//! 1. **Opened** by an Open Session Request: the BMC picked its session id
//!    and the cipher suite is fixed.
//! 2. **Challenged** after RAKP 1 / RAKP 2: both random numbers, the user
//!    name and requested role are known and the SIK is derived.
//! 3. **Active** after RAKP 3 / RAKP 4: packets must carry a valid AuthCode
//!    and be encrypted; the operating privilege starts at User (or the
//!    session maximum when lower; 22.18) and is raised with Set Session
//!    Privilege Level.
//!
//! Limits: at most `capacity` sessions per BMC in any state; a new Open
//! Session past that answers "insufficient resources" (RMCP+ status 01h),
//! after first evicting sessions idle longer than their timeout — a session
//! that never finished the handshake times out much sooner than an active
//! one. Sequence numbers (13.25 / 6.12.13): inbound numbers must be non-zero
//! and inside a 32-wide sliding window (up to 15 behind the highest seen, up
//! to 16 ahead), each accepted once; outbound numbers start at 1.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::crypto::{CipherSuite, Digest, SessionKeys};

/// Privilege levels (table 6-3 / 22.13).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Privilege {
    /// Callback (1).
    Callback = 1,
    /// User (2).
    User = 2,
    /// Operator (3).
    Operator = 3,
    /// Administrator (4).
    Administrator = 4,
}

impl Privilege {
    /// Decodes the low nibble of a privilege byte; 0 and 5 (OEM) are not
    /// levels a user of this BMC can hold.
    pub fn from_nibble(v: u8) -> Option<Self> {
        match v & 0x0F {
            1 => Some(Self::Callback),
            2 => Some(Self::User),
            3 => Some(Self::Operator),
            4 => Some(Self::Administrator),
            _ => None,
        }
    }
}

/// Where a session is in its handshake.
#[derive(Debug, Clone)]
pub enum Stage {
    /// After Open Session: waiting for RAKP 1.
    Opened,
    /// After RAKP 2: waiting for RAKP 3.
    Challenged(Box<Challenge>),
    /// After RAKP 4: carrying IPMI messages.
    Active(Box<SessionKeys>),
}

/// What RAKP 1 and RAKP 2 established, needed to check RAKP 3.
#[derive(Debug, Clone)]
pub struct Challenge {
    /// Remote console random number Rm.
    pub console_random: [u8; 16],
    /// BMC random number Rc.
    pub bmc_random: [u8; 16],
    /// Requested role byte of RAKP 1, as sent (privilege + lookup bit).
    pub role: u8,
    /// User name of RAKP 1.
    pub username: Vec<u8>,
    /// The session integrity key.
    pub sik: Digest,
}

/// One session slot.
#[derive(Debug, Clone)]
pub struct Session {
    /// Session handle (1..=capacity), reported by Get Session Info.
    pub handle: u8,
    /// The id the BMC chose (SIDc); packets to the BMC carry it.
    pub bmc_id: u32,
    /// The remote console's id (SIDm); packets from the BMC carry it.
    pub console_id: u32,
    /// Agreed cipher suite.
    pub suite: CipherSuite,
    /// Highest privilege the session may hold (from the handshake).
    pub max_privilege: Privilege,
    /// Current operating privilege.
    pub privilege: Privilege,
    /// Handshake stage.
    pub stage: Stage,
    /// Address of the remote console.
    pub peer: SocketAddr,
    /// Last time a valid packet of this session arrived.
    pub last_seen: Instant,
    /// Inbound replay window.
    pub window: ReplayWindow,
    /// Next outbound sequence number.
    pub out_seq: u32,
}

impl Session {
    /// Whether the session finished its handshake.
    pub fn is_active(&self) -> bool {
        matches!(self.stage, Stage::Active(_))
    }

    /// The next outbound sequence number (never 0).
    pub fn next_out_seq(&mut self) -> u32 {
        let seq = self.out_seq;
        self.out_seq = self.out_seq.wrapping_add(1).max(1);
        seq
    }
}

/// Sliding-window replay check over 32-bit session sequence numbers.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReplayWindow {
    highest: u32,
    /// Bit i set: `highest - i` was seen.
    seen: u32,
}

/// Sequence numbers accepted behind the highest seen.
const WINDOW_BEHIND: u32 = 15;
/// Sequence numbers accepted ahead of the highest seen.
const WINDOW_AHEAD: u32 = 16;

impl ReplayWindow {
    /// Accepts `seq` once if it lies in the window; returns false for a
    /// replay, zero, or a number outside the window.
    pub fn accept(&mut self, seq: u32) -> bool {
        if seq == 0 {
            return false;
        }
        if self.highest == 0 {
            self.highest = seq;
            self.seen = 1;
            return true;
        }
        let ahead = seq.wrapping_sub(self.highest);
        if ahead != 0 && ahead <= WINDOW_AHEAD {
            self.seen = self.seen.checked_shl(ahead).unwrap_or(0) | 1;
            self.highest = seq;
            return true;
        }
        let behind = self.highest.wrapping_sub(seq);
        if behind > WINDOW_BEHIND {
            return false;
        }
        let bit = 1u32 << behind;
        let fresh = self.seen & bit == 0;
        self.seen |= bit;
        fresh
    }
}

/// Timeouts of the two kinds of sessions.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// An active session with no traffic for this long is closed (the spec
    /// suggests 60 s).
    pub idle: Duration,
    /// A session that has not finished RAKP within this time is dropped.
    pub handshake: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            idle: Duration::from_secs(60),
            handshake: Duration::from_secs(10),
        }
    }
}

/// The bounded session table of one BMC.
#[derive(Debug)]
pub struct SessionTable {
    slots: Vec<Option<Session>>,
    timeouts: Timeouts,
}

/// Largest number of sessions a BMC may report (6-bit fields of 22.20).
pub const MAX_CAPACITY: usize = 63;

impl SessionTable {
    /// A table of `capacity` slots (clamped to 1..=63).
    pub fn new(capacity: usize, timeouts: Timeouts) -> Self {
        let capacity = capacity.clamp(1, MAX_CAPACITY);
        Self {
            slots: vec![None; capacity],
            timeouts,
        }
    }

    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Number of sessions past their handshake.
    pub fn active_count(&self) -> usize {
        self.iter().filter(|s| s.is_active()).count()
    }

    /// All sessions, in handle order.
    pub fn iter(&self) -> impl Iterator<Item = &Session> {
        self.slots.iter().flatten()
    }

    /// Removes sessions idle past their timeout.
    pub fn expire(&mut self, now: Instant) {
        let t = self.timeouts;
        for slot in &mut self.slots {
            let stale = slot.as_ref().is_some_and(|s| {
                let limit = if s.is_active() { t.idle } else { t.handshake };
                now.saturating_duration_since(s.last_seen) > limit
            });
            if stale {
                *slot = None;
            }
        }
    }

    /// Opens a session in a free slot, or `None` when the table is full.
    /// `bmc_id` must be non-zero and unique (see [`Self::id_in_use`]).
    pub fn open(&mut self, new: NewSession, now: Instant) -> Option<&mut Session> {
        self.expire(now);
        let index = self.slots.iter().position(Option::is_none)?;
        let slot = self.slots.get_mut(index)?;
        *slot = Some(Session {
            handle: u8::try_from(index + 1).unwrap_or(u8::MAX),
            bmc_id: new.bmc_id,
            console_id: new.console_id,
            suite: new.suite,
            max_privilege: new.max_privilege,
            privilege: new.max_privilege.min(Privilege::User),
            stage: Stage::Opened,
            peer: new.peer,
            last_seen: now,
            window: ReplayWindow::default(),
            out_seq: 1,
        });
        slot.as_mut()
    }

    /// Whether a BMC session id is taken.
    pub fn id_in_use(&self, bmc_id: u32) -> bool {
        self.iter().any(|s| s.bmc_id == bmc_id)
    }

    /// The session with this BMC session id.
    pub fn get_mut(&mut self, bmc_id: u32) -> Option<&mut Session> {
        self.slots.iter_mut().flatten().find(|s| s.bmc_id == bmc_id)
    }

    /// The session with this handle.
    pub fn by_handle(&self, handle: u8) -> Option<&Session> {
        self.iter().find(|s| s.handle == handle)
    }

    /// Removes every session (the BMC rebooted, or dropped them all).
    pub fn clear(&mut self) {
        self.slots.iter_mut().for_each(|slot| *slot = None);
    }

    /// Removes a session; returns whether it existed.
    pub fn close(&mut self, bmc_id: u32) -> bool {
        let found = self
            .slots
            .iter_mut()
            .find(|s| s.as_ref().is_some_and(|s| s.bmc_id == bmc_id));
        found.map(Option::take).is_some()
    }
}

/// The fields of a session being opened.
#[derive(Debug, Clone, Copy)]
pub struct NewSession {
    /// BMC session id (SIDc).
    pub bmc_id: u32,
    /// Console session id (SIDm).
    pub console_id: u32,
    /// Agreed suite.
    pub suite: CipherSuite,
    /// Maximum privilege granted by Open Session.
    pub max_privilege: Privilege,
    /// Remote console address.
    pub peer: SocketAddr,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(id: u32) -> NewSession {
        NewSession {
            bmc_id: id,
            console_id: 7,
            suite: CipherSuite::Suite3,
            max_privilege: Privilege::Administrator,
            peer: "127.0.0.1:1".parse().expect("addr"),
        }
    }

    #[test]
    fn window_accepts_each_number_once() {
        let mut w = ReplayWindow::default();
        assert!(!w.accept(0));
        assert!(w.accept(5));
        assert!(!w.accept(5));
        assert!(w.accept(7));
        assert!(w.accept(6));
        assert!(!w.accept(6));
        assert!(w.accept(7 + 16));
        assert!(!w.accept(7 + 16 + 17));
        assert!(!w.accept(7)); // 16 behind: outside the window
        assert!(w.accept(23 - 15));
    }

    #[test]
    fn table_is_bounded_and_expires() {
        let t0 = Instant::now();
        let mut table = SessionTable::new(2, Timeouts::default());
        assert!(table.open(new(1), t0).is_some());
        assert!(table.open(new(2), t0).is_some());
        assert!(table.open(new(3), t0).is_none());
        // Handshake sessions expire after the short timeout.
        let later = t0 + Duration::from_secs(11);
        assert!(table.open(new(3), later).is_some());
        assert!(table.close(3));
        assert!(!table.close(3));
    }

    #[test]
    fn privilege_starts_at_user_or_lower() {
        let mut table = SessionTable::new(4, Timeouts::default());
        let s = table.open(new(1), Instant::now()).expect("slot");
        assert_eq!(s.privilege, Privilege::User);
        assert_eq!(s.next_out_seq(), 1);
        assert_eq!(s.next_out_seq(), 2);
    }
}
